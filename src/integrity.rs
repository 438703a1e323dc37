//! `drctl check` (is every manifest's data there, the right size, the right hash?) and
//! `drctl copy` (seed or repair one storage from another, verified by hash, manifest last).

use crate::catalog::{self, Entry, Manifest};
use crate::config::Config;
use crate::storage::Storage;
use anyhow::{anyhow, bail, Context, Result};
use futures::StreamExt;
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

/// Streams an object, returning its SHA-256 and size.
async fn hash_object(st: &Storage, key: &str, total: u64, what: &str) -> Result<(String, u64)> {
    let progress = crate::progress::bytes(total, what);
    let mut stream = st
        .op
        .reader_with(key)
        .chunk(crate::storage::CHUNK)
        .await?
        .into_bytes_stream(..)
        .await?;
    let mut h = Sha256::new();
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        h.update(&chunk);
        n += chunk.len() as u64;
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();
    Ok((hex::encode(h.finalize()), n))
}

pub async fn check(cfg: &Config, storages: &[Storage], read: ReadData) -> Result<Report> {
    let mut r = Report::default();
    let now = chrono::Utc::now();
    let orphan_age = crate::retention::parse_duration(&cfg.prune.orphan_age).map_err(anyhow::Error::msg)?;
    for st in storages {
        let entries = catalog::list(std::slice::from_ref(st), None).await?;
        r.backups += entries.len();
        let mut referenced: HashSet<String> = HashSet::new();
        for e in &entries {
            let m = &e.manifest;
            let name = format!("storage '{}': backup {} of '{}'", st.name, m.id, m.source);
            let mut sizes_ok = true;
            for o in &m.objects {
                referenced.insert(o.key.clone());
                match st.op.stat(&o.key).await {
                    Ok(meta) if meta.content_length() == o.size => {}
                    Ok(meta) => {
                        sizes_ok = false;
                        r.problems.push(format!("{name}: object {} is {} bytes, the manifest says {}", o.key, meta.content_length(), o.size));
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
                let (sha, n) = hash_object(st, &m.objects[0].key, m.stored.size, &m.source).await?;
                r.objects_read += 1;
                if sha != m.stored.sha256 || n != m.stored.size {
                    r.problems.push(format!(
                        "{name}: object {} has SHA-256 {sha}, the manifest says {}: it was altered or damaged",
                        m.objects[0].key, m.stored.sha256
                    ));
                }
            }
        }
        for key in st.list("data/").await? {
            if referenced.contains(&key) {
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
            let line = format!("storage '{}': orphaned object {key} (no manifest refers to it; `drctl prune` removes it)", st.name);
            if old {
                r.problems.push(line);
            } else {
                r.notes.push(format!("{line} — young, may be an upload in progress"));
            }
        }
        for (key, info) in crate::lock::list(st).await? {
            match info {
                Some(i) if !i.is_stale(now) => r.notes.push(format!("storage '{}': live lock {key}: {}", st.name, i.describe())),
                Some(i) => r.problems.push(format!("storage '{}': stale lock {key}: {} (`drctl unlock` removes it)", st.name, i.describe())),
                None => r.problems.push(format!("storage '{}': unreadable lock {key} (`drctl unlock` removes it)", st.name)),
            }
        }
        for u in crate::storage::open_uploads(st).await? {
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

/// Copies complete backups that `to` lacks from `from`, each verified by its stored SHA-256
/// while it streams, the manifest written last.
pub async fn copy(
    from: &Storage,
    to: &Storage,
    source: Option<&str>,
    since: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<Vec<Manifest>> {
    let have: HashSet<(String, String)> = catalog::list(std::slice::from_ref(to), source)
        .await?
        .into_iter()
        .map(|e| (e.manifest.source, e.manifest.id))
        .collect();
    let todo: Vec<Entry> = catalog::list(std::slice::from_ref(from), source)
        .await?
        .into_iter()
        .filter(|e| !have.contains(&(e.manifest.source.clone(), e.manifest.id.clone())))
        .filter(|e| since.is_none_or(|s| e.manifest.started_at >= s))
        .collect();
    let mut copied = Vec::new();
    for e in todo.into_iter().rev() {
        let mut m = e.manifest;
        copy_objects(from, to, &m).await.with_context(|| format!("copying backup {} of '{}'", m.id, m.source))?;
        if !m.storages.contains(&to.name) {
            m.storages.push(to.name.clone());
        }
        to.put(&catalog::manifest_key(&m.source, &m.id), serde_json::to_vec_pretty(&m)?).await?;
        tracing::info!(from = %from.name, to = %to.name, source = %m.source, id = %m.id, "copied backup");
        copied.push(m);
    }
    Ok(copied)
}

async fn copy_objects(from: &Storage, to: &Storage, m: &Manifest) -> Result<()> {
    let key = &m.objects.first().ok_or_else(|| anyhow!("manifest lists no objects"))?.key;
    let progress = crate::progress::bytes(m.stored.size, &m.source);
    let mut stream = from.op.reader_with(key).chunk(crate::storage::CHUNK).await?.into_bytes_stream(..).await?;
    let mut w = to.writer(key).await?;
    let mut h = Sha256::new();
    let mut n = 0u64;
    let result = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.with_context(|| format!("storage '{}': reading {key}", from.name))?;
            h.update(&chunk);
            n += chunk.len() as u64;
            progress.inc(chunk.len() as u64);
            w.write(chunk).await.with_context(|| format!("storage '{}': writing {key}", to.name))?;
        }
        let sha = hex::encode(h.clone().finalize());
        if sha != m.stored.sha256 || n != m.stored.size {
            bail!(
                "storage '{}': {key} has SHA-256 {sha} ({n} bytes), the manifest says {} ({} bytes): not copying a damaged backup",
                from.name,
                m.stored.sha256,
                m.stored.size
            );
        }
        Ok(())
    }
    .await;
    progress.finish_and_clear();
    match result {
        Ok(()) => {
            w.close().await.with_context(|| format!("storage '{}': completing {key}", to.name))?;
            let size = to.size(key).await?;
            if size != m.stored.size {
                let _ = to.delete(key).await;
                bail!("storage '{}': {key} holds {size} bytes after the copy, expected {}", to.name, m.stored.size);
            }
            Ok(())
        }
        Err(e) => {
            let _ = w.abort().await;
            Err(e)
        }
    }
}
