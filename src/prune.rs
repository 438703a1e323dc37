//! Prune: plan, then apply. `plan` reads manifests and asks `retention::apply`; it deletes
//! nothing and its result is what `--dry-run` and `--json` print. `apply` deletes exactly what
//! the plan says, under an exclusive lock.
//!
//! Each storage is pruned on its own history: a storage that missed a night keeps its own
//! older backups rather than deleting to match another storage's newer ones.
//!
//! Order (pgBackRest's expire): the manifest goes first, then its data objects. A crash in
//! between leaves data without a manifest — invisible to list and restore, and removed by the
//! next prune's orphan sweep — never a manifest pointing at nothing.

use crate::catalog::{self, Entry};
use crate::config::Config;
use crate::layout;
use crate::retention::{self, Backup, Decision};
use crate::storage::Storage;
use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub storage: String,
    pub source: String,
    #[serde(flatten)]
    pub decision: Decision,
    pub manifest_key: String,
    pub data_keys: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Orphan {
    pub storage: String,
    pub key: String,
    pub size: u64,
    pub modified: Option<DateTime<Utc>>,
}

/// WAL archive files of a `postgres_cluster` source that no kept base backup needs.
#[derive(Debug, Clone, Serialize)]
pub struct WalExpiry {
    pub storage: String,
    pub source: String,
    /// The oldest kept base backup's first segment: everything numbered below it goes.
    pub keep_from: String,
    pub keys: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Plan {
    pub now: Option<DateTime<Utc>>,
    pub items: Vec<Item>,
    /// Applied after the base backups they served are gone.
    pub wal: Vec<WalExpiry>,
    pub orphans: Vec<Orphan>,
    /// Unfinished S3 multipart uploads old enough to be abandoned (a killed backup).
    pub uploads: Vec<crate::storage::Upload>,
    /// Sources whose policy this config does not define and whose backups record none:
    /// every backup of them is kept.
    pub unknown_policy: Vec<String>,
    /// What could not be read, and what was therefore left alone: a storage that could not be
    /// listed is not pruned at all; the data of a manifest that could not be read is kept.
    pub problems: Vec<String>,
    /// Housekeeping a storage does not support (S3 providers without ListMultipartUploads):
    /// the rest of the prune still runs.
    pub warnings: Vec<String>,
}

impl Plan {
    pub fn drops(&self) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(|i| !i.decision.keep)
    }
}

/// Builds the plan for `storages`, limited to `source` if given.
pub async fn plan(
    cfg: &Config,
    storages: &[Storage],
    source: Option<&str>,
    now: DateTime<Utc>,
    orphan_age: chrono::Duration,
) -> Result<Plan> {
    let mut plan = Plan {
        now: Some(now),
        ..Plan::default()
    };
    for st in storages {
        // Each storage on its own: one that cannot be read is reported and left untouched,
        // and the others are still pruned. Without its pins or verification records a
        // storage cannot be decided safely either.
        // Limited to the source when one is given: another source's damaged manifest is not
        // this prune's business (and must not fail every backup's prune).
        let listing = catalog::list(std::slice::from_ref(st), source).await;
        if listing.storage_failed(&st.name) {
            plan.problems.extend(listing.problems.iter().map(|p| p.to_string()));
            continue;
        }
        let read =
            async { Ok::<_, anyhow::Error>((crate::verification::records(st).await?, crate::pin::pins(st).await?)) };
        let (verified, pinned) = match read.await {
            Ok(x) => x,
            Err(e) => {
                plan.problems.push(format!(
                    "storage '{}' was not pruned: cannot read its pins or verification records: {e:#}",
                    st.name
                ));
                continue;
            }
        };
        plan.problems.extend(listing.problems.iter().map(|p| p.to_string()));
        // A backup whose manifest could not be read is unknown, not gone: its data stays.
        let unreadable = listing.unreadable_backups(&st.name);
        let entries = &listing.entries;
        let mut by_source: BTreeMap<&str, Vec<&Entry>> = BTreeMap::new();
        for e in entries {
            by_source.entry(e.manifest.source.as_str()).or_default().push(e);
        }
        for (name, es) in by_source {
            if source.is_some_and(|s| s != name) {
                continue;
            }
            // This config's policy for the source, else the one its newest backup recorded
            // (a prune host whose config names only the storage); else keep everything.
            let newest = es.iter().max_by_key(|e| e.manifest.started_at);
            let policy = cfg
                .policy_for(name)
                .or_else(|| newest.and_then(|e| e.manifest.retention.clone()));
            let backups: Vec<Backup> = es
                .iter()
                .map(|e| Backup {
                    id: e.manifest.id.clone(),
                    time: e.manifest.started_at,
                    verified: verified
                        .get(&(e.manifest.source.clone(), e.manifest.id.clone()))
                        .map(|r| r.ok),
                    pinned: pinned.contains_key(&(e.manifest.source.clone(), e.manifest.id.clone())),
                })
                .collect();
            let decisions = match &policy {
                Some(p) => retention::apply(p, &backups, now).map_err(|e| anyhow::anyhow!("source '{name}': {e}"))?,
                None => {
                    if !plan.unknown_policy.iter().any(|s| s == name) {
                        plan.unknown_policy.push(name.to_string());
                    }
                    backups
                        .iter()
                        .map(|b| Decision {
                            id: b.id.clone(),
                            time: b.time,
                            keep: true,
                            reasons: vec!["no retention policy known for this source".into()],
                        })
                        .collect()
                }
            };
            // A cluster's WAL archive: kept from the oldest kept base backup's start. Not when a
            // manifest of the source could not be read: it may be an older kept backup.
            let kept: Vec<&catalog::Manifest> = decisions
                .iter()
                .filter(|d| d.keep)
                .filter_map(|d| es.iter().find(|e| e.manifest.id == d.id).map(|e| &e.manifest))
                .collect();
            if let Some((keep_from, floor, seg_size)) = crate::sources::wal_floor(&kept) {
                if unreadable.iter().any(|(s, _)| *s == name) {
                    plan.problems.push(format!(
                        "storage '{}', source '{name}': WAL not expired: a manifest of the source could not be read",
                        st.name
                    ));
                } else {
                    match st.list(&layout::wal_prefix(name)).await {
                        Ok(keys) => {
                            let keys = crate::sources::postgres_cluster::archive::expired(name, &keys, floor, seg_size);
                            if !keys.is_empty() {
                                plan.wal.push(WalExpiry {
                                    storage: st.name.clone(),
                                    source: name.to_string(),
                                    keep_from,
                                    keys,
                                });
                            }
                        }
                        Err(e) => plan
                            .problems
                            .push(format!("storage '{}': WAL of '{name}' not expired: {e:#}", st.name)),
                    }
                }
            }
            for d in decisions {
                let m = &es
                    .iter()
                    .find(|e| e.manifest.id == d.id)
                    .expect("decided backup exists")
                    .manifest;
                plan.items.push(Item {
                    storage: st.name.clone(),
                    source: name.to_string(),
                    manifest_key: catalog::manifest_key(&m.source, &m.id),
                    // The verification record goes with its backup, after the data. Only keys
                    // named for this backup: a forged manifest (or index) listing another
                    // backup's objects cannot make prune delete them.
                    data_keys: m
                        .objects
                        .iter()
                        .filter(|o| layout::artifact_owner(&o.key) == Some((m.source.as_str(), m.id.as_str())))
                        .map(|o| o.key.clone())
                        .chain(
                            verified
                                .contains_key(&(m.source.clone(), m.id.clone()))
                                .then(|| crate::verification::record_key(&m.source, &m.id)),
                        )
                        .collect(),
                    decision: d,
                });
            }
        }
        // Orphans: data no manifest refers to, and abandoned fs temp files, once old enough
        // that they cannot belong to an upload still in progress. Only names drctl gives its
        // own objects: a root may be shared, and another tool's files are never ours to delete
        // (`drctl check` names them as foreign).
        let referenced: HashSet<String> = entries
            .iter()
            .flat_map(|e| e.manifest.objects.iter().map(|o| o.key.clone()))
            .collect();
        let data = match st.list(layout::DATA).await {
            Ok(d) => d,
            Err(e) => {
                plan.problems
                    .push(format!("storage '{}': orphans not swept: {e:#}", st.name));
                Vec::new()
            }
        };
        let mut candidates: Vec<String> = data
            .into_iter()
            .filter(|k| !referenced.contains(k))
            .filter(|k| layout::artifact_owner(k).is_some_and(|owner| !unreadable.contains(&owner)))
            .filter(|k| source.is_none_or(|s| k.starts_with(&layout::data_prefix(s))))
            .collect();
        match crate::storage::open_uploads(st).await {
            Ok(uploads) => plan.uploads.extend(uploads.into_iter().filter(|u| {
                now - u.initiated >= orphan_age && source.is_none_or(|s| u.key.starts_with(&layout::data_prefix(s)))
            })),
            Err(e) => plan.warnings.push(crate::storage::housekeeping_warning(st, &e)),
        }
        if matches!(st.config, crate::storage::StorageConfig::Fs(_)) && source.is_none() {
            match st.list(layout::FS_TEMP).await {
                Ok(t) => candidates.extend(t.into_iter().filter(|k| layout::is_own_temp(k))),
                Err(e) => plan
                    .problems
                    .push(format!("storage '{}': temp files not swept: {e:#}", st.name)),
            }
        }
        for key in candidates {
            let meta = match st.op.stat(&key).await {
                Ok(m) => m,
                Err(_) => continue, // gone meanwhile
            };
            let modified = meta
                .last_modified()
                .map(|t| DateTime::<Utc>::from_timestamp(t.into_inner().as_second(), 0).unwrap_or(now));
            if modified.is_none_or(|m| now - m >= orphan_age) {
                plan.orphans.push(Orphan {
                    storage: st.name.clone(),
                    key,
                    size: meta.content_length(),
                    modified,
                });
            }
        }
    }
    Ok(plan)
}

#[derive(Debug, Default, Serialize)]
pub struct Applied {
    pub backups_deleted: usize,
    pub wal_files_deleted: usize,
    pub orphans_deleted: usize,
    pub uploads_aborted: usize,
}

/// Deletes what the plan says: per backup the manifest first, then its data.
pub async fn apply(plan: &Plan, storages: &[Storage]) -> Result<Applied> {
    let mut done = Applied::default();
    let by_name = |n: &str| storages.iter().find(|s| s.name == n);
    let mut changed: std::collections::BTreeSet<(&str, &str)> = Default::default();
    for item in plan.drops() {
        let Some(st) = by_name(&item.storage) else { continue };
        st.delete(&item.manifest_key).await?;
        changed.insert((&item.storage, &item.source));
        for k in &item.data_keys {
            st.delete(k).await?;
        }
        tracing::info!(storage = %st.name, source = %item.source, id = %item.decision.id, "pruned backup");
        done.backups_deleted += 1;
    }
    // After the base backups: a crash in between leaves WAL nothing needs, never a kept
    // backup without its WAL.
    for w in &plan.wal {
        let Some(st) = by_name(&w.storage) else { continue };
        for k in &w.keys {
            st.delete(k).await?;
        }
        tracing::info!(storage = %st.name, source = %w.source, keep_from = %w.keep_from, objects = w.keys.len(), "expired WAL no kept base backup needs");
        done.wal_files_deleted += w.keys.iter().filter(|k| k.ends_with(".json")).count();
    }
    for (storage, source) in changed {
        let Some(st) = by_name(storage) else { continue };
        if let Err(e) = catalog::update_index(st, source).await {
            tracing::warn!(storage, source, error = %format!("{e:#}"), "cannot update the index (listing stays correct, only slower)");
        }
    }
    for o in &plan.orphans {
        let Some(st) = by_name(&o.storage) else { continue };
        st.delete(&o.key).await?;
        tracing::info!(storage = %st.name, key = %o.key, "removed orphaned object");
        done.orphans_deleted += 1;
    }
    for u in &plan.uploads {
        let Some(st) = by_name(&u.storage) else { continue };
        crate::storage::abort_upload(st, u).await?;
        tracing::info!(storage = %st.name, key = %u.key, "aborted an unfinished upload");
        done.uploads_aborted += 1;
    }
    Ok(done)
}
