//! `drctl verify`.

use super::*;

pub(super) async fn verify(cfg: &Config, a: &VerifyArgs) -> Result<i32> {
    let storages = storage::select(&cfg.storages, a.storage.as_deref())?;
    let at =
        a.at.as_deref()
            .map(|t| catalog::parse_time(t, chrono::Utc::now()))
            .transpose()?;
    let identity = a
        .identity
        .clone()
        .or_else(|| cfg.encryption.identity_file.clone())
        .ok_or_else(|| {
            anyhow::anyhow!("verify needs the private identity: pass --identity FILE or set encryption.identity_file")
        })?;
    let identities = crate::keys::load_identities(&identity)?;
    let sources: Vec<String> = if a.sources.is_empty() {
        cfg.sources.iter().map(|s| s.name().to_string()).collect()
    } else {
        a.sources.clone()
    };
    let events = events_for(cfg);
    // Ctrl-C or SIGTERM drops the verification: its sandbox is stopped and removed on drop.
    let cancel = cancel_on_signal();
    let run = crate::verify::run_all(cfg, &sources, at, &storages, &identities, &events);
    let results = tokio::select! {
        r = run => r,
        _ = cancel.cancelled() => bail!("verification interrupted; the sandbox was removed"),
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &results
                    .iter()
                    .map(|r| match r {
                        Ok(rec) => serde_json::to_value(rec).expect("record serializes"),
                        Err((s, e)) => serde_json::json!({ "source": s, "ok": false, "error": e }),
                    })
                    .collect::<Vec<_>>()
            )?
        );
    } else {
        for r in &results {
            match r {
                Ok(rec) => {
                    // A failed verification's time is no restore time: the restore may not
                    // have run at all (no engine, wrong identity).
                    let (verdict, took) = if rec.ok {
                        ("PASS", "restore took")
                    } else {
                        ("FAIL", "failed after")
                    };
                    println!(
                        "{verdict} {}  backup {}  {took} {:.1}s  ({})",
                        rec.source, rec.backup_id, rec.rto_seconds, rec.sandbox
                    );
                    for c in &rec.checks {
                        println!("  {} {}: {}", if c.ok { "ok  " } else { "FAIL" }, c.name, c.detail);
                    }
                }
                Err((s, e)) => println!("FAIL {s}: {e}"),
            }
        }
    }
    let failed = results.iter().any(|r| !matches!(r, Ok(rec) if rec.ok));
    Ok(if failed { 1 } else { 0 })
}
