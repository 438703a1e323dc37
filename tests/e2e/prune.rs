//! Retention against real backups in real storages: plan, apply, crash leftovers, locks.

use crate::support::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Repo {
    pg: Postgres,
    ws: Workspace,
    _s3: Option<S3Server>,
}

fn repo(s3: bool, retention: &str) -> Repo {
    let pg = Postgres::start();
    pg.createdb("app");
    pg.psql(
        "app",
        "create table t (x int); insert into t select generate_series(1, 1000);",
    );
    let ws = Workspace::new();
    let (srv, storage) = if s3 {
        let srv = S3Server::start();
        let t = srv.storage_toml("store");
        (Some(srv), t)
    } else {
        (None, ws.fs_storage_toml("store"))
    };
    ws.write_config(
        &storage,
        &format!("{}retention = {retention}\n", pg_source_toml("app-db", &pg, "app")),
    );
    Repo { pg, ws, _s3: srv }
}

fn ids(ws: &Workspace) -> Vec<String> {
    ws.list_json()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

fn prune_plan_and_apply(s3: bool) {
    let r = repo(s3, "{ keep_last = 2 }");
    for i in 0..4 {
        r.pg.psql("app", &format!("insert into t values ({})", 5000 + i));
        r.ws.ok(&["backup", "--no-prune"]);
    }
    let before = ids(&r.ws);
    assert_eq!(before.len(), 4);

    // Dry run: prints the plan, changes nothing.
    let out = r.ws.ok(&["prune", "--dry-run"]);
    assert!(out.contains("2 kept, 2 to drop"), "{out}");
    assert_eq!(ids(&r.ws), before);
    let plan: serde_json::Value = serde_json::from_str(&r.ws.ok(&["prune", "--dry-run", "--json"])).unwrap();
    let items = plan["items"].as_array().unwrap();
    let dropped: Vec<&str> = items
        .iter()
        .filter(|i| !i["keep"].as_bool().unwrap())
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        dropped,
        vec![before[2].as_str(), before[3].as_str()],
        "the two oldest are planned for deletion"
    );
    assert!(items[0]["reasons"].as_array().unwrap().iter().any(|r| r == "newest"));
    assert_eq!(ids(&r.ws), before);

    // Apply: exactly the planned ones go, with their data.
    let out = r.ws.ok(&["prune"]);
    assert!(out.contains("deleted 2 backup(s)"), "{out}");
    assert_eq!(ids(&r.ws), before[..2].to_vec());
    if !s3 {
        let files = files_under(&r.ws.fs_root("store"));
        let data: Vec<&String> = files.iter().filter(|f| f.starts_with("data/")).collect();
        assert_eq!(data.len(), 2, "{files:?}");
        for id in &before[..2] {
            assert!(
                files.iter().any(|f| f.contains(id.as_str()) && f.starts_with("data/")),
                "{files:?}"
            );
        }
    }
    // Applying again changes nothing.
    let out = r.ws.ok(&["prune"]);
    assert!(out.contains("deleted 0 backup(s)"), "{out}");
    // The kept backups still restore.
    let dir = r.ws.path().join("out");
    r.ws.restore_ok(&dir);
}

#[test]
fn prune_dry_run_changes_nothing_and_apply_deletes_the_plan_on_fs() {
    prune_plan_and_apply(false);
}

#[test]
fn prune_dry_run_changes_nothing_and_apply_deletes_the_plan_on_s3() {
    prune_plan_and_apply(true);
}

#[test]
fn backup_prunes_after_success_only() {
    let r = repo(false, "{ keep_last = 1 }");
    r.ws.ok(&["backup", "--no-prune"]);
    r.ws.ok(&["backup", "--no-prune"]);
    assert_eq!(ids(&r.ws).len(), 2);
    // A run with a failing source prunes nothing.
    let cfg = std::fs::read_to_string(r.ws.path().join("drctl.toml")).unwrap();
    let broken = format!(
        "{cfg}\n[[source]]\nname = \"gone-db\"\ntype = \"postgres\"\nurl = \"postgres://postgres@127.0.0.1:{}/does_not_exist\"\n",
        r.pg.port
    );
    std::fs::write(r.ws.path().join("drctl.toml"), broken).unwrap();
    let (code, _, err) = r.ws.run(&["backup"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(ids(&r.ws).len(), 3, "a failed run must not prune");
    // A successful run prunes to the policy.
    std::fs::write(r.ws.path().join("drctl.toml"), cfg).unwrap();
    let out = r.ws.ok(&["backup"]);
    assert!(out.contains("pruned 'app-db': 3 backup(s)"), "{out}");
    assert_eq!(ids(&r.ws).len(), 1);
}

#[test]
fn a_prune_interrupted_between_manifest_and_data_is_cleaned_by_the_next() {
    let r = repo(false, "{ keep_last = 1 }");
    r.ws.ok(&["backup", "--no-prune"]);
    r.ws.ok(&["backup", "--no-prune"]);
    let root = r.ws.fs_root("store");
    // The state a crash right after deleting the manifest leaves: data with no manifest.
    let old = ids(&r.ws)[1].clone();
    std::fs::remove_file(root.join(format!("manifests/app-db/{old}.json"))).unwrap();
    // Plus an abandoned upload in the fs temp dir, named as OpenDAL names it:
    // `<object file name>.<random>`.
    std::fs::write(root.join(format!(".tmp/{old}.pgdump.zst.age.8d1f03a9")), b"partial").unwrap();
    assert_eq!(ids(&r.ws).len(), 1, "the half-deleted backup is invisible");

    // A young orphan is left alone (it could be an upload in progress)…
    let out = r.ws.ok(&["prune"]);
    assert!(out.contains("0 orphaned objects"), "{out}");
    assert!(files_under(&root).iter().any(|f| f.contains(&old)));
    // …an old enough one is removed.
    let out = r.ws.ok(&["prune", "--orphan-age", "0s"]);
    assert!(out.contains("2 orphaned objects"), "{out}");
    let files = files_under(&root);
    assert!(!files.iter().any(|f| f.contains(&old)), "{files:?}");
    assert!(!files.iter().any(|f| f.starts_with(".tmp/")), "{files:?}");
    // Consistent: one manifest, one data object, and it restores.
    assert_eq!(
        files.iter().filter(|f| f.starts_with("manifests/")).count(),
        1,
        "{files:?}"
    );
    assert_eq!(files.iter().filter(|f| f.starts_with("data/")).count(), 1, "{files:?}");
    let dir = r.ws.path().join("out");
    r.ws.restore_ok(&dir);
}

fn slow_pg_dump_line(ws: &Workspace, seconds: u32) -> String {
    format!(
        "pg_dump_path = \"{}\"\n",
        slow_pg_dump(ws.path(), &format!("sleep {seconds}")).display()
    )
}

#[test]
fn backup_and_prune_are_serialized_by_the_storage_lock() {
    let r = repo(false, "{ keep_last = 1 }");
    r.ws.ok(&["backup", "--no-prune"]);
    let cfg = std::fs::read_to_string(r.ws.path().join("drctl.toml")).unwrap();
    let slow = slow_pg_dump_line(&r.ws, 4);
    std::fs::write(r.ws.path().join("drctl.toml"), format!("{cfg}{slow}")).unwrap();

    let t0 = Instant::now();
    let backup =
        r.ws.drctl()
            .args(["backup", "--no-prune"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // A prune that will not wait fails and names the holder.
    let (code, _, err) = r.ws.run(&["prune", "--lock-wait", "1s"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("is locked by backup (manual) (shared lock)") && err.contains(&format!("pid {}", backup.id())),
        "{err}"
    );
    // A prune that waits runs after the backup has committed: it then sees both backups.
    let prune =
        r.ws.drctl()
            .args(["prune"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    let b = backup.wait_with_output().unwrap();
    let backup_done = t0.elapsed();
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let p = prune.wait_with_output().unwrap();
    let prune_done = t0.elapsed();
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
    assert!(prune_done >= backup_done);
    let out = String::from_utf8_lossy(&p.stdout);
    assert!(
        out.contains("1 kept, 1 to drop"),
        "prune saw the finished backup: {out}"
    );
    assert_eq!(ids(&r.ws).len(), 1);
    assert!(
        files_under(&r.ws.fs_root("store"))
            .iter()
            .all(|f| !f.starts_with("locks/")),
        "locks released"
    );
}

#[test]
fn stale_and_live_locks_and_unlock() {
    let r = repo(false, "{ keep_last = 5 }");
    let locks = r.ws.fs_root("store").join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    let now = chrono::Utc::now().to_rfc3339();
    // A dead process on this host: stale at once.
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    std::fs::write(
        locks.join("20200101T000000Z-dead.json"),
        format!(r#"{{"kind":"exclusive","operation":"prune","host":"{host}","pid":{dead_pid},"created":"{now}","refreshed":"{now}"}}"#),
    )
    .unwrap();
    r.ws.ok(&["backup", "--no-prune", "--lock-wait", "1s"]);

    // A live lock from another host blocks, and unlock keeps it unless --force.
    std::fs::write(
        locks.join("20200101T000000Z-live.json"),
        format!(r#"{{"kind":"exclusive","operation":"prune","host":"elsewhere","pid":1,"created":"{now}","refreshed":"{now}"}}"#),
    )
    .unwrap();
    let (code, _, err) = r.ws.run(&["backup", "--lock-wait", "1s"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("locked by prune (exclusive lock) on host elsewhere")
            && err.contains("drctl unlock --storage store"),
        "{err}"
    );
    let out = r.ws.ok(&["unlock"]);
    assert!(
        out.contains("removed stale lock") && out.contains("kept live lock"),
        "{out}"
    );
    assert!(locks.join("20200101T000000Z-live.json").exists());
    let out = r.ws.ok(&["unlock", "--force"]);
    assert!(out.contains("removed live lock"), "{out}");
    r.ws.ok(&["backup", "--lock-wait", "1s"]);
    assert_eq!(ids(&r.ws).len(), 2);
}
