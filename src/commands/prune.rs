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
    let orphan_age = match a.orphan_age.as_deref() {
        Some(s) => crate::config::parse_duration(s).map_err(|e| anyhow::anyhow!("--orphan-age: {e}"))?,
        None => cfg.prune.orphan_age.chrono(),
    };
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
        print_plan(&plan);
    }
    // What could not be read was left alone; the rest was pruned. Exit 1 so it is noticed.
    let code = if plan.problems.is_empty() { 0 } else { 1 };
    if a.dry_run {
        return Ok(code);
    }
    let done = crate::prune::apply(&plan, storages).await?;
    if !a.json {
        println!(
            "deleted {} backup(s) and {} orphaned object(s), aborted {} unfinished upload(s)",
            done.backups_deleted, done.orphans_deleted, done.uploads_aborted
        );
    }
    Ok(code)
}

/// The plan as text: each storage and source's decisions with their reasons, then orphans and
/// unfinished uploads, then the totals.
fn print_plan(plan: &crate::prune::Plan) {
    let mut last = None;
    for i in &plan.items {
        let group = (&i.storage, &i.source);
        if last != Some(group) {
            println!("storage '{}', source '{}':", i.storage, i.source);
            last = Some(group);
        }
        println!(
            "  {} {:<28} {}  {}",
            if i.decision.keep { "keep" } else { "DROP" },
            i.decision.id,
            i.decision.time.format("%Y-%m-%d %H:%M"),
            i.decision.reasons.join(", ")
        );
    }
    for w in &plan.wal {
        println!(
            "  WAL of '{}' on '{}': {} objects before {} (the oldest kept base backup's start) to delete",
            w.source,
            w.storage,
            w.keys.len(),
            w.keep_from
        );
    }
    for o in &plan.orphans {
        println!("  orphan on '{}': {} ({} bytes)", o.storage, o.key, o.size);
    }
    for u in &plan.uploads {
        println!(
            "  unfinished upload on '{}': {} (started {})",
            u.storage,
            u.key,
            u.initiated.to_rfc3339()
        );
    }
    for s in &plan.unknown_policy {
        println!(
            "note: kept every backup of '{s}': this config does not define it and its backups record no retention policy (add the source with its `retention` to prune it)"
        );
    }
    for w in &plan.warnings {
        eprintln!("warning: {w}");
    }
    for p in &plan.problems {
        eprintln!("problem: {p}");
    }
    println!(
        "{} kept, {} to drop, {} orphaned objects",
        plan.items.len() - plan.drops().count(),
        plan.drops().count(),
        plan.orphans.len()
    );
}
