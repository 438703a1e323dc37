//! Redis targets. `--output-dir` writes `dump.rdb` (stop Redis, replace its file, start it).
//! `--target-url` loads into a running Redis: the RDB is opened by a throwaway `redis-server`
//! (Unix socket in a private temp dir, no TCP port), and every key is copied with
//! `DUMP` + `PTTL` → `RESTORE`. DUMP/RESTORE carries Redis's own serialization, so every type
//! (strings, hashes, lists, sets, sorted sets, streams, modules' types) and every TTL arrives
//! as it was — and it works against a managed Redis where `REPLICAOF` is not allowed.

use crate::catalog::Entry;
use crate::fetch::{fetch_to_file, fetch_to_scratch};
use crate::keys::Identities;
use crate::sources::{Options, Restored};
use crate::storage::Storage;
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A throwaway redis-server on an RDB file, reachable only through its private socket.
pub struct TempRedis {
    child: std::process::Child,
    pub dir: tempfile::TempDir,
}

impl TempRedis {
    pub async fn start(rdb: &Path, work: &Path) -> Result<TempRedis> {
        let dir = tempfile::Builder::new().prefix("drctl-redis-").tempdir_in(work)?;
        std::fs::copy(rdb, dir.path().join("dump.rdb")).context("cannot stage the RDB")?;
        let sock = dir.path().join("redis.sock");
        let child = std::process::Command::new("redis-server")
            .env_clear()
            .envs(crate::process::base_env())
            .args([
                "--port",
                "0",
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dbfilename",
                "dump.rdb",
            ])
            .arg("--unixsocket")
            .arg(&sock)
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("cannot start redis-server (install the redis-server package)")?;
        let t = TempRedis { child, dir };
        let t0 = Instant::now();
        loop {
            if let Ok(mut c) = crate::sources::redis::connect(&t.url(0)).await {
                let info = crate::sources::redis::info(&mut c, "persistence")
                    .await
                    .unwrap_or_default();
                if info.contains("loading:0") {
                    return Ok(t);
                }
            }
            if t0.elapsed() > Duration::from_secs(120) {
                bail!("the throwaway redis-server did not load the RDB within 120s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn url(&self, db: u32) -> String {
        format!("redis+unix://{}?db={db}", self.dir.path().join("redis.sock").display())
    }

    pub fn rdb(&self) -> PathBuf {
        self.dir.path().join("dump.rdb")
    }
}

impl Drop for TempRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn with_db(url: &str, db: u32) -> Result<String> {
    let mut u = url::Url::parse(url).map_err(|e| anyhow!("--target-url: {e}"))?;
    u.set_path(&format!("/{db}"));
    Ok(u.to_string())
}

/// How many keys the target holds; refuses a non-empty target unless `clean`. Touches nothing.
async fn check_target(url: &str, clean: bool) -> Result<u64> {
    let mut c = crate::sources::redis::connect(url)
        .await
        .context("cannot connect to the target Redis")?;
    let ks = crate::sources::redis::keyspace(&mut c).await?;
    let keys: u64 = ks.values().map(|v| v.keys).sum();
    if keys > 0 && !clean {
        bail!("target Redis is not empty ({keys} keys); restore into an empty Redis, or pass --clean to FLUSHALL it first");
    }
    Ok(keys)
}

/// Copies every key of the RDB into the target; returns how many.
pub async fn load(rdb: &Path, target_url: &str, work: &Path) -> Result<u64> {
    let temp = TempRedis::start(rdb, work).await?;
    let mut src0 = crate::sources::redis::connect(&temp.url(0)).await?;
    let ks = crate::sources::redis::keyspace(&mut src0).await?;
    let mut copied = 0u64;
    for db in ks.keys() {
        let n: u32 = db.trim_start_matches("db").parse().unwrap_or(0);
        let mut from = crate::sources::redis::connect(&temp.url(n)).await?;
        let mut to = crate::sources::redis::connect(&with_db(target_url, n)?).await?;
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut from)
                .await?;
            for k in keys {
                let dump: Option<Vec<u8>> = redis::cmd("DUMP").arg(&k).query_async(&mut from).await?;
                let ttl: i64 = redis::cmd("PTTL").arg(&k).query_async(&mut from).await?;
                let Some(dump) = dump else { continue }; // expired meanwhile
                if ttl == -2 {
                    continue;
                }
                redis::cmd("RESTORE")
                    .arg(&k)
                    .arg(ttl.max(0))
                    .arg(dump)
                    .arg("REPLACE")
                    .query_async::<()>(&mut to)
                    .await
                    .with_context(|| format!("RESTORE of key {:?} into db {n} failed", String::from_utf8_lossy(&k)))?;
                copied += 1;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    Ok(copied)
}

/// `--target-url redis://…`: every key of the backup copied into the running server.
pub async fn restore_into(
    url: &str,
    entry: &Entry,
    storages: &[Storage],
    identities: &Identities,
    opts: Options<'_>,
) -> Result<Restored> {
    let m = &entry.manifest;
    // Refuse a non-empty target early, but flush it (--clean) only once the backup has been
    // fetched and every check passed: a wrong key or a damaged object leaves it as it was.
    let present = check_target(url, opts.clean).await?;
    let rdb = fetch_to_scratch(storages, entry, identities, "dump.rdb", opts.scratch_dir).await?;
    if present > 0 {
        let mut c = crate::sources::redis::connect(url)
            .await
            .context("cannot connect to the target Redis")?;
        redis::cmd("FLUSHALL").query_async::<()>(&mut c).await?;
    }
    let keys = load(&rdb.file, url, rdb.dir.path()).await?;
    Ok(Restored::RedisKeys {
        source: m.source.clone(),
        backup: m.id.clone(),
        target: crate::secret::redact_url(url),
        keys,
    })
}

/// `--output-dir`: `DIR/<source>/dump.rdb`, to put in place of a stopped server's file.
pub async fn restore_to_dir(
    dir: &Path,
    entry: &Entry,
    storages: &[Storage],
    identities: &Identities,
) -> Result<Restored> {
    let sub = dir.join(&entry.manifest.source);
    std::fs::create_dir_all(&sub)?;
    let dest = sub.join("dump.rdb");
    if dest.exists() {
        bail!("{} exists; restore into a new or empty directory", dest.display());
    }
    fetch_to_file(storages, entry, identities, &dest).await?;
    Ok(Restored::Wrote {
        path: dest,
        hint: Some("stop Redis, put it in Redis's dir as its dbfilename, start Redis".into()),
    })
}

/// `--target container:NAME | service:NAME`: into the Redis server running in a container.
pub async fn restore_into_container(
    place: &crate::place::ContainerRef,
    entry: &Entry,
    storages: &[Storage],
    identities: &Identities,
    opts: Options<'_>,
) -> Result<Restored> {
    super::container::restore_into_container(place, entry, storages, identities, opts).await
}
