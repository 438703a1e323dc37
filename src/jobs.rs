//! A backup run: one or more sources under one run id, with process and storage locks,
//! events for every outcome, and retention only after a run in which everything succeeded.
//! `drctl backup` and the daemon both run backups through here.

use crate::catalog::Manifest;
use crate::config::{Config, SourceConfig};
use crate::events::{Event, Events};
use crate::lock;
use crate::storage;
use anyhow::Result;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub struct Options {
    pub prune: bool,
    pub lock_wait: Duration,
    /// `backup --keep [--note]`: pin each backup of the run as soon as it is committed.
    pub keep: Option<Option<String>>,
}

#[derive(Default)]
pub struct Outcome {
    pub manifests: Vec<Manifest>,
    /// (source, error) for every source that failed; prune failures are listed as "prune".
    pub failures: Vec<(String, String)>,
    /// (source, storage, error) for storages that missed a backup the others hold.
    pub degraded: Vec<(String, String, String)>,
    pub pruned: Vec<(String, crate::prune::Applied)>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.failures.is_empty() && self.degraded.is_empty()
    }

    /// 0 ok, 1 a backup failed, 3 degraded (complete on some storages, missing on others).
    pub fn exit_code(&self) -> i32 {
        if !self.failures.is_empty() {
            1
        } else if !self.degraded.is_empty() {
            3
        } else {
            0
        }
    }
}

pub async fn run(
    cfg: &Config,
    sources: &[&SourceConfig],
    opts: &Options,
    job: &str,
    ping: Option<&crate::config::Ping>,
    events: &Events,
    cancel: &CancellationToken,
) -> Outcome {
    events.emit(Event::RunStarted { job, ping }).await;
    let mut out = Outcome::default();
    let run_id = crate::layout::new_id(chrono::Utc::now());
    let fail =
        |out: &mut Outcome, source: &str, e: &anyhow::Error| out.failures.push((source.to_string(), format!("{e:#}")));

    // A storage that cannot even be locked (down, refusing writes) is left out of this run:
    // the others still get the backup, which is then degraded — unless require_all says
    // all or nothing, or it was the only one.
    let mut unreachable: Vec<(String, String)> = Vec::new();
    let setup = async {
        let all = storage::select(&cfg.storages, None)?;
        let mut storages = Vec::new();
        let mut locks = Vec::new();
        let mut first_err = None;
        for st in all {
            match lock::acquire(&st, lock::Kind::Shared, &format!("backup ({job})"), opts.lock_wait).await {
                Ok(l) => {
                    locks.push(l);
                    storages.push(st);
                }
                Err(e) => {
                    unreachable.push((st.name.clone(), format!("{e:#}")));
                    first_err.get_or_insert(e);
                }
            }
        }
        if storages.is_empty() || (cfg.backup.require_all && !unreachable.is_empty()) {
            lock::release_all(locks).await;
            let e = first_err.expect("a storage failed");
            return Err(if cfg.backup.require_all && !storages.is_empty() {
                e.context("a storage is unreachable and [backup] require_all = true: nothing was committed")
            } else {
                e.context("no storage is reachable: nothing was committed")
            });
        }
        Ok::<_, anyhow::Error>((storages, locks))
    }
    .await;
    let (storages, locks) = match setup {
        Ok(x) => x,
        Err(e) => {
            for s in sources {
                events
                    .emit(Event::BackupFailed {
                        source: s.name(),
                        error: &e,
                        seconds: 0.0,
                    })
                    .await;
                fail(&mut out, s.name(), &e);
            }
            events
                .emit(Event::RunFinished {
                    job,
                    ping,
                    failures: &out.failures,
                })
                .await;
            return out;
        }
    };

    for src in sources {
        if cancel.is_cancelled() {
            let e = anyhow::Error::from(crate::pipeline::Interrupted);
            events
                .emit(Event::BackupFailed {
                    source: src.name(),
                    error: &e,
                    seconds: 0.0,
                })
                .await;
            fail(&mut out, src.name(), &e);
            continue;
        }
        let t0 = Instant::now();
        let result = match events.state.lock_source(src.name()) {
            Ok(_guard) => crate::backup::backup_source(cfg, src, &storages, &run_id, cancel).await,
            Err(e) => Err(e),
        };
        let seconds = t0.elapsed().as_secs_f64();
        match result {
            Ok(mut c) => {
                c.missed.extend(unreachable.iter().cloned());
                events
                    .emit(Event::BackupSucceeded {
                        manifest: &c.manifest,
                        seconds,
                    })
                    .await;
                if !c.missed.is_empty() {
                    events
                        .emit(Event::BackupDegraded {
                            source: src.name(),
                            missed: &c.missed,
                        })
                        .await;
                    for (st, e) in c.missed {
                        out.degraded.push((src.name().to_string(), st, e));
                    }
                }
                if let Some(note) = &opts.keep {
                    // Before the run's prune, so the pin protects it from the start.
                    if let Err(e) = crate::pin::pin(&storages, &c.manifest, note.as_deref()).await {
                        fail(
                            &mut out,
                            src.name(),
                            &e.context("the backup is committed but not pinned"),
                        );
                    }
                }
                out.manifests.push(c.manifest);
            }
            Err(e) => {
                events
                    .emit(Event::BackupFailed {
                        source: src.name(),
                        error: &e,
                        seconds,
                    })
                    .await;
                fail(&mut out, src.name(), &e);
            }
        }
    }
    lock::release_all(locks).await;

    // A failed run never prunes: the backups it would delete may be the last good ones.
    if out.ok() && opts.prune && cfg.prune.after_backup {
        let names: Vec<&str> = sources.iter().map(|s| s.name()).collect();
        match prune_sources(cfg, &storages, sources, opts, &mut out).await {
            Ok(()) => events.emit(Event::PruneSucceeded { sources: &names }).await,
            Err(e) => {
                events
                    .emit(Event::PruneFailed {
                        job,
                        sources: &names,
                        error: &e,
                    })
                    .await;
                out.failures.push(("prune".into(), format!("{e:#}")));
            }
        }
    }
    let mut alerts = out.failures.clone();
    alerts.extend(
        out.degraded
            .iter()
            .map(|(s, st, e)| (s.clone(), format!("degraded: storage '{st}' missed it: {e}"))),
    );
    events
        .emit(Event::RunFinished {
            job,
            ping,
            failures: &alerts,
        })
        .await;
    out
}

async fn prune_sources(
    cfg: &Config,
    storages: &[storage::Storage],
    sources: &[&SourceConfig],
    opts: &Options,
    out: &mut Outcome,
) -> Result<()> {
    let orphan_age = cfg.prune.orphan_age.chrono();
    let locks = lock::acquire_all(storages, lock::Kind::Exclusive, "prune after backup", opts.lock_wait).await?;
    let result = async {
        // Each warning once per run, not once per source.
        let mut warned = std::collections::HashSet::new();
        let mut problems = Vec::new();
        for s in sources {
            let plan = crate::prune::plan(cfg, storages, Some(s.name()), chrono::Utc::now(), orphan_age).await?;
            for w in &plan.warnings {
                if warned.insert(w.clone()) {
                    tracing::warn!(warning = %w, "prune after backup");
                }
            }
            problems.extend(plan.problems.iter().cloned());
            let done = crate::prune::apply(&plan, storages).await?;
            out.pruned.push((s.name().to_string(), done));
        }
        // What prune could not read it left alone; the run's backups are stored, but the
        // operator must hear that pruning is incomplete.
        if !problems.is_empty() {
            problems.dedup();
            anyhow::bail!("prune left some backups alone: {}", problems.join("; "));
        }
        Ok(())
    }
    .await;
    lock::release_all(locks).await;
    result
}
