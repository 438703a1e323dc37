//! `drctl daemon`: runs the configured jobs on their cron schedules (tokio-cron-scheduler),
//! watches for stale backups, serves metrics, and handles signals.
//!
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
use crate::state::StateDir;
use anyhow::{anyhow, Result};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

struct Ctx {
    cfg: Arc<Config>,
    events: Events,
    cancel: CancellationToken,
    tracker: TaskTracker,
    running: Arc<Mutex<HashMap<String, Arc<AtomicBool>>>>,
}

async fn build_scheduler(ctx: &Arc<Ctx>) -> Result<JobScheduler> {
    let sched = JobScheduler::new()
        .await
        .map_err(|e| anyhow!("cannot create scheduler: {e}"))?;
    let tz = *ctx.cfg.daemon.timezone.get();
    for job in &ctx.cfg.jobs {
        let name = job.name.clone();
        let flag = ctx
            .running
            .lock()
            .expect("running map")
            .entry(name.clone())
            .or_insert_with(|| Arc::new(AtomicBool::new(false)))
            .clone();
        let c = ctx.clone();
        let j = Job::new_async_tz(job.schedule.get().as_str(), tz, move |_id, _l| {
            let c = c.clone();
            let name = name.clone();
            let flag = flag.clone();
            Box::pin(async move {
                if flag.swap(true, Ordering::SeqCst) {
                    tracing::warn!(job = %name, "previous run still going; skipping this one");
                    return;
                }
                let fut = run_job(c.clone(), name.clone());
                c.tracker.track_future(fut).await;
                flag.store(false, Ordering::SeqCst);
            })
        })
        .map_err(|e| anyhow!("job '{}': schedule '{}': {e}", job.name, job.schedule))?;
        sched
            .add(j)
            .await
            .map_err(|e| anyhow!("cannot add job '{}': {e}", job.name))?;
        tracing::info!(job = %job.name, schedule = %job.schedule, timezone = %ctx.cfg.daemon.timezone, "scheduled");
    }
    // Scheduled restore verification, where this host holds an identity to decrypt with.
    if let Some(identity) = ctx.cfg.encryption.identity_file.clone() {
        let c = ctx.clone();
        let flag = Arc::new(AtomicBool::new(false));
        let schedule = ctx.cfg.verify.schedule.clone();
        let j = Job::new_async_tz(schedule.get().as_str(), tz, move |_id, _l| {
            let c = c.clone();
            let flag = flag.clone();
            let identity = identity.clone();
            Box::pin(async move {
                if flag.swap(true, Ordering::SeqCst) {
                    tracing::warn!("previous verification still going; skipping this one");
                    return;
                }
                c.tracker.track_future(run_verify(c.clone(), identity)).await;
                flag.store(false, Ordering::SeqCst);
            })
        })
        .map_err(|e| anyhow!("verify.schedule '{schedule}': {e}"))?;
        sched
            .add(j)
            .await
            .map_err(|e| anyhow!("cannot add the verification job: {e}"))?;
        tracing::info!(schedule = %schedule, "restore verification scheduled");
    } else {
        tracing::info!("restore verification not scheduled: no encryption.identity_file on this host (run `drctl verify` where the identity is)");
    }
    sched
        .start()
        .await
        .map_err(|e| anyhow!("cannot start scheduler: {e}"))?;
    Ok(sched)
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
        job.ping_url.as_deref(),
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
                        })
                        .await;
                }
                let Some(max) = &job.max_age else { continue };
                let limit = max.chrono();
                // No backup at all counts as stale from the daemon's start of checking.
                let age = newest.map(|t| now - t);
                let key = (src.name().to_string(), st.name.clone());
                if age.is_none_or(|a| a > limit) {
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
                    alerted.remove(&key);
                }
            }
        }
    }
}

pub async fn run(config_path: PathBuf, metrics_addr: Option<std::net::SocketAddr>) -> Result<i32> {
    use tokio::signal::unix::{signal, SignalKind};
    let cfg = Arc::new(config::load(&config_path)?);
    let metrics = Arc::new(Metrics::new());
    if let Some(addr) = metrics_addr {
        crate::metrics::serve(addr, metrics.clone()).await?;
        tracing::info!(%addr, "serving metrics on /metrics");
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
    let mut sched = build_scheduler(&ctx).await?;
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
    tracing::info!(config = %config_path.display(), jobs = ctx.cfg.jobs.len(), "daemon started");

    // tokio-cron-scheduler fixes a job's UTC offset when the job is created. Rebuild the
    // schedule when the zone's offset changes (a DST switch), so "0 3 * * *" stays 03:00 local.
    let offset = |c: &Config| {
        use chrono::Offset;
        let tz = *c.daemon.timezone.get();
        chrono::Utc::now().with_timezone(&tz).offset().fix().local_minus_utc()
    };
    let mut built_offset = offset(&ctx.cfg);
    let mut dst_check = tokio::time::interval(Duration::from_secs(60));

    loop {
        tokio::select! {
            _ = dst_check.tick() => {
                let now_offset = offset(&ctx.cfg);
                if now_offset != built_offset {
                    let _ = sched.shutdown().await;
                    sched = build_scheduler(&ctx).await?;
                    built_offset = now_offset;
                    tracing::info!(utc_offset_seconds = now_offset, "time zone offset changed (DST): schedule rebuilt");
                }
            }
            _ = hup.recv() => {
                match config::load(&config_path) {
                    Ok(new) => {
                        let _ = sched.shutdown().await;
                        ctx = make_ctx(Arc::new(new));
                        *stale_ctx.lock().expect("ctx") = ctx.clone();
                        sched = build_scheduler(&ctx).await?;
                        built_offset = offset(&ctx.cfg);
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
    let _ = sched.shutdown().await;
    stale_handle.abort();
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
    tracing::info!("daemon stopped");
    Ok(0)
}
