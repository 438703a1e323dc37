//! Typed events. One place turns "a backup failed" into a log line, a metric, a status record,
//! a notification and a dead-man's-switch ping, so those can never disagree (vector's
//! internal_events). Notifiers and pings have a timeout and their failures are only logged
//! (and counted): a broken Slack webhook never fails a backup.
//!
//! * Pings run in the background, in order per job, with a short timeout and a few retries:
//!   a ping receiver that hangs delays neither this run's end nor the job's next run.
//! * Notifications follow transitions, not runs: a source that fails every 5 minutes sends
//!   one failure message, then one recovery message when a backup succeeds again. What was
//!   already said is kept in the state dir (`alerts/<source>.json`), so a restarted daemon
//!   does not repeat it either.

use crate::catalog::Manifest;
use crate::config::{NotifyConfig, NotifyOn, NotifyTarget, Ping};
use crate::metrics::{self, Metrics};
use crate::state::{StateDir, Success};
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::task::TaskTracker;

const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Per ping attempt: a dead-man's switch answers at once or is down.
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Pauses between ping attempts (so 3 attempts in all).
const PING_BACKOFF: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(3)];
/// How much of an error goes into an Uptime Kuma `msg` or a template's `{msg}`.
const PING_MSG: usize = 200;
/// How much of an error goes into a `/fail` ping or a notification.
const ERROR_TAIL: usize = 4000;

pub enum Event<'a> {
    RunStarted {
        job: &'a str,
        ping: Option<&'a Ping>,
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
        ping: Option<&'a Ping>,
        failures: &'a [(String, String)],
    },
    /// The newest backup of the source is within its max_age on every storage (the daemon's
    /// check): ends a stale episode, also when the fresh backup came from another host.
    Fresh {
        source: &'a str,
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
        /// The source's job's `max_age`, if it has one.
        max_age: Option<chrono::Duration>,
    },
    /// The daemon started: the last results recorded in the state dir seed the metrics, so a
    /// restart does not forget that a source was failing or when it last succeeded; and the
    /// time between scheduled verifications, when this host verifies.
    DaemonStarted {
        sources: &'a [&'a str],
        storages: &'a [&'a str],
        /// Jobs that ping.
        jobs: &'a [&'a str],
        verify_interval: Option<chrono::Duration>,
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
    /// Background deliveries (pings), waited for by [`Events::flush`].
    pending: TaskTracker,
    /// Each job's running `/start` ping, which the run's result ping waits for.
    last_ping: Arc<Mutex<HashMap<String, tokio::task::JoinHandle<()>>>>,
    /// When each job's running run started (Uptime Kuma's `ping`, `{duration_ms}`).
    run_started: Arc<Mutex<HashMap<String, Instant>>>,
    /// Sources that were failing and just backed up: recovered when their run ends without
    /// them failing (a degraded backup succeeds first and is reported degraded after).
    recovering: Arc<Mutex<HashSet<String>>>,
}

/// What the notifiers were last told about a source (`<state_dir>/alerts/<source>.json`).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct AlertState {
    /// Backups of the source fail (or are degraded) since then; a failure was sent.
    #[serde(default)]
    failing_since: Option<DateTime<Utc>>,
    /// The newest backup is older than max_age; a stale alert was sent.
    #[serde(default)]
    stale_since: Option<DateTime<Utc>>,
    /// The source's prune fails since then.
    #[serde(default)]
    prune_failing_since: Option<DateTime<Utc>>,
    /// Restore verification fails since then.
    #[serde(default)]
    verify_failing_since: Option<DateTime<Utc>>,
}

/// One ping to send: a GET, or a POST with the error text as its body.
struct PingRequest {
    url: String,
    body: Option<String>,
}

/// Percent-encodes everything but RFC 3986's unreserved characters: safe in a path and a query.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The first line of `s`, at most `max` bytes (on a character boundary).
fn first_line(s: &str, max: usize) -> &str {
    let line = s.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    if line.len() <= max {
        return line;
    }
    let mut end = max;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}

impl Ping {
    fn started(&self) -> Option<PingRequest> {
        match self {
            Ping::Healthchecks { url } => Some(PingRequest {
                url: format!("{}/start", url.as_str().trim_end_matches('/')),
                body: None,
            }),
            Ping::UptimeKuma { .. } | Ping::Template { .. } => None,
        }
    }

    /// The ping for a finished run: `failures` empty means success.
    fn finished(&self, failures: &[(String, String)], duration: Duration) -> Option<PingRequest> {
        let ms = duration.as_millis();
        let ok = failures.is_empty();
        let msg = if ok {
            "OK".to_string()
        } else {
            let (s, e) = &failures[0];
            let more = if failures.len() > 1 {
                format!(" (+{} more)", failures.len() - 1)
            } else {
                String::new()
            };
            format!("{}{more}", first_line(&format!("{s}: {e}"), PING_MSG))
        };
        match self {
            Ping::Healthchecks { url } => {
                let u = url.as_str().trim_end_matches('/');
                Some(if ok {
                    PingRequest {
                        url: u.to_string(),
                        body: None,
                    }
                } else {
                    let body: Vec<String> = failures.iter().map(|(s, e)| format!("{s}: {e}")).collect();
                    PingRequest {
                        url: format!("{u}/fail"),
                        body: Some(tail(&body.join("\n")).to_string()),
                    }
                })
            }
            Ping::UptimeKuma { url } => {
                let mut u = url.clone();
                u.query_pairs_mut()
                    .append_pair("status", if ok { "up" } else { "down" })
                    .append_pair("msg", &msg)
                    .append_pair("ping", &ms.to_string());
                Some(PingRequest {
                    url: u.to_string(),
                    body: None,
                })
            }
            Ping::Template { success, fail } => {
                let t = if ok { success } else { fail };
                t.as_ref().map(|t| PingRequest {
                    url: t
                        .replace("{msg}", &url_encode(&msg))
                        .replace("{duration_ms}", &ms.to_string()),
                    body: None,
                })
            }
        }
    }
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
            pending: TaskTracker::new(),
            last_ping: Arc::default(),
            run_started: Arc::default(),
            recovering: Arc::default(),
        }
    }

    /// Waits (at most `limit`) for pings still being delivered in the background.
    pub async fn flush(&self, limit: Duration) {
        self.pending.close();
        if tokio::time::timeout(limit, self.pending.wait()).await.is_err() {
            tracing::warn!(
                limit_seconds = limit.as_secs(),
                "pings still unanswered at exit; not waiting for them"
            );
        }
        self.pending.reopen();
    }

    fn alerts_file(&self, source: &str) -> std::path::PathBuf {
        self.state.root.join("alerts").join(format!("{source}.json"))
    }

    fn alerts(&self, source: &str) -> AlertState {
        std::fs::read(self.alerts_file(source))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save_alerts(&self, source: &str, a: &AlertState) {
        let path = self.alerts_file(source);
        let r = crate::durable::create_dir_all(path.parent().expect("alerts dir"))
            .map_err(anyhow::Error::from)
            .and_then(|()| Ok(crate::durable::write_file(&path, &serde_json::to_vec_pretty(a)?)?));
        if let Err(e) = r {
            tracing::warn!(source, file = %path.display(), error = %format!("{e:#}"), "cannot record what was notified; a transition may be notified twice");
        }
    }

    /// "Newest good backup: … (3h 5m ago)" from the status record, for a message.
    fn newest_good(&self, source: &str) -> String {
        match self.state.load(source).last_success {
            Some(s) => format!(
                "Newest good backup: {} ({} ago).",
                s.at.format("%Y-%m-%d %H:%M UTC"),
                crate::catalog::human_duration(Utc::now() - s.at)
            ),
            None => "No good backup is recorded on this host.".into(),
        }
    }

    /// A source started failing (`flag` picks which kind of failure): notifies once per episode.
    async fn failing(
        &self,
        source: &str,
        event: &str,
        text: &str,
        flag: fn(&mut AlertState) -> &mut Option<DateTime<Utc>>,
    ) {
        self.recovering.lock().expect("recovering").remove(source);
        let mut a = self.alerts(source);
        if let Some(since) = *flag(&mut a) {
            tracing::info!(source, event, failing_since = %since, "still failing; already notified");
            return;
        }
        *flag(&mut a) = Some(Utc::now());
        self.save_alerts(source, &a);
        let msg = format!("{text}\n{}\nLook: drctl status", self.newest_good(source));
        let on = if event == "verify_failed" {
            NotifyOn::VerifyFailure
        } else {
            NotifyOn::Failure
        };
        self.notify_all(on, event, source, &msg).await;
    }

    /// Sends the recovery of every source of the finished run that was failing or stale and
    /// did not fail again in it.
    async fn recoveries(&self, failures: &[(String, String)]) {
        let done: Vec<String> = {
            let mut r = self.recovering.lock().expect("recovering");
            let done = r
                .iter()
                .filter(|s| !failures.iter().any(|(f, _)| f == *s))
                .cloned()
                .collect::<Vec<_>>();
            for s in &done {
                r.remove(s);
            }
            done
        };
        for source in done {
            let mut a = self.alerts(&source);
            let since = a.failing_since.or(a.stale_since);
            a.failing_since = None;
            a.stale_since = None;
            self.save_alerts(&source, &a);
            let Some(since) = since else { continue };
            tracing::info!(source = %source, failing_since = %since, "source recovered");
            let msg = format!(
                "backup of '{source}' succeeds again (failing or stale since {}, {}).\n{}\nLook: drctl status",
                since.format("%Y-%m-%d %H:%M UTC"),
                crate::catalog::human_duration(Utc::now() - since),
                self.newest_good(&source)
            );
            self.notify_all(NotifyOn::Recovery, "backup_recovered", &source, &msg)
                .await;
        }
    }

    /// Sends a ping in the background; never waits for it. A run's result ping waits for its
    /// `/start` (`after_start`); a run's `/start` does not wait for the previous run's pings,
    /// so a receiver that hangs holds at most a few pings per job, not a growing queue.
    fn ping(&self, job: &str, req: PingRequest, after_start: bool) {
        let mut last = self.last_ping.lock().expect("last ping");
        let prev = last.remove(job).filter(|_| after_start);
        let (http, metrics, job_name) = (self.http.clone(), self.metrics.clone(), job.to_string());
        let handle = self.pending.spawn(async move {
            if let Some(p) = prev {
                let _ = p.await;
            }
            send_ping(&http, metrics.as_deref(), &job_name, req).await;
        });
        last.insert(job.to_string(), handle);
    }

    pub async fn emit(&self, ev: Event<'_>) {
        match ev {
            Event::RunStarted { job, ping } => {
                tracing::info!(job, "run started");
                self.run_started
                    .lock()
                    .expect("run started")
                    .insert(job.to_string(), Instant::now());
                if let Some(req) = ping.and_then(Ping::started) {
                    self.ping(job, req, false);
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
                let a = self.alerts(&m.source);
                if a.failing_since.is_some() || a.stale_since.is_some() {
                    self.recovering.lock().expect("recovering").insert(m.source.clone());
                }
                if self.notify.iter().any(|n| n.wants(NotifyOn::Success)) {
                    let msg = format!(
                        "backup of '{}' succeeded: {} ({} stored) in {:.0}s.\nLook: drctl status",
                        m.source,
                        m.id,
                        crate::catalog::human_bytes(m.stored.size),
                        seconds
                    );
                    self.notify_all(NotifyOn::Success, "backup_succeeded", &m.source, &msg)
                        .await;
                }
            }
            Event::BackupFailed { source, error, seconds } => {
                let text = format!("{error:#}");
                tracing::error!(source, seconds, error = %text, "backup failed");
                if let Some(mx) = &self.metrics {
                    mx.failures.get_or_create(&metrics::source(source)).inc();
                    mx.last_failure
                        .get_or_create(&metrics::source(source))
                        .set(chrono::Utc::now().timestamp() as f64);
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
                self.failing(
                    source,
                    "backup_failed",
                    &format!("backup of '{source}' failed: {}", tail(&text)),
                    |a| &mut a.failing_since,
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
                    mx.last_failure
                        .get_or_create(&metrics::source(source))
                        .set(chrono::Utc::now().timestamp() as f64);
                    for s in &names {
                        mx.storage_write_errors
                            .get_or_create(&metrics::StorageLabel { storage: s.to_string() })
                            .inc();
                    }
                }
                self.state.record_failure(source, &format!("degraded: {text}"));
                self.failing(
                    source,
                    "backup_degraded",
                    &format!(
                        "backup of '{source}' is degraded: storage(s) {} missed it: {}",
                        names.join(", "),
                        tail(&text)
                    ),
                    |a| &mut a.failing_since,
                )
                .await;
            }
            Event::RunFinished { job, ping, failures } => {
                if failures.is_empty() {
                    tracing::info!(job, "run succeeded");
                } else {
                    tracing::warn!(job, failed = failures.len(), "run failed");
                }
                let took = self
                    .run_started
                    .lock()
                    .expect("run started")
                    .remove(job)
                    .map(|t| t.elapsed())
                    .unwrap_or_default();
                if let Some(req) = ping.and_then(|p| p.finished(failures, took)) {
                    self.ping(job, req, true);
                }
                self.recoveries(failures).await;
            }
            Event::BackupAge {
                source,
                storage,
                age,
                max_age,
            } => {
                if let Some(mx) = &self.metrics {
                    if let Some(m) = max_age {
                        mx.max_age
                            .get_or_create(&metrics::source(source))
                            .set(m.num_milliseconds() as f64 / 1000.0);
                    }
                    mx.newest_age
                        .get_or_create(&metrics::SourceStorageLabel {
                            source: source.into(),
                            storage: storage.into(),
                        })
                        .set(age.num_milliseconds() as f64 / 1000.0);
                }
            }
            Event::DaemonStarted {
                sources,
                storages,
                jobs,
                verify_interval,
            } => {
                let Some(mx) = &self.metrics else { return };
                // Counters exist from 0, so `increase()` sees the first failure (a series that
                // appears at 1 has no increase) and every family is on /metrics from the start.
                for s in storages.iter() {
                    let _ = mx
                        .storage_write_errors
                        .get_or_create(&metrics::StorageLabel { storage: s.to_string() });
                }
                for n in &self.notify {
                    let _ = mx.notify_failures.get_or_create(&metrics::NotifierLabel {
                        notifier: n.kind().to_string(),
                    });
                }
                for j in jobs.iter() {
                    let _ = mx.ping_failures.get_or_create(&metrics::JobLabel {
                        job_name: j.to_string(),
                    });
                }
                for source in sources.iter() {
                    let st = self.state.load(source);
                    let l = metrics::source(source);
                    let _ = mx.failures.get_or_create(&l);
                    let _ = mx.prune_failures.get_or_create(&l);
                    let _ = mx.verify_failures.get_or_create(&l);
                    if let Some(s) = &st.last_success {
                        mx.last_success.get_or_create(&l).set(s.at.timestamp() as f64);
                        mx.last_duration.get_or_create(&l).set(s.duration_seconds);
                    }
                    if let Some(f) = &st.last_failure {
                        mx.last_failure.get_or_create(&l).set(f.at.timestamp() as f64);
                    }
                }
                if let Some(i) = verify_interval {
                    mx.verify_interval.set(i.num_seconds() as f64);
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
                let mut a = self.alerts(source);
                if a.stale_since.is_none() {
                    a.stale_since = Some(Utc::now());
                    self.save_alerts(source, &a);
                    let msg = format!("{msg}\n{}\nLook: drctl status", self.newest_good(source));
                    self.notify_all(NotifyOn::Stale, "backup_stale", source, &msg).await;
                }
            }
            Event::Fresh { source } => {
                let mut a = self.alerts(source);
                let Some(since) = a.stale_since.take() else { return };
                self.save_alerts(source, &a);
                tracing::info!(source, stale_since = %since, "backup fresh again");
                if a.failing_since.is_none() {
                    let msg = format!(
                        "the newest backup of '{source}' is within max_age again (stale since {}, {}).\n{}\nLook: drctl status",
                        since.format("%Y-%m-%d %H:%M UTC"),
                        crate::catalog::human_duration(Utc::now() - since),
                        self.newest_good(source)
                    );
                    self.notify_all(NotifyOn::Recovery, "backup_fresh", source, &msg).await;
                }
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
                self.notify_all(NotifyOn::Stale, "backup_in_future", source, &msg).await;
            }
            Event::PruneFailed { job, sources, error } => {
                let text = format!("{error:#}");
                tracing::error!(job, sources = ?sources, error = %text, "prune after backup failed");
                for source in sources.iter() {
                    if let Some(mx) = &self.metrics {
                        mx.prune_failures.get_or_create(&metrics::source(source)).inc();
                    }
                    self.state.record_prune(source, Some(&text));
                    self.failing(
                        source,
                        "prune_failed",
                        &format!(
                            "prune of '{source}' after the backup failed (the backup itself is stored): {}",
                            tail(&text)
                        ),
                        |a| &mut a.prune_failing_since,
                    )
                    .await;
                }
            }
            Event::PruneSucceeded { sources } => {
                for source in sources.iter() {
                    if self.state.load(source).last_prune_failure.is_some() {
                        self.state.record_prune(source, None);
                    }
                    let mut a = self.alerts(source);
                    if a.prune_failing_since.take().is_some() {
                        self.save_alerts(source, &a);
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
                        mx.verify_last_failure
                            .get_or_create(&l)
                            .set(chrono::Utc::now().timestamp() as f64);
                    }
                }
                if ok {
                    tracing::info!(source, backup, rto_seconds, "verification passed");
                    let mut a = self.alerts(source);
                    if let Some(since) = a.verify_failing_since.take() {
                        self.save_alerts(source, &a);
                        let msg = format!(
                            "restore verification of '{source}' passes again (backup {backup}, restored in {rto_seconds:.0}s; failing since {}).\nLook: drctl status",
                            since.format("%Y-%m-%d %H:%M UTC")
                        );
                        self.notify_all(NotifyOn::Recovery, "verify_recovered", source, &msg)
                            .await;
                    }
                } else {
                    tracing::error!(source, backup, detail, "verification failed");
                    self.failing(
                        source,
                        "verify_failed",
                        &format!(
                            "restore verification of '{source}' (backup {backup}) failed: {}",
                            tail(detail)
                        ),
                        |a| &mut a.verify_failing_since,
                    )
                    .await;
                }
            }
        }
    }

    /// Sends `text` to every notifier that wants `on`, all at once; failures are logged and
    /// counted, never returned.
    async fn notify_all(&self, on: NotifyOn, event: &str, source: &str, text: &str) {
        let host = crate::lock::hostname();
        let sends = self.notify.iter().filter(|n| n.wants(on)).map(|n| {
            let kind = n.kind();
            let send = self.notify_one(n, &host, event, source, text);
            async move {
                let r = match tokio::time::timeout(HTTP_TIMEOUT + Duration::from_secs(5), send).await {
                    Ok(r) => r,
                    Err(_) => Err(format!(
                        "no answer in {}s",
                        (HTTP_TIMEOUT + Duration::from_secs(5)).as_secs()
                    )),
                };
                if let Err(e) = r {
                    tracing::warn!(notifier = kind, event, source, error = %e, "notifier failed");
                    if let Some(mx) = &self.metrics {
                        mx.notify_failures
                            .get_or_create(&metrics::NotifierLabel {
                                notifier: kind.to_string(),
                            })
                            .inc();
                    }
                }
            }
        });
        futures::future::join_all(sends).await;
    }

    /// One notification. The error never holds a URL (Slack's and Discord's carry their
    /// secret, Telegram's the bot token) or a password.
    async fn notify_one(
        &self,
        n: &NotifyConfig,
        host: &str,
        event: &str,
        source: &str,
        text: &str,
    ) -> Result<(), String> {
        // "backup of 'app-db' failed" out of "backup of 'app-db' failed: <why>": short enough
        // for a subject line or a phone's notification.
        let headline = first_line(text, 120).split(": ").next().unwrap_or_default();
        let title = format!("drctl on {host}: {headline}");
        let json = |url: &url::Url, body: serde_json::Value| self.http.post(url.clone()).json(&body);
        let req = match &n.target {
            NotifyTarget::Webhook { url } => json(
                url,
                serde_json::json!({
                    "event": event,
                    "source": source,
                    "host": host,
                    "message": text,
                    "at": Utc::now().to_rfc3339(),
                }),
            ),
            NotifyTarget::Slack { url } => json(url, serde_json::json!({ "text": format!("drctl on {host}: {text}") })),
            NotifyTarget::Discord { url } => json(
                url,
                serde_json::json!({ "content": format!("drctl on {host}: {text}") }),
            ),
            NotifyTarget::Telegram {
                bot_token,
                chat_id,
                api_url,
            } => {
                // https://core.telegram.org/bots/api#sendmessage: chat_id (Integer or String),
                // text (1-4096 characters after entities parsing), link_preview_options.
                let chat: serde_json::Value = match chat_id.parse::<i64>() {
                    Ok(n) => n.into(),
                    Err(_) => chat_id.as_str().into(),
                };
                let body = serde_json::json!({
                    "chat_id": chat,
                    "text": telegram_text(&format!("drctl on {host}: {text}")),
                    "link_preview_options": { "is_disabled": true },
                });
                let url = format!("{}/bot{bot_token}/sendMessage", api_url.as_str().trim_end_matches('/'));
                self.http.post(url).json(&body)
            }
            NotifyTarget::Ntfy { url, token } => {
                let failing = !matches!(event, "backup_succeeded" | "backup_recovered" | "verify_recovered");
                let mut r = self
                    .http
                    .post(url.clone())
                    .header("Title", ascii_header(&title))
                    .header("Tags", if failing { "warning" } else { "white_check_mark" })
                    .header("Priority", if failing { "high" } else { "default" })
                    .body(text.to_string());
                if let Some(t) = token {
                    r = r.bearer_auth(t);
                }
                r
            }
            NotifyTarget::Email {
                smtp_url,
                from,
                to,
                ca_file,
            } => return send_email(smtp_url, ca_file.as_deref(), from, to, &title, text).await,
        };
        match req.send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => {
                let status = r.status();
                // Telegram says why in `description` ("Bad Request: chat not found"); it never
                // repeats the token.
                let why = r
                    .json::<serde_json::Value>()
                    .await
                    .ok()
                    .and_then(|v| v.get("description").and_then(|d| d.as_str()).map(str::to_string))
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default();
                Err(format!("answered {status}{why}"))
            }
            // without_url: a Slack or Discord URL, a bot token, are secrets.
            Err(e) => Err(e.without_url().to_string()),
        }
    }
}

/// Telegram refuses a text over 4096 characters: keep the end, where the cause is.
fn telegram_text(s: &str) -> String {
    let n = s.chars().count();
    if n <= 4000 {
        return s.to_string();
    }
    let head: String = s.chars().take(200).collect();
    let rest: String = s.chars().skip(n - 3700).collect();
    format!("{head} … {rest}")
}

/// HTTP header values are ASCII here (ntfy's Title): others become '?'.
fn ascii_header(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii() && !c.is_ascii_control() { c } else { '?' })
        .collect()
}

/// E-mail over SMTP with TLS: `smtps://` is TLS from the first byte (465), `smtp://` must
/// upgrade with STARTTLS (587); a server that does not is refused, so a password never
/// crosses the network in the clear.
async fn send_email(
    smtp_url: &url::Url,
    ca_file: Option<&std::path::Path>,
    from: &str,
    to: &[String],
    subject: &str,
    text: &str,
) -> Result<(), String> {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let host = smtp_url.host_str().ok_or("smtp_url has no host")?.to_string();
    let mut tls = TlsParameters::builder(host.clone());
    if let Some(ca) = ca_file {
        let pem = std::fs::read(ca).map_err(|e| format!("cannot read ca_file {}: {e}", ca.display()))?;
        let cert = Certificate::from_pem(&pem).map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
        tls = tls.add_root_certificate(cert);
    }
    let tls = tls.build_rustls().map_err(|e| format!("TLS setup: {e}"))?;
    let implicit = smtp_url.scheme() == "smtps";
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host)
        .port(smtp_url.port().unwrap_or(if implicit { 465 } else { 587 }))
        .tls(if implicit {
            Tls::Wrapper(tls)
        } else {
            Tls::Required(tls)
        })
        .timeout(Some(HTTP_TIMEOUT));
    if !smtp_url.username().is_empty() {
        let dec = |s: &str| {
            url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        b = b.credentials(Credentials::new(
            dec(smtp_url.username()),
            dec(smtp_url.password().unwrap_or("")),
        ));
    }
    let mut m = Message::builder()
        .from(from.parse().map_err(|e| format!("from '{from}': {e}"))?)
        .subject(subject);
    for t in to {
        m = m.to(t.parse().map_err(|e| format!("to '{t}': {e}"))?);
    }
    let msg = m
        .header(lettre::message::header::ContentType::TEXT_PLAIN)
        .body(text.to_string())
        .map_err(|e| format!("cannot build the message: {e}"))?;
    b.build()
        .send(msg)
        .await
        .map(|_| ())
        .map_err(|e| format!("SMTP {host}: {e}"))
}

/// Up to 3 attempts, each with a short timeout; the last failure is logged and counted.
async fn send_ping(http: &reqwest::Client, metrics: Option<&Metrics>, job: &str, req: PingRequest) {
    let mut last = String::new();
    for attempt in 0..=PING_BACKOFF.len() {
        if attempt > 0 {
            tokio::time::sleep(PING_BACKOFF[attempt - 1]).await;
        }
        let r = match &req.body {
            Some(b) => http.post(&req.url).body(b.clone()),
            None => http.get(&req.url),
        };
        match r.timeout(PING_TIMEOUT).send().await {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => last = format!("answered {}", r.status()),
            // without_url: a ping URL carries the check's secret.
            Err(e) => last = e.without_url().to_string(),
        }
    }
    tracing::warn!(job, attempts = PING_BACKOFF.len() + 1, error = %last, "ping failed");
    if let Some(mx) = metrics {
        mx.ping_failures
            .get_or_create(&metrics::JobLabel {
                job_name: job.to_string(),
            })
            .inc();
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
