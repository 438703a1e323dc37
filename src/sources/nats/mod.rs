//! NATS JetStream: a streamed tar of the store directory (tarball mode) or per-stream snapshots
//! through the JetStream API (snapshot mode); restored as a store directory or through the API.

mod config;
pub mod snapshot;
mod tarball;
pub mod verify;

pub use config::{NatsMode, NatsSource};

use super::Dump;
use anyhow::{Context, Result};

/// Per-stream state from `GET <monitor>/jsz?streams=true`.
pub async fn stream_states(monitor_url: &str) -> Result<serde_json::Map<String, serde_json::Value>> {
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
    let mut out = serde_json::Map::new();
    for acc in v["account_details"].as_array().into_iter().flatten() {
        for st in acc["stream_detail"].as_array().into_iter().flatten() {
            let name = st["name"].as_str().unwrap_or_default().to_string();
            out.insert(
                name,
                serde_json::json!({
                    "messages": st["state"]["messages"],
                    "first_seq": st["state"]["first_seq"],
                    "last_seq": st["state"]["last_seq"],
                    "consumers": st["state"]["consumer_count"],
                }),
            );
        }
    }
    Ok(out)
}

pub async fn start_dump(src: &NatsSource) -> Result<Dump> {
    match src.mode {
        NatsMode::Tarball => tarball::tarball_dump(src).await,
        NatsMode::Snapshot => snapshot::start_dump(src).await,
    }
}
