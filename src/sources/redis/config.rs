//! The `[[source]] type = "redis"` section.

use crate::config::RetentionRef;
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    /// BGSAVE, then read the RDB file from disk (`rdb_path`, or Redis's dir + dbfilename).
    #[default]
    File,
    /// Fetch a fresh RDB over the network like `redis-cli --rdb` (replication handshake).
    Replication,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSource {
    pub name: String,
    /// `redis://[:password@]host:port` (password via ${ENV}).
    pub url: String,
    #[serde(default)]
    pub mode: RedisMode,
    /// Where Redis's RDB file is on this host when Redis runs in a container.
    #[serde(default)]
    pub rdb_path: Option<PathBuf>,
    /// How long to wait for BGSAVE ("10m").
    #[serde(default = "default_bgsave_timeout")]
    pub bgsave_timeout: String,
    #[serde(default)]
    pub retention: Option<RetentionRef>,
}

fn default_bgsave_timeout() -> String {
    "10m".into()
}

impl fmt::Debug for RedisSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSource")
            .field("name", &self.name)
            .field("url", &crate::secret::redact_url(&self.url))
            .field("mode", &self.mode)
            .field("rdb_path", &self.rdb_path)
            .finish()
    }
}
