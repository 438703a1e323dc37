//! The `[[source]] type = "postgres_cluster"` section: a whole PostgreSQL cluster, backed up
//! physically (base backups + the WAL archive) for point-in-time recovery.

use crate::retention::RetentionRef;
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;

#[derive(Clone, Deserialize)]
#[serde(try_from = "RawClusterSource")]
pub struct ClusterSource {
    pub name: String,
    /// `postgres://user@host:5432/postgres`: a login with the REPLICATION attribute (or a
    /// superuser), allowed by pg_hba.conf for replication connections.
    pub url: String,
    pub password_file: Option<PathBuf>,
    /// Where pg_basebackup is [default: /usr/lib/postgresql/<server major>/bin, then PATH].
    pub pg_bin_dir: Option<PathBuf>,
    pub retention: Option<RetentionRef>,
    /// WAL segments `wal-fetch` downloads ahead, in parallel, while recovery replays.
    pub prefetch: usize,
    /// The longest one `wal-push` or `wal-fetch` may take: a storage that hangs must fail the
    /// call (PostgreSQL retries a push; a fetch then stops recovery), not stall the archiver.
    pub wal_timeout: crate::units::Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClusterSource {
    name: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    password_file: Option<PathBuf>,
    #[serde(default)]
    pg_bin_dir: Option<PathBuf>,
    #[serde(default)]
    container: Option<String>,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    retention: Option<RetentionRef>,
    #[serde(default)]
    prefetch: Option<usize>,
    #[serde(default)]
    wal_timeout: Option<crate::units::Duration>,
}

impl TryFrom<RawClusterSource> for ClusterSource {
    type Error = String;

    fn try_from(r: RawClusterSource) -> Result<ClusterSource, String> {
        if r.container.is_some() || r.service.is_some() {
            return Err(
                "a postgres_cluster source in a container is not supported by this release yet; reach the server through a url (a published or host-network port), or use a logical type = \"postgres\" source for the container"
                    .into(),
            );
        }
        let url = r.url.ok_or_else(|| {
            "missing url (postgres://user@host:5432/postgres, a login allowed to replicate)".to_string()
        })?;
        let prefetch = r.prefetch.unwrap_or(8);
        if !(1..=64).contains(&prefetch) {
            return Err(format!("prefetch = {prefetch}: give 1 to 64 segments"));
        }
        let wal_timeout = r.wal_timeout.unwrap_or_else(|| crate::units::Duration::known("10m"));
        if let Some(e) = wal_timeout.error() {
            return Err(format!("wal_timeout: {e}"));
        }
        if wal_timeout.std().is_zero() {
            return Err("wal_timeout must be longer than 0s".into());
        }
        Ok(ClusterSource {
            name: r.name,
            wal_timeout,
            url,
            password_file: r.password_file,
            pg_bin_dir: r.pg_bin_dir,
            retention: r.retention,
            prefetch,
        })
    }
}

impl ClusterSource {
    /// A PostgreSQL client tool before the server's major is known (to ask it): from
    /// `pg_bin_dir`, else PATH.
    pub fn client_tool(&self, name: &str) -> PathBuf {
        match &self.pg_bin_dir {
            Some(d) => d.join(name),
            None => PathBuf::from(name),
        }
    }
}

impl fmt::Debug for ClusterSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterSource")
            .field("name", &self.name)
            .field("url", &crate::secret::redact_url(&self.url))
            .field("password_file", &self.password_file)
            .field("pg_bin_dir", &self.pg_bin_dir)
            .field("retention", &self.retention)
            .field("prefetch", &self.prefetch)
            .field("wal_timeout", &self.wal_timeout.text())
            .finish()
    }
}
