//! Talking to Redis: connections, INFO and the keyspace.

use super::{DbKeys, Keyspace};
use anyhow::{anyhow, Result};
use std::time::Duration;

pub async fn connect(url: &str) -> Result<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(url).map_err(|e| anyhow!("bad redis url: {e}"))?;
    let con = tokio::time::timeout(Duration::from_secs(15), client.get_multiplexed_async_connection())
        .await
        .map_err(|_| anyhow!("timed out connecting"))??;
    Ok(con)
}

pub async fn info(con: &mut redis::aio::MultiplexedConnection, section: &str) -> Result<String> {
    Ok(redis::cmd("INFO").arg(section).query_async::<String>(con).await?)
}

pub(crate) fn field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')).map(str::trim))
}

/// `INFO keyspace` → {"db0": {"keys": N, "expires": M}, …}
pub fn parse_keyspace(info: &str) -> Keyspace {
    let mut out = Keyspace::new();
    for line in info.lines() {
        let Some((db, rest)) = line.trim().split_once(':') else {
            continue;
        };
        if !db.starts_with("db") {
            continue;
        }
        let mut keys = 0u64;
        let mut expires = 0u64;
        for kv in rest.split(',') {
            match kv.split_once('=') {
                Some(("keys", v)) => keys = v.parse().unwrap_or(0),
                Some(("expires", v)) => expires = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        out.insert(db.to_string(), DbKeys { keys, expires });
    }
    out
}

pub async fn keyspace(con: &mut redis::aio::MultiplexedConnection) -> Result<Keyspace> {
    Ok(parse_keyspace(&info(con, "keyspace").await?))
}
