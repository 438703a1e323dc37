//! Sources that reported a backup as good when it was not (issue #15: 6, 7, 13), one test per
//! way it broke, against real servers.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
    let list = ws.list_json();
    assert_eq!(list.len(), 3);
    assert!(
        list.iter().any(|b| b["facts"]["key_counts_exact"] == false),
        "the writes ran during a save, so some counts are not exact: {list:?}"
    );
}

// ---------- files: overlapping paths and names that are not UTF-8 ----------

/// A workspace whose one source, `config`, backs up `paths` (TOML strings, as written).
fn files_workspace(paths: &[String]) -> Workspace {
    let ws = Workspace::new();
    let list = paths.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(", ");
    ws.write_config(
        &ws.fs_storage_toml("local"),
        &format!("[[source]]\nname = \"config\"\ntype = \"files\"\npaths = [{list}]\n"),
    );
    ws
}

/// Every file below `dir` as (path relative to `dir` as raw bytes, contents), sorted.
fn tree_bytes(dir: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    use std::os::unix::ffi::OsStrExt;
    let mut out: Vec<_> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e.path().strip_prefix(dir).unwrap().as_os_str().as_bytes().to_vec();
            (rel, std::fs::read(e.path()).unwrap())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn files_overlapping_paths_back_up_each_file_once_and_restore() {
    // Was: `paths = ["/x/app", "/x/app/.env"]` wrote .env twice into the tar; backup exit 0,
    // restore "File exists".
    let src = tempfile::tempdir().unwrap();
    let app = src.path().join("app");
    std::fs::create_dir_all(app.join("conf")).unwrap();
    std::fs::write(app.join(".env"), "SECRET=1\n").unwrap();
    std::fs::write(app.join("conf/Caddyfile"), ":80\n").unwrap();
    let a = app.display().to_string();
    let ws = files_workspace(&[
        a.clone(),
        format!("{a}/.env"),
        format!("{a}/"),
        format!("{a}/./conf/Caddyfile"),
        a.clone(),
    ]);
    let (code, out, err) = ws.run(&["backup"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let list = ws.list_json();
    assert_eq!(list[0]["facts"]["file_count"], 2, "each file once: {list:?}");
    let dest = ws.path().join("restored");
    ws.restore_ok(&dest);
    let root = dest.join("config").join(a.trim_start_matches('/'));
    assert_eq!(tree_bytes(&root), tree_bytes(&app));
}

#[test]
fn files_names_differing_only_in_invalid_utf8_round_trip_byte_exact() {
    // Was: both names became "name\u{FFFD}" in the tar (to_string_lossy); backup exit 0,
    // restore "File exists".
    use std::os::unix::ffi::OsStrExt;
    let _g = shared(); // verify
    let src = tempfile::tempdir().unwrap();
    let dir = src.path().join("data");
    let raw = |b: &[u8]| dir.join(std::ffi::OsStr::from_bytes(b));
    std::fs::create_dir_all(raw(b"sub\xe9dir")).unwrap();
    std::fs::write(raw(b"name\xff"), "first").unwrap();
    std::fs::write(raw(b"name\xfe"), "second").unwrap();
    std::fs::write(raw(b"name\xef\xbf\xbd"), "the replacement character itself").unwrap();
    std::fs::write(raw(b"sub\xe9dir/f\x80"), "nested").unwrap();
    let ws = files_workspace(&[dir.display().to_string()]);
    let (code, out, err) = ws.run(&["backup"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(ws.list_json()[0]["facts"]["file_count"], 4);
    let dest = ws.path().join("restored");
    ws.restore_ok(&dest);
    let root = dest
        .join("config")
        .join(dir.display().to_string().trim_start_matches('/'));
    let restored = tree_bytes(&root);
    assert_eq!(restored, tree_bytes(&dir), "names and contents byte for byte");
    assert_eq!(restored.len(), 4);
    let (code, out, err) = ws.run(&["verify", "--identity", ws.identity.to_str().unwrap()]);
    assert_eq!(code, 0, "verify compares every file's hash:\n{out}\n{err}");
}

#[test]
fn files_path_reached_through_an_archived_symlink_fails_the_backup() {
    // Was: `paths = ["/x/app", "/x/app/current/.env"]` with `current -> /x/releases/42`
    // archived the link and then a file through it: backup exit 0, restore refused the entry.
    let src = tempfile::tempdir().unwrap();
    let app = src.path().join("app");
    let release = src.path().join("releases/42");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::create_dir_all(&release).unwrap();
    std::fs::write(release.join(".env"), "A=1\n").unwrap();
    std::os::unix::fs::symlink(&release, app.join("current")).unwrap();
    let a = app.display().to_string();
    let ws = files_workspace(&[a.clone(), format!("{a}/current/.env")]);
    let (code, out, err) = ws.run(&["backup"]);
    assert_ne!(code, 0, "an unrestorable archive was reported complete:\n{out}\n{err}");
    assert!(
        err.contains("reached through the symlink") && err.contains(&format!("{a}/current")),
        "{err}"
    );
    assert!(err.contains("list the link's target instead"), "{err}");
}

// ---------- NATS credentials ----------

/// A stream `ORDERS` with `count` messages on `n`.
fn seed_orders(n: &Nats, count: usize) {
    let mut c = n.client();
    let r = c.request_json(
        "$JS.API.STREAM.CREATE.ORDERS",
        serde_json::json!({"name": "ORDERS", "subjects": ["orders.>"], "storage": "file"}),
    );
    assert!(r.get("error").is_none(), "{r}");
    for i in 0..count {
        let ack: serde_json::Value =
            serde_json::from_slice(&c.request(&format!("orders.{i}"), format!("order #{i}").as_bytes())).unwrap();
        assert_eq!(ack["seq"], (i + 1) as u64, "{ack}");
    }
}

fn orders_state(n: &Nats) -> serde_json::Value {
    let info = n
        .client()
        .request_json("$JS.API.STREAM.INFO.ORDERS", serde_json::json!({}));
    info["state"].clone()
}

/// A workspace whose one source, `events`, snapshots NATS through `url` (may hold `${VAR}`s).
fn nats_snapshot_workspace(url: &str) -> Workspace {
    let ws = Workspace::new();
    ws.write_config(
        &ws.fs_storage_toml("local"),
        &format!("[[source]]\nname = \"events\"\ntype = \"nats\"\nmode = \"snapshot\"\nurl = \"{url}\"\n"),
    );
    ws
}

/// `drctl list --json` with `env` (the config names its `${VAR}`s).
fn list_json_env(ws: &Workspace, env: &[(&str, &str)]) -> Vec<serde_json::Value> {
    let (code, out, err) = ws.run_env(&["list", "--json"], env);
    assert_eq!(code, 0, "list failed:\n{out}\n{err}");
    serde_json::from_str(&out).unwrap()
}

/// Backs up `auth`-protected NATS with credentials in the URL, restores into a second server
/// with the same auth through `--target-url`, and compares the stream.
fn nats_round_trip_with_url_credentials(auth: NatsAuth, userinfo: &str, env: &[(&str, &str)]) {
    let n = Nats::start_with_auth(auth);
    seed_orders(&n, 25);
    let ws = nats_snapshot_workspace(&format!("nats://{userinfo}@127.0.0.1:{}", n.port));
    let (code, out, err) = ws.run_env(&["backup"], env);
    assert_eq!(code, 0, "backup with URL credentials failed:\n{out}\n{err}");
    let list = list_json_env(&ws, env);
    assert_eq!(list[0]["facts"]["streams"]["ORDERS"]["messages"], 25, "{list:?}");

    let fresh = Nats::start_with_auth(auth);
    let secret_userinfo = env
        .iter()
        .fold(userinfo.to_string(), |u, (k, v)| u.replace(&format!("${{{k}}}"), v));
    let target = format!("nats://{secret_userinfo}@127.0.0.1:{}", fresh.port);
    let ident = ws.identity.to_str().unwrap().to_string();
    let (code, out, err) = ws.run_env(
        &["restore", "--at", "now", "--source", "events", "--identity", &ident],
        &[env, &[("DRCTL_TARGET_URL", target.as_str())]].concat(),
    );
    assert_eq!(code, 0, "restore with URL credentials failed:\n{out}\n{err}");
    let (before, after) = (orders_state(&n), orders_state(&fresh));
    assert_eq!(after["messages"], 25, "{after}");
    assert_eq!(after["last_seq"], before["last_seq"], "{after}");
}

#[test]
fn nats_snapshot_authenticates_with_user_and_password_from_the_url() {
    // Was: `nats://user:pw@host`, as documented, never authenticated (async-nats ignores URL
    // credentials): "authorization violation".
    nats_round_trip_with_url_credentials(
        NatsAuth::UserPassword,
        &format!("{NATS_USER}:${{DRCTL_NATS_PASSWORD}}"),
        &[("DRCTL_NATS_PASSWORD", NATS_PASSWORD)],
    );
}

#[test]
fn nats_snapshot_authenticates_with_a_token_from_the_url() {
    // `nats://TOKEN@host`: a user without a password is a token, as in the NATS CLI and nats.go.
    nats_round_trip_with_url_credentials(
        NatsAuth::Token,
        "${DRCTL_NATS_TOKEN}",
        &[("DRCTL_NATS_TOKEN", NATS_TOKEN)],
    );
}

#[test]
fn nats_wrong_password_is_a_clear_error_without_the_password() {
    let n = Nats::start_with_auth(NatsAuth::UserPassword);
    seed_orders(&n, 1);
    let wrong = "wrong-n4ts-pw-Kp3";
    let ws = nats_snapshot_workspace(&format!(
        "nats://{NATS_USER}:${{DRCTL_NATS_PASSWORD}}@127.0.0.1:{}",
        n.port
    ));
    let (code, out, err) = ws.run_env(
        &["-vv", "backup"],
        &[("DRCTL_NATS_PASSWORD", wrong), ("RUST_LOG", "trace")],
    );
    assert_ne!(code, 0, "a wrong password was accepted:\n{out}\n{err}");
    let last = err.lines().rfind(|l| l.starts_with("error:")).unwrap_or_default();
    assert!(last.contains("authorization"), "{last}");
    assert!(
        last.contains(NATS_USER) && last.contains("password"),
        "the error says what to check: {last}"
    );
    assert!(
        !out.contains(wrong) && !err.contains(wrong),
        "the password is printed:\n{out}\n{err}"
    );
    assert_eq!(list_json_env(&ws, &[("DRCTL_NATS_PASSWORD", wrong)]).len(), 0);
}
