//! `drctl check` (is every manifest's data there, the right size, the right hash?) and
//! `drctl copy` (seed or repair one storage from another, verified by hash, manifest last).

use crate::catalog::{self, Entry, Manifest};
use crate::config::Config;
use crate::storage::Storage;
use anyhow::{anyhow, bail, Context, Result};
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
                let (sha, n) = hash_stored(st, m, &m.objects).await?;
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
        for (key, info) in crate::lock::list(st).await? {
            match info {
                Some(i) if !i.is_stale(now) => {
                    r.notes
                        .push(format!("storage '{}': live lock {key}: {}", st.name, i.describe()))
                }
                Some(i) => r.problems.push(format!(
                    "storage '{}': stale lock {key}: {} (`drctl unlock` removes it)",
                    st.name,
                    i.describe()
                )),
                None => r.problems.push(format!(
                    "storage '{}': unreadable lock {key} (`drctl unlock` removes it)",
                    st.name
                )),
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
        let objects = e.objects_on(&from.name).to_vec();
        let mut m = e.manifest;
        m.objects = copy_objects(from, to, &m, &objects)
            .await
            .with_context(|| format!("copying backup {} of '{}'", m.id, m.source))?;
        if !m.storages.contains(&to.name) {
            m.storages.push(to.name.clone());
        }
        to.put(&catalog::manifest_key(&m.source, &m.id), serde_json::to_vec_pretty(&m)?)
            .await?;
        tracing::info!(from = %from.name, to = %to.name, source = %m.source, id = %m.id, "copied backup");
        copied.push(m);
    }
    Ok(copied)
}

async fn copy_objects(
    from: &Storage,
    to: &Storage,
    m: &Manifest,
    objects: &[catalog::Object],
) -> Result<Vec<catalog::Object>> {
    use futures::AsyncReadExt;
    // The artifact's key without a part suffix: the target stores it its own way.
    let first = &objects.first().ok_or_else(|| anyhow!("manifest lists no objects"))?.key;
    let key = match first.rfind(".part") {
        Some(i) if objects.len() > 1 || first[i + 5..].chars().all(|c| c.is_ascii_digit()) => first[..i].to_string(),
        _ => first.clone(),
    };
    let progress = crate::progress::bytes(m.stored.size, &m.source);
    let mut r = crate::pipeline::stored_reader(from, m, objects).await?;
    let mut sink = to.sink(&key).await?;
    let mut h = Sha256::new();
    let mut n = 0u64;
    let result = async {
        let mut buf = vec![0u8; 1024 * 1024];
        loop {
            let k = r.read(&mut buf).await.with_context(|| format!("storage '{}': reading {key}", from.name))?;
            if k == 0 {
                break;
            }
            h.update(&buf[..k]);
            n += k as u64;
            progress.inc(k as u64);
            sink.write(bytes::Bytes::copy_from_slice(&buf[..k])).await.with_context(|| format!("storage '{}': writing {key}", to.name))?;
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
    if let Err(e) = result {
        let _ = sink.abort().await;
        return Err(e);
    }
    let written = sink
        .close(&key, n)
        .await
        .with_context(|| format!("storage '{}': completing {key}", to.name))?;
    let mut held = 0;
    for o in &written {
        held += to.size(&o.key).await?;
    }
    if held != m.stored.size {
        for o in &written {
            let _ = to.delete(&o.key).await;
        }
        bail!(
            "storage '{}': {key} holds {held} bytes after the copy, expected {}",
            to.name,
            m.stored.size
        );
    }
    Ok(written)
}
