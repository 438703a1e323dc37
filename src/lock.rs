//! Locks stored in the storage itself, so that two hosts (or a cron job and the daemon) agree.
//!
//! Backups take a *shared* lock (several may write at once: their objects never overlap);
//! prune takes an *exclusive* one, so deleting never interleaves with writing. Each holder
//! writes its own object `locks/<time>-<random>.json`, then lists `locks/`: if a conflicting
//! live lock is there, it removes its own and waits (with jitter, so two waiters do not keep
//! colliding). Object stores have no atomic "create if absent" everywhere, and this scheme
//! (restic's) needs only read-after-write consistency, which S3, R2 and B2 give.
//!
//! A holder refreshes its lock every `REFRESH`. Whether a lock is stale is never read from the
//! time written in it: that is another host's wall clock, and a host 16 minutes ahead would
//! take the exclusive prune lock from under a running backup (and one behind would wait on a
//! dead lock forever). A lock is stale only on evidence drctl gathered itself ([`Stale`]):
//! * its process is gone, on this same host;
//! * by the storage's own clock, it was last written more than `STALE` before an object we
//!   just wrote (our lock, or a short-lived probe): both times come from the one clock;
//! * we watched it for `STALE` by our own monotonic clock and it did not change ([`Watch`]).
//!
//! Without such evidence a lock is live, whatever its timestamps say.

use crate::storage::Storage;
use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub const REFRESH: Duration = Duration::from_secs(60);
pub const STALE: Duration = Duration::from_secs(15 * 60);

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
    /// As the holder's clock had it: shown to people, never used to judge staleness.
    pub created: DateTime<Utc>,
    pub refreshed: DateTime<Utc>,
}

impl Info {
    /// Same host: we can tell for sure whether the holder still runs.
    fn process_gone(&self) -> bool {
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

/// Why a lock counts as stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stale {
    /// Not a lock drctl can read.
    Unreadable,
    /// Its process no longer runs on this host.
    ProcessGone { pid: u32 },
    /// By the storage's clock it was last written this long before our own fresh write.
    NotWritten { age: chrono::Duration },
    /// We watched it this long, by our own clock, and it did not change.
    Unchanged { watched: Duration },
}

impl std::fmt::Display for Stale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stale::Unreadable => write!(f, "unreadable"),
            Stale::ProcessGone { pid } => write!(f, "its process {pid} no longer runs on this host"),
            Stale::NotWritten { age } => write!(f, "not refreshed for {} by the storage's clock", short(*age)),
            Stale::Unchanged { watched } => write!(
                f,
                "unchanged while watched for {}",
                short(chrono::Duration::from_std(*watched).unwrap_or_default())
            ),
        }
    }
}

/// "40s", "16m", "3h 5m": lock ages are minutes, rarely more.
fn short(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        _ => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

/// A lock object as found now.
#[derive(Debug, Clone)]
pub struct Seen {
    pub key: String,
    pub info: Option<Info>,
    /// `None`: live (no evidence that it is stale).
    pub stale: Option<Stale>,
    /// How long ago it was last written, by the storage's clock, when that could be told.
    pub written_ago: Option<chrono::Duration>,
}

impl Seen {
    /// "live, last written 40s ago by the storage's clock" / "stale: <why>".
    pub fn verdict(&self) -> String {
        match (&self.stale, self.written_ago) {
            (Some(why), _) => format!("stale: {why}"),
            (None, Some(ago)) => format!("live: last written {} ago by the storage's clock", short(ago)),
            (None, None) => "live: cannot tell its age from here (its own timestamps are another host's clock)".into(),
        }
    }
}

/// Remembers what each lock looked like when first seen, by our monotonic clock, so that a
/// waiter can tell a lock nobody refreshes from one whose holder's clock is off.
pub struct Watch {
    period: Duration,
    seen: HashMap<String, (Vec<u8>, Instant)>,
}

impl Watch {
    pub fn new(period: Duration) -> Watch {
        Watch {
            period,
            seen: HashMap::new(),
        }
    }

    /// Records `content` of `key` as seen at `now`; `Some` once it has been the same for the
    /// whole period.
    pub fn observe(&mut self, key: &str, content: &[u8], now: Instant) -> Option<Stale> {
        let entry = self
            .seen
            .entry(key.to_string())
            .or_insert_with(|| (content.to_vec(), now));
        if entry.0 != content {
            *entry = (content.to_vec(), now);
        }
        let watched = now.saturating_duration_since(entry.1);
        (watched >= self.period).then_some(Stale::Unchanged { watched })
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

/// When `key` was last written, by the storage's clock.
async fn written_at(storage: &Storage, key: &str) -> Option<DateTime<Utc>> {
    let meta = storage.op.stat(key).await.ok()?;
    let t = meta.last_modified()?.into_inner();
    DateTime::<Utc>::from_timestamp(t.as_second(), t.subsec_nanosecond().max(0) as u32)
}

/// Every lock object on the storage except `own`, judged. `storage_now` is the storage's
/// clock (the write time of an object just written), `watch` what we saw before.
async fn judge(
    storage: &Storage,
    own: Option<&str>,
    storage_now: Option<DateTime<Utc>>,
    mut watch: Option<&mut Watch>,
) -> Result<Vec<Seen>> {
    let mut out = Vec::new();
    for key in storage.list(crate::layout::LOCKS).await? {
        if Some(key.as_str()) == own {
            continue;
        }
        let bytes = match storage.get(&key).await {
            Ok(b) => b,
            Err(_) => continue, // removed while we listed
        };
        let info: Option<Info> = serde_json::from_slice(&bytes).ok();
        let written_ago = match (storage_now, written_at(storage, &key).await) {
            (Some(now), Some(w)) => Some(now - w),
            _ => None,
        };
        let stale = match &info {
            None => Some(Stale::Unreadable),
            Some(i) if i.process_gone() => Some(Stale::ProcessGone { pid: i.pid }),
            Some(_) => {
                let stale_age = chrono::Duration::from_std(STALE).expect("fits");
                let watched = watch
                    .as_deref_mut()
                    .and_then(|w| w.observe(&key, &bytes, Instant::now()));
                match written_ago {
                    Some(age) if age > stale_age => Some(Stale::NotWritten { age }),
                    _ => watched,
                }
            }
        };
        out.push(Seen {
            key,
            info,
            stale,
            written_ago,
        });
    }
    Ok(out)
}

/// Every lock on the storage, judged once (for `unlock` and `check`). To read the storage's
/// clock it writes a short-lived shared lock of its own (`operation`), which conflicts only
/// with an exclusive lock, and only for a moment; where it cannot write (read-only access),
/// only the same-host check applies.
pub async fn survey(storage: &Storage, operation: &str) -> Result<Vec<Seen>> {
    let now = Utc::now();
    let info = Info {
        kind: Kind::Shared,
        operation: operation.to_string(),
        host: hostname(),
        pid: std::process::id(),
        created: now,
        refreshed: now,
    };
    let probe = crate::layout::lock_key(&crate::layout::new_id(now));
    let wrote = storage.put(&probe, serde_json::to_vec_pretty(&info)?).await.is_ok();
    let storage_now = if wrote { written_at(storage, &probe).await } else { None };
    let seen = judge(storage, Some(&probe), storage_now, None).await;
    if wrote {
        if let Err(e) = storage.delete(&probe).await {
            tracing::warn!(storage = %storage.name, key = %probe, error = %format!("{e:#}"), "could not remove the probe lock; `drctl unlock` will");
        }
    }
    seen
}

pub async fn acquire(storage: &Storage, kind: Kind, operation: &str, wait: Duration) -> Result<Lock> {
    let started = std::time::Instant::now();
    let mut watch = Watch::new(STALE);
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
        let storage_now = written_at(storage, &key).await;
        let mut holder = None;
        for seen in judge(storage, Some(&key), storage_now, Some(&mut watch)).await? {
            let Some(oi) = seen.info else { continue };
            if let Some(why) = &seen.stale {
                tracing::debug!(storage = %storage.name, lock = %seen.key, reason = %why, "ignoring a stale lock");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_is_stale_only_after_being_watched_unchanged_for_the_whole_period() {
        let t0 = Instant::now();
        let mut w = Watch::new(Duration::from_secs(900));
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(w.observe("locks/a.json", b"v1", at(0)), None);
        assert_eq!(w.observe("locks/a.json", b"v1", at(899)), None);
        // Refreshed: the clock starts again, whatever time the holder wrote into it.
        assert_eq!(w.observe("locks/a.json", b"v2", at(899)), None);
        assert_eq!(w.observe("locks/a.json", b"v2", at(1798)), None);
        assert_eq!(
            w.observe("locks/a.json", b"v2", at(1799)),
            Some(Stale::Unchanged {
                watched: Duration::from_secs(900)
            })
        );
        // Another lock seen for the first time late is not stale yet.
        assert_eq!(w.observe("locks/b.json", b"v1", at(1799)), None);
    }

    #[test]
    fn verdicts_say_why() {
        let seen = |stale, ago| Seen {
            key: "locks/x.json".into(),
            info: None,
            stale,
            written_ago: ago,
        };
        assert_eq!(
            seen(Some(Stale::ProcessGone { pid: 7 }), None).verdict(),
            "stale: its process 7 no longer runs on this host"
        );
        assert!(seen(None, Some(chrono::Duration::seconds(40)))
            .verdict()
            .starts_with("live: last written 40s ago"));
        assert!(seen(
            Some(Stale::NotWritten {
                age: chrono::Duration::minutes(16)
            }),
            None
        )
        .verdict()
        .contains("not refreshed for 16m"));
    }
}
