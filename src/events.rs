//! Typed events. One place turns "a backup failed" into a log line, a metric, a status record,
//! a notification and a dead-man's-switch ping, so those can never disagree (vector's
//! internal_events). Notifiers and pings have a timeout and their failures are only logged:
//! a broken Slack webhook never fails or blocks a backup.

use crate::catalog::Manifest;
use crate::config::{NotifyConfig, NotifyKind};
use crate::metrics::{self, Metrics};
use crate::state::{StateDir, Success};
use std::sync::Arc;
use std::time::Duration;

const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an error goes into a `/fail` ping or a notification.
const ERROR_TAIL: usize = 4000;

pub enum Event<'a> {
    RunStarted {
        job: &'a str,
        ping_url: Option<&'a str>,
    },
    BackupSucceeded {
        manifest: &'a Manifest,
        seconds: f64,
    },
    BackupFailed {
        source: &'a str,
        error: &'a anyhow::Error,
        seconds: f64,
    },
    /// Complete on some storages, missing on others: (storage, error).
    BackupDegraded {
        source: &'a str,
        missed: &'a [(String, String)],
    },
    RunFinished {
        job: &'a str,
        ping_url: Option<&'a str>,
        failures: &'a [(String, String)],
    },
    Stale {
        source: &'a str,
        storage: &'a str,
        age: chrono::Duration,
        max_age: &'a str,
    },
    BackupAge {
        source: &'a str,
        storage: &'a str,
        age: chrono::Duration,
    },
    /// A backup dated after now: a clock was wrong when it was taken.
    FutureBackup {
        source: &'a str,
        storage: &'a str,
        backup: &'a str,
        ahead: chrono::Duration,
    },
    /// Prune after a backup failed: nothing the run backed up is lost, but old backups are
    /// not being removed (or a storage refuses deletes).
    PruneFailed {
        job: &'a str,
        sources: &'a [&'a str],
        error: &'a anyhow::Error,
    },
    /// Prune after a backup succeeded (clears an earlier failure in `status`).
    PruneSucceeded {
        sources: &'a [&'a str],
    },
    VerifyFinished {
        source: &'a str,
        backup: &'a str,
        ok: bool,
        rto_seconds: f64,
        detail: &'a str,
    },
}

#[derive(Clone)]
pub struct Events {
    pub metrics: Option<Arc<Metrics>>,
    pub notify: Vec<NotifyConfig>,
    pub state: StateDir,
    http: reqwest::Client,
}

fn tail(s: &str) -> &str {
    if s.len() <= ERROR_TAIL {
        return s;
    }
    let mut start = s.len() - ERROR_TAIL;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

impl Events {
    pub fn new(state: StateDir, notify: Vec<NotifyConfig>, metrics: Option<Arc<Metrics>>) -> Events {
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .user_agent(concat!("drctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("http client");
        Events {
            metrics,
            notify,
            state,
            http,
        }
    }

    pub async fn emit(&self, ev: Event<'_>) {
        match ev {
            Event::RunStarted { job, ping_url } => {
                tracing::info!(job, "run started");
                if let Some(u) = ping_url {
                    self.ping(&format!("{}/start", u.trim_end_matches('/')), None).await;
                }
            }
            Event::BackupSucceeded { manifest: m, seconds } => {
                tracing::info!(source = %m.source, id = %m.id, plain_bytes = m.plain.size, stored_bytes = m.stored.size, seconds, peak_rss_kib = peak_rss_kib(), "backup complete");
                if let Some(mx) = &self.metrics {
                    let l = metrics::source(&m.source);
                    mx.last_success.get_or_create(&l).set(m.finished_at.timestamp() as f64);
                    mx.last_duration.get_or_create(&l).set(seconds);
                    mx.read_bytes.get_or_create(&l).inc_by(m.plain.size);
                    mx.stored_bytes
                        .get_or_create(&l)
                        .inc_by(m.stored.size * m.storages.len() as u64);
                }
                self.state.record_success(
                    &m.source,
                    Success {
                        at: m.finished_at,
                        id: m.id.clone(),
                        duration_seconds: seconds,
                        plain_bytes: m.plain.size,
                        stored_bytes: m.stored.size,
                    },
                );
            }
            Event::BackupFailed { source, error, seconds } => {
                let text = format!("{error:#}");
                tracing::error!(source, seconds, error = %text, "backup failed");
                if let Some(mx) = &self.metrics {
                    mx.failures.get_or_create(&metrics::source(source)).inc();
                    // anyhow finds a context of this type at any depth of the chain.
                    if let Some(crate::storage::StorageFailure(st)) =
                        error.downcast_ref::<crate::storage::StorageFailure>()
                    {
                        mx.storage_write_errors
                            .get_or_create(&metrics::StorageLabel { storage: st.clone() })
                            .inc();
                    }
                }
                self.state.record_failure(source, &text);
                self.notify_all(
                    "backup_failed",
                    source,
                    &format!("backup of '{source}' failed: {}", tail(&text)),
                )
                .await;
            }
            Event::BackupDegraded { source, missed } => {
                let names: Vec<&str> = missed.iter().map(|(s, _)| s.as_str()).collect();
                let text = missed
                    .iter()
                    .map(|(s, e)| format!("storage '{s}': {e}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                tracing::warn!(source, missed = ?names, error = %text, "backup degraded: complete on the other storages");
                if let Some(mx) = &self.metrics {
                    for s in &names {
                        mx.storage_write_errors
                            .get_or_create(&metrics::StorageLabel { storage: s.to_string() })
                            .inc();
                    }
                }
                self.state.record_failure(source, &format!("degraded: {text}"));
                self.notify_all(
                    "backup_degraded",
                    source,
                    &format!(
                        "backup of '{source}' is degraded: storage(s) {} missed it: {}",
                        names.join(", "),
                        tail(&text)
                    ),
                )
                .await;
            }
            Event::RunFinished {
                job,
                ping_url,
                failures,
            } => {
                if failures.is_empty() {
                    tracing::info!(job, "run succeeded");
                } else {
                    tracing::warn!(job, failed = failures.len(), "run failed");
                }
                if let Some(u) = ping_url {
                    let u = u.trim_end_matches('/');
                    if failures.is_empty() {
                        self.ping(u, None).await;
                    } else {
                        let body: Vec<String> = failures.iter().map(|(s, e)| format!("{s}: {e}")).collect();
                        self.ping(&format!("{u}/fail"), Some(tail(&body.join("\n")).to_string()))
                            .await;
                    }
                }
            }
            Event::BackupAge { source, storage, age } => {
                if let Some(mx) = &self.metrics {
                    mx.newest_age
                        .get_or_create(&metrics::SourceStorageLabel {
                            source: source.into(),
                            storage: storage.into(),
                        })
                        .set(age.num_milliseconds() as f64 / 1000.0);
                }
            }
            Event::Stale {
                source,
                storage,
                age,
                max_age,
            } => {
                let msg = format!(
                    "the newest backup of '{source}' on storage '{storage}' is {} old (max_age {max_age}); backups may have stopped",
                    crate::catalog::human_duration(age)
                );
                tracing::warn!(
                    source,
                    storage,
                    age_seconds = age.num_seconds(),
                    max_age,
                    "backup is stale"
                );
                self.notify_all("backup_stale", source, &msg).await;
            }
            Event::FutureBackup {
                source,
                storage,
                backup,
                ahead,
            } => {
                let msg = format!(
                    "backup {backup} of '{source}' on storage '{storage}' is dated {} in the future: the clock of the host that took it was wrong; it does not count as a fresh backup (check NTP on the backup host)",
                    crate::catalog::human_duration(ahead)
                );
                tracing::warn!(
                    source,
                    storage,
                    backup,
                    ahead_seconds = ahead.num_seconds(),
                    "backup dated in the future"
                );
                self.notify_all("backup_in_future", source, &msg).await;
            }
            Event::PruneFailed { job, sources, error } => {
                let text = format!("{error:#}");
                tracing::error!(job, sources = ?sources, error = %text, "prune after backup failed");
                for source in sources.iter() {
                    if let Some(mx) = &self.metrics {
                        mx.prune_failures.get_or_create(&metrics::source(source)).inc();
                    }
                    self.state.record_prune(source, Some(&text));
                    self.notify_all(
                        "prune_failed",
                        source,
                        &format!(
                            "prune of '{source}' after the backup failed (the backup itself is stored): {}",
                            tail(&text)
                        ),
                    )
                    .await;
                }
            }
            Event::PruneSucceeded { sources } => {
                for source in sources.iter() {
                    if self.state.load(source).last_prune_failure.is_some() {
                        self.state.record_prune(source, None);
                    }
                }
            }
            Event::VerifyFinished {
                source,
                backup,
                ok,
                rto_seconds,
                detail,
            } => {
                if let Some(mx) = &self.metrics {
                    let l = metrics::source(source);
                    if ok {
                        mx.verify_last_success
                            .get_or_create(&l)
                            .set(chrono::Utc::now().timestamp() as f64);
                        mx.verify_rto.get_or_create(&l).set(rto_seconds);
                    } else {
                        mx.verify_failures.get_or_create(&l).inc();
                    }
                }
                if ok {
                    tracing::info!(source, backup, rto_seconds, "verification passed");
                } else {
                    tracing::error!(source, backup, detail, "verification failed");
                    self.notify_all(
                        "verify_failed",
                        source,
                        &format!(
                            "restore verification of '{source}' (backup {backup}) failed: {}",
                            tail(detail)
                        ),
                    )
                    .await;
                }
            }
        }
    }

    async fn ping(&self, url: &str, body: Option<String>) {
        let req = match body {
            Some(b) => self.http.post(url).body(b),
            None => self.http.get(url),
        };
        match req.send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => tracing::warn!(status = %r.status(), "ping answered with an error"),
            Err(e) => tracing::warn!(error = %e.without_url(), "ping failed"),
        }
    }

    async fn notify_all(&self, event: &str, source: &str, text: &str) {
        let host = crate::lock::hostname();
        let sends = self.notify.iter().map(|n| {
            let body = match n.kind {
                NotifyKind::Webhook => serde_json::json!({
                    "event": event,
                    "source": source,
                    "host": host,
                    "message": text,
                    "at": chrono::Utc::now().to_rfc3339(),
                }),
                NotifyKind::Slack => serde_json::json!({ "text": format!("drctl on {host}: {text}") }),
                NotifyKind::Discord => serde_json::json!({ "content": format!("drctl on {host}: {text}") }),
            };
            let kind = n.kind;
            let req = self.http.post(&n.url).json(&body);
            async move {
                match req.send().await {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => tracing::warn!(notifier = ?kind, status = %r.status(), "notifier answered with an error"),
                    // without_url: a Slack or Discord URL is a secret.
                    Err(e) => tracing::warn!(notifier = ?kind, error = %e.without_url(), "notifier failed"),
                }
            }
        });
        futures::future::join_all(sends).await;
    }
}

/// This process's peak resident memory (VmHWM), for the log line and the benchmark.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
