use super::{or_unknown, NatsFacts, NatsMode};
use crate::verification::{check, extract, free_port, verdict, Check};
use anyhow::anyhow;
use std::path::Path;
use std::time::Instant;

pub async fn verify(facts: &NatsFacts, tarfile: &Path, work: &Path, t0: Instant) -> (Vec<Check>, Option<f64>) {
    let mut checks = Vec::new();
    let store = work.join("store");
    let snapshot = facts.mode() == NatsMode::Snapshot;
    if !snapshot {
        let (c, ok) = extract(tarfile, &store, "extract the store").await;
        checks.push(c);
        if !ok {
            return (checks, None);
        }
    }
    let port = free_port();
    let mon = free_port();
    let child = std::process::Command::new("nats-server")
        .env_clear()
        .envs(crate::process::base_env())
        .args([
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-m",
            &mon.to_string(),
            "-sd",
        ])
        .arg(&store)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            checks.push(check(
                "start nats-server",
                Err(anyhow!("cannot start nats-server (install nats-server): {e}")),
            ));
            return (checks, None);
        }
    };
    let url = format!("http://127.0.0.1:{mon}");
    if snapshot {
        // Wait for the server, then restore every stream through the API.
        let nats_url = format!("nats://127.0.0.1:{port}");
        let started = Instant::now();
        let mut restored = Err(anyhow!("nats-server did not start"));
        while started.elapsed() < std::time::Duration::from_secs(30) {
            // The monitoring port answers before JetStream has recovered its store and the
            // client port accepts: wait for both.
            let client_up = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok();
            if client_up && crate::sources::nats::stream_states(&url).await.is_ok() {
                restored = crate::sources::nats::snapshot::restore(tarfile, &nats_url, false).await;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        let ok = restored.is_ok();
        checks.push(check(
            "restore the snapshots through the JetStream API",
            restored.map(|r| format!("{} streams", r.len())),
        ));
        if !ok {
            let _ = child.kill();
            let _ = child.wait();
            return (checks, None);
        }
    }
    let mut states = Err(anyhow!("nats-server did not answer on its monitoring port"));
    let started = Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(60) {
        match crate::sources::nats::stream_states(&url).await {
            Ok(s) => {
                states = Ok(s);
                break;
            }
            Err(e) => states = Err(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let rto = t0.elapsed().as_secs_f64();
    let recorded = facts.streams.as_ref();
    checks.push(check(
        "streams",
        states.and_then(|got| match recorded {
            Some(rec) => {
                let mut diffs = Vec::new();
                for (name, want) in rec {
                    match got.get(name) {
                        Some(g) if g.messages == want.messages && g.last_seq == want.last_seq => {}
                        Some(g) => diffs.push(format!(
                            "{name}: restored {} messages up to seq {}, recorded {} up to {}",
                            or_unknown(g.messages),
                            or_unknown(g.last_seq),
                            or_unknown(want.messages),
                            or_unknown(want.last_seq)
                        )),
                        None => diffs.push(format!("{name}: missing from the restored server")),
                    }
                }
                let ok = format!(
                    "{} streams, message counts and last sequences equal to those recorded",
                    rec.len()
                );
                verdict(diffs, ok, "streams")
            }
            None => Ok(format!(
                "server started with {} streams; no counts were recorded (set monitor_url)",
                got.len()
            )),
        }),
    ));
    let _ = child.kill();
    let _ = child.wait();
    (checks, Some(rto))
}
