//! `drctl status`.

use super::*;
use serde::Serialize;

pub(super) async fn status(cfg: &Config, a: &StatusArgs) -> Result<i32> {
    let state = crate::state::StateDir::new(cfg.daemon.state_dir());
    let storages = storage::select(&cfg.storages, None)?;
    let now = chrono::Utc::now();
    let mut newest: std::collections::BTreeMap<(String, String), catalog::Manifest> = Default::default();
    let mut last_verify: std::collections::HashMap<String, crate::verification::Record> = Default::default();
    let mut storage_errors = Vec::new();
    for st in &storages {
        let listing = catalog::list(std::slice::from_ref(st), None).await;
        storage_errors.extend(listing.problems.iter().map(|p| (st.name.clone(), p.to_string())));
        for e in listing.entries {
            newest
                .entry((e.manifest.source.clone(), st.name.clone()))
                .or_insert(e.manifest);
        }
        for ((source, _), r) in crate::verification::records(st).await.unwrap_or_default() {
            if last_verify.get(&source).is_none_or(|old| old.at < r.at) {
                last_verify.insert(source, r);
            }
        }
    }
    let tz = *cfg.daemon.timezone.get();
    let mut rows = Vec::new();
    for src in &cfg.sources {
        let s = state.load(src.name());
        let next = cfg
            .jobs
            .iter()
            .filter(|j| cfg.job_sources(j).iter().any(|x| x.name() == src.name()))
            .filter_map(|j| j.schedule.next_after(tz, now))
            .min();
        let per_storage = storages
            .iter()
            .map(|st| {
                let m = newest.get(&(src.name().to_string(), st.name.clone()));
                StorageRow {
                    age_seconds: m.map(|m| (now - m.started_at).num_seconds()),
                    newest_at: m.map(|m| m.started_at),
                    newest_id: m.map(|m| m.id.as_str()),
                    storage: &st.name,
                }
            })
            .collect();
        rows.push(Row {
            last_failure: s.last_failure,
            last_prune_failure: s.last_prune_failure,
            last_success: s.last_success,
            last_verification: last_verify.get(src.name()).map(|r| Verification {
                at: r.at,
                backup_id: &r.backup_id,
                failures: r.failures(),
                ok: r.ok,
                rto_seconds: r.rto_seconds,
            }),
            next_run: next,
            source: src.name(),
            storages: per_storage,
        });
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&Status {
                sources: &rows,
                storage_errors: &storage_errors
            })?
        );
        return Ok(0);
    }
    for r in &rows {
        println!("source '{}'", r.source);
        match &r.last_success {
            Some(o) => println!("  last success  {} ({})", iso(&o.at), o.id),
            None => println!("  last success  never (on this host)"),
        }
        if let Some(o) = &r.last_failure {
            println!("  last failure  {}: {}", iso(&o.at), o.error);
        }
        if let Some(o) = &r.last_prune_failure {
            println!("  prune FAILED  {}: {}", iso(&o.at), o.error);
        }
        for st in &r.storages {
            let age = st
                .age_seconds
                .map(|s| catalog::human_duration(chrono::Duration::seconds(s)));
            println!(
                "  storage {:<10} newest {}",
                st.storage,
                match age {
                    Some(a) => format!("{} ago ({})", a, st.newest_id.unwrap_or_default()),
                    None => "none".into(),
                }
            );
        }
        match &r.last_verification {
            Some(v) if v.ok => println!(
                "  verified      {} (backup {}, restore took {:.1}s)",
                iso(&v.at),
                v.backup_id,
                v.rto_seconds
            ),
            Some(v) => println!(
                "  verification  FAILED {}: {}",
                iso(&v.at),
                serde_json::to_string(&v.failures)?
            ),
            None => println!("  verified      never"),
        }
        match &r.next_run {
            Some(n) => println!("  next run      {}", iso(n)),
            None => println!("  next run      not scheduled (no [[job]] includes it)"),
        }
    }
    for (_, e) in &storage_errors {
        println!("problem: {e}");
    }
    Ok(if storage_errors.is_empty() { 0 } else { 1 })
}

// What `status` reports, as `--json` prints it and the text output formats it. Fields are in
// alphabetical order because that is the key order `--json` has always had (it used to go
// through `serde_json::Value`, whose maps sort their keys); keep it so scripts diffing the
// output see no change.

#[derive(Serialize)]
struct Status<'a> {
    sources: &'a [Row<'a>],
    /// (storage, error) pairs, printed as two-element arrays.
    storage_errors: &'a [(String, String)],
}

/// One configured source.
#[derive(Serialize)]
struct Row<'a> {
    /// Only this host's runs: the state directory is local.
    last_failure: Option<crate::state::Failure>,
    /// The last prune after a backup failed on this host (absent once one succeeds).
    #[serde(skip_serializing_if = "Option::is_none")]
    last_prune_failure: Option<crate::state::Failure>,
    last_success: Option<crate::state::Success>,
    /// The newest verification record of any of the source's backups, on any storage.
    last_verification: Option<Verification<'a>>,
    next_run: Option<chrono::DateTime<chrono::Utc>>,
    source: &'a str,
    storages: Vec<StorageRow<'a>>,
}

/// The source's newest backup on one storage; all `None` when it has none there.
#[derive(Serialize)]
struct StorageRow<'a> {
    age_seconds: Option<i64>,
    newest_at: Option<chrono::DateTime<chrono::Utc>>,
    newest_id: Option<&'a str>,
    storage: &'a str,
}

#[derive(Serialize)]
struct Verification<'a> {
    at: chrono::DateTime<chrono::Utc>,
    backup_id: &'a str,
    failures: Vec<String>,
    ok: bool,
    rto_seconds: f64,
}

/// A time as the text output shows it: exactly the form serde gives it in `--json`.
fn iso(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}
