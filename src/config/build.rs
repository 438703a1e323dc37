//! From TOML to [`Config`]: each section deserialized on its own, then every semantic check, with
//! every error gathered so `drctl validate` prints them all at once.

use super::*;
use crate::layout::check_names;
use crate::retention::Policy;
use crate::sources::validate_sources;
use crate::storage::config::validate_storages;
use serde::de::DeserializeOwned;
use std::path::Path;

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
            if let Some(e) = p.orphan_age.error() {
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
            if let Some(e) = d.timezone.error() {
                errors.push(format!("daemon.timezone: {e}"));
            }
            for (k, v) in [
                ("grace_period", &d.grace_period),
                ("stale_check_interval", &d.stale_check_interval),
            ] {
                if let Some(e) = v.error() {
                    errors.push(format!("daemon.{k}: {e}"));
                }
            }
            // Zero would make the staleness loop spin.
            if d.stale_check_interval.error().is_none()
                && d.stale_check_interval.chrono() < chrono::Duration::seconds(1)
            {
                errors.push(format!(
                    "daemon.stale_check_interval: '{}' is too short (at least 1s)",
                    d.stale_check_interval
                ));
            }
        }
        let verify = match self.verify {
            Some(v) => section::<VerifyConfig>("verify", v, errors),
            None => Some(VerifyConfig::default()),
        };
        if let Some(v) = &verify {
            if let Some(e) = v.schedule.error() {
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
            .map(|(i, v)| notify_section(i, v, errors))
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
        validate_notify(&notify, errors);
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
            unexpanded: Vec::new(),
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

fn validate_encryption(enc: &EncryptionConfig, errors: &mut Vec<String>) {
    if enc.recipients.is_empty() {
        errors.push("encryption.recipients: empty; add at least one age public key (`drctl keygen` prints one)".into());
    }
    for (i, r) in enc.recipients.iter().enumerate() {
        if let Some(e) = r.error() {
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
        if let Some(e) = j.schedule.error() {
            errors.push(format!("{at}: schedule '{}': {e}", j.schedule));
        }
        for s in &j.sources {
            if !sources.iter().any(|x| x.name() == s) {
                errors.push(format!("{at}.sources: no source named '{s}'"));
            }
        }
        if let Some(e) = j.max_age.as_ref().and_then(|m| m.error()) {
            errors.push(format!("{at}.max_age: {e}"));
        }
    }
}

/// `[[notify]]`: `on` is common to every type, the rest belongs to the type's variant.
fn notify_section(i: usize, mut v: toml::Value, errors: &mut Vec<String>) -> Option<NotifyConfig> {
    let key = format!("notify[{i}]");
    let on = match v.as_table_mut().and_then(|t| t.remove("on")) {
        None => Some(DEFAULT_NOTIFY_ON.to_vec()),
        Some(on) => section::<Vec<NotifyOn>>(&format!("{key}.on"), on, errors),
    };
    let target = section::<NotifyTarget>(&key, v, errors);
    Some(NotifyConfig {
        target: target?,
        on: on?,
    })
}

fn validate_notify(notify: &[NotifyConfig], errors: &mut Vec<String>) {
    for (i, n) in notify.iter().enumerate() {
        let at = format!("notify[{i}] ({})", n.kind());
        let http = |key: &str, u: &url::Url, errors: &mut Vec<String>| {
            if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
                errors.push(format!("{at}.{key}: not an http(s) URL"));
            }
        };
        match &n.target {
            NotifyTarget::Webhook { url } | NotifyTarget::Slack { url } | NotifyTarget::Discord { url } => {
                http("url", url, errors)
            }
            NotifyTarget::Ntfy { url, .. } => http("url", url, errors),
            NotifyTarget::Telegram {
                bot_token,
                chat_id,
                api_url,
            } => {
                http("api_url", api_url, errors);
                // A token is "<bot id>:<secret>"; never echo it.
                if bot_token.is_empty() || bot_token.contains(['/', '?', '#', ' ']) {
                    errors.push(format!(
                        "{at}.bot_token: not a bot token (BotFather gives one like 123456:ABC-DEF…; write bot_token = \"${{TELEGRAM_BOT_TOKEN}}\")"
                    ));
                }
                if chat_id.is_empty() {
                    errors.push(format!("{at}.chat_id: empty (a chat's number, or @channelname)"));
                }
            }
            NotifyTarget::Email { smtp_url, from, to, .. } => {
                if !matches!(smtp_url.scheme(), "smtps" | "smtp") || smtp_url.host_str().is_none() {
                    errors.push(format!(
                        "{at}.smtp_url: must be smtps://user:${{SMTP_PASSWORD}}@host:465 (TLS) or smtp://user:…@host:587 (STARTTLS)"
                    ));
                }
                if let Err(e) = from.parse::<lettre::message::Mailbox>() {
                    errors.push(format!("{at}.from: '{from}' is not an e-mail address: {e}"));
                }
                if to.is_empty() {
                    errors.push(format!("{at}.to: no recipient (to = [\"ops@example.com\"])"));
                }
                for t in to {
                    if let Err(e) = t.parse::<lettre::message::Mailbox>() {
                        errors.push(format!("{at}.to: '{t}' is not an e-mail address: {e}"));
                    }
                }
            }
        }
    }
}
