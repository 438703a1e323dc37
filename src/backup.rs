//! One backup of one source: start the dump, stream it into every storage, and commit —
//! data first, manifest last — only when the source, the stream and the storages agree.
//!
//! With several storages, one that fails mid-backup is left behind and the others commit: the
//! result is *degraded* and says which storage missed it. With `[backup] require_all = true`
//! nothing commits anywhere unless every storage has every byte.

use crate::catalog::{self, Compression, Manifest, Object};
use crate::config::{Config, SourceConfig};
use crate::pipeline::{self, Target};
use crate::storage::Storage;
use crate::storage::StorageFailure;
use anyhow::{anyhow, Result};
use chrono::Utc;
use tokio_util::sync::CancellationToken;

pub struct Committed {
    pub manifest: Manifest,
    /// Storages that failed while the others committed: (storage, error).
    pub missed: Vec<(String, String)>,
}

async fn abort_all(targets: &mut [Target]) {
    for t in targets.iter_mut() {
        abort_one(t).await;
    }
}

async fn abort_one(t: &mut Target) {
    if let Err(e) = t.writer.abort().await {
        tracing::debug!(storage = %t.storage.name, error = %e, "abort after a failed write");
    }
    // An fs writer that failed (a full disk) may leave its temp file behind even when told
    // to abort; remove it so a failed backup leaves nothing.
    t.storage.remove_temp_of(&t.key).await;
}

fn nothing_committed(src: &SourceConfig, e: anyhow::Error) -> anyhow::Error {
    e.context(format!("backup of '{}' failed; nothing was committed", src.name()))
}

/// Backs up `src` to `storages`. On failure nothing is committed: writers are aborted, objects
/// already closed are deleted, and no manifest is written.
pub async fn backup_source(
    cfg: &Config,
    src: &SourceConfig,
    storages: &[Storage],
    run_id: &str,
    cancel: &CancellationToken,
) -> Result<Committed> {
    let recipients = cfg.encryption.recipients.iter().map(|r| r.get().clone()).collect();
    let started_at = Utc::now();
    let id = crate::layout::new_id(started_at);
    let dump = crate::sources::start(src).await?;
    let key = catalog::data_key(src.name(), &id, dump.format, cfg.compression.algorithm);

    let mut targets: Vec<Target> = Vec::with_capacity(storages.len());
    let mut missed: Vec<(String, String)> = Vec::new();
    for st in storages {
        match st.sink(&key).await {
            Ok(w) => targets.push(Target {
                storage: st.clone(),
                writer: w,
                failed: None,
                key: key.clone(),
            }),
            Err(e) if cfg.backup.require_all || storages.len() == 1 => {
                abort_all(&mut targets).await;
                dump.finish.kill().await;
                return Err(nothing_committed(src, e.context(StorageFailure(st.name.clone()))));
            }
            Err(e) => missed.push((st.name.clone(), format!("{e:#}"))),
        }
    }
    if targets.is_empty() {
        dump.finish.kill().await;
        return Err(nothing_committed(src, anyhow!("no storage could be written")));
    }

    let sealed = match pipeline::seal_into(dump.reader, cfg.compression, recipients, &mut targets, cancel).await {
        Ok(s) => s,
        Err(e) => {
            abort_all(&mut targets).await;
            dump.finish.kill().await;
            return Err(nothing_committed(src, e));
        }
    };
    // The stream ended; only the producer's exit status says whether it ended because the
    // dump was complete.
    let facts = match dump.finish.wait().await {
        Ok(f) => f,
        Err(e) => {
            abort_all(&mut targets).await;
            return Err(nothing_committed(src, e));
        }
    };
    // A base backup of a cluster in a container is complete once its WAL is archived; the
    // server only waited for the WAL to reach the spool. Drain it before committing, so a base
    // backup in the catalog has its WAL on storage, as on the host.
    if let SourceConfig::PostgresCluster(c) = src {
        if matches!(
            c.server,
            crate::sources::postgres_cluster::ClusterServer::Container { .. }
        ) {
            if let Err(e) = crate::sources::postgres_cluster::spool::drain(cfg, c, storages).await {
                abort_all(&mut targets).await;
                return Err(nothing_committed(
                    src,
                    e.context("the base backup's WAL could not be archived from the spool"),
                ));
            }
        }
    }
    // Producers that know how many bytes they meant to send (an RDB file's size) say so.
    if let Some(n) = facts.expected_size() {
        if n != sealed.plain.size {
            abort_all(&mut targets).await;
            return Err(nothing_committed(
                src,
                anyhow!("read {} bytes, expected {n}", sealed.plain.size),
            ));
        }
    }
    if cancel.is_cancelled() {
        abort_all(&mut targets).await;
        return Err(pipeline::Interrupted.into());
    }

    // Commit the data objects on every storage still standing, then confirm each holds every byte.
    let mut closed: Vec<(Storage, Vec<Object>)> = Vec::new();
    for t in targets.iter_mut() {
        if let Some(e) = t.failed.take() {
            abort_one(t).await;
            missed.push((t.storage.name.clone(), format!("{e:#}")));
            continue;
        }
        let result = match t.writer.close(&key, sealed.stored.size).await {
            Ok(objects) => {
                let mut held = 0u64;
                let mut err = None;
                for o in &objects {
                    match t.storage.size(&o.key).await {
                        Ok(n) if n == o.size => held += n,
                        Ok(n) => err = Some(anyhow!("{} holds {n} bytes after upload, expected {}", o.key, o.size)),
                        Err(e) => err = Some(e),
                    }
                }
                match err {
                    Some(e) => Err(e),
                    None if held != sealed.stored.size => {
                        Err(anyhow!("{key}: {held} bytes stored, expected {}", sealed.stored.size))
                    }
                    None => Ok(objects),
                }
            }
            Err(e) => Err(e.context(format!("cannot complete {key}"))),
        };
        match result {
            Ok(objects) => closed.push((t.storage.clone(), objects)),
            Err(e) => {
                abort_one(t).await;
                let _ = t.storage.delete(&key).await;
                missed.push((
                    t.storage.name.clone(),
                    format!("{:#}", e.context(StorageFailure(t.storage.name.clone()))),
                ));
            }
        }
    }
    if closed.is_empty() || (cfg.backup.require_all && !missed.is_empty()) {
        for (st, objects) in &closed {
            for o in objects {
                let _ = st.delete(&o.key).await;
            }
        }
        let why = missed
            .iter()
            .map(|(s, e)| format!("storage '{s}': {e}"))
            .collect::<Vec<_>>()
            .join("; ");
        let extra = if cfg.backup.require_all && !closed.is_empty() {
            " (require_all = true)"
        } else {
            ""
        };
        let mut err = anyhow!("{why}{extra}");
        if let Some((s, _)) = missed.first() {
            err = err.context(StorageFailure(s.clone()));
        }
        return Err(nothing_committed(src, err));
    }

    let mut manifest = Manifest {
        format_version: catalog::FORMAT_VERSION,
        id: id.clone(),
        run_id: run_id.to_string(),
        source: src.name().to_string(),
        started_at,
        finished_at: Utc::now(),
        drctl_version: env!("CARGO_PKG_VERSION").to_string(),
        facts,
        plain: sealed.plain,
        stored: sealed.stored.clone(),
        compression: Compression {
            algorithm: cfg.compression.algorithm,
            level: cfg.compression.effective_level(),
        },
        recipients: cfg.encryption.recipients.iter().map(|r| r.text().to_string()).collect(),
        objects: vec![Object {
            key: key.clone(),
            size: sealed.stored.size,
        }],
        storages: closed.iter().map(|(s, _)| s.name.clone()).collect(),
        retention: cfg.policy_for(src.name()),
        private: None,
    };
    let recipients: Vec<&age::x25519::Recipient> = cfg.encryption.recipients.iter().map(|r| r.get()).collect();
    manifest.seal_private(&recipients)?;
    let mkey = catalog::manifest_key(src.name(), &id);
    // Each storage's manifest lists that storage's own objects (one, or numbered parts).
    for (st, objects) in &closed {
        let mut m = manifest.clone();
        m.objects = objects.clone();
        let json = serde_json::to_vec_pretty(&m)?;
        if let Err(e) = st.put(&mkey, json).await {
            // The data is there but invisible; the next prune sweeps it as an orphan.
            missed.push((
                st.name.clone(),
                format!("{:#}", e.context("the manifest could not be written")),
            ));
        }
    }
    if missed.len() == storages.len() {
        return Err(nothing_committed(src, anyhow!("no storage accepted the manifest")));
    }
    // After the commit: the index is a cache, and a failure here only costs readers reads.
    for (st, _) in closed.iter().filter(|(s, _)| !missed.iter().any(|(n, _)| n == &s.name)) {
        if let Err(e) = catalog::update_index(st, src.name()).await {
            tracing::warn!(storage = %st.name, source = src.name(), error = %format!("{e:#}"), "cannot update the index (listing stays correct, only slower)");
        }
    }
    Ok(Committed { manifest, missed })
}
