//! Sources: each kind yields a byte stream plus facts about what it dumped, and knows how to
//! bring a backup of itself back and how to verify one. Everything about a kind lives in its
//! folder (config section, dump, restore, verification); the rest of the program reaches it
//! through [`SourceConfig`] and the `match` arms in this file. The pipeline only sees a [`Dump`].
//!
//! | kind     | stream                                   | artifact format |
//! |----------|------------------------------------------|-----------------|
//! | postgres | `pg_dump --format=custom` child process  | `pgdump`        |
//! | redis    | the RDB after BGSAVE, or over replication | `rdb`           |
//! | nats     | in-process tar of the JetStream store    | `tar`           |
//! | files    | in-process tar of the paths              | `tar`           |

pub mod files;
pub mod nats;
pub mod postgres;
pub mod redis;

use crate::config::{check_names, RetentionRef};
use crate::process;
use anyhow::{anyhow, Result};
pub use files::FilesSource;
pub use nats::{NatsMode, NatsSource};
pub use postgres::PostgresSource;
pub use redis::RedisSource;
use serde::Deserialize;
use std::fmt;
use tokio::io::AsyncRead;

pub type Facts = serde_json::Map<String, serde_json::Value>;

/// A running dump: read `reader` to the end, then call `finish` — a dump is good only if the
/// producer also says so (a pg_dump that dies half-way closes its stdout like one that is done).
pub struct Dump {
    pub reader: Box<dyn AsyncRead + Unpin + Send>,
    /// What the object's name ends with before compression/encryption suffixes, e.g. `pgdump`.
    pub format: &'static str,
    /// Facts recorded in the manifest (server version, tool version, …).
    pub facts: Facts,
    pub finish: Finish,
}

/// How a producer reports that it finished well, with facts only known at the end
/// (per-file hashes, byte counts).
pub enum Finish {
    Process(Box<process::Completion>),
    Task(tokio::task::JoinHandle<Result<Facts>>),
}

impl Finish {
    pub async fn wait(self) -> Result<Facts> {
        match self {
            Finish::Process(c) => (*c).wait().await.map(|_| Facts::new()),
            Finish::Task(h) => h.await.map_err(|e| anyhow!("producer task failed: {e}"))?,
        }
    }

    pub async fn kill(self) {
        match self {
            Finish::Process(c) => (*c).kill().await,
            Finish::Task(h) => h.abort(),
        }
    }
}

pub async fn start(source: &SourceConfig) -> Result<Dump> {
    match source {
        SourceConfig::Postgres(s) => postgres::start_dump(s).await,
        SourceConfig::Redis(s) => redis::start_dump(s).await,
        SourceConfig::Nats(s) => nats::start_dump(s).await,
        SourceConfig::Files(s) => files::start_dump(s).await,
    }
}

#[derive(Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SourceConfig {
    Postgres(PostgresSource),
    Redis(RedisSource),
    Nats(NatsSource),
    Files(FilesSource),
}

impl fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceConfig::Postgres(s) => s.fmt(f),
            SourceConfig::Redis(s) => s.fmt(f),
            SourceConfig::Nats(s) => s.fmt(f),
            SourceConfig::Files(s) => s.fmt(f),
        }
    }
}

impl SourceConfig {
    pub fn name(&self) -> &str {
        match self {
            SourceConfig::Postgres(s) => &s.name,
            SourceConfig::Redis(s) => &s.name,
            SourceConfig::Nats(s) => &s.name,
            SourceConfig::Files(s) => &s.name,
        }
    }
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Postgres(_) => "postgres",
            SourceConfig::Redis(_) => "redis",
            SourceConfig::Nats(_) => "nats",
            SourceConfig::Files(_) => "files",
        }
    }
    pub fn retention(&self) -> Option<&RetentionRef> {
        match self {
            SourceConfig::Postgres(s) => s.retention.as_ref(),
            SourceConfig::Redis(s) => s.retention.as_ref(),
            SourceConfig::Nats(s) => s.retention.as_ref(),
            SourceConfig::Files(s) => s.retention.as_ref(),
        }
    }
}

pub(crate) fn validate_sources(sources: &[SourceConfig], errors: &mut Vec<String>) {
    check_names("source", sources.iter().map(|s| s.name()), errors);
    for (i, s) in sources.iter().enumerate() {
        let at = format!("source[{i}] ('{}')", s.name());
        match s {
            SourceConfig::Postgres(pg) => {
                if let Err(e) = crate::sources::postgres::ConnInfo::parse(&pg.url) {
                    errors.push(format!("{at}.url: {e}"));
                }
            }
            SourceConfig::Redis(r) => {
                match url::Url::parse(&r.url) {
                    Ok(u) if u.scheme() == "redis" => {}
                    _ => errors.push(format!("{at}.url: expected redis://[:password@]host:6379")),
                }
                if let Err(e) = crate::config::parse_duration(&r.bgsave_timeout) {
                    errors.push(format!("{at}.bgsave_timeout: {e}"));
                }
            }
            SourceConfig::Nats(n) => {
                match n.mode {
                    NatsMode::Tarball if n.data_dir.is_none() => errors.push(format!(
                        "{at}.data_dir: tarball mode needs the store directory (or use mode = \"snapshot\" with url)"
                    )),
                    NatsMode::Snapshot if n.url.is_none() => {
                        errors.push(format!("{at}.url: snapshot mode needs url = \"nats://host:4222\""))
                    }
                    _ => {}
                }
                if let Some(u) = &n.url {
                    match url::Url::parse(u) {
                        Ok(x) if x.scheme() == "nats" => {}
                        _ => errors.push(format!("{at}.url: expected nats://[user:password@]host:4222")),
                    }
                }
                if let Some(m) = &n.monitor_url {
                    if url::Url::parse(m).is_err() {
                        errors.push(format!(
                            "{at}.monitor_url: '{m}' is not a URL (e.g. http://127.0.0.1:8222)"
                        ));
                    }
                }
            }
            SourceConfig::Files(f) => {
                if f.paths.is_empty() {
                    errors.push(format!("{at}.paths: empty; list the files or directories to back up"));
                }
                if let Err(e) = crate::tarball::globs(&f.exclude) {
                    errors.push(format!("{at}.{e}"));
                }
            }
        }
    }
}
