//! Redis: the RDB after BGSAVE (file mode, on the host or in a container) or over the
//! replication protocol, restored key by key with RESTORE payloads read out of the RDB, verified by
//! loading it.

mod client;
mod config;
mod container;
mod dump;
mod load;
mod rdb;
mod records;
pub mod restore;
mod server;
pub mod verify;

pub use client::{connect, info, keyspace, parse_keyspace};
pub use config::{RedisAccess, RedisMode, RedisSource};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Facts of a Redis backup. `rdb_path` is written in file mode, `transfer` in replication mode.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RedisFacts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_version: Option<String>,
    /// Keys per database ("db0", …) after the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_counts: Option<Keyspace>,
    /// True when the counts did not change around the snapshot, so they describe it exactly.
    #[serde(default)]
    pub key_counts_exact: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdb_path: Option<String>,
    /// "disk" or "diskless": how the server sent the RDB in replication mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<String>,
    /// The RDB's size as the server announced it; the stream must carry exactly this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_size: Option<u64>,
    #[serde(flatten)]
    pub unknown: super::UnknownFacts,
}

/// `INFO keyspace`, by database name.
pub type Keyspace = BTreeMap<String, DbKeys>;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbKeys {
    #[serde(default)]
    pub keys: u64,
    #[serde(default)]
    pub expires: u64,
}
pub use dump::start_dump;
