//! `drctl status`.

use super::*;

pub(super) async fn status(cfg: &Config, a: &StatusArgs) -> Result<i32> {
    let state = crate::state::StateDir::new(cfg.daemon.state_dir());
    let storages = storage::select(&cfg.storages, None)?;
    let now = chrono::Utc::now();
    let mut newest: std::collections::BTreeMap<(String, String), catalog::Manifest> = Default::default();
    let mut last_verify: std::collections::HashMap<String, crate::verify::Record> = Default::default();
    let mut storage_errors = Vec::new();
    for st in &storages {
        match catalog::list(std::slice::from_ref(st), None).await {
            Ok(entries) => {
                for e in entries {
                    newest
                        .entry((e.manifest.source.clone(), st.name.clone()))
                        .or_insert(e.manifest);
                }
            }
            Err(e) => storage_errors.push((st.name.clone(), format!("{e:#}"))),
        }
        for ((source, _), r) in crate::verify::records(st).await.unwrap_or_default() {
            if last_verify.get(&source).is_none_or(|old| old.at < r.at) {
                last_verify.insert(source, r);
            }
        }
    }
    let tz = crate::schedule::parse_tz(&cfg.daemon.timezone).map_err(anyhow::Error::msg)?;
    let mut rows = Vec::new();
    for src in &cfg.sources {
        let s = state.load(src.name());
        let next = cfg
            .jobs
            .iter()
            .filter(|j| cfg.job_sources(j).iter().any(|x| x.name() == src.name()))
            .filter_map(|j| crate::schedule::next_after(&j.schedule, tz, now))
            .min();
        let per_storage: Vec<serde_json::Value> = storages
            .iter()
            .map(|st| {
                let m = newest.get(&(src.name().to_string(), st.name.clone()));
                serde_json::json!({
                    "storage": st.name,
                    "newest_id": m.map(|m| m.id.clone()),
                    "newest_at": m.map(|m| m.started_at),
                    "age_seconds": m.map(|m| (now - m.started_at).num_seconds()),
                })
            })
            .collect();
        rows.push(serde_json::json!({
            "source": src.name(),
            "last_success": s.last_success,
            "last_failure": s.last_failure,
            "storages": per_storage,
            "next_run": next,
            "last_verification": last_verify.get(src.name()).map(|r| serde_json::json!({
                "at": r.at, "backup_id": r.backup_id, "ok": r.ok, "rto_seconds": r.rto_seconds, "failures": r.failures(),
            })),
        }));
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "sources": rows, "storage_errors": storage_errors }))?
        );
        return Ok(0);
    }
    for r in &rows {
        println!("source '{}'", r["source"].as_str().unwrap_or_default());
        match r["last_success"].as_object() {
            Some(o) => println!(
                "  last success  {} ({})",
                o["at"].as_str().unwrap_or_default(),
                o["id"].as_str().unwrap_or_default()
            ),
            None => println!("  last success  never (on this host)"),
        }
        if let Some(o) = r["last_failure"].as_object() {
            println!(
                "  last failure  {}: {}",
                o["at"].as_str().unwrap_or_default(),
                o["error"].as_str().unwrap_or_default()
            );
        }
        for st in r["storages"].as_array().into_iter().flatten() {
            let age = st["age_seconds"]
                .as_i64()
                .map(|s| catalog::human_duration(chrono::Duration::seconds(s)));
            println!(
                "  storage {:<10} newest {}",
                st["storage"].as_str().unwrap_or_default(),
                match age {
                    Some(a) => format!("{} ago ({})", a, st["newest_id"].as_str().unwrap_or_default()),
                    None => "none".into(),
                }
            );
        }
        match r["last_verification"].as_object() {
            Some(v) if v["ok"].as_bool() == Some(true) => println!(
                "  verified      {} (backup {}, restore took {:.1}s)",
                v["at"].as_str().unwrap_or_default(),
                v["backup_id"].as_str().unwrap_or_default(),
                v["rto_seconds"].as_f64().unwrap_or_default()
            ),
            Some(v) => println!(
                "  verification  FAILED {}: {}",
                v["at"].as_str().unwrap_or_default(),
                v["failures"]
            ),
            None => println!("  verified      never"),
        }
        match r["next_run"].as_str() {
            Some(n) => println!("  next run      {n}"),
            None => println!("  next run      not scheduled (no [[job]] includes it)"),
        }
    }
    for (st, e) in &storage_errors {
        println!("storage '{st}' unreachable: {e}");
    }
    Ok(if storage_errors.is_empty() { 0 } else { 1 })
}
