//! What a verification is: its checks, the record stored next to the backup, and the steps
//! every kind shares (download and check the artifact, extract an archive). Each kind's own
//! checks live with the kind (`sources/<kind>/verify.rs`); running them is `verify.rs`.

use crate::catalog::Entry;
use crate::config::Config;
use crate::keys::Identities;
use crate::storage::Storage;
use anyhow::{anyhow, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// Stored as `verify/<source>/<id>.json` in every storage that holds the backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub source: String,
    pub backup_id: String,
    pub at: DateTime<Utc>,
    pub ok: bool,
    /// Download + decrypt + restore, the time a real restore of this backup would take.
    pub rto_seconds: f64,
    pub sandbox: String,
    pub host: String,
    pub drctl_version: String,
    pub checks: Vec<Check>,
}

impl Record {
    pub fn failures(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect()
    }
}

pub fn record_key(source: &str, id: &str) -> String {
    crate::layout::verify_key(source, id)
}

/// Verification records on one storage, by (source, backup id).
pub async fn records(st: &Storage) -> Result<std::collections::HashMap<(String, String), Record>> {
    let mut out = std::collections::HashMap::new();
    for key in st.list(crate::layout::VERIFY).await? {
        if let Ok(b) = st.get(&key).await {
            if let Ok(r) = serde_json::from_slice::<Record>(&b) {
                out.insert((r.source.clone(), r.backup_id.clone()), r);
            }
        }
    }
    Ok(out)
}

/// Ok with `ok` when nothing differs, else an error listing every difference.
pub(crate) fn verdict(diffs: Vec<String>, ok: String, what: &str) -> Result<String> {
    if diffs.is_empty() {
        Ok(ok)
    } else {
        Err(anyhow!("{what} differ: {}", diffs.join("; ")))
    }
}

pub(crate) fn check(name: &str, r: Result<String>) -> Check {
    match r {
        Ok(detail) => Check {
            name: name.into(),
            ok: true,
            detail,
        },
        Err(e) => Check {
            name: name.into(),
            ok: false,
            detail: format!("{e:#}"),
        },
    }
}

/// The first check of every kind: fetch, hash and decrypt the backup into `file`.
pub(crate) async fn download(
    storages: &[Storage],
    entry: &Entry,
    identities: &Identities,
    file: &Path,
) -> (Check, bool) {
    let m = &entry.manifest;
    let fetched = crate::fetch::fetch_to_file(storages, entry, identities, file).await;
    let ok = fetched.is_ok();
    let c = check(
        "download, hashes and decryption",
        fetched.map(|_| {
            format!(
                "{} stored bytes and {} plain bytes match the manifest's SHA-256",
                m.stored.size, m.plain.size
            )
        }),
    );
    (c, ok)
}

/// Redis, NATS and files: download into a private work dir, then run the kind's checks on
/// (artifact file, work dir, start time).
pub(crate) async fn with_artifact<F, Fut>(
    cfg: &Config,
    entry: &Entry,
    storages: &[Storage],
    identities: &Identities,
    checks_of: F,
) -> (Vec<Check>, Option<f64>, String)
where
    F: FnOnce(PathBuf, PathBuf, Instant) -> Fut,
    Fut: std::future::Future<Output = (Vec<Check>, Option<f64>)>,
{
    let m = &entry.manifest;
    let t0 = Instant::now();
    let mut checks = Vec::new();
    let work = match tempfile::Builder::new()
        .prefix("drctl-verify-")
        .tempdir_in(cfg.verify.work_dir())
    {
        Ok(w) => w,
        Err(e) => {
            checks.push(check("work dir", Err(e.into())));
            return (checks, None, "local".into());
        }
    };
    let file = work.path().join("artifact");
    let (c, ok) = download(storages, entry, identities, &file).await;
    checks.push(c);
    if !ok {
        return (checks, None, "local".into());
    }
    let (more, rto) = checks_of(file, work.path().to_path_buf(), t0).await;
    checks.extend(more);
    (checks, rto, format!("local ({})", m.kind()))
}

/// Extracts a tar artifact (with restore's escape checks) as a check named `name`.
pub(crate) async fn extract(tarfile: &Path, dest: &Path, name: &str) -> (Check, bool) {
    let (f, d) = (tarfile.to_path_buf(), dest.to_path_buf());
    let extracted = match tokio::task::spawn_blocking(move || crate::archive::extract(&f, &d, false)).await {
        Ok(r) => r,
        Err(e) => Err(anyhow!("{e}")),
    };
    let ok = extracted.is_ok();
    (check(name, extracted.map(|_| "ok".into())), ok)
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}
