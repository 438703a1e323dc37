//! NATS JetStream: a streamed tar of the store directory (tarball mode) or per-stream snapshots
//! through the JetStream API (snapshot mode); restored as a store directory or through the API.

mod config;
mod container;
pub mod snapshot;
mod tarball;
pub mod verify;

pub use config::{NatsAccess, NatsMode, NatsSource};

use super::Dump;
use crate::catalog::Entry;
use crate::fetch::{extract_to_dir, fetch_to_scratch};
use crate::keys::Identities;
use crate::sources::{Options, Restored};
use crate::storage::Storage;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Facts of a NATS backup. `nats_mode` is written only by snapshot mode (absent means tarball,
/// as in every earlier release); `file_count`/`file_bytes` only by tarball mode.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NatsFacts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats_mode: Option<NatsMode>,
    /// Per-stream state when the backup was taken (tarball mode: from `monitor_url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streams: Option<BTreeMap<String, StreamState>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_bytes: Option<u64>,
    /// Tarball mode in a container: the store directory inside it (`-sd`), where a restore
    /// into a container writes when the target's command does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_data_dir: Option<String>,
    #[serde(flatten)]
    pub unknown: super::UnknownFacts,
}

impl NatsFacts {
    pub fn mode(&self) -> NatsMode {
        self.nats_mode.unwrap_or(NatsMode::Tarball)
    }
}

/// A stream's message count and sequence range, as the server reports them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamState {
    pub messages: Option<u64>,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub consumers: Option<u64>,
}

impl StreamState {
    /// From the `state` object of a JetStream API answer or a monitoring stream detail.
    pub fn from_api(state: &serde_json::Value) -> StreamState {
        StreamState {
            messages: state["messages"].as_u64(),
            first_seq: state["first_seq"].as_u64(),
            last_seq: state["last_seq"].as_u64(),
            consumers: state["consumer_count"].as_u64(),
        }
    }
}

fn or_unknown(n: Option<u64>) -> String {
    n.map(|n| n.to_string()).unwrap_or_else(|| "?".into())
}

impl std::fmt::Display for StreamState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} messages, last sequence {}",
            or_unknown(self.messages),
            or_unknown(self.last_seq)
        )
    }
}

/// Per-stream state from `GET <monitor>/jsz?streams=true`.
pub async fn stream_states(monitor_url: &str) -> Result<BTreeMap<String, StreamState>> {
    let url = format!("{}/jsz?streams=true", monitor_url.trim_end_matches('/'));
    let v: serde_json::Value = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(15))
        .build()?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("cannot reach NATS monitoring at {monitor_url} (is nats-server started with -m?)"))?
        .error_for_status()?
        .json()
        .await
        .context("NATS monitoring answered with something that is not JSON")?;
    let mut out = BTreeMap::new();
    for acc in v["account_details"].as_array().into_iter().flatten() {
        for st in acc["stream_detail"].as_array().into_iter().flatten() {
            let name = st["name"].as_str().unwrap_or_default().to_string();
            out.insert(name, StreamState::from_api(&st["state"]));
        }
    }
    Ok(out)
}

pub async fn start_dump(src: &NatsSource) -> Result<Dump> {
    match (&src.place, &src.access) {
        (None, NatsAccess::Tarball { data_dir, .. }) => tarball::tarball_dump(src, data_dir).await,
        (None, NatsAccess::Snapshot { url, streams }) => snapshot::start_dump(src, url, streams).await,
        (Some(place), NatsAccess::Tarball { data_dir, pause }) => {
            container::tarball_dump(src, place, data_dir, pause.as_ref().map(|d| d.std())).await
        }
        (Some(place), NatsAccess::Snapshot { url, streams }) => {
            container::snapshot_dump(src, place, url, streams).await
        }
    }
}

/// `--target-url nats://…`: snapshot-mode backups go back through the JetStream API.
pub async fn restore_into(
    facts: &NatsFacts,
    url: &str,
    entry: &Entry,
    storages: &[Storage],
    identities: &Identities,
    opts: Options<'_>,
) -> Result<Restored> {
    let m = &entry.manifest;
    if facts.mode() == NatsMode::Tarball {
        anyhow::bail!(
            "'{}' was backed up in tarball mode: restore it with --output-dir, then `nats-server -js -sd DIR/{}`",
            m.source,
            m.source
        );
    }
    let tar = fetch_to_scratch(storages, entry, identities, "snapshot.tar", opts.scratch_dir).await?;
    let streams = snapshot::restore(&tar.file, url, opts.clean).await?;
    Ok(Restored::NatsStreams {
        source: m.source.clone(),
        backup: m.id.clone(),
        streams,
    })
}

/// `--output-dir`: the archive extracted under `DIR/<source>` (tarball mode: a store directory).
pub async fn restore_to_dir(
    dir: &Path,
    entry: &Entry,
    storages: &[Storage],
    identities: &Identities,
    opts: Options<'_>,
) -> Result<Restored> {
    let sub = extract_to_dir(dir, entry, storages, identities, opts.keep_special_bits).await?;
    let hint = format!("start it with: nats-server -js -sd {}", sub.display());
    Ok(Restored::Extracted {
        dir: sub,
        hint: Some(hint),
    })
}

/// `--target container:NAME | service:NAME`: a snapshot-mode backup through the JetStream API
/// at the container's address; a tarball-mode one written into the stopped container's store.
pub async fn restore_into_container(
    facts: &NatsFacts,
    place: &crate::place::ContainerRef,
    entry: &Entry,
    storages: &[Storage],
    identities: &Identities,
    opts: Options<'_>,
) -> Result<Restored> {
    container::restore_into_container(facts, place, entry, storages, identities, opts).await
}
