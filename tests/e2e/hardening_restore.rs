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

/// `drctl restore --at now --source app-db` into database `db` of `pg`, with `extra` arguments.
fn restore_pg(pg: &Postgres, ws: &Workspace, db: &str, extra: &[&str]) -> (i32, String, String) {
    let url = format!("postgres://postgres:{PG_PASSWORD}@127.0.0.1:{}/{db}", pg.port);
    let ident = ws.identity.to_str().unwrap().to_string();
    let mut args = vec!["restore", "--at", "now", "--source", "app-db", "--identity", &ident];
    args.extend_from_slice(extra);
    ws.run_env(&args, &[("DRCTL_TARGET_URL", &url)])
}

fn restore_clean(pg: &Postgres, ws: &Workspace, jobs: &str) -> (i32, String, String) {
    restore_pg(pg, ws, "app", &["--clean", "--jobs", jobs])
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

/// A `pg_restore` stand-in that records its pid and runs until it is stopped, as a long load
/// does; first on PATH, it is what drctl runs.
fn stuck_pg_restore(dir: &std::path::Path, mark: &std::path::Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("pg_restore");
    std::fs::write(&p, format!("#!/bin/sh\necho $$ > {}\nexec sleep 120\n", mark.display())).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!("{}:{}", dir.display(), std::env::var("PATH").unwrap())
}

/// Kills a leftover process when the test ends, whatever happened.
struct KillOnDrop(Option<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
    }
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn sigterm_during_a_postgres_restore_stops_pg_restore_and_removes_the_scratch_dump() {
    let (pg, ws) = setup();
    pg.createdb("restored");
    let bin = tempfile::tempdir().unwrap();
    let mark = bin.path().join("pid");
    let path = stuck_pg_restore(bin.path(), &mark);
    let tmp = ws.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let url = format!("postgres://postgres:{PG_PASSWORD}@127.0.0.1:{}/restored", pg.port);
    let mut child = ws
        .drctl()
        .args(["restore", "--at", "now", "--source", "app-db", "--identity"])
        .arg(&ws.identity)
        .env("DRCTL_TARGET_URL", &url)
        .env("PATH", &path)
        .env("TMPDIR", &tmp)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !mark.exists() {
        assert!(t0.elapsed().as_secs() < 60, "pg_restore never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let pid: i32 = std::fs::read_to_string(&mark).unwrap().trim().parse().unwrap();
    let _guard = KillOnDrop(Some(pid));
    // While pg_restore runs, the decrypted dump is in the scratch directory (not /tmp).
    let scratch = ws.path().join("state/scratch");
    assert_eq!(
        entries(&scratch).len(),
        1,
        "one scratch dir while restoring: {:?}",
        entries(&scratch)
    );
    assert!(entries(&tmp).is_empty(), "nothing in TMPDIR: {:?}", entries(&tmp));

    let st = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let t1 = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(t1.elapsed().as_secs() < 30, "drctl did not stop after SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        status.code(),
        Some(1),
        "drctl exits 1 after cleaning up, not by the signal: {status:?}\n{err}"
    );
    assert!(err.contains("interrupted"), "{err}");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "pg_restore (pid {pid}) outlived drctl"
    );
    assert!(entries(&scratch).is_empty(), "scratch left: {:?}", entries(&scratch));
    assert!(entries(&tmp).is_empty(), "{:?}", entries(&tmp));
}

/// A 4 MiB tmpfs, unmounted when dropped.
struct SmallFs(tempfile::TempDir);

impl SmallFs {
    fn mount() -> SmallFs {
        let d = tempfile::tempdir().unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
            .arg(d.path())
            .status()
            .unwrap();
        assert!(st.success(), "this test mounts a small tmpfs and needs root");
        SmallFs(d)
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn a_restore_without_room_for_the_dump_fails_before_writing_a_byte() {
    let pg = big_pg();
    let ws = Workspace::new();
    ws.write_config(&ws.fs_storage_toml("local"), &pg_source_toml("app-db", &pg, "app"));
    ws.ok(&["backup"]);
    pg.createdb("restored");
    let small = SmallFs::mount();
    let ident = ws.identity.to_str().unwrap().to_string();
    let scratch = small.0.path().to_str().unwrap().to_string();
    let (code, out, err) = restore_pg(&pg, &ws, "restored", &["--scratch-dir", &scratch]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains(&scratch) && err.contains("free") && err.contains("--scratch-dir"),
        "{err}"
    );
    assert!(entries(small.0.path()).is_empty(), "{:?}", entries(small.0.path()));
    assert_eq!(
        pg.psql("restored", "select count(*) from pg_class where relname = 'blobs'")
            .trim(),
        "0"
    );

    // --output-dir: the same check, on the output directory.
    let (code, out, err) = ws.run(&["restore", "--at", "now", "--identity", &ident, "--output-dir", &scratch]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("free"), "{err}");
    assert!(entries(small.0.path()).is_empty(), "{:?}", entries(small.0.path()));
}

#[test]
fn verify_restores_as_a_non_superuser_so_planted_code_cannot_run_as_superuser() {
    let pg = Postgres::start();
    pg.createdb("app");
    let marker = std::env::temp_dir().join(format!("drctl-planted-{:08x}", rand_u32()));
    // An application role (no superuser) plants an expression index whose function runs a
    // program whenever a superuser evaluates it; in production it never does.
    pg.psql(
        "app",
        &format!(
            "create role app login; \
             create table t (id int); \
             create function g() returns void language plpgsql volatile as $$ begin \
               if (select rolsuper from pg_roles where rolname = current_user) then \
                 execute 'copy (select 1) to program ''touch {}'''; \
               end if; end $$; \
             create function f(int) returns int language plpgsql immutable as $$ begin \
               perform public.g(); return $1; end $$; \
             create index on t ((f(id))); \
             alter table t owner to app; alter function f(int) owner to app; alter function g() owner to app; \
             set role app; insert into t values (1), (2);",
            marker.display()
        ),
    );
    assert!(!marker.exists(), "the setup itself ran the program");
    let ws = Workspace::new();
    ws.write_config(&ws.fs_storage_toml("local"), &pg_source_toml("app-db", &pg, "app"));
    ws.ok(&["backup"]);
    let (code, out, err) = ws.run(&[
        "verify",
        "--source",
        "app-db",
        "--identity",
        ws.identity.to_str().unwrap(),
    ]);
    let planted = marker.exists();
    let _ = std::fs::remove_file(&marker);
    assert!(!planted, "verify ran the planted program as a superuser:\n{out}\n{err}");
    assert_eq!(code, 0, "the dump loads as a non-superuser and verifies:\n{out}\n{err}");
}

fn rand_u32() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        ^ std::process::id()
}

#[test]
fn a_nats_token_or_redis_password_on_the_command_line_is_refused_before_anything_happens() {
    let ws = Workspace::new();
    ws.write_config(&ws.fs_storage_toml("local"), "");
    let ident = ws.identity.to_str().unwrap().to_string();
    for url in [
        "nats://s3cr3t-n4ts-t0ken@127.0.0.1:4222",
        "redis://:s3cr3t-r3dis@127.0.0.1:6379/0",
    ] {
        let (code, out, err) = ws.run(&["restore", "--at", "now", "--identity", &ident, "--target-url", url]);
        assert_eq!(code, 1, "{url}: {out}\n{err}");
        assert!(
            err.contains("on the command line") && err.contains("DRCTL_TARGET_URL"),
            "{err}"
        );
        assert!(!err.contains("s3cr3t"), "the refusal repeats the secret: {err}");
    }
}
