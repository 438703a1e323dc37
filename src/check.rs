//! `drctl check`: is every manifest's data there, the right size, the right hash?

use crate::catalog::{self, Manifest};
use crate::config::Config;
use crate::storage::Storage;
use anyhow::Result;
use sha2::{Digest, Sha256};
use std::collections::HashSet;

#[derive(Debug, Clone, Copy)]
pub enum ReadData {
    No,
    All,
    /// Percent of backups, chosen at random each run so repeated checks cover everything.
    Subset(u8),
}

#[derive(Debug, Default)]
pub struct Report {
    pub problems: Vec<String>,
    pub notes: Vec<String>,
    pub backups: usize,
    pub objects_read: usize,
}

/// Streams a backup's stored bytes (all its objects), returning their SHA-256 and size.
async fn hash_stored(st: &Storage, m: &Manifest, objects: &[catalog::Object]) -> Result<(String, u64)> {
    use futures::AsyncReadExt;
    let progress = crate::progress::bytes(m.stored.size, &m.source);
    let mut r = crate::pipeline::stored_reader(st, m, objects).await?;
    let mut h = Sha256::new();
    let mut n = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let k = r.read(&mut buf).await?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
        progress.inc(k as u64);
    }
    progress.finish_and_clear();
    Ok((hex::encode(h.finalize()), n))
}

pub async fn check(cfg: &Config, storages: &[Storage], read: ReadData) -> Result<Report> {
    let mut r = Report::default();
    let now = chrono::Utc::now();
    let orphan_age = cfg.prune.orphan_age.chrono();
    for st in storages {
        // Each storage and each manifest on its own: what cannot be read is a problem, and
        // the rest is still checked.
        // The manifests themselves, not the index: this is the integrity check.
        let listing = catalog::list_with(std::slice::from_ref(st), None, catalog::Read::Manifests).await;
        r.problems.extend(listing.problems.iter().map(|p| p.to_string()));
        if listing.storage_failed(&st.name) {
            continue;
        }
        let unreadable = listing.unreadable_backups(&st.name);
        let entries = &listing.entries;
        r.backups += entries.len();
        let mut referenced: HashSet<String> = HashSet::new();
        for e in entries {
            let m = &e.manifest;
            let name = format!("storage '{}': backup {} of '{}'", st.name, m.id, m.source);
            let mut sizes_ok = true;
            for o in &m.objects {
                referenced.insert(o.key.clone());
                match st.op.stat(&o.key).await {
                    Ok(meta) if meta.content_length() == o.size => {}
                    Ok(meta) => {
                        sizes_ok = false;
                        r.problems.push(format!(
                            "{name}: object {} is {} bytes, the manifest says {}",
                            o.key,
                            meta.content_length(),
                            o.size
                        ));
                    }
                    Err(e) if e.kind() == opendal::ErrorKind::NotFound => {
                        sizes_ok = false;
                        r.problems.push(format!("{name}: object {} is missing", o.key));
                    }
                    Err(e) => {
                        sizes_ok = false;
                        r.problems.push(format!("{name}: object {} cannot be read: {e}", o.key));
                    }
                }
            }
            let read_this = match read {
                ReadData::No => false,
                ReadData::All => true,
                ReadData::Subset(p) => rand::random::<u8>() % 100 < p,
            };
            if read_this && sizes_ok {
                let (sha, n) = match hash_stored(st, m, &m.objects).await {
                    Ok(x) => x,
                    Err(e) => {
                        r.problems.push(format!("{name}: cannot read its data: {e:#}"));
                        continue;
                    }
                };
                r.objects_read += m.objects.len();
                if sha != m.stored.sha256 || n != m.stored.size {
                    let keys: Vec<&str> = m.objects.iter().map(|o| o.key.as_str()).collect();
                    r.problems.push(format!(
                        "{name}: object {} has SHA-256 {sha}, the manifest says {}: it was altered or damaged",
                        keys.join(" + "),
                        m.stored.sha256
                    ));
                }
            }
        }
        // Sources with a WAL archive: every base backup's chain must be complete.
        r.problems
            .extend(crate::sources::postgres_cluster::restore::gaps(st, entries).await);
        let data = match st.list(crate::layout::DATA).await {
            Ok(d) => d,
            Err(e) => {
                r.problems.push(format!("{e:#}"));
                Vec::new()
            }
        };
        for key in data {
            if referenced.contains(&key) {
                continue;
            }
            let Some(owner) = crate::layout::artifact_owner(&key) else {
                r.notes.push(format!(
                    "storage '{}': foreign object {key} (not a name drctl writes; prune leaves it alone)",
                    st.name
                ));
                continue;
            };
            if unreadable.contains(&owner) {
                r.notes.push(format!(
                    "storage '{}': {key} belongs to a manifest that cannot be read (see above); prune keeps it",
                    st.name
                ));
                continue;
            }
            let old = st
                .op
                .stat(&key)
                .await
                .ok()
                .and_then(|m| m.last_modified())
                .map(|t| now.timestamp() - t.into_inner().as_second() >= orphan_age.num_seconds())
                .unwrap_or(true);
            let line = format!(
                "storage '{}': orphaned object {key} (no manifest refers to it; `drctl prune` removes it)",
                st.name
            );
            if old {
                r.problems.push(line);
            } else {
                r.notes.push(format!("{line} — young, may be an upload in progress"));
            }
        }
        let locks = match crate::lock::survey(st, "check (reading the storage clock)").await {
            Ok(l) => l,
            Err(e) => {
                r.problems.push(format!("{e:#}"));
                Vec::new()
            }
        };
        for seen in locks {
            let key = &seen.key;
            match (&seen.info, &seen.stale) {
                (Some(i), None) => r.notes.push(format!(
                    "storage '{}': live lock {key}: {} ({})",
                    st.name,
                    i.describe(),
                    seen.verdict()
                )),
                (Some(i), Some(_)) => r.problems.push(format!(
                    "storage '{}': stale lock {key}: {} ({}; `drctl unlock` removes it)",
                    st.name,
                    i.describe(),
                    seen.verdict()
                )),
                (None, _) => r.problems.push(format!(
                    "storage '{}': unreadable lock {key} (`drctl unlock` removes it)",
                    st.name
                )),
            }
        }
        let uploads = match crate::storage::open_uploads(st).await {
            Ok(u) => u,
            Err(e) => {
                r.notes.push(crate::storage::housekeeping_warning(st, &e));
                Vec::new()
            }
        };
        for u in uploads {
            let age = now - u.initiated;
            let line = format!(
                "storage '{}': unfinished multipart upload of {}, started {} ago (`drctl prune` aborts it)",
                st.name,
                u.key,
                catalog::human_duration(age)
            );
            if age >= orphan_age {
                r.problems.push(line);
            } else {
                r.notes.push(line);
            }
        }
    }
    Ok(r)
}
