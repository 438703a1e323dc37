//! Files sources in containers (issue #14, files): paths inside a Compose service's container
//! and named volumes, read through a real Docker-API engine (podman's service) with no docker
//! CLI and no published port, restored with --output-dir and compared byte for byte and mode
//! for mode with what the container holds.

use crate::support::*;
use std::path::{Path, PathBuf};

/// drctl with DOCKER_HOST set and a PATH with no tool on it (no docker CLI, no tar).
fn run_in(ws: &Workspace, engine: &DockerEngine, args: &[&str]) -> (i32, String, String) {
    engine.run_drctl(ws, args, &[])
}

fn workspace(sources: &str) -> Workspace {
    let ws = Workspace::new();
    ws.write_config(&ws.fs_storage_toml("local"), sources);
    ws
}

/// `restore --at now --output-dir DIR` of `source`; DIR.
fn restore(ws: &Workspace, engine: &DockerEngine, source: &str) -> (PathBuf, String) {
    let dir = ws.path().join(format!("restored-{source}"));
    let ident = ws.identity.to_str().unwrap().to_string();
    let (code, out, err) = run_in(
        ws,
        engine,
        &[
            "restore",
            "--at",
            "now",
            "--source",
            source,
            "--identity",
            &ident,
            "--output-dir",
            dir.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "restore failed:\n{out}\n{err}");
    (dir, format!("{out}{err}"))
}

/// The listing lines (`sha256 mode path`) a script printed, sorted.
fn sorted(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text.lines().filter(|l| !l.is_empty()).map(str::to_string).collect();
    v.sort();
    v
}

/// Lines of `podman events` for drctl's temporary volume readers since `since`.
fn reader_events(engine: &DockerEngine, since: &str) -> Vec<String> {
    engine
        .podman(&[
            "events",
            "--stream=false",
            "--since",
            since,
            "--filter",
            "type=container",
            "--format",
            "{{.Status}} {{.Name}}",
        ])
        .into_iter()
        .filter(|l| l.contains("drctl-volume-reader-"))
        .collect()
}

fn now_rfc3339() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Fills /data and /config the way a Caddy container holds them: a private key (0600), an
/// executable, a relative symlink, plus a log and a cache directory the source excludes.
const CADDY_FILES: &str = "mkdir -p /data/caddy/certs /data/logs /data/cache/deep /config \
     && head -c 300000 /dev/urandom > /data/caddy/certs/site.key && chmod 600 /data/caddy/certs/site.key \
     && printf '{\"apps\":{}}\\n' > /data/caddy/autosave.json && chmod 644 /data/caddy/autosave.json \
     && printf '#!/bin/sh\\necho hi\\n' > /data/caddy/hook.sh && chmod 755 /data/caddy/hook.sh \
     && ln -s caddy/autosave.json /data/current.json \
     && echo 'GET / 200' > /data/logs/access.log && echo 'GET / 200' > /data/caddy/debug.log \
     && head -c 5000 /dev/urandom > /data/cache/deep/blob \
     && printf 'example.com {\\n  respond \"hi\"\\n}\\n' > /config/Caddyfile && chmod 640 /config/Caddyfile";

#[test]
fn files_of_a_compose_service_are_backed_up_with_excludes_and_restored_byte_for_byte_with_modes() {
    let _g = exclusive();
    let engine = DockerEngine::start();
    let fx = FilesFixture::new(&engine);
    let project = format!("fa{}", fx.tag);
    let name = format!("{project}-caddy-1");
    fx.service(&project, "caddy", &name, None);
    fx.sh_in(&name, CADDY_FILES);
    let ws = workspace(&format!(
        "[[source]]\nname = \"caddy\"\ntype = \"files\"\nservice = \"caddy\"\ncompose_project = \"{project}\"\n\
         paths = [\"/data\", \"/config\", \"/data/caddy\"]\nexclude = [\"**/*.log\", \"/data/cache\"]\n"
    ));

    let (code, out, err) = run_in(&ws, &engine, &["backup"]);
    assert_eq!(code, 0, "backup failed:\n{out}\n{err}");
    assert_eq!(manifest_files(&ws.fs_root("local")).len(), 1);
    let list = ws.list_json();
    let facts = &list[0]["facts"];
    assert_eq!(facts["origin"]["in"], "container", "{facts}");
    assert_eq!(facts["origin"]["container"], name.as_str(), "{facts}");
    // site.key, autosave.json, hook.sh, Caddyfile: the logs and the cache are excluded.
    assert_eq!(facts["file_count"], 4, "{facts}");

    // What the container holds, all of it: the excluded files are really there.
    let all = sorted(&fx.sh_in(
        &name,
        &format!("cd / && {}", FILES_LISTING.replace("find .", "find data config")),
    ));
    assert_eq!(all.len(), 7, "{all:?}");
    let kept: Vec<String> = all
        .iter()
        .filter(|l| !l.ends_with(".log") && !l.contains(" data/cache/"))
        .cloned()
        .collect();
    assert_eq!(kept.len(), 4, "{kept:?}");

    let (dir, said) = restore(&ws, &engine, "caddy");
    let restored = dir.join("caddy");
    // Entries are named from the container's / (as host paths are): data/…, config/….
    assert_eq!(host_files_listing(&restored), kept);
    assert!(
        kept.iter().any(|l| l.contains(" 600 data/caddy/certs/site.key")),
        "{kept:?}"
    );
    assert!(kept.iter().any(|l| l.contains(" 755 data/caddy/hook.sh")), "{kept:?}");
    assert!(kept.iter().any(|l| l.contains(" 640 config/Caddyfile")), "{kept:?}");
    assert_eq!(
        std::fs::read_link(restored.join("data/current.json")).unwrap(),
        Path::new("caddy/autosave.json")
    );
    assert!(!restored.join("data/cache").exists() && !restored.join("data/logs/access.log").exists());
    // The hint says how to put files back into the container.
    assert!(said.contains("docker cp") && said.contains(&name), "{said}");
}

#[test]
fn a_named_volume_no_container_mounts_is_read_through_a_temporary_container_that_is_removed() {
    let _g = exclusive();
    let engine = DockerEngine::start();
    let fx = FilesFixture::new(&engine);
    let volume = format!("fv{}_caddy_data", fx.tag);
    fx.volume(
        &volume,
        "mkdir -p /v/site/assets && head -c 100000 /dev/urandom > /v/db.sqlite && chmod 600 /v/db.sqlite \
         && echo '<h1>hi</h1>' > /v/site/index.html && head -c 7000 /dev/urandom > /v/site/assets/logo.png \
         && echo tmp > /v/site/assets/x.tmp",
    );
    // An image on the engine to create the reader from: this container's (it mounts no volume).
    let other = format!("fv{}-other", fx.tag);
    fx.service(&format!("fv{}", fx.tag), "other", &other, None);
    let ws = workspace(&format!(
        "[[source]]\nname = \"vol\"\ntype = \"files\"\nvolume = \"{volume}\"\n\n\
         [[source]]\nname = \"site\"\ntype = \"files\"\nvolume = \"{volume}\"\npaths = [\"site\"]\nexclude = [\"**/*.tmp\"]\n"
    ));
    let since = now_rfc3339();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (code, out, err) = run_in(&ws, &engine, &["backup"]);
    assert_eq!(code, 0, "backup failed:\n{out}\n{err}");
    assert_eq!(manifest_files(&ws.fs_root("local")).len(), 2);

    // A reader was created for each source, never started, and removed.
    // (Counted by the names created in this window: an earlier reader's removal may land in it.)
    let events = reader_events(&engine, &since);
    let created: Vec<&str> = events.iter().filter_map(|l| l.strip_prefix("create ")).collect();
    assert_eq!(created.len(), 2, "{events:?}");
    for c in &created {
        let of = |what: &str| events.iter().filter(|l| l.strip_prefix(what) == Some(*c)).count();
        assert_eq!(of("remove "), 1, "reader {c} not removed once: {events:?}");
        assert_eq!(of("start "), 0, "the reader is never started: {events:?}");
    }
    assert_eq!(fx.volume_readers(), Vec::<String>::new(), "no reader container is left");

    let list = ws.list_json();
    for b in &list {
        assert_eq!(b["facts"]["origin"]["volume"], volume.as_str(), "{b}");
    }
    let want = sorted(
        &engine
            .podman(&[
                "run",
                "--rm",
                "--network",
                "none",
                "-v",
                &format!("{volume}:/v:ro"),
                &redis_test_image(),
                "sh",
                "-ec",
                &format!("cd /v && {FILES_LISTING}"),
            ])
            .join("\n"),
    );
    assert_eq!(want.len(), 4, "{want:?}");
    // The whole volume, named from its root.
    let (dir, said) = restore(&ws, &engine, "vol");
    assert_eq!(host_files_listing(&dir.join("vol")), want);
    assert!(want.iter().any(|l| l.contains(" 600 db.sqlite")), "{want:?}");
    assert!(said.contains(&volume) && said.contains("docker cp"), "{said}");
    // paths relative to the volume's root, with an exclude.
    let (dir, _) = restore(&ws, &engine, "site");
    let site: Vec<String> = want
        .iter()
        .filter(|l| l.contains(" site/") && !l.ends_with(".tmp"))
        .cloned()
        .collect();
    assert_eq!(site.len(), 2, "{site:?}");
    assert_eq!(host_files_listing(&dir.join("site")), site);

    // A path missing from the volume, after one that exists: the backup fails with nothing
    // committed, and the reader is removed on that path too.
    let ws3 = workspace(&format!(
        "[[source]]\nname = \"half\"\ntype = \"files\"\nvolume = \"{volume}\"\npaths = [\"site\", \"zz-missing\"]\n"
    ));
    let since = now_rfc3339();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (code, out, err) = run_in(&ws3, &engine, &["backup"]);
    assert_ne!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("zz-missing")
            && err.contains("no such file or directory")
            && err.contains("nothing was committed"),
        "{err}"
    );
    assert!(manifest_files(&ws3.fs_root("local")).is_empty());
    // Podman's event log is machine-wide: count only the readers created in this window (a
    // reader of an earlier step may be removed in it, and another test may run one).
    let events = reader_events(&engine, &since);
    let created: Vec<&str> = events.iter().filter_map(|l| l.strip_prefix("create ")).collect();
    assert!(!created.is_empty(), "no reader was created: {events:?}");
    for c in &created {
        let removed = events.iter().filter(|l| l.strip_prefix("remove ") == Some(*c)).count();
        assert_eq!(removed, 1, "reader {c} not removed once: {events:?}");
    }
    assert_eq!(fx.volume_readers(), Vec::<String>::new());

    // A volume that does not exist: named in the error, nothing created, nothing committed.
    let ws2 = workspace("[[source]]\nname = \"gone\"\ntype = \"files\"\nvolume = \"no_such_volume_here\"\n");
    let (code, out, err) = run_in(&ws2, &engine, &["backup"]);
    assert_ne!(code, 0, "{out}\n{err}");
    assert!(err.contains("no volume named 'no_such_volume_here'"), "{err}");
    assert!(manifest_files(&ws2.fs_root("local")).is_empty());
    let vols = engine.podman(&["volume", "ls", "--format", "{{.Name}}"]);
    assert!(!vols.iter().any(|v| v == "no_such_volume_here"), "{vols:?}");
    assert_eq!(fx.volume_readers(), Vec::<String>::new());
}

#[test]
fn a_volume_mounted_by_a_stopped_container_is_read_through_it_without_starting_it() {
    let _g = exclusive();
    let engine = DockerEngine::start();
    let fx = FilesFixture::new(&engine);
    let volume = format!("fs{}_uploads", fx.tag);
    let holder = format!("fs{}-app-1", fx.tag);
    engine.podman(&["volume", "create", &volume]);
    // The fixture removes the volume on drop only when it created it; do it here too.
    let _cleanup = VolumeRm(&engine, volume.clone());
    fx.stopped_with_volume(
        &holder,
        &volume,
        "/srv/uploads",
        "mkdir -p /srv/uploads/2026 && head -c 65536 /dev/urandom > /srv/uploads/2026/a.bin \
         && chmod 604 /srv/uploads/2026/a.bin && echo note > /srv/uploads/README",
    );
    let status = || {
        engine
            .podman(&["inspect", "--format", "{{.State.Status}}", &holder])
            .join("")
    };
    assert_eq!(status(), "exited");
    let ws = workspace(&format!(
        "[[source]]\nname = \"uploads\"\ntype = \"files\"\nvolume = \"{volume}\"\n"
    ));
    let since = now_rfc3339();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (code, out, err) = run_in(&ws, &engine, &["backup"]);
    assert_eq!(code, 0, "backup failed:\n{out}\n{err}");
    assert_eq!(
        reader_events(&engine, &since),
        Vec::<String>::new(),
        "no temporary reader"
    );
    assert_eq!(status(), "exited", "drctl did not start the container");

    let want = sorted(
        &engine
            .podman(&[
                "run",
                "--rm",
                "--network",
                "none",
                "-v",
                &format!("{volume}:/v:ro"),
                &redis_test_image(),
                "sh",
                "-ec",
                &format!("cd /v && {FILES_LISTING}"),
            ])
            .join("\n"),
    );
    assert_eq!(want.len(), 2, "{want:?}");
    let (dir, _) = restore(&ws, &engine, "uploads");
    assert_eq!(host_files_listing(&dir.join("uploads")), want);
    assert!(want.iter().any(|l| l.contains(" 604 2026/a.bin")), "{want:?}");
}

struct VolumeRm<'a>(&'a DockerEngine, String);

impl Drop for VolumeRm<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .podman_command(&["volume", "rm", "-f", &self.1])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

#[test]
fn a_missing_path_in_a_container_fails_the_backup_with_nothing_committed() {
    let _g = exclusive();
    let engine = DockerEngine::start();
    let fx = FilesFixture::new(&engine);
    let project = format!("fm{}", fx.tag);
    let name = format!("{project}-caddy-1");
    fx.service(&project, "caddy", &name, None);
    fx.sh_in(&name, CADDY_FILES);
    for paths in ["\"/data\", \"/nope/missing\"", "\"/nope/missing\", \"/data\""] {
        let ws = workspace(&format!(
            "[[source]]\nname = \"caddy\"\ntype = \"files\"\ncontainer = \"{name}\"\npaths = [{paths}]\n"
        ));
        let (code, out, err) = run_in(&ws, &engine, &["backup"]);
        assert_ne!(code, 0, "{out}\n{err}");
        assert!(
            err.contains("/nope/missing")
                && err.contains("no such file or directory")
                && err.contains("nothing was committed"),
            "{paths}: {err}"
        );
        assert!(manifest_files(&ws.fs_root("local")).is_empty(), "{paths}");
    }
    // A relative path is a config error naming the key, before anything is touched.
    let ws = workspace(&format!(
        "[[source]]\nname = \"caddy\"\ntype = \"files\"\ncontainer = \"{name}\"\npaths = [\"data\"]\n"
    ));
    let (code, out, err) = run_in(&ws, &engine, &["validate"]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("paths: 'data' is not an absolute path"), "{err}");
}
