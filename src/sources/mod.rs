//! Sources: each kind yields a byte stream plus facts about what it dumped.
//! Adding a kind means a new file here and a variant in `config::SourceConfig`; the pipeline
//! only sees a [`Dump`].

pub mod postgres;
pub mod process;

use crate::config::SourceConfig;
use anyhow::Result;
use tokio::io::AsyncRead;

/// A running dump: read `reader` to the end, then call `finish` — a dump is good only if the
/// producer also says so (a pg_dump that dies half-way closes its stdout like one that is done).
pub struct Dump {
    pub reader: Box<dyn AsyncRead + Unpin + Send>,
    /// What the object's name ends with before compression/encryption suffixes, e.g. `pgdump`.
    pub format: &'static str,
    /// Facts recorded in the manifest (server version, tool version, …).
    pub facts: serde_json::Map<String, serde_json::Value>,
    pub finish: process::Completion,
}

pub async fn start(source: &SourceConfig) -> Result<Dump> {
    match source {
        SourceConfig::Postgres(pg) => postgres::start_dump(pg).await,
    }
}
