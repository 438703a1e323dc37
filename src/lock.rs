//! Locks stored in the storage itself, so that two hosts (or a cron job and the daemon) agree.
//!
//! Backups take a *shared* lock (several may write at once: their objects never overlap);
//! prune takes an *exclusive* one, so deleting never interleaves with writing. Each holder
//! writes its own object `locks/<time>-<random>.json`, then lists `locks/`: if a conflicting
//! live lock is there, it removes its own and waits (with jitter, so two waiters do not keep
//! colliding). Object stores have no atomic "create if absent" everywhere, and this scheme
//! (restic's) needs only read-after-write consistency, which S3, R2 and B2 give.
//!
//! A holder refreshes its lock every `REFRESH`; a lock not refreshed for `STALE`, or one whose
//! process is gone on this same host, is stale and ignored (and removed by `drctl unlock`).

use crate::storage::Storage;
use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub const REFRESH: Duration = Duration::from_secs(60);
pub const STALE: chrono::Duration = chrono::Duration::minutes(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Shared,
    Exclusive,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Info {
    pub kind: Kind,
    pub operation: String,
    pub host: String,
    pub pid: u32,
    pub created: DateTime<Utc>,
    pub refreshed: DateTime<Utc>,
}

impl Info {
    pub fn is_stale(&self, now: DateTime<Utc>) -> bool {
        if now - self.refreshed > STALE {
            return true;
        }
        // Same host: we can tell for sure whether the holder still runs.
        self.host == hostname() && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }

    pub fn describe(&self) -> String {
        format!(
            "{} ({} lock) on host {} pid {} since {}",
            self.operation,
            match self.kind {
                Kind::Shared => "shared",
                Kind::Exclusive => "exclusive",
            },
            self.host,
            self.pid,
            self.created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

pub struct Lock {
    storage: Storage,
    key: String,
    refresher: tokio::task::JoinHandle<()>,
}

/// Every lock object on the storage, with its parsed info (None if unreadable).
pub async fn list(storage: &Storage) -> Result<Vec<(String, Option<Info>)>> {
    let mut out = Vec::new();
    for key in storage.list(crate::layout::LOCKS).await? {
        let info = match storage.get(&key).await {
            Ok(b) => serde_json::from_slice(&b).ok(),
            Err(_) => continue, // removed while we listed
        };
        out.push((key, info));
    }
    Ok(out)
}

pub async fn acquire(storage: &Storage, kind: Kind, operation: &str, wait: Duration) -> Result<Lock> {
    let started = std::time::Instant::now();
    loop {
        let now = Utc::now();
        let info = Info {
            kind,
            operation: operation.to_string(),
            host: hostname(),
            pid: std::process::id(),
            created: now,
            refreshed: now,
        };
        let key = crate::layout::lock_key(&crate::layout::new_id(now));
        storage.put(&key, serde_json::to_vec_pretty(&info)?).await?;
        let mut holder = None;
        for (other, oi) in list(storage).await? {
            if other == key {
                continue;
            }
            let Some(oi) = oi else { continue };
            if oi.is_stale(Utc::now()) {
                continue;
            }
            if kind == Kind::Exclusive || oi.kind == Kind::Exclusive {
                holder = Some(oi);
                break;
            }
        }
        let Some(holder) = holder else {
            let refresher = spawn_refresher(storage.clone(), key.clone(), info);
            return Ok(Lock {
                storage: storage.clone(),
                key,
                refresher,
            });
        };
        storage.delete(&key).await?;
        if started.elapsed() >= wait {
            bail!(
                "storage '{}' is locked by {}; wait for it to finish, or if that process no longer runs, run `drctl unlock --storage {}`",
                storage.name,
                holder.describe(),
                storage.name
            );
        }
        tracing::info!(storage = %storage.name, holder = %holder.describe(), "storage is locked; waiting");
        let jitter = rand::random::<u64>() % 700;
        tokio::time::sleep(Duration::from_millis(500 + jitter)).await;
    }
}

fn spawn_refresher(storage: Storage, key: String, mut info: Info) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(REFRESH).await;
            info.refreshed = Utc::now();
            if let Ok(b) = serde_json::to_vec_pretty(&info) {
                if let Err(e) = storage.put(&key, b).await {
                    tracing::warn!(storage = %storage.name, error = %format!("{e:#}"), "could not refresh lock");
                }
            }
        }
    })
}

impl Lock {
    pub async fn release(self) {
        self.refresher.abort();
        if let Err(e) = self.storage.delete(&self.key).await {
            tracing::warn!(storage = %self.storage.name, error = %format!("{e:#}"), "could not remove lock; `drctl unlock` will");
        }
    }
}

/// Takes the same lock on every storage, releasing what it took if one fails.
pub async fn acquire_all(storages: &[Storage], kind: Kind, operation: &str, wait: Duration) -> Result<Vec<Lock>> {
    let mut locks = Vec::new();
    for st in storages {
        match acquire(st, kind, operation, wait).await {
            Ok(l) => locks.push(l),
            Err(e) => {
                release_all(locks).await;
                return Err(e);
            }
        }
    }
    Ok(locks)
}

pub async fn release_all(locks: Vec<Lock>) {
    for l in locks {
        l.release().await;
    }
}
