//! Restore verification: restore a backup into a throwaway server, check it, record the result
//! next to the backup, clean up. A backup that was never restored is a hope, not a backup.
//!
//! PostgreSQL sandboxes:
//! * `local` (default): a temporary cluster (initdb + pg_ctl) from the server binaries of the
//!   dumped server's major version, listening on a Unix socket in a private temp dir only — no
//!   TCP port, so no other local user can read the restored data. As root it runs as the
//!   `postgres` user (initdb refuses root).
//! * `url`: an existing scratch server; drctl creates a uniquely named database and drops it.
//! * `docker`: a `postgres:<major>` container through testcontainers on the local Docker engine,
//!   its port published on 127.0.0.1 only, a random password; removed afterwards.
//!
//! Checks: the download's hashes and age authentication; `pg_restore --exit-on-error` exits 0;
//! every table's exact row count equals the count recorded at backup time in the dump's own
//! snapshot; and the source's `[[source.verify]] sql` assertions return true.

use crate::catalog::{self, Entry, Manifest};
use crate::config::{Config, SourceConfig, VerifySandbox};
use crate::keys::Identities;
use crate::sources::postgres::{count_rows, pg_config, ConnInfo};
use crate::storage::Storage;
use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::time::Instant;

mod docker;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// Stored as `verify/<source>/<id>.json` in every storage that holds the backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub source: String,
    pub backup_id: String,
    pub at: DateTime<Utc>,
    pub ok: bool,
    /// Download + decrypt + restore, the time a real restore of this backup would take.
    pub rto_seconds: f64,
    pub sandbox: String,
    pub host: String,
    pub drctl_version: String,
    pub checks: Vec<Check>,
}

impl Record {
    pub fn failures(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect()
    }
}

pub fn record_key(source: &str, id: &str) -> String {
    format!("verify/{source}/{id}.json")
}

/// Verification records on one storage, by (source, backup id).
pub async fn records(st: &Storage) -> Result<std::collections::HashMap<(String, String), Record>> {
    let mut out = std::collections::HashMap::new();
    for key in st.list("verify/").await? {
        if let Ok(b) = st.get(&key).await {
            if let Ok(r) = serde_json::from_slice::<Record>(&b) {
                out.insert((r.source.clone(), r.backup_id.clone()), r);
            }
        }
    }
    Ok(out)
}

/// Verifies every source in turn, emitting an event for each; errors that prevent a
/// verification (no backup, unreadable storage) come back as `Err((source, message))`.
pub async fn run_all(
    cfg: &Config,
    sources: &[String],
    at: Option<DateTime<Utc>>,
    storages: &[Storage],
    identities: &Identities,
    events: &crate::events::Events,
) -> Vec<Result<Record, (String, String)>> {
    let mut out = Vec::new();
    for s in sources {
        match verify_source(cfg, s, at, storages, identities).await {
            Ok(r) => {
                let detail = r.failures().join("; ");
                events
                    .emit(crate::events::Event::VerifyFinished {
                        source: s,
                        backup: &r.backup_id,
                        ok: r.ok,
                        rto_seconds: r.rto_seconds,
                        detail: &detail,
                    })
                    .await;
                out.push(Ok(r));
            }
            Err(e) => {
                let msg = format!("{e:#}");
                report_error(events, s, &msg).await;
                out.push(Err((s.clone(), msg)));
            }
        }
    }
    out
}

/// Verifies one source's backup (newest, or the newest at or before `at`) and stores the record.
pub async fn verify_source(
    cfg: &Config,
    source: &str,
    at: Option<DateTime<Utc>>,
    storages: &[Storage],
    identities: &Identities,
) -> Result<Record> {
    let entries = catalog::list(storages, Some(source)).await?;
    let entry = catalog::pick(&entries, source, at.unwrap_or_else(Utc::now))
        .ok_or_else(|| anyhow!("no backup of '{source}' to verify (run `drctl list --source {source}`)"))?;
    let t0 = Instant::now();
    let (checks, rto, sandbox) = match entry.manifest.kind.as_str() {
        "postgres" => verify_postgres(cfg, entry, cfg.source(source), storages, identities).await,
        "redis" | "nats" | "files" => verify_artifact(cfg, entry, storages, identities).await,
        other => bail!("verification of {other} backups is not available"),
    };
    let rto_seconds = rto.unwrap_or_else(|| t0.elapsed().as_secs_f64());
    let record = Record {
        source: source.to_string(),
        backup_id: entry.manifest.id.clone(),
        at: Utc::now(),
        ok: checks.iter().all(|c| c.ok),
        rto_seconds,
        sandbox,
        host: crate::lock::hostname(),
        drctl_version: env!("CARGO_PKG_VERSION").to_string(),
        checks,
    };
    let json = serde_json::to_vec_pretty(&record)?;
    for st in storages.iter().filter(|s| entry.storages.contains(&s.name)) {
        if let Err(e) = st.put(&record_key(source, &entry.manifest.id), json.clone()).await {
            tracing::warn!(storage = %st.name, error = %format!("{e:#}"), "cannot store the verification record");
        }
    }
    Ok(record)
}

/// Ok with `ok` when nothing differs, else an error listing every difference.
fn verdict(diffs: Vec<String>, ok: String, what: &str) -> Result<String> {
    if diffs.is_empty() {
        Ok(ok)
    } else {
        Err(anyhow!("{what} differ: {}", diffs.join("; ")))
    }
}

/// A verification that could not even start (no backup, no identity): one failed event.
pub async fn report_error(events: &crate::events::Events, source: &str, msg: &str) {
    events
        .emit(crate::events::Event::VerifyFinished {
            source,
            backup: "-",
            ok: false,
            rto_seconds: 0.0,
            detail: msg,
        })
        .await;
}

fn check(name: &str, r: Result<String>) -> Check {
    match r {
        Ok(detail) => Check {
            name: name.into(),
            ok: true,
            detail,
        },
        Err(e) => Check {
            name: name.into(),
            ok: false,
            detail: format!("{e:#}"),
        },
    }
}

/// The first check of every kind: fetch, hash and decrypt the backup into `file`.
async fn download(storages: &[Storage], entry: &Entry, identities: &Identities, file: &Path) -> (Check, bool) {
    let m = &entry.manifest;
    let fetched = crate::restore::fetch_to_file(storages, entry, identities, file).await;
    let ok = fetched.is_ok();
    let c = check(
        "download, hashes and decryption",
        fetched.map(|_| {
            format!(
                "{} stored bytes and {} plain bytes match the manifest's SHA-256",
                m.stored.size, m.plain.size
            )
        }),
    );
    (c, ok)
}

/// Returns the checks, the measured restore time, and the sandbox used.
async fn verify_postgres(
    cfg: &Config,
    entry: &Entry,
    src: Option<&SourceConfig>,
    storages: &[Storage],
    identities: &Identities,
) -> (Vec<Check>, Option<f64>, String) {
    let m = &entry.manifest;
    let t0 = Instant::now();
    let mut checks = Vec::new();
    let sandbox = match Sandbox::start(cfg, m).await {
        Ok(s) => s,
        Err(e) => {
            checks.push(check("sandbox", Err(e)));
            return (checks, None, cfg.verify.sandbox.to_string());
        }
    };
    let name = sandbox.describe();
    let file = sandbox.work.path().join("dump.pgdump");
    let (c, ok) = download(storages, entry, identities, &file).await;
    checks.push(c);
    if !ok {
        sandbox.stop().await;
        return (checks, None, name);
    }
    let restored = crate::restore::postgres::pg_restore(&file, &sandbox.conn, jobs(), false, true).await;
    let ok = restored.is_ok();
    checks.push(check("pg_restore", restored.map(|_| "exit 0, no errors".into())));
    let rto = t0.elapsed().as_secs_f64();
    if ok {
        checks.extend(sandbox_checks(&sandbox.conn, m, src).await);
    }
    sandbox.stop().await;
    (checks, Some(rto), name)
}

/// Redis, NATS and files: download into a private work dir, then check by kind.
async fn verify_artifact(
    cfg: &Config,
    entry: &Entry,
    storages: &[Storage],
    identities: &Identities,
) -> (Vec<Check>, Option<f64>, String) {
    let m = &entry.manifest;
    let t0 = Instant::now();
    let mut checks = Vec::new();
    let work = match tempfile::Builder::new()
        .prefix("drctl-verify-")
        .tempdir_in(cfg.verify.work_dir())
    {
        Ok(w) => w,
        Err(e) => {
            checks.push(check("work dir", Err(e.into())));
            return (checks, None, "local".into());
        }
    };
    let file = work.path().join("artifact");
    let (c, ok) = download(storages, entry, identities, &file).await;
    checks.push(c);
    if !ok {
        return (checks, None, "local".into());
    }
    let (more, rto) = match m.kind.as_str() {
        "redis" => verify_redis(m, &file, work.path(), t0).await,
        "nats" => verify_nats(m, &file, work.path(), t0).await,
        _ => verify_files(m, &file, work.path(), t0).await,
    };
    checks.extend(more);
    (checks, rto, format!("local ({})", m.kind))
}

async fn verify_redis(m: &Manifest, rdb: &Path, work: &Path, t0: Instant) -> (Vec<Check>, Option<f64>) {
    let mut checks = Vec::new();
    let out = tokio::process::Command::new("redis-check-rdb").arg(rdb).output().await;
    let read = match &out {
        Ok(o) => String::from_utf8_lossy(&o.stdout).lines().find_map(|l| {
            l.strip_prefix("[info] ")
                .and_then(|r| r.strip_suffix(" keys read"))
                .and_then(|n| n.trim().parse::<u64>().ok())
        }),
        Err(_) => None,
    };
    checks.push(check(
        "redis-check-rdb",
        match out {
            Ok(o) if o.status.success() => Ok(format!(
                "RDB looks OK, {} keys",
                read.map(|n| n.to_string()).unwrap_or_else(|| "?".into())
            )),
            Ok(o) => Err(anyhow!(
                "{}",
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .rev()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" / ")
            )),
            Err(e) => Err(anyhow!("cannot run redis-check-rdb (install redis-tools): {e}")),
        },
    ));
    let temp = match crate::restore::redis::TempRedis::start(rdb, work).await {
        Ok(t) => t,
        Err(e) => {
            checks.push(check("load into a throwaway redis-server", Err(e)));
            return (checks, None);
        }
    };
    let rto = t0.elapsed().as_secs_f64();
    let loaded = async {
        let mut c = crate::sources::redis::connect(&temp.url(0)).await?;
        crate::sources::redis::keyspace(&mut c).await
    }
    .await;
    let recorded = m.facts.get("key_counts").and_then(|v| v.as_object()).cloned();
    let exact = m
        .facts
        .get("key_counts_exact")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    checks.push(check(
        "key counts",
        loaded.and_then(|ks| match (recorded, exact) {
            (Some(rec), true) => {
                let mut diffs = Vec::new();
                for (db, v) in &rec {
                    let want = v["keys"].as_u64().unwrap_or(0);
                    let expires = v["expires"].as_u64().unwrap_or(0);
                    let got = ks.get(db).and_then(|x| x["keys"].as_u64()).unwrap_or(0);
                    // Keys whose TTL ran out since the backup are dropped on load.
                    if got > want || want - got > expires {
                        diffs.push(format!(
                            "{db}: loaded {got} keys, recorded {want} ({expires} with a TTL)"
                        ));
                    }
                }
                let ok = format!("{} databases, counts equal to those recorded at backup time", rec.len());
                verdict(diffs, ok, "key counts")
            }
            _ => Ok("loaded; counts not compared (writes happened while the snapshot was taken)".into()),
        }),
    ));
    drop(temp);
    (checks, Some(rto))
}

async fn verify_nats(m: &Manifest, tarfile: &Path, work: &Path, t0: Instant) -> (Vec<Check>, Option<f64>) {
    let mut checks = Vec::new();
    let store = work.join("store");
    let snapshot = m.facts.get("nats_mode").and_then(|v| v.as_str()) == Some("snapshot");
    if !snapshot {
        let (c, ok) = extract(tarfile, &store, "extract the store").await;
        checks.push(c);
        if !ok {
            return (checks, None);
        }
    }
    let port = free_port();
    let mon = free_port();
    let child = std::process::Command::new("nats-server")
        .args([
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-m",
            &mon.to_string(),
            "-sd",
        ])
        .arg(&store)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            checks.push(check(
                "start nats-server",
                Err(anyhow!("cannot start nats-server (install nats-server): {e}")),
            ));
            return (checks, None);
        }
    };
    let url = format!("http://127.0.0.1:{mon}");
    if snapshot {
        // Wait for the server, then restore every stream through the API.
        let nats_url = format!("nats://127.0.0.1:{port}");
        let started = Instant::now();
        let mut restored = Err(anyhow!("nats-server did not start"));
        while started.elapsed() < std::time::Duration::from_secs(30) {
            if crate::sources::nats::stream_states(&url).await.is_ok() {
                restored = crate::sources::nats_snapshot::restore(tarfile, &nats_url, false).await;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        let ok = restored.is_ok();
        checks.push(check(
            "restore the snapshots through the JetStream API",
            restored.map(|r| format!("{} streams", r.len())),
        ));
        if !ok {
            let _ = child.kill();
            let _ = child.wait();
            return (checks, None);
        }
    }
    let mut states = Err(anyhow!("nats-server did not answer on its monitoring port"));
    let started = Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(60) {
        match crate::sources::nats::stream_states(&url).await {
            Ok(s) => {
                states = Ok(s);
                break;
            }
            Err(e) => states = Err(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let rto = t0.elapsed().as_secs_f64();
    let recorded = m.facts.get("streams").and_then(|v| v.as_object()).cloned();
    checks.push(check(
        "streams",
        states.and_then(|got| match recorded {
            Some(rec) => {
                let mut diffs = Vec::new();
                for (name, want) in &rec {
                    match got.get(name) {
                        Some(g) if g["messages"] == want["messages"] && g["last_seq"] == want["last_seq"] => {}
                        Some(g) => diffs.push(format!(
                            "{name}: restored {} messages up to seq {}, recorded {} up to {}",
                            g["messages"], g["last_seq"], want["messages"], want["last_seq"]
                        )),
                        None => diffs.push(format!("{name}: missing from the restored server")),
                    }
                }
                let ok = format!(
                    "{} streams, message counts and last sequences equal to those recorded",
                    rec.len()
                );
                verdict(diffs, ok, "streams")
            }
            None => Ok(format!(
                "server started with {} streams; no counts were recorded (set monitor_url)",
                got.len()
            )),
        }),
    ));
    let _ = child.kill();
    let _ = child.wait();
    (checks, Some(rto))
}

/// Extracts a tar artifact (with restore's escape checks) as a check named `name`.
async fn extract(tarfile: &Path, dest: &Path, name: &str) -> (Check, bool) {
    let (f, d) = (tarfile.to_path_buf(), dest.to_path_buf());
    let extracted = match tokio::task::spawn_blocking(move || crate::restore::archive::extract(&f, &d)).await {
        Ok(r) => r,
        Err(e) => Err(anyhow!("{e}")),
    };
    let ok = extracted.is_ok();
    (check(name, extracted.map(|_| "ok".into())), ok)
}

async fn verify_files(m: &Manifest, tarfile: &Path, work: &Path, t0: Instant) -> (Vec<Check>, Option<f64>) {
    let mut checks = Vec::new();
    let dest = work.join("files");
    let (c, ok) = extract(tarfile, &dest, "extract").await;
    checks.push(c);
    if !ok {
        return (checks, None);
    }
    let rto = t0.elapsed().as_secs_f64();
    let files = m
        .facts
        .get("files")
        .and_then(|v| v.as_object())
        .cloned()
        .unwrap_or_default();
    let mut bad = Vec::new();
    for (name, want) in &files {
        use sha2::Digest;
        match std::fs::read(dest.join(name)) {
            Ok(b) => {
                let got = hex::encode(sha2::Sha256::digest(&b));
                if Some(got.as_str()) != want["sha256"].as_str() {
                    bad.push(format!("{name}: SHA-256 {got}, recorded {}", want["sha256"]));
                }
            }
            Err(e) => bad.push(format!("{name}: {e}")),
        }
    }
    checks.push(check(
        "file hashes",
        if bad.is_empty() {
            Ok(format!("{} files, every SHA-256 equal to the manifest's", files.len()))
        } else {
            Err(anyhow!("{}", bad.join("; ")))
        },
    ));
    (checks, Some(rto))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8)
}

async fn sandbox_checks(conn: &ConnInfo, m: &Manifest, src: Option<&SourceConfig>) -> Vec<Check> {
    let mut checks = Vec::new();
    let client = match async {
        let (client, connection) = pg_config(conn)?.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok::<_, anyhow::Error>(client)
    }
    .await
    {
        Ok(c) => c,
        Err(e) => {
            checks.push(check("connect to sandbox", Err(e)));
            return checks;
        }
    };
    match m
        .facts
        .get("row_counts")
        .and_then(|v| serde_json::from_value::<std::collections::BTreeMap<String, i64>>(v.clone()).ok())
    {
        Some(recorded) => {
            let r = async {
                let restored = count_rows(&client).await?;
                let mut diffs = Vec::new();
                for (t, n) in &recorded {
                    match restored.get(t) {
                        Some(r) if r == n => {}
                        Some(r) => diffs.push(format!("{t}: restored {r} rows, recorded {n}")),
                        None => diffs.push(format!("{t}: missing from the restore (recorded {n} rows)")),
                    }
                }
                for t in restored.keys().filter(|t| !recorded.contains_key(*t)) {
                    diffs.push(format!("{t}: in the restore but not recorded at backup time"));
                }
                let ok = format!(
                    "{} tables, {} rows, all equal to the counts taken in the dump's snapshot",
                    recorded.len(),
                    recorded.values().sum::<i64>()
                );
                verdict(diffs, ok, "row counts")
            }
            .await;
            checks.push(check("row counts", r));
        }
        None => checks.push(Check {
            name: "row counts".into(),
            ok: true,
            detail: "skipped: no counts were recorded at backup time (row_counts = false or counting failed)".into(),
        }),
    }
    let assertions = match src {
        Some(SourceConfig::Postgres(p)) => p.verify.clone(),
        _ => Vec::new(),
    };
    for a in assertions {
        let r = async {
            let row = client.query_one(a.sql.as_str(), &[]).await.context("query failed")?;
            let v: bool = row.try_get(0).context("the query must return one boolean")?;
            if v {
                Ok("true".to_string())
            } else {
                Err(anyhow!("returned false"))
            }
        }
        .await;
        checks.push(check(&format!("assertion `{}`", a.sql), r));
    }
    checks
}

/// A throwaway place to restore into. Always cleaned up: `stop()` on every path, and `Drop`
/// as the last resort (an early return, a panic, Ctrl-C dropping the future).
struct Sandbox {
    conn: ConnInfo,
    work: tempfile::TempDir,
    kind: Kind,
}

enum Kind {
    Local {
        bin: PathBuf,
        data: PathBuf,
        run_as: Option<String>,
        stopped: bool,
    },
    Url {
        admin: ConnInfo,
        db: String,
        dropped: bool,
    },
    /// Removed by `stop()`, or by the container's own `Drop` (testcontainers removes it there).
    Docker {
        container: Option<Box<testcontainers::ContainerAsync<docker::PgImage>>>,
    },
}

impl Sandbox {
    fn describe(&self) -> String {
        match &self.kind {
            Kind::Local { bin, .. } => format!("local ({})", bin.display()),
            Kind::Url { admin, db, .. } => format!("url ({}, database {db})", admin.display()),
            Kind::Docker { container: Some(c) } => format!("docker ({})", docker::describe(c)),
            Kind::Docker { container: None } => "docker".into(),
        }
    }

    async fn start(cfg: &Config, m: &Manifest) -> Result<Sandbox> {
        let work = tempfile::Builder::new()
            .prefix("drctl-verify-")
            .tempdir_in(cfg.verify.work_dir())?;
        match &cfg.verify.sandbox {
            VerifySandbox::Local => {
                let major = dumped_major(m)?;
                let bin = match &cfg.verify.pg_bin_dir {
                    Some(d) => d.clone(),
                    None => PathBuf::from(format!("/usr/lib/postgresql/{major}/bin")),
                };
                if !bin.join("initdb").exists() {
                    bail!(
                        "the backup is from PostgreSQL {major}, but {} has no initdb; install postgresql-{major} (the server package) or set [verify] pg_bin_dir",
                        bin.display()
                    );
                }
                let run_as = crate::is_root().then(|| "postgres".to_string());
                let data = work.path().join("data");
                let sock = work.path().to_path_buf();
                if let Some(u) = &run_as {
                    run(StdCommand::new("chown").arg("-R").arg(u).arg(work.path()), "chown")?;
                    // The cluster runs as `postgres`, which must reach the work dir through
                    // its parents; a private work_dir otherwise fails deep inside initdb.
                    let reachable = as_user(&run_as, Path::new("test"))
                        .arg("-x")
                        .arg(work.path())
                        .status()
                        .map(|s| s.success())
                        .unwrap_or(false);
                    if !reachable {
                        bail!(
                            "the local sandbox runs PostgreSQL as the {u} user, which cannot reach {} (a parent directory is private); set [verify] work_dir to a directory {u} can traverse, e.g. /var/tmp",
                            work.path().display()
                        );
                    }
                }
                let mut sb = Sandbox {
                    conn: ConnInfo {
                        host: Some(sock.to_string_lossy().into_owned()),
                        port: Some(5432),
                        user: Some("postgres".into()),
                        password: None,
                        dbname: Some("verify".into()),
                        params: Vec::new(),
                    },
                    kind: Kind::Local {
                        bin: bin.clone(),
                        data: data.clone(),
                        run_as: run_as.clone(),
                        stopped: true,
                    },
                    work,
                };
                run(
                    as_user(&run_as, &bin.join("initdb"))
                        .args([
                            "-U",
                            "postgres",
                            "--auth=trust",
                            "--no-sync",
                            "-E",
                            "UTF8",
                            "--locale=C",
                            "-D",
                        ])
                        .arg(&data),
                    "initdb",
                )?;
                // No TCP at all: the restored data is reachable only through the private socket dir.
                let opts = format!(
                    "-c listen_addresses='' -k {} -p 5432 -c fsync=off -c full_page_writes=off -c synchronous_commit=off",
                    sock.display()
                );
                run(
                    as_user(&run_as, &bin.join("pg_ctl"))
                        .arg("-D")
                        .arg(&data)
                        .args(["-o", &opts, "-l"])
                        .arg(sock.join("log"))
                        .args(["-w", "-t", "60", "start"]),
                    "pg_ctl start",
                )?;
                if let Kind::Local { stopped, .. } = &mut sb.kind {
                    *stopped = false;
                }
                run(
                    as_user(&run_as, &bin.join("createdb"))
                        .args(["-h"])
                        .arg(&sock)
                        .args(["-p", "5432", "-U", "postgres", "verify"]),
                    "createdb",
                )?;
                Ok(sb)
            }
            VerifySandbox::Url => {
                let url = cfg
                    .verify
                    .url
                    .as_deref()
                    .ok_or_else(|| anyhow!("[verify] sandbox = \"url\" needs url"))?;
                let admin = ConnInfo::parse(url).map_err(|e| anyhow!("[verify] url: {e}"))?;
                let db = format!("drctl_verify_{:08x}", rand::random::<u32>());
                let client = connect(&admin).await?;
                client
                    .batch_execute(&format!("create database {db}"))
                    .await
                    .context("cannot create the scratch database")?;
                let mut conn = admin.clone();
                conn.dbname = Some(db.clone());
                Ok(Sandbox {
                    conn,
                    work,
                    kind: Kind::Url {
                        admin,
                        db,
                        dropped: false,
                    },
                })
            }
            VerifySandbox::Docker => {
                let (name, tag) = cfg
                    .verify
                    .docker_image_for(dumped_major(m)?)
                    .map_err(|e| anyhow!("[verify] docker_image: {e}"))?;
                let (container, conn) = docker::start(name, tag, &m.id).await?;
                Ok(Sandbox {
                    conn,
                    work,
                    kind: Kind::Docker {
                        container: Some(Box::new(container)),
                    },
                })
            }
        }
    }

    async fn stop(mut self) {
        if let Kind::Url { admin, db, dropped } = &mut self.kind {
            match connect(admin).await {
                Ok(c) => match c
                    .batch_execute(&format!("drop database if exists {db} with (force)"))
                    .await
                {
                    Ok(()) => *dropped = true,
                    Err(e) => tracing::warn!(db = %db, error = %e, "cannot drop the scratch database"),
                },
                Err(e) => tracing::warn!(db = %db, error = %format!("{e:#}"), "cannot drop the scratch database"),
            }
        }
        if let Kind::Docker { container } = &mut self.kind {
            if let Some(c) = container.take() {
                let id = c.id().to_string();
                if let Err(e) = c.rm().await {
                    tracing::warn!(container = %id, error = %e, "cannot remove the sandbox container; remove it with `docker rm -f {id}`");
                }
            }
        }
        // Local clusters are stopped by Drop.
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        match &mut self.kind {
            Kind::Local {
                bin,
                data,
                run_as,
                stopped,
            } if !*stopped => {
                let _ = as_user(run_as, &bin.join("pg_ctl"))
                    .arg("-D")
                    .arg(&*data)
                    .args(["-m", "immediate", "-w", "stop"])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status();
                *stopped = true;
            }
            Kind::Url { db, dropped, .. } if !*dropped => {
                tracing::warn!(db = %db, "scratch database was not dropped; drop it by hand");
            }
            _ => {}
        }
    }
}

/// The major version of the server a backup was dumped from.
fn dumped_major(m: &Manifest) -> Result<u32> {
    m.facts
        .get("server_version")
        .and_then(|v| v.as_str())
        .and_then(|v| v.split(['.', ' ']).next())
        .and_then(|v| v.parse::<u32>().ok())
        .ok_or_else(|| anyhow!("the manifest records no server version"))
}

async fn connect(c: &ConnInfo) -> Result<tokio_postgres::Client> {
    let (client, connection) = pg_config(c)?
        .connect(tokio_postgres::NoTls)
        .await
        .with_context(|| format!("cannot connect to {}", c.display()))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

fn as_user(user: &Option<String>, prog: &Path) -> StdCommand {
    let mut c = match user {
        Some(u) => {
            let mut c = StdCommand::new("runuser");
            c.args(["-u", u, "--"]).arg(prog);
            c
        }
        None => StdCommand::new(prog),
    };
    // The operator's libpq settings (a PGPORT exported for their real server) must not steer
    // the sandbox's own tools elsewhere.
    for v in [
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
        "PGPASSFILE",
        "PGSERVICE",
        "PGOPTIONS",
        "PGSSLMODE",
    ] {
        c.env_remove(v);
    }
    c
}

fn run(cmd: &mut StdCommand, what: &str) -> Result<()> {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}
