//! The config structs. Each `[[storage]]` and `[[source]]` is a tagged enum chosen by `type`;
//! a variant carries its own fields (STYLE lesson 4). Unknown keys are errors everywhere.

use crate::retention::Policy;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Config {
    pub encryption: EncryptionConfig,
    pub compression: CompressionConfig,
    pub storages: Vec<StorageConfig>,
    pub sources: Vec<SourceConfig>,
    pub prune: PruneConfig,
    pub backup: BackupConfig,
    pub daemon: DaemonConfig,
    pub verify: VerifyConfig,
    pub jobs: Vec<JobConfig>,
    pub notify: Vec<NotifyConfig>,
    /// Retention per source name, resolved from files or inline tables at load time.
    pub policies: std::collections::BTreeMap<String, Policy>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    /// With several storages: commit nowhere unless every storage has every byte. Off by
    /// default: one storage failing leaves a degraded but complete backup on the others.
    #[serde(default)]
    pub require_all: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneConfig {
    /// Prune the run's sources after a fully successful `drctl backup` (never after a failed one).
    #[serde(default = "yes")]
    pub after_backup: bool,
    /// Data objects without a manifest are removed only when older than this ("24h").
    #[serde(default = "default_orphan_age")]
    pub orphan_age: String,
}

fn yes() -> bool {
    true
}

fn default_orphan_age() -> String {
    "24h".into()
}

impl Default for PruneConfig {
    fn default() -> Self {
        PruneConfig {
            after_backup: true,
            orphan_age: default_orphan_age(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Time zone the job schedules are read in (IANA name).
    #[serde(default = "utc")]
    pub timezone: String,
    /// On SIGTERM, how long a running job may take to finish before its uploads are aborted.
    #[serde(default = "default_grace")]
    pub grace_period: String,
    /// Where run status (last success/failure per source) and process locks live.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// How often the daemon checks each job's `max_age` and refreshes age metrics.
    #[serde(default = "default_stale_check")]
    pub stale_check_interval: String,
}

fn utc() -> String {
    "UTC".into()
}
fn default_grace() -> String {
    "5m".into()
}
fn default_stale_check() -> String {
    "5m".into()
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            timezone: utc(),
            grace_period: default_grace(),
            state_dir: None,
            stale_check_interval: default_stale_check(),
        }
    }
}

impl DaemonConfig {
    /// `state_dir`, else /var/lib/drctl for root, else $XDG_STATE_HOME/drctl or ~/.local/state/drctl.
    pub fn state_dir(&self) -> PathBuf {
        if let Some(d) = &self.state_dir {
            return d.clone();
        }
        if crate::is_root() {
            return PathBuf::from("/var/lib/drctl");
        }
        if let Ok(x) = std::env::var("XDG_STATE_HOME") {
            return PathBuf::from(x).join("drctl");
        }
        PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/tmp".into())).join(".local/state/drctl")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum VerifySandbox {
    /// A temporary local cluster from /usr/lib/postgresql/<major>/bin.
    #[default]
    Local,
    /// An existing scratch server (`[verify] url`): a new database, dropped afterwards.
    Url,
    /// A `postgres:<major>` container (`[verify] docker_image`) on the local Docker engine.
    Docker,
}

impl fmt::Display for VerifySandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VerifySandbox::Local => "local",
            VerifySandbox::Url => "url",
            VerifySandbox::Docker => "docker",
        })
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    #[serde(default)]
    pub sandbox: VerifySandbox,
    /// Scratch server for `sandbox = "url"` (password via ${ENV} or PGPASSWORD).
    #[serde(default)]
    pub url: Option<String>,
    /// Server binaries for the local sandbox [default: /usr/lib/postgresql/<major>/bin].
    #[serde(default)]
    pub pg_bin_dir: Option<PathBuf>,
    /// Where the sandbox and the decrypted dump live during a verification [default: $TMPDIR].
    #[serde(default)]
    pub work_dir: Option<PathBuf>,
    /// Image for `sandbox = "docker"`; `{major}` becomes the dumped server's major version
    /// [default: "postgres:{major}"]. It must keep the official image's contract:
    /// POSTGRES_PASSWORD, port 5432, `postgres -c …` arguments.
    #[serde(default = "default_docker_image")]
    pub docker_image: String,
    /// When the daemon verifies every source (cron) [default: monthly, "0 5 1 * *"].
    /// Needs encryption.identity_file on the verifying host.
    #[serde(default = "default_verify_schedule")]
    pub schedule: String,
}

fn default_verify_schedule() -> String {
    "0 5 1 * *".into()
}

fn default_docker_image() -> String {
    "postgres:{major}".into()
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig {
            sandbox: VerifySandbox::Local,
            url: None,
            pg_bin_dir: None,
            work_dir: None,
            docker_image: default_docker_image(),
            schedule: default_verify_schedule(),
        }
    }
}

impl VerifyConfig {
    pub fn work_dir(&self) -> PathBuf {
        self.work_dir.clone().unwrap_or_else(std::env::temp_dir)
    }

    /// `docker_image` for a server of major version `major`, as (name, tag).
    pub fn docker_image_for(&self, major: u32) -> Result<(String, String), String> {
        let full = self.docker_image.replace("{major}", &major.to_string());
        // The tag follows the last ':' after the last '/' ("registry:5000/postgres" has none).
        let (name, tag) = match full.rfind(':') {
            Some(i) if !full[i..].contains('/') => (&full[..i], &full[i + 1..]),
            _ => (full.as_str(), "latest"),
        };
        let ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c));
        if !ok(name) || !ok(tag) || full.contains(char::is_whitespace) {
            return Err(format!(
                "'{}' is not an image reference (write it like \"postgres:{{major}}\" or \"registry.example.com/pg:16\")",
                self.docker_image
            ));
        }
        Ok((name.to_string(), tag.to_string()))
    }
}

impl fmt::Debug for VerifyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyConfig")
            .field("sandbox", &self.sandbox)
            .field("url", &self.url.as_deref().map(crate::sources::postgres::redact_url))
            .field("pg_bin_dir", &self.pg_bin_dir)
            .field("work_dir", &self.work_dir)
            .field("docker_image", &self.docker_image)
            .field("schedule", &self.schedule)
            .finish()
    }
}

impl fmt::Debug for NatsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSource")
            .field("name", &self.name)
            .field("mode", &self.mode)
            .field("data_dir", &self.data_dir)
            .field("url", &self.url.as_deref().map(crate::sources::postgres::redact_url))
            .field("streams", &self.streams)
            .field("monitor_url", &self.monitor_url)
            .finish()
    }
}

/// A scheduled run of one or more sources, backed up together as one run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    pub name: String,
    /// Source names; empty means every source.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Cron: 5 fields, or 6 with seconds first.
    pub schedule: String,
    /// healthchecks.io-style URL: `/start` when a run starts, the URL on success, `/fail` on failure.
    #[serde(default)]
    pub ping_url: Option<String>,
    /// Alert when the newest complete backup of a source in this job is older than this ("26h").
    #[serde(default)]
    pub max_age: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyKind {
    Webhook,
    Slack,
    Discord,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    #[serde(rename = "type")]
    pub kind: NotifyKind,
    pub url: String,
}

// Webhook URLs (Slack, Discord) carry their secret in the path.
impl fmt::Debug for NotifyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotifyConfig")
            .field("kind", &self.kind)
            .field("url", &"<redacted>")
            .finish()
    }
}

/// `retention = "policies/db.toml"` or `retention = { keep_daily = 7, … }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RetentionRef {
    File(PathBuf),
    Inline(Policy),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// age public keys (`age1…`). The backup host holds only these: it cannot read its own backups.
    pub recipients: Vec<String>,
    /// Private identity file for restore/verify; usually absent on the backup host.
    #[serde(default)]
    pub identity_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    Zstd,
    Gzip,
    None,
}

impl Algorithm {
    /// File-name suffix, so an operator without drctl knows which tool undoes it.
    pub fn suffix(self) -> &'static str {
        match self {
            Algorithm::Zstd => ".zst",
            Algorithm::Gzip => ".gz",
            Algorithm::None => "",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Algorithm::Zstd => "zstd",
            Algorithm::Gzip => "gzip",
            Algorithm::None => "none",
        })
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionConfig {
    #[serde(default = "default_algorithm")]
    pub algorithm: Algorithm,
    #[serde(default)]
    pub level: Option<i32>,
}

fn default_algorithm() -> Algorithm {
    Algorithm::Zstd
}

impl Default for CompressionConfig {
    fn default() -> Self {
        CompressionConfig {
            algorithm: Algorithm::Zstd,
            level: None,
        }
    }
}

impl CompressionConfig {
    pub fn effective_level(&self) -> i32 {
        self.level.unwrap_or(match self.algorithm {
            Algorithm::Zstd => 3,
            Algorithm::Gzip => 6,
            Algorithm::None => 0,
        })
    }
}

#[derive(Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum StorageConfig {
    Fs(FsStorage),
    S3(S3Storage),
    B2(B2Storage),
    Sftp(SftpStorage),
    Webdav(WebdavStorage),
}

/// Backblaze B2 through its native API (for B2's S3 endpoint use `type = "s3"`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct B2Storage {
    pub name: String,
    pub bucket: String,
    pub bucket_id: String,
    pub application_key_id: String,
    pub application_key: String,
    #[serde(default)]
    pub root: Option<String>,
}

impl fmt::Debug for B2Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("B2Storage")
            .field("name", &self.name)
            .field("bucket", &self.bucket)
            .field("root", &self.root)
            .field("application_key", &"<redacted>")
            .finish()
    }
}

/// SFTP, e.g. a Hetzner Storage Box on port 23 with key authentication. Uses the system `ssh`
/// client; the server's host key must be in the drctl user's `~/.ssh/known_hosts`
/// (`ssh-keyscan -p 23 HOST >> ~/.ssh/known_hosts`) unless `known_hosts` says otherwise.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftpStorage {
    pub name: String,
    /// `host:port`, e.g. "u123456.your-storagebox.de:23".
    pub endpoint: String,
    pub user: String,
    /// Private key file (no passphrase, or loaded in an ssh-agent).
    pub key: PathBuf,
    #[serde(default)]
    pub root: Option<String>,
    /// "strict" (default: the host key must already be in ~/.ssh/known_hosts), "add" (trust a
    /// new host on first use and pin its key: ssh's accept-new), or "accept" (no host key
    /// checking at all: only for throwaway setups).
    #[serde(default = "default_known_hosts")]
    pub known_hosts: String,
}

fn default_known_hosts() -> String {
    "strict".into()
}

/// WebDAV (a Storage Box also speaks it). OpenDAL's WebDAV writer holds a whole object in
/// memory, so artifacts are stored as numbered parts of at most `part_size`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebdavStorage {
    pub name: String,
    /// e.g. "https://u123456.your-storagebox.de"
    pub endpoint: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub root: Option<String>,
    #[serde(default = "default_part_size")]
    pub part_size: String,
}

fn default_part_size() -> String {
    "16MiB".into()
}

impl fmt::Debug for WebdavStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebdavStorage")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("root", &self.root)
            .field("part_size", &self.part_size)
            .finish()
    }
}

/// "16MiB", "512KiB", "1GiB", "1000000" → bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..split]
        .parse()
        .map_err(|_| format!("'{s}' is not a size like 16MiB"))?;
    let mult = match t[split..].trim() {
        "" | "B" => 1,
        "KiB" | "K" | "KB" => 1 << 10,
        "MiB" | "M" | "MB" => 1 << 20,
        "GiB" | "G" | "GB" => 1 << 30,
        other => return Err(format!("'{s}': unknown unit '{other}' (use KiB, MiB, GiB)")),
    };
    Ok(n * mult)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsStorage {
    pub name: String,
    pub root: PathBuf,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Storage {
    pub name: String,
    pub bucket: String,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    #[serde(default)]
    pub root: Option<String>,
    /// Path-style requests are the default (MinIO, R2 and most S3 clones want them).
    #[serde(default)]
    pub virtual_host_style: bool,
    /// Per request; a stalled request is retried (4 times, with backoff) after this.
    #[serde(default = "default_timeout")]
    pub timeout: String,
}

fn default_timeout() -> String {
    "60s".into()
}

fn default_region() -> String {
    "auto".into()
}

// Hand-written so a `{:?}` in a log line can never print a key.
impl fmt::Debug for S3Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Storage")
            .field("name", &self.name)
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("root", &self.root)
            .field("access_key_id", &self.access_key_id.as_ref().map(|_| "<redacted>"))
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageConfig::Fs(s) => s.fmt(f),
            StorageConfig::S3(s) => s.fmt(f),
            StorageConfig::B2(s) => s.fmt(f),
            StorageConfig::Sftp(s) => s.fmt(f),
            StorageConfig::Webdav(s) => s.fmt(f),
        }
    }
}

impl StorageConfig {
    pub fn name(&self) -> &str {
        match self {
            StorageConfig::Fs(s) => &s.name,
            StorageConfig::S3(s) => &s.name,
            StorageConfig::B2(s) => &s.name,
            StorageConfig::Sftp(s) => &s.name,
            StorageConfig::Webdav(s) => &s.name,
        }
    }
    pub fn kind(&self) -> &'static str {
        match self {
            StorageConfig::Fs(_) => "fs",
            StorageConfig::S3(_) => "s3",
            StorageConfig::B2(_) => "b2",
            StorageConfig::Sftp(_) => "sftp",
            StorageConfig::Webdav(_) => "webdav",
        }
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
            .field("url", &crate::sources::postgres::redact_url(&self.url))
            .field("mode", &self.mode)
            .field("rdb_path", &self.rdb_path)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesSource {
    pub name: String,
    /// Files and directories (absolute, or relative to the config file).
    pub paths: Vec<PathBuf>,
    /// Glob patterns matched against full paths, e.g. "**/*.log".
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub retention: Option<RetentionRef>,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSource {
    pub name: String,
    /// `postgres://user[:password]@host:port/db?sslmode=…`. The password may come from
    /// `${ENV}` in the URL, from `password_file`, or from `PGPASSFILE`.
    pub url: String,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Use this pg_dump instead of searching PATH and /usr/lib/postgresql/*/bin.
    #[serde(default)]
    pub pg_dump_path: Option<PathBuf>,
    /// Retention policy file or inline table; default 7 daily / 4 weekly / 3 monthly.
    #[serde(default)]
    pub retention: Option<RetentionRef>,
    /// Record exact row counts in the dump's snapshot, for verification (off for huge databases).
    #[serde(default = "yes")]
    pub row_counts: bool,
    /// Assertions verification runs on the restored copy: `[[source.verify]] sql = "…"`.
    #[serde(default)]
    pub verify: Vec<SqlAssertion>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlAssertion {
    /// A query returning one boolean, true when the restored data is as expected.
    pub sql: String,
}

impl fmt::Debug for PostgresSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSource")
            .field("name", &self.name)
            .field("url", &crate::sources::postgres::redact_url(&self.url))
            .field("password_file", &self.password_file)
            .field("pg_dump_path", &self.pg_dump_path)
            .field("retention", &self.retention)
            .field("row_counts", &self.row_counts)
            .field("verify", &self.verify)
            .finish()
    }
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

/// The top-level table split into sections, so that each section (and each array element)
/// is deserialized on its own and one bad storage does not hide the errors of a bad source.
pub(super) struct RawSections {
    encryption: Option<toml::Value>,
    compression: Option<toml::Value>,
    prune: Option<toml::Value>,
    backup: Option<toml::Value>,
    daemon: Option<toml::Value>,
    verify: Option<toml::Value>,
    job: Vec<toml::Value>,
    notify: Vec<toml::Value>,
    storage: Vec<toml::Value>,
    source: Vec<toml::Value>,
}

impl RawSections {
    pub(super) fn split(table: toml::Table, errors: &mut Vec<String>) -> RawSections {
        let mut raw = RawSections {
            encryption: None,
            compression: None,
            prune: None,
            backup: None,
            daemon: None,
            verify: None,
            job: Vec::new(),
            notify: Vec::new(),
            storage: Vec::new(),
            source: Vec::new(),
        };
        for (k, v) in table {
            match k.as_str() {
                "encryption" => raw.encryption = Some(v),
                "compression" => raw.compression = Some(v),
                "prune" => raw.prune = Some(v),
                "backup" => raw.backup = Some(v),
                "daemon" => raw.daemon = Some(v),
                "verify" => raw.verify = Some(v),
                "storage" | "source" | "job" | "notify" => match v {
                    toml::Value::Array(items) => match k.as_str() {
                        "storage" => raw.storage = items,
                        "source" => raw.source = items,
                        "job" => raw.job = items,
                        _ => raw.notify = items,
                    },
                    _ => errors.push(format!("{k}: must be an array of tables, written [[{k}]]")),
                },
                other => errors.push(format!(
                    "{other}: unknown key (expected encryption, compression, backup, prune, daemon, verify, storage, source, job, notify)"
                )),
            }
        }
        raw
    }

    pub(super) fn build(self, base: &Path, errors: &mut Vec<String>) -> Option<Config> {
        let encryption = match self.encryption {
            Some(v) => section::<EncryptionConfig>("encryption", v, errors),
            None => {
                errors.push("encryption: missing section; add [encryption] recipients = [\"age1…\"] (create a key with `drctl keygen`)".into());
                None
            }
        };
        let compression = match self.compression {
            Some(v) => section::<CompressionConfig>("compression", v, errors),
            None => Some(CompressionConfig::default()),
        };
        let prune = match self.prune {
            Some(v) => section::<PruneConfig>("prune", v, errors),
            None => Some(PruneConfig::default()),
        };
        if let Some(p) = &prune {
            if let Err(e) = crate::retention::parse_duration(&p.orphan_age) {
                errors.push(format!("prune.orphan_age: {e}"));
            }
        }
        let backup = match self.backup {
            Some(v) => section::<BackupConfig>("backup", v, errors),
            None => Some(BackupConfig::default()),
        };
        let daemon = match self.daemon {
            Some(v) => section::<DaemonConfig>("daemon", v, errors),
            None => Some(DaemonConfig::default()),
        };
        if let Some(d) = &daemon {
            if let Err(e) = crate::schedule::parse_tz(&d.timezone) {
                errors.push(format!("daemon.timezone: {e}"));
            }
            for (k, v) in [
                ("grace_period", &d.grace_period),
                ("stale_check_interval", &d.stale_check_interval),
            ] {
                if let Err(e) = crate::retention::parse_duration(v) {
                    errors.push(format!("daemon.{k}: {e}"));
                }
            }
        }
        let verify = match self.verify {
            Some(v) => section::<VerifyConfig>("verify", v, errors),
            None => Some(VerifyConfig::default()),
        };
        if let Some(v) = &verify {
            if let Err(e) = crate::schedule::validate(&v.schedule) {
                errors.push(format!("verify.schedule: '{}': {e}", v.schedule));
            }
            match (&v.sandbox, &v.url) {
                (VerifySandbox::Url, None) => {
                    errors.push("verify.url: sandbox = \"url\" needs url = \"postgres://…\" (a scratch server)".into())
                }
                (_, Some(u)) => {
                    if let Err(e) = crate::sources::postgres::ConnInfo::parse(u) {
                        errors.push(format!("verify.url: {e}"));
                    }
                }
                _ => {}
            }
            // Any major will do: this checks the template's shape, not a particular image.
            if let Err(e) = v.docker_image_for(15) {
                errors.push(format!("verify.docker_image: {e}"));
            }
        }
        let jobs: Vec<Option<JobConfig>> = self
            .job
            .into_iter()
            .enumerate()
            .map(|(i, v)| section(&format!("job[{i}]"), v, errors))
            .collect();
        let notify: Vec<Option<NotifyConfig>> = self
            .notify
            .into_iter()
            .enumerate()
            .map(|(i, v)| section(&format!("notify[{i}]"), v, errors))
            .collect();
        let storages: Vec<Option<StorageConfig>> = self
            .storage
            .into_iter()
            .enumerate()
            .map(|(i, v)| section(&format!("storage[{i}]"), v, errors))
            .collect();
        let sources: Vec<Option<SourceConfig>> = self
            .source
            .into_iter()
            .enumerate()
            .map(|(i, v)| section(&format!("source[{i}]"), v, errors))
            .collect();
        let complete = encryption.is_some()
            && compression.is_some()
            && prune.is_some()
            && backup.is_some()
            && daemon.is_some()
            && verify.is_some()
            && jobs.iter().all(Option::is_some)
            && notify.iter().all(Option::is_some)
            && storages.iter().all(Option::is_some)
            && sources.iter().all(Option::is_some);
        let storages: Vec<StorageConfig> = storages.into_iter().flatten().collect();
        let sources: Vec<SourceConfig> = sources.into_iter().flatten().collect();
        // Semantic checks run on every piece that parsed, so one bad section does not hide
        // the problems of the others.
        if let Some(e) = &encryption {
            validate_encryption(e, errors);
        }
        if let Some(c) = &compression {
            validate_compression(c, errors);
        }
        validate_storages(&storages, errors);
        validate_sources(&sources, errors);
        let policies = resolve_policies(&sources, base, errors);
        let jobs: Vec<JobConfig> = jobs.into_iter().flatten().collect();
        let notify: Vec<NotifyConfig> = notify.into_iter().flatten().collect();
        validate_jobs(&jobs, &sources, errors);
        for (i, n) in notify.iter().enumerate() {
            if url::Url::parse(&n.url).is_err() {
                errors.push(format!("notify[{i}].url: not a URL"));
            }
        }
        if !complete {
            return None;
        }
        let mut config = Config {
            encryption: encryption?,
            compression: compression?,
            storages,
            sources,
            prune: prune?,
            backup: backup?,
            daemon: daemon?,
            verify: verify?,
            jobs,
            notify,
            policies,
        };
        config.resolve_paths(base);
        Some(config)
    }
}

fn section<T: DeserializeOwned>(key: &str, v: toml::Value, errors: &mut Vec<String>) -> Option<T> {
    let name = v
        .get("name")
        .and_then(|n| n.as_str())
        .map(|n| format!(" ('{n}')"))
        .unwrap_or_default();
    match serde_path_to_error::deserialize::<_, T>(v) {
        Ok(t) => Some(t),
        Err(e) => {
            let path = e.path().to_string();
            let at = if path == "." || path.is_empty() {
                key.to_string()
            } else {
                format!("{key}.{path}")
            };
            errors.push(format!("{at}{name}: {}", e.into_inner()));
            None
        }
    }
}

fn resolve(base: &Path, p: &mut PathBuf) {
    if p.is_relative() {
        *p = base.join(&*p);
    }
}

impl Config {
    fn resolve_paths(&mut self, base: &Path) {
        if let Some(p) = &mut self.encryption.identity_file {
            resolve(base, p);
        }
        if let Some(p) = &mut self.daemon.state_dir {
            resolve(base, p);
        }
        for p in [&mut self.verify.pg_bin_dir, &mut self.verify.work_dir]
            .into_iter()
            .flatten()
        {
            resolve(base, p);
        }
        for s in &mut self.storages {
            match s {
                StorageConfig::Fs(fs) => resolve(base, &mut fs.root),
                StorageConfig::Sftp(sf) => resolve(base, &mut sf.key),
                _ => {}
            }
        }
        for s in &mut self.sources {
            match s {
                SourceConfig::Postgres(pg) => {
                    if let Some(p) = &mut pg.password_file {
                        resolve(base, p);
                    }
                }
                SourceConfig::Redis(r) => {
                    if let Some(p) = &mut r.rdb_path {
                        resolve(base, p);
                    }
                }
                SourceConfig::Nats(n) => {
                    if let Some(d) = &mut n.data_dir {
                        resolve(base, d);
                    }
                }
                SourceConfig::Files(f) => {
                    for p in &mut f.paths {
                        resolve(base, p);
                    }
                }
            }
        }
    }

    pub fn job(&self, name: &str) -> Option<&JobConfig> {
        self.jobs.iter().find(|j| j.name == name)
    }

    /// The sources a job backs up (all when it names none).
    pub fn job_sources(&self, job: &JobConfig) -> Vec<&SourceConfig> {
        if job.sources.is_empty() {
            self.sources.iter().collect()
        } else {
            job.sources.iter().filter_map(|n| self.source(n)).collect()
        }
    }

    /// The source's policy, or the built-in default (also for sources no longer configured:
    /// removing a source from the config must not make its backups disappear).
    pub fn policy_for(&self, source: &str) -> Policy {
        self.policies
            .get(source)
            .cloned()
            .unwrap_or_else(Policy::default_policy)
    }

    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.name() == name)
    }
}

fn check_names<'a>(what: &str, names: impl Iterator<Item = &'a str>, errors: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    for (i, n) in names.enumerate() {
        let ok = !n.is_empty() && n.len() <= 64 && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            errors.push(format!(
                "{what}[{i}].name: '{n}' must be 1-64 characters of a-z, A-Z, 0-9, '-' or '_' (it becomes part of object keys)"
            ));
        }
        if !seen.insert(n) {
            errors.push(format!("{what}[{i}].name: '{n}' is used twice; names must be unique"));
        }
    }
}

fn validate_encryption(enc: &EncryptionConfig, errors: &mut Vec<String>) {
    if enc.recipients.is_empty() {
        errors.push("encryption.recipients: empty; add at least one age public key (`drctl keygen` prints one)".into());
    }
    for (i, r) in enc.recipients.iter().enumerate() {
        if let Err(e) = crate::keys::parse_recipient(r) {
            errors.push(format!("encryption.recipients[{i}]: {e}"));
        }
    }
}

fn validate_compression(c: &CompressionConfig, errors: &mut Vec<String>) {
    let lvl = c.effective_level();
    let range = match c.algorithm {
        Algorithm::Zstd => 1..=19,
        Algorithm::Gzip => 1..=9,
        Algorithm::None => 0..=0,
    };
    if c.level.is_some() && !range.contains(&lvl) {
        errors.push(format!(
            "compression.level: {lvl} is out of range for {} ({}..={})",
            c.algorithm,
            range.start(),
            range.end()
        ));
    }
}

fn validate_storages(storages: &[StorageConfig], errors: &mut Vec<String>) {
    if storages.is_empty() {
        errors.push("storage: none configured; add a [[storage]] (e.g. type = \"fs\", root = \"./backups\")".into());
    }
    check_names("storage", storages.iter().map(|s| s.name()), errors);
    for (i, s) in storages.iter().enumerate() {
        match s {
            StorageConfig::Fs(fs) if fs.root.as_os_str().is_empty() => {
                errors.push(format!("storage[{i}] ('{}').root: empty", fs.name))
            }
            StorageConfig::S3(s3) => {
                if s3.bucket.is_empty() {
                    errors.push(format!("storage[{i}] ('{}').bucket: empty", s3.name));
                }
                if let Some(ep) = &s3.endpoint {
                    if url::Url::parse(ep).is_err() {
                        errors.push(format!(
                            "storage[{i}] ('{}').endpoint: '{ep}' is not a URL (e.g. https://ACCOUNT.r2.cloudflarestorage.com)",
                            s3.name
                        ));
                    }
                }
                if s3.access_key_id.is_some() != s3.secret_access_key.is_some() {
                    errors.push(format!(
                        "storage[{i}] ('{}'): access_key_id and secret_access_key go together; set both or neither",
                        s3.name
                    ));
                }
            }
            StorageConfig::Sftp(sf) => {
                if !["strict", "accept", "add"].contains(&sf.known_hosts.as_str()) {
                    errors.push(format!(
                        "storage[{i}] ('{}').known_hosts: '{}' must be strict, add or accept",
                        sf.name, sf.known_hosts
                    ));
                }
                if which("ssh").is_none() {
                    errors.push(format!(
                        "storage[{i}] ('{}'): type sftp needs the system ssh client, and none is on PATH (apt-get install openssh-client)",
                        sf.name
                    ));
                }
            }
            StorageConfig::Webdav(w) => {
                if url::Url::parse(&w.endpoint).is_err() {
                    errors.push(format!(
                        "storage[{i}] ('{}').endpoint: '{}' is not a URL",
                        w.name, w.endpoint
                    ));
                }
                match parse_size(&w.part_size) {
                    Ok(n) if (1 << 20..=1 << 30).contains(&n) => {}
                    Ok(_) => errors.push(format!(
                        "storage[{i}] ('{}').part_size: must be between 1MiB and 1GiB",
                        w.name
                    )),
                    Err(e) => errors.push(format!("storage[{i}] ('{}').part_size: {e}", w.name)),
                }
            }
            _ => {}
        }
    }
}

fn which(prog: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(prog))
        .find(|p| p.is_file())
}

fn validate_sources(sources: &[SourceConfig], errors: &mut Vec<String>) {
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
                if let Err(e) = crate::retention::parse_duration(&r.bgsave_timeout) {
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
                if let Err(e) = crate::sources::tarball::globs(&f.exclude) {
                    errors.push(format!("{at}.{e}"));
                }
            }
        }
    }
}

fn resolve_policies(
    sources: &[SourceConfig],
    base: &Path,
    errors: &mut Vec<String>,
) -> std::collections::BTreeMap<String, Policy> {
    let mut out = std::collections::BTreeMap::new();
    for (i, s) in sources.iter().enumerate() {
        let at = format!("source[{i}] ('{}').retention", s.name());
        let policy = match s.retention() {
            None => continue,
            Some(RetentionRef::Inline(p)) => p.clone(),
            Some(RetentionRef::File(f)) => {
                let path = if f.is_relative() { base.join(f) } else { f.clone() };
                let text = match std::fs::read_to_string(&path) {
                    Ok(t) => t,
                    Err(e) => {
                        errors.push(format!("{at}: cannot read policy file {}: {e}", path.display()));
                        continue;
                    }
                };
                match toml::from_str::<Policy>(&text) {
                    Ok(p) => p,
                    Err(e) => {
                        errors.push(format!("{at}: policy file {}: {e}", path.display()));
                        continue;
                    }
                }
            }
        };
        for e in policy.check() {
            errors.push(format!("{at}: {e}"));
        }
        out.insert(s.name().to_string(), policy);
    }
    out
}

fn validate_jobs(jobs: &[JobConfig], sources: &[SourceConfig], errors: &mut Vec<String>) {
    check_names("job", jobs.iter().map(|j| j.name.as_str()), errors);
    for (i, j) in jobs.iter().enumerate() {
        let at = format!("job[{i}] ('{}')", j.name);
        if let Err(e) = crate::schedule::validate(&j.schedule) {
            errors.push(format!("{at}: schedule '{}': {e}", j.schedule));
        }
        for s in &j.sources {
            if !sources.iter().any(|x| x.name() == s) {
                errors.push(format!("{at}.sources: no source named '{s}'"));
            }
        }
        if let Some(m) = &j.max_age {
            if let Err(e) = crate::retention::parse_duration(m) {
                errors.push(format!("{at}.max_age: {e}"));
            }
        }
        if let Some(u) = &j.ping_url {
            if url::Url::parse(u).is_err() {
                errors.push(format!("{at}.ping_url: '{u}' is not a URL"));
            }
        }
    }
}
