//! The `[[source]] type = "nats"` section.

use crate::config::RetentionRef;
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;

impl fmt::Debug for NatsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSource")
            .field("name", &self.name)
            .field("mode", &self.mode)
            .field("data_dir", &self.data_dir)
            .field("url", &self.url.as_deref().map(crate::secret::redact_url))
            .field("streams", &self.streams)
            .field("monitor_url", &self.monitor_url)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NatsMode {
    /// A streamed tar of the JetStream store directory (`data_dir`).
    #[default]
    Tarball,
    /// Consistent per-stream snapshots through the JetStream API (`url`); no disk access.
    Snapshot,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSource {
    pub name: String,
    #[serde(default)]
    pub mode: NatsMode,
    /// The store directory (`nats-server -sd`), or its `jetstream` subdirectory (tarball mode).
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// `nats://[user:password@]host:4222` (snapshot mode).
    #[serde(default)]
    pub url: Option<String>,
    /// Streams to snapshot [default: all].
    #[serde(default)]
    pub streams: Vec<String>,
    /// Monitoring endpoint (`nats-server -m 8222`), for per-stream message counts.
    #[serde(default)]
    pub monitor_url: Option<String>,
    #[serde(default)]
    pub retention: Option<RetentionRef>,
}
