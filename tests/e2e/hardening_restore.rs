//! Restore hardening (#15): `--clean` into a live PostgreSQL database never leaves it
//! half-replaced. Each test failed on the code before its fix.

use crate::support::*;

/// Keys, constraints and rows of the `app` schema, as text: what "the database is intact" means.
fn shape(pg: &Postgres, db: &str) -> String {
    let constraints = pg.psql(
        db,
        "select conrelid::regclass::text || ' ' || contype::text from pg_constraint where connamespace = 'public'::regnamespace order by 1",
    );
    let views = pg.psql(
        db,
        "select viewname from pg_views where schemaname = 'public' order by 1",
    );
    format!("{constraints}\nviews: {views}\n{}", pg.contents(db))
}

fn setup() -> (Postgres, Workspace) {
    let pg = Postgres::start();
    pg.createdb("app");
    pg.psql(
        "app",
        "create table parent (id int primary key, name text); \
         create table child (id int primary key, parent_id int references parent(id)); \
         insert into parent select g, 'p' || g from generate_series(1, 50) g; \
         insert into child select g, g from generate_series(1, 50) g;",
    );
    let ws = Workspace::new();
    ws.write_config(&ws.fs_storage_toml("local"), &pg_source_toml("app-db", &pg, "app"));
    ws.ok(&["backup"]);
    // After the backup the live database moves on: a row, and an operator's view that
    // depends on a dumped table (pg_restore --clean cannot drop `parent` under it).
    pg.psql(
        "app",
        "insert into parent values (51, 'after the backup'); create view report as select count(*) from parent;",
    );
    (pg, ws)
}

fn restore_clean(pg: &Postgres, ws: &Workspace, jobs: &str) -> (i32, String, String) {
    let url = format!("postgres://postgres:{PG_PASSWORD}@127.0.0.1:{}/app", pg.port);
    let ident = ws.identity.to_str().unwrap().to_string();
    ws.run_env(
        &[
            "restore",
            "--at",
            "now",
            "--source",
            "app-db",
            "--identity",
            &ident,
            "--clean",
            "--jobs",
            jobs,
        ],
        &[("DRCTL_TARGET_URL", &url)],
    )
}

#[test]
fn postgres_clean_restore_that_fails_leaves_the_live_database_whole() {
    let (pg, ws) = setup();
    let before = shape(&pg, "app");
    let (code, out, err) = restore_clean(&pg, &ws, "1");
    assert_eq!(code, 1, "the dependent view makes the load fail:\n{out}\n{err}");
    assert_eq!(
        shape(&pg, "app"),
        before,
        "a failed --clean restore changed the live database"
    );
    assert!(err.contains("rolled back"), "the output says what happened: {err}");
}

#[test]
fn postgres_clean_restore_with_jobs_swaps_in_a_new_database_and_keeps_the_old() {
    let (pg, ws) = setup();
    let before = shape(&pg, "app");
    let (code, out, err) = restore_clean(&pg, &ws, "2");
    assert_eq!(code, 0, "{out}\n{err}");
    // The live name now holds the backup: 50 parents, no view of the operator's.
    assert_eq!(pg.psql("app", "select count(*) from parent").trim(), "50");
    assert_eq!(
        pg.psql("app", "select count(*) from pg_views where viewname = 'report'")
            .trim(),
        "0"
    );
    assert_eq!(
        pg.psql(
            "app",
            "select count(*) from pg_constraint where contype in ('p', 'f') and connamespace = 'public'::regnamespace"
        )
        .trim(),
        "3"
    );
    // The previous database is kept, whole, under the name the output gives.
    let previous = out
        .split('\'')
        .find(|w| w.starts_with("app_before_"))
        .unwrap_or_else(|| panic!("the output names the previous database: {out}"))
        .to_string();
    assert_eq!(shape(&pg, &previous), before);
    assert!(out.contains("DROP DATABASE"), "the output says how to finish: {out}");
    // No half-made database is left beside them.
    let dbs = pg.psql(
        "postgres",
        "select datname from pg_database where datname like 'app%' order by 1",
    );
    assert_eq!(dbs.lines().count(), 2, "{dbs}");
}
