//! Issue #18: the monitoring users already run. Pings in the healthchecks, Uptime Kuma and
//! template styles, notifiers (Telegram, ntfy, e-mail over TLS, webhooks) that speak once per
//! transition, and the Prometheus rules and Grafana dashboard checked against the series a
//! running daemon really exports. Every receiver is a real server on loopback.

use crate::support::*;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

fn http_get(port: u16, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (head.to_string(), body.to_string())
}

fn scrape(port: u16) -> prometheus_parse::Scrape {
    let body = http_get(port, "/metrics").1;
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap()
}

fn sample(scrape: &prometheus_parse::Scrape, name: &str, label: (&str, &str)) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && s.labels.get(label.0) == Some(label.1))
        .map(|s| match s.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

/// A workspace with one files source `docs` (the directory returned; remove it and the
/// backup fails with "does not exist") on the fs storage `store`, plus `extra` config.
fn files_ws(extra: &str) -> (tempfile::TempDir, PathBuf, Workspace) {
    let src = tempfile::tempdir().unwrap();
    let dir = src.path().join("docs");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("a.txt"), "alpha").unwrap();
    let ws = Workspace::new();
    ws.write_config(
        &ws.fs_storage_toml("store"),
        &format!(
            "[[source]]\nname = \"docs\"\ntype = \"files\"\npaths = [\"{}\"]\n\n{extra}",
            dir.display()
        ),
    );
    (src, dir, ws)
}

/// The query of a request path as decoded pairs.
fn query(path: &str) -> Vec<(String, String)> {
    let q = path.split_once('?').map(|(_, q)| q).unwrap_or("");
    url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

fn get<'a>(pairs: &'a [(String, String)], k: &str) -> Option<&'a str> {
    pairs.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
}

#[test]
fn uptime_kuma_push_gets_status_msg_and_ping_on_success_and_failure() {
    let rx = Receiver::start();
    let (_src, dir, ws) = files_ws(&format!(
        "[[job]]\nname = \"every-2s\"\nschedule = \"*/2 * * * * *\"\nping_style = \"uptime-kuma\"\nping_url = \"{}\"\n",
        rx.url("/api/push/KumaT0ken")
    ));
    ws.ok(&["validate"]);
    let d = Daemon::start(&ws, None);
    d.wait_for("an up push", Duration::from_secs(30), |_| {
        rx.requests().iter().any(|r| r.1.contains("status=up"))
    });
    std::fs::remove_dir_all(&dir).unwrap();
    d.wait_for("a down push", Duration::from_secs(30), |_| {
        rx.requests().iter().any(|r| r.1.contains("status=down"))
    });
    let log = d.stop().2;
    let reqs = rx.requests();
    assert!(
        reqs.iter()
            .all(|r| r.0 == "GET" && r.1.starts_with("/api/push/KumaT0ken?")),
        "{reqs:?}"
    );
    let up = query(&reqs.iter().find(|r| r.1.contains("status=up")).unwrap().1);
    assert_eq!(get(&up, "msg"), Some("OK"), "{up:?}");
    assert!(get(&up, "ping").unwrap().parse::<u64>().is_ok(), "{up:?}");
    let down = query(&reqs.iter().find(|r| r.1.contains("status=down")).unwrap().1);
    let msg = get(&down, "msg").unwrap();
    assert!(msg.starts_with("docs: ") && msg.contains("does not exist"), "{msg}");
    assert!(!msg.contains('\n') && msg.len() <= 220, "one bounded line: {msg}");
    assert!(get(&down, "ping").unwrap().parse::<u64>().is_ok());
    assert!(
        !log.contains("KumaT0ken"),
        "the push token stays out of the log:\n{log}"
    );
}

#[test]
fn template_pings_fill_in_msg_and_duration() {
    let rx = Receiver::start();
    let (_src, dir, ws) = files_ws(&format!(
        "[[job]]\nname = \"every-2s\"\nschedule = \"*/2 * * * * *\"\nping_style = \"template\"\nping_success_url = \"{}\"\nping_fail_url = \"{}\"\n",
        rx.url("/ok/{duration_ms}?m={msg}"),
        rx.url("/bad?text={msg}&ms={duration_ms}")
    ));
    ws.ok(&["validate"]);
    let d = Daemon::start(&ws, None);
    d.wait_for("a success ping", Duration::from_secs(30), |_| {
        rx.requests().iter().any(|r| r.1.starts_with("/ok/"))
    });
    std::fs::remove_dir_all(&dir).unwrap();
    d.wait_for("a failure ping", Duration::from_secs(30), |_| {
        rx.requests().iter().any(|r| r.1.starts_with("/bad?"))
    });
    d.stop();
    let reqs = rx.requests();
    let ok = &reqs.iter().find(|r| r.1.starts_with("/ok/")).unwrap().1;
    let ms: &str = ok.trim_start_matches("/ok/").split('?').next().unwrap();
    assert!(ms.parse::<u64>().is_ok(), "{ok}");
    assert_eq!(get(&query(ok), "m"), Some("OK"));
    let bad = query(&reqs.iter().find(|r| r.1.starts_with("/bad?")).unwrap().1);
    assert!(get(&bad, "text").unwrap().contains("does not exist"), "{bad:?}");
    assert!(get(&bad, "ms").unwrap().parse::<u64>().is_ok(), "{bad:?}");
}

#[test]
fn ping_config_mistakes_are_named() {
    let (_src, _dir, ws) = files_ws(
        "[[job]]\nname = \"a\"\nschedule = \"0 3 * * *\"\nping_style = \"uptime-kuma\"\n\n[[job]]\nname = \"b\"\nschedule = \"0 3 * * *\"\nping_style = \"template\"\nping_success_url = \"http://x/{status}\"\n\n[[job]]\nname = \"c\"\nschedule = \"0 3 * * *\"\nping_style = \"pingdom\"\nping_url = \"http://x/\"\n",
    );
    let (code, _, err) = ws.run(&["validate"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("job[0]") && err.contains("needs ping_url"), "{err}");
    assert!(err.contains("job[1]") && err.contains("unknown placeholder"), "{err}");
    assert!(err.contains("job[2]") && err.contains("pingdom"), "{err}");
}

#[test]
fn a_hanging_ping_receiver_does_not_delay_the_next_run() {
    // Was: the daemon awaited each ping (10 s timeout) inside the run, so a receiver that
    // accepts and never answers held every run 20 s: a job every 2 s ran once in 20 s and the
    // ticks in between were skipped as "previous run still going".
    let rx = Receiver::start_hanging();
    let (_src, _dir, ws) = files_ws(&format!(
        "[[job]]\nname = \"every-2s\"\nschedule = \"*/2 * * * * *\"\nping_url = \"{}\"\n",
        rx.url("/hc/uuid")
    ));
    let mport = free_port();
    let d = Daemon::start(&ws, Some(mport));
    d.wait_for("a first run", Duration::from_secs(20), |d| {
        d.count("run succeeded") >= 1
    });
    let t0 = Instant::now();
    d.wait_for("three more runs", Duration::from_secs(12), |d| {
        d.count("run succeeded") >= 4
    });
    assert!(t0.elapsed() < Duration::from_secs(12));
    assert_eq!(d.count("previous run still going"), 0, "{}", d.log());
    // Each ping gives up after 3 attempts of 5 s, logs it and counts it.
    d.wait_for("a counted ping failure", Duration::from_secs(40), |_| {
        sample(&scrape(mport), "drctl_ping_failures_total", ("job_name", "every-2s")).unwrap_or(0.0) >= 1.0
    });
    let log = d.stop().2;
    assert!(log.contains("ping failed"), "{log}");
    assert!(!log.contains("/hc/uuid"), "ping URLs stay out of the log");
    let reqs = rx.requests();
    assert!(reqs.iter().any(|r| r.1 == "/hc/uuid/start"), "{reqs:?}");
}

/// Runs `drctl backup` once good, `fails` times with the source gone, then twice good again.
fn fail_then_recover(ws: &Workspace, dir: &Path, fails: usize, env: &[(&str, &str)]) {
    let (code, _, err) = ws.run_env(&["backup"], env);
    assert_eq!(code, 0, "{err}");
    std::fs::rename(dir, dir.with_extension("away")).unwrap();
    for _ in 0..fails {
        let (code, _, err) = ws.run_env(&["backup"], env);
        assert_eq!(code, 1, "{err}");
        for (_, secret) in env {
            assert!(!err.contains(secret), "{err}");
        }
    }
    std::fs::rename(dir.with_extension("away"), dir).unwrap();
    for _ in 0..2 {
        let (code, _, err) = ws.run_env(&["backup"], env);
        assert_eq!(code, 0, "{err}");
    }
}

#[test]
fn a_source_that_keeps_failing_notifies_once_and_recovers_once() {
    // Was: every failed run sent a notification: a backup failing every 5 minutes sent 288
    // messages a day, and nothing said when it worked again.
    let rx = Receiver::start();
    let (_src, dir, ws) = files_ws(&format!(
        "[[notify]]\ntype = \"webhook\"\nurl = \"{}\"\n",
        rx.url("/hook")
    ));
    fail_then_recover(&ws, &dir, 3, &[]);
    let hooks = |event: &str| {
        rx.requests()
            .iter()
            .filter(|r| r.1 == "/hook")
            .map(|r| serde_json::from_str::<serde_json::Value>(&r.2).unwrap())
            .filter(|v| v["event"] == event)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        hooks("backup_failed").len(),
        1,
        "one failure message, not one per run: {:?}",
        rx.requests()
    );
    let failed = &hooks("backup_failed")[0];
    let text = failed["message"].as_str().unwrap();
    assert!(text.contains("'docs'") && text.contains("does not exist"), "{text}");
    assert!(text.contains("Newest good backup: ") && text.contains(" ago"), "{text}");
    assert!(text.contains("drctl status"), "{text}");
    assert_eq!(hooks("backup_recovered").len(), 1, "{:?}", rx.requests());
    let rec = hooks("backup_recovered")[0]["message"].as_str().unwrap().to_string();
    assert!(rec.contains("'docs' succeeds again"), "{rec}");
    assert_eq!(rx.requests().len(), 2, "success is not in the default `on`");
}

#[test]
fn telegram_and_ntfy_get_the_failure_and_the_recovery() {
    let rx = Receiver::start();
    let (_src, dir, ws) = files_ws(&format!(
        "[[notify]]\ntype = \"telegram\"\nbot_token = \"${{TG_TOKEN}}\"\nchat_id = -1001234567890\napi_url = \"{}\"\n\n[[notify]]\ntype = \"ntfy\"\nurl = \"{}\"\ntoken = \"tk_ntfy\"\non = [\"failure\", \"recovery\", \"success\"]\n",
        rx.url("/tg"),
        rx.url("/drctl-alerts")
    ));
    fail_then_recover(&ws, &dir, 2, &[("TG_TOKEN", "123456:ABC-sekret")]);

    // Telegram: the Bot API's sendMessage with its documented fields, once per transition.
    let tg: Vec<_> = rx.requests().into_iter().filter(|r| r.1.starts_with("/tg/")).collect();
    assert_eq!(tg.len(), 2, "failure + recovery: {tg:?}");
    assert!(
        tg.iter()
            .all(|r| r.0 == "POST" && r.1 == "/tg/bot123456:ABC-sekret/sendMessage"),
        "{tg:?}"
    );
    let m: serde_json::Value = serde_json::from_str(&tg[0].2).unwrap();
    assert_eq!(m["chat_id"], -1001234567890i64, "{m}");
    let t = m["text"].as_str().unwrap();
    assert!(
        t.contains("does not exist") && t.contains("drctl status") && t.chars().count() <= 4096,
        "{m}"
    );
    assert_eq!(m["link_preview_options"]["is_disabled"], true);
    for k in m.as_object().unwrap().keys() {
        assert!(
            ["chat_id", "text", "link_preview_options"].contains(&k.as_str()),
            "not a sendMessage field: {k}"
        );
    }
    let r: serde_json::Value = serde_json::from_str(&tg[1].2).unwrap();
    assert!(r["text"].as_str().unwrap().contains("succeeds again"), "{r}");

    // ntfy asked for successes too: success, failure, success and recovery, success.
    let ntfy: Vec<_> = rx
        .requests()
        .into_iter()
        .zip(rx.headers())
        .filter(|(r, _)| r.1 == "/drctl-alerts")
        .collect();
    let bodies: Vec<&str> = ntfy.iter().map(|(r, _)| r.2.as_str()).collect();
    assert_eq!(ntfy.len(), 5, "{bodies:?}");
    assert!(
        bodies[1].contains("failed") && bodies[2].contains("succeeded") && bodies[3].contains("succeeds again"),
        "{bodies:?}"
    );
    let h = |i: usize, k: &str| {
        ntfy[i]
            .1
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(h(1, "authorization"), "Bearer tk_ntfy");
    assert_eq!(h(1, "priority"), "high");
    assert!(h(1, "title").contains("backup of 'docs' failed"), "{}", h(1, "title"));
}

#[test]
fn a_telegram_error_is_logged_without_the_bot_token() {
    let (_src, _dir, ws) = files_ws(
        "[[notify]]\ntype = \"telegram\"\nbot_token = \"999:tok-SECRET\"\nchat_id = \"@ops\"\napi_url = \"http://127.0.0.1:9\"\non = [\"success\"]\n",
    );
    let (code, _, err) = ws.run(&["backup"]);
    assert_eq!(code, 0, "a notifier never fails the backup: {err}");
    assert!(err.contains("notifier failed") && err.contains("telegram"), "{err}");
    assert!(!err.contains("tok-SECRET"), "{err}");
}

/// A CA and a certificate for `localhost` signed by it (rustls refuses a CA as a server cert).
fn tls_pair(dir: &Path) {
    sh(
        &format!(
            "cd {} && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=test-ca 2>/dev/null && openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=localhost 2>/dev/null && printf 'subjectAltName=DNS:localhost\\nbasicConstraints=CA:FALSE\\n' > ext && openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile ext 2>/dev/null",
            dir.display()
        ),
        &[],
    );
}

/// aiosmtpd that wants AUTH as `drctl`/`pw with:colon`, on implicit TLS (smtps) or, with
/// `starttls`, plain SMTP that requires STARTTLS before anything else; writes each message to
/// `<dir>/mail-N.eml`.
fn smtp_server(dir: &Path, port: u16, starttls: bool) -> Child {
    let script = r#"
import asyncio, ssl, sys, os
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
d, port, starttls = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "starttls"
class H:
    n = 0
    async def handle_DATA(self, server, session, envelope):
        H.n += 1
        with open(os.path.join(d, f"mail-{H.n}.eml.tmp"), "wb") as f:
            f.write(b"X-Rcpt: " + ",".join(envelope.rcpt_tos).encode() + b"\r\n")
            f.write(b"X-Auth: " + str(session.authenticated).encode() + b"\r\n")
            f.write(envelope.original_content)
        os.rename(os.path.join(d, f"mail-{H.n}.eml.tmp"), os.path.join(d, f"mail-{H.n}.eml"))
        return "250 OK"
def auth(server, session, envelope, mechanism, data):
    ok = data.login == b"drctl" and data.password == b"pw with:colon"
    return AuthResult(success=ok)
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(os.path.join(d, "srv.pem"), os.path.join(d, "srv.key"))
if starttls:
    c = Controller(H(), hostname="127.0.0.1", port=port, tls_context=ctx, require_starttls=True, authenticator=auth, auth_require_tls=True, auth_required=True)
else:
    c = Controller(H(), hostname="127.0.0.1", port=port, ssl_context=ctx, authenticator=auth, auth_require_tls=False, auth_required=True)
c.start()
open(os.path.join(d, "ready"), "w").close()
import time
while True: time.sleep(3600)
"#;
    let child = std::process::Command::new("python3")
        .args([
            "-c",
            script,
            &dir.display().to_string(),
            &port.to_string(),
            if starttls { "starttls" } else { "tls" },
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("smtp.log")).unwrap())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !dir.join("ready").exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "aiosmtpd did not start (pip install aiosmtpd): {}",
            std::fs::read_to_string(dir.join("smtp.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

#[test]
fn email_goes_over_tls_with_the_password_from_the_environment() {
    email_over("smtps", false);
}

#[test]
fn email_over_starttls_with_the_password_from_the_environment() {
    email_over("smtp", true);
}

fn email_over(scheme: &str, starttls: bool) {
    let mail = tempfile::tempdir().unwrap();
    tls_pair(mail.path());
    let port = free_port();
    let mut smtp = smtp_server(mail.path(), port, starttls);
    let (_src, dir, ws) = files_ws(&format!(
        "[[notify]]\ntype = \"email\"\nsmtp_url = \"{scheme}://drctl:${{SMTP_PASSWORD}}@localhost:{port}\"\nfrom = \"drctl <drctl@example.com>\"\nto = [\"ops@example.com\", \"oncall@example.com\"]\nca_file = \"{}\"\n",
        mail.path().join("ca.pem").display()
    ));
    std::fs::remove_dir_all(&dir).unwrap();
    let env = [("SMTP_PASSWORD", "pw with:colon")];
    let (code, _, err) = ws.run_env(&["backup"], &env);
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = ws.run_env(&["backup"], &env);
    assert_eq!(code, 1, "{err}");
    let _ = smtp.kill();
    let _ = smtp.wait();
    assert!(!err.contains("pw with"), "{err}");
    let mails: Vec<String> = files_under(mail.path())
        .into_iter()
        .filter(|f| f.ends_with(".eml"))
        .map(|f| std::fs::read_to_string(mail.path().join(f)).unwrap())
        .collect();
    assert_eq!(mails.len(), 1, "one message for two failed runs: {mails:?}\n{err}");
    // Unfold long header lines (RFC 5322 folding) before looking at them.
    let m = &mails[0].replace("\r\n ", " ").replace("\r\n\t", " ");
    assert!(m.contains("X-Rcpt: ops@example.com,oncall@example.com"), "{m}");
    assert!(m.contains("X-Auth: True"), "{m}");
    assert!(
        m.contains("Subject: drctl on ") && m.contains("backup of 'docs' failed"),
        "{m}"
    );
    assert!(m.contains("drctl status") && m.contains("does not exist"), "{m}");
}

/// The metric names a scrape exports, as series names (`_total` for counters), from its
/// `# TYPE` lines: a family counts even before its first sample.
fn exported_names(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (name, kind) = (it.next()?, it.next()?);
            Some(if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_string()
            })
        })
        .collect()
}

/// Every `drctl_…` series name a text uses.
fn used_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(p) = text[i..].find("drctl_") {
        let start = i + p;
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        let before_ok = start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
        if before_ok {
            out.insert(text[start..end].to_string());
        }
        i = end;
    }
    out
}

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn promtool(args: &[&str]) -> String {
    let out = std::process::Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool (Debian package prometheus; scripts/test.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// A daemon whose source `docs` succeeded once and then fails, with `max_age = "1s"`, and
/// whose source `gone` never had a backup; it verifies every 2 s (`docs` passes, `gone` has
/// nothing to verify): every alerting series has a value. Returns the raw scrape text.
fn scrape_a_failing_stale_daemon() -> String {
    // One daemon run serves both the alert-rules and the dashboard test.
    static SCRAPE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SCRAPE.get_or_init(run_a_failing_stale_daemon).clone()
}

fn run_a_failing_stale_daemon() -> String {
    let rx = Receiver::start();
    let (_src, dir, ws) = files_ws(&format!(
        "[[source]]\nname = \"gone\"\ntype = \"files\"\npaths = [\"/nonexistent/drctl-test\"]\n\n[[job]]\nname = \"every-2s\"\nschedule = \"*/2 * * * * *\"\nmax_age = \"1s\"\nping_url = \"{}\"\n\n[verify]\nschedule = \"*/2 * * * * *\"\n\n[[notify]]\ntype = \"webhook\"\nurl = \"{}\"\n",
        rx.url("/hc"),
        rx.url("/hook")
    ));
    let text = ws.config_text().replacen(
        "[encryption]\n",
        &format!("[encryption]\nidentity_file = \"{}\"\n", ws.identity.display()),
        1,
    );
    ws.set_config(&text);
    ws.daemon_settings("stale_check_interval = \"1s\"");
    let mport = free_port();
    let d = Daemon::start(&ws, Some(mport));
    d.wait_for("a backup of docs", Duration::from_secs(30), |d| {
        d.count("backup complete") >= 1
    });
    d.wait_for("a passing verification", Duration::from_secs(30), |d| {
        d.count("verification passed") >= 1
    });
    std::fs::remove_dir_all(&dir).unwrap();
    d.wait_for("docs failing", Duration::from_secs(30), |_| {
        let s = scrape(mport);
        let f = sample(&s, "drctl_backup_last_failure_timestamp_seconds", ("source", "docs")).unwrap_or(0.0);
        let ok = sample(&s, "drctl_backup_last_success_timestamp_seconds", ("source", "docs")).unwrap_or(0.0);
        f > ok && sample(&s, "drctl_backup_newest_age_seconds", ("source", "docs")).unwrap_or(0.0) > 1.0
    });
    let text = http_get(mport, "/metrics").1;
    d.stop();
    text
}

#[test]
fn the_alert_rules_pass_promtool_and_fire_on_series_a_daemon_exports() {
    let rules = repo_file("scripts/prometheus-alerts.yml");
    promtool(&["check", "rules", &rules.display().to_string()]);
    promtool(&[
        "test",
        "rules",
        &repo_file("scripts/prometheus-alerts.test.yml").display().to_string(),
    ]);

    let text = scrape_a_failing_stale_daemon();
    let exported = exported_names(&text);
    for file in ["scripts/prometheus-alerts.yml", "scripts/prometheus-alerts.test.yml"] {
        let used = used_names(&std::fs::read_to_string(repo_file(file)).unwrap());
        assert!(!used.is_empty());
        let missing: Vec<_> = used.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "{file} uses series drctl does not export: {missing:?}\nexported: {exported:?}"
        );
    }

    // Feed the scraped series back to promtool as they are: the failing and stale alerts fire.
    let scraped = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let mut series = String::new();
    for s in scraped.samples.iter().filter(|s| s.metric.starts_with("drctl_")) {
        let v = match s.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => continue,
        };
        let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        labels.push("instance=\"vps:9187\"".into());
        labels.push("job=\"drctl\"".into());
        series.push_str(&format!(
            "      - series: '{}{{{}}}'\n        values: '{v}x30'\n",
            s.metric,
            labels.join(",")
        ));
    }
    let test = format!(
        r#"rule_files: ["{}"]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
{series}    alert_rule_test:
      - eval_time: 10m
        alertname: DrctlBackupFailing
        exp_alerts:
          - exp_labels: {{ severity: critical, source: docs, instance: "vps:9187", job: drctl }}
            exp_annotations:
              summary: "drctl: backups of docs are failing"
              description: "The last backup of docs on vps:9187 failed and none has succeeded since. Run `drctl status` on the host."
          - exp_labels: {{ severity: critical, source: gone, instance: "vps:9187", job: drctl }}
            exp_annotations:
              summary: "drctl: backups of gone are failing"
              description: "The last backup of gone on vps:9187 failed and none has succeeded since. Run `drctl status` on the host."
      - eval_time: 10m
        alertname: DrctlVerifyFailing
        exp_alerts:
          - exp_labels: {{ severity: critical, source: gone, instance: "vps:9187", job: drctl }}
            exp_annotations:
              summary: "drctl: restore verification of gone fails"
              description: "The last restore verification of gone failed: the backups may not restore. Run `drctl verify --source gone`."
      - eval_time: 15m
        alertname: DrctlBackupStale
        exp_alerts:
          - exp_labels: {{ severity: critical, source: docs, storage: store, instance: "vps:9187", job: drctl }}
            exp_annotations:
              summary: "drctl: newest backup of docs on store is older than max_age"
              description: "The newest backup of docs on storage store is older than its job's max_age. Run `drctl status` and `drctl list --source docs`."
"#,
        rules.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("scraped.test.yml");
    std::fs::write(&t, &test).unwrap();
    promtool(&["test", "rules", &t.display().to_string()]);
}

#[test]
fn the_grafana_dashboard_queries_only_series_a_daemon_exports_and_shows_every_family() {
    let text = std::fs::read_to_string(repo_file("scripts/grafana-dashboard.json")).unwrap();
    let d: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    // Importable: the datasource is an input the import dialog asks for.
    assert_eq!(d["__inputs"][0]["name"], "DS_PROMETHEUS");
    assert!(d["uid"].is_string() && d["title"].is_string());
    let panels = d["panels"].as_array().unwrap();
    let mut ids = std::collections::BTreeSet::new();
    let mut exprs = String::new();
    for p in panels {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate panel id: {p}");
        assert!(p["gridPos"]["w"].as_u64().is_some(), "{p}");
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "a panel without a query: {}", p["title"]);
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}");
            exprs.push_str(t["expr"].as_str().unwrap());
            exprs.push('\n');
        }
    }
    let exported = exported_names(&scrape_a_failing_stale_daemon());
    let used = used_names(&exprs);
    let unknown: Vec<_> = used.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "queries use series drctl does not export: {unknown:?}"
    );
    let unshown: Vec<_> = exported.difference(&used).filter(|n| n.starts_with("drctl_")).collect();
    assert!(unshown.is_empty(), "exported but on no panel: {unshown:?}");
}

#[test]
fn validate_names_an_unset_variable_and_where_it_would_come_from() {
    let (_src, _dir, ws) =
        files_ws("[[notify]]\ntype = \"telegram\"\nbot_token = \"${DRCTL_TEST_UNSET_TG_TOKEN}\"\nchat_id = 1\n");
    let (code, _, err) = ws.run(&["validate"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("notify[0].bot_token") && err.contains("DRCTL_TEST_UNSET_TG_TOKEN is not set"),
        "{err}"
    );
    assert!(
        err.contains("/etc/drctl/env") && err.contains("doppler run -- drctl"),
        "{err}"
    );
}

/// Renders `url` in headless Chromium: (DOM after rendering, screenshot path).
fn chromium(url: &str, out: &Path) -> (String, PathBuf) {
    let shot = out.join("status-page.png");
    let base = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--hide-scrollbars",
        "--window-size=1000,900",
    ];
    let dom = std::process::Command::new("chromium")
        .args(base)
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("chromium (Debian package chromium)");
    assert!(dom.status.success(), "{}", String::from_utf8_lossy(&dom.stderr));
    let s = std::process::Command::new("chromium")
        .args(base)
        .arg(format!("--screenshot={}", shot.display()))
        .arg(url)
        .output()
        .unwrap();
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    (String::from_utf8_lossy(&dom.stdout).into_owned(), shot)
}

#[test]
fn the_status_page_shows_sources_a_chart_and_a_stale_source_in_red() {
    let fresh = tempfile::tempdir().unwrap();
    std::fs::write(fresh.path().join("f.txt"), "fresh").unwrap();
    let (_src, dir, ws) = files_ws(&format!(
        "[[source]]\nname = \"fresh\"\ntype = \"files\"\npaths = [\"{}\"]\n\n[[job]]\nname = \"yearly\"\nsources = [\"docs\"]\nschedule = \"0 0 1 1 *\"\nmax_age = \"1s\"\nping_url = \"https://hc-ping.com/pingsecret-uuid\"\n\n[[job]]\nname = \"hourly\"\nsources = [\"fresh\"]\nschedule = \"0 * * * *\"\nmax_age = \"1h\"\n\n[[notify]]\ntype = \"slack\"\nurl = \"https://hooks.slack.com/services/T000/B000/hooksecret\"\n",
        fresh.path().display()
    ));
    for i in 0..4 {
        // Backups of growing size, so the chart has something to show.
        std::fs::write(dir.join(format!("b{i}.bin")), vec![b'x'; 20_000 * (i + 1)]).unwrap();
        ws.ok(&["backup", "--source", "docs"]);
    }
    ws.ok(&["backup", "--source", "fresh"]);
    std::thread::sleep(Duration::from_secs(2));
    let mport = free_port();
    let d = Daemon::start(&ws, Some(mport));
    d.wait_for("the metrics server", Duration::from_secs(20), |d| {
        d.count("serving metrics") >= 1
    });

    let (head, html) = http_get(mport, "/");
    assert!(
        head.contains("200 OK") && head.to_ascii_lowercase().contains("text/html"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    assert!(!html.contains("<script"), "no JavaScript");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external asset or URL: {html}"
    );
    for secret in [
        "pingsecret",
        "hooksecret",
        "identity",
        &ws.identity.display().to_string(),
    ] {
        assert!(!html.contains(secret), "{secret} on the page");
    }

    let (head, json) = http_get(mport, "/status.json");
    assert!(head.contains("application/json"), "{head}");
    assert!(!json.contains("pingsecret") && !json.contains("hooksecret"));
    let page: serde_json::Value = serde_json::from_str(&json).unwrap();
    let cli: serde_json::Value = serde_json::from_str(&ws.ok(&["status", "--json"])).unwrap();
    let shape = |v: &serde_json::Value| {
        v["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["source"].as_str().unwrap().to_string(),
                    s["last_success"]["id"].clone(),
                    s.as_object().unwrap().keys().cloned().collect::<Vec<_>>(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        shape(&page),
        shape(&cli),
        "/status.json is what `drctl status --json` prints"
    );

    // A real browser: the sources, the chart with one bar per backup, the stale one in red.
    let out = tempfile::tempdir().unwrap();
    let (dom, shot) = chromium(&format!("http://127.0.0.1:{mport}/"), out.path());
    d.stop();
    assert!(dom.contains("<h2>docs</h2>") && dom.contains("<h2>fresh</h2>"), "{dom}");
    let docs = dom
        .split("id=\"source-docs\"")
        .nth(1)
        .unwrap()
        .split("</section>")
        .next()
        .unwrap();
    assert_eq!(docs.matches("<rect").count(), 4, "one bar per backup: {docs}");
    assert!(docs.contains("<polyline"), "{docs}");
    assert!(
        docs.contains("class=\"stale\"") && docs.contains("older than max_age 1s"),
        "{docs}"
    );
    let fresh_sec = dom
        .split("id=\"source-fresh\"")
        .nth(1)
        .unwrap()
        .split("</section>")
        .next()
        .unwrap();
    assert!(
        !fresh_sec.contains("class=\"stale\"") && fresh_sec.contains("class=\"ok\""),
        "{fresh_sec}"
    );
    assert!(dom.contains(".stale,.fail{color:#b00020"), "stale is drawn red");
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 5_000,
        "a rendered screenshot"
    );
    if let Ok(keep) = std::env::var("DRCTL_STATUS_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}

#[test]
fn a_stale_episode_ended_by_another_host_is_notified_once_and_the_next_one_again() {
    // A backup taken elsewhere (another host's state dir, same storage) makes the source fresh
    // without any run of this daemon: the stale alert must end there, or the next stale
    // episode would never be notified.
    let rx = Receiver::start();
    let (_src, _dir, ws) = files_ws(&format!(
        "[[job]]\nname = \"yearly\"\nschedule = \"0 0 1 1 *\"\nmax_age = \"4s\"\n\n[[notify]]\ntype = \"webhook\"\nurl = \"{}\"\n",
        rx.url("/hook")
    ));
    ws.daemon_settings("stale_check_interval = \"1s\"");
    ws.ok(&["backup"]);
    let events = || {
        rx.requests()
            .iter()
            .map(|r| {
                serde_json::from_str::<serde_json::Value>(&r.2).unwrap()["event"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect::<Vec<_>>()
    };
    let d = Daemon::start(&ws, None);
    d.wait_for("a stale alert", Duration::from_secs(20), |_| {
        events().contains(&"backup_stale".to_string())
    });
    // The other host: same storage, its own state dir.
    let other = ws
        .config_text()
        .replace("state_dir = \"./state\"", "state_dir = \"./other-state\"");
    let other_cfg = ws.path().join("other.toml");
    std::fs::write(&other_cfg, other).unwrap();
    private(&other_cfg);
    let out = drctl_cmd(ws.path())
        .env("DRCTL_CONFIG", &other_cfg)
        .arg("backup")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    d.wait_for("fresh, then stale again", Duration::from_secs(20), |_| {
        events().iter().filter(|e| *e == "backup_stale").count() >= 2
    });
    d.stop();
    assert_eq!(
        events(),
        ["backup_stale", "backup_fresh", "backup_stale"],
        "{:?}",
        rx.requests()
    );
}
