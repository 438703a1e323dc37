//! The `[[source]] type = "postgres"` section.

use crate::retention::RetentionRef;
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSource {
    pub name: String,
    /// `postgres://user[:password]@host:port/db?sslmode=…`. The password may come from
    /// `${ENV}` in the URL, from `password_file`, or from `PGPASSFILE`.
    pub url: String,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Use this pg_dump instead of searching PATH and /usr/lib/postgresql/*/bin.
    #[serde(default)]
    pub pg_dump_path: Option<PathBuf>,
    /// Retention policy file or inline table; default 7 daily / 4 weekly / 3 monthly.
    #[serde(default)]
    pub retention: Option<RetentionRef>,
    /// Record exact row counts in the dump's snapshot, for verification (off for huge databases).
    #[serde(default = "crate::units::yes")]
    pub row_counts: bool,
    /// Assertions verification runs on the restored copy: `[[source.verify]] sql = "…"`.
    #[serde(default)]
    pub verify: Vec<SqlAssertion>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlAssertion {
    /// A query returning one boolean, true when the restored data is as expected.
    pub sql: String,
}

impl fmt::Debug for PostgresSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSource")
            .field("name", &self.name)
            .field("url", &crate::secret::redact_url(&self.url))
            .field("password_file", &self.password_file)
            .field("pg_dump_path", &self.pg_dump_path)
            .field("retention", &self.retention)
            .field("row_counts", &self.row_counts)
            .field("verify", &self.verify)
            .finish()
    }
}
