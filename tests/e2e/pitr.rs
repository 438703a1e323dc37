//! Point-in-time recovery (`type = "postgres_cluster"`): a real cluster archiving through
//! `drctl wal-push`, base backups, and recoveries through `drctl wal-fetch` into new data
//! directories, checked by what the recovered server holds.
//!
//! As root, PostgreSQL runs as `postgres`, and so does every drctl command here (the
//! archive_command runs as the server's user; the workspace, its config, identity and fs
//! storage belong to that user, as they would on a host).

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const SOURCE: &str = "app-cluster";

struct Rig {
    ws: Workspace,
    pg: Postgres,
}

pub(crate) fn chown_postgres(p: &Path) {
    if is_root() {
        let st = Command::new("chown")
            .arg("-R")
            .arg("postgres:postgres")
            .arg(p)
            .status()
            .unwrap();
        assert!(st.success());
    }
}

fn cluster_toml(pg_port: u16) -> String {
    format!(
        "[[source]]\nname = \"{SOURCE}\"\ntype = \"postgres_cluster\"\nurl = \"postgres://postgres:${{DRCTL_PG_PASSWORD}}@127.0.0.1:{pg_port}/postgres\"\n"
    )
}

impl Rig {
    /// A cluster whose archive_command is `drctl wal-push`. Only the original data directory
    /// archives (the command checks its working directory, which is the data directory): a
    /// server restored from it would otherwise promote and push a new timeline into the same
    /// archive, and each later recovery here would follow that timeline ('latest').
    fn start(extra_conf: &str) -> Rig {
        Self::start_with(extra_conf, true)
    }

    /// `only_original`: false lets a recovered copy archive too (timelines).
    fn start_with(extra_conf: &str, only_original: bool) -> Rig {
        let ws = Workspace::new();
        let port = free_port();
        ws.write_config(&ws.fs_storage_toml("local"), &cluster_toml(port));
        chown_postgres(ws.path());
        let drctl = env!("CARGO_BIN_EXE_drctl");
        let cfg = ws.path().join("drctl.toml");
        // The port is chosen before initdb so that the config can name it.
        let pg = Postgres::start_on(
            port,
            &[],
            &format!(
                "archive_mode = on\narchive_timeout = 5\narchive_command = '{}exec {drctl} --config {} wal-push --source {SOURCE} %p'\n{extra_conf}",
                if only_original { "test \"$(pwd -P)\" = \"@DATA@\" && " } else { "" },
                cfg.display()
            ),
        );
        Rig { ws, pg }
    }

    /// drctl as the server's user, with the workspace's config and the test passwords.
    fn drctl(&self, args: &[&str]) -> (i32, String, String) {
        let base = self.ws.drctl();
        let mut c = as_pg_user(Path::new(env!("CARGO_BIN_EXE_drctl")));
        c.current_dir(self.ws.path());
        for (k, v) in base.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        let out = c.args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.drctl(args);
        assert_eq!(code, 0, "drctl {args:?}:\nstdout: {out}\nstderr: {err}");
        out
    }

    fn psql(&self, sql: &str) -> String {
        self.pg.psql("postgres", sql).trim().to_string()
    }

    fn now(&self) -> String {
        server_now(&|sql| self.psql(sql))
    }

    /// Waits until the segment holding the current insert position is archived (through
    /// archive_timeout, or a switch when `switch`).
    fn wait_archived(&self, switch: bool) {
        wait_until_archived(&|sql| self.psql(sql), switch, &|| self.pg.log());
    }

    /// Commits 'A', notes the server's time T, commits 'B', a second apart each, after a
    /// second's pause: T lies strictly between the commits. Returns (a time before A, T).
    fn a_then_t_then_b(&self) -> (String, String) {
        std::thread::sleep(Duration::from_millis(1100));
        let before_a = self.now();
        std::thread::sleep(Duration::from_millis(1100));
        self.psql("insert into t values ('A')");
        std::thread::sleep(Duration::from_millis(1100));
        let t = self.now();
        std::thread::sleep(Duration::from_millis(1100));
        self.psql("insert into t values ('B')");
        (before_a, t)
    }

    fn datadir(&self, name: &str) -> PathBuf {
        let d = self.ws.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        chown_postgres(&d);
        d
    }

    /// `restore --at AT --target-datadir DIR --start --port P`: the restored server, stopped when dropped.
    fn recover(&self, at: &str, name: &str) -> (Restored, String) {
        let dir = self.datadir(name);
        let port = free_port();
        let ident = self.ws.identity.to_str().unwrap().to_string();
        let (code, out, err) = self.drctl(&[
            "restore",
            "--source",
            SOURCE,
            "--at",
            at,
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
            bin: self.pg.bin().to_path_buf(),
        };
        assert_eq!(code, 0, "restore --at {at}:\nstdout: {out}\nstderr: {err}");
        (r, out)
    }
}

/// A server `restore --start` left running.
pub(crate) struct Restored {
    pub(crate) dir: PathBuf,
    pub(crate) port: u16,
    pub(crate) bin: PathBuf,
}

/// A server's clock, UTC, with an explicit offset: the form `--at` requires.
pub(crate) fn server_now(psql: &dyn Fn(&str) -> String) -> String {
    psql("select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
}

/// Waits until a server has archived the segment holding its current insert position (after
/// switching to a new segment when `switch`); `log` is shown if it never does.
fn wait_until_archived(psql: &dyn Fn(&str) -> String, switch: bool, log: &dyn Fn() -> String) {
    let seg = psql("select pg_walfile_name(pg_current_wal_insert_lsn())");
    if switch {
        psql("select pg_switch_wal()");
    }
    let t0 = Instant::now();
    loop {
        let last = psql("select coalesce(last_archived_wal, '') from pg_stat_archiver");
        if last.len() == 24 && last >= seg {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "segment {seg} not archived in 90 s (last: {last}); server log:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `prog` as the server's user: `postgres` when the tests run as root.
pub(crate) fn as_pg_user(prog: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(prog);
        c
    } else {
        Command::new(prog)
    }
}

impl Restored {
    pub(crate) fn psql(&self, sql: &str) -> String {
        let out = as_pg_user(&self.bin.join("psql"))
            .arg("-h")
            .arg(&self.dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-X",
                "-A",
                "-t",
                "-q",
                "-c",
                sql,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

impl Drop for Restored {
    fn drop(&mut self) {
        let _ = as_pg_user(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.dir)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// The first two tests: commit A, note T, commit B; recover to T (A, not B), to a
/// second before A (neither), and to `now` on an idle server, whose last segment only reaches
/// the archive through archive_timeout (both).
#[test]
fn recovers_to_the_second_between_two_commits_and_to_the_end_of_the_archive() {
    let rig = Rig::start("");
    rig.pg.psql("postgres", "create table t (x text)");
    rig.pg.psql(
        "postgres",
        "create table filler as select g, md5(g::text) from generate_series(1, 50000) g",
    );
    let out = rig.ok(&["backup", "--source", SOURCE]);
    assert!(out.contains(SOURCE), "{out}");
    // The base backup's manifest: where its WAL starts and ends, and which cluster it is.
    let list = rig.ws.list_json();
    assert_eq!(list[0]["kind"], "postgres_cluster", "{list:?}");
    let facts = &list[0]["facts"];
    let sysid = rig
        .pg
        .psql("postgres", "select system_identifier from pg_control_system()");
    assert_eq!(facts["system_identifier"], sysid.trim(), "{facts}");
    assert!(facts["start_wal"].as_str().unwrap().starts_with("00000001"), "{facts}");

    std::thread::sleep(Duration::from_millis(1000));
    let (before_a, t) = rig.a_then_t_then_b();
    // No switch: archive_timeout (5 s) must bring B's segment to the archive on an idle server.
    rig.wait_archived(false);

    let (r, out) = rig.recover(&t, "at-t");
    assert_eq!(r.psql("select string_agg(x, ',' order by x) from t"), "A", "{out}");
    assert!(out.contains("asked for:") && out.contains("reached:"), "{out}");
    assert_eq!(r.psql("select pg_is_in_recovery()"), "f");
    assert_eq!(r.psql("select count(*) from filler"), "50000");
    drop(r);

    let (r, _) = rig.recover(&before_a, "before-a");
    assert_eq!(r.psql("select count(*) from t"), "0");
    drop(r);

    let (r, out) = rig.recover("now", "now");
    assert_eq!(r.psql("select string_agg(x, ',' order by x) from t"), "A,B", "{out}");
    assert!(out.contains("the end of the archive"), "{out}");
}

/// A time without an offset is refused before anything is read or written: the server would
/// read it in its own TimeZone.
#[test]
fn a_target_time_without_an_offset_is_refused() {
    let ws = Workspace::new();
    ws.write_config(&ws.fs_storage_toml("local"), &cluster_toml(5432));
    let dir = ws.path().join("d");
    let (code, _, err) = ws.run(&[
        "restore",
        "--source",
        SOURCE,
        "--at",
        "2026-12-01 17:04:30",
        "--target-datadir",
        dir.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("no UTC offset") && err.contains("TimeZone"), "{err}");
    assert!(!dir.exists());
}

impl Rig {
    fn wal_dir(&self) -> PathBuf {
        self.ws.fs_root("local").join(format!("wal/{SOURCE}/00000001"))
    }

    /// Archived segment names of timeline 1, in order.
    fn archived_segments(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.wal_dir())
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                let s = n.strip_suffix(".json")?.to_string();
                (s.len() == 24).then_some(s)
            })
            .collect();
        v.sort();
        v
    }

    fn record(&self, seg: &str) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.wal_dir().join(format!("{seg}.json"))).unwrap()).unwrap()
    }

    /// Writes some WAL and switches segments `n` times, then waits until all is archived.
    fn make_segments(&self, n: usize) {
        for i in 0..n {
            self.pg.psql(
                "postgres",
                &format!("insert into t select 'row {i}-' || g from generate_series(1, 1000) g"),
            );
            if i + 1 < n {
                self.pg.psql("postgres", "select pg_switch_wal()");
            }
        }
        self.wait_archived(true);
    }

    /// A stored segment decrypted with stock `age` and `zstd`, written to `dir/<seg>`.
    fn by_hand(&self, seg: &str, dir: &Path) -> PathBuf {
        let out = dir.join(seg);
        let st = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "age -d -i '{}' '{}' | zstd -d -q > '{}'",
                self.ws.identity.display(),
                self.wal_dir().join(format!("{seg}.zst.age")).display(),
                out.display()
            ))
            .status()
            .unwrap();
        assert!(st.success());
        chown_postgres(&out);
        out
    }
}

fn sha256_hex(p: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(p).unwrap()))
}

fn flip_byte(p: &Path, at: u64) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(p).unwrap();
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0x5a]).unwrap();
}

/// The archive_command contract: a segment pushed again with the same content succeeds; with
/// other content it fails with status 1 and the stored copy stays; a segment of another
/// cluster is refused; while the storage is down the server keeps its segments (`.ready`) and
/// hears status 1, never a code that would make its archiver crash; archiving catches up when
/// the storage is back. A stored segment decrypts with stock age and zstd into the original.
#[test]
fn wal_push_never_overwrites_refuses_other_clusters_and_catches_up_after_an_outage() {
    let rig = Rig::start("");
    rig.pg.psql("postgres", "create table t (x text)");
    rig.make_segments(2);
    let segs = rig.archived_segments();
    let seg = segs.last().unwrap().clone();
    let tmp = rig.datadir("hand");
    let plain = rig.by_hand(&seg, &tmp);
    // Stock tools give back the segment byte for byte (its SHA-256 is in the record).
    assert_eq!(
        sha256_hex(&plain),
        rig.record(&seg)["plain"]["sha256"].as_str().unwrap()
    );
    assert_eq!(std::fs::metadata(&plain).unwrap().len(), 16 * 1024 * 1024);

    let (code, _, err) = rig.drctl(&["wal-push", "--source", SOURCE, plain.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("already archived with the same content"), "{err}");

    let stored_before = std::fs::read(rig.wal_dir().join(format!("{seg}.zst.age"))).unwrap();
    flip_byte(&plain, 100_000);
    let (code, _, err) = rig.drctl(&["wal-push", "--source", SOURCE, plain.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("already archived with different content"), "{err}");
    assert_eq!(
        std::fs::read(rig.wal_dir().join(format!("{seg}.zst.age"))).unwrap(),
        stored_before,
        "the archived copy was changed"
    );

    // Another cluster's first segment, under a name this archive already holds.
    let other = Postgres::start();
    let first = other.data_dir().join("pg_wal/000000010000000000000001");
    let theirs = tmp.join("000000010000000000000001");
    std::fs::copy(&first, &theirs).unwrap();
    chown_postgres(&theirs);
    let (code, _, err) = rig.drctl(&["wal-push", "--source", SOURCE, theirs.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is from another cluster"), "{err}");
    // A file that is not a segment of its name is refused too.
    let renamed = tmp.join("0000000100000000000000FE");
    std::fs::copy(&plain, &renamed).unwrap();
    chown_postgres(&renamed);
    let (code, _, err) = rig.drctl(&["wal-push", "--source", SOURCE, renamed.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is not the segment its name says"), "{err}");

    // The storage goes away (its root becomes a file).
    let root = rig.ws.fs_root("local");
    let away = rig.ws.path().join("away");
    std::fs::rename(&root, &away).unwrap();
    std::fs::write(&root, b"not a directory").unwrap();
    let before = rig.pg.psql("postgres", "select failed_count from pg_stat_archiver");
    rig.pg.psql("postgres", "insert into t values ('during the outage')");
    let during = rig
        .pg
        .psql("postgres", "select pg_walfile_name(pg_current_wal_insert_lsn())")
        .trim()
        .to_string();
    rig.pg.psql("postgres", "select pg_switch_wal()");
    let t0 = Instant::now();
    while rig.pg.psql("postgres", "select failed_count from pg_stat_archiver") == before {
        assert!(t0.elapsed() < Duration::from_secs(60), "archiving never failed");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        rig.pg
            .data_dir()
            .join(format!("pg_wal/archive_status/{during}.ready"))
            .exists(),
        "the server no longer holds {during} for archiving"
    );
    let log = rig.pg.log();
    assert!(log.contains("failed with exit code 1"), "{log}");
    assert!(
        !log.contains("terminated by signal") && !log.contains("exit code 126"),
        "{log}"
    );

    // Back: the server's next attempt archives what it kept, in order.
    std::fs::remove_file(&root).unwrap();
    std::fs::rename(&away, &root).unwrap();
    rig.pg.psql("postgres", "insert into t values ('after the outage')");
    rig.wait_archived(true);
    assert!(rig.archived_segments().contains(&during));
    // And status sees the storage caught up with the server.
    let t0 = Instant::now();
    loop {
        let out = rig.ok(&["status"]);
        if out.contains("0 complete segment(s) not yet on every storage") {
            assert!(out.contains("WAL on local   newest "), "{out}");
            // The server's failures during the outage stay visible.
            assert!(out.contains(&format!("failure(s), the last for {during}")), "{out}");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "{out}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The restore_command contract and the checks before a restore writes anything: a segment
/// that is not archived is status 1; a damaged one or an unreachable storage is 126, and a
/// recovery that meets one stops instead of promoting; a segment missing in the middle of the
/// chain is named before anything is written.
#[test]
fn wal_fetch_says_not_archived_only_when_it_is_not_and_recovery_stops_on_damage() {
    let rig = Rig::start("");
    rig.pg.psql("postgres", "create table t (x text)");
    rig.ok(&["backup", "--source", SOURCE]);
    rig.make_segments(4);
    let segs = rig.archived_segments();
    let ident = rig.ws.identity.to_str().unwrap().to_string();
    let tmp = rig.datadir("fetched");

    let dest = tmp.join("RECOVERYXLOG");
    let fetch = |name: &str| {
        rig.drctl(&[
            "wal-fetch",
            "--source",
            SOURCE,
            "--identity",
            &ident,
            name,
            dest.to_str().unwrap(),
        ])
    };
    let (code, _, err) = fetch("0000000100000000000000F0");
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = fetch("00000009.history");
    assert_eq!(code, 1, "{err}");
    assert!(!dest.exists());
    let last = segs.last().unwrap().clone();
    let (code, _, err) = fetch(&last);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        sha256_hex(&dest),
        rig.record(&last)["plain"]["sha256"].as_str().unwrap()
    );

    // Read-ahead: serving one segment starts a prefetcher that brings the next ones into
    // pg_wal/.drctl-prefetch (here: beside %p); the next request is served from there.
    std::fs::remove_file(&dest).unwrap();
    let (code, _, err) = fetch(&segs[0]);
    assert_eq!(code, 0, "{err}");
    let cache = tmp.join(".drctl-prefetch");
    let t0 = Instant::now();
    while !segs[1..].iter().all(|s| cache.join(s).exists()) {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the prefetcher did not bring {:?}: {:?}",
            &segs[1..],
            std::fs::read_dir(&cache).map(|r| r.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::remove_file(&dest).unwrap();
    let (code, _, err) = fetch(&segs[1]);
    assert_eq!(code, 0, "{err}");
    assert!(!cache.join(&segs[1]).exists(), "served, but not from the cache");
    assert_eq!(
        sha256_hex(&dest),
        rig.record(&segs[1])["plain"]["sha256"].as_str().unwrap()
    );

    // A segment missing in the middle of the chain: named, nothing written.
    let middle = segs[segs.len() - 2].clone();
    let record = rig.wal_dir().join(format!("{middle}.json"));
    let aside = rig.ws.path().join("aside.json");
    std::fs::rename(&record, &aside).unwrap();
    let dir = rig.datadir("gap");
    let (code, out, err) = rig.drctl(&[
        "restore",
        "--source",
        SOURCE,
        "--at",
        "now",
        "--identity",
        &ident,
        "--target-datadir",
        dir.to_str().unwrap(),
    ]);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains(&format!("WAL segment {middle} is missing")), "{err}");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "the data directory was written"
    );
    // check and wal-verify report the gap without an identity, naming the segment.
    let (code, out, err) = rig.drctl(&["check"]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains(&format!("WAL segment {middle} of '{SOURCE}' is missing")),
        "{out}\n{err}"
    );
    let (code, out, _) = rig.drctl(&["wal-verify", "--source", SOURCE]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("1 segment(s) missing") && out.contains(&middle), "{out}");
    std::fs::rename(&aside, &record).unwrap();
    let out = rig.ok(&["wal-verify", "--source", SOURCE]);
    assert!(out.contains("WAL complete") && out.contains("0 problem(s)"), "{out}");
    let out = rig.ok(&["check"]);
    assert!(out.contains("0 problem(s)"), "{out}");

    // A flipped byte in a stored segment: 126, and recovery stops there without promoting.
    // (The read-ahead cache above holds a copy checked when it was fetched; empty it.)
    std::fs::remove_dir_all(&cache).unwrap();
    let object = rig.wal_dir().join(format!("{last}.zst.age"));
    let good = std::fs::read(&object).unwrap();
    flip_byte(&object, good.len() as u64 / 2);
    let (code, _, err) = fetch(&last);
    assert_eq!(code, 126, "{err}");
    let dir = rig.datadir("damaged");
    let port = free_port();
    let (code, out, err) = rig.drctl(&[
        "restore",
        "--source",
        SOURCE,
        "--at",
        "now",
        "--identity",
        &ident,
        "--target-datadir",
        dir.to_str().unwrap(),
        "--start",
        "--port",
        &port.to_string(),
    ]);
    let _stop = Restored {
        dir: dir.clone(),
        port,
        bin: rig.pg.bin().to_path_buf(),
    };
    assert_ne!(code, 0, "recovery went past a damaged segment:\n{out}");
    assert!(
        err.contains("recovery did not finish") || err.contains("pg_ctl start"),
        "{err}"
    );
    // It stopped because wal-fetch exited 126 for the damaged segment ("command not
    // executable" is how PostgreSQL names 126), not for another reason.
    let log = std::fs::read_to_string(dir.join("drctl-recovery.log")).unwrap_or_default();
    assert!(
        log.contains(&format!(
            "FATAL:  could not restore file \"{last}\" from archive: command not executable"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!("wal-fetch {last}: ")) && log.contains("damaged"),
        "{log}"
    );
    let control = Command::new(rig.pg.bin().join("pg_controldata"))
        .arg(&dir)
        .output()
        .unwrap();
    let control = String::from_utf8_lossy(&control.stdout);
    assert!(!control.contains("in production"), "the server promoted:\n{control}");
    std::fs::write(&object, &good).unwrap();

    // The storage unreachable: 126 as well.
    let root = rig.ws.fs_root("local");
    std::fs::rename(&root, rig.ws.path().join("away")).unwrap();
    std::fs::write(&root, b"not a directory").unwrap();
    let (code, _, err) = fetch(&last);
    assert_eq!(code, 126, "{err}");
}

/// Runbook 9, drilled: a migration deletes rows; the cluster is recovered beside the live one
/// to a moment before it, and the rows are copied back.
#[test]
fn drill_runbook_9_recover_to_the_minute_before_a_bad_migration() {
    let rig = Rig::start("");
    rig.pg.createdb("app");
    rig.pg.psql(
        "app",
        "create table users (id int primary key, name text); insert into users select g, 'user ' || g from generate_series(1, 300) g",
    );
    rig.pg.psql("postgres", "create table t (x text)");
    rig.ok(&["backup", "--source", SOURCE]);
    std::thread::sleep(Duration::from_millis(1100));
    let at = rig.now();
    std::thread::sleep(Duration::from_millis(1100));
    rig.pg.psql("app", "delete from users where id > 100");
    rig.wait_archived(true);

    let newdata = rig.datadir("pitr");
    let env: Vec<(&str, String)> = vec![
        ("DRCTL_CONFIG", rig.ws.path().join("drctl.toml").display().to_string()),
        ("IDENTITY", rig.ws.identity.display().to_string()),
        ("AT", at.clone()),
        ("NEWDATA", newdata.display().to_string()),
        ("PORT", free_port().to_string()),
        ("PGBIN", rig.pg.bin().display().to_string()),
        ("PGUSER", "postgres".into()),
        ("PGHOST", "127.0.0.1".into()),
        ("PGPORT", rig.pg.port.to_string()),
        ("PGPASSWORD", PG_PASSWORD.into()),
        ("DRCTL_PG_PASSWORD", PG_PASSWORD.into()),
    ];
    let stop = Restored {
        dir: newdata.clone(),
        port: 0,
        bin: rig.pg.bin().to_path_buf(),
    };
    let out = crate::runbooks::run_runbook("09-postgres-point-in-time.md", &env);
    assert!(out.contains("reached:"), "{out}");
    // Step 3 printed the count as it was; step 4 copied the rows back into the live database.
    assert!(out.lines().any(|l| l.trim() == "300"), "{out}");
    assert_eq!(rig.pg.psql("app", "select count(*) from users").trim(), "300");
    drop(stop);
}

impl Restored {
    /// Switches to a new segment and waits until this server has archived it.
    fn wait_archived(&self) {
        wait_until_archived(&|sql| self.psql(sql), true, &|| {
            std::fs::read_to_string(self.dir.join("drctl-recovery.log")).unwrap_or_default()
        });
    }

    fn now(&self) -> String {
        server_now(&|sql| self.psql(sql))
    }
}

/// Timelines: a recovery promotes onto timeline 2 and archives there; a later recovery to a
/// point on timeline 2 follows it ('latest') from the timeline-1 base backup.
#[test]
fn recovers_to_a_point_on_the_timeline_a_previous_recovery_started() {
    let rig = Rig::start_with("", false);
    rig.pg.psql("postgres", "create table t (x text)");
    rig.ok(&["backup", "--source", SOURCE]);
    let (_, t1) = rig.a_then_t_then_b();
    rig.wait_archived(true);

    let (r1, out) = rig.recover(&t1, "tl2");
    assert!(out.contains("timeline 2"), "{out}");
    assert_eq!(r1.psql("select string_agg(x, ',' order by x) from t"), "A");
    r1.psql("insert into t values ('C')");
    std::thread::sleep(Duration::from_millis(1100));
    let t2 = r1.now();
    std::thread::sleep(Duration::from_millis(1100));
    r1.psql("insert into t values ('D')");
    r1.wait_archived();
    drop(r1);
    let history = rig.wal_dir().parent().unwrap().join("00000002/00000002.history.json");
    assert!(history.exists(), "timeline 2's history was not archived");

    let (r2, out) = rig.recover(&t2, "tl2-again");
    assert!(out.contains("(timeline 2)"), "{out}");
    assert_eq!(r2.psql("select string_agg(x, ',' order by x) from t"), "A,C", "{out}");
}

/// The RPO test: the server is killed (-9) under a steady write load with
/// archive_timeout = 10 s; a recovery to the end of the archive holds every commit older than
/// archive_timeout plus the upload time. Prints the measured RPO.
#[test]
fn a_killed_server_loses_at_most_archive_timeout_of_commits() {
    let rig = Rig::start("archive_timeout = 10");
    rig.pg.psql(
        "postgres",
        "create table t (x text); create table commits (id bigserial primary key, at timestamptz not null default clock_timestamp())",
    );
    rig.ok(&["backup", "--source", SOURCE]);
    let script = rig.datadir("load").join("insert.sql");
    std::fs::write(&script, "insert into commits default values;\n").unwrap();
    let mut load = Command::new(rig.pg.bin().join("pgbench"))
        .env("PGPASSWORD", PG_PASSWORD)
        .args(["-n", "-c", "2", "-T", "60", "-h", "127.0.0.1", "-U", "postgres", "-p"])
        .arg(rig.pg.port.to_string())
        .arg("-f")
        .arg(&script)
        .arg("postgres")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(25));
    // Archiving keeps up with the load: the backlog of segments waiting for wal-push.
    let backlog = std::fs::read_dir(rig.pg.data_dir().join("pg_wal/archive_status"))
        .map(|r| {
            r.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".ready"))
                .count()
        })
        .unwrap_or(0);
    // kill -9 the postmaster, as a power cut would stop it.
    let pid: i32 = std::fs::read_to_string(rig.pg.data_dir().join("postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let killed_at = chrono::Utc::now();
    assert!(Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let _ = load.wait();
    std::thread::sleep(Duration::from_secs(2));

    let (r, out) = rig.recover("now", "after-crash");
    let last: chrono::DateTime<chrono::Utc> = r
        .psql("select to_char(max(at) at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') from commits")
        .parse()
        .unwrap();
    let restored: i64 = r.psql("select count(*) from commits").parse().unwrap();
    let rpo = (killed_at - last).num_milliseconds() as f64 / 1000.0;
    eprintln!(
        "measured RPO: {rpo:.1} s (archive_timeout 10 s); {restored} commits restored; {backlog} segments waited for wal-push at the kill\n{out}"
    );
    drop(r);

    // The original, crash-recovered from its own WAL, holds every commit: the restored copy
    // has all of them up to its last, and nothing older than archive_timeout + 10 s is lost.
    rig.pg.pg_ctl_start();
    let before_last: i64 = rig
        .pg
        .psql(
            "postgres",
            &format!("select count(*) from commits where at <= '{}'", last.to_rfc3339()),
        )
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        before_last, restored,
        "a commit before the last restored one is missing"
    );
    assert!(
        rpo <= 20.0,
        "RPO {rpo:.1} s exceeds archive_timeout (10 s) + 10 s for the upload"
    );
    assert!(
        restored > 100,
        "the load committed too little to measure anything: {restored}"
    );
}

/// Retention: prune drops the oldest base backup by the source's policy, and with it exactly
/// the WAL that only it needed; every kept base backup still recovers, to a point between two
/// backups and to the end of the archive.
#[test]
fn prune_expires_wal_only_below_the_oldest_kept_base_backup() {
    let rig = Rig::start("");
    // Pruned by hand here, to see the plan first (a backup otherwise prunes its source).
    let cfg = rig
        .ws
        .config_text()
        .replace(
            "type = \"postgres_cluster\"\n",
            "type = \"postgres_cluster\"\nretention = { keep_last = 2 }\n",
        )
        .replace("[daemon]\n", "[prune]\nafter_backup = false\n\n[daemon]\n");
    rig.ws.set_config(&cfg);
    rig.pg.psql("postgres", "create table t (x text)");
    rig.ok(&["backup", "--source", SOURCE]);
    rig.make_segments(3);
    rig.ok(&["backup", "--source", SOURCE]);
    rig.pg.psql("postgres", "insert into t values ('X')");
    rig.make_segments(2);
    std::thread::sleep(Duration::from_millis(1100));
    let between = rig.now();
    std::thread::sleep(Duration::from_millis(1100));
    rig.pg.psql("postgres", "insert into t values ('Y')");
    rig.ok(&["backup", "--source", SOURCE]);
    rig.make_segments(1);

    let list = rig.ws.list_json();
    assert_eq!(list.len(), 3);
    // Newest first: the second backup is the oldest one kept.
    let second_start = list[1]["facts"]["start_wal"].as_str().unwrap().to_string();
    let first_start = list[2]["facts"]["start_wal"].as_str().unwrap().to_string();
    let before = rig.archived_segments();
    assert!(before.iter().any(|s| *s < second_start), "{before:?}");

    let plan = rig.ok(&["prune", "--dry-run"]);
    assert!(plan.contains(&format!("before {second_start}")), "{plan}");
    assert_eq!(rig.archived_segments(), before, "a dry run deleted WAL");
    rig.ok(&["prune"]);
    let after = rig.archived_segments();
    assert!(after.iter().all(|s| *s >= second_start), "{after:?}");
    assert!(!after.contains(&first_start));
    assert_eq!(
        after,
        before
            .iter()
            .filter(|s| **s >= second_start)
            .cloned()
            .collect::<Vec<_>>(),
        "WAL a kept backup needs was deleted"
    );
    // No data object is left behind a deleted record either.
    let objects: Vec<String> = std::fs::read_dir(rig.wal_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() >= 24 && n[..24] < *second_start)
        .collect();
    assert!(objects.is_empty(), "{objects:?}");
    assert_eq!(rig.ws.list_json().len(), 2);

    let marks = "select string_agg(x, ',' order by x) from t where x in ('X', 'Y')";
    let (r, _) = rig.recover(&between, "between");
    assert_eq!(r.psql(marks), "X");
    drop(r);
    let (r, _) = rig.recover("now", "end");
    assert_eq!(r.psql(marks), "X,Y");
}

/// `drctl verify` of a base backup: recovered with all WAL archived since, in a throwaway
/// server that does not archive (the production archive gets no new timeline) and is gone
/// afterwards; a gap in the chain fails it.
#[test]
fn verify_recovers_the_newest_base_backup_with_its_wal_in_a_throwaway_server() {
    let rig = Rig::start_with("", false);
    rig.pg.psql("postgres", "create table t (x text)");
    rig.ok(&["backup", "--source", SOURCE]);
    rig.make_segments(2);
    let ident = rig.ws.identity.to_str().unwrap().to_string();
    let (code, out, err) = rig.drctl(&["verify", "--source", SOURCE, "--identity", &ident]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("replayed to the end of the archive"), "{out}");
    assert!(
        out.contains("PASS app-cluster") && out.contains("restore took"),
        "{out}"
    );
    assert!(
        !rig.wal_dir().parent().unwrap().join("00000002").exists(),
        "the throwaway server archived into the production archive"
    );
    let procs = String::from_utf8(Command::new("ps").args(["-eo", "args"]).output().unwrap().stdout).unwrap();
    assert!(
        !procs.contains("drctl-verify-"),
        "a throwaway server is still running:\n{procs}"
    );

    let segs = rig.archived_segments();
    std::fs::remove_file(rig.wal_dir().join(format!("{}.json", segs[segs.len() - 2]))).unwrap();
    let (code, out, _) = rig.drctl(&["verify", "--source", SOURCE, "--identity", &ident]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains(&segs[segs.len() - 2]), "{out}");
}

/// A segment-shaped file: the long page header of a 1 MiB-segment cluster, zeros after it.
fn fake_segment(dir: &Path, name: &str, sysid: u64, number: u64) -> PathBuf {
    let seg: u64 = 1024 * 1024;
    let mut b = vec![0u8; seg as usize];
    b[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
    b[2..4].copy_from_slice(&0x0002u16.to_le_bytes());
    b[4..8].copy_from_slice(&1u32.to_le_bytes());
    b[8..16].copy_from_slice(&(number * seg).to_le_bytes());
    b[24..32].copy_from_slice(&sysid.to_le_bytes());
    b[32..36].copy_from_slice(&(seg as u32).to_le_bytes());
    b[36..40].copy_from_slice(&8192u32.to_le_bytes());
    let p = dir.join(name);
    std::fs::write(&p, b).unwrap();
    p
}

/// A storage that accepts connections and never answers: wal-push gives up after wal_timeout
/// with status 1 (the server retries), wal-fetch with 126 (recovery stops), instead of
/// stalling the archiver or recovery for ever.
#[test]
fn wal_push_and_fetch_give_up_on_a_storage_that_hangs_after_wal_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in listener.incoming().flatten() {
            held.push(c); // accepted, never answered
        }
    });
    let ws = Workspace::new();
    let storage = format!(
        "[[storage]]\nname = \"stuck\"\ntype = \"s3\"\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:{port}\"\nregion = \"us-east-1\"\naccess_key_id = \"testing\"\nsecret_access_key = \"${{DRCTL_TEST_S3_SECRET}}\"\n"
    );
    ws.write_config(&storage, &format!("{}wal_timeout = \"3s\"\n", cluster_toml(5432)));
    // Segment 3 of a 1 MiB-segment cluster: 000000010000000000000003 (4096 per log id).
    let seg = fake_segment(ws.path(), "000000010000000000000003", 7_000_000_000_000_000_001, 3);
    let t0 = Instant::now();
    let (code, _, err) = ws.run(&["wal-push", "--source", SOURCE, seg.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not archived within wal_timeout"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    let ident = ws.identity.to_str().unwrap().to_string();
    let dest = ws.path().join("RECOVERYXLOG");
    let (code, _, err) = ws.run(&[
        "wal-fetch",
        "--source",
        SOURCE,
        "--identity",
        &ident,
        "000000010000000000000003",
        dest.to_str().unwrap(),
    ]);
    assert_eq!(code, 126, "{err}");
    assert!(err.contains("not fetched within wal_timeout"), "{err}");
    assert!(!dest.exists());
}

/// A storage added to the config later gets the archive's identity with its first segment, so
/// that a restore from it alone finds the archive (and refuses another cluster's segment).
#[test]
fn a_storage_added_later_gets_the_archive_identity() {
    let ws = Workspace::new();
    let one = ws.fs_storage_toml("one");
    ws.write_config(&one, &cluster_toml(5432));
    let sysid = 7_000_000_000_000_000_002;
    let s3 = fake_segment(ws.path(), "000000010000000000000003", sysid, 3);
    ws.ok(&["wal-push", "--source", SOURCE, s3.to_str().unwrap()]);
    assert!(ws.fs_root("one").join(format!("wal/{SOURCE}/archive.json")).exists());

    ws.write_config(&format!("{one}{}", ws.fs_storage_toml("two")), &cluster_toml(5432));
    let s4 = fake_segment(ws.path(), "000000010000000000000004", sysid, 4);
    ws.ok(&["wal-push", "--source", SOURCE, s4.to_str().unwrap()]);
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.fs_root("two").join(format!("wal/{SOURCE}/archive.json"))).unwrap())
            .unwrap();
    assert_eq!(info["system_identifier"], sysid.to_string());
    assert!(ws
        .fs_root("two")
        .join(format!("wal/{SOURCE}/00000001/000000010000000000000004.json"))
        .exists());
    // Pushing segment 3 again fills it in on the new storage only.
    let (code, _, err) = ws.run(&["wal-push", "--source", SOURCE, s3.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(ws
        .fs_root("two")
        .join(format!("wal/{SOURCE}/00000001/000000010000000000000003.json"))
        .exists());
    let other = fake_segment(ws.path(), "000000010000000000000005", sysid + 1, 5);
    let (code, _, err) = ws.run(&["wal-push", "--source", SOURCE, other.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is from another cluster"), "{err}");
}
