//! Verification fixtures: a seeded database with a workspace backing it up, and the traces a
//! verification sandbox may leave on the machine.

use super::{pg_source_toml, Postgres, Workspace};
use std::process::Command;

/// PostgreSQL with database `app` seeded for verification tests (`users`: 2000 rows,
/// `billing.invoices`: 300) and a workspace backing it up as source `app-db` to the fs storage
/// `local`; `extra` is appended to the config after the source.
pub fn verify_setup(extra: &str) -> (Postgres, Workspace) {
    let pg = Postgres::start();
    pg.createdb("app");
    pg.psql(
        "app",
        "create table users (id serial primary key, name text); insert into users (name) select 'u' || g from generate_series(1, 2000) g;
         create schema billing; create table billing.invoices (id int, total numeric); insert into billing.invoices select g, g * 2 from generate_series(1, 300) g;",
    );
    let ws = Workspace::new();
    ws.write_config(
        &ws.fs_storage_toml("local"),
        &format!("{}{extra}", pg_source_toml("app-db", &pg, "app")),
    );
    (pg, ws)
}

/// Verification leftovers: `drctl-verify-*` temp dirs, and processes started from them or
/// naming them (postmasters of the local sandbox, a container's monitor).
pub fn verify_leftovers() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("drctl-verify-"))
        .map(|e| e.path().display().to_string())
        .collect();
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    out.extend(
        String::from_utf8_lossy(&ps.stdout)
            .lines()
            .filter(|l| l.contains("drctl-verify-") && !l.contains("ps -eo"))
            .map(str::to_string),
    );
    out
}
