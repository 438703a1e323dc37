//! Sources that reported a backup as good when it was not (issue #15: 6, 7, 13), one test per
//! way it broke, against real servers.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn redis_cli(r: &Redis, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &r.port.to_string(), "--no-auth-warning"])
        .env("REDISCLI_AUTH", REDIS_PASSWORD)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Where `r` writes its RDB (`CONFIG GET dir` + `dbfilename`).
fn redis_rdb(r: &Redis) -> PathBuf {
    let dir = redis_cli(r, &["config", "get", "dir"]);
    let file = redis_cli(r, &["config", "get", "dbfilename"]);
    Path::new(dir.lines().nth(1).unwrap()).join(file.lines().nth(1).unwrap())
}

/// A Redis holding `n` keys in db0.
fn redis_with_keys(n: usize) -> Redis {
    let r = Redis::start_with(&["--enable-debug-command", "yes"]);
    redis_cli(&r, &["debug", "populate", &n.to_string()]);
    assert_eq!(redis_cli(&r, &["dbsize"]), n.to_string());
    r
}

/// A workspace whose one source, `cache`, reads Redis `r`'s RDB from `rdb_path` (file mode).
fn redis_file_workspace(r: &Redis, rdb_path: Option<&Path>) -> Workspace {
    let ws = Workspace::new();
    let rdb = rdb_path
        .map(|p| format!("rdb_path = \"{}\"\n", p.display()))
        .unwrap_or_default();
    ws.write_config(
        &ws.fs_storage_toml("local"),
        &format!(
            "[[source]]\nname = \"cache\"\ntype = \"redis\"\nurl = \"{}\"\n{rdb}",
            r.url_env("DRCTL_REDIS_PASSWORD")
        ),
    );
    ws
}

#[test]
fn redis_file_mode_refuses_a_stale_rdb_path() {
    // Was: an RDB 30 days old with 2 keys, while the server held 102, was stored as a good
    // backup with `key_counts_exact: true`.
    let _g = shared(); // redis-server's command line
    let server = redis_with_keys(102);
    let other = redis_with_keys(2);
    redis_cli(&other, &["save"]);
    let scratch = tempfile::tempdir().unwrap();
    let stale = scratch.path().join("dump.rdb");
    std::fs::copy(redis_rdb(&other), &stale).unwrap();
    sh("touch -d '30 days ago' \"$F\"", &[("F", stale.to_str().unwrap())]);
    let ws = redis_file_workspace(&server, Some(&stale));
    let (code, out, err) = ws.run(&["backup"]);
    assert_ne!(code, 0, "a stale RDB was accepted:\n{out}\n{err}");
    assert!(err.contains("before the BGSAVE started"), "{err}");
    assert!(err.contains(stale.to_str().unwrap()), "the error names the file: {err}");
    assert!(err.contains("CONFIG GET dir"), "the error ends with a hint: {err}");
    assert!(
        err.contains("2 keys") && err.contains("102"),
        "the error gives both key counts: {err}"
    );
    assert_eq!(ws.list_json().len(), 0, "no backup may be recorded");
}

#[test]
fn redis_file_mode_refuses_a_fresh_rdb_of_another_server() {
    // Was: any file at rdb_path was stored, whatever server wrote it. Here the file is rewritten
    // all the time (so its mtime is fresh), but it holds another server's 2 keys.
    let _g = shared();
    let server = redis_with_keys(102);
    let other = redis_with_keys(2);
    redis_cli(&other, &["save"]);
    let other_rdb = redis_rdb(&other);
    let stop = Arc::new(AtomicBool::new(false));
    let toucher = {
        let (stop, f) = (stop.clone(), other_rdb.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let now = std::fs::File::options().append(true).open(&f).unwrap();
                now.set_modified(std::time::SystemTime::now()).unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let ws = redis_file_workspace(&server, Some(&other_rdb));
    let (code, out, err) = ws.run(&["backup"]);
    stop.store(true, Ordering::Relaxed);
    toucher.join().unwrap();
    assert_ne!(code, 0, "another server's RDB was accepted:\n{out}\n{err}");
    assert!(
        err.contains("2 keys") && err.contains("102"),
        "the error gives both key counts: {err}"
    );
    assert!(err.contains("CONFIG GET dir"), "the error ends with a hint: {err}");
    assert_eq!(ws.list_json().len(), 0, "no backup may be recorded");
}

#[test]
fn redis_file_mode_accepts_its_own_rdb_with_exact_counts() {
    // The checks above must pass a quiet server's own file, named by rdb_path or found through
    // CONFIG GET, and record its counts as exact.
    let _g = shared();
    let server = redis_with_keys(102);
    let rdb = redis_rdb(&server);
    for rdb_path in [Some(rdb.as_path()), None] {
        let ws = redis_file_workspace(&server, rdb_path);
        ws.ok(&["backup"]);
        let list = ws.list_json();
        assert_eq!(list[0]["facts"]["key_counts"]["db0"]["keys"], 102, "{list:?}");
        assert_eq!(list[0]["facts"]["key_counts_exact"], true, "{list:?}");
    }
}

#[test]
fn redis_file_mode_backs_up_a_busy_server_without_a_false_alarm() {
    // The key-count check must not fail a backup because clients wrote during the save.
    let _g = shared();
    let server = redis_with_keys(300_000);
    let stop = Arc::new(AtomicBool::new(false));
    let port = server.port.to_string();
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // A batch of SETs and DELs per redis-cli, so the count moves both ways.
                let mut script = String::new();
                for _ in 0..200 {
                    i += 1;
                    script.push_str(&format!("SET busy:{i} x\nDEL busy:{}\n", i / 2));
                }
                let mut c = Command::new("redis-cli")
                    .args(["-h", "127.0.0.1", "-p", &port, "--no-auth-warning"])
                    .env("REDISCLI_AUTH", REDIS_PASSWORD)
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .unwrap();
                use std::io::Write;
                c.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
                c.wait().unwrap();
            }
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let ws = redis_file_workspace(&server, None);
    let results: Vec<_> = (0..3).map(|_| ws.run(&["backup"])).collect();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    for (code, out, err) in results {
        assert_eq!(code, 0, "a busy server's backup failed:\n{out}\n{err}");
    }
    assert_eq!(ws.list_json().len(), 3);
}
