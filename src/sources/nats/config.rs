//! The `[[source]] type = "nats"` section. `mode` chooses how drctl reaches JetStream, and
//! each mode carries its own fields: a key of the other mode is an error, not ignored.

use crate::place::ContainerRef;
use crate::retention::RetentionRef;
use crate::units::Duration;
use serde::{Deserialize, Serialize};
use std::fmt;
#[cfg(test)]
use std::path::Path;
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
    /// The store directory (`nats-server -sd`), or its `jetstream` subdirectory: on this host,
    /// or inside the container when the source has a place. `pause`: the container is paused
    /// for the copy, at most this long.
    Tarball { data_dir: PathBuf, pause: Option<Duration> },
    /// `nats://[user:password@]host:4222` (or `nats://TOKEN@host`), and the streams to
    /// snapshot (empty: all). The credentials are taken out of the URL when connecting.
    Snapshot { url: String, streams: Vec<String> },
}

#[derive(Clone, Deserialize)]
#[serde(try_from = "RawNatsSource")]
pub struct NatsSource {
    pub name: String,
    /// The container the server runs in (`container`/`service` keys); `None`: reached from
    /// this host (its disk, or `url`).
    pub place: Option<ContainerRef>,
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
    #[serde(default)]
    container: Option<String>,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    compose_project: Option<String>,
    /// Pause the container while its store is copied (tarball mode in a container).
    #[serde(default)]
    pause: Option<bool>,
    /// How long the container may stay paused; the copy fails (and the container is unpaused)
    /// when it takes longer [default: 2m].
    #[serde(default)]
    pause_timeout: Option<Duration>,
}

const DEFAULT_PAUSE_TIMEOUT: &str = "2m";

impl TryFrom<RawNatsSource> for NatsSource {
    type Error = String;

    fn try_from(r: RawNatsSource) -> Result<NatsSource, String> {
        let place = ContainerRef::from_keys(r.container, r.service, r.compose_project)?;
        if let Some(t) = &r.pause_timeout {
            if let Some(e) = t.error() {
                return Err(format!("pause_timeout: {e}"));
            }
            if r.pause != Some(true) {
                return Err("pause_timeout without pause = true; add pause = true or remove it".into());
            }
        }
        let pause = match (r.pause.unwrap_or(false), &place, r.mode) {
            (false, _, _) => None,
            (true, None, _) => {
                return Err(
                    "pause = true needs the server's container (container = \"…\" or service = \"…\"); drctl cannot pause a server on this host"
                        .into(),
                )
            }
            (true, Some(_), NatsMode::Snapshot) => {
                return Err(
                    "pause = true belongs to mode = \"tarball\": a snapshot is consistent without it (and a paused server cannot answer); remove pause"
                        .into(),
                )
            }
            (true, Some(_), NatsMode::Tarball) => Some(
                r.pause_timeout
                    .unwrap_or_else(|| Duration::known(DEFAULT_PAUSE_TIMEOUT)),
            ),
        };
        let access = match r.mode {
            NatsMode::Tarball => {
                if r.url.is_some() || r.streams.is_some() {
                    return Err(
                        "url and streams belong to mode = \"snapshot\"; a tarball source reads data_dir (remove them, or set mode = \"snapshot\")"
                            .into(),
                    );
                }
                let data_dir: PathBuf = r
                    .data_dir
                    .ok_or("data_dir: tarball mode needs the store directory (or use mode = \"snapshot\" with url)")?;
                if let Some(place) = &place {
                    if !data_dir.is_absolute() {
                        return Err(format!(
                            "data_dir '{}' must be the absolute path of the store inside {place} (the -sd argument, e.g. /data)",
                            data_dir.display()
                        ));
                    }
                }
                NatsAccess::Tarball { data_dir, pause }
            }
            NatsMode::Snapshot => {
                if r.data_dir.is_some() {
                    return Err(
                        "data_dir belongs to mode = \"tarball\"; a snapshot source reads url (remove it, or set mode = \"tarball\")"
                            .into(),
                    );
                }
                // In a container the URL is optional (for credentials and the port): its host
                // is replaced by the container's address when the backup runs.
                let url = match (&place, r.url) {
                    (_, Some(url)) => url,
                    (Some(ContainerRef::Name(n)), None) => format!("nats://{n}:4222"),
                    (Some(ContainerRef::Service { service, .. }), None) => format!("nats://{service}:4222"),
                    (None, None) => return Err("url: snapshot mode needs url = \"nats://host:4222\"".into()),
                };
                NatsAccess::Snapshot {
                    url,
                    streams: r.streams.unwrap_or_default(),
                }
            }
        };
        Ok(NatsSource {
            name: r.name,
            place,
            access,
            monitor_url: r.monitor_url,
            retention: r.retention,
        })
    }
}

impl fmt::Debug for NatsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("NatsSource");
        d.field("name", &self.name).field("place", &self.place);
        match &self.access {
            NatsAccess::Tarball { data_dir, pause } => d
                .field("mode", &"tarball")
                .field("data_dir", data_dir)
                .field("pause", pause),
            NatsAccess::Snapshot { url, streams } => d
                .field("mode", &"snapshot")
                .field("url", &crate::secret::redact_url(url))
                .field("streams", streams),
        };
        d.field("monitor_url", &self.monitor_url).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(keys: &str) -> Result<NatsSource, String> {
        toml::from_str::<NatsSource>(&format!("name = \"events\"\n{keys}")).map_err(|e| e.to_string())
    }

    #[test]
    fn container_keys_pause_and_its_timeout() {
        let s = parse("service = \"nats\"\ndata_dir = \"/data\"\npause = true\n").unwrap();
        assert_eq!(
            s.place,
            Some(ContainerRef::Service {
                service: "nats".into(),
                project: None
            })
        );
        match &s.access {
            NatsAccess::Tarball { data_dir, pause } => {
                assert_eq!(data_dir, Path::new("/data"));
                assert_eq!(pause.as_ref().unwrap().std(), std::time::Duration::from_secs(120));
            }
            NatsAccess::Snapshot { .. } => panic!("expected tarball mode"),
        }
        let s =
            parse("container = \"app-nats\"\ndata_dir = \"/data\"\npause = true\npause_timeout = \"30s\"\n").unwrap();
        assert!(matches!(&s.access, NatsAccess::Tarball { pause: Some(t), .. } if t.std().as_secs() == 30));
        let e =
            parse("service = \"nats\"\ndata_dir = \"/data\"\npause = true\npause_timeout = \"soon\"\n").unwrap_err();
        assert!(e.contains("pause_timeout"), "{e}");
        let e = parse("data_dir = \"/data\"\npause = true\n").unwrap_err();
        assert!(e.contains("needs the server's container"), "{e}");
        let e = parse("service = \"nats\"\ndata_dir = \"data\"\n").unwrap_err();
        assert!(e.contains("must be the absolute path"), "{e}");
        let e = parse("service = \"nats\"\ndata_dir = \"/data\"\npause_timeout = \"1m\"\n").unwrap_err();
        assert!(e.contains("without pause = true"), "{e}");
        // Snapshot in a container: url optional, defaulting to the service's name.
        let s = parse("service = \"nats\"\nmode = \"snapshot\"\n").unwrap();
        assert!(matches!(&s.access, NatsAccess::Snapshot { url, .. } if url == "nats://nats:4222"));
        let e = parse("service = \"nats\"\nmode = \"snapshot\"\npause = true\n").unwrap_err();
        assert!(e.contains("belongs to mode = \"tarball\""), "{e}");
    }
}
