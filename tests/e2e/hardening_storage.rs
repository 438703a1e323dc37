//! Storage hardening (#15): one storage or one manifest that cannot be read blocks nothing
//! else, a failing prune is heard, and S3 housekeeping neither leaks credentials nor fails on
//! providers that lack it. Each test failed on the code before its fix.

use crate::support::*;
use std::path::Path;

/// A files source per name, each backing up its own directory with one file.
fn files_sources(names: &[&str]) -> (tempfile::TempDir, String) {
    let src = tempfile::tempdir().unwrap();
    let mut toml = String::new();
    for n in names {
        let d = src.path().join(n);
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("data.txt"), format!("contents of {n}\n")).unwrap();
        toml += &format!(
            "[[source]]\nname = \"{n}\"\ntype = \"files\"\npaths = [\"{}\"]\n\n",
            d.display()
        );
    }
    (src, toml)
}

fn ids_of(ws: &Workspace, source: &str) -> Vec<String> {
    let out = ws.ok(&["list", "--json", "--source", source]);
    let v: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    v.iter().map(|m| m["id"].as_str().unwrap().to_string()).collect()
}

fn manifest_path(ws: &Workspace, storage: &str, source: &str, id: &str) -> std::path::PathBuf {
    ws.fs_root(storage).join(format!("manifests/{source}/{id}.json"))
}

fn data_files(ws: &Workspace, storage: &str, source: &str) -> Vec<String> {
    files_under(&ws.fs_root(storage).join(format!("data/{source}")))
}

#[test]
fn a_storage_that_is_down_does_not_block_a_restore_from_another() {
    let ws = Workspace::new();
    let (_src, sources) = files_sources(&["app"]);
    let down = free_port();
    let offsite = format!(
        "[[storage]]\nname = \"offsite\"\ntype = \"s3\"\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:{down}\"\nregion = \"us-east-1\"\naccess_key_id = \"k\"\nsecret_access_key = \"s\"\ntimeout = \"2s\"\n"
    );
    ws.write_config(&format!("{}\n{offsite}", ws.fs_storage_toml("local")), &sources);
    // Degraded (exit 3): stored on `local`, missed by `offsite`.
    let (code, out, err) = ws.run(&["backup"]);
    assert_eq!(code, 3, "{out}\n{err}");

    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = ws.restore_to(dir.path(), &[]);
    assert_eq!(code, 0, "restore must come from the storage that is up:\n{out}\n{err}");
    assert!(
        err.contains("storage 'offsite' was skipped"),
        "the skipped storage is named: {err}"
    );
    let restored = files_under(dir.path());
    assert!(restored.iter().any(|f| f.ends_with("data.txt")), "{restored:?}");

    // `list` shows what it could read, names what it could not, and exits 1.
    let (code, out, err) = ws.run(&["list"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("app"), "the backup on 'local' is listed: {out}");
    assert!(err.contains("'offsite'"), "{err}");
}

#[test]
fn a_damaged_manifest_of_one_source_blocks_nothing_else() {
    let ws = Workspace::new();
    let (_src, sources) = files_sources(&["app", "cache"]);
    ws.write_config(&ws.fs_storage_toml("local"), &sources);
    ws.ok(&["backup"]);
    let cache_id = ids_of(&ws, "cache").pop().unwrap();
    let cache_data_before = data_files(&ws, "local", "cache");
    assert_eq!(cache_data_before.len(), 1, "{cache_data_before:?}");
    // Truncate the cache backup's manifest, as a crashed copy or a bad disk would.
    let mp = manifest_path(&ws, "local", "cache", &cache_id);
    let text = std::fs::read(&mp).unwrap();
    std::fs::write(&mp, &text[..text.len() / 2]).unwrap();
    let bad = format!("manifests/cache/{cache_id}.json");

    // list: the other source's backups, the damaged one named, exit 1.
    let (code, out, err) = ws.run(&["list"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("app"), "{out}");
    assert!(err.contains(&bad), "the damaged manifest is named: {err}");

    // restore of the other source works.
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = ws.restore_to(dir.path(), &["--source", "app"]);
    assert_eq!(code, 0, "{out}\n{err}");

    // A backup of the other source, with its after-backup prune, succeeds.
    let (code, out, err) = ws.run(&["backup", "--source", "app"]);
    assert_eq!(
        code, 0,
        "another source's damaged manifest must not fail this backup:\n{out}\n{err}"
    );

    // Prune: prunes what it can read, names the damaged manifest, exits 1, and keeps the data
    // of the backup it cannot read (it is unknown, not orphaned) even with orphan age 0.
    let (code, out, err) = ws.run(&["prune", "--orphan-age", "0s"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains(&bad), "{err}");
    assert_eq!(
        data_files(&ws, "local", "cache"),
        cache_data_before,
        "prune deleted data of an unreadable manifest"
    );

    // check names it too, and still checks the rest.
    let (code, out, err) = ws.run(&["check"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(format!("{out}{err}").contains(&bad), "{out}\n{err}");
}

/// A lock another host holds right now (shared: a backup in progress there).
fn foreign_live_lock(root: &Path) {
    let now = chrono::Utc::now().to_rfc3339();
    let dir = root.join("locks");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("20261203T000000Z-0badf00d.json"),
        format!(
            r#"{{"kind":"shared","operation":"backup (nightly)","host":"other-host.example","pid":4242,"created":"{now}","refreshed":"{now}"}}"#
        ),
    )
    .unwrap();
}

#[test]
fn a_failing_prune_after_backup_is_notified_and_shown_in_status() {
    let ws = Workspace::new();
    let rx = Receiver::start();
    let (_src, sources) = files_sources(&["app"]);
    ws.write_config(
        &ws.fs_storage_toml("local"),
        &format!(
            "{sources}[[notify]]\ntype = \"webhook\"\nurl = \"{}\"\n",
            rx.url("/hook")
        ),
    );
    // Prune needs the exclusive lock; another host's live backup holds a shared one.
    foreign_live_lock(&ws.fs_root("local"));
    let (code, out, err) = ws.run(&["backup", "--lock-wait", "2s"]);
    assert_eq!(code, 1, "the run reports the failed prune:\n{out}\n{err}");
    assert_eq!(ids_of(&ws, "app").len(), 1, "the backup itself is stored");

    let hooks = rx.requests();
    let prune_hooks: Vec<_> = hooks
        .iter()
        .filter(|(_, _, b)| b.contains("\"prune_failed\""))
        .collect();
    assert_eq!(prune_hooks.len(), 1, "one prune_failed notification: {hooks:?}");
    assert!(prune_hooks[0].2.contains("\"app\""), "{:?}", prune_hooks[0]);

    let status = ws.ok(&["status"]);
    assert!(status.contains("prune FAILED"), "{status}");
    let json: serde_json::Value = serde_json::from_str(&ws.ok(&["status", "--json"])).unwrap();
    let row = &json["sources"][0];
    assert!(
        row["last_prune_failure"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("lock"),
        "{row}"
    );

    // Once a prune succeeds, status no longer shows the failure.
    std::fs::remove_dir_all(ws.fs_root("local").join("locks")).unwrap();
    ws.ok(&["backup"]);
    let status = ws.ok(&["status"]);
    assert!(!status.contains("prune FAILED"), "{status}");
}

#[test]
fn s3_housekeeping_a_provider_lacks_is_a_warning_and_leaks_no_credentials() {
    let s3s = S3sServer::start();
    let ws = Workspace::new();
    let (_src, sources) = files_sources(&["app"]);
    ws.write_config(&s3s.storage_toml("s3s"), &sources);
    ws.ok(&["backup"]);
    ws.ok(&["backup"]);

    let (code, out, err) = ws.run(&["prune"]);
    let all = format!("{out}\n{err}");
    assert_eq!(
        code, 0,
        "prune must run despite the missing ListMultipartUploads:\n{all}"
    );
    eprintln!("{all}");
    assert!(
        all.contains("multipart uploads"),
        "the skipped housekeeping is a warning: {all}"
    );
    assert_eq!(
        all.lines().filter(|l| l.contains("multipart uploads")).count(),
        1,
        "the warning is printed once: {all}"
    );
    let (code, out, err) = ws.run(&["check"]);
    let all2 = format!("{out}\n{err}");
    assert_eq!(code, 0, "{all2}");
    assert!(all2.contains("multipart uploads"), "{all2}");
    for text in [&all, &all2] {
        assert!(!text.contains(S3S_ACCESS_KEY), "the access key id leaked: {text}");
        assert!(!text.contains("X-Amz-"), "a signed URL leaked: {text}");
    }
    assert_eq!(ids_of(&ws, "app").len(), 2);
}

#[test]
fn manifests_keep_file_hashes_and_row_counts_encrypted() {
    use sha2::Digest;
    let pg = Postgres::start();
    pg.createdb("app");
    pg.psql(
        "app",
        "create table secret_customers (id int); insert into secret_customers select generate_series(1, 5);",
    );
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join(".env"), "hunter2\n").unwrap();
    let ws = Workspace::new();
    ws.write_config(
        &ws.fs_storage_toml("local"),
        &format!(
            "{}\n[[source]]\nname = \"config\"\ntype = \"files\"\npaths = [\"{}\"]\n",
            pg_source_toml("app-db", &pg, "app"),
            src.path().display()
        ),
    );
    ws.ok(&["backup"]);
    let secret_hash = hex::encode(sha2::Sha256::digest(b"hunter2\n"));
    let mut privates = Vec::new();
    for source in ["app-db", "config"] {
        let id = ids_of(&ws, source).pop().unwrap();
        let text = std::fs::read_to_string(manifest_path(&ws, "local", source, &id)).unwrap();
        // Anyone who can read the bucket sees neither the table names and counts nor a file's
        // hash to test guesses against.
        assert!(!text.contains("secret_customers"), "{text}");
        assert!(!text.contains(&secret_hash), "{text}");
        let m: serde_json::Value = serde_json::from_str(&text).unwrap();
        privates.push(m["private"].as_str().unwrap().to_string());
    }
    // Stock age opens them with the identity.
    for (p, want) in privates.iter().zip(["secret_customers", secret_hash.as_str()]) {
        let f = ws.path().join("private.age");
        std::fs::write(&f, p).unwrap();
        let out = std::process::Command::new("age")
            .args(["-d", "-i"])
            .arg(&ws.identity)
            .arg(&f)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains(want));
    }
    // Verification opens them and still checks every count and hash.
    let (code, out, err) = ws.run(&["verify", "--identity", ws.identity.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("1 tables, 5 rows"), "{out}");
    assert!(out.contains("file hashes: 1 files"), "{out}");
}
