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
//! | postgres_cluster | `pg_basebackup` tar stream (+ the WAL archive, `wal-push`) | `tar` |

pub mod files;
pub mod nats;
pub mod postgres;
pub mod postgres_cluster;
pub mod redis;

use crate::catalog::Entry;
use crate::config::Config;
use crate::keys::Identities;
use crate::layout::check_names;
use crate::process;
use crate::retention::RetentionRef;
use crate::storage::Storage;
use crate::verification;
use anyhow::{anyhow, Result};
pub use files::FilesSource;
pub use nats::{NatsAccess, NatsMode, NatsSource};
pub use postgres::PostgresSource;
pub use postgres_cluster::ClusterSource;
pub use redis::RedisSource;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use tokio::io::AsyncRead;

/// What a backup is a backup of. Serialized as the manifest's `kind` (`"postgres"`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Postgres,
    Redis,
    Nats,
    Files,
    PostgresCluster,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Postgres => "postgres",
            Kind::Redis => "redis",
            Kind::Nats => "nats",
            Kind::Files => "files",
            Kind::PostgresCluster => "postgres_cluster",
        })
    }
}

/// What a source recorded about its dump, one struct per kind. In a manifest this is the pair
/// `"kind": "postgres", "facts": {…}` (adjacently tagged), the same JSON as the untyped map
/// earlier releases wrote, so their manifests read unchanged (fixture test in `catalog`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "facts", rename_all = "snake_case")]
pub enum Facts {
    Postgres(postgres::PostgresFacts),
    Redis(redis::RedisFacts),
    Nats(nats::NatsFacts),
    Files(files::FilesFacts),
    PostgresCluster(postgres_cluster::ClusterFacts),
}

/// The facts kept encrypted in `Manifest::private`, with the names they have in `facts`.
#[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct Private {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    row_counts: Option<std::collections::BTreeMap<String, i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    files: Option<std::collections::BTreeMap<String, crate::tarball::FileFact>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    files_hex_names: Option<std::collections::BTreeMap<String, crate::tarball::FileFact>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    globals: Option<String>,
}

impl Facts {
    /// Takes out what describes the data itself (per-file hashes, table names, row counts):
    /// it is stored encrypted (`Manifest::private`), not in the plaintext manifest.
    pub fn take_private(&mut self) -> Option<serde_json::Value> {
        let p = match self {
            Facts::Postgres(f) => Private {
                row_counts: f.row_counts.take(),
                globals: f.globals.take(),
                ..Private::default()
            },
            Facts::Files(f) => Private {
                files: f.tar.files.take(),
                files_hex_names: f.tar.files_hex_names.take(),
                ..Private::default()
            },
            Facts::Redis(_) | Facts::Nats(_) | Facts::PostgresCluster(_) => Private::default(),
        };
        (p != Private::default()).then(|| serde_json::to_value(p).expect("facts serialize"))
    }

    /// Puts back what `take_private` took (decrypted).
    pub fn put_private(&mut self, v: serde_json::Value) -> anyhow::Result<()> {
        let p: Private = serde_json::from_value(v)?;
        match self {
            Facts::Postgres(f) => {
                f.row_counts = p.row_counts.or(f.row_counts.take());
                f.globals = p.globals.or(f.globals.take());
            }
            Facts::Files(f) => {
                f.tar.files = p.files.or(f.tar.files.take());
                f.tar.files_hex_names = p.files_hex_names.or(f.tar.files_hex_names.take());
            }
            Facts::Redis(_) | Facts::Nats(_) | Facts::PostgresCluster(_) => {}
        }
        Ok(())
    }

    pub fn kind(&self) -> Kind {
        match self {
            Facts::Postgres(_) => Kind::Postgres,
            Facts::Redis(_) => Kind::Redis,
            Facts::Nats(_) => Kind::Nats,
            Facts::Files(_) => Kind::Files,
            Facts::PostgresCluster(_) => Kind::PostgresCluster,
        }
    }

    /// Bytes the producer meant to send, where it knows (an RDB file's size): the backup is
    /// refused when the stream carried a different number.
    pub fn expected_size(&self) -> Option<u64> {
        match self {
            Facts::Redis(r) => r.expected_size,
            _ => None,
        }
    }
}

/// For a source with a WAL archive (`postgres_cluster`): the first segment the oldest of the
/// `kept` base backups needs, as (name, number, segment size); None for other kinds or when
/// nothing is kept (then nothing is expired).
pub fn wal_floor(kept: &[&crate::catalog::Manifest]) -> Option<(String, u64, u64)> {
    kept.iter()
        .filter_map(|m| match &m.facts {
            Facts::PostgresCluster(f) => {
                let seg = postgres_cluster::wal::Segment::containing(f.timeline, f.start_lsn, f.segment_size);
                Some((seg.name(f.segment_size), seg.number, f.segment_size))
            }
            _ => None,
        })
        .min_by_key(|(_, n, _)| *n)
}

/// Keys of facts written by a newer release, kept so that `drctl copy` (which rewrites
/// manifests) does not drop them. Never read by key.
pub type UnknownFacts = serde_json::Map<String, serde_json::Value>;

/// A running dump: read `reader` to the end, then call `finish` — a dump is good only if the
/// producer also says so (a pg_dump that dies half-way closes its stdout like one that is done).
pub struct Dump {
    pub reader: Box<dyn AsyncRead + Unpin + Send>,
    /// What the object's name ends with before compression/encryption suffixes, e.g. `pgdump`.
    pub format: &'static str,
    pub finish: Finish,
}

/// How a producer reports that it finished well, and the facts recorded in the manifest
/// (server versions, counts, per-file hashes — some only known at the end).
pub enum Finish {
    /// A child process; the facts were known before it started.
    Process(Box<process::Completion>, Facts),
    /// An in-process producer that returns the facts when it is done.
    Task(tokio::task::JoinHandle<Result<Facts>>),
    /// The same, with something to undo however it ends (a temporary container to remove):
    /// `wait` and `kill` both run it before they return.
    TaskThen(
        tokio::task::JoinHandle<Result<Facts>>,
        futures::future::BoxFuture<'static, ()>,
    ),
}

impl Finish {
    pub async fn wait(self) -> Result<Facts> {
        match self {
            Finish::Process(c, facts) => (*c).wait().await.map(|_| facts),
            Finish::Task(h) => h.await.map_err(|e| anyhow!("producer task failed: {e}"))?,
            Finish::TaskThen(h, cleanup) => {
                let r = h.await.map_err(|e| anyhow!("producer task failed: {e}"));
                cleanup.await;
                r?
            }
        }
    }

    pub async fn kill(self) {
        match self {
            Finish::Process(c, _) => (*c).kill().await,
            Finish::Task(h) => h.abort(),
            Finish::TaskThen(h, cleanup) => {
                h.abort();
                cleanup.await;
            }
        }
    }
}

pub async fn start(source: &SourceConfig) -> Result<Dump> {
    match source {
        SourceConfig::Postgres(s) => postgres::start_dump(s).await,
        SourceConfig::Redis(s) => redis::start_dump(s).await,
        SourceConfig::Nats(s) => nats::start_dump(s).await,
        SourceConfig::Files(s) => files::start_dump(s).await,
        SourceConfig::PostgresCluster(s) => postgres_cluster::start_dump(s).await,
    }
}

#[derive(Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceConfig {
    Postgres(PostgresSource),
    Redis(RedisSource),
    Nats(NatsSource),
    Files(FilesSource),
    PostgresCluster(ClusterSource),
}

impl fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceConfig::Postgres(s) => s.fmt(f),
            SourceConfig::Redis(s) => s.fmt(f),
            SourceConfig::Nats(s) => s.fmt(f),
            SourceConfig::Files(s) => s.fmt(f),
            SourceConfig::PostgresCluster(s) => s.fmt(f),
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
            SourceConfig::PostgresCluster(s) => &s.name,
        }
    }
    pub fn kind(&self) -> Kind {
        match self {
            SourceConfig::Postgres(_) => Kind::Postgres,
            SourceConfig::Redis(_) => Kind::Redis,
            SourceConfig::Nats(_) => Kind::Nats,
            SourceConfig::Files(_) => Kind::Files,
            SourceConfig::PostgresCluster(_) => Kind::PostgresCluster,
        }
    }
    /// The file paths in the section, which the config resolves against its own directory.
    pub fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        match self {
            SourceConfig::Postgres(pg) => match &mut pg.access {
                postgres::PostgresAccess::Host { password_file, .. } => password_file.iter_mut().collect(),
                postgres::PostgresAccess::Container { .. } => Vec::new(),
            },
            SourceConfig::Redis(r) => match &mut r.access {
                redis::RedisAccess::File { rdb_path, .. } => rdb_path.iter_mut().collect(),
                redis::RedisAccess::Replication { .. } | redis::RedisAccess::Container { .. } => Vec::new(),
            },
            SourceConfig::Nats(n) => match &mut n.access {
                // In a container, data_dir is a path inside it, not relative to the config.
                NatsAccess::Tarball { .. } if n.place.is_some() => Vec::new(),
                NatsAccess::Tarball { data_dir, .. } => vec![data_dir],
                NatsAccess::Snapshot { .. } => Vec::new(),
            },
            SourceConfig::Files(f) => f.host_paths_mut(),
            SourceConfig::PostgresCluster(c) => {
                let password_file = match &mut c.server {
                    postgres_cluster::ClusterServer::Host { password_file, .. } => password_file.as_mut(),
                    postgres_cluster::ClusterServer::Container { .. } => None,
                };
                password_file.into_iter().chain(c.pg_bin_dir.iter_mut()).collect()
            }
        }
    }
    pub fn retention(&self) -> Option<&RetentionRef> {
        match self {
            SourceConfig::Postgres(s) => s.retention.as_ref(),
            SourceConfig::Redis(s) => s.retention.as_ref(),
            SourceConfig::Nats(s) => s.retention.as_ref(),
            SourceConfig::Files(s) => s.retention.as_ref(),
            SourceConfig::PostgresCluster(s) => s.retention.as_ref(),
        }
    }
}

pub(crate) fn validate_sources(sources: &[SourceConfig], errors: &mut Vec<String>) {
    check_names("source", sources.iter().map(|s| s.name()), errors);
    for (i, s) in sources.iter().enumerate() {
        let at = format!("source[{i}] ('{}')", s.name());
        match s {
            SourceConfig::Postgres(pg) => {
                if let postgres::PostgresAccess::Host { url, .. } = &pg.access {
                    if let Err(e) = crate::sources::postgres::ConnInfo::parse(url) {
                        errors.push(format!("{at}.url: {e}"));
                    }
                }
            }
            SourceConfig::Redis(r) => {
                if let Some(url) = r.url() {
                    match url::Url::parse(url) {
                        Ok(u) if u.scheme() == "redis" => {}
                        _ => errors.push(format!("{at}.url: expected redis://[:password@]host:6379")),
                    }
                }
                if let Some(e) = r.bgsave_timeout.error() {
                    errors.push(format!("{at}.bgsave_timeout: {e}"));
                }
            }
            SourceConfig::Nats(n) => {
                if let NatsAccess::Snapshot { url, .. } = &n.access {
                    match url::Url::parse(url) {
                        Ok(x) if x.scheme() == "nats" => {}
                        _ => errors.push(format!(
                            "{at}.url: expected nats://[user:password@]host:4222 or nats://TOKEN@host:4222"
                        )),
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
            SourceConfig::Files(f) => f.validate(&at, errors),
            SourceConfig::PostgresCluster(c) => {
                if let postgres_cluster::ClusterServer::Host { url, .. } = &c.server {
                    if let Err(e) = crate::sources::postgres::ConnInfo::parse(url) {
                        errors.push(format!("{at}.url: {e}"));
                    }
                }
            }
        }
    }
}

/// Where a restore loads into: a running server of one kind (`--target-url`, parsed before
/// anything else, so a password typed on the command line is refused first), or the server in a
/// container (`--target container:NAME | service:NAME`), of whatever kind the backup is.
pub enum Target {
    Postgres(postgres::ConnInfo),
    Redis(String),
    Nats(String),
    Container(crate::place::ContainerRef),
}

impl Target {
    pub fn parse(url: &str) -> Result<Target> {
        let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
        // A secret in argv is readable by every user on the host (`ps`): the password, or for
        // NATS a token given as the user name alone (`nats://TOKEN@host`).
        let parsed = url::Url::parse(url).ok();
        let secret = parsed.as_ref().and_then(|u| match u.password() {
            Some(pw) => Some(pw.to_string()),
            None if scheme == "nats" && !u.username().is_empty() => Some(u.username().to_string()),
            None => None,
        });
        if let Some(raw) = secret {
            let decoded = crate::secret::decode_userinfo(&raw);
            if std::env::args().any(|a| a.contains(&raw) || a.contains(&decoded)) {
                let also = if matches!(scheme, "postgres" | "postgresql") {
                    "pass it through PGPASSWORD or PGPASSFILE, or "
                } else {
                    ""
                };
                anyhow::bail!(
                    "--target-url puts a password on the command line (a NATS token counts as one), where any user of this host can read it; {also}put the URL in DRCTL_TARGET_URL instead"
                );
            }
        }
        Ok(match scheme {
            "postgres" | "postgresql" => Target::Postgres(postgres::restore::parse_target(url)?),
            "redis" => Target::Redis(url.to_string()),
            "nats" => Target::Nats(url.to_string()),
            _ => anyhow::bail!(
                "--target-url '{}' is not postgres://, redis:// or nats:// (for files, use --output-dir)",
                crate::secret::redact_url(url)
            ),
        })
    }

    /// `--target container:NAME` or `service:NAME` (with `--compose-project`).
    pub fn container(spec: &str, compose_project: Option<String>) -> Result<Target> {
        let place = match spec.split_once(':') {
            Some(("container", name)) => {
                if compose_project.is_some() {
                    anyhow::bail!("--compose-project belongs to --target service:NAME, not container:NAME");
                }
                crate::place::ContainerRef::from_keys(Some(name.to_string()), None, None)
            }
            Some(("service", name)) => {
                crate::place::ContainerRef::from_keys(None, Some(name.to_string()), compose_project)
            }
            _ => anyhow::bail!(
                "--target '{spec}' is not container:NAME or service:NAME (for a server reached over the network, use --target-url)"
            ),
        }
        .map_err(|e| anyhow!("--target: {e}"))?;
        Ok(Target::Container(
            place.ok_or_else(|| anyhow!("--target '{spec}' names no container"))?,
        ))
    }

    fn kind(&self) -> Option<Kind> {
        match self {
            Target::Postgres(_) => Some(Kind::Postgres),
            Target::Redis(_) => Some(Kind::Redis),
            Target::Nats(_) => Some(Kind::Nats),
            Target::Container(_) => None,
        }
    }
}

/// Loads a backup into a running server (`--target-url`).
pub async fn restore_into(
    target: &Target,
    entry: &Entry,
    storages: &[Storage],
    identities: &Identities,
    opts: Options<'_>,
) -> Result<Restored> {
    let m = &entry.manifest;
    match (&m.facts, target) {
        (Facts::Postgres(_), Target::Postgres(conn)) => {
            postgres::restore::restore_into(conn, entry, storages, identities, opts).await
        }
        (Facts::Redis(_), Target::Redis(url)) => {
            redis::restore::restore_into(url, entry, storages, identities, opts).await
        }
        (Facts::Nats(f), Target::Nats(url)) => nats::restore_into(f, url, entry, storages, identities, opts).await,
        (Facts::Postgres(_), Target::Container(place)) => {
            postgres::restore::restore_into_container(place, entry, storages, identities, opts).await
        }
        (Facts::Redis(_), Target::Container(place)) => {
            redis::restore::restore_into_container(place, entry, storages, identities, opts).await
        }
        (Facts::Nats(f), Target::Container(place)) => {
            nats::restore_into_container(f, place, entry, storages, identities, opts).await
        }
        (Facts::Files(_), _) => anyhow::bail!("files backups are restored with --output-dir, not into a server"),
        (Facts::PostgresCluster(_), _) => anyhow::bail!(
            "'{}' is a base backup of a whole cluster: restore it with --target-datadir DIR (point-in-time recovery into a new data directory), not into a running server",
            m.source
        ),
        (facts, target) => anyhow::bail!(
            "'{}' is a {} backup, but --target-url points at {}; give a {}:// URL (or use --output-dir)",
            m.source,
            facts.kind(),
            target.kind().map(|k| k.to_string()).unwrap_or_default(),
            facts.kind()
        ),
    }
}

/// Writes a backup as files a person can use by hand (`--output-dir`).
pub async fn restore_to_dir(
    dir: &Path,
    entry: &Entry,
    storages: &[Storage],
    identities: &Identities,
    opts: Options<'_>,
) -> Result<Restored> {
    match &entry.manifest.facts {
        Facts::Postgres(_) => postgres::restore::restore_to_dir(dir, entry, storages, identities).await,
        Facts::Redis(_) => redis::restore::restore_to_dir(dir, entry, storages, identities).await,
        Facts::Nats(_) => nats::restore_to_dir(dir, entry, storages, identities, opts).await,
        Facts::Files(_) => files::restore_to_dir(dir, entry, storages, identities, opts).await,
        Facts::PostgresCluster(_) => postgres_cluster::restore::restore_to_dir(dir, entry, storages, identities).await,
    }
}

/// Verifies a backup in a throwaway place: the checks, the measured restore time (RTO), and a
/// description of the sandbox.
pub async fn verify(
    cfg: &Config,
    entry: &Entry,
    storages: &[Storage],
    identities: &Identities,
) -> (Vec<verification::Check>, Option<f64>, String) {
    let m = &entry.manifest;
    match &m.facts {
        Facts::Postgres(f) => {
            postgres::verify::verify(cfg, entry, f, cfg.source(&m.source), storages, identities).await
        }
        Facts::Redis(f) => {
            verification::with_artifact(cfg, entry, storages, identities, |file, work, t0| async move {
                redis::verify::verify(f, &file, &work, t0).await
            })
            .await
        }
        Facts::Nats(f) => {
            verification::with_artifact(cfg, entry, storages, identities, |file, work, t0| async move {
                nats::verify::verify(f, &file, &work, t0).await
            })
            .await
        }
        Facts::Files(f) => {
            verification::with_artifact(cfg, entry, storages, identities, |file, work, t0| async move {
                files::verify::verify(f, &file, &work, t0).await
            })
            .await
        }
        Facts::PostgresCluster(f) => postgres_cluster::verify::verify(cfg, entry, f, storages, identities).await,
    }
}

/// How to restore: into a running server (`clean`, `jobs`, `no_owner`) or as files.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    pub clean: bool,
    pub jobs: usize,
    pub no_owner: bool,
    /// Keep setuid/setgid bits of extracted files (stripped by default).
    pub keep_special_bits: bool,
    /// Where a dump is decrypted before it is loaded into a server (`--scratch-dir`).
    pub scratch_dir: &'a Path,
}

/// What a restore brought back, for `commands/` to report.
pub enum Restored {
    Database {
        source: String,
        backup: String,
        target: String,
        replaced: postgres::restore::Replaced,
        /// Roles of the backup that the target lacked, created before the load.
        roles_created: Vec<String>,
    },
    RedisKeys {
        source: String,
        backup: String,
        target: String,
        keys: u64,
    },
    NatsStreams {
        source: String,
        backup: String,
        streams: Vec<(String, nats::StreamState)>,
    },
    /// A decrypted artifact written as a file, with what to do with it.
    Wrote { path: PathBuf, hint: Option<String> },
    /// An archive extracted into a directory, with what to do with it.
    Extracted { dir: PathBuf, hint: Option<String> },
}
