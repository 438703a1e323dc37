//! Loading a custom-format dump into a PostgreSQL database with `pg_restore --jobs N`.
//! Parallel restore needs a seekable file, so the dump is first decrypted to a scratch file
//! (restore path only; the backup path never writes one) and loaded only after both of its
//! hashes matched — a damaged backup never touches the target.

use crate::catalog::Entry;
use crate::fetch::{artifact_format, fetch_to_file, fetch_to_scratch};
use crate::keys::Identities;
use crate::process;
use crate::sources::postgres::{query_value, ConnInfo};
use crate::sources::{Options, Restored};
use crate::storage::Storage;
use anyhow::{bail, Context, Result};
use std::path::Path;

/// Relations a restore would collide with (tables, views, sequences, …) outside the
/// system schemas.
const COUNT_USER_RELATIONS: &str = "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace \
     where n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg\\_toast%' \
     and n.nspname not like 'pg\\_temp%' and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')";

pub fn parse_target(url: &str) -> Result<ConnInfo> {
    let conn = ConnInfo::parse(url).map_err(|e| anyhow::anyhow!("--target-url: {e}"))?;
    if conn.dbname.is_none() {
        bail!("--target-url names no database; add it, e.g. postgres://user@127.0.0.1:5432/app_restore");
    }
    if let Some(pw) = &conn.password {
        // A password in argv is readable by every user on the host via `ps`.
        if std::env::args().any(|a| a.contains(pw.as_str())) {
            bail!("--target-url contains a password on the command line; pass it through PGPASSWORD or PGPASSFILE, or put the URL in DRCTL_TARGET_URL");
        }
    }
    Ok(conn)
}

/// Refuses a non-empty target unless `clean` is set.
pub async fn check_target(conn: &ConnInfo, clean: bool) -> Result<()> {
    let n = query_value(
        Path::new("psql"),
        conn,
        COUNT_USER_RELATIONS,
        &format!("psql (inspecting target {})", conn.display()),
    )
    .await
    .with_context(|| format!("cannot inspect restore target {}", conn.display()))?;
    let n: u64 = n.parse().unwrap_or(u64::MAX);
    if n > 0 && !clean {
        bail!(
            "restore target {} is not empty ({n} tables, views or sequences); restore into an empty database, or pass --clean to drop and replace the objects in the dump",
            conn.display()
        );
    }
    Ok(())
}

pub async fn pg_restore(file: &Path, conn: &ConnInfo, jobs: usize, clean: bool, no_owner: bool) -> Result<()> {
    let mut cmd = process::pg_command("pg_restore");
    conn.apply(&mut cmd);
    cmd.arg(format!("--jobs={jobs}"))
        .arg("--exit-on-error")
        .arg("--no-password")
        .arg(format!("--dbname={}", conn.dbname.as_deref().unwrap_or_default()));
    if clean {
        cmd.args(["--clean", "--if-exists"]);
    }
    if no_owner {
        cmd.args(["--no-owner", "--no-privileges"]);
    }
    cmd.arg(file);
    process::run(cmd, &format!("pg_restore into {}", conn.display())).await?;
    Ok(())
}

/// `--target-url postgres://…`: refuses a non-empty target (unless `--clean`) before the
/// download, then fetches and checks the dump into a scratch file and runs pg_restore on it.
pub async fn restore_into(
    conn: &ConnInfo,
    entry: &Entry,
    storages: &[Storage],
    identities: &Identities,
    opts: Options,
) -> Result<Restored> {
    let m = &entry.manifest;
    // Refuse early, before spending time on the download.
    check_target(conn, opts.clean).await?;
    let dump = fetch_to_scratch(storages, entry, identities, "dump.pgdump").await?;
    pg_restore(&dump.file, conn, opts.jobs, opts.clean, opts.no_owner).await?;
    Ok(Restored::Database {
        source: m.source.clone(),
        backup: m.id.clone(),
        target: conn.display(),
    })
}

/// `--output-dir`: the decrypted custom-format dump, for pg_restore by hand.
pub async fn restore_to_dir(
    dir: &Path,
    entry: &Entry,
    storages: &[Storage],
    identities: &Identities,
) -> Result<Restored> {
    let m = &entry.manifest;
    let dest = dir.join(format!("{}-{}.{}", m.source, m.id, artifact_format(m)));
    fetch_to_file(storages, entry, identities, &dest).await?;
    Ok(Restored::Wrote { path: dest, hint: None })
}
