//! Loading a fetched RDB into a running Redis, key by key, without a redis-server of our own:
//! every key becomes `RESTORE key ttl payload REPLACE ABSTTL` (the payload read straight out of
//! the file, see `records`), every function library `FUNCTION RESTORE payload REPLACE`. The same
//! commands go to a server drctl can reach (`--target-url`, pipelined on a connection per
//! database) or into `redis-cli --pipe` exec'd in a container.
//!
//! Before anything is sent, `check` reads the whole file once (its structure, its own checksum,
//! every type known) and one payload is offered to the target as a probe that cannot create a
//! key: an already-expired `RESTORE` runs Redis's version, checksum and format checks and then
//! drops the value. So a file this drctl cannot read, or a target older than the server that
//! wrote it, is refused while the target is still as it was.

use super::records::{RdbReader, Record};
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};

/// What `check` found in the file.
pub struct Checked {
    pub keys: u64,
    pub libraries: u64,
    pub version: u16,
    /// The first key's payload, for `probe`.
    pub probe: Option<Vec<u8>>,
}

/// Reads the whole RDB at `path` once. Touches no server.
pub async fn check(path: &Path) -> Result<Checked> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut r = reader(&path)?;
        let mut c = Checked {
            keys: 0,
            libraries: 0,
            version: r.version(),
            probe: None,
        };
        while let Some(rec) = r.next_record().context("the fetched RDB")? {
            match rec {
                Record::Key { payload, .. } => {
                    c.keys += 1;
                    c.probe.get_or_insert(payload);
                }
                Record::Library { .. } => c.libraries += 1,
            }
        }
        Ok(c)
    })
    .await
    .map_err(|e| anyhow!("the RDB check stopped: {e}"))?
}

fn reader(path: &Path) -> Result<RdbReader<std::io::BufReader<std::fs::File>>> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    RdbReader::new(std::io::BufReader::with_capacity(1 << 20, f)).context("the fetched RDB")
}

/// The probe: an already-expired `RESTORE` of `payload` under a key name no one uses. The
/// target checks the payload's RDB version, checksum and format, then stores nothing.
pub fn probe_command(payload: &[u8]) -> Vec<Vec<u8>> {
    let key = format!("drctl:restore-probe:{:016x}", rand::random::<u64>());
    vec![
        b"RESTORE".to_vec(),
        key.into_bytes(),
        b"1".to_vec(),
        payload.to_vec(),
        b"ABSTTL".to_vec(),
    ]
}

/// Why a target refused the probe, with what to do.
pub fn probe_refused(target: &str, version: u16, err: &str) -> anyhow::Error {
    let hint = if err.contains("version or checksum") {
        format!(
            " (the backup is in RDB format {version}, from a newer Redis than the target: restore into a Redis at least as new as the one backed up)"
        )
    } else {
        String::new()
    };
    anyhow!(
        "{target} refused the backup's data before anything was written: {}{hint}",
        err.trim()
    )
}

/// One command to send; `db` is where a key goes (`None`: any database).
pub struct Command {
    pub db: Option<u64>,
    pub args: Vec<Vec<u8>>,
}

/// What was sent.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sent {
    pub keys: u64,
    pub with_ttl: u64,
    /// Keys whose expiry had passed by the time they were read: not sent.
    pub expired: u64,
    pub libraries: u64,
}

/// Every record of the RDB at `path` as commands, in batches of about 1 MiB, read on a blocking
/// thread. The last message is the tally (or the error that stopped the reading).
pub fn commands(path: PathBuf) -> tokio::sync::mpsc::Receiver<Result<Batch>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let run = || -> Result<Sent> {
            let mut r = reader(&path)?;
            let mut sent = Sent::default();
            let mut batch = Vec::new();
            let mut size = 0usize;
            while let Some(rec) = r.next_record().context("the fetched RDB")? {
                let cmd = match rec {
                    Record::Library { payload } => {
                        sent.libraries += 1;
                        Command {
                            db: None,
                            args: vec![b"FUNCTION".to_vec(), b"RESTORE".to_vec(), payload, b"REPLACE".to_vec()],
                        }
                    }
                    Record::Key {
                        db,
                        key,
                        expire_at_ms,
                        payload,
                    } => {
                        let now = chrono::Utc::now().timestamp_millis();
                        let ttl = match expire_at_ms {
                            Some(t) if t <= now => {
                                sent.expired += 1;
                                continue;
                            }
                            Some(t) => {
                                sent.with_ttl += 1;
                                t
                            }
                            None => 0,
                        };
                        sent.keys += 1;
                        let mut args = vec![
                            b"RESTORE".to_vec(),
                            key,
                            ttl.to_string().into_bytes(),
                            payload,
                            b"REPLACE".to_vec(),
                        ];
                        if ttl > 0 {
                            args.push(b"ABSTTL".to_vec());
                        }
                        Command { db: Some(db), args }
                    }
                };
                size += cmd.args.iter().map(Vec::len).sum::<usize>();
                batch.push(cmd);
                if size >= 1 << 20 || batch.len() >= 1000 {
                    size = 0;
                    if tx
                        .blocking_send(Ok(Batch::Commands(std::mem::take(&mut batch))))
                        .is_err()
                    {
                        return Ok(sent); // the sender gave up; its error is the one to report
                    }
                }
            }
            if !batch.is_empty() {
                let _ = tx.blocking_send(Ok(Batch::Commands(batch)));
            }
            Ok(sent)
        };
        let last = run().map(Batch::Done);
        let _ = tx.blocking_send(last);
    });
    rx
}

/// `cmds` as a finished stream of batches (what `commands` gives for a whole file).
pub fn fixed(cmds: Vec<Command>) -> tokio::sync::mpsc::Receiver<Result<Batch>> {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let _ = tx.try_send(Ok(Batch::Commands(cmds)));
    let _ = tx.try_send(Ok(Batch::Done(Sent::default())));
    rx
}

pub enum Batch {
    Commands(Vec<Command>),
    Done(Sent),
}

/// `args` as one RESP command.
pub fn resp(out: &mut Vec<u8>, args: &[Vec<u8>]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Every command into a server drctl connects to: a pipeline per batch and database, every
/// reply checked. `url_of(db)` is the target's URL for a database.
pub async fn into_url(path: &Path, url_of: impl Fn(u64) -> Result<String>) -> Result<Sent> {
    let mut conns: std::collections::BTreeMap<u64, redis::aio::MultiplexedConnection> = Default::default();
    let mut rx = commands(path.to_path_buf());
    while let Some(msg) = rx.recv().await {
        let batch = match msg? {
            Batch::Done(sent) => return Ok(sent),
            Batch::Commands(b) => b,
        };
        // Runs of one database keep the file's order.
        let mut i = 0;
        while i < batch.len() {
            let db = batch[i].db.unwrap_or(0);
            let mut p = redis::pipe();
            while i < batch.len() && batch[i].db.unwrap_or(0) == db {
                let mut c = redis::cmd(std::str::from_utf8(&batch[i].args[0]).unwrap_or("RESTORE"));
                for a in &batch[i].args[1..] {
                    c.arg(a.as_slice());
                }
                p.add_command(c);
                i += 1;
            }
            let con = match conns.entry(db) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => e.insert(super::connect(&url_of(db)?).await?),
            };
            let replies: Vec<redis::Value> = p
                .query_async(con)
                .await
                .with_context(|| format!("loading keys into database {db} of the target failed"))?;
            if let Some(redis::Value::ServerError(e)) =
                replies.iter().find(|r| matches!(r, redis::Value::ServerError(_)))
            {
                bail!("loading keys into database {db} of the target failed: {e:?}");
            }
        }
    }
    Err(anyhow!("the RDB reader stopped without a result"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp_is_binary_safe() {
        let mut out = Vec::new();
        resp(&mut out, &[b"SET".to_vec(), b"k\r\n".to_vec(), vec![0, 255]]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$2\r\n\x00\xff\r\n");
    }

    #[test]
    fn the_probe_cannot_create_a_key_and_its_refusal_says_why() {
        let c = probe_command(b"payload");
        assert_eq!(c[0], b"RESTORE");
        assert_eq!(c[2], b"1", "1 ms after the epoch: already expired");
        assert_eq!(c[4], b"ABSTTL");
        assert!(!c.iter().any(|a| a == b"REPLACE"), "never replaces a key");
        let e = probe_refused("redis://t", 12, "ERR DUMP payload version or checksum are wrong").to_string();
        assert!(e.contains("format 12") && e.contains("at least as new"), "{e}");
    }
}
