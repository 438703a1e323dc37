//! NATS JetStream, tarball mode: an in-process streamed tar of the store directory. The archive
//! is laid out so that extracting it into an empty directory gives a directory ready for
//! `nats-server -js -sd DIR`.
//!
//! A tar of a live store is crash-consistent at best: JetStream recovers its message blocks on
//! start, but messages written while the tar runs may or may not be in it. For an exact point,
//! stop the server for the backup (the runbook shows how) or back up a quiet system. Stream
//! message counts and last sequences are read from the monitoring endpoint (`monitor_url`) just
//! before the tar starts, and verification compares the restored server against them.

use super::{stream_states, NatsFacts};
use crate::config::NatsSource;
use crate::sources::{Dump, Facts, Finish};
use crate::tarball;
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;

pub async fn tarball_dump(src: &NatsSource, data_dir: &Path) -> Result<Dump> {
    let meta = std::fs::metadata(data_dir).with_context(|| {
        format!(
            "source '{}': cannot read data_dir {} (mount the NATS volume read-only on this host)",
            src.name,
            data_dir.display()
        )
    })?;
    if !meta.is_dir() {
        bail!(
            "source '{}': data_dir {} is not a directory",
            src.name,
            data_dir.display()
        );
    }
    let streams = match &src.monitor_url {
        Some(m) => Some(
            stream_states(m)
                .await
                .map_err(|e| anyhow!("source '{}': {e:#}", src.name))?,
        ),
        None => None,
    };
    // `…/jetstream` is archived as `jetstream/…`, so the extract is an `-sd` directory.
    let name = match data_dir.file_name().and_then(|n| n.to_str()) {
        Some("jetstream") => std::path::PathBuf::from("jetstream"),
        _ => std::path::PathBuf::new(),
    };
    let (reader, task) = tarball::start(tarball::Spec {
        roots: vec![tarball::Root {
            path: data_dir.to_path_buf(),
            name,
        }],
        exclude: globset::GlobSet::empty(),
        hash_files: false,
    });
    Ok(Dump {
        reader: Box::new(reader),
        format: "tar",
        finish: Finish::Task(tokio::spawn(async move {
            let tar = task.await.map_err(|e| anyhow!("archive task failed: {e}"))??;
            Ok(Facts::Nats(NatsFacts {
                nats_mode: None,
                streams,
                file_count: Some(tar.file_count),
                file_bytes: Some(tar.file_bytes),
                container_data_dir: None,
                unknown: Default::default(),
            }))
        })),
    })
}
