//! `drctl copy`: seed or repair one storage from another, verified by hash, manifest last.

use crate::catalog::{self, Entry, Manifest};
use crate::storage::Storage;
use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use std::collections::HashSet;

/// Copies complete backups that `to` lacks from `from`, each verified by its stored SHA-256
/// while it streams, the manifest written last.
pub async fn copy(
    from: &Storage,
    to: &Storage,
    source: Option<&str>,
    since: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<Vec<Manifest>> {
    // Both sides must be read whole: copying needs to know what the target holds.
    let have: HashSet<(String, String)> = catalog::list(std::slice::from_ref(to), source)
        .await
        .into_result()?
        .into_iter()
        .map(|e| (e.manifest.source, e.manifest.id))
        .collect();
    let todo: Vec<Entry> = catalog::list(std::slice::from_ref(from), source)
        .await
        .into_result()?
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
    let sources: std::collections::BTreeSet<&str> = copied.iter().map(|m| m.source.as_str()).collect();
    for s in sources {
        if let Err(e) = catalog::update_index(to, s).await {
            tracing::warn!(storage = %to.name, source = s, error = %format!("{e:#}"), "cannot update the index (listing stays correct, only slower)");
        }
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
