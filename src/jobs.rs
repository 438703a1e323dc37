//! A backup run: one or more sources under one run id, with process and storage locks,
//! events for every outcome, and retention only after a run in which everything succeeded.
//! `drctl backup` and the daemon both run backups through here.

use crate::catalog::{self, Manifest};
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
}

#[derive(Default)]
pub struct Outcome {
    pub manifests: Vec<Manifest>,
    /// (source, error) for every source that failed; prune failures are listed as "prune".
    pub failures: Vec<(String, String)>,
    pub pruned: Vec<(String, crate::prune::Applied)>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

pub async fn run(
    cfg: &Config,
    sources: &[&SourceConfig],
    opts: &Options,
    job: &str,
    ping_url: Option<&str>,
    events: &Events,
    cancel: &CancellationToken,
) -> Outcome {
    events.emit(Event::RunStarted { job, ping_url }).await;
    let mut out = Outcome::default();
    let run_id = catalog::new_id(chrono::Utc::now());
    let fail = |out: &mut Outcome, source: &str, e: &anyhow::Error| out.failures.push((source.to_string(), format!("{e:#}")));

    let setup = async {
        let storages = storage::select(&cfg.storages, None)?;
        let locks = lock::acquire_all(&storages, lock::Kind::Shared, &format!("backup ({job})"), opts.lock_wait).await?;
        Ok::<_, anyhow::Error>((storages, locks))
    }
    .await;
    let (storages, locks) = match setup {
        Ok(x) => x,
        Err(e) => {
            for s in sources {
                events.emit(Event::BackupFailed { source: s.name(), error: &e, seconds: 0.0 }).await;
                fail(&mut out, s.name(), &e);
            }
            events.emit(Event::RunFinished { job, ping_url, failures: &out.failures }).await;
            return out;
        }
    };

    for src in sources {
        if cancel.is_cancelled() {
            let e = anyhow::Error::from(crate::pipeline::Interrupted);
            events.emit(Event::BackupFailed { source: src.name(), error: &e, seconds: 0.0 }).await;
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
            Ok(m) => {
                events.emit(Event::BackupSucceeded { manifest: &m, seconds }).await;
                out.manifests.push(m);
            }
            Err(e) => {
                events.emit(Event::BackupFailed { source: src.name(), error: &e, seconds }).await;
                fail(&mut out, src.name(), &e);
            }
        }
    }
    lock::release_all(locks).await;

    // A failed run never prunes: the backups it would delete may be the last good ones.
    if out.ok() && opts.prune && cfg.prune.after_backup {
        if let Err(e) = prune_sources(cfg, &storages, sources, opts, &mut out).await {
            tracing::error!(job, error = %format!("{e:#}"), "prune after backup failed");
            out.failures.push(("prune".into(), format!("{e:#}")));
        }
    }
    events.emit(Event::RunFinished { job, ping_url, failures: &out.failures }).await;
    out
}

async fn prune_sources(
    cfg: &Config,
    storages: &[storage::Storage],
    sources: &[&SourceConfig],
    opts: &Options,
    out: &mut Outcome,
) -> Result<()> {
    let orphan_age = crate::retention::parse_duration(&cfg.prune.orphan_age).map_err(anyhow::Error::msg)?;
    let locks = lock::acquire_all(storages, lock::Kind::Exclusive, "prune after backup", opts.lock_wait).await?;
    let result = async {
        for s in sources {
            let plan = crate::prune::plan(cfg, storages, Some(s.name()), chrono::Utc::now(), orphan_age).await?;
            let done = crate::prune::apply(&plan, storages).await?;
            out.pruned.push((s.name().to_string(), done));
        }
        Ok(())
    }
    .await;
    lock::release_all(locks).await;
    result
}
