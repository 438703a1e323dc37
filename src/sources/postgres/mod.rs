//! PostgreSQL, logical: `pg_dump --format=custom --compress=0` as a child process, restored with
//! `pg_restore --jobs N`, verified in a throwaway server.
//!
//! Custom format because it is what `pg_restore --jobs N` can restore in parallel and what lets
//! an operator pull a single table out later; `--compress=0` because compressing is our
//! pipeline's job (zstd beats pg_dump's built-in gzip and is then the same for every source).
//!
//! Connection details go to the child through libpq's environment variables (PGHOST, PGUSER,
//! PGPASSWORD, …), never through argv, where any user on the host could read them in `ps`.

mod config;
mod conn;
mod container;
pub use container::{login as container_login, psql_cmd as container_psql};
mod dump;
pub mod globals;
pub mod restore;
mod sandbox;
pub mod verify;

pub use config::{PostgresAccess, PostgresSource, SqlAssertion};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Facts of a PostgreSQL backup.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PostgresFacts {
    /// Exact rows per table (`schema.table`), counted in the snapshot pg_dump dumped; absent
    /// with `row_counts = false` or when counting failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_counts: Option<BTreeMap<String, i64>>,
    /// `SHOW server_version`, e.g. "15.19 (Debian 15.19-0+deb12u1)".
    #[serde(default)]
    pub server_version: String,
    #[serde(default)]
    pub pg_dump_version: String,
    #[serde(default)]
    pub database: String,
    /// `pg_dumpall --globals-only` of the server in the same run (roles, password hashes):
    /// kept encrypted (`Manifest::private`), used by restore to create missing roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub globals: Option<String>,
    /// The globals were taken without password hashes (`--no-role-passwords`: the login
    /// could not read them), or not at all (the reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub globals_note: Option<String>,
    #[serde(flatten)]
    pub unknown: super::UnknownFacts,
}

impl PostgresFacts {
    /// The dumped server's major version (15 from "15.19 (Debian …)").
    pub fn server_major(&self) -> Option<u32> {
        self.server_version.split(['.', ' ']).next()?.parse().ok()
    }
}
pub use conn::{conn_for, pg_config, query_value, ConnInfo};
pub use dump::{choose_pg_dump, count_rows, parse_tool_version, server_major, start_dump, LIST_TABLES};
