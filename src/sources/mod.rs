//! Sources: each kind yields a byte stream plus facts about what it dumped.
//! Adding a kind means a new file here and a variant in `config::SourceConfig`; the pipeline
//! only sees a [`Dump`].
//!
//! | kind     | stream                                   | artifact format |
//! |----------|------------------------------------------|-----------------|
//! | postgres | `pg_dump --format=custom` child process  | `pgdump`        |
//! | redis    | the RDB after BGSAVE, or over replication | `rdb`           |
//! | nats     | in-process tar of the JetStream store    | `tar`           |
//! | files    | in-process tar of the paths              | `tar`           |

pub mod files;
pub mod nats;
pub mod nats_snapshot;
pub mod postgres;
pub mod process;
pub mod redis;
pub mod tarball;

use crate::config::SourceConfig;
use anyhow::{anyhow, Result};
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
