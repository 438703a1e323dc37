//! The `[[source]] type = "postgres_cluster"` section: a whole PostgreSQL cluster, backed up
//! physically (base backups + the WAL archive) for point-in-time recovery.

use crate::place::ContainerRef;
use crate::retention::RetentionRef;
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;

#[derive(Clone, Deserialize)]
#[serde(try_from = "RawClusterSource")]
pub struct ClusterSource {
    pub name: String,
    pub server: ClusterServer,
    /// Where pg_basebackup (host), pg_ctl and psql (restore --start, verify) are on this host
    /// [default: /usr/lib/postgresql/<server major>/bin, then PATH].
    pub pg_bin_dir: Option<PathBuf>,
    pub retention: Option<RetentionRef>,
    /// WAL segments `wal-fetch` downloads ahead, in parallel, while recovery replays.
    pub prefetch: usize,
    /// The longest one `wal-push` or `wal-fetch` may take: a storage that hangs must fail the
    /// call (PostgreSQL retries a push; a fetch then stops recovery), not stall the archiver.
    pub wal_timeout: crate::units::Duration,
}

/// Where the cluster runs, and so how drctl reaches it.
#[derive(Clone)]
pub enum ClusterServer {
    /// `postgres://user@host:5432/postgres`: a login with the REPLICATION attribute (or a
    /// superuser), allowed by pg_hba.conf for replication connections. The server's
    /// `archive_command` runs `drctl wal-push`.
    Host {
        url: String,
        password_file: Option<PathBuf>,
    },
    /// A container: pg_basebackup and psql are exec'd in it as `user` (default: its
    /// `POSTGRES_USER`) over its local socket, and its `archive_command` copies each WAL file
    /// into the spool `pg_wal/drctl-spool/`, which drctl drains (`spool.rs`).
    Container { place: ContainerRef, user: Option<String> },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClusterSource {
    name: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    password_file: Option<PathBuf>,
    #[serde(default)]
    pg_bin_dir: Option<PathBuf>,
    #[serde(default)]
    container: Option<String>,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    compose_project: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    retention: Option<RetentionRef>,
    #[serde(default)]
    prefetch: Option<usize>,
    #[serde(default)]
    wal_timeout: Option<crate::units::Duration>,
}

impl TryFrom<RawClusterSource> for ClusterSource {
    type Error = String;

    fn try_from(r: RawClusterSource) -> Result<ClusterSource, String> {
        let server = match ContainerRef::from_keys(r.container, r.service, r.compose_project)? {
            Some(place) => {
                if r.url.is_some() || r.password_file.is_some() {
                    return Err(
                        "url and password_file are for a server on the host; a container source (container = … or service = …) logs in over the container's own socket (user = … to choose the login)"
                            .into(),
                    );
                }
                ClusterServer::Container { place, user: r.user }
            }
            None => {
                if r.user.is_some() {
                    return Err(
                        "user belongs to a container source (container = … or service = …); on the host, put it in url"
                            .into(),
                    );
                }
                let url = r.url.ok_or_else(|| {
                    "missing url (postgres://user@host:5432/postgres, a login allowed to replicate), or container = … / service = … for a server in a container".to_string()
                })?;
                ClusterServer::Host {
                    url,
                    password_file: r.password_file,
                }
            }
        };
        let prefetch = r.prefetch.unwrap_or(8);
        if !(1..=64).contains(&prefetch) {
            return Err(format!("prefetch = {prefetch}: give 1 to 64 segments"));
        }
        let wal_timeout = r.wal_timeout.unwrap_or_else(|| crate::units::Duration::known("10m"));
        if let Some(e) = wal_timeout.error() {
            return Err(format!("wal_timeout: {e}"));
        }
        if wal_timeout.std().is_zero() {
            return Err("wal_timeout must be longer than 0s".into());
        }
        Ok(ClusterSource {
            name: r.name,
            wal_timeout,
            server,
            pg_bin_dir: r.pg_bin_dir,
            retention: r.retention,
            prefetch,
        })
    }
}

impl ClusterSource {
    /// One value from the server: psql on this host, or exec'd in the container.
    pub async fn query(&self, sql: &str) -> anyhow::Result<String> {
        use anyhow::Context;
        match &self.server {
            ClusterServer::Host { url, password_file } => {
                let conn = crate::sources::postgres::conn_for(&self.name, url, password_file.as_deref())?;
                crate::sources::postgres::query_value(
                    &self.client_tool("psql"),
                    &conn,
                    sql,
                    &format!("psql (asking {})", conn.display()),
                )
                .await
            }
            ClusterServer::Container { place, user } => {
                let engine = crate::place::Engine::connect().with_context(|| format!("source '{}'", self.name))?;
                let c = engine
                    .resolve(place)
                    .await
                    .with_context(|| format!("source '{}' ({place})", self.name))?;
                let login = crate::sources::postgres::container_login(&c, user.as_deref(), None);
                let out = c
                    .exec_output(crate::place::ExecSpec {
                        cmd: crate::sources::postgres::container_psql(&["-c", sql]),
                        env: login.env,
                        what: format!("psql for '{}'", self.name),
                    })
                    .await?;
                Ok(out.trim().to_string())
            }
        }
    }

    /// A PostgreSQL client tool before the server's major is known (to ask it): from
    /// `pg_bin_dir`, else PATH.
    pub fn client_tool(&self, name: &str) -> PathBuf {
        match &self.pg_bin_dir {
            Some(d) => d.join(name),
            None => PathBuf::from(name),
        }
    }
}

impl fmt::Debug for ClusterServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterServer::Host { url, password_file } => f
                .debug_struct("Host")
                .field("url", &crate::secret::redact_url(url))
                .field("password_file", password_file)
                .finish(),
            ClusterServer::Container { place, user } => f
                .debug_struct("Container")
                .field("place", &place.to_string())
                .field("user", user)
                .finish(),
        }
    }
}

impl fmt::Debug for ClusterSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterSource")
            .field("name", &self.name)
            .field("server", &self.server)
            .field("pg_bin_dir", &self.pg_bin_dir)
            .field("retention", &self.retention)
            .field("prefetch", &self.prefetch)
            .field("wal_timeout", &self.wal_timeout.text())
            .finish()
    }
}
