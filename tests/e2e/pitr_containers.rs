//! Point-in-time recovery of PostgreSQL in a container (issue #17, test 10): the server archives
//! into its spool (`pg_wal/drctl-spool`) with the archive_command the README gives, drctl takes
//! base backups by exec and drains the spool through the engine, with no PostgreSQL tools on
//! its PATH; the archive then recovers to a chosen second.

use crate::pitr::{as_pg_user, chown_postgres, server_now, Restored};
use crate::support::*;
use std::time::{Duration, Instant};

const SOURCE: &str = "app-cluster";

/// The server arguments of README's "Point-in-time recovery" for Compose, word for word.
const ARCHIVE_COMMAND: &str = "test -d pg_wal/drctl-spool || mkdir pg_wal/drctl-spool; if test -f pg_wal/drctl-spool/%f; then cmp -s %p pg_wal/drctl-spool/%f; else cp %p pg_wal/drctl-spool/.%f && sync pg_wal/drctl-spool/.%f && mv pg_wal/drctl-spool/.%f pg_wal/drctl-spool/%f && sync pg_wal/drctl-spool; fi";

/// The server arguments as `drctl init --from-compose` prints them for a compose file with a
/// `postgres:16-alpine` service (the `command:` line, without the leading `postgres`).
fn archiving_args() -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("docker-compose.yml"),
        "services:\n  postgres:\n    image: postgres:16-alpine\n    environment:\n      POSTGRES_USER: app\n      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}\n      POSTGRES_DB: appdb\n",
    )
    .unwrap();
    std::fs::write(dir.path().join(".env"), "POSTGRES_PASSWORD=x\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_drctl"))
        .current_dir(dir.path())
        .args(["init", "--from-compose", "docker-compose.yml", "--config", "drctl.toml"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("command: "))
        .unwrap_or_else(|| panic!("init printed no command: line:\n{stdout}"));
    let mut args: Vec<String> = serde_json::from_str(line).unwrap();
    assert_eq!(args.remove(0), "postgres");
    assert!(args.contains(&format!("archive_command={ARCHIVE_COMMAND}")), "{args:?}");
    let config = std::fs::read_to_string(dir.path().join("drctl.toml")).unwrap();
    assert!(
        config.contains("# type = \"postgres_cluster\"") && config.contains(line),
        "{config}"
    );
    args
}

fn workspace(project: &str) -> Workspace {
    let ws = Workspace::new();
    ws.write_config(
        &ws.fs_storage_toml("local"),
        &format!(
            "[[source]]\nname = \"{SOURCE}\"\ntype = \"postgres_cluster\"\nservice = \"postgres\"\ncompose_project = \"{project}\"\n"
        ),
    );
    // A restore --start as root runs the server as postgres, which reads the config and key.
    chown_postgres(ws.path());
    ws
}

/// The WAL files waiting in the container's spool.
fn spooled(engine: &DockerEngine, pg: &ComposePostgres) -> Vec<String> {
    engine
        .podman(&[
            "exec",
            &pg.name,
            "sh",
            "-c",
            "ls -1a /var/lib/postgresql/data/pg_wal/drctl-spool 2>/dev/null || true",
        ])
        .into_iter()
        .filter(|n| n.len() >= 16 && !n.starts_with('.'))
        .collect()
}

/// Waits until the server has put the segment holding its insert position into the spool
/// (after a switch), so that a drain will find it.
fn switch_and_wait_spooled(engine: &DockerEngine, pg: &ComposePostgres) -> String {
    let seg = engine.psql_in(pg, "select pg_walfile_name(pg_current_wal_insert_lsn())");
    engine.psql_in(pg, "select pg_switch_wal()");
    let t0 = Instant::now();
    loop {
        let last = engine.psql_in(pg, "select coalesce(last_archived_wal, '') from pg_stat_archiver");
        if last.len() == 24 && last >= seg {
            return seg;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "{seg} never reached the spool (last archived: {last:?}): {:?}",
            engine.podman(&["logs", "--tail", "30", &pg.name])
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_cluster_in_a_container_archives_through_its_spool_and_recovers_to_a_second() {
    let _g = exclusive();
    let engine = DockerEngine::start();
    let pg = engine.compose_postgres_with("app", "postgres", "app-postgres-1", &archiving_args());
    engine.psql_in(&pg, "create table t (v text); insert into t values ('before')");
    let ws = workspace("app");

    // The base backup, by exec, from a host with no PostgreSQL tools on drctl's PATH; the WAL
    // it needs is drained from the spool before its manifest is written.
    let (code, out, err) = engine.run_drctl(&ws, &["backup", "--source", SOURCE], &[]);
    assert_eq!(code, 0, "backup failed:\n{out}\n{err}");
    let list = ws.list_json();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["kind"], "postgres_cluster");
    let facts = &list[0]["facts"];
    assert_eq!(
        facts["system_identifier"].as_str().unwrap(),
        engine.psql_in(&pg, "select system_identifier from pg_control_system()"),
        "{facts}"
    );
    assert_eq!(facts["major"], pg_major(), "{facts}");
    assert!(spooled(&engine, &pg).is_empty(), "the backup left WAL in the spool");
    let root = ws.fs_root("local");
    let stop_wal = facts["stop_wal"].as_str().unwrap();
    assert!(
        files_under(&root)
            .iter()
            .any(|f| f.contains(stop_wal) && f.ends_with(".json")),
        "the backup's last segment {stop_wal} is archived: {:?}",
        files_under(&root)
    );

    // Commit A, note T, commit B; the segment holding them goes through the spool.
    let psql = |sql: &str| engine.psql_in(&pg, sql);
    std::thread::sleep(Duration::from_millis(1100));
    psql("insert into t values ('A')");
    std::thread::sleep(Duration::from_millis(1100));
    let t = server_now(&psql);
    std::thread::sleep(Duration::from_millis(1100));
    psql("insert into t values ('B')");
    let seg = switch_and_wait_spooled(&engine, &pg);
    assert!(spooled(&engine, &pg).contains(&seg), "{seg} in the spool");
    let (code, out, err) = engine.run_drctl(&ws, &["wal-spool", "--source", SOURCE], &[]);
    assert_eq!(code, 0, "wal-spool failed:\n{out}\n{err}");
    assert!(out.contains("archived") && out.contains("0 left in the spool"), "{out}");
    assert!(
        spooled(&engine, &pg).is_empty(),
        "archived files are removed from the spool"
    );
    // A second drain has nothing to do and says so.
    let (code, out, _) = engine.run_drctl(&ws, &["wal-spool", "--source", SOURCE], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("0 WAL file(s) archived"), "{out}");

    // Recovery to T on this host, from the archive alone: A is there, B is not.
    let dir = ws.path().join("recovered");
    std::fs::create_dir_all(&dir).unwrap();
    chown_postgres(&dir);
    let port = free_port();
    let ident = ws.identity.to_str().unwrap().to_string();
    let (code, out, err) = ws.run(&[
        "restore",
        "--source",
        SOURCE,
        "--at",
        &t,
        "--identity",
        &ident,
        "--target-datadir",
        dir.to_str().unwrap(),
        "--start",
        "--port",
        &port.to_string(),
    ]);
    let r = Restored {
        dir,
        port,
        bin: pg_bindir(),
    };
    assert_eq!(code, 0, "restore --at {t}:\n{out}\n{err}");
    // The recovered cluster's superuser is the image's POSTGRES_USER, and its database.
    let got = as_pg_user(&r.bin.join("psql"))
        .arg("-h")
        .arg(&r.dir)
        .args([
            "-p",
            &r.port.to_string(),
            "-U",
            &pg.user,
            "-d",
            &pg.db,
            "-X",
            "-A",
            "-t",
            "-q",
            "-c",
        ])
        .arg("select string_agg(v, ',' order by v) from t")
        .output()
        .unwrap();
    assert!(got.status.success(), "{}", String::from_utf8_lossy(&got.stderr));
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "A,before");
    drop(r);

    // Into a fresh stack: `docker compose create postgres` (empty volume, not started), one
    // restore by service, `docker compose start`: recovery runs in the container and promotes.
    let fresh = engine.compose_postgres_created("restored", "postgres", "restored-postgres-1", &archiving_args());
    let restore = |extra: &[&str]| {
        let mut args = vec!["restore", "--source", SOURCE, "--at", &t, "--identity", &ident];
        args.extend_from_slice(extra);
        engine.run_drctl(&ws, &args, &[])
    };
    let (code, out, err) = restore(&["--target", "service:postgres", "--compose-project", "restored"]);
    assert_eq!(code, 0, "restore into the stopped container:\n{out}\n{err}");
    assert!(
        out.contains("into /var/lib/postgresql/data of the stopped container 'restored-postgres-1'"),
        "{out}"
    );
    engine.start_postgres(&fresh);
    let t0 = Instant::now();
    while engine.psql_in(&fresh, "select pg_is_in_recovery()") != "f" {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "{:?}",
            engine.podman(&["logs", "--tail", "30", &fresh.name])
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        engine.psql_in(&fresh, "select string_agg(v, ',' order by v) from t"),
        "A,before"
    );
    // The recovered cluster goes on archiving into its spool, on a new timeline.
    engine.psql_in(&fresh, "insert into t values ('after')");
    let seg = switch_and_wait_spooled(&engine, &fresh);
    assert!(seg.starts_with("00000002"), "{seg}");
    // A running container, or one whose volume holds a cluster, is refused and left alone.
    let (code, _, err) = restore(&["--target", "service:postgres", "--compose-project", "restored"]);
    assert_eq!(code, 1);
    assert!(err.contains("is running"), "{err}");
    engine.podman(&["stop", &fresh.name]);
    let (code, _, err) = restore(&["--target", "service:postgres", "--compose-project", "restored"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("already holds a cluster") && err.contains("nothing was written"),
        "{err}"
    );
}

#[test]
fn a_container_cluster_that_does_not_archive_into_the_spool_is_refused_with_the_lines_to_add() {
    let _g = exclusive();
    let engine = DockerEngine::start();
    // Archiving on, but somewhere else: base backups would have no WAL drctl can reach.
    let other = ["-c", "archive_mode=on", "-c", "archive_command=cp %p /tmp/%f"].map(String::from);
    let pg = engine.compose_postgres_with("elsewhere", "postgres", "elsewhere-postgres-1", &other);
    let ws = workspace("elsewhere");
    let (code, out, err) = engine.run_drctl(&ws, &["backup", "--source", SOURCE], &[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("does not copy into pg_wal/drctl-spool") && err.contains(ARCHIVE_COMMAND),
        "{err}"
    );
    assert!(ws.list_json().is_empty());
    assert!(spooled(&engine, &pg).is_empty());

    // Not archiving at all: the same hint.
    let off = engine.compose_postgres("plain", "postgres", "plain-postgres-1");
    let ws = workspace("plain");
    let (code, out, err) = engine.run_drctl(&ws, &["backup", "--source", SOURCE], &[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("archive_mode = off") && err.contains(ARCHIVE_COMMAND),
        "{err}"
    );
    assert!(ws.list_json().is_empty());
    let _ = off;
}
