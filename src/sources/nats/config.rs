//! The `[[source]] type = "nats"` section. `mode` chooses how drctl reaches JetStream, and
//! each mode carries its own fields: a key of the other mode is an error, not ignored.

use crate::retention::RetentionRef;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NatsMode {
    /// A streamed tar of the JetStream store directory (`data_dir`).
    #[default]
    Tarball,
    /// Consistent per-stream snapshots through the JetStream API (`url`); no disk access.
    Snapshot,
}

/// How a NATS source is backed up, with what that mode needs.
#[derive(Clone)]
pub enum NatsAccess {
    /// The store directory (`nats-server -sd`), or its `jetstream` subdirectory.
    Tarball { data_dir: PathBuf },
    /// `nats://[user:password@]host:4222` (or `nats://TOKEN@host`), and the streams to
    /// snapshot (empty: all). The credentials are taken out of the URL when connecting.
    Snapshot { url: String, streams: Vec<String> },
}

#[derive(Clone, Deserialize)]
#[serde(try_from = "RawNatsSource")]
pub struct NatsSource {
    pub name: String,
    pub access: NatsAccess,
    /// Monitoring endpoint (`nats-server -m 8222`), for per-stream message counts.
    pub monitor_url: Option<String>,
    pub retention: Option<RetentionRef>,
}

impl NatsSource {
    pub fn mode(&self) -> NatsMode {
        match self.access {
            NatsAccess::Tarball { .. } => NatsMode::Tarball,
            NatsAccess::Snapshot { .. } => NatsMode::Snapshot,
        }
    }
}

/// The section as written; `try_from` turns it into the variant its `mode` names.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNatsSource {
    name: String,
    #[serde(default)]
    mode: NatsMode,
    /// The store directory (`nats-server -sd`), or its `jetstream` subdirectory (tarball mode).
    #[serde(default)]
    data_dir: Option<PathBuf>,
    /// `nats://[user:password@]host:4222` or `nats://TOKEN@host:4222` (snapshot mode).
    #[serde(default)]
    url: Option<String>,
    /// Streams to snapshot [default: all] (snapshot mode).
    #[serde(default)]
    streams: Option<Vec<String>>,
    #[serde(default)]
    monitor_url: Option<String>,
    #[serde(default)]
    retention: Option<RetentionRef>,
}

impl TryFrom<RawNatsSource> for NatsSource {
    type Error = String;

    fn try_from(r: RawNatsSource) -> Result<NatsSource, String> {
        let access = match r.mode {
            NatsMode::Tarball => {
                if r.url.is_some() || r.streams.is_some() {
                    return Err(
                        "url and streams belong to mode = \"snapshot\"; a tarball source reads data_dir (remove them, or set mode = \"snapshot\")"
                            .into(),
                    );
                }
                NatsAccess::Tarball {
                    data_dir: r.data_dir.ok_or(
                        "data_dir: tarball mode needs the store directory (or use mode = \"snapshot\" with url)",
                    )?,
                }
            }
            NatsMode::Snapshot => {
                if r.data_dir.is_some() {
                    return Err(
                        "data_dir belongs to mode = \"tarball\"; a snapshot source reads url (remove it, or set mode = \"tarball\")"
                            .into(),
                    );
                }
                NatsAccess::Snapshot {
                    url: r.url.ok_or("url: snapshot mode needs url = \"nats://host:4222\"")?,
                    streams: r.streams.unwrap_or_default(),
                }
            }
        };
        Ok(NatsSource {
            name: r.name,
            access,
            monitor_url: r.monitor_url,
            retention: r.retention,
        })
    }
}

impl fmt::Debug for NatsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("NatsSource");
        d.field("name", &self.name);
        match &self.access {
            NatsAccess::Tarball { data_dir } => d.field("mode", &"tarball").field("data_dir", data_dir),
            NatsAccess::Snapshot { url, streams } => d
                .field("mode", &"snapshot")
                .field("url", &crate::secret::redact_url(url))
                .field("streams", streams),
        };
        d.field("monitor_url", &self.monitor_url).finish()
    }
}
