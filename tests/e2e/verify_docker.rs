//! The `docker` verification sandbox against a real Docker-API engine (podman's service on a
//! private socket) and a real PostgreSQL server in the container: it passes and fails for the
//! right reasons, publishes the restored data on loopback only, and leaves no container behind
//! after a pass, a failure or Ctrl-C. Without an engine or an image it says what is missing.

use crate::support::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn setup(image: &str, extra_source: &str) -> (Postgres, Workspace) {
    verify_setup(&format!(
        "{extra_source}\n[verify]\nsandbox = \"docker\"\ndocker_image = \"{image}\"\n"
    ))
}

/// `drctl -vv verify` with trace logging on, so the tests can look for secrets in the log.
fn spawn_verify(ws: &Workspace, engine: &DockerEngine) -> std::process::Child {
    ws.drctl()
        .args(["-vv", "verify", "--identity", ws.identity.to_str().unwrap()])
        .env("DOCKER_HOST", &engine.host)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until a sandbox container exists and returns its "name ports" line.
fn wait_for_sandbox(engine: &DockerEngine, child: &mut std::process::Child) -> String {
    let t0 = Instant::now();
    loop {
        if let Some(s) = engine.sandboxes().into_iter().find(|s| s.contains("5432")) {
            return s;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("verify ended ({status}) before a sandbox container was seen");
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "no sandbox container appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn output(child: std::process::Child) -> (i32, String, String) {
    let o = child.wait_with_output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn docker_sandbox_passes_and_fails_on_a_real_server_on_loopback_only_and_leaves_no_container() {
    let _g = exclusive();
    let engine = DockerEngine::start();
    let major = pg_major();
    let image = pg_test_image(major);
    let (_pg, ws) = setup(
        "localhost/drctl-test/postgres:{major}",
        "\n[[source.verify]]\nsql = \"select count(*) = 2000 from users\"\n",
    );
    ws.ok(&["backup"]);

    let mut child = spawn_verify(&ws, &engine);
    let sandbox = wait_for_sandbox(&engine, &mut child);
    // Published on 127.0.0.1 only: the restored copy of production is not on the network.
    assert!(
        sandbox.contains("127.0.0.1:") && !sandbox.contains("0.0.0.0"),
        "{sandbox}"
    );
    let name = sandbox.split_whitespace().next().unwrap();
    let password = engine
        .env_of(name)
        .into_iter()
        .find_map(|e| e.strip_prefix("POSTGRES_PASSWORD=").map(str::to_string))
        .expect("the sandbox container has a POSTGRES_PASSWORD");
    assert!(password.len() >= 32, "a random password: {password}");
    let (code, out, err) = output(child);
    assert_eq!(code, 0, "{out}\n{err}");
    // Regression: bollard printed the container's create request, password included, at debug.
    assert!(err.lines().count() > 50, "trace logging is on: {err}");
    assert!(!err.contains(&password), "the sandbox password is in the log");
    assert!(out.starts_with("PASS app-db"), "{out}");
    assert!(out.contains(&format!("docker ({image}, container ")), "{out}");
    assert!(out.contains("ok   pg_restore: exit 0, no errors"), "{out}");
    assert!(out.contains("row counts: 2 tables, 2300 rows"), "{out}");
    assert!(
        out.contains("assertion `select count(*) = 2000 from users`: true"),
        "{out}"
    );
    assert_eq!(engine.sandboxes(), Vec::<String>::new(), "container left after a pass");
    assert!(verify_leftovers().is_empty(), "{:?}", verify_leftovers());
    let rec = files_under(&ws.fs_root("local"))
        .into_iter()
        .find(|f| f.starts_with("verify/app-db/"))
        .expect("a verification record");
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ws.fs_root("local").join(rec)).unwrap()).unwrap();
    assert_eq!(rec["ok"], true);
    assert!(rec["sandbox"].as_str().unwrap().starts_with("docker ("), "{rec}");

    // The restored rows differ from the counts taken in the dump's snapshot: FAIL, and the
    // container is removed all the same.
    let root = ws.fs_root("local");
    let manifest = root.join(
        files_under(&root)
            .into_iter()
            .find(|f| f.starts_with("manifests/"))
            .unwrap(),
    );
    ws.edit_private_facts(&manifest, "\"public.users\":2000", "\"public.users\":1999");
    let (code, out, err) = output(spawn_verify(&ws, &engine));
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("row counts differ: public.users: restored 2000 rows, recorded 1999"),
        "{out}"
    );
    assert_eq!(
        engine.sandboxes(),
        Vec::<String>::new(),
        "container left after a failure"
    );
}

#[test]
fn an_interrupted_docker_verify_removes_its_container() {
    let _g = exclusive();
    let engine = DockerEngine::start();
    pg_test_image(pg_major());
    let (pg, ws) = setup("localhost/drctl-test/postgres:{major}", "");
    // Enough data that the restore into the container takes a while.
    pg.psql("app", "create table big as select g as id, md5(g::text) || md5((g * 7)::text) as s from generate_series(1, 1500000) g;");
    ws.ok(&["backup"]);
    let mut child = spawn_verify(&ws, &engine);
    wait_for_sandbox(&engine, &mut child);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "verify ended before it could be interrupted"
    );
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let (code, out, err) = output(child);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert_eq!(engine.sandboxes(), Vec::<String>::new(), "container left after Ctrl-C");
    assert!(verify_leftovers().is_empty(), "{:?}", verify_leftovers());
}

#[test]
fn docker_sandbox_names_a_missing_engine_and_a_missing_image() {
    let _g = exclusive();
    let (_pg, ws) = setup("localhost/drctl-test/absent:{major}", "");
    ws.ok(&["backup"]);
    let ident = ws.identity.to_str().unwrap();

    let nowhere = format!("unix://{}/no-engine.sock", ws.path().display());
    let (code, out, err) = ws.run_env(&["verify", "--identity", ident], &[("DOCKER_HOST", &nowhere)]);
    assert_eq!(code, 1, "{out}\n{err}");
    // No restore ran, so no restore time is claimed.
    assert!(
        out.starts_with("FAIL app-db") && out.contains(" failed after "),
        "{out}"
    );
    assert!(!out.contains("restore took"), "{out}");
    assert!(
        out.contains(&format!("no Docker engine answered at {nowhere}")),
        "{out}"
    );
    assert!(out.contains("or use [verify] sandbox = \"local\""), "{out}");

    let engine = DockerEngine::start();
    let (code, out, err) = ws.run_env(&["verify", "--identity", ident], &[("DOCKER_HOST", &engine.host)]);
    assert_eq!(code, 1, "{out}\n{err}");
    let major = pg_major();
    assert!(
        out.contains(&format!("cannot pull localhost/drctl-test/absent:{major}")) && out.contains("docker pull"),
        "{out}"
    );
    assert_eq!(engine.sandboxes(), Vec::<String>::new());
    assert!(verify_leftovers().is_empty(), "{:?}", verify_leftovers());
}
