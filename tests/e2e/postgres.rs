//! End to end against a real throwaway PostgreSQL and a real local S3 server, driving the
//! drctl binary as an operator would.

use crate::support::*;
use std::path::PathBuf;
use std::process::Command;

const SEED: &str = "
create table users (id serial primary key, name text not null, email text unique, created timestamptz not null default '2026-01-01T00:00:00Z');
create table orders (id bigserial primary key, user_id int references users(id), total numeric(12,2), payload jsonb, blob bytea);
insert into users (name, email) select 'user ' || g, 'u' || g || '@example.com' from generate_series(1, 2000) g;
insert into orders (user_id, total, payload, blob)
  select 1 + (g % 2000), g * 1.25, jsonb_build_object('n', g, 'tags', jsonb_build_array('a', g::text)), decode(md5(g::text), 'hex')
  from generate_series(1, 5000) g;
create view big_orders as select * from orders where total > 1000;
create index on orders (user_id);
";

const CHANGE: &str = "
update users set name = 'changed ' || id where id % 3 = 0;
delete from orders where id <= 100;
insert into users (name, email) values ('late', 'late@example.com');
create table added_later (x int);
";

enum Kind {
    Fs,
    S3,
}

struct Setup {
    pg: Postgres,
    ws: Workspace,
    _s3: Option<S3Server>,
    storage: &'static str,
}

fn setup(kind: Kind) -> Setup {
    let pg = Postgres::start();
    pg.createdb("app");
    pg.psql("app", SEED);
    let ws = Workspace::new();
    let (s3, storage_toml, storage) = match kind {
        Kind::Fs => (None, ws.fs_storage_toml("local"), "local"),
        Kind::S3 => {
            let s3 = S3Server::start();
            let t = s3.storage_toml("s3");
            (Some(s3), t, "s3")
        }
    };
    ws.write_config(&storage_toml, &pg_source_toml("app-db", &pg, "app"));
    ws.ok(&["validate"]);
    Setup {
        pg,
        ws,
        _s3: s3,
        storage,
    }
}

fn target_env(pg: &Postgres, db: &str) -> String {
    format!("postgres://postgres:{PG_PASSWORD}@127.0.0.1:{}/{db}", pg.port)
}

fn restore(s: &Setup, at: &str, db: &str, extra: &[&str]) -> (i32, String, String) {
    let url = target_env(&s.pg, db);
    let ident = s.ws.identity.to_str().unwrap().to_string();
    let mut args = vec!["restore", "--at", at, "--source", "app-db", "--identity", &ident];
    args.extend_from_slice(extra);
    s.ws.run_env(&args, &[("DRCTL_TARGET_URL", &url)])
}

fn ts(v: &serde_json::Value) -> chrono::DateTime<chrono::Utc> {
    v["started_at"].as_str().unwrap().parse().unwrap()
}

fn round_trip(kind: Kind) {
    let s = setup(kind);
    s.ws.ok(&["backup"]);
    let state1 = s.pg.contents("app");
    s.pg.psql("app", CHANGE);
    let state2 = s.pg.contents("app");
    assert_ne!(state1, state2);
    s.ws.ok(&["backup", "--source", "app-db", "--no-prune"]);

    let list = s.ws.list_json();
    assert_eq!(list.len(), 2, "{list:#?}");
    let (newer, older) = (&list[0], &list[1]);
    assert!(ts(newer) > ts(older), "list is newest first");
    assert_eq!(older["held_by"], serde_json::json!([s.storage]));
    assert_eq!(older["facts"]["database"], "app");
    assert!(older["facts"]["server_version"]
        .as_str()
        .unwrap()
        .starts_with(char::is_numeric));
    assert_eq!(older["compression"]["algorithm"], "zstd");
    assert_eq!(older["plain"]["sha256"].as_str().unwrap().len(), 64);
    let between = ts(older) + (ts(newer) - ts(older)) / 2;
    let at = between.to_rfc3339();

    // The plan names the older backup and a data-loss window.
    let (code, out, err) = restore(&s, &at, "nonexistent", &["--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(older["id"].as_str().unwrap()), "{out}");
    assert!(out.contains("DATA LOSS WINDOW"), "{out}");

    s.pg.createdb("restored");
    let (code, out, err) = restore(&s, &at, "restored", &[]);
    assert_eq!(code, 0, "restore failed:\n{out}\n{err}");
    assert_eq!(
        s.pg.contents("restored"),
        state1,
        "restored database differs from the first state"
    );
    // The view and index came back too.
    assert_eq!(
        s.pg.psql("restored", "select count(*) from big_orders").trim(),
        s.pg.psql("restored", "select count(*) from orders where total > 1000")
            .trim()
    );

    // A non-empty target is refused without --clean, and nothing changes.
    let (code, _, err) = restore(&s, "now", "restored", &[]);
    assert_eq!(code, 1);
    assert!(err.contains("not empty") && err.contains("--clean"), "{err}");
    assert_eq!(s.pg.contents("restored"), state1);

    // With --clean, restoring "now" gives the second state.
    let (code, out, err) = restore(&s, "now", "restored", &["--clean"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(s.pg.contents("restored"), state2);

    // No backup before the first one.
    let (code, _, err) = restore(&s, "2000-01-01", "restored", &["--dry-run"]);
    assert_eq!(code, 1);
    assert!(err.contains("no backup of 'app-db' at or before"), "{err}");
}

#[test]
fn round_trip_restore_at_between_two_backups_on_fs() {
    round_trip(Kind::Fs);
}

#[test]
fn round_trip_restore_at_between_two_backups_on_s3() {
    round_trip(Kind::S3);
}

/// Rewrites the single data object of the only backup through the storage API.
fn tamper(s: &Setup, f: impl FnOnce(&mut Vec<u8>)) {
    let cfg = drctl::config::load(&s.ws.path().join("drctl.toml")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let st = drctl::storage::select(&cfg.storages, None).unwrap().remove(0);
        let entries = drctl::catalog::list(std::slice::from_ref(&st), None)
            .await
            .into_result()
            .unwrap();
        let key = entries[0].manifest.objects[0].key.clone();
        let mut data = st.get(&key).await.unwrap();
        f(&mut data);
        st.put(&key, data).await.unwrap();
    });
}

fn damaged_object_is_refused(kind: Kind) {
    std::env::set_var("DRCTL_TEST_S3_SECRET", "testing");
    std::env::set_var("DRCTL_PG_PASSWORD", PG_PASSWORD);
    let s = setup(kind);
    s.ws.ok(&["backup"]);
    s.pg.createdb("victim");

    // A flipped byte in the middle of the object.
    tamper(&s, |d| {
        let mid = d.len() / 2;
        d[mid] ^= 0x01;
    });
    let (code, _, err) = restore(&s, "now", "victim", &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("damaged or was altered") || err.contains("SHA-256"),
        "{err}"
    );
    assert!(err.contains("data/app-db/"), "error names the object: {err}");
    assert_eq!(s.pg.contents("victim"), "", "target was touched");

    // Truncated: restore the flip, cut the tail.
    tamper(&s, |d| {
        let mid = d.len() / 2;
        d[mid] ^= 0x01;
        d.truncate(d.len() - 100);
    });
    let (code, _, err) = restore(&s, "now", "victim", &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("truncated or replaced"), "{err}");
    assert_eq!(s.pg.contents("victim"), "");

    // Also --output-dir leaves no file behind for a damaged backup.
    let out = s.ws.path().join("out");
    let (code, _, _) = s.ws.restore_to(&out, &[]);
    assert_eq!(code, 1);
    assert!(files_under(&out).is_empty(), "{:?}", files_under(&out));
}

#[test]
fn damaged_object_is_refused_and_target_untouched_on_fs() {
    damaged_object_is_refused(Kind::Fs);
}

#[test]
fn damaged_object_is_refused_and_target_untouched_on_s3() {
    damaged_object_is_refused(Kind::S3);
}

#[test]
fn wrong_identity_is_a_clear_error() {
    let s = setup(Kind::Fs);
    s.ws.ok(&["backup"]);
    let other = s.ws.path().join("other-identity.txt");
    s.ws.ok(&["keygen", "--output", other.to_str().unwrap()]);
    s.pg.createdb("target");
    let url = target_env(&s.pg, "target");
    let (code, _, err) = s.ws.run_env(
        &["restore", "--at", "now", "--identity", other.to_str().unwrap()],
        &[("DRCTL_TARGET_URL", &url)],
    );
    assert_eq!(code, 1);
    assert!(err.contains("wrong identity") && err.contains("--identity"), "{err}");
    assert_eq!(s.pg.contents("target"), "");

    // And a missing identity names the flag and the config key.
    let (code, _, err) = s.ws.run_env(&["restore", "--at", "now"], &[("DRCTL_TARGET_URL", &url)]);
    assert_eq!(code, 1);
    assert!(err.contains("--identity") && err.contains("identity_file"), "{err}");
}

fn manifests_and_data(ws: &Workspace, storage: &str) -> Vec<String> {
    files_under(&ws.fs_root(storage))
}

#[test]
fn pg_dump_failure_commits_nothing_and_carries_stderr() {
    let pg = Postgres::start();
    pg.createdb("app");
    pg.psql(
        "app",
        "create role app login password 'app-pw'; create table public_ok (x int); create table secret (x int); \
         grant select on public_ok to app; revoke all on secret from public;",
    );
    let ws = Workspace::new();
    let src = format!(
        // row_counts off: counting would hit the same permission error before pg_dump runs.
        "[[source]]\nname = \"app-db\"\ntype = \"postgres\"\nurl = \"postgres://app@127.0.0.1:{}/app\"\npassword_file = \"./app.pw\"\nrow_counts = false\n",
        pg.port
    );
    std::fs::write(ws.path().join("app.pw"), "app-pw\n").unwrap();
    private(&ws.path().join("app.pw")); // drctl refuses a password file others can read
    ws.write_config(&ws.fs_storage_toml("local"), &src);
    let (code, _, err) = ws.run(&["backup"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("pg_dump for 'app-db' exited with status"), "{err}");
    assert!(err.contains("permission denied"), "pg_dump's stderr is carried: {err}");
    assert!(err.contains("nothing was committed"), "{err}");
    assert_eq!(
        manifests_and_data(&ws, "local"),
        Vec::<String>::new(),
        "a failed dump left objects"
    );
    assert_eq!(ws.list_json().len(), 0);

    // A stopped server: clear error naming the source and address.
    drop(pg);
    let (code, _, err) = ws.run(&["backup"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("source 'app-db': cannot connect to app@127.0.0.1"),
        "{err}"
    );
}

#[test]
fn interrupted_backup_leaves_nothing_and_next_run_succeeds() {
    let pg = Postgres::start();
    pg.createdb("app");
    pg.psql("app", SEED);
    let ws = Workspace::new();
    // A pg_dump that produces a real dump and then hangs, as one stuck on a slow server would.
    let slow = slow_pg_dump(ws.path(), "exec sleep 30");
    let src = pg_source_toml("app-db", &pg, "app");
    ws.write_config(
        &ws.fs_storage_toml("local"),
        &format!("{src}pg_dump_path = \"{}\"\n", slow.display()),
    );
    let child = ws
        .drctl()
        .arg("backup")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let t0 = std::time::Instant::now();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(t0.elapsed().as_secs() < 10, "SIGTERM took {:?}", t0.elapsed());
    assert!(err.contains("interrupted"), "{err}");
    assert_eq!(manifests_and_data(&ws, "local"), Vec::<String>::new());

    ws.write_config(&ws.fs_storage_toml("local"), &src);
    ws.ok(&["backup"]);
    assert_eq!(ws.list_json().len(), 1);
}

fn only_data_file(ws: &Workspace) -> PathBuf {
    let files: Vec<String> = manifests_and_data(ws, "local")
        .into_iter()
        .filter(|f| f.starts_with("data/"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    ws.fs_root("local").join(&files[0])
}

/// A disaster may happen on a machine without drctl: stock age, zstd/gunzip and pg_restore
/// must be enough.
#[test]
fn artifacts_restore_by_hand_with_stock_tools() {
    let pg = Postgres::start();
    pg.createdb("app");
    pg.psql("app", SEED);
    let state = pg.contents("app");
    for (alg, decompress) in [("zstd", "zstd -d -q"), ("gzip", "gunzip")] {
        let ws = Workspace::new();
        ws.write_config(&ws.fs_storage_toml("local"), &pg_source_toml("app-db", &pg, "app"));
        let cfg = std::fs::read_to_string(ws.path().join("drctl.toml")).unwrap();
        std::fs::write(
            ws.path().join("drctl.toml"),
            cfg.replace("algorithm = \"zstd\"\nlevel = 3", &format!("algorithm = \"{alg}\"")),
        )
        .unwrap();
        ws.ok(&["backup"]);
        let obj = only_data_file(&ws);
        let suffix = if alg == "zstd" {
            ".pgdump.zst.age"
        } else {
            ".pgdump.gz.age"
        };
        assert!(obj.to_str().unwrap().ends_with(suffix), "{}", obj.display());
        let db = format!("byhand_{alg}");
        pg.createdb(&db);
        let dump = ws.path().join("by-hand.pgdump");
        sh(
            &format!(
                "age -d -i '{}' '{}' | {decompress} > '{}'\n'{}' -h 127.0.0.1 -p {} -U postgres -d {db} --exit-on-error '{}'",
                ws.identity.display(),
                obj.display(),
                dump.display(),
                pg.bin().join("pg_restore").display(),
                pg.port,
                dump.display()
            ),
            &[("PGPASSWORD", PG_PASSWORD)],
        );
        assert_eq!(pg.contents(&db), state, "{alg}: by-hand restore differs");
        if alg == "zstd" {
            // Frame checksums are on: zstd itself can test the stream.
            sh(
                &format!("age -d -i '{}' '{}' | zstd -t -q", ws.identity.display(), obj.display()),
                &[],
            );
        }
    }
}

#[test]
fn output_dir_writes_the_plain_dump_with_matching_hash() {
    let s = setup(Kind::Fs);
    s.ws.ok(&["backup"]);
    let out = s.ws.path().join("restore-out");
    s.ws.restore_ok(&out);
    let files = files_under(&out);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0].starts_with("app-db-") && files[0].ends_with(".pgdump"),
        "{files:?}"
    );
    let list = s.ws.list_json();
    let bytes = std::fs::read(out.join(&files[0])).unwrap();
    use sha2::Digest;
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&bytes)),
        list[0]["plain"]["sha256"].as_str().unwrap()
    );
    assert!(bytes.starts_with(b"PGDMP"), "custom-format dump");
    let mode = std::fs::metadata(out.join(&files[0])).unwrap().permissions();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        mode.mode() & 0o077,
        0,
        "decrypted dump must not be group/world readable"
    );
}

/// Issue #14 item 2 on the host: the roles come with the backup. A restore onto a new server
/// creates the owner role the dump needs, with its password hash, so the application logs in
/// as before; existing roles are left as they are, and `--no-owner` creates none.
#[test]
fn a_restore_onto_a_new_server_creates_the_missing_roles_and_the_app_logs_in_with_its_old_password() {
    let s = setup(Kind::Fs);
    s.pg.psql(
        "app",
        "create role webapp login password 'webapp-Old-pw'; create role shared_role nologin connection limit 3; \
         create table app_items (id int primary key); alter table app_items owner to webapp; \
         insert into app_items select generate_series(1, 7);",
    );
    s.ws.ok(&["backup"]);

    let new = Postgres::start();
    new.createdb("app");
    // A role that exists on the target with other attributes must stay as it is.
    new.psql("postgres", "create role shared_role nologin connection limit 9");
    let (code, out, err) = restore_into(&s, &new, &[]);
    assert_eq!(code, 0, "restore failed:\n{out}\n{err}");
    assert!(
        out.contains("roles the target lacked") && out.contains("webapp"),
        "{out}"
    );
    assert!(
        !out.contains("shared_role"),
        "an existing role is not re-created: {out}"
    );
    assert_eq!(
        new.psql("app", "select tableowner from pg_tables where tablename = 'app_items'")
            .trim(),
        "webapp"
    );
    assert_eq!(
        new.psql(
            "postgres",
            "select rolconnlimit from pg_roles where rolname = 'shared_role'"
        )
        .trim(),
        "9",
        "the existing role was not altered"
    );
    let login = |pw: &str| {
        Command::new(new.bin().join("psql"))
            .env("PGPASSWORD", pw)
            .args(["-X", "-A", "-t", "-h", "127.0.0.1", "-U", "webapp", "-d", "app", "-c"])
            .arg("select count(*) from app_items")
            .arg("-p")
            .arg(new.port.to_string())
            .output()
            .unwrap()
    };
    let ok = login("webapp-Old-pw");
    assert!(
        ok.status.success() && String::from_utf8_lossy(&ok.stdout).trim() == "7",
        "{ok:?}"
    );
    assert!(!login("not-it").status.success());

    // --no-owner: no roles made, the objects belong to the restoring user.
    let other = Postgres::start();
    other.createdb("app");
    let (code, out, err) = restore_into(&s, &other, &["--no-owner"]);
    assert_eq!(code, 0, "restore --no-owner failed:\n{out}\n{err}");
    assert_eq!(
        other
            .psql("postgres", "select count(*) from pg_roles where rolname = 'webapp'")
            .trim(),
        "0"
    );
}

fn restore_into(s: &Setup, target: &Postgres, extra: &[&str]) -> (i32, String, String) {
    let url = target_env(target, "app");
    let ident = s.ws.identity.to_str().unwrap().to_string();
    let mut args = vec!["restore", "--at", "now", "--source", "app-db", "--identity", &ident];
    args.extend_from_slice(extra);
    s.ws.run_env(&args, &[("DRCTL_TARGET_URL", &url)])
}
