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
mod dump;
pub mod restore;
mod sandbox;
pub mod verify;

pub use config::{PostgresSource, SqlAssertion};
pub use conn::{conn_for, pg_config, query_value, ConnInfo};
pub use dump::{choose_pg_dump, count_rows, parse_tool_version, server_major, start_dump, LIST_TABLES};
