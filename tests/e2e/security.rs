//! Secrets stay out of logs (at every level) and out of child processes' command lines.

use crate::support::*;
use std::time::{Duration, Instant};

#[test]
fn secrets_never_appear_in_trace_logs_or_process_lists() {
    // Other tests put these passwords on command lines of their own.
    let _g = exclusive();
    let pg = Postgres::start();
    pg.createdb("app");
    pg.psql(
        "app",
        "create table t (x int); insert into t select generate_series(1, 10000);",
    );
    let r = Redis::start();
    let nats = Nats::start_with_auth(NatsAuth::UserPassword);
    let s3 = S3Server::start();
    let ws = Workspace::new();
    let s3_secret = "S3-secret-Zq81-never-log-me";
    // A pg_dump that lingers, so the process list can be read while it runs.
    let slow = slow_pg_dump(ws.path(), "sleep 2");
    ws.write_config(
        &s3.storage_toml("s3"),
        &format!(
            "{}pg_dump_path = \"{}\"\n[[source]]\nname = \"cache\"\ntype = \"redis\"\nurl = \"{}\"\n\
             [[source]]\nname = \"events\"\ntype = \"nats\"\nmode = \"snapshot\"\nurl = \"nats://{NATS_USER}:${{DRCTL_NATS_PASSWORD}}@127.0.0.1:{}\"\n",
            pg_source_toml("app-db", &pg, "app"),
            slow.display(),
            r.url_env("DRCTL_REDIS_PASSWORD"),
            nats.port
        ),
    );
    let child = ws
        .drctl()
        .args(["-vv", "backup"])
        .env("RUST_LOG", "trace")
        .env("DRCTL_TEST_S3_SECRET", s3_secret)
        .env("DRCTL_NATS_PASSWORD", NATS_PASSWORD)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read every process's command line while the backup runs.
    let mut cmdlines = String::new();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) {
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
                cmdlines.push_str(&String::from_utf8_lossy(&c).replace('\0', " "));
                cmdlines.push('\n');
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.lines().count() > 50,
        "trace logging is on: {} lines",
        log.lines().count()
    );
    assert!(cmdlines.contains("--format=custom"), "pg_dump was seen running");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for secret in [PG_PASSWORD, REDIS_PASSWORD, s3_secret, NATS_PASSWORD] {
        assert!(!stdout.contains(secret), "secret {secret:?} on stdout");
        let leaks: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(secret))
            .map(|l| &l[..l.len().min(300)])
            .collect();
        assert!(leaks.is_empty(), "secret {secret:?} in the log:\n{}", leaks.join("\n"));
        assert!(!cmdlines.contains(secret), "secret {secret:?} in a command line");
    }
    // Checked after the leaks, so a failing run still shows whether it leaked.
    assert!(out.status.success(), "{log}");
    assert!(stdout.contains("events"), "the NATS source was backed up: {stdout}");
}
