//! Local state: the last success and last failure of each source (for `drctl status` and the
//! daemon), and per-source process locks so a manual `drctl backup` and the daemon never dump
//! the same source at once. One small JSON file per source, replaced atomically and durably.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Fields in alphabetical order: `drctl status --json` prints this as `last_success`, and its
/// keys have always come out sorted there. (The order in the state file does not matter.)
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Success {
    pub at: DateTime<Utc>,
    pub duration_seconds: f64,
    pub id: String,
    pub plain_bytes: u64,
    pub stored_bytes: u64,
}

/// Fields in alphabetical order, like `Success`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failure {
    pub at: DateTime<Utc>,
    pub error: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SourceState {
    pub last_success: Option<Success>,
    pub last_failure: Option<Failure>,
    /// The last prune of the source's backups failed (cleared by one that succeeds): old
    /// backups are piling up, or a storage refuses deletes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_prune_failure: Option<Failure>,
}

#[derive(Debug, Clone)]
pub struct StateDir {
    pub root: PathBuf,
}

impl StateDir {
    pub fn new(root: PathBuf) -> StateDir {
        StateDir { root }
    }

    fn file(&self, source: &str) -> PathBuf {
        self.root.join("status").join(format!("{source}.json"))
    }

    pub fn load(&self, source: &str) -> SourceState {
        std::fs::read(self.file(source))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save(&self, source: &str, st: &SourceState) -> Result<()> {
        let path = self.file(source);
        let dir = path.parent().expect("status dir");
        crate::durable::create_dir_all(dir).with_context(|| {
            format!(
                "cannot create state dir {} (set [daemon] state_dir to a writable place)",
                dir.display()
            )
        })?;
        // fsync, rename, fsync the directory: after a power cut the file holds the old state
        // or the new one, never nothing or a torn write.
        crate::durable::write_file(&path, &serde_json::to_vec_pretty(st)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }

    pub fn record_success(&self, source: &str, s: Success) {
        let mut st = self.load(source);
        st.last_success = Some(s);
        if let Err(e) = self.save(source, &st) {
            tracing::warn!(source, error = %format!("{e:#}"), "cannot record status");
        }
    }

    pub fn record_failure(&self, source: &str, error: &str) {
        let mut st = self.load(source);
        st.last_failure = Some(Failure {
            at: Utc::now(),
            error: error.to_string(),
        });
        if let Err(e) = self.save(source, &st) {
            tracing::warn!(source, error = %format!("{e:#}"), "cannot record status");
        }
    }

    /// The outcome of a prune of the source's backups: `Some(error)` if it failed.
    pub fn record_prune(&self, source: &str, error: Option<&str>) {
        let mut st = self.load(source);
        st.last_prune_failure = error.map(|e| Failure {
            at: Utc::now(),
            error: e.to_string(),
        });
        if let Err(e) = self.save(source, &st) {
            tracing::warn!(source, error = %format!("{e:#}"), "cannot record status");
        }
    }

    /// An exclusive, process-level lock on a source; released when the file is dropped (also
    /// when the process dies, which a lock object in storage cannot promise).
    pub fn lock_source(&self, source: &str) -> Result<std::fs::File> {
        let dir = self.root.join("locks");
        std::fs::create_dir_all(&dir).with_context(|| {
            format!(
                "cannot create {} (set [daemon] state_dir to a writable place)",
                dir.display()
            )
        })?;
        let path = dir.join(format!("{source}.lock"));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match f.try_lock() {
            Ok(()) => Ok(f),
            Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
                "source '{source}' is being backed up by another drctl process (lock {}); not starting a second dump",
                path.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_written_durably() {
        let t = tempfile::tempdir().unwrap();
        let dir = StateDir::new(t.path().join("state"));
        dir.record_failure("pg", "boom");
        assert_eq!(dir.load("pg").last_failure.unwrap().error, "boom");
        // The new status/ directory and the renamed file's directory were fsynced.
        assert!(crate::durable::seam::synced(&t.path().join("state")));
        assert!(crate::durable::seam::synced(&t.path().join("state/status")));
    }
}
