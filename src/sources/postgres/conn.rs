//! Connection details for PostgreSQL: a parsed `postgres://` URL, applied to child processes
//! as libpq environment variables and to tokio-postgres as its config.

use crate::process;
use crate::secret::redact_url;
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;
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

/// Builds the connection for a source, reading `password_file` if set.
pub fn conn_for(name: &str, url: &str, password_file: Option<&Path>) -> Result<ConnInfo> {
    let mut conn = ConnInfo::parse(url).map_err(|e| anyhow!("source '{name}': url: {e}"))?;
    if let Some(pf) = password_file {
        // The same rule as for the config and the identity: a secret others can read is refused.
        if let Some(e) = crate::keys::check_private(pf, "password") {
            bail!("source '{name}': {e}");
        }
        let pw = std::fs::read_to_string(pf)
            .with_context(|| format!("source '{name}': cannot read password_file {}", pf.display()))?;
        conn.password = Some(pw.trim_end_matches(['\n', '\r']).to_string());
    }
    Ok(conn)
}

/// Runs a one-value query with psql, environment-only connection.
pub async fn query_value(psql: &Path, conn: &ConnInfo, sql: &str, what: &str) -> Result<String> {
    let mut cmd = process::pg_command(psql);
    conn.apply(&mut cmd);
    cmd.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql]);
    let out = process::run(cmd, what).await?;
    Ok(out.trim().to_string())
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
