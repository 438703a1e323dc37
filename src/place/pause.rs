//! Pausing a container for a consistent copy of its files (a NATS store with `pause = true`):
//! the engine freezes every process in it (cgroup freezer), so nothing is written while the
//! archive endpoint reads the store, and the server resumes where it stopped — clients see a
//! stall, not a restart.
//!
//! A paused container must never be left paused: its service is down until someone notices.
//! [`Paused::resume`] is the normal end (on success and on error, with its own error if the
//! engine refuses). An early exit cannot await — a task aborted by a storage failure, or the
//! runtime dropped after SIGTERM while the copy was running — so `Drop` of a `Paused` that was
//! not resumed unpauses synchronously, on a thread of its own with its own runtime and engine
//! connection, and waits (bounded) for the answer before the process goes on exiting.

use super::{Container, Engine};
use anyhow::{anyhow, Result};
use std::time::Duration;

/// How long an unpause may take before drctl gives up on it and says so.
const UNPAUSE_TIMEOUT: Duration = Duration::from_secs(30);

/// A container drctl paused; unpaused by [`Paused::resume`] or, failing that, on drop.
pub struct Paused {
    /// `None` once resumed.
    held: Option<Held>,
}

struct Held {
    engine: Engine,
    id: String,
    name: String,
}

impl Container {
    /// Pauses the container; it stays paused until the returned value is resumed or dropped.
    pub async fn pause(&self) -> Result<Paused> {
        self.engine.docker.pause_container(&self.id).await.map_err(|e| {
            anyhow!(
                "cannot pause container '{}': {e} (the engine must support pause: cgroups with the freezer; or set pause = false)",
                self.name
            )
        })?;
        tracing::info!(container = %self.name, "paused the container for the copy");
        Ok(Paused {
            held: Some(Held {
                engine: self.engine.clone(),
                id: self.id.clone(),
                name: self.name.clone(),
            }),
        })
    }
}

impl Paused {
    /// Unpauses. The error names the container and says how to unpause it by hand.
    pub async fn resume(mut self) -> Result<()> {
        let held = self.held.as_ref().expect("resumed once");
        let r = unpause(&held.engine, &held.id, &held.name).await;
        // Only now: a resume cut short (its task aborted mid-request) leaves `held` for drop.
        self.held = None;
        r
    }
}

/// For drop: unpauses unless the container is no longer paused (a resume that was cut short
/// may have gone through).
async fn unpause_if_paused(engine: &Engine, id: &str, name: &str) -> Result<()> {
    if let Ok(info) = engine.docker.inspect_container(id, None).await {
        if info.state.and_then(|s| s.paused) == Some(false) {
            return Ok(());
        }
    }
    unpause(engine, id, name).await
}

async fn unpause(engine: &Engine, id: &str, name: &str) -> Result<()> {
    let answer = tokio::time::timeout(UNPAUSE_TIMEOUT, engine.docker.unpause_container(id)).await;
    let failed = match answer {
        Ok(Ok(())) => {
            tracing::info!(container = %name, "unpaused the container");
            return Ok(());
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer from the engine within {UNPAUSE_TIMEOUT:?}"),
    };
    Err(anyhow!(
        "container '{name}' may still be PAUSED: unpausing it failed ({failed}); run `docker unpause {name}` now"
    ))
}

impl Drop for Paused {
    fn drop(&mut self) {
        let Some(held) = self.held.take() else { return };
        // Not resumed: the copy was abandoned (an aborted task, the runtime shutting down after
        // a signal). This may run inside the runtime being dropped, which can no longer drive
        // a request, so the unpause runs on a fresh thread with a runtime and an engine
        // connection of its own, and this thread waits for it.
        let name = held.name.clone();
        let id = held.id.clone();
        let outcome = std::thread::spawn(move || -> Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                let engine = Engine::connect()?;
                unpause_if_paused(&engine, &id, &name).await
            })
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(container = %held.name, "{e:#}"),
            Err(_) => tracing::error!(
                container = %held.name,
                "container '{}' may still be PAUSED: run `docker unpause {}` now",
                held.name,
                held.name
            ),
        }
    }
}
