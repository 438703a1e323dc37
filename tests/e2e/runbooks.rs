//! The runbook drill: extracts the ` ```sh ` blocks of runbooks 2–6 (and 1, with the stack in
//! containers, in runbook_containers.rs) and runs them, in order, with
//! bash against throwaway servers and local storage, the variables of each runbook's ` ```sh env `
//! block supplied by the drill. A runbook whose commands drift from the CLI fails here.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn runbooks_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks")
}

/// The runnable blocks of a runbook, in order (` ```sh ` only; `env` and `no-drill` are skipped).
fn runnable_blocks(md: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<(bool, String)> = None;
    for line in md.lines() {
        match &mut current {
            None => {
                if let Some(info) = line.trim_start().strip_prefix("```") {
                    if !info.is_empty() || line.trim() == "```" {
                        current = Some((info.trim() == "sh", String::new()));
                    }
                }
            }
            Some((run, text)) => {
                if line.trim_start().starts_with("```") {
                    if *run {
                        blocks.push(std::mem::take(text));
                    }
                    current = None;
                } else {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
    }
    assert!(current.is_none(), "unclosed code block");
    blocks
}

pub(crate) fn run_runbook(name: &str, env: &[(&str, String)]) -> String {
    let md = std::fs::read_to_string(runbooks_dir().join(name)).unwrap();
    let blocks = runnable_blocks(&md);
    assert!(!blocks.is_empty(), "{name} has no runnable block");
    let script = format!("set -euo pipefail\n{}", blocks.join("\n"));
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_drctl")).parent().unwrap().to_path_buf();
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(&script);
    cmd.env(
        "PATH",
        format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default()),
    );
    cmd.env_remove("DRCTL_TARGET_URL").env("RUST_LOG", "drctl=warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "runbook {name} failed (exit {:?}):\n--- script ---\n{script}\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn every_runbook_states_trigger_prerequisites_steps_check_and_time() {
    for i in 1..=9 {
        let name = std::fs::read_dir(runbooks_dir())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with(&format!("{i:02}-")))
            .unwrap_or_else(|| panic!("runbook {i} missing"));
        let md = std::fs::read_to_string(runbooks_dir().join(&name)).unwrap();
        for needle in ["**Trigger:**", "## How to know it worked", "**Expected time:**"] {
            assert!(md.contains(needle), "{name} lacks {needle}");
        }
        assert!(
            md.contains("**You need:**") || md.contains("**What it means:**") || i == 7,
            "{name} lacks prerequisites"
        );
    }
}

struct Stack {
    pg: Postgres,
    redis: Redis,
    nats: Nats,
    app_dir: tempfile::TempDir,
    ws: Workspace,
}

fn app_path(s: &Stack) -> PathBuf {
    s.app_dir.path().join("app")
}

fn stack() -> Stack {
    let pg = Postgres::start();
    pg.createdb("app");
    pg.psql(
        "app",
        "create table users (id int primary key, name text not null); insert into users select g, 'user ' || g from generate_series(1, 300) g;",
    );
    let redis = Redis::start();
    let mut c = redis::Client::open(redis.url()).unwrap().get_connection().unwrap();
    for i in 0..200 {
        redis::cmd("SET")
            .arg(format!("session:{i}"))
            .arg(i)
            .arg("EX")
            .arg(86400)
            .query::<()>(&mut c)
            .unwrap();
    }
    let nats = Nats::start();
    let mut nc = nats.client();
    nc.request_json(
        "$JS.API.STREAM.CREATE.ORDERS",
        serde_json::json!({"name": "ORDERS", "subjects": ["orders.>"]}),
    );
    for i in 0..50 {
        nc.request(&format!("orders.{i}"), b"order");
    }
    let app_dir = tempfile::tempdir().unwrap();
    let app = app_dir.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join(".env"), "SECRET=drill\n").unwrap();
    private(&app.join(".env"));
    std::fs::write(app.join("Caddyfile"), "example.com {\n}\n").unwrap();
    let ws = Workspace::new();
    let sources = format!(
        "{}[[source]]\nname = \"cache\"\ntype = \"redis\"\nurl = \"{}\"\n\n[[source]]\nname = \"events\"\ntype = \"nats\"\nmode = \"snapshot\"\nurl = \"nats://127.0.0.1:{}\"\n\n[[source]]\nname = \"config\"\ntype = \"files\"\npaths = [\"{}\"]\n",
        pg_source_toml("app-db", &pg, "app"),
        redis.url_env("DRCTL_REDIS_PASSWORD"),
        nats.port,
        app.display()
    );
    ws.write_config(&ws.fs_storage_toml("store"), &sources);
    ws.ok(&["backup"]);
    Stack {
        pg,
        redis,
        nats,
        app_dir,
        ws,
    }
}

/// With the `default` user spelled out: redis-cli sends an empty user name otherwise.
fn redis_cli_url(r: &Redis) -> String {
    format!("redis://default:{REDIS_PASSWORD}@127.0.0.1:{}", r.port)
}

fn base_env(s: &Stack, restore_dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("DRCTL_CONFIG", s.ws.path().join("drctl.toml").display().to_string()),
        ("IDENTITY", s.ws.identity.display().to_string()),
        ("AT", "now".into()),
        ("RESTORE_DIR", restore_dir.display().to_string()),
        ("APP_DIR", app_path(s).display().to_string()),
        ("DRCTL_PG_PASSWORD", PG_PASSWORD.into()),
        ("DRCTL_REDIS_PASSWORD", REDIS_PASSWORD.into()),
        ("PGUSER", "postgres".into()),
        ("PGPASSWORD", PG_PASSWORD.into()),
        ("PGHOST", "127.0.0.1".into()),
    ]
}

#[test]
fn drill_runbooks_2_to_6() {
    let _g = shared(); // a password on redis-cli's command line, verification sandboxes
    let s = stack();
    let source_db = s.pg.contents("app");

    // 1. Total VPS loss is drilled with the stack in containers (runbook_containers.rs).

    // 2. A bad migration deleted users.
    s.pg.psql("app", "delete from users where id > 100");
    let rd = tempfile::tempdir().unwrap();
    let mut env = base_env(&s, &rd.path().join("r"));
    env.push(("PGPORT", s.pg.port.to_string()));
    run_runbook("02-postgres-bad-migration.md", &env);
    assert_eq!(
        s.pg.psql("app", "select count(*) from users").trim(),
        "300",
        "runbook 2 copied the rows back"
    );

    // 3. Redis poisoned, NATS stream damaged: both restored over the running servers.
    let mut c = redis::Client::open(s.redis.url()).unwrap().get_connection().unwrap();
    redis::cmd("FLUSHALL").query::<()>(&mut c).unwrap();
    redis::cmd("SET").arg("poison").arg("1").query::<()>(&mut c).unwrap();
    s.nats
        .client()
        .request_json("$JS.API.STREAM.PURGE.ORDERS", serde_json::json!({}));
    let rd = tempfile::tempdir().unwrap();
    let mut env = base_env(&s, &rd.path().join("r"));
    env.push(("REDIS_URL", redis_cli_url(&s.redis)));
    env.push(("NATS_URL", format!("nats://127.0.0.1:{}", s.nats.port)));
    run_runbook("03-redis-and-nats.md", &env);
    let n: u64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 200, "runbook 3 restored Redis without the poison");
    let info = s
        .nats
        .client()
        .request_json("$JS.API.STREAM.INFO.ORDERS", serde_json::json!({}));
    assert_eq!(info["state"]["messages"], 50, "runbook 3 restored the stream");

    // 4. The .env is gone.
    std::fs::remove_file(app_path(&s).join(".env")).unwrap();
    let rd = tempfile::tempdir().unwrap();
    run_runbook("04-config-and-secrets-lost.md", &base_env(&s, &rd.path().join("r")));
    assert_eq!(
        std::fs::read_to_string(app_path(&s).join(".env")).unwrap(),
        "SECRET=drill\n"
    );

    // 5. Without drctl: stock tools on a local copy of the storage.
    let work = tempfile::tempdir().unwrap();
    let mut env = base_env(&s, work.path());
    env.push(("STORE", s.ws.fs_root("store").display().to_string()));
    env.push(("WORK", work.path().join("w").display().to_string()));
    env.push(("PGPORT", s.pg.port.to_string()));
    run_runbook("05-restore-without-drctl.md", &env);
    assert_eq!(
        s.pg.contents("app_manual"),
        source_db,
        "runbook 5 restored the database by hand"
    );

    // 6. Key management (last: it edits the config).
    let keys = tempfile::tempdir().unwrap();
    let rd = tempfile::tempdir().unwrap();
    let mut env = base_env(&s, &rd.path().join("r"));
    env.push(("KEYS", keys.path().join("k").display().to_string()));
    run_runbook("06-key-management.md", &env);
    assert!(
        s.ws.config_text().matches("age1").count() >= 2,
        "runbook 6 added a recipient"
    );
}
