//! `drctl daemon`: runs the configured jobs on their cron schedules, watches for stale
//! backups, serves metrics, and handles signals.
//!
//! * Each schedule is one task that sleeps until [`Schedule::next_after`] in the daemon's time
//!   zone, the same computation `drctl validate` and `drctl status` use, so what validates and
//!   what status shows as the next run is what runs (cron's day-of-month OR day-of-week rule,
//!   DST gaps and repeats included: see `schedule.rs`).
//! * A job never overlaps itself: a tick that finds the previous run still going is skipped
//!   and logged. A manual `drctl backup` and the daemon never dump the same source at once
//!   (per-source process lock in the state dir, plus the storage lock).
//! * SIGTERM/SIGINT: stop scheduling, let running jobs finish for `grace_period`, then cancel
//!   them (their uploads are aborted, nothing half-visible) and exit 0.
//! * SIGHUP: reload the config; if the new one does not validate, keep running on the old one
//!   and log every error.

use crate::config::{self, Config};
use crate::events::{Event, Events};
use crate::metrics::Metrics;
use crate::schedule::Schedule;
use crate::state::StateDir;
use anyhow::Result;
use chrono::Utc;
use chrono_tz::Tz;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often the daemon stops ssh control masters whose sessions are gone.
const SSH_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

struct Ctx {
    cfg: Arc<Config>,
    events: Events,
    cancel: CancellationToken,
    tracker: TaskTracker,
    running: Arc<Mutex<HashMap<String, Arc<AtomicBool>>>>,
}

/// What a schedule starts.
#[derive(Clone)]
enum Run {
    Job(String),
    /// Scheduled restore verification, with the identity to decrypt with.
    Verify(PathBuf),
}

/// The running schedules of one config; dropped on reload and shutdown.
struct Scheduler {
    stop: CancellationToken,
}

impl Scheduler {
    fn shutdown(&self) {
        self.stop.cancel();
    }
}

fn build_scheduler(ctx: &Arc<Ctx>) -> Scheduler {
    let stop = CancellationToken::new();
    let tz = *ctx.cfg.daemon.timezone.get();
    for job in &ctx.cfg.jobs {
        let flag = ctx
            .running
            .lock()
            .expect("running map")
            .entry(job.name.clone())
            .or_insert_with(|| Arc::new(AtomicBool::new(false)))
            .clone();
        let schedule = job.schedule.get().clone();
        tracing::info!(job = %job.name, schedule = %job.schedule, timezone = %ctx.cfg.daemon.timezone, next = ?schedule.next_after(tz, Utc::now()), "scheduled");
        tokio::spawn(tick(
            ctx.clone(),
            Run::Job(job.name.clone()),
            schedule,
            tz,
            flag,
            stop.clone(),
        ));
    }
    // Scheduled restore verification, where this host holds an identity to decrypt with.
    if let Some(identity) = ctx.cfg.encryption.identity_file.clone() {
        let schedule = ctx.cfg.verify.schedule.get().clone();
        tracing::info!(schedule = %ctx.cfg.verify.schedule, "restore verification scheduled");
        let flag = Arc::new(AtomicBool::new(false));
        tokio::spawn(tick(
            ctx.clone(),
            Run::Verify(identity),
            schedule,
            tz,
            flag,
            stop.clone(),
        ));
    } else {
        tracing::info!("restore verification not scheduled: no encryption.identity_file on this host (run `drctl verify` where the identity is)");
    }
    Scheduler { stop }
}

/// Sleeps until each next run of `schedule` and starts `run` then, unless its previous run is
/// still going (`running`), until `stop`.
async fn tick(ctx: Arc<Ctx>, run: Run, schedule: Schedule, tz: Tz, running: Arc<AtomicBool>, stop: CancellationToken) {
    let mut after = Utc::now();
    loop {
        let Some(next) = schedule.next_after(tz, after) else {
            tracing::error!(schedule = %schedule, "schedule has no next run; nothing more is started for it");
            return;
        };
        // tokio's timer runs on the monotonic clock, the schedule on the wall clock: sleep in
        // slices and look at the wall clock again, so a stepped clock (NTP, a resumed VM)
        // does not shift the run.
        loop {
            let now = Utc::now();
            if now >= next {
                break;
            }
            let slice = (next - now).to_std().unwrap_or_default().min(Duration::from_secs(30));
            tokio::select! {
                _ = tokio::time::sleep(slice) => {}
                _ = stop.cancelled() => return,
            }
        }
        if stop.is_cancelled() {
            return;
        }
        let late = Utc::now() - next;
        if late > chrono::Duration::minutes(1) {
            // Runs missed while the host slept are not made up one after another.
            tracing::warn!(late_seconds = late.num_seconds(), schedule = %schedule, "woke late; runs missed in between are skipped");
        }
        // The next run is the first after this one, or after now if we woke late.
        after = next.max(Utc::now());
        start(&ctx, &run, &running);
    }
}

fn start(ctx: &Arc<Ctx>, run: &Run, running: &Arc<AtomicBool>) {
    if running.swap(true, Ordering::SeqCst) {
        match run {
            Run::Job(name) => tracing::warn!(job = %name, "previous run still going; skipping this one"),
            Run::Verify(_) => tracing::warn!("previous verification still going; skipping this one"),
        }
        return;
    }
    let (c, run, running) = (ctx.clone(), run.clone(), running.clone());
    ctx.tracker.spawn(async move {
        match run {
            Run::Job(name) => run_job(c, name).await,
            Run::Verify(identity) => run_verify(c, identity).await,
        }
        running.store(false, Ordering::SeqCst);
    });
}

async fn run_job(ctx: Arc<Ctx>, name: String) {
    let cfg = ctx.cfg.clone();
    let Some(job) = cfg.job(&name) else { return };
    let sources = cfg.job_sources(job);
    let opts = crate::jobs::Options {
        prune: true,
        lock_wait: Duration::from_secs(600),
        keep: None,
    };
    crate::jobs::run(
        &cfg,
        &sources,
        &opts,
        &name,
        job.ping.as_ref(),
        &ctx.events,
        &ctx.cancel,
    )
    .await;
}

async fn run_verify(ctx: Arc<Ctx>, identity: PathBuf) {
    let cfg = ctx.cfg.clone();
    let setup = async {
        let identities = crate::keys::load_identities(&identity)?;
        let storages = crate::storage::select(&cfg.storages, None)?;
        Ok::<_, anyhow::Error>((identities, storages))
    }
    .await;
    let sources: Vec<String> = cfg.sources.iter().map(|s| s.name().to_string()).collect();
    match setup {
        Ok((identities, storages)) => {
            let cancel = ctx.cancel.clone();
            tokio::select! {
                _ = crate::verify::run_all(&cfg, &sources, None, &storages, &identities, &ctx.events) => {}
                _ = cancel.cancelled() => tracing::warn!("verification cancelled by shutdown; sandbox removed"),
            }
        }
        Err(e) => {
            let msg = format!("{e:#}");
            for s in &sources {
                crate::verify::report_error(&ctx.events, s, &msg).await;
            }
        }
    }
}

/// Metrics a restarted daemon would otherwise not know until the next run (see
/// `Event::DaemonStarted`).
async fn seed_metrics(ctx: &Ctx) {
    let names: Vec<&str> = ctx.cfg.sources.iter().map(|s| s.name()).collect();
    let storages: Vec<&str> = ctx.cfg.storages.iter().map(|s| s.name()).collect();
    let jobs: Vec<&str> = ctx
        .cfg
        .jobs
        .iter()
        .filter(|j| j.ping.is_some())
        .map(|j| j.name.as_str())
        .collect();
    let verify_interval = ctx.cfg.encryption.identity_file.as_ref().and_then(|_| {
        let tz = *ctx.cfg.daemon.timezone.get();
        let s = ctx.cfg.verify.schedule.get();
        let a = s.next_after(tz, Utc::now())?;
        Some(s.next_after(tz, a)? - a)
    });
    ctx.events
        .emit(Event::DaemonStarted {
            sources: &names,
            storages: &storages,
            jobs: &jobs,
            verify_interval,
        })
        .await;
}

/// Refreshes the newest-backup-age metrics and alerts once per stale episode.
async fn check_staleness(cfg: &Config, events: &Events, alerted: &mut HashSet<(String, String)>) {
    let storages = match crate::storage::select(&cfg.storages, None) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "staleness check: cannot open storages");
            return;
        }
    };
    let now = chrono::Utc::now();
    // Per source with a max_age: stale on some storage (true) or fresh on every storage that
    // could be read (false). A source is fresh again only when it is on all of them.
    let mut stale_any: HashMap<String, bool> = HashMap::new();
    for st in &storages {
        let listing = crate::catalog::list(std::slice::from_ref(st), None).await;
        for p in &listing.problems {
            tracing::warn!(storage = %st.name, problem = %p, "staleness check: cannot read everything");
        }
        if listing.storage_failed(&st.name) {
            continue;
        }
        let entries = listing.entries;
        for job in &cfg.jobs {
            for src in cfg.job_sources(job) {
                // A backup dated after now (a host with its clock ahead) must not count as fresh:
                // it would silence this alert forever. It raises its own alert instead.
                let skew = chrono::Duration::minutes(5);
                for e in entries
                    .iter()
                    .filter(|e| e.manifest.source == src.name() && e.manifest.started_at > now + skew)
                {
                    let key = (
                        format!("{}\0future", src.name()),
                        format!("{}/{}", st.name, e.manifest.id),
                    );
                    if alerted.insert(key) {
                        events
                            .emit(Event::FutureBackup {
                                source: src.name(),
                                storage: &st.name,
                                backup: &e.manifest.id,
                                ahead: e.manifest.started_at - now,
                            })
                            .await;
                    }
                }
                let newest = entries
                    .iter()
                    .find(|e| e.manifest.source == src.name() && e.manifest.started_at <= now + skew)
                    .map(|e| e.manifest.started_at);
                if let Some(t) = newest {
                    events
                        .emit(Event::BackupAge {
                            source: src.name(),
                            storage: &st.name,
                            age: now - t,
                            max_age: job.max_age.as_ref().map(|m| m.chrono()),
                        })
                        .await;
                }
                let Some(max) = &job.max_age else { continue };
                let limit = max.chrono();
                // No backup at all counts as stale from the daemon's start of checking.
                let age = newest.map(|t| now - t);
                let key = (src.name().to_string(), st.name.clone());
                if age.is_none_or(|a| a > limit) {
                    stale_any.insert(src.name().to_string(), true);
                    if alerted.insert(key) {
                        events
                            .emit(Event::Stale {
                                source: src.name(),
                                storage: &st.name,
                                age: age.unwrap_or(chrono::Duration::MAX),
                                max_age: max.text(),
                            })
                            .await;
                    }
                } else {
                    stale_any.entry(src.name().to_string()).or_insert(false);
                    alerted.remove(&key);
                }
            }
        }
    }
    for (source, stale) in &stale_any {
        if !stale {
            events.emit(Event::Fresh { source }).await;
        }
    }
}

/// How often the WAL spools of container clusters are drained.
const SPOOL_DRAIN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3);

/// One drain of every container cluster's WAL spool (`postgres_cluster::spool`). A failure is
/// logged and the files stay in the spool; the metric shows how many wait.
async fn drain_spools(cfg: &Config, metrics: &Metrics) {
    use crate::sources::postgres_cluster::{spool, ClusterServer};
    let clusters: Vec<_> = cfg
        .sources
        .iter()
        .filter_map(|s| match s {
            crate::sources::SourceConfig::PostgresCluster(c) if matches!(c.server, ClusterServer::Container { .. }) => {
                Some(c)
            }
            _ => None,
        })
        .collect();
    if clusters.is_empty() {
        return;
    }
    let storages = match crate::storage::select(&cfg.storages, None) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "cannot open the storages to drain WAL spools");
            return;
        }
    };
    for c in clusters {
        let left = match spool::drain(cfg, c, &storages).await {
            Ok(d) => {
                if d.archived + d.already > 0 {
                    tracing::info!(source = %c.name, archived = d.archived, already = d.already, "WAL spool drained");
                }
                Some(d.left)
            }
            Err(e) => {
                tracing::error!(source = %c.name, error = %format!("{e:#}"), "cannot archive WAL from the spool; the files stay there");
                spool::waiting_count(c).await.ok()
            }
        };
        if let Some(n) = left {
            metrics
                .wal_spool_files
                .get_or_create(&crate::metrics::source(&c.name))
                .set(n as f64);
        }
    }
}

/// Builds the status page for the config the daemon runs with (`commands::status` renders it).
pub type StatusPage = fn(Arc<Config>) -> futures::future::BoxFuture<'static, crate::metrics::Page>;

pub async fn run(
    config_path: PathBuf,
    metrics_addr: Option<std::net::SocketAddr>,
    status_page: Option<StatusPage>,
) -> Result<i32> {
    use tokio::signal::unix::{signal, SignalKind};
    let cfg = Arc::new(config::load(&config_path)?);
    let metrics = Arc::new(Metrics::new());
    // The page follows reloads: it reads the config in this holder.
    let page_cfg: Arc<Mutex<Arc<Config>>> = Arc::new(Mutex::new(cfg.clone()));
    if let Some(addr) = metrics_addr {
        let page = status_page.map(|render| {
            let holder = page_cfg.clone();
            Arc::new(move || render(holder.lock().expect("page cfg").clone())) as crate::metrics::PageFn
        });
        crate::metrics::serve(addr, metrics.clone(), page).await?;
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "metrics and the status page are served beyond this host: anyone who reaches the address sees source names, backup times and errors (bind 127.0.0.1 and put a proxy with authentication in front)");
        }
        tracing::info!(%addr, "serving metrics on /metrics, the status page on / and /status.json");
    }
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let running = Arc::new(Mutex::new(HashMap::new()));
    let make_ctx = |cfg: Arc<Config>| {
        Arc::new(Ctx {
            events: Events::new(
                StateDir::new(cfg.daemon.state_dir()),
                cfg.notify.clone(),
                Some(metrics.clone()),
            ),
            cfg,
            cancel: cancel.clone(),
            tracker: tracker.clone(),
            running: running.clone(),
        })
    };
    let mut ctx = make_ctx(cfg);
    if ctx.cfg.jobs.is_empty() {
        tracing::warn!("no [[job]] in the config: nothing is scheduled");
    }
    seed_metrics(&ctx).await;
    let mut sched = build_scheduler(&ctx);
    let stale_ctx: Arc<Mutex<Arc<Ctx>>> = Arc::new(Mutex::new(ctx.clone()));
    let stale_handle = {
        let holder = stale_ctx.clone();
        tokio::spawn(async move {
            let mut alerted = HashSet::new();
            loop {
                let c = holder.lock().expect("ctx").clone();
                check_staleness(&c.cfg, &c.events, &mut alerted).await;
                tokio::time::sleep(c.cfg.daemon.stale_check_interval.std()).await;
            }
        })
    };
    // SFTP sessions of runs and staleness checks sometimes leave their ssh control master
    // behind (see storage::ssh); a run exits its process and stops them then, the daemon does not.
    let ssh_sweep = tokio::spawn(async {
        loop {
            tokio::time::sleep(SSH_SWEEP_INTERVAL).await;
            if let Ok(n @ 1..) = tokio::task::spawn_blocking(crate::storage::ssh::stop_orphaned_masters).await {
                tracing::debug!(stopped = n, "stopped orphaned ssh control masters");
            }
        }
    });
    let spool_handle = {
        let holder = stale_ctx.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            loop {
                let c = holder.lock().expect("ctx").clone();
                drain_spools(&c.cfg, &metrics).await;
                tokio::time::sleep(SPOOL_DRAIN_INTERVAL).await;
            }
        })
    };
    tracing::info!(config = %config_path.display(), jobs = ctx.cfg.jobs.len(), "daemon started");

    loop {
        tokio::select! {
            _ = hup.recv() => {
                match config::load(&config_path) {
                    Ok(new) => {
                        sched.shutdown();
                        ctx = make_ctx(Arc::new(new));
                        *page_cfg.lock().expect("page cfg") = ctx.cfg.clone();
                        *stale_ctx.lock().expect("ctx") = ctx.clone();
                        seed_metrics(&ctx).await;
                        sched = build_scheduler(&ctx);
                        tracing::info!(jobs = ctx.cfg.jobs.len(), "config reloaded");
                    }
                    Err(e) => {
                        for err in &e.errors {
                            tracing::error!(config = %e.file.display(), error = %err, "reload rejected; keeping the running config");
                        }
                    }
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }

    tracing::info!("stopping: no new runs will start");
    sched.shutdown();
    stale_handle.abort();
    spool_handle.abort();
    ssh_sweep.abort();
    tracker.close();
    let grace = ctx.cfg.daemon.grace_period.std();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(
            grace_seconds = grace.as_secs(),
            "grace period over: aborting running backups; nothing of them will be committed"
        );
        cancel.cancel();
        tracker.wait().await;
    }
    // A last run's pings are still on their way (each has a short timeout and 3 attempts).
    ctx.events.flush(Duration::from_secs(10)).await;
    tracing::info!("daemon stopped");
    Ok(0)
}
