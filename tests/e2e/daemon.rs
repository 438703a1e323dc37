//! The daemon against real servers: schedules, pruning, failures that get noticed, signals.

use crate::support::*;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

fn scrape(port: u16) -> prometheus_parse::Scrape {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap()
}

fn metric(scrape: &prometheus_parse::Scrape, name: &str, source: &str) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && s.labels.get("source") == Some(source))
        .map(|s| match s.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

fn setup(pg: &Postgres, extra: &str) -> Workspace {
    let ws = Workspace::new();
    ws.write_config(
        &ws.fs_storage_toml("local"),
        &format!(
            "{}retention = {{ keep_last = 2 }}\n\n{extra}",
            pg_source_toml("app-db", pg, "app")
        ),
    );
    ws
}

fn seeded_pg() -> Postgres {
    let pg = Postgres::start();
    pg.createdb("app");
    pg.psql(
        "app",
        "create table t (x int, s text); insert into t select g, md5(g::text) from generate_series(1, 5000) g;",
    );
    pg
}

#[test]
fn daemon_backs_up_on_schedule_prunes_and_exports_metrics() {
    let pg = seeded_pg();
    let ws = setup(&pg, "[[job]]\nname = \"every-2s\"\nschedule = \"*/2 * * * * *\"\n");
    ws.ok(&["validate"]);
    let mport = free_port();
    let d = Daemon::start(&ws, Some(mport));
    d.wait_for("three successful runs", Duration::from_secs(40), |d| {
        d.count("run succeeded") >= 3
    });
    let (code, secs, log) = d.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(secs < 10.0);
    assert!(log.matches("backup complete").count() >= 3, "{log}");
    // keep_last = 2: the daemon pruned after each successful run.
    let list = ws.list_json();
    assert_eq!(list.len(), 2, "{list:#?}");
    let status: serde_json::Value = serde_json::from_str(&ws.ok(&["status", "--json"])).unwrap();
    let s = &status["sources"][0];
    assert_eq!(s["source"], "app-db");
    assert!(s["last_success"]["id"].is_string(), "{status:#}");
    assert!(s["next_run"].is_string(), "{status:#}");
}

#[test]
fn metrics_are_prometheus_text_with_drctl_names() {
    let pg = seeded_pg();
    let ws = setup(&pg, "[[job]]\nname = \"every-2s\"\nschedule = \"*/2 * * * * *\"\n");
    ws.daemon_settings("stale_check_interval = \"1s\"");
    ws.ok(&["validate"]);
    let mport = free_port();
    let d = Daemon::start(&ws, Some(mport));
    d.wait_for("a successful run", Duration::from_secs(30), |d| {
        d.count("run succeeded") >= 1
    });
    std::thread::sleep(Duration::from_millis(1500));
    let m = scrape(mport);
    let last = metric(&m, "drctl_backup_last_success_timestamp_seconds", "app-db").expect("last success metric");
    assert!((last - chrono::Utc::now().timestamp() as f64).abs() < 60.0, "{last}");
    assert!(metric(&m, "drctl_backup_read_bytes_total", "app-db").unwrap() > 100_000.0);
    assert!(metric(&m, "drctl_backup_stored_bytes_total", "app-db").unwrap() > 0.0);
    assert!(metric(&m, "drctl_backup_last_duration_seconds", "app-db").unwrap() > 0.0);
    let age = metric(&m, "drctl_backup_newest_age_seconds", "app-db").expect("age metric");
    assert!((0.0..60.0).contains(&age), "{age}");
    let (code, _, log) = d.stop();
    assert_eq!(code, Some(0), "{log}");
}

#[test]
fn a_failing_backup_is_noticed_and_nothing_is_pruned() {
    let pg = seeded_pg();
    let rx = Receiver::start();
    let ws = setup(
        &pg,
        &format!(
            "[[job]]\nname = \"every-2s\"\nschedule = \"*/2 * * * * *\"\nping_url = \"{}\"\n\n[[notify]]\ntype = \"webhook\"\nurl = \"{}\"\n\n[[notify]]\ntype = \"slack\"\nurl = \"http://127.0.0.1:9/unreachable-notifier\"\n",
            rx.url("/ping/abc"),
            rx.url("/hook")
        ),
    );
    ws.ok(&["backup", "--no-prune"]);
    ws.ok(&["backup", "--no-prune"]);
    ws.ok(&["backup", "--no-prune"]);
    assert_eq!(ws.list_json().len(), 3);
    drop(pg); // the database goes away
    let mport = free_port();
    let d = Daemon::start(&ws, Some(mport));
    d.wait_for("a failed run", Duration::from_secs(30), |d| d.count("run failed") >= 1);
    d.wait_for("the /fail ping", Duration::from_secs(15), |_| {
        rx.requests().iter().any(|r| r.1 == "/ping/abc/fail")
    });
    let m = scrape(mport);
    assert!(metric(&m, "drctl_backup_failures_total", "app-db").unwrap() >= 1.0);
    let (code, _, log) = d.stop();
    assert_eq!(code, Some(0), "{log}");

    let reqs = rx.requests();
    assert!(
        reqs.iter().any(|r| r.0 == "GET" && r.1 == "/ping/abc/start"),
        "{reqs:?}"
    );
    let fail = reqs.iter().find(|r| r.1 == "/ping/abc/fail").unwrap();
    assert!(
        fail.2.contains("app-db") && fail.2.contains("cannot connect"),
        "{fail:?}"
    );
    let hook = reqs.iter().find(|r| r.1 == "/hook").expect("webhook payload");
    let v: serde_json::Value = serde_json::from_str(&hook.2).unwrap();
    assert_eq!(v["event"], "backup_failed");
    assert_eq!(v["source"], "app-db");
    assert!(v["message"].as_str().unwrap().contains("cannot connect"), "{v}");
    assert!(log.contains("notifier failed"), "the broken notifier is logged: {log}");
    assert!(
        !log.contains("unreachable-notifier"),
        "notifier URLs are secrets and stay out of logs"
    );

    let status: serde_json::Value = serde_json::from_str(&ws.ok(&["status", "--json"])).unwrap();
    assert!(
        status["sources"][0]["last_failure"]["error"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{status:#}"
    );
    assert_eq!(ws.list_json().len(), 3, "a failed run must not prune");
}

/// A job scheduled far away with `max_age = "1s"`, alerting to `rx`'s /discord: whatever backup
/// exists is stale a second after it is taken.
fn stale_setup(pg: &Postgres, rx: &Receiver) -> Workspace {
    setup(
        pg,
        &format!("[[job]]\nname = \"yearly\"\nschedule = \"0 0 1 1 *\"\nmax_age = \"1s\"\n\n[[notify]]\ntype = \"discord\"\nurl = \"{}\"\n", rx.url("/discord")),
    )
}

#[test]
fn a_stale_source_raises_an_alert() {
    let pg = seeded_pg();
    let rx = Receiver::start();
    let ws = stale_setup(&pg, &rx);
    ws.ok(&["backup"]);
    std::thread::sleep(Duration::from_secs(2));
    let d = Daemon::start(&ws, None);
    d.wait_for("a stale alert", Duration::from_secs(20), |_| {
        rx.requests().iter().any(|r| r.1 == "/discord")
    });
    let (code, _, _) = d.stop();
    assert_eq!(code, Some(0));
    let r = rx.requests().into_iter().find(|r| r.1 == "/discord").unwrap();
    let v: serde_json::Value = serde_json::from_str(&r.2).unwrap();
    assert!(v["content"].as_str().unwrap().contains("max_age 1s"), "{v}");
}

#[test]
fn a_backup_dated_in_the_future_does_not_silence_the_max_age_alert() {
    // Was: the newest backup by date decided freshness, so one backup from a host whose clock
    // was years ahead (age -111008929 s) silenced the max_age alert forever.
    let pg = seeded_pg();
    let rx = Receiver::start();
    let ws = stale_setup(&pg, &rx);
    ws.ok(&["backup"]);
    // A copy of its manifest dated three years ahead, as a host with a wrong clock writes it.
    let manifests = ws.fs_root("local").join("manifests/app-db");
    let real = std::fs::read_dir(&manifests).unwrap().next().unwrap().unwrap().path();
    let mut m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&real).unwrap()).unwrap();
    let future_id = "20291203T000000Z-0000beef";
    m["id"] = future_id.into();
    m["started_at"] = "2029-12-03T00:00:00Z".into();
    m["finished_at"] = "2029-12-03T00:00:01Z".into();
    std::fs::write(manifests.join(format!("{future_id}.json")), m.to_string()).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let d = Daemon::start(&ws, None);
    let said = |what: &str| rx.requests().iter().any(|r| r.1 == "/discord" && r.2.contains(what));
    d.wait_for(
        "a stale alert and a future-dated alert",
        Duration::from_secs(20),
        |_| said("max_age 1s") && said(&format!("backup {future_id} of 'app-db'")),
    );
    let (code, _, _) = d.stop();
    assert_eq!(code, Some(0));
    assert!(said("in the future"));
}

fn slow_pg_dump_line(dir: &Path) -> String {
    format!("pg_dump_path = \"{}\"\n", slow_pg_dump(dir, "exec sleep 60").display())
}

#[test]
fn sigterm_during_a_large_backup_exits_0_within_grace_and_commits_nothing() {
    // Several multipart parts are in flight when the signal comes.
    let pg = big_pg();
    let s3 = S3Server::start();
    let ws = Workspace::new();
    let src = pg_source_toml("app-db", &pg, "app");
    let daemon_cfg = "[[job]]\nname = \"every-2s\"\nschedule = \"*/2 * * * * *\"\n";
    ws.write_config(
        &s3.storage_toml("s3"),
        &format!("{src}{}\n{daemon_cfg}", slow_pg_dump_line(ws.path())),
    );
    ws.daemon_settings("grace_period = \"2s\"");
    ws.ok(&["validate"]);
    let d = Daemon::start(&ws, None);
    d.wait_for("pg_dump to start", Duration::from_secs(20), |d| {
        d.count("starting pg_dump") >= 1
    });
    std::thread::sleep(Duration::from_secs(3)); // the dump is out; the upload waits for the end
    let (code, secs, log) = d.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(secs < 8.0, "took {secs}s for a 2s grace period:\n{log}");
    assert!(log.contains("grace period over"), "{log}");
    assert_eq!(ws.list_json().len(), 0, "no manifest may exist");
    assert_eq!(s3.open_multipart_uploads(), 0, "multipart uploads were not aborted");
    // The next run succeeds.
    ws.write_config(&s3.storage_toml("s3"), &src);
    ws.ok(&["backup"]);
    assert_eq!(ws.list_json().len(), 1);
}

#[test]
fn sighup_with_a_broken_config_keeps_the_old_one() {
    let pg = seeded_pg();
    let ws = setup(&pg, "[[job]]\nname = \"every-2s\"\nschedule = \"*/2 * * * * *\"\n");
    let good = std::fs::read_to_string(ws.path().join("drctl.toml")).unwrap();
    let d = Daemon::start(&ws, None);
    d.wait_for("a first run", Duration::from_secs(30), |d| {
        d.count("run succeeded") >= 1
    });
    std::fs::write(
        ws.path().join("drctl.toml"),
        good.replace("*/2 * * * * *", "0 61 * * *"),
    )
    .unwrap();
    d.signal("HUP");
    d.wait_for("the reload to be rejected", Duration::from_secs(10), |d| {
        d.count("reload rejected") >= 1
    });
    assert!(d.log().contains("hour 61 out of range"), "{}", d.log());
    let before = d.count("run succeeded");
    d.wait_for("runs on the old schedule", Duration::from_secs(20), |d| {
        d.count("run succeeded") >= before + 2
    });
    // A good reload is taken.
    std::fs::write(
        ws.path().join("drctl.toml"),
        good.replace("*/2 * * * * *", "*/3 * * * * *"),
    )
    .unwrap();
    d.signal("HUP");
    d.wait_for("the reload", Duration::from_secs(10), |d| {
        d.count("config reloaded") >= 1
    });
    let (code, _, log) = d.stop();
    assert_eq!(code, Some(0), "{log}");
}

#[test]
fn scheduled_verification_alerts_on_a_damaged_backup_and_exports_rto() {
    let _g = shared(); // runs a verification sandbox
    let pg = seeded_pg();
    let rx = Receiver::start();
    let ws = setup(
        &pg,
        &format!(
            "[[notify]]\ntype = \"webhook\"\nurl = \"{}\"\n\n[verify]\nschedule = \"*/2 * * * * *\"\n",
            rx.url("/hook")
        ),
    );
    let cfg = std::fs::read_to_string(ws.path().join("drctl.toml")).unwrap();
    std::fs::write(
        ws.path().join("drctl.toml"),
        cfg.replace(
            "[encryption]\n",
            &format!("[encryption]\nidentity_file = \"{}\"\n", ws.identity.display()),
        ),
    )
    .unwrap();
    ws.ok(&["validate"]);
    ws.ok(&["backup"]);
    let mport = free_port();
    let d = Daemon::start(&ws, Some(mport));
    d.wait_for("a passing verification", Duration::from_secs(40), |d| {
        d.count("verification passed") >= 1
    });
    let m = scrape(mport);
    assert!(metric(&m, "drctl_verify_rto_seconds", "app-db").unwrap() > 0.0);
    assert!(metric(&m, "drctl_verify_last_success_timestamp_seconds", "app-db").unwrap() > 0.0);

    // Damage the stored object: the next scheduled verification fails and alerts.
    let root = ws.fs_root("local");
    let data = root.join(files_under(&root).into_iter().find(|f| f.starts_with("data/")).unwrap());
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&data, bytes).unwrap();
    d.wait_for("a verify_failed notification", Duration::from_secs(40), |_| {
        rx.requests()
            .iter()
            .any(|r| r.1 == "/hook" && r.2.contains("verify_failed"))
    });
    let m = scrape(mport);
    assert!(metric(&m, "drctl_verify_failures_total", "app-db").unwrap() >= 1.0);
    let (code, _, log) = d.stop();
    assert_eq!(code, Some(0), "{log}");
    let status = ws.ok(&["status"]);
    assert!(status.contains("verification  FAILED"), "{status}");
}
