//! `pg_dump --format=custom --compress=0` as a child process, with the exact row counts of
//! every table taken in the snapshot it dumps.

use super::PostgresFacts;
use super::{conn_for, pg_config, query_value, ConnInfo, PostgresAccess, PostgresSource};
use crate::process;
use crate::sources::{Dump, Facts, Finish};
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};

/// `pg_dump (PostgreSQL) 15.19 (Debian …)` → (15, "15.19").
pub fn parse_tool_version(out: &str) -> Option<(u32, String)> {
    let v = out
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
    let major = v.split(['.', 'b', 'r']).next()?.parse().ok()?;
    Some((major, v.to_string()))
}

/// `server_version_num` → major version (150019 → 15, 90624 → 9).
pub fn server_major(version_num: u32) -> u32 {
    if version_num >= 100_000 {
        version_num / 10_000
    } else {
        version_num / 100 / 100
    }
}

/// The pg_dump to use: the configured one if any (it must be new enough), else the one on PATH
/// if new enough, else the newest installed under /usr/lib/postgresql/*/bin that is.
/// Pure, so the decision is unit-tested with made-up version lists.
pub fn choose_pg_dump(
    source: &str,
    configured: bool,
    candidates: &[(PathBuf, u32)],
    server: u32,
) -> Result<PathBuf, String> {
    // The first candidate is the configured pg_dump, or the one on PATH: what the operator
    // would run by hand. Only when it is too old do we look further.
    let first = candidates.first().filter(|(_, v)| *v >= server);
    let newest = candidates.iter().filter(|(_, v)| *v >= server).max_by_key(|(_, v)| *v);
    if let Some((p, _)) = first.or(if configured { None } else { newest }) {
        return Ok(p.clone());
    }
    let found = candidates
        .iter()
        .map(|(p, v)| format!("{} is {v}", p.display()))
        .collect::<Vec<_>>()
        .join(", ");
    let fix = if configured {
        format!("point pg_dump_path at a pg_dump {server} or newer")
    } else {
        format!("install postgresql-client-{server} or set pg_dump_path to a pg_dump {server} or newer")
    };
    Err(format!(
        "cannot dump '{source}': pg_dump is older than server {server} ({found}); {fix}"
    ))
}

async fn pg_dump_candidates(name: &str, pg_dump_path: Option<&Path>) -> Result<Vec<(PathBuf, u32, String)>> {
    let mut paths: Vec<PathBuf> = Vec::new();
    if let Some(p) = pg_dump_path {
        paths.push(p.to_path_buf());
    } else {
        paths.push(PathBuf::from("pg_dump"));
        if let Ok(rd) = std::fs::read_dir("/usr/lib/postgresql") {
            let mut dirs: Vec<PathBuf> = rd
                .flatten()
                .map(|e| e.path().join("bin/pg_dump"))
                .filter(|p| p.exists())
                .collect();
            dirs.sort();
            paths.extend(dirs);
        }
    }
    let mut out = Vec::new();
    for p in paths {
        let mut cmd = process::pg_command(&p);
        cmd.arg("--version");
        match process::run(cmd, &format!("{} --version", p.display())).await {
            Ok(text) => {
                if let Some((major, full)) = parse_tool_version(&text) {
                    out.push((p, major, full));
                }
            }
            Err(e) if pg_dump_path.is_some() => {
                bail!("source '{name}': pg_dump_path {}: {e}", p.display())
            }
            Err(_) => {}
        }
    }
    if out.is_empty() {
        bail!("source '{name}': no pg_dump found (install postgresql-client, or set pg_dump_path)");
    }
    Ok(out)
}

/// psql next to the chosen pg_dump if there is one, else the one on PATH.
fn sibling(tool: &Path, name: &str) -> PathBuf {
    match tool.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && dir.join(name).exists() => dir.join(name),
        _ => PathBuf::from(name),
    }
}

pub async fn start_dump(src: &PostgresSource) -> Result<Dump> {
    match &src.access {
        PostgresAccess::Host {
            url,
            password_file,
            pg_dump_path,
        } => start_host_dump(src, url, password_file.as_deref(), pg_dump_path.as_deref()).await,
        PostgresAccess::Container { place, user, database } => {
            super::container::start_dump(src, place, user.as_deref(), database.as_deref()).await
        }
    }
}

async fn start_host_dump(
    src: &PostgresSource,
    url: &str,
    password_file: Option<&Path>,
    pg_dump_path: Option<&Path>,
) -> Result<Dump> {
    let conn = conn_for(&src.name, url, password_file)?;
    let candidates = pg_dump_candidates(&src.name, pg_dump_path).await?;
    let psql = sibling(&candidates[0].0, "psql");
    let version_num = query_value(
        &psql,
        &conn,
        "show server_version_num",
        &format!("psql (asking {} for its version)", conn.display()),
    )
    .await
    .with_context(|| format!("source '{}': cannot connect to {}", src.name, conn.display()))?;
    let version_num: u32 = version_num
        .parse()
        .map_err(|_| anyhow!("source '{}': server answered '{version_num}' for its version", src.name))?;
    let server = server_major(version_num);
    let server_version = query_value(&psql, &conn, "show server_version", "psql").await?;
    let pairs: Vec<(PathBuf, u32)> = candidates.iter().map(|(p, m, _)| (p.clone(), *m)).collect();
    let chosen = choose_pg_dump(&src.name, pg_dump_path.is_some(), &pairs, server).map_err(|e| anyhow!(e))?;
    let pg_dump_version = candidates
        .iter()
        .find(|(p, _, _)| *p == chosen)
        .map(|(_, _, v)| v.clone())
        .unwrap_or_default();
    tracing::info!(source = %src.name, server = %server_version, pg_dump = %chosen.display(), pg_dump_version = %pg_dump_version, "starting pg_dump");

    // Row counts for verification, taken in the snapshot pg_dump will dump.
    let snapshot = if src.row_counts {
        match Snapshot::open(&conn).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(source = %src.name, error = %format!("{e:#}"), "cannot record row counts; verification will skip the count check");
                None
            }
        }
    } else {
        None
    };

    let dumpall = sibling(&chosen, "pg_dumpall");
    let (globals, globals_note) = super::globals::capture(&src.name, |no_passwords| {
        let mut cmd = process::pg_command(&dumpall);
        conn.apply(&mut cmd);
        cmd.args(["--globals-only", "--no-password"]);
        if no_passwords {
            cmd.arg("--no-role-passwords");
        }
        // The database pg_dumpall connects to: the source's own (it may be the only one allowed).
        if let Some(db) = &conn.dbname {
            cmd.arg(format!("--database={db}"));
        }
        let what = format!("pg_dumpall --globals-only for '{}'", src.name);
        async move { process::run(cmd, &what).await }
    })
    .await;

    let mut cmd = process::pg_command(&chosen);
    conn.apply(&mut cmd);
    cmd.args(["--format=custom", "--compress=0", "--no-password"]);
    if let Some(s) = &snapshot {
        cmd.arg(format!("--snapshot={}", s.id));
    }
    let (stdout, mut finish) = process::spawn_streaming(cmd, format!("pg_dump for '{}'", src.name))?;
    let mut facts = PostgresFacts {
        row_counts: None,
        server_version,
        pg_dump_version,
        database: conn.dbname.clone().unwrap_or_default(),
        globals,
        globals_note,
        unknown: Default::default(),
    };
    if let Some(s) = snapshot {
        facts.row_counts = Some(s.counts);
        // The exporting transaction must stay open until pg_dump has imported the snapshot;
        // keep it until the dump is over.
        finish.keep_alive(Box::new(s.client));
    }
    Ok(Dump {
        reader: Box::new(stdout),
        format: "pgdump",
        finish: Finish::Process(Box::new(finish), Facts::Postgres(facts)),
    })
}

/// A repeatable-read transaction that exported its snapshot, with exact row counts of every
/// user table as of that snapshot.
struct Snapshot {
    id: String,
    counts: std::collections::BTreeMap<String, i64>,
    client: tokio_postgres::Client,
}

/// User tables (not views, not partitioned parents: their rows live in the leaves).
pub const LIST_TABLES: &str = "select quote_ident(n.nspname) || '.' || quote_ident(c.relname) from pg_class c \
    join pg_namespace n on n.oid = c.relnamespace where c.relkind = 'r' \
    and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg\\_toast%' \
    and n.nspname not like 'pg\\_temp%' order by 1";

/// Exact row counts of every user table, in the client's current transaction.
pub async fn count_rows(client: &tokio_postgres::Client) -> Result<std::collections::BTreeMap<String, i64>> {
    let mut counts = std::collections::BTreeMap::new();
    for row in client.query(LIST_TABLES, &[]).await? {
        let t: String = row.get(0);
        let n: i64 = client
            .query_one(&format!("select count(*) from {t}"), &[])
            .await
            .with_context(|| format!("cannot count rows of {t}"))?
            .get(0);
        counts.insert(t, n);
    }
    Ok(counts)
}

impl Snapshot {
    async fn open(conn: &ConnInfo) -> Result<Snapshot> {
        let (client, connection) = pg_config(conn)?.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
            .batch_execute("begin isolation level repeatable read read only")
            .await?;
        let id: String = client.query_one("select pg_export_snapshot()", &[]).await?.get(0);
        let counts = count_rows(&client).await?;
        Ok(Snapshot { id, counts, client })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::redact_url;

    #[test]
    fn url_to_env_decodes_and_redacts() {
        let c = ConnInfo::parse("postgres://app:p%40ss@127.0.0.1:5433/app%2Ddb?sslmode=disable").unwrap();
        assert_eq!(c.user.as_deref(), Some("app"));
        assert_eq!(c.password.as_deref(), Some("p@ss"));
        assert_eq!(c.port, Some(5433));
        assert_eq!(c.dbname.as_deref(), Some("app-db"));
        assert_eq!(c.params, vec![("sslmode".to_string(), "disable".to_string())]);
        assert!(!format!("{c:?}").contains("p@ss"));
        assert!(!redact_url("postgres://app:hunter2@h/db").contains("hunter2"));
        assert!(ConnInfo::parse("mysql://x@h/db").unwrap_err().contains("postgres://"));
        assert!(ConnInfo::parse("postgres://x@h/db?bogus=1")
            .unwrap_err()
            .contains("bogus"));
    }

    #[test]
    fn versions_parse() {
        assert_eq!(
            parse_tool_version("pg_dump (PostgreSQL) 15.19 (Debian 15.19-0+deb12u1)\n"),
            Some((15, "15.19".into()))
        );
        assert_eq!(
            parse_tool_version("pg_dump (PostgreSQL) 17beta2"),
            Some((17, "17beta2".into()))
        );
        assert_eq!(server_major(150019), 15);
        assert_eq!(server_major(160001), 16);
        assert_eq!(server_major(90624), 9);
    }

    #[test]
    fn pg_dump_choice_prefers_path_then_newest_new_enough() {
        let path = PathBuf::from("pg_dump");
        let c = vec![
            (path.clone(), 15),
            (PathBuf::from("/usr/lib/postgresql/15/bin/pg_dump"), 15),
            (PathBuf::from("/usr/lib/postgresql/17/bin/pg_dump"), 17),
        ];
        assert_eq!(choose_pg_dump("db", false, &c, 15).unwrap(), path);
        assert_eq!(
            choose_pg_dump("db", false, &c, 16).unwrap(),
            PathBuf::from("/usr/lib/postgresql/17/bin/pg_dump")
        );
        let e = choose_pg_dump("app-db", false, &c[..2], 16).unwrap_err();
        assert!(e.contains("older than server 16"), "{e}");
        assert!(e.contains("postgresql-client-16"), "{e}");
        let e = choose_pg_dump("app-db", true, &[(PathBuf::from("/opt/pg_dump"), 14)], 15).unwrap_err();
        assert!(e.contains("/opt/pg_dump is 14") && e.contains("pg_dump_path"), "{e}");
    }
}
