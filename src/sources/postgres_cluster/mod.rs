//! PostgreSQL, physical: point-in-time recovery from base backups and a WAL archive.
//!
//! * `drctl backup` takes a base backup (`pg_basebackup` as a tar stream, `basebackup.rs`);
//! * the server's `archive_command = 'drctl wal-push --source NAME %p'` archives every WAL
//!   file (`archive.rs`), compressed and encrypted like every backup;
//! * `drctl restore --at T --target-datadir DIR` writes the newest base backup that ended
//!   before T, checks the WAL chain from it is complete on storage, and sets up recovery with
//!   `restore_command = 'drctl wal-fetch --source NAME %f %p'` (`restore.rs`), which prefetches
//!   the next segments in parallel (`prefetch.rs`).
//!
//! Beside, not instead of, the logical `postgres` kind: a dump restores one database into any
//! server of the same or a newer major; this restores the whole cluster, to any second.

pub mod archive;
mod basebackup;
mod config;
pub mod container;
pub mod prefetch;
pub mod restore;
pub mod spool;
pub mod status;
pub mod verify;
pub mod wal;

pub use basebackup::start_dump;
pub use config::{ClusterServer, ClusterSource};

use serde::{Deserialize, Serialize};
use wal::Lsn;

/// Facts of a base backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterFacts {
    /// `pg_control_system().system_identifier`, decimal: which cluster this is.
    pub system_identifier: String,
    /// `SHOW server_version`.
    pub server_version: String,
    pub major: u32,
    pub pg_basebackup_version: String,
    /// The timeline the backup was taken on.
    pub timeline: u32,
    /// Where replay must start (the backup's checkpoint redo point).
    pub start_lsn: Lsn,
    /// Where the backup becomes consistent: recovery must replay at least to here.
    pub stop_lsn: Lsn,
    pub segment_size: u64,
    /// The first and last WAL segment the backup needs (`start_lsn`'s and `stop_lsn`'s).
    pub start_wal: String,
    pub stop_wal: String,
    /// The cluster's bootstrap superuser (the role with OID 10: `postgres`, or the official
    /// image's `POSTGRES_USER`), which a recovered copy is asked as. Absent in manifests
    /// before this release (then `postgres`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superuser: Option<String>,
    #[serde(flatten)]
    pub unknown: super::UnknownFacts,
}
