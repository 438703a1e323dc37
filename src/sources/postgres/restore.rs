//! Loading a custom-format dump into a PostgreSQL database with `pg_restore --jobs N`.
//! Parallel restore needs a seekable file, so the dump is first decrypted to a scratch file
//! (restore path only; the backup path never writes one) and loaded only after both of its
//! hashes matched — a damaged backup never touches the target.
//!
//! `--clean` into a database that holds objects never leaves it half-replaced: pg_restore's
//! own `--clean` drops objects one by one and stops at the first error (a view of the
//! operator's depending on a dumped table), leaving keys and tables gone. So with `--jobs 1`
//! the load runs in one transaction (a failure rolls everything back), and with more jobs it
//! goes into a new database whose name is swapped with the live one's only after it loaded,
//! the old database kept as `<name>_before_<time>` until the operator drops it.

use crate::catalog::Entry;
use crate::fetch::{artifact_format, fetch_to_file, fetch_to_scratch};
use crate::keys::Identities;
use crate::process;
use crate::sources::postgres::{globals, query_value, ConnInfo};
use crate::sources::{Options, Restored};
use crate::storage::Storage;
use anyhow::{bail, Context, Result};
use std::path::Path;

/// Relations a restore would collide with (tables, views, sequences, …) outside the
/// system schemas.
pub(super) const COUNT_USER_RELATIONS: &str =
    "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace \
     where n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg\\_toast%' \
     and n.nspname not like 'pg\\_temp%' and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')";

pub fn parse_target(url: &str) -> Result<ConnInfo> {
    let conn = ConnInfo::parse(url).map_err(|e| anyhow::anyhow!("--target-url: {e}"))?;
    if conn.dbname.is_none() {
        bail!("--target-url names no database; add it, e.g. postgres://user@127.0.0.1:5432/app_restore");
    }
    Ok(conn)
}

/// Refuses a non-empty target unless `clean` is set; returns how many relations it holds.
pub async fn check_target(conn: &ConnInfo, clean: bool) -> Result<u64> {
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
    Ok(n)
}

/// How `--clean` replaced a database that held objects.
pub enum Replaced {
    /// The target was empty: a plain load.
    Empty,
    /// `--jobs 1`: one transaction; a failure would have rolled it all back.
    OneTransaction,
    /// Loaded into a new database, then swapped in; the old one is kept as `previous`.
    Swapped { previous: String },
}

pub(super) fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub(super) fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `<db><suffix>` within PostgreSQL's 63-byte name limit (the database part is shortened).
fn derived_name(db: &str, suffix: &str) -> String {
    let mut base = db.to_string();
    while base.len() + suffix.len() > 63 {
        base.pop();
    }
    format!("{base}{suffix}")
}

/// Restores into a new database beside the live one and swaps the names once it loaded.
async fn restore_by_swap(dump: &Path, conn: &ConnInfo, jobs: usize, no_owner: bool) -> Result<String> {
    let db = conn.dbname.clone().unwrap_or_default();
    let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S").to_string();
    let fresh = derived_name(&db, &format!("_drctl_{stamp}"));
    let previous = derived_name(&db, &format!("_before_{stamp}"));
    // CREATE/ALTER DATABASE run from the maintenance database.
    let admin = ConnInfo {
        dbname: Some("postgres".into()),
        ..conn.clone()
    };
    let psql = Path::new("psql");
    let props = query_value(
        psql,
        &admin,
        &format!(
            "select pg_get_userbyid(datdba) || '|' || pg_encoding_to_char(encoding) || '|' || datcollate || '|' || datctype \
             from pg_database where datname = {}",
            quote_literal(&db)
        ),
        "psql (reading the target database's owner and encoding)",
    )
    .await
    .with_context(|| format!("--clean: cannot read the properties of database '{db}' through the 'postgres' database (the target user needs to connect there and CREATEDB)"))?;
    let p: Vec<&str> = props.split('|').collect();
    let [owner, encoding, collate, ctype] = p[..] else {
        bail!("--clean: database '{db}' not found in pg_database");
    };
    query_value(
        psql,
        &admin,
        &format!(
            "create database {} with template template0 owner {} encoding {} lc_collate {} lc_ctype {}",
            quote_ident(&fresh),
            quote_ident(owner),
            quote_literal(encoding),
            quote_literal(collate),
            quote_literal(ctype)
        ),
        "psql (creating the database to restore into)",
    )
    .await
    .with_context(|| {
        format!("--clean: cannot create the new database '{fresh}' to restore into (the target user needs CREATEDB)")
    })?;
    let into = ConnInfo {
        dbname: Some(fresh.clone()),
        ..conn.clone()
    };
    if let Err(e) = pg_restore(dump, &into, jobs, false, no_owner, false).await {
        let drop = format!("drop database if exists {}", quote_ident(&fresh));
        let _ = query_value(psql, &admin, &drop, "psql (dropping the failed restore)").await;
        return Err(e.context(format!(
            "the restore into a new database failed and was dropped; the live database '{db}' was not touched"
        )));
    }
    // Both renames in one transaction: either the swap happened or nothing did.
    let swap = format!(
        "alter database {} rename to {}; alter database {} rename to {}",
        quote_ident(&db),
        quote_ident(&previous),
        quote_ident(&fresh),
        quote_ident(&db)
    );
    query_value(psql, &admin, &swap, "psql (swapping the restored database in)")
        .await
        .with_context(|| {
            format!(
                "the backup is restored into database '{fresh}', but it could not replace '{db}' (are sessions still connected to it? stop the application), then run in the 'postgres' database: {swap}"
            )
        })?;
    Ok(previous)
}

pub async fn pg_restore(
    file: &Path,
    conn: &ConnInfo,
    jobs: usize,
    clean: bool,
    no_owner: bool,
    single_transaction: bool,
) -> Result<()> {
    let mut cmd = process::pg_command("pg_restore");
    conn.apply(&mut cmd);
    cmd.arg(format!("--jobs={jobs}"))
        .arg("--exit-on-error")
        .arg("--no-password")
        .arg(format!("--dbname={}", conn.dbname.as_deref().unwrap_or_default()));
    if clean {
        cmd.args(["--clean", "--if-exists"]);
    }
    if single_transaction {
        cmd.arg("--single-transaction");
    }
    if no_owner {
        cmd.args(["--no-owner", "--no-privileges"]);
    }
    cmd.arg(file);
    process::run(cmd, &format!("pg_restore into {}", conn.display())).await?;
    Ok(())
}

/// Runs `pg_restore --no-owner --no-privileges --use-list LIST` into `conn` (the verification
/// sandbox: a subset of the dump, as a chosen role).
pub async fn pg_restore_list(file: &Path, conn: &ConnInfo, jobs: usize, list: &Path) -> Result<()> {
    let mut cmd = process::pg_command("pg_restore");
    conn.apply(&mut cmd);
    cmd.arg(format!("--jobs={jobs}"))
        .args(["--exit-on-error", "--no-password", "--no-owner", "--no-privileges"])
        .arg(format!("--dbname={}", conn.dbname.as_deref().unwrap_or_default()))
        .arg("--use-list")
        .arg(list)
        .arg(file);
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
    opts: Options<'_>,
) -> Result<Restored> {
    let m = &entry.manifest;
    // Refuse early, before spending time on the download.
    let existing = check_target(conn, opts.clean).await?;
    let dump = fetch_to_scratch(storages, entry, identities, "dump.pgdump", opts.scratch_dir).await?;
    let roles_created = if opts.no_owner {
        Vec::new()
    } else {
        create_missing_roles_host(conn, entry, identities).await?
    };
    let replaced = if existing == 0 {
        pg_restore(&dump.file, conn, opts.jobs, false, opts.no_owner, false).await?;
        Replaced::Empty
    } else if opts.jobs <= 1 {
        pg_restore(&dump.file, conn, 1, true, opts.no_owner, true)
            .await
            .context("--clean ran in one transaction, which was rolled back: the target is as it was")?;
        Replaced::OneTransaction
    } else {
        let previous = restore_by_swap(&dump.file, conn, opts.jobs, opts.no_owner).await?;
        Replaced::Swapped { previous }
    };
    Ok(Restored::Database {
        source: m.source.clone(),
        backup: m.id.clone(),
        target: conn.display(),
        replaced,
        roles_created,
    })
}

/// The roles recorded with the backup (`pg_dumpall --globals-only`), decrypted; `None` for a
/// backup without them (earlier releases, or the login could not take them).
pub fn recorded_globals(entry: &Entry, identities: &Identities) -> Result<Option<globals::Globals>> {
    let mut m = entry.manifest.clone();
    m.open_private(identities)
        .context("cannot open the backup's encrypted facts, where its roles are kept")?;
    match m.facts {
        crate::sources::Facts::Postgres(f) => f
            .globals
            .map(|g| globals::parse(&g).context("the roles recorded with the backup cannot be read"))
            .transpose(),
        _ => Ok(None),
    }
}

/// Creates the backup's roles that the target server lacks (never altering existing ones), in
/// one transaction, before pg_restore needs them as owners. Returns their names.
async fn create_missing_roles_host(conn: &ConnInfo, entry: &Entry, identities: &Identities) -> Result<Vec<String>> {
    let Some(g) = recorded_globals(entry, identities)? else {
        return Ok(Vec::new());
    };
    let psql = Path::new("psql");
    let existing = query_value(psql, conn, globals::LIST_ROLES, "psql (listing the target's roles)").await?;
    let existing = existing.lines().map(str::to_string).collect();
    let (script, created) = globals::creation_script(&g, &existing);
    if created.is_empty() {
        return Ok(created);
    }
    let mut cmd = process::pg_command(psql);
    conn.apply(&mut cmd);
    cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"]);
    process::run_input(cmd, script.into_bytes(), "psql (creating the backup's roles)")
        .await
        .with_context(|| {
            format!(
                "cannot create the roles {} on {} (the target login needs CREATEROLE, or SUPERUSER for superuser roles); create them by hand, or pass --no-owner to restore without owners",
                created.join(", "),
                conn.display()
            )
        })?;
    Ok(created)
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

/// `--target container:NAME | service:NAME`: into the PostgreSQL server running in a container,
/// with its own pg_restore (see `container::restore_into`).
pub async fn restore_into_container(
    place: &crate::place::ContainerRef,
    entry: &Entry,
    storages: &[Storage],
    identities: &Identities,
    opts: Options<'_>,
) -> Result<Restored> {
    super::container::restore_into(place, entry, storages, identities, opts).await
}
