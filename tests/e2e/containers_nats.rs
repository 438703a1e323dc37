//! NATS JetStream in a container (issue #14): a server from a scratch-like image (no shell, no
//! `tar`) found by its Compose service, on a user-defined network with no published port.
//! Tarball mode reads the store through the engine's archive endpoint with the container
//! paused, and is restored into a fresh, stopped container's empty volume; snapshot mode talks
//! to the container's address; `pause` is undone on a timeout and on SIGTERM.

use crate::support::*;
use std::time::{Duration, Instant};

/// A workspace whose only source is `keys` (after `name = "events"`, `type = "nats"`).
fn workspace(keys: &str) -> Workspace {
    let ws = Workspace::new();
    ws.write_config(
        &ws.fs_storage_toml("local"),
        &format!("[[source]]\nname = \"events\"\ntype = \"nats\"\n{keys}\n"),
    );
    ws
}

/// drctl with DOCKER_HOST set and a PATH with no nats-server, tar or docker CLI on it.
fn drctl_in(ws: &Workspace, engine: &DockerEngine, args: &[&str]) -> std::process::Command {
    engine.drctl(ws, args)
}

fn run_in(ws: &Workspace, engine: &DockerEngine, args: &[&str]) -> (i32, String, String) {
    engine.run_drctl(ws, args, &[])
}

fn restore_args<'a>(ws: &'a Workspace, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "restore",
        "--at",
        "now",
        "--identity",
        ws.identity.to_str().unwrap(),
        "--target",
        "service:nats",
    ];
    a.extend_from_slice(extra);
    a
}

/// The entry names of the stored artifact, decrypted and decompressed by hand.
fn artifact_entries(ws: &Workspace) -> Vec<String> {
    let root = ws.fs_root("local");
    let obj = root.join(
        files_under(&root)
            .into_iter()
            .find(|f| f.starts_with("data/"))
            .expect("an artifact"),
    );
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; age -d -i '{}' '{}' | zstd -d -q | tar -t",
            ws.identity.display(),
            obj.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Events the engine logged for `container` of `event` type (pause, unpause). By the
/// container's id: podman's event log is the machine's, and an earlier run may have had a
/// container of the same name.
fn events(engine: &DockerEngine, container: &str, event: &str) -> usize {
    let id = engine.podman(&["inspect", "--format", "{{.Id}}", container]).join("");
    engine
        .podman(&[
            "events",
            "--stream=false",
            "--filter",
            &format!("container={id}"),
            "--filter",
            &format!("event={event}"),
            "--format",
            "{{.Status}}",
        ])
        .len()
}

#[test]
fn nats_tarball_in_a_scratch_container_is_copied_paused_and_restored_into_a_fresh_stopped_container() {
    let _g = exclusive();
    let engine = DockerEngine::start();
    let nats = engine.compose_nats("chat", "nats", "chat-nats-1", true);
    // The image is like the official scratch one: nothing to exec a `tar` with.
    let sh = engine
        .podman_command(&["exec", &nats.name, "/bin/sh", "-c", "true"])
        .output()
        .unwrap();
    assert!(!sh.status.success(), "the test image must have no shell");
    let mut c = engine.nats_client(&nats);
    seed_jetstream(&mut c, 400);
    let before = jetstream_contents(&mut c);
    assert_eq!(before["ORDERS"]["messages"], 400, "{before}");
    assert_eq!(before["ORDERS"]["consumers"][0]["name"], "shipper", "{before}");
    drop(c);

    let ws = workspace("service = \"nats\"\nmode = \"tarball\"\ndata_dir = \"/data\"\npause = true\n");
    let (code, out, err) = run_in(&ws, &engine, &["backup"]);
    assert_eq!(code, 0, "backup failed:\n{out}\n{err}");
    assert_eq!(manifest_files(&ws.fs_root("local")).len(), 1);
    let facts = &ws.list_json()[0]["facts"];
    assert!(facts["file_count"].as_u64().unwrap() >= 4, "{facts}");
    assert!(facts["file_bytes"].as_u64().unwrap() > 400 * 10, "{facts}");
    assert_eq!(facts["container_data_dir"], "/data", "{facts}");
    // Paused for the copy, and running again after it.
    assert_eq!(events(&engine, &nats.name, "pause"), 1, "the container was paused once");
    assert_eq!(events(&engine, &nats.name, "unpause"), 1, "and unpaused once");
    assert_eq!(engine.state(&nats.name), "running");
    // Laid out like a host-mode backup: the store's contents at the top, no `data/`.
    let entries = artifact_entries(&ws);
    assert!(entries.iter().any(|e| e.starts_with("jetstream/")), "{entries:?}");
    assert!(
        entries.iter().all(|e| !e.starts_with("data")),
        "the engine's data/ component is dropped: {entries:?}"
    );
    // By hand: the artifact is a store for `nats-server -js -sd DIR`.
    let by_hand = tempfile::tempdir().unwrap();
    sh_ok(&format!(
        "age -d -i '{}' '{}' | zstd -d -q | tar -x -C '{}'",
        ws.identity.display(),
        ws.fs_root("local")
            .join(
                files_under(&ws.fs_root("local"))
                    .into_iter()
                    .find(|f| f.starts_with("data/"))
                    .unwrap()
            )
            .display(),
        by_hand.path().display()
    ));
    let host = Nats::start_on(by_hand.path());
    assert_eq!(jetstream_contents(&mut host.client()), before, "extracted by hand");
    drop(host);

    // A new VPS: the old container and volume are gone; `docker compose up --no-start` made a
    // fresh container of the same service with an empty volume.
    drop(nats);
    let fresh = engine.compose_nats("chat", "nats", "chat-nats-2", false);
    let (code, out, err) = run_in(&ws, &engine, &restore_args(&ws, &[]));
    assert_eq!(code, 0, "restore failed:\n{out}\n{err}");
    assert!(out.contains("chat-nats-2:/data"), "{out}");
    engine.start_nats(&fresh);
    let after = jetstream_contents(&mut engine.nats_client(&fresh));
    assert_eq!(after, before, "streams, counts, bodies and consumers");

    // Into a running server: refused, with the command that stops it.
    let (code, _, err) = run_in(&ws, &engine, &restore_args(&ws, &[]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("stop it first: docker compose stop nats"), "{err}");
    // Stopped, but its store is not empty: refused without --clean.
    engine.podman(&["stop", "-t", "5", &fresh.name]);
    let (code, _, err) = run_in(&ws, &engine, &restore_args(&ws, &[]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is not empty") && err.contains("--clean"), "{err}");
    let (code, out, err) = run_in(&ws, &engine, &restore_args(&ws, &["--clean"]));
    assert_eq!(code, 0, "restore --clean failed:\n{out}\n{err}");
    engine.start_nats(&fresh);
    assert_eq!(jetstream_contents(&mut engine.nats_client(&fresh)), before);
}

#[test]
fn nats_snapshot_in_a_container_is_taken_at_its_address_and_restored_with_target_service() {
    let _g = exclusive();
    let engine = DockerEngine::start();
    let nats = engine.compose_nats("feed", "nats", "feed-nats-1", true);
    let mut c = engine.nats_client(&nats);
    seed_jetstream(&mut c, 250);
    let before = jetstream_contents(&mut c);
    drop(c);
    // No url: the service's address is found through the engine (the port is not published).
    let ws = workspace("service = \"nats\"\nmode = \"snapshot\"\n");
    let (code, out, err) = run_in(&ws, &engine, &["backup"]);
    assert_eq!(code, 0, "backup failed:\n{out}\n{err}");
    let facts = &ws.list_json()[0]["facts"];
    assert_eq!(facts["nats_mode"], "snapshot", "{facts}");
    assert_eq!(facts["streams"]["ORDERS"]["messages"], 250, "{facts}");

    drop(nats);
    let fresh = engine.compose_nats("feed", "nats", "feed-nats-2", true);
    let (code, out, err) = run_in(&ws, &engine, &restore_args(&ws, &[]));
    assert_eq!(code, 0, "restore failed:\n{out}\n{err}");
    assert!(out.contains("restored stream ORDERS"), "{out}");
    assert_eq!(jetstream_contents(&mut engine.nats_client(&fresh)), before);

    // A url with a port nothing listens on: the error names the address and what to do.
    let ws = workspace("service = \"nats\"\nmode = \"snapshot\"\nurl = \"nats://nats:4999\"\n");
    let (code, _, err) = run_in(&ws, &engine, &["backup"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(":4999") && err.contains("cannot reach container 'feed-nats-2'"),
        "{err}"
    );
}

#[test]
fn nats_pause_is_undone_after_a_timeout_and_after_sigterm_mid_copy() {
    let _g = exclusive();
    let engine = DockerEngine::start();
    let nats = engine.compose_nats("slow", "nats", "slow-nats-1", true);
    seed_jetstream(&mut engine.nats_client(&nats), 50);
    // A big store, so the copy is still running when drctl is stopped.
    let big = tempfile::tempdir().unwrap();
    let file = big.path().join("big.bin");
    sh_ok(&format!("head -c 700M /dev/urandom > '{}'", file.display()));
    engine.podman(&["cp", file.to_str().unwrap(), &format!("{}:/data/big.bin", nats.name)]);
    drop(big);

    // pause_timeout shorter than the copy: the backup fails, the container runs again.
    let ws = workspace(
        "service = \"nats\"\nmode = \"tarball\"\ndata_dir = \"/data\"\npause = true\npause_timeout = \"1s\"\n",
    );
    let (code, _, err) = run_in(&ws, &engine, &["backup"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("took longer than pause_timeout (1s)"), "{err}");
    assert_eq!(engine.state(&nats.name), "running");
    assert!(manifest_files(&ws.fs_root("local")).is_empty(), "nothing committed");

    // SIGTERM while paused mid-copy: drctl stops, and unpauses first.
    let ws = workspace("service = \"nats\"\nmode = \"tarball\"\ndata_dir = \"/data\"\npause = true\n");
    let mut child = drctl_in(&ws, &engine, &["backup"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while engine.state(&nats.name) != "paused" {
        assert!(
            child.try_wait().unwrap().is_none(),
            "drctl ended before the container was seen paused (copy too fast?)"
        );
        assert!(t0.elapsed() < Duration::from_secs(60), "never paused");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert_eq!(engine.state(&nats.name), "running", "unpaused after SIGTERM: {err}");
    assert!(
        manifest_files(&ws.fs_root("local")).is_empty(),
        "nothing committed: {err}"
    );
    // And the server still serves.
    let after = jetstream_contents(&mut engine.nats_client(&nats));
    assert_eq!(after["ORDERS"]["messages"], 50);
}

#[test]
fn nats_missing_data_dir_in_a_container_is_a_clear_error_with_nothing_committed() {
    let _g = exclusive();
    let engine = DockerEngine::start();
    let nats = engine.compose_nats("gone", "nats", "gone-nats-1", true);
    let ws = workspace("service = \"nats\"\nmode = \"tarball\"\ndata_dir = \"/srv/nats\"\npause = true\n");
    let (code, out, err) = run_in(&ws, &engine, &["backup"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("/srv/nats") && err.contains("no such file or directory") && err.contains("-sd"),
        "{err}"
    );
    assert!(manifest_files(&ws.fs_root("local")).is_empty(), "nothing committed");
    assert_eq!(engine.state(&nats.name), "running", "unpaused after the error");

    // pause without a container, or with snapshot mode, is a config error naming the key.
    let ws = workspace("mode = \"tarball\"\ndata_dir = \"/data\"\npause = true\n");
    let (code, _, err) = ws.run(&["validate"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("pause = true needs the server's container"), "{err}");
    let ws = workspace("service = \"nats\"\nmode = \"snapshot\"\npause = true\n");
    let (code, _, err) = ws.run(&["validate"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("pause = true belongs to mode = \"tarball\""), "{err}");
}

fn sh_ok(script: &str) {
    let st = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("set -euo pipefail; {script}"))
        .status()
        .unwrap();
    assert!(st.success(), "{script}");
}
