//! The config structs. Each `[[storage]]` and `[[source]]` is a tagged enum chosen by `type`;
//! a variant carries its own fields (STYLE lesson 4). Unknown keys are errors everywhere.

use super::{Cron, Duration, Recipient, SourceConfig, StorageConfig, TimeZone};
use crate::retention::Policy;
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
    /// Keys left as written because their `${VAR}` is unset and the command that loaded the
    /// config does not use them (`config::Uses`), each as "key: variable is not set". Empty
    /// for a config loaded with `Uses::All`.
    pub unexpanded: Vec<String>,
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
    #[serde(default = "crate::units::yes")]
    pub after_backup: bool,
    /// Data objects without a manifest are removed only when older than this ("24h").
    #[serde(default = "default_orphan_age")]
    pub orphan_age: Duration,
}

fn default_orphan_age() -> Duration {
    Duration::known("24h")
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
    pub timezone: TimeZone,
    /// On SIGTERM, how long a running job may take to finish before its uploads are aborted.
    #[serde(default = "default_grace")]
    pub grace_period: Duration,
    /// Where run status (last success/failure per source) and process locks live.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// How often the daemon checks each job's `max_age` and refreshes age metrics.
    #[serde(default = "default_stale_check")]
    pub stale_check_interval: Duration,
}

fn utc() -> TimeZone {
    TimeZone::known("UTC")
}
fn default_grace() -> Duration {
    Duration::known("5m")
}
fn default_stale_check() -> Duration {
    Duration::known("5m")
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
        if let Some(x) = crate::xdg_state_home() {
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
    pub schedule: Cron,
}

fn default_verify_schedule() -> Cron {
    Cron::known("0 5 1 * *")
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
            .field("url", &self.url.as_deref().map(crate::secret::redact_url))
            .field("pg_bin_dir", &self.pg_bin_dir)
            .field("work_dir", &self.work_dir)
            .field("docker_image", &self.docker_image)
            .field("schedule", &self.schedule)
            .finish()
    }
}

/// A scheduled run of one or more sources, backed up together as one run.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawJob")]
pub struct JobConfig {
    pub name: String,
    /// Source names; empty means every source.
    pub sources: Vec<String>,
    /// Cron: 5 fields, or 6 with seconds first.
    pub schedule: Cron,
    /// Where a run reports to a dead-man's switch (`ping_url`, `ping_style`, …).
    pub ping: Option<Ping>,
    /// Alert when the newest complete backup of a source in this job is older than this ("26h").
    pub max_age: Option<Duration>,
}

/// `[[job]]` as written; `ping_style` and its URLs become one [`Ping`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    name: String,
    #[serde(default)]
    sources: Vec<String>,
    schedule: Cron,
    #[serde(default)]
    ping_url: Option<String>,
    #[serde(default)]
    ping_style: PingStyle,
    #[serde(default)]
    ping_success_url: Option<String>,
    #[serde(default)]
    ping_fail_url: Option<String>,
    #[serde(default)]
    max_age: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
enum PingStyle {
    #[default]
    Healthchecks,
    UptimeKuma,
    Template,
}

/// A job's dead-man's-switch pings, one variant per receiver style.
#[derive(Clone)]
pub enum Ping {
    /// healthchecks.io: `<url>/start` when a run starts, `<url>` on success, `<url>/fail`
    /// (error text as the body) on failure.
    Healthchecks { url: url::Url },
    /// An Uptime Kuma push monitor: `<url>?status=up&msg=OK&ping=<ms>` on success,
    /// `status=down` with the error's first line on failure.
    UptimeKuma { url: url::Url },
    /// Any receiver: `{msg}` and `{duration_ms}` filled in (URL-encoded) and fetched with GET.
    Template {
        success: Option<String>,
        fail: Option<String>,
    },
}

/// Every placeholder a `ping_success_url` / `ping_fail_url` may contain.
pub const PING_PLACEHOLDERS: [&str; 2] = ["{msg}", "{duration_ms}"];

fn template_url(key: &str, t: &str) -> Result<String, String> {
    let mut probe = t.to_string();
    for p in PING_PLACEHOLDERS {
        probe = probe.replace(p, "0");
    }
    if probe.contains('{') {
        return Err(format!("{key}: unknown placeholder (use {{msg}} and {{duration_ms}})"));
    }
    match url::Url::parse(&probe) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(t.to_string()),
        _ => Err(format!("{key}: not an http(s) URL")),
    }
}

impl TryFrom<RawJob> for JobConfig {
    type Error = String;
    fn try_from(r: RawJob) -> Result<JobConfig, String> {
        let url = |u: &str| match url::Url::parse(u) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(u),
            _ => Err("ping_url: not an http(s) URL".to_string()),
        };
        let ping = match r.ping_style {
            PingStyle::Healthchecks | PingStyle::UptimeKuma => {
                if r.ping_success_url.is_some() || r.ping_fail_url.is_some() {
                    return Err(
                        "ping_success_url / ping_fail_url are for ping_style = \"template\" (set it, or use ping_url)"
                            .into(),
                    );
                }
                match (&r.ping_url, r.ping_style) {
                    (None, PingStyle::UptimeKuma) => {
                        return Err("ping_style = \"uptime-kuma\" needs ping_url (the push URL, https://kuma.example.com/api/push/TOKEN)".into())
                    }
                    (None, _) => None,
                    (Some(u), PingStyle::UptimeKuma) => Some(Ping::UptimeKuma { url: url(u)? }),
                    (Some(u), _) => Some(Ping::Healthchecks { url: url(u)? }),
                }
            }
            PingStyle::Template => {
                if r.ping_url.is_some() {
                    return Err(
                        "ping_url: not used with ping_style = \"template\" (write ping_success_url and ping_fail_url)"
                            .into(),
                    );
                }
                if r.ping_success_url.is_none() && r.ping_fail_url.is_none() {
                    return Err("ping_style = \"template\" needs ping_success_url or ping_fail_url (with {msg} and {duration_ms})".into());
                }
                Some(Ping::Template {
                    success: r
                        .ping_success_url
                        .as_deref()
                        .map(|t| template_url("ping_success_url", t))
                        .transpose()?,
                    fail: r
                        .ping_fail_url
                        .as_deref()
                        .map(|t| template_url("ping_fail_url", t))
                        .transpose()?,
                })
            }
        };
        Ok(JobConfig {
            name: r.name,
            sources: r.sources,
            schedule: r.schedule,
            ping,
            max_age: r.max_age,
        })
    }
}

// Ping URLs carry the check's secret (a UUID, a push token) in the path.
impl fmt::Debug for Ping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ping::Healthchecks { .. } => "Ping::Healthchecks(<redacted>)",
            Ping::UptimeKuma { .. } => "Ping::UptimeKuma(<redacted>)",
            Ping::Template { .. } => "Ping::Template(<redacted>)",
        })
    }
}

/// What a notifier is told about (`on = [...]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyOn {
    /// A source starts failing (a failed or degraded backup, a failed prune): once, until it recovers.
    Failure,
    /// A failing or stale source has a good backup again.
    Recovery,
    /// The newest backup is older than the job's `max_age` (or dated in the future).
    Stale,
    /// A restore verification fails (once, until one passes).
    VerifyFailure,
    /// Every successful backup.
    Success,
}

pub const DEFAULT_NOTIFY_ON: [NotifyOn; 4] = [
    NotifyOn::Failure,
    NotifyOn::Recovery,
    NotifyOn::Stale,
    NotifyOn::VerifyFailure,
];

/// Where a notification goes, chosen by `type`.
#[derive(Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum NotifyTarget {
    /// JSON `{event, source, host, message, at}` POSTed to `url`.
    Webhook {
        url: url::Url,
    },
    Slack {
        url: url::Url,
    },
    Discord {
        url: url::Url,
    },
    /// Telegram's Bot API: POST `<api_url>/bot<bot_token>/sendMessage`.
    Telegram {
        bot_token: String,
        /// A number (`-1001234567890`) or a channel's `@name`.
        #[serde(deserialize_with = "chat_id")]
        chat_id: String,
        #[serde(default = "default_telegram_api")]
        api_url: url::Url,
    },
    /// SMTP: `smtps://user:${SMTP_PASSWORD}@host:465` (implicit TLS) or `smtp://…:587`
    /// (STARTTLS, required).
    Email {
        smtp_url: url::Url,
        from: String,
        to: Vec<String>,
        /// PEM file of a private CA that signed the SMTP server's certificate (a self-hosted
        /// relay); the system's roots are trusted as well.
        #[serde(default)]
        ca_file: Option<PathBuf>,
    },
    /// ntfy: the message POSTed to the topic URL (`https://ntfy.sh/my-topic`).
    Ntfy {
        url: url::Url,
        #[serde(default)]
        token: Option<String>,
    },
}

fn chat_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Number(i64),
        Text(String),
    }
    Ok(match Id::deserialize(d)? {
        Id::Number(n) => n.to_string(),
        Id::Text(t) => t,
    })
}

fn default_telegram_api() -> url::Url {
    url::Url::parse("https://api.telegram.org").expect("constant URL")
}

#[derive(Clone)]
pub struct NotifyConfig {
    pub target: NotifyTarget,
    pub on: Vec<NotifyOn>,
}

impl NotifyConfig {
    pub fn wants(&self, what: NotifyOn) -> bool {
        self.on.contains(&what)
    }

    /// The notifier's type as written in the config (for logs: never its URL or token).
    pub fn kind(&self) -> &'static str {
        match self.target {
            NotifyTarget::Webhook { .. } => "webhook",
            NotifyTarget::Slack { .. } => "slack",
            NotifyTarget::Discord { .. } => "discord",
            NotifyTarget::Telegram { .. } => "telegram",
            NotifyTarget::Email { .. } => "email",
            NotifyTarget::Ntfy { .. } => "ntfy",
        }
    }
}

// Webhook URLs (Slack, Discord) carry their secret in the path; bot tokens and SMTP passwords
// are secrets outright.
impl fmt::Debug for NotifyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotifyConfig")
            .field("type", &self.kind())
            .field("on", &self.on)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// age public keys (`age1…`). The backup host holds only these: it cannot read its own backups.
    pub recipients: Vec<Recipient>,
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

fn resolve(base: &Path, p: &mut PathBuf) {
    if p.is_relative() {
        *p = base.join(&*p);
    }
}

impl Config {
    pub(super) fn resolve_paths(&mut self, base: &Path) {
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
        for n in &mut self.notify {
            if let NotifyTarget::Email { ca_file: Some(p), .. } = &mut n.target {
                resolve(base, p);
            }
        }
        for s in &mut self.storages {
            match s {
                StorageConfig::Fs(fs) => resolve(base, &mut fs.root),
                StorageConfig::Sftp(sf) => resolve(base, &mut sf.key),
                _ => {}
            }
        }
        for s in &mut self.sources {
            for p in s.paths_mut() {
                resolve(base, p);
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

    /// A configured source's policy (its `retention`, else the built-in default); None for a
    /// source this config does not define, whose policy only its backups can tell.
    pub fn policy_for(&self, source: &str) -> Option<Policy> {
        self.source(source)?;
        Some(
            self.policies
                .get(source)
                .cloned()
                .unwrap_or_else(Policy::default_policy),
        )
    }

    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.name() == name)
    }
}
