//! Restore verification: restore a backup into a throwaway server, check it, record the result
//! next to the backup, clean up. A backup that was never restored is a hope, not a backup.
//!
//! This file holds what every kind shares (the record, the download check); each kind's checks
//! live in its folder (`sources/<kind>/verify.rs`).

use crate::catalog;
use crate::config::Config;
use crate::keys::Identities;
use crate::storage::Storage;
use crate::verification::{record_key, Record};
use anyhow::{anyhow, Result};
use chrono::{DateTime, Utc};
use std::time::Instant;

/// Verifies every source in turn, emitting an event for each; errors that prevent a
/// verification (no backup, unreadable storage) come back as `Err((source, message))`.
pub async fn run_all(
    cfg: &Config,
    sources: &[String],
    at: Option<DateTime<Utc>>,
    storages: &[Storage],
    identities: &Identities,
    events: &crate::events::Events,
) -> Vec<Result<Record, (String, String)>> {
    let mut out = Vec::new();
    for s in sources {
        match verify_source(cfg, s, at, storages, identities).await {
            Ok(r) => {
                let detail = r.failures().join("; ");
                events
                    .emit(crate::events::Event::VerifyFinished {
                        source: s,
                        backup: &r.backup_id,
                        ok: r.ok,
                        rto_seconds: r.rto_seconds,
                        detail: &detail,
                    })
                    .await;
                out.push(Ok(r));
            }
            Err(e) => {
                let msg = format!("{e:#}");
                report_error(events, s, &msg).await;
                out.push(Err((s.clone(), msg)));
            }
        }
    }
    out
}

/// Verifies one source's backup (newest, or the newest at or before `at`) and stores the record.
pub async fn verify_source(
    cfg: &Config,
    source: &str,
    at: Option<DateTime<Utc>>,
    storages: &[Storage],
    identities: &Identities,
) -> Result<Record> {
    // A storage that is down or a damaged manifest does not stop verifying from the others.
    let listing = catalog::list(storages, Some(source)).await;
    for p in &listing.problems {
        tracing::warn!(source, problem = %p, "verify: cannot read everything");
    }
    let entry = catalog::pick(&listing.entries, source, at.unwrap_or_else(Utc::now)).ok_or_else(|| {
        anyhow!(
            "no backup of '{source}' to verify (run `drctl list --source {source}`){}",
            catalog::unread_note(&listing.problems)
        )
    })?;
    // The checks need the facts that are stored encrypted (row counts, per-file hashes).
    // A wrong identity is then also named by the download check.
    let mut entry = entry.clone();
    catalog::reload(storages, &mut entry).await?;
    let opened = entry.manifest.open_private(identities);
    let entry = &entry;
    let t0 = Instant::now();
    let (mut checks, rto, sandbox) = crate::sources::verify(cfg, entry, storages, identities).await;
    if let Err(e) = opened {
        checks.insert(
            0,
            crate::verification::check("private facts (row counts, file hashes)", Err(e)),
        );
    }
    let rto_seconds = rto.unwrap_or_else(|| t0.elapsed().as_secs_f64());
    let record = Record {
        source: source.to_string(),
        backup_id: entry.manifest.id.clone(),
        at: Utc::now(),
        ok: checks.iter().all(|c| c.ok),
        rto_seconds,
        sandbox,
        host: crate::lock::hostname(),
        drctl_version: env!("CARGO_PKG_VERSION").to_string(),
        checks,
    };
    let json = serde_json::to_vec_pretty(&record)?;
    for st in storages.iter().filter(|s| entry.storages.contains(&s.name)) {
        if let Err(e) = st.put(&record_key(source, &entry.manifest.id), json.clone()).await {
            tracing::warn!(storage = %st.name, error = %format!("{e:#}"), "cannot store the verification record");
        }
    }
    Ok(record)
}

/// A verification that could not even start (no backup, no identity): one failed event.
pub async fn report_error(events: &crate::events::Events, source: &str, msg: &str) {
    events
        .emit(crate::events::Event::VerifyFinished {
            source,
            backup: "-",
            ok: false,
            rto_seconds: 0.0,
            detail: msg,
        })
        .await;
}
