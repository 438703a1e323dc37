//! Every repository written by an earlier release keeps restoring. `tests/fixtures/v0.1.0` was
//! written by drctl 0.1.0 (commit 40d1c32) against throwaway servers; its EXPECTED.md says what
//! each backup holds and how it was made. These tests read, check, restore and verify it with
//! this binary.

use crate::support::*;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v0.1.0");

fn sha256_file(p: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        let t = e.file_type().unwrap();
        if t.is_dir() {
            copy_dir(&e.path(), &dest);
        } else if t.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(e.path()).unwrap(), &dest).unwrap();
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// The fixture's repository and identity in a temp dir (commands create `.tmp/` in an fs root;
/// the committed tree stays untouched), with a config that names only the storage.
fn fixture_workspace() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new().prefix("drctl-compat-").tempdir().unwrap();
    copy_dir(&Path::new(FIXTURE).join("repo"), &dir.path().join("repo"));
    let identity = dir.path().join("identity.txt");
    std::fs::copy(Path::new(FIXTURE).join("identity.txt"), &identity).unwrap();
    private(&identity);
    let recipient = "age1lsr2ap6cyk0x6g9fhdqaszvhd3k4a52nxrhhxwvgtfm2s7vczerqkwafnl";
    let config = dir.path().join("drctl.toml");
    std::fs::write(
        &config,
        format!(
            "[encryption]\nrecipients = [\"{recipient}\"]\nidentity_file = \"identity.txt\"\n\n\
             [daemon]\nstate_dir = \"./state\"\n\n[verify]\nwork_dir = \"{}\"\n\n\
             [[storage]]\nname = \"local\"\ntype = \"fs\"\nroot = \"repo\"\n",
            std::env::temp_dir().display()
        ),
    )
    .unwrap();
    private(&config);
    (dir, config)
}

fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = drctl_cmd(dir)
        .env("DRCTL_CONFIG", dir.join("drctl.toml"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = run(dir, args);
    assert_eq!(code, 0, "drctl {args:?}:\nstdout: {out}\nstderr: {err}");
    out
}

#[test]
fn manifests_of_the_previous_release_parse_and_write_back_unchanged() {
    let root = Path::new(FIXTURE).join("repo");
    let mut seen = Vec::new();
    for dir in ["manifests", "verify"] {
        for src in std::fs::read_dir(root.join(dir)).unwrap() {
            for f in std::fs::read_dir(src.unwrap().path()).unwrap() {
                let p = f.unwrap().path();
                let text = std::fs::read_to_string(&p).unwrap();
                let original: serde_json::Value = serde_json::from_str(&text).unwrap();
                let again = if dir == "manifests" {
                    let m: drctl::catalog::Manifest =
                        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                    assert_eq!(original["kind"], m.kind().to_string(), "{}", p.display());
                    serde_json::to_value(&m).unwrap()
                } else {
                    let r: drctl::verification::Record =
                        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                    serde_json::to_value(&r).unwrap()
                };
                // `drctl copy` rewrites manifests: nothing may be lost or changed on the way.
                assert_eq!(original, again, "{} does not round-trip", p.display());
                seen.push(p);
            }
        }
    }
    assert_eq!(seen.len(), 8, "6 manifests and 2 verification records: {seen:?}");
}

#[test]
fn previous_release_repository_lists_checks_and_restores() {
    let (ws, _) = fixture_workspace();
    let d = ws.path();
    let list: Vec<serde_json::Value> = serde_json::from_str(&ok(d, &["list", "--json"])).unwrap();
    assert_eq!(list.len(), 6, "{list:?}");
    let out = ok(d, &["check", "--read-data"]);
    assert!(out.contains("6 backup(s)") && out.contains("0 problem(s)"), "{out}");

    // The older of the two cache backups, by time.
    let out = ok(
        d,
        &[
            "restore",
            "--at",
            "2026-12-03 08:38:00",
            "--source",
            "cache",
            "--dry-run",
        ],
    );
    assert!(out.contains("20261203T083757Z-e3b55446"), "{out}");

    let restored = d.join("restored");
    let mut args = vec!["restore", "--at", "now", "--output-dir", restored.to_str().unwrap()];
    for s in ["app-db", "cache", "events", "events-snap", "config"] {
        args.extend(["--source", s]);
    }
    let out = ok(d, &args);
    // PostgreSQL: the plain dump with the recorded hash, loaded into a real server.
    let dump = restored.join("app-db-20261203T083757Z-789770bc.pgdump");
    assert_eq!(
        sha256_file(&dump),
        "662e540685c640a4136df4d878de28bcd43af2d2d8632677bb0066dedd2da0c4"
    );
    let pg = Postgres::start();
    pg.createdb("app");
    let load = std::process::Command::new(pg.bin().join("pg_restore"))
        .env("PGPASSWORD", PG_PASSWORD)
        .args([
            "--no-owner",
            "--exit-on-error",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "app",
            "-p",
        ])
        .arg(pg.port.to_string())
        .arg(&dump)
        .output()
        .unwrap();
    assert!(load.status.success(), "{}", String::from_utf8_lossy(&load.stderr));
    assert_eq!(
        pg.psql("app", "select id, name, coalesce(note, 'NULL') from items order by id"),
        "1|apple|red fruit\n2|banana|NULL\n3|cherry|small; stone\n4|dürüm|utf-8 name\n5|eggplant|\n"
    );
    assert_eq!(pg.psql("app", "select count(*) from empty_t"), "0\n");
    // Redis: the newest RDB, byte for byte.
    assert_eq!(
        sha256_file(&restored.join("cache/dump.rdb")),
        "dd8e04490e7abef8604be92209473b98daea3a535acf29391eca70017eb6f9ef"
    );
    // NATS tarball: a store directory; snapshot: backup.json and the numbered parts.
    let events = files_under(&restored.join("events"));
    for f in ["msgs/1.blk", "meta.inf", "obs/C1/meta.inf"] {
        let want = format!("jetstream/$G/streams/ORDERS/{f}");
        assert!(events.iter().any(|e| e.ends_with(&want)), "{want} not in {events:?}");
    }
    assert!(out.contains("nats-server -js -sd"), "{out}");
    let snap = files_under(&restored.join("events-snap"));
    for f in [
        "EVENTS/backup.json",
        "EVENTS/stream.tar.s2.000001",
        "EVENTS/stream.tar.s2.000002",
    ] {
        assert!(snap.iter().any(|e| e.ends_with(f)), "{f} not in {snap:?}");
    }
    // Files: every file and the symlink as they were.
    let site = restored.join("config/work/fixtures-out/src-files/site");
    let orig = Path::new(FIXTURE).join("src-files/site");
    for f in [".env", "Caddyfile", "conf.d/a.conf"] {
        assert_eq!(
            std::fs::read(site.join(f)).unwrap(),
            std::fs::read(orig.join(f)).unwrap(),
            "{f}"
        );
    }
    assert_eq!(
        std::fs::read_link(site.join("current")).unwrap(),
        Path::new("Caddyfile")
    );
}

#[test]
fn previous_release_backups_verify_with_this_binary() {
    // Verification sandboxes are machine-wide traces (see support::machine).
    let _g = shared();
    let (ws, _) = fixture_workspace();
    for source in ["app-db", "cache", "events", "events-snap", "config"] {
        let out = ok(ws.path(), &["verify", "--source", source]);
        assert!(out.contains("PASS"), "{source}: {out}");
    }
}

#[test]
fn backups_that_record_no_policy_are_all_kept_by_a_config_that_does_not_define_their_source() {
    // 0.1.0 recorded no retention policy in its manifests, and the fixture's config here names
    // only the storage: prune cannot know the sources' policies, so it keeps everything
    // (the default 7 daily would drop the older of the two same-day cache backups).
    let (ws, _) = fixture_workspace();
    let out = ok(ws.path(), &["prune", "--dry-run"]);
    assert!(out.contains("0 to drop"), "{out}");
    assert!(out.contains("note: kept every backup of 'cache'"), "{out}");
}
