//! The drctl container image (issue #14, item 5): built with podman from the repository's
//! Containerfile on a base made by mmdebstrap (no registry), with this test build's binary;
//! run with the engine's socket mounted, it backs up a PostgreSQL container that has no
//! published port, through exec in that container (the image has no pg_dump), and the backup
//! restores on the host.

use crate::support::*;
use std::process::Command;

const IMAGE: &str = "localhost/drctl-test/drctl:latest";

/// Builds (or reuses, when binary, Containerfile and script are unchanged) the drctl image.
fn build_image() {
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/lib/drctl-image/build.sh"))
        .arg(env!("CARGO_BIN_EXE_drctl"))
        .arg(IMAGE)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "building the drctl image failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn drctl_image_backs_up_a_postgres_container_through_the_mounted_engine_socket() {
    let _g = exclusive();
    build_image();
    let engine = DockerEngine::start();

    // What the image is: drctl as entrypoint, the daemon by default, not root, no pg_dump.
    let cfg = engine.podman(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Entrypoint}} {{json .Config.Cmd}} {{.Config.User}}",
        IMAGE,
    ]);
    assert_eq!(
        cfg.join(" "),
        r#"["drctl"] ["daemon","--config","/etc/drctl/drctl.toml"] drctl"#,
        "image config"
    );
    let tools = engine.podman(&[
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        IMAGE,
        "-c",
        "for t in age zstd drctl; do command -v $t; done; command -v pg_dump || echo no-pg_dump; id -un",
    ]);
    assert_eq!(
        tools,
        [
            "/usr/bin/age",
            "/usr/bin/zstd",
            "/usr/local/bin/drctl",
            "no-pg_dump",
            "drctl"
        ],
        "tools in the image"
    );

    let pg = engine.compose_postgres("imgstack", "postgres", "imgstack-postgres-1");
    engine.psql_in(
        &pg,
        "create table parcels (id int primary key, dest text); insert into parcels select g, 'city ' || g from generate_series(1, 400) g;",
    );

    // The config the container reads (read-only, recipients only) and the host's config for
    // the same storage, which restores.
    let ws = Workspace::new();
    let source =
        "[[source]]\nname = \"db\"\ntype = \"postgres\"\nservice = \"postgres\"\ncompose_project = \"imgstack\"\n";
    ws.write_config(&ws.fs_storage_toml("local"), source);
    let in_image = ws.path().join("in-image.toml");
    std::fs::write(
        &in_image,
        format!(
            "[encryption]\nrecipients = [\"{}\"]\n\n[[storage]]\nname = \"local\"\ntype = \"fs\"\nroot = \"/var/backups/drctl\"\n\n{source}",
            ws.recipient
        ),
    )
    .unwrap();
    private(&in_image);
    let store = ws.fs_root("local");
    std::fs::create_dir_all(&store).unwrap();
    let sock = engine.host.trim_start_matches("unix://").to_string();

    // Root in the container: the socket of this engine is root's (a real deployment gives the
    // image's user the socket's group instead; either way the socket is root-equivalent).
    let out = engine
        .podman_command(&[
            "run",
            "--rm",
            "--user",
            "0:0",
            "-v",
            &format!("{sock}:/var/run/docker.sock"),
            "-e",
            "DOCKER_HOST=unix:///var/run/docker.sock",
            "-v",
            &format!("{}:/etc/drctl/drctl.toml:ro", in_image.display()),
            "-v",
            &format!("{}:/var/backups/drctl", store.display()),
            IMAGE,
            "backup",
            "--config",
            "/etc/drctl/drctl.toml",
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "drctl backup in the image failed ({:?}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(!stdout.contains(CONTAINER_PG_PASSWORD) && !stderr.contains(CONTAINER_PG_PASSWORD));

    // Committed, with the facts of the dump made inside the database container.
    let list = ws.list_json();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["source"], "db");
    assert_eq!(list[0]["facts"]["database"], "appdb", "{}", list[0]);

    // Restores on the host: the dump lists the table and its data.
    let dumps = ws.path().join("dumps");
    ws.restore_ok(&dumps);
    let dump = files_under(&dumps).into_iter().next().expect("a dump");
    let listing = Command::new(pg_bindir().join("pg_restore"))
        .arg("--list")
        .arg(dumps.join(&dump))
        .output()
        .unwrap();
    assert!(listing.status.success(), "{}", String::from_utf8_lossy(&listing.stderr));
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains("TABLE DATA public parcels"), "{listing}");
}
