//! `drctl prune`.

use super::*;

pub(super) async fn prune(cfg: &Config, a: &PruneArgs) -> Result<i32> {
    if let Some(s) = &a.source {
        if cfg.source(s).is_none() {
            tracing::warn!(source = %s, "not in the config; pruning its backups with the default policy");
        }
    }
    let storages = storage::select(&cfg.storages, a.storage.as_deref())?;
    let now = match &a.now {
        Some(t) => catalog::parse_time(t, chrono::Utc::now())?,
        None => chrono::Utc::now(),
    };
    let orphan_age = crate::config::parse_duration(a.orphan_age.as_deref().unwrap_or(&cfg.prune.orphan_age))
        .map_err(|e| anyhow::anyhow!("--orphan-age: {e}"))?;
    // A dry run only reads, so it takes no lock and never waits.
    let locks = if a.dry_run {
        Vec::new()
    } else {
        lock::acquire_all(
            &storages,
            lock::Kind::Exclusive,
            "prune",
            duration_arg("--lock-wait", &a.lock_wait)?,
        )
        .await?
    };
    let result = prune_locked(cfg, a, &storages, now, orphan_age).await;
    lock::release_all(locks).await;
    result
}

async fn prune_locked(
    cfg: &Config,
    a: &PruneArgs,
    storages: &[Storage],
    now: chrono::DateTime<chrono::Utc>,
    orphan_age: chrono::Duration,
) -> Result<i32> {
    let plan = crate::prune::plan(cfg, storages, a.source.as_deref(), now, orphan_age).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        plan.print();
    }
    if a.dry_run {
        return Ok(0);
    }
    let done = crate::prune::apply(&plan, storages).await?;
    if !a.json {
        println!(
            "deleted {} backup(s) and {} orphaned object(s), aborted {} unfinished upload(s)",
            done.backups_deleted, done.orphans_deleted, done.uploads_aborted
        );
    }
    Ok(0)
}
