//! Verification of a PostgreSQL backup, in a throwaway sandbox. Checks: the download's hashes
//! and age authentication; `pg_restore --exit-on-error` exits 0; every table's exact row count
//! equals the count recorded at backup time in the dump's own snapshot; and the source's
//! `[[source.verify]] sql` assertions return true.

use super::sandbox::Sandbox;
use super::{count_rows, ConnInfo, PostgresFacts};
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
    let mut sandbox = match Sandbox::start(cfg, facts, &m.id).await {
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
    // Loaded as a role that is not a superuser (see `Loader`), where the sandbox allows it.
    let loader = match sandbox.loader().await {
        Ok(l) => l.conn,
        Err(e) => {
            checks.push(Check {
                name: "restore role".into(),
                ok: true,
                detail: format!(
                    "restored as {} ({e:#}): code planted in the dump could run with its privileges",
                    sandbox.conn.user.as_deref().unwrap_or("the sandbox user")
                ),
            });
            sandbox.conn.clone()
        }
    };
    let restored = load(&file, &sandbox.conn, &loader, sandbox.work.path()).await;
    let ok = restored.is_ok();
    checks.push(check("pg_restore", restored.map(|_| "exit 0, no errors".into())));
    let rto = t0.elapsed().as_secs_f64();
    if ok {
        checks.extend(sandbox_checks(&sandbox.conn, &loader, facts, src).await);
    }
    sandbox.stop().await;
    (checks, Some(rto), name)
}

/// Restores the dump into the sandbox: extensions (which need a superuser) first, as the
/// sandbox's superuser; everything else as `loader`, owning what it creates (`--no-owner`).
async fn load(
    file: &std::path::Path,
    admin: &ConnInfo,
    loader: &ConnInfo,
    work: &std::path::Path,
) -> anyhow::Result<()> {
    use crate::sources::postgres::restore::pg_restore_list;
    let mut cmd = crate::process::pg_command("pg_restore");
    cmd.arg("--list").arg(file);
    let toc = crate::process::run(cmd, "pg_restore --list").await?;
    let (mut extensions, mut rest) = (String::new(), String::new());
    for line in toc.lines() {
        let t: Vec<&str> = line.split_whitespace().collect();
        let is_extension = !line.starts_with(';')
            && (t.get(3) == Some(&"EXTENSION") || (t.get(3) == Some(&"COMMENT") && t.get(5) == Some(&"EXTENSION")));
        let to = if is_extension { &mut extensions } else { &mut rest };
        to.push_str(line);
        to.push('\n');
    }
    if !extensions.trim().is_empty() && loader.user != admin.user {
        let list = work.join("extensions.list");
        std::fs::write(&list, &extensions)?;
        pg_restore_list(file, admin, 1, &list).await?;
    }
    let list = work.join("restore.list");
    std::fs::write(&list, if loader.user != admin.user { &rest } else { &toc })?;
    pg_restore_list(file, loader, jobs(), &list).await
}

fn jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8)
}

/// Row counts as the sandbox's superuser (counting runs no code of the dump's); the operator's
/// assertions as `loader`, since they may call the restored database's functions and views.
async fn sandbox_checks(
    conn: &ConnInfo,
    loader: &ConnInfo,
    facts: &PostgresFacts,
    src: Option<&SourceConfig>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let client = match super::sandbox::connect(conn).await {
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
    if assertions.is_empty() {
        return checks;
    }
    let client = match super::sandbox::connect(loader).await {
        Ok(c) => c,
        Err(e) => {
            checks.push(check("connect to sandbox as the restore role", Err(e)));
            return checks;
        }
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
