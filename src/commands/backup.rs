//! `drctl backup`.

use super::*;

pub(super) async fn backup(cfg: &Config, a: &BackupArgs) -> Result<i32> {
    let sources: Vec<_> = if a.sources.is_empty() {
        cfg.sources.iter().collect()
    } else {
        a.sources
            .iter()
            .map(|n| {
                cfg.source(n).ok_or_else(|| {
                    let names: Vec<&str> = cfg.sources.iter().map(|s| s.name()).collect();
                    anyhow::anyhow!("no source named '{n}' (configured: {})", names.join(", "))
                })
            })
            .collect::<Result<_>>()?
    };
    if sources.is_empty() {
        bail!("no sources configured; add a [[source]] to the config");
    }
    let cancel = cancel_on_signal();
    let opts = crate::jobs::Options {
        prune: !a.no_prune,
        lock_wait: duration_arg("--lock-wait", &a.lock_wait)?,
        keep: a.keep.then(|| a.note.clone()),
    };
    let events = events_for(cfg);
    let out = crate::jobs::run(cfg, &sources, &opts, "manual", None, &events, &cancel).await;
    for m in &out.manifests {
        println!(
            "{}  {}  {} → {} stored on {}",
            m.source,
            m.id,
            catalog::human_bytes(m.plain.size),
            catalog::human_bytes(m.stored.size),
            m.storages.join(", "),
        );
    }
    for (name, done) in &out.pruned {
        if done.backups_deleted + done.orphans_deleted > 0 {
            println!(
                "pruned '{name}': {} backup(s), {} orphaned object(s)",
                done.backups_deleted, done.orphans_deleted
            );
        }
    }
    for (name, e) in &out.failures {
        eprintln!("error: {name}: {e}");
    }
    for (name, st, e) in &out.degraded {
        eprintln!("degraded: {name}: storage '{st}' missed this backup: {e}");
    }
    Ok(out.exit_code())
}
