//! PostgreSQL: `pg_dump --format=custom --compress=0` as a child process.
//!
//! Custom format because it is what `pg_restore --jobs N` can restore in parallel and what lets
//! an operator pull a single table out later; `--compress=0` because compressing is our
//! pipeline's job (zstd beats pg_dump's built-in gzip and is then the same for every source).
//!
//! Connection details go to the child through libpq's environment variables (PGHOST, PGUSER,
//! PGPASSWORD, …), never through argv, where any user on the host could read them in `ps`.

use super::{process, Dump, Finish};
use crate::config::PostgresSource;
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use tokio::process::Command;

/// A parsed `postgres://` URL, applied to child processes as libpq environment variables.
#[derive(Clone)]
pub struct ConnInfo {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub dbname: Option<String>,
    pub params: Vec<(String, String)>,
}

impl std::fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnInfo")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("dbname", &self.dbname)
            .finish()
    }
}

/// libpq URL query parameters we pass on, and the environment variable each becomes.
const PARAM_ENV: &[(&str, &str)] = &[
    ("host", "PGHOST"),
    ("port", "PGPORT"),
    ("sslmode", "PGSSLMODE"),
    ("sslrootcert", "PGSSLROOTCERT"),
    ("sslcert", "PGSSLCERT"),
    ("sslkey", "PGSSLKEY"),
    ("application_name", "PGAPPNAME"),
    ("connect_timeout", "PGCONNECT_TIMEOUT"),
    ("passfile", "PGPASSFILE"),
];

impl ConnInfo {
    pub fn parse(s: &str) -> Result<ConnInfo, String> {
        let u = url::Url::parse(s).map_err(|e| {
            format!(
                "'{}' is not a URL ({e}); expected postgres://user@host:5432/dbname",
                redact_url(s)
            )
        })?;
        if u.scheme() != "postgres" && u.scheme() != "postgresql" {
            return Err(format!(
                "scheme '{}' is not postgres:// (expected postgres://user@host:5432/dbname)",
                u.scheme()
            ));
        }
        let dec = |v: &str| percent_decode(v);
        let mut params = Vec::new();
        for (k, v) in u.query_pairs() {
            if !PARAM_ENV.iter().any(|(p, _)| *p == k) {
                return Err(format!(
                    "query parameter '{k}' is not supported (supported: {})",
                    PARAM_ENV.iter().map(|(p, _)| *p).collect::<Vec<_>>().join(", ")
                ));
            }
            params.push((k.into_owned(), v.into_owned()));
        }
        let dbname = u.path().trim_start_matches('/');
        Ok(ConnInfo {
            host: u
                .host_str()
                .filter(|h| !h.is_empty())
                .map(|h| h.trim_matches(['[', ']']).to_string()),
            port: u.port(),
            user: Some(u.username()).filter(|s| !s.is_empty()).map(dec),
            password: u.password().map(dec),
            dbname: Some(dbname).filter(|s| !s.is_empty()).map(dec),
            params,
        })
    }

    /// Sets libpq variables on `cmd`. Variables the URL does not set are inherited, so an
    /// operator's PGPASSFILE or PGPASSWORD still works.
    pub fn apply(&self, cmd: &mut Command) {
        if let Some(h) = &self.host {
            cmd.env("PGHOST", h);
        }
        if let Some(p) = self.port {
            cmd.env("PGPORT", p.to_string());
        }
        if let Some(u) = &self.user {
            cmd.env("PGUSER", u);
        }
        if let Some(p) = &self.password {
            cmd.env("PGPASSWORD", p);
        }
        if let Some(d) = &self.dbname {
            cmd.env("PGDATABASE", d);
        }
        for (k, v) in &self.params {
            if let Some((_, env)) = PARAM_ENV.iter().find(|(p, _)| p == k) {
                cmd.env(env, v);
            }
        }
    }

    /// `user@host:port/db`, for messages.
    pub fn display(&self) -> String {
        format!(
            "{}@{}:{}/{}",
            self.user.as_deref().unwrap_or(""),
            self.host.as_deref().unwrap_or("localhost"),
            self.port.unwrap_or(5432),
            self.dbname.as_deref().unwrap_or("")
        )
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The URL with its password replaced, for logs and `Debug`.
pub fn redact_url(s: &str) -> String {
    match url::Url::parse(s) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("REDACTED"));
            }
            u.to_string()
        }
        Err(_) => "<unparseable url>".into(),
    }
}

/// Builds the connection for a source, reading `password_file` if set.
pub fn conn_for(src: &PostgresSource) -> Result<ConnInfo> {
    let mut conn = ConnInfo::parse(&src.url).map_err(|e| anyhow!("source '{}': url: {e}", src.name))?;
    if let Some(pf) = &src.password_file {
        let pw = std::fs::read_to_string(pf)
            .with_context(|| format!("source '{}': cannot read password_file {}", src.name, pf.display()))?;
        conn.password = Some(pw.trim_end_matches(['\n', '\r']).to_string());
    }
    Ok(conn)
}

/// Runs a one-value query with psql, environment-only connection.
pub async fn query_value(psql: &Path, conn: &ConnInfo, sql: &str, what: &str) -> Result<String> {
    let mut cmd = Command::new(psql);
    conn.apply(&mut cmd);
    cmd.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql]);
    let out = process::run(cmd, what).await?;
    Ok(out.trim().to_string())
}

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

async fn pg_dump_candidates(src: &PostgresSource) -> Result<Vec<(PathBuf, u32, String)>> {
    let mut paths: Vec<PathBuf> = Vec::new();
    if let Some(p) = &src.pg_dump_path {
        paths.push(p.clone());
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
        let mut cmd = Command::new(&p);
        cmd.arg("--version");
        match process::run(cmd, &format!("{} --version", p.display())).await {
            Ok(text) => {
                if let Some((major, full)) = parse_tool_version(&text) {
                    out.push((p, major, full));
                }
            }
            Err(e) if src.pg_dump_path.is_some() => {
                bail!("source '{}': pg_dump_path {}: {e}", src.name, p.display())
            }
            Err(_) => {}
        }
    }
    if out.is_empty() {
        bail!(
            "source '{}': no pg_dump found (install postgresql-client, or set pg_dump_path)",
            src.name
        );
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
    let conn = conn_for(src)?;
    let candidates = pg_dump_candidates(src).await?;
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
    let chosen = choose_pg_dump(&src.name, src.pg_dump_path.is_some(), &pairs, server).map_err(|e| anyhow!(e))?;
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

    let mut cmd = Command::new(&chosen);
    conn.apply(&mut cmd);
    cmd.args(["--format=custom", "--compress=0", "--no-password"]);
    if let Some(s) = &snapshot {
        cmd.arg(format!("--snapshot={}", s.id));
    }
    let (stdout, mut finish) = process::spawn_streaming(cmd, format!("pg_dump for '{}'", src.name))?;
    let mut facts = serde_json::Map::new();
    if let Some(s) = snapshot {
        facts.insert("row_counts".into(), serde_json::to_value(&s.counts)?);
        // The exporting transaction must stay open until pg_dump has imported the snapshot;
        // keep it until the dump is over.
        finish.keep_alive(Box::new(s.client));
    }
    facts.insert("server_version".into(), server_version.into());
    facts.insert("pg_dump_version".into(), pg_dump_version.into());
    facts.insert("database".into(), conn.dbname.clone().unwrap_or_default().into());
    Ok(Dump {
        reader: Box::new(stdout),
        format: "pgdump",
        facts,
        finish: Finish::Process(Box::new(finish)),
    })
}

/// A repeatable-read transaction that exported its snapshot, with exact row counts of every
/// user table as of that snapshot.
struct Snapshot {
    id: String,
    counts: std::collections::BTreeMap<String, i64>,
    client: tokio_postgres::Client,
}

pub fn pg_config(conn: &ConnInfo) -> Result<tokio_postgres::Config> {
    if conn
        .params
        .iter()
        .any(|(k, v)| k == "sslmode" && matches!(v.as_str(), "require" | "verify-ca" | "verify-full"))
    {
        bail!(
            "row counts need a non-TLS connection (sslmode={})",
            conn.params
                .iter()
                .find(|(k, _)| k == "sslmode")
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        );
    }
    let mut c = tokio_postgres::Config::new();
    let host = conn
        .params
        .iter()
        .find(|(k, _)| k == "host")
        .map(|(_, v)| v.clone())
        .or_else(|| conn.host.clone())
        .or_else(|| std::env::var("PGHOST").ok())
        .unwrap_or_else(|| "localhost".into());
    c.host(&host);
    c.port(conn.port.unwrap_or(5432));
    let user = conn
        .user
        .clone()
        .or_else(|| std::env::var("PGUSER").ok())
        .unwrap_or_else(|| "postgres".into());
    c.user(&user);
    c.dbname(conn.dbname.as_deref().unwrap_or(&user));
    if let Some(p) = conn.password.clone().or_else(|| std::env::var("PGPASSWORD").ok()) {
        c.password(p);
    }
    c.application_name("drctl");
    c.connect_timeout(std::time::Duration::from_secs(15));
    Ok(c)
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
