//! The `[[source]] type = "postgres"` section. Where the server is reached is a variant:
//! on the host through a URL, or inside a container (`container = …` / `service = …`), where
//! pg_dump runs by exec next to the server, so its major always matches.

use crate::place::ContainerRef;
use crate::retention::RetentionRef;
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;

#[derive(Clone, Deserialize)]
#[serde(try_from = "RawPostgresSource")]
pub struct PostgresSource {
    pub name: String,
    pub access: PostgresAccess,
    /// Retention policy file or inline table; default 7 daily / 4 weekly / 3 monthly.
    pub retention: Option<RetentionRef>,
    /// Record exact row counts in the dump's snapshot, for verification (off for huge databases).
    pub row_counts: bool,
    /// Assertions verification runs on the restored copy: `[[source.verify]] sql = "…"`.
    pub verify: Vec<SqlAssertion>,
}

/// How drctl reaches the server.
#[derive(Clone)]
pub enum PostgresAccess {
    /// pg_dump and psql run on this host and connect to `url`.
    Host {
        /// `postgres://user[:password]@host:port/db?sslmode=…`. The password may come from
        /// `${ENV}` in the URL, from `password_file`, or from `PGPASSFILE`.
        url: String,
        password_file: Option<PathBuf>,
        /// Use this pg_dump instead of searching PATH and /usr/lib/postgresql/*/bin.
        pg_dump_path: Option<PathBuf>,
    },
    /// pg_dump and psql run inside the container, over its local socket.
    Container {
        place: ContainerRef,
        /// Default: the container's `POSTGRES_USER`, else `postgres`.
        user: Option<String>,
        /// Default: the container's `POSTGRES_DB`, else the user's name.
        database: Option<String>,
    },
}

/// The section as written; `try_from` turns it into the variant its keys describe.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPostgresSource {
    name: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    password_file: Option<PathBuf>,
    #[serde(default)]
    pg_dump_path: Option<PathBuf>,
    #[serde(default)]
    container: Option<String>,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    compose_project: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    database: Option<String>,
    #[serde(default)]
    retention: Option<RetentionRef>,
    #[serde(default = "crate::units::yes")]
    row_counts: bool,
    #[serde(default)]
    verify: Vec<SqlAssertion>,
}

impl TryFrom<RawPostgresSource> for PostgresSource {
    type Error = String;

    fn try_from(r: RawPostgresSource) -> Result<PostgresSource, String> {
        // The loader prefixes these with "source[i] ('name'): ".
        let place = ContainerRef::from_keys(r.container, r.service, r.compose_project)?;
        let access = match place {
            None => {
                if r.user.is_some() || r.database.is_some() {
                    return Err(
                        "user and database belong to a container source (container = … or service = …); on the host, put them in url"
                            .into(),
                    );
                }
                let url = r.url.ok_or_else(|| {
                    "missing url (postgres://user@host:5432/db), or container = … / service = … for a server in a container".to_string()
                })?;
                PostgresAccess::Host {
                    url,
                    password_file: r.password_file,
                    pg_dump_path: r.pg_dump_path,
                }
            }
            Some(place) => {
                for (key, given) in [
                    ("url", r.url.is_some()),
                    ("password_file", r.password_file.is_some()),
                    ("pg_dump_path", r.pg_dump_path.is_some()),
                ] {
                    if given {
                        return Err(format!(
                            "{key} does not apply to a server in a container ({place}): pg_dump runs inside it over its local socket; remove {key} (user = … and database = … choose the login)"
                        ));
                    }
                }
                for (key, v) in [("user", &r.user), ("database", &r.database)] {
                    if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
                        return Err(format!("{key} is empty; remove it to use the container's default"));
                    }
                }
                PostgresAccess::Container {
                    place,
                    user: r.user,
                    database: r.database,
                }
            }
        };
        Ok(PostgresSource {
            name: r.name,
            access,
            retention: r.retention,
            row_counts: r.row_counts,
            verify: r.verify,
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlAssertion {
    /// A query returning one boolean, true when the restored data is as expected.
    pub sql: String,
}

impl fmt::Debug for PostgresAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PostgresAccess::Host {
                url,
                password_file,
                pg_dump_path,
            } => f
                .debug_struct("Host")
                .field("url", &crate::secret::redact_url(url))
                .field("password_file", password_file)
                .field("pg_dump_path", pg_dump_path)
                .finish(),
            PostgresAccess::Container { place, user, database } => f
                .debug_struct("Container")
                .field("place", place)
                .field("user", user)
                .field("database", database)
                .finish(),
        }
    }
}

impl fmt::Debug for PostgresSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSource")
            .field("name", &self.name)
            .field("access", &self.access)
            .field("retention", &self.retention)
            .field("row_counts", &self.row_counts)
            .field("verify", &self.verify)
            .finish()
    }
}
