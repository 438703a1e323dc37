//! The `[[source]] type = "redis"` section. `mode` chooses how drctl gets the RDB, and each
//! mode carries its own fields.

use crate::retention::RetentionRef;
use crate::units::Duration;
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

/// How a Redis source gets its RDB, with what that mode needs.
#[derive(Debug, Clone)]
pub enum RedisAccess {
    /// BGSAVE, then the file: `rdb_path` where Redis's file is on this host (Redis in a
    /// container), else where Redis says it is (`CONFIG GET dir` + `dbfilename`).
    File { rdb_path: Option<PathBuf> },
    /// Over the replication protocol; no disk access.
    Replication,
}

#[derive(Clone, Deserialize)]
#[serde(try_from = "RawRedisSource")]
pub struct RedisSource {
    pub name: String,
    /// `redis://[:password@]host:port` (password via ${ENV}).
    pub url: String,
    pub access: RedisAccess,
    /// How long to wait for BGSAVE ("10m").
    pub bgsave_timeout: Duration,
    pub retention: Option<RetentionRef>,
}

/// The section as written; `try_from` turns it into the variant its `mode` names.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedisSource {
    name: String,
    url: String,
    #[serde(default)]
    mode: RedisMode,
    #[serde(default)]
    rdb_path: Option<PathBuf>,
    #[serde(default = "default_bgsave_timeout")]
    bgsave_timeout: Duration,
    #[serde(default)]
    retention: Option<RetentionRef>,
}

fn default_bgsave_timeout() -> Duration {
    Duration::known("10m")
}

impl TryFrom<RawRedisSource> for RedisSource {
    type Error = String;

    fn try_from(r: RawRedisSource) -> Result<RedisSource, String> {
        let access = match (r.mode, r.rdb_path) {
            (RedisMode::File, rdb_path) => RedisAccess::File { rdb_path },
            (RedisMode::Replication, None) => RedisAccess::Replication,
            (RedisMode::Replication, Some(_)) => {
                return Err(
                    "rdb_path belongs to mode = \"file\"; replication mode reads no file (remove it, or set mode = \"file\")"
                        .into(),
                )
            }
        };
        Ok(RedisSource {
            name: r.name,
            url: r.url,
            access,
            bgsave_timeout: r.bgsave_timeout,
            retention: r.retention,
        })
    }
}

impl fmt::Debug for RedisSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSource")
            .field("name", &self.name)
            .field("url", &crate::secret::redact_url(&self.url))
            .field("access", &self.access)
            .finish()
    }
}
