//! Several storages as one repository, integrity checks, and the faults storage survives:
//! a fault-injecting proxy in front of a real S3 server, SIGKILL mid-upload, a full disk.

use crate::support::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn seeded_pg(rows: u32) -> Postgres {
    let pg = Postgres::start();
    pg.createdb("app");
    pg.psql("app", &format!("create table t (id int primary key, s text); insert into t select g, md5(g::text) from generate_series(1, {rows}) g;"));
    pg
}

fn restore_out(ws: &Workspace, extra: &[&str]) -> (i32, String, String) {
    ws.restore_to(&ws.path().join(format!("out-{}", rand_suffix())), extra)
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn manifests_on(ws: &Workspace, storage: &str) -> usize {
    let (code, out, err) = ws.run(&["list", "--json", "--storage", storage]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str::<Vec<serde_json::Value>>(&out).unwrap().len()
}

#[test]
fn transient_s3_faults_are_retried_and_the_backup_completes() {
    let pg = seeded_pg(20000);
    let s3 = S3Server::start();
    let proxy = FaultProxy::start(s3.port);
    let ws = Workspace::new();
    ws.write_config(
        &(s3.storage_toml_via("s3", proxy.port, "/vps1") + "timeout = \"5s\"\n"),
        &pg_source_toml("app-db", &pg, "app"),
    );
    for fault in [Fault::Unavailable, Fault::DropMidBody] {
        proxy.fail_next(fault, 2);
        let before = proxy.injected();
        let (code, out, err) = ws.run(&["backup", "--no-prune"]);
        assert_eq!(code, 0, "{fault:?}: {out}\n{err}");
        assert!(proxy.injected() >= before + 2, "{fault:?}: the faults were injected");
    }
    proxy.heal();
    assert_eq!(ws.list_json().len(), 2);
    let (code, _, err) = restore_out(&ws, &[]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_failing_storage_leaves_a_degraded_but_complete_backup_on_the_other() {
    let pg = seeded_pg(5000);
    let s3 = S3Server::start();
    let proxy = FaultProxy::start(s3.port);
    let ws = Workspace::new();
    let storages = format!(
        "{}{}",
        ws.fs_storage_toml("local"),
        s3.storage_toml_via("s3", proxy.port, "/vps1")
    );
    ws.write_config(&storages, &pg_source_toml("app-db", &pg, "app"));
    proxy.fail_next(Fault::Unavailable, usize::MAX);
    let t0 = Instant::now();
    let (code, _, err) = ws.run(&["backup"]);
    assert_eq!(code, 3, "degraded exit code: {err}");
    assert!(
        err.contains("degraded: app-db: storage 's3' missed this backup"),
        "{err}"
    );
    assert!(t0.elapsed() < Duration::from_secs(60));
    let status: serde_json::Value = serde_json::from_str(&ws.ok(&["status", "--json"])).unwrap();
    assert!(
        status["sources"][0]["last_failure"]["error"]
            .as_str()
            .unwrap()
            .contains("degraded"),
        "{status:#}"
    );
    proxy.heal();
    assert_eq!(manifests_on(&ws, "local"), 1);
    assert_eq!(manifests_on(&ws, "s3"), 0, "no manifest on the failed storage");
    let (code, _, err) = restore_out(&ws, &["--storage", "local"]);
    assert_eq!(code, 0, "{err}");

    // With require_all, nothing commits anywhere.
    let cfg = ws.config_text();
    ws.set_config(&cfg.replace("[daemon]", "[backup]\nrequire_all = true\n\n[daemon]"));
    proxy.fail_next(Fault::Unavailable, usize::MAX);
    let (code, _, err) = ws.run(&["backup"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("require_all") || err.contains("nothing was committed"),
        "{err}"
    );
    proxy.heal();
    assert_eq!(
        manifests_on(&ws, "local"),
        1,
        "require_all: the healthy storage got nothing either"
    );
}

#[test]
fn a_stalled_storage_times_out_and_the_other_commits() {
    let pg = seeded_pg(2000);
    let s3 = S3Server::start();
    let proxy = FaultProxy::start(s3.port);
    let ws = Workspace::new();
    let s3_toml = s3.storage_toml_via("s3", proxy.port, "/vps1") + "timeout = \"1s\"\n";
    ws.write_config(
        &format!("{}{s3_toml}", ws.fs_storage_toml("local")),
        &pg_source_toml("app-db", &pg, "app"),
    );
    proxy.fail_next(Fault::Stall, usize::MAX);
    let t0 = Instant::now();
    let (code, _, err) = ws.run(&["backup"]);
    assert_eq!(code, 3, "{err}");
    assert!(t0.elapsed() < Duration::from_secs(90), "took {:?}", t0.elapsed());
    proxy.heal();
    assert_eq!(manifests_on(&ws, "local"), 1);
}

#[test]
fn check_names_damaged_objects_and_restore_falls_back_to_the_other_storage() {
    let _g = shared(); // runs a verification sandbox
    let pg = seeded_pg(5000);
    let ws = Workspace::new();
    ws.write_config(
        &format!("{}{}", ws.fs_storage_toml("a"), ws.fs_storage_toml("b")),
        &pg_source_toml("app-db", &pg, "app"),
    );
    ws.ok(&["backup"]);
    let out = ws.ok(&["check", "--read-data"]);
    assert!(
        out.contains("0 problem(s)") && out.contains("read 2 object(s)"),
        "{out}"
    );
    let id = ws.list_json()[0]["id"].as_str().unwrap().to_string();
    let root = ws.fs_root("a");
    let obj = root.join(files_under(&root).into_iter().find(|f| f.starts_with("data/")).unwrap());
    let good = std::fs::read(&obj).unwrap();

    // A flipped byte: only reading the data finds it.
    let mut bad = good.clone();
    bad[good.len() / 2] ^= 1;
    std::fs::write(&obj, &bad).unwrap();
    let out = ws.ok(&["check"]);
    assert!(out.contains("0 problem(s)"), "sizes still match: {out}");
    let (code, out, _) = ws.run(&["check", "--read-data"]);
    assert_eq!(code, 1);
    assert!(
        out.contains(&format!(
            "PROBLEM storage 'a': backup {id} of 'app-db': object data/app-db/{id}"
        )) && out.contains("altered or damaged"),
        "{out}"
    );
    let (code, out, err) = restore_out(&ws, &[]);
    assert_eq!(code, 0, "restore falls back: {out}\n{err}");
    assert!(err.contains("trying the next one"), "and says so: {err}");
    let (code, out, _) = ws.run(&["verify", "--identity", ws.identity.to_str().unwrap()]);
    assert_eq!(code, 0, "verify falls back too: {out}");

    // Truncated, then missing: found without reading.
    std::fs::write(&obj, &good[..good.len() - 10]).unwrap();
    let (code, out, _) = ws.run(&["check"]);
    assert_eq!(code, 1);
    assert!(
        out.contains(&format!(
            "is {} bytes, the manifest says {}",
            good.len() - 10,
            good.len()
        )),
        "{out}"
    );
    std::fs::remove_file(&obj).unwrap();
    let (code, out, _) = ws.run(&["check", "--storage", "a"]);
    assert_eq!(code, 1);
    assert!(
        out.contains(&format!("object data/app-db/{id}")) && out.contains("is missing"),
        "{out}"
    );
    let (code, _, err) = restore_out(&ws, &["--storage", "a"]);
    assert_eq!(code, 1, "with only the damaged storage, restore fails: {err}");

    // Repair storage a from b.
    std::fs::remove_file(root.join(format!("manifests/app-db/{id}.json"))).unwrap();
    let out = ws.ok(&["copy", "--from", "b", "--to", "a"]);
    assert!(out.contains("1 backup(s) copied"), "{out}");
    let out = ws.ok(&["check", "--read-data"]);
    assert!(out.contains("0 problem(s)"), "{out}");
}

#[test]
fn copy_seeds_a_new_s3_storage_verified_by_hash() {
    let pg = seeded_pg(3000);
    let s3 = S3Server::start();
    let ws = Workspace::new();
    ws.write_config(&ws.fs_storage_toml("local"), &pg_source_toml("app-db", &pg, "app"));
    ws.ok(&["backup", "--no-prune"]);
    ws.ok(&["backup", "--no-prune"]);
    let cfg = ws.config_text();
    ws.set_config(&cfg.replace("[[source]]", &format!("{}\n[[source]]", s3.storage_toml("s3"))));
    let out = ws.ok(&["copy", "--from", "local", "--to", "s3"]);
    assert!(out.contains("2 backup(s) copied"), "{out}");
    assert_eq!(manifests_on(&ws, "s3"), 2);
    let out = ws.ok(&["copy", "--from", "local", "--to", "s3"]);
    assert!(out.contains("0 backup(s) copied"), "copy is idempotent: {out}");
    let (code, _, err) = restore_out(&ws, &["--storage", "s3"]);
    assert_eq!(code, 0, "{err}");
    let out = ws.ok(&["check", "--read-data", "--storage", "s3"]);
    assert!(out.contains("0 problem(s)"), "{out}");
}

#[test]
fn sigkill_mid_upload_commits_nothing_and_prune_cleans_what_it_left() {
    let pg = big_pg();
    let s3 = S3Server::start();
    let ws = Workspace::new();
    let slow = slow_pg_dump(ws.path(), "exec sleep 60");
    let storages = format!("{}{}", ws.fs_storage_toml("local"), s3.storage_toml("s3"));
    let src = pg_source_toml("app-db", &pg, "app");
    ws.write_config(&storages, &format!("{src}pg_dump_path = \"{}\"\n", slow.display()));
    ws.set_config(
        &ws.config_text()
            .replace("[daemon]", "[prune]\norphan_age = \"0s\"\n\n[daemon]"),
    );
    let mut child = ws
        .drctl()
        .arg("backup")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until parts are in flight on S3.
    let t0 = Instant::now();
    while s3.open_multipart_uploads() == 0 {
        // A wait, not a timing claim: on a loaded 2-core machine the first part can take a while.
        assert!(t0.elapsed() < Duration::from_secs(120), "no multipart upload started");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    let _ = child.wait();
    assert_eq!(manifests_on(&ws, "local"), 0);
    assert_eq!(manifests_on(&ws, "s3"), 0);
    assert!(s3.open_multipart_uploads() > 0, "the kill left an open upload");

    // check lists what the kill left (and the locks it could not release).
    let (code, out, _) = ws.run(&["check"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("unfinished multipart upload of data/app-db/"), "{out}");
    assert!(out.contains("stale lock"), "{out}");
    // unlock + prune clean it up; the next run succeeds.
    ws.ok(&["unlock"]);
    let out = ws.ok(&["prune"]);
    assert!(out.contains("aborted 1 unfinished upload(s)"), "{out}");
    assert_eq!(s3.open_multipart_uploads(), 0, "no multipart upload stays open");
    assert!(
        files_under(&ws.fs_root("local"))
            .iter()
            .all(|f| !f.starts_with(".tmp/")),
        "fs temp files swept"
    );
    ws.set_config(
        &ws.config_text()
            .replace(&format!("pg_dump_path = \"{}\"\n", slow.display()), ""),
    );
    ws.ok(&["backup"]);
    let out = ws.ok(&["check", "--read-data"]);
    assert!(out.contains("0 problem(s)"), "{out}");
}

#[test]
fn a_full_filesystem_fails_cleanly_and_commits_nothing() {
    let mnt = tempfile::tempdir().unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(mnt.path())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("SKIPPED: cannot mount a small tmpfs here (needs root)");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _u = Unmount(mnt.path().to_path_buf());
    let pg = big_pg();
    let ws = Workspace::new();
    ws.write_config(
        &format!(
            "[[storage]]\nname = \"small\"\ntype = \"fs\"\nroot = \"{}\"\n",
            mnt.path().display()
        ),
        &pg_source_toml("app-db", &pg, "app"),
    );
    let (code, _, err) = ws.run(&["backup"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("No space left") || err.contains("storage 'small'"),
        "{err}"
    );
    assert!(err.contains("nothing was committed"), "{err}");
    let files = files_under(mnt.path());
    assert!(
        files
            .iter()
            .all(|f| !f.starts_with("manifests/") && !f.starts_with("data/")),
        "{files:?}"
    );
    assert!(
        files.iter().all(|f| !f.starts_with(".tmp/")),
        "the partial upload was removed: {files:?}"
    );
}

/// The ETag moto gives a completed multipart upload ends in `-<number of parts>`.
fn multipart_parts(s3: &S3Server, key: &str) -> usize {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", s3.port)).unwrap();
    write!(
        s,
        "HEAD /{}/{key} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
        s3.bucket, s3.port
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let etag = resp
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("etag:"))
        .unwrap_or_else(|| panic!("no ETag: {resp}"));
    etag.trim()
        .trim_end_matches('"')
        .rsplit('-')
        .next()
        .unwrap()
        .parse()
        .unwrap_or(1)
}

#[test]
fn s3_part_size_and_parts_in_flight_are_configurable_and_checked() {
    let s3 = S3Server::start();
    let pg = big_pg();
    let ws = Workspace::new();
    let tuned = s3.storage_toml("s3").replace(
        "root = \"/vps1\"\n",
        "root = \"/tuned\"\npart_size = \"5MiB\"\nparts_in_flight = 4\n",
    );
    ws.write_config(&tuned, &pg_source_toml("app-db", &pg, "app"));
    ws.ok(&["backup"]);
    let m = &ws.list_json()[0];
    let key = m["objects"][0]["key"].as_str().unwrap();
    let stored = m["stored"]["size"].as_u64().unwrap();
    assert!(stored > 20 << 20, "a dump of several parts: {stored}");
    let want = stored.div_ceil(5 << 20) as usize;
    assert_eq!(
        multipart_parts(&s3, &format!("tuned/{key}")),
        want,
        "parts of part_size"
    );
    let dir = tempfile::tempdir().unwrap();
    ws.restore_ok(dir.path());

    // Out of S3's limits, or nothing in flight: named by validate.
    ws.write_config(
        &s3.storage_toml("s3").replace(
            "root = \"/vps1\"\n",
            "root = \"/x\"\npart_size = \"1MiB\"\nparts_in_flight = 0\n",
        ),
        "",
    );
    let (code, out, err) = ws.run(&["validate"]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("part_size: must be between 5MiB and 5GiB"), "{err}");
    assert!(err.contains("parts_in_flight: 0 must be between 1 and 64"), "{err}");
}
