//! One backup of one source: start the dump, stream it into every storage, and commit —
//! data first, manifest last — only when the source, the stream and every storage agree.

use crate::catalog::{self, Compression, Manifest, Object};
use crate::config::{Config, SourceConfig};
use crate::pipeline;
use crate::storage::Storage;
use anyhow::{anyhow, Context, Result};
use chrono::Utc;
use tokio_util::sync::CancellationToken;

async fn abort_all(targets: &mut [(Storage, opendal::Writer)]) {
    for (st, w) in targets.iter_mut() {
        if let Err(e) = w.abort().await {
            tracing::warn!(storage = %st.name, error = %e, "could not abort an upload; it will be cleaned as an orphan");
        }
    }
}

/// Backs up `src` to every storage in `storages`. On any failure nothing is committed: writers
/// are aborted, objects already closed are deleted, and no manifest is written.
pub async fn backup_source(
    cfg: &Config,
    src: &SourceConfig,
    storages: &[Storage],
    run_id: &str,
    cancel: &CancellationToken,
) -> Result<Manifest> {
    let recipients = cfg
        .encryption
        .recipients
        .iter()
        .map(|r| crate::keys::parse_recipient(r).map_err(|e| anyhow!(e)))
        .collect::<Result<Vec<_>>>()?;
    let started_at = Utc::now();
    let id = catalog::new_id(started_at);
    let dump = crate::sources::start(src).await?;
    let key = catalog::data_key(src.name(), &id, dump.format, cfg.compression.algorithm);

    let mut targets = Vec::with_capacity(storages.len());
    for st in storages {
        match st.writer(&key).await {
            Ok(w) => targets.push((st.clone(), w)),
            Err(e) => {
                abort_all(&mut targets).await;
                dump.finish.kill().await;
                return Err(e.context(crate::events::StorageFailure(st.name.clone())));
            }
        }
    }

    let sealed = pipeline::seal_into(
        dump.reader,
        cfg.compression,
        recipients,
        &mut targets,
        cancel,
    )
    .await;
    let sealed = match sealed {
        Ok(s) => s,
        Err(e) => {
            abort_all(&mut targets).await;
            dump.finish.kill().await;
            return Err(e.context(format!("backup of '{}' failed; nothing was committed", src.name())));
        }
    };
    // The stream ended; only the producer's exit status says whether it ended because the
    // dump was complete.
    let late_facts = match dump.finish.wait().await {
        Ok(f) => f,
        Err(e) => {
            abort_all(&mut targets).await;
            return Err(e.context(format!("backup of '{}' failed; nothing was committed", src.name())));
        }
    };
    // Producers that know how many bytes they meant to send (an RDB file's size) say so.
    if let Some(n) = late_facts.get("expected_size").and_then(|v| v.as_u64()) {
        if n != sealed.plain.size {
            abort_all(&mut targets).await;
            return Err(anyhow!(
                "backup of '{}' failed; nothing was committed: read {} bytes, expected {n}",
                src.name(),
                sealed.plain.size
            ));
        }
    }
    if cancel.is_cancelled() {
        abort_all(&mut targets).await;
        return Err(pipeline::Interrupted.into());
    }

    // Commit the data objects, then confirm each storage holds every byte.
    let mut closed: Vec<&Storage> = Vec::new();
    let mut failure = None;
    for (st, w) in targets.iter_mut() {
        if failure.is_some() {
            let _ = w.abort().await;
            continue;
        }
        match w.close().await {
            Ok(_) => closed.push(st),
            Err(e) => {
                failure = Some(
                    anyhow!(e)
                        .context(format!("cannot complete {key}"))
                        .context(crate::events::StorageFailure(st.name.clone())),
                )
            }
        }
    }
    if failure.is_none() {
        for st in &closed {
            match st.size(&key).await {
                Ok(n) if n == sealed.stored.size => {}
                Ok(n) => {
                    failure = Some(anyhow!(
                        "storage '{}': {key} holds {n} bytes after upload, expected {}",
                        st.name,
                        sealed.stored.size
                    ));
                    break;
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
    }
    if let Some(e) = failure {
        for st in &closed {
            let _ = st.delete(&key).await;
        }
        return Err(e.context(format!("backup of '{}' failed; nothing was committed", src.name())));
    }

    let mut dump_facts = dump.facts;
    dump_facts.extend(late_facts);
    let manifest = Manifest {
        format_version: catalog::FORMAT_VERSION,
        id: id.clone(),
        run_id: run_id.to_string(),
        source: src.name().to_string(),
        kind: src.kind().to_string(),
        started_at,
        finished_at: Utc::now(),
        drctl_version: env!("CARGO_PKG_VERSION").to_string(),
        facts: dump_facts,
        plain: sealed.plain,
        stored: sealed.stored.clone(),
        compression: Compression {
            algorithm: cfg.compression.algorithm,
            level: cfg.compression.effective_level(),
        },
        recipients: cfg.encryption.recipients.clone(),
        objects: vec![Object {
            key: key.clone(),
            size: sealed.stored.size,
        }],
        storages: storages.iter().map(|s| s.name.clone()).collect(),
    };
    let json = serde_json::to_vec_pretty(&manifest)?;
    let mkey = catalog::manifest_key(src.name(), &id);
    for st in storages {
        st.put(&mkey, json.clone())
            .await
            .with_context(|| format!("backup of '{}': data is stored but the manifest could not be written", src.name()))?;
    }
    Ok(manifest)
}
