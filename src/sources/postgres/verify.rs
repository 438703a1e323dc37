//! Verification of a PostgreSQL backup, in a throwaway sandbox. Checks: the download's hashes
//! and age authentication; `pg_restore --exit-on-error` exits 0; every table's exact row count
//! equals the count recorded at backup time in the dump's own snapshot; and the source's
//! `[[source.verify]] sql` assertions return true.

use super::sandbox::Sandbox;
use super::{count_rows, pg_config, ConnInfo, PostgresFacts};
use crate::catalog::Entry;
use crate::config::{Config, SourceConfig};
use crate::keys::Identities;
use crate::storage::Storage;
use crate::verification::{check, download, verdict, Check};
use anyhow::{anyhow, Context};
use std::time::Instant;

/// Returns the checks, the measured restore time, and the sandbox used.
pub async fn verify(
    cfg: &Config,
    entry: &Entry,
    facts: &PostgresFacts,
    src: Option<&SourceConfig>,
    storages: &[Storage],
    identities: &Identities,
) -> (Vec<Check>, Option<f64>, String) {
    let m = &entry.manifest;
    let t0 = Instant::now();
    let mut checks = Vec::new();
    let sandbox = match Sandbox::start(cfg, facts, &m.id).await {
        Ok(s) => s,
        Err(e) => {
            checks.push(check("sandbox", Err(e)));
            return (checks, None, cfg.verify.sandbox.to_string());
        }
    };
    let name = sandbox.describe();
    let file = sandbox.work.path().join("dump.pgdump");
    let (c, ok) = download(storages, entry, identities, &file).await;
    checks.push(c);
    if !ok {
        sandbox.stop().await;
        return (checks, None, name);
    }
    let restored =
        crate::sources::postgres::restore::pg_restore(&file, &sandbox.conn, jobs(), false, true, false).await;
    let ok = restored.is_ok();
    checks.push(check("pg_restore", restored.map(|_| "exit 0, no errors".into())));
    let rto = t0.elapsed().as_secs_f64();
    if ok {
        checks.extend(sandbox_checks(&sandbox.conn, facts, src).await);
    }
    sandbox.stop().await;
    (checks, Some(rto), name)
}

fn jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8)
}

async fn sandbox_checks(conn: &ConnInfo, facts: &PostgresFacts, src: Option<&SourceConfig>) -> Vec<Check> {
    let mut checks = Vec::new();
    let client = match async {
        let (client, connection) = pg_config(conn)?.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok::<_, anyhow::Error>(client)
    }
    .await
    {
        Ok(c) => c,
        Err(e) => {
            checks.push(check("connect to sandbox", Err(e)));
            return checks;
        }
    };
    match &facts.row_counts {
        Some(recorded) => {
            let r = async {
                let restored = count_rows(&client).await?;
                let mut diffs = Vec::new();
                for (t, n) in recorded {
                    match restored.get(t) {
                        Some(r) if r == n => {}
                        Some(r) => diffs.push(format!("{t}: restored {r} rows, recorded {n}")),
                        None => diffs.push(format!("{t}: missing from the restore (recorded {n} rows)")),
                    }
                }
                for t in restored.keys().filter(|t| !recorded.contains_key(*t)) {
                    diffs.push(format!("{t}: in the restore but not recorded at backup time"));
                }
                let ok = format!(
                    "{} tables, {} rows, all equal to the counts taken in the dump's snapshot",
                    recorded.len(),
                    recorded.values().sum::<i64>()
                );
                verdict(diffs, ok, "row counts")
            }
            .await;
            checks.push(check("row counts", r));
        }
        None => checks.push(Check {
            name: "row counts".into(),
            ok: true,
            detail: "skipped: no counts were recorded at backup time (row_counts = false or counting failed)".into(),
        }),
    }
    let assertions = match src {
        Some(SourceConfig::Postgres(p)) => p.verify.clone(),
        _ => Vec::new(),
    };
    for a in assertions {
        let r = async {
            let row = client.query_one(a.sql.as_str(), &[]).await.context("query failed")?;
            let v: bool = row.try_get(0).context("the query must return one boolean")?;
            if v {
                Ok("true".to_string())
            } else {
                Err(anyhow!("returned false"))
            }
        }
        .await;
        checks.push(check(&format!("assertion `{}`", a.sql), r));
    }
    checks
}
