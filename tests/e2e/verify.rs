//! Restore verification against real PostgreSQL: passing, failing for each reason, and always
//! cleaning up its sandbox.

use crate::support::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn verify(ws: &Workspace, identity: &std::path::Path) -> (i32, String, String) {
    ws.run(&["verify", "--identity", identity.to_str().unwrap()])
}

#[test]
fn verify_passes_reports_rto_and_records_the_result() {
    let _g = exclusive();
    let (_pg, ws) = verify_setup("\n[[source.verify]]\nsql = \"select count(*) = 2000 from users\"\n");
    ws.ok(&["backup"]);
    let (code, out, err) = verify(&ws, &ws.identity);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.starts_with("PASS app-db"), "{out}");
    assert!(out.contains("restore took"), "{out}");
    assert!(out.contains("row counts: 2 tables, 2300 rows"), "{out}");
    assert!(
        out.contains("assertion `select count(*) = 2000 from users`: true"),
        "{out}"
    );
    let rec: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            files_under(&ws.fs_root("local"))
                .iter()
                .find(|f| f.starts_with("verify/app-db/"))
                .map(|f| ws.fs_root("local").join(f))
                .expect("a verification record"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(rec["ok"], true);
    assert!(rec["rto_seconds"].as_f64().unwrap() > 0.0);
    let list = ws.ok(&["list"]);
    assert!(list.contains("verified"), "{list}");
    assert!(verify_leftovers().is_empty(), "{:?}", verify_leftovers());
}

#[test]
fn verify_fails_with_a_reason_for_each_kind_of_damage() {
    let _g = exclusive();
    let (_pg, ws) =
        verify_setup("\n[[source.verify]]\nsql = \"select count(*) = 1 from users where name = 'nobody'\"\n");
    ws.ok(&["backup"]);
    let root = ws.fs_root("local");
    let files = files_under(&root);
    let manifest_path = root.join(files.iter().find(|f| f.starts_with("manifests/")).unwrap());
    let data_path = root.join(files.iter().find(|f| f.starts_with("data/")).unwrap());

    // A false user assertion.
    let (code, out, _) = verify(&ws, &ws.identity);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL assertion `select count(*) = 1 from users where name = 'nobody'`: returned false"),
        "{out}"
    );
    assert!(out.contains("ok   row counts"), "{out}");
    assert!(verify_leftovers().is_empty(), "{:?}", verify_leftovers());

    // A manifest whose recorded count was altered.
    let original = std::fs::read_to_string(&manifest_path).unwrap();
    ws.edit_private_facts(&manifest_path, "\"public.users\":2000", "\"public.users\":2001");
    let (code, out, _) = verify(&ws, &ws.identity);
    assert_eq!(code, 1);
    assert!(
        out.contains("row counts differ: public.users: restored 2000 rows, recorded 2001"),
        "{out}"
    );
    std::fs::write(&manifest_path, &original).unwrap();

    // A flipped byte in the stored object.
    let mut data = std::fs::read(&data_path).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x40;
    std::fs::write(&data_path, &data).unwrap();
    let (code, out, _) = verify(&ws, &ws.identity);
    assert_eq!(code, 1);
    assert!(
        out.contains("FAIL download, hashes and decryption") && out.contains("damaged or was altered"),
        "{out}"
    );
    data[mid] ^= 0x40;
    std::fs::write(&data_path, &data).unwrap();

    // The wrong identity.
    let other = ws.path().join("other.txt");
    ws.ok(&["keygen", "--output", other.to_str().unwrap()]);
    let (code, out, _) = verify(&ws, &other);
    assert_eq!(code, 1);
    assert!(out.contains("wrong identity"), "{out}");

    assert!(verify_leftovers().is_empty(), "{:?}", verify_leftovers());
    let list = ws.ok(&["list"]);
    assert!(list.contains("FAILED"), "the last result is shown: {list}");
}

#[test]
fn an_interrupted_verify_leaves_no_sandbox() {
    let _g = exclusive();
    let (pg, ws) = verify_setup("");
    // Enough data that the restore takes a while.
    pg.psql("app", "create table big as select g as id, md5(g::text) || md5((g * 7)::text) as s from generate_series(1, 1500000) g;");
    ws.ok(&["backup"]);
    let child = ws
        .drctl()
        .args(["verify", "--identity", ws.identity.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    // Wait until the sandbox exists, then interrupt.
    while verify_leftovers().iter().all(|l| !l.contains("postgres")) {
        assert!(t0.elapsed() < Duration::from_secs(30), "sandbox never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("interrupted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(verify_leftovers().is_empty(), "{:?}", verify_leftovers());
}

#[test]
fn url_sandbox_creates_and_drops_a_scratch_database() {
    let _g = exclusive();
    let (pg, ws) = verify_setup("");
    ws.ok(&["backup"]);
    let cfg = std::fs::read_to_string(ws.path().join("drctl.toml")).unwrap();
    std::fs::write(
        ws.path().join("drctl.toml"),
        format!(
            "{cfg}\n[verify]\nsandbox = \"url\"\nurl = \"{}\"\n",
            pg.url_with_password_env("postgres", "DRCTL_PG_PASSWORD")
        ),
    )
    .unwrap();
    let (code, out, err) = verify(&ws, &ws.identity);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("url (postgres@127.0.0.1"), "{out}");
    let dbs = pg.psql(
        "postgres",
        "select datname from pg_database where datname like 'drctl_verify_%'",
    );
    assert_eq!(dbs.trim(), "", "scratch database left behind");
    // The non-superuser role the dump was loaded as is cluster-wide: it goes too.
    let roles = pg.psql(
        "postgres",
        "select rolname from pg_roles where rolname like 'drctl_loader_%'",
    );
    assert_eq!(roles.trim(), "", "restore role left behind");
    assert!(!out.contains("restore role"), "loaded as the non-superuser role: {out}");
}

#[test]
fn restore_test_script_passes_on_good_backups_and_fails_on_bad() {
    let _g = exclusive();
    let (_pg, ws) = verify_setup("");
    ws.ok(&["backup"]);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/restore-test.sh");
    let identity = std::fs::read_to_string(&ws.identity).unwrap();
    let run = |identity: &str| {
        let mut c = drctl_cmd(ws.path());
        c.env("DRCTL_CONFIG", ws.path().join("drctl.toml"))
            .env("DRCTL", env!("CARGO_BIN_EXE_drctl"))
            .env("DRCTL_IDENTITY", identity);
        let o = Command::new("bash")
            .arg(&script)
            .envs(c.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
            .current_dir(ws.path())
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&identity);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        out.contains("PASS app-db") && out.contains("restore test PASSED"),
        "{out}"
    );
    // Another identity: the test fails and says so.
    let other = ws.path().join("other.txt");
    ws.ok(&["keygen", "--output", other.to_str().unwrap()]);
    let (code, out, err) = run(&std::fs::read_to_string(&other).unwrap());
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(err.contains("restore test FAILED"), "{err}");
    assert!(verify_leftovers().is_empty(), "{:?}", verify_leftovers());
}

#[test]
fn a_private_work_dir_is_named_instead_of_failing_inside_initdb() {
    // Only root hands the cluster to the `postgres` user; as that user, everything it needs is its own.
    if !is_root() {
        eprintln!("skipped: the local sandbox changes user only when run as root");
        return;
    }
    let _g = exclusive();
    let (_pg, ws) = verify_setup("");
    ws.ok(&["backup"]);
    let private_dir = ws.path().join("private");
    std::fs::create_dir(&private_dir).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(ws.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    ws.set_config(&format!("{}\n[verify]\nwork_dir = \"./private\"\n", ws.config_text()));
    let (code, out, _) = verify(&ws, &ws.identity);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("runs PostgreSQL as the postgres user, which cannot reach")
            && out.contains("set [verify] work_dir to a directory postgres can traverse"),
        "{out}"
    );
    let left: Vec<_> = std::fs::read_dir(&private_dir).unwrap().flatten().collect();
    assert!(left.is_empty(), "work dir left behind: {left:?}");
}
