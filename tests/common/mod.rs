//! Test harness: throwaway servers (PostgreSQL, an S3-compatible server) in temp dirs on free
//! loopback ports, always stopped on drop; and a drctl workspace (config + identity).
//! Nothing here touches the machine's own services.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PG_PASSWORD: &str = "s3cret-Pg-pw";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

fn wait_port(port: u16, what: &str, timeout: Duration) {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not listen on 127.0.0.1:{port} within {timeout:?}");
}

/// The newest PostgreSQL server binaries installed (Debian keeps them out of PATH).
pub fn pg_bindir() -> PathBuf {
    if let Ok(d) = std::env::var("DRCTL_TEST_PG_BIN") {
        return PathBuf::from(d);
    }
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let v: u32 = e.file_name().to_str()?.parse().ok()?;
                    let bin = e.path().join("bin");
                    bin.join("initdb").exists().then_some((v, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs.pop()
        .map(|(_, p)| p)
        .expect("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
}

/// A throwaway PostgreSQL cluster. initdb refuses to run as root, so as root the cluster is
/// owned by and run as the `postgres` user.
pub struct Postgres {
    pub port: u16,
    dir: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = pg_bindir();
        let as_postgres = is_root();
        let dir = tempfile::Builder::new().prefix("drctl-pg-").tempdir().unwrap();
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PG_PASSWORD).unwrap();
        if as_postgres {
            let st = Command::new("chown")
                .arg("-R")
                .arg("postgres:postgres")
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(st.success());
        }
        let port = free_port();
        let pg = Postgres {
            port,
            dir,
            data,
            bin,
            as_postgres,
        };
        pg.run_as(
            &pg.bin.join("initdb"),
            &[
                "-D",
                pg.data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                &format!("--pwfile={}", pwfile.display()),
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            pg.dir.path().display()
        );
        pg.run_as(
            &pg.bin.join("pg_ctl"),
            &[
                "-D",
                pg.data.to_str().unwrap(),
                "-o",
                &opts,
                "-l",
                pg.dir.path().join("log").to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        wait_port(port, "postgres", Duration::from_secs(30));
        pg
    }

    fn run_as(&self, prog: &Path, args: &[&str]) {
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(prog);
            c
        } else {
            Command::new(prog)
        };
        cmd.args(args).current_dir(self.dir.path());
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", prog.display()));
        assert!(
            out.status.success(),
            "{} failed: {}\n{}",
            prog.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// URL without password (drctl gets it from PGPASSWORD or the config).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn url_with_password_env(&self, db: &str, var: &str) -> String {
        format!("postgres://postgres:${{{var}}}@127.0.0.1:{}/{db}", self.port)
    }

    /// psql over TCP with the password in the environment; panics on error.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self.psql_raw(db, sql);
        assert!(
            out.status.success(),
            "psql failed on {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn psql_raw(&self, db: &str, sql: &str) -> std::process::Output {
        Command::new(self.bin.join("psql"))
            .env("PGPASSWORD", PG_PASSWORD)
            .args([
                "-X",
                "-A",
                "-t",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
            ])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-d")
            .arg(db)
            .arg("-c")
            .arg(sql)
            .output()
            .unwrap()
    }

    pub fn createdb(&self, db: &str) {
        self.psql("postgres", &format!("create database \"{db}\""));
    }

    /// Every row of every user table, ordered, as text: what "equal databases" means here.
    pub fn contents(&self, db: &str) -> String {
        let tables = self.psql(
            db,
            "select quote_ident(table_schema)||'.'||quote_ident(table_name) from information_schema.tables \
             where table_schema not in ('pg_catalog','information_schema') and table_type='BASE TABLE' order by 1",
        );
        let mut out = String::new();
        for t in tables.lines().filter(|l| !l.is_empty()) {
            out.push_str(&format!("## {t}\n"));
            out.push_str(&self.psql(db, &format!("select t::text from {t} t order by t::text")));
        }
        out
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join("pg_ctl"));
            c
        } else {
            Command::new(self.bin.join("pg_ctl"))
        };
        let _ = cmd
            .args(["-D", self.data.to_str().unwrap(), "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A local S3-compatible server (moto's standalone server), with one bucket.
pub struct S3Server {
    pub port: u16,
    pub bucket: String,
    child: Child,
}

impl S3Server {
    pub fn start() -> S3Server {
        let port = free_port();
        // `python3 -m moto.server` rather than the `moto_server` script: it works whether or
        // not pip's script directory is on PATH (pyenv shims need a rehash to see new scripts).
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start python3 -m moto.server (pip install 'moto[server]')");
        let mut s3 = S3Server {
            port,
            bucket: "drctl-test".into(),
            child,
        };
        wait_port(port, "moto_server", Duration::from_secs(60));
        s3.create_bucket();
        s3
    }

    fn create_bucket(&mut self) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "PUT /{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.bucket, self.port
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "create bucket: {resp}");
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A `[[storage]]` block for this server.
    pub fn storage_toml(&self, name: &str) -> String {
        format!(
            "[[storage]]\nname = \"{name}\"\ntype = \"s3\"\nbucket = \"{}\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\naccess_key_id = \"testing\"\nsecret_access_key = \"${{DRCTL_TEST_S3_SECRET}}\"\nroot = \"/vps1\"\n",
            self.bucket,
            self.endpoint()
        )
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A drctl workspace: temp dir with a config and an identity.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    pub identity: PathBuf,
    pub recipient: String,
}

impl Workspace {
    pub fn new() -> Workspace {
        let dir = tempfile::Builder::new().prefix("drctl-ws-").tempdir().unwrap();
        let identity = dir.path().join("identity.txt");
        let out = drctl_cmd(dir.path())
            .args(["keygen", "--output"])
            .arg(&identity)
            .output()
            .unwrap();
        assert!(out.status.success(), "keygen: {}", String::from_utf8_lossy(&out.stderr));
        let recipient = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert!(recipient.starts_with("age1"), "{recipient}");
        Workspace {
            dir,
            identity,
            recipient,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn fs_storage_toml(&self, name: &str) -> String {
        format!("[[storage]]\nname = \"{name}\"\ntype = \"fs\"\nroot = \"./{name}-store\"\n")
    }

    pub fn fs_root(&self, name: &str) -> PathBuf {
        self.path().join(format!("{name}-store"))
    }

    pub fn write_config(&self, storages: &str, sources: &str) -> PathBuf {
        let p = self.path().join("drctl.toml");
        let text = format!(
            "[encryption]\nrecipients = [\"{}\"]\n\n[compression]\nalgorithm = \"zstd\"\nlevel = 3\n\n[daemon]\nstate_dir = \"./state\"\n\n{storages}\n{sources}\n",
            self.recipient
        );
        std::fs::write(&p, text).unwrap();
        private(&p);
        p
    }

    /// Adds keys to the config's `[daemon]` table.
    pub fn daemon_settings(&self, keys: &str) {
        let p = self.path().join("drctl.toml");
        let cfg = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, cfg.replacen("[daemon]\n", &format!("[daemon]\n{keys}\n"), 1)).unwrap();
    }

    /// Replaces the config text (kept private, as drctl requires).
    pub fn set_config(&self, text: &str) {
        let p = self.path().join("drctl.toml");
        std::fs::write(&p, text).unwrap();
        private(&p);
    }

    pub fn config_text(&self) -> String {
        std::fs::read_to_string(self.path().join("drctl.toml")).unwrap()
    }

    /// `drctl` with this workspace's config, the test passwords in the environment.
    pub fn drctl(&self) -> Command {
        let mut c = drctl_cmd(self.path());
        c.env("DRCTL_CONFIG", self.path().join("drctl.toml"));
        c
    }

    /// Runs drctl and returns (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.drctl().args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs drctl with extra environment variables.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let mut c = self.drctl();
        c.args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `drctl restore --at now --identity <this workspace's identity> --output-dir DIR [extra…]`.
    pub fn restore_to(&self, dir: &Path, extra: &[&str]) -> (i32, String, String) {
        let (ident, dir) = (self.identity.to_str().unwrap(), dir.to_str().unwrap());
        let mut args = vec!["restore", "--at", "now", "--identity", ident, "--output-dir", dir];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// `restore_to` that must succeed; returns stdout.
    pub fn restore_ok(&self, dir: &Path) -> String {
        let (code, out, err) = self.restore_to(dir, &[]);
        assert_eq!(
            code,
            0,
            "restore --output-dir {} failed:\nstdout: {out}\nstderr: {err}",
            dir.display()
        );
        out
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "drctl {args:?} failed:\nstdout: {out}\nstderr: {err}");
        out
    }

    pub fn list_json(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(&self.ok(&["list", "--json"])).unwrap()
    }
}

/// chmod 600: drctl refuses configs and identities others can read.
pub fn private(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
}

pub fn drctl_cmd(cwd: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_drctl"));
    c.current_dir(cwd)
        .env_remove("DRCTL_CONFIG")
        .env_remove("DRCTL_TARGET_URL")
        .env_remove("PGPASSWORD")
        .env("DRCTL_TEST_S3_SECRET", "testing")
        .env("DRCTL_PG_PASSWORD", PG_PASSWORD)
        .env("DRCTL_REDIS_PASSWORD", REDIS_PASSWORD)
        .env("RUST_LOG", "drctl=debug");
    c
}

pub fn pg_source_toml(name: &str, pg: &Postgres, db: &str) -> String {
    format!(
        "[[source]]\nname = \"{name}\"\ntype = \"postgres\"\nurl = \"{}\"\n",
        pg.url_with_password_env(db, "DRCTL_PG_PASSWORD")
    )
}

/// All files below `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(base, &p, out);
                } else {
                    out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
                }
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

pub const REDIS_PASSWORD: &str = "r3dis-pw";

/// A throwaway redis-server with a password, its data dir in a temp dir.
pub struct Redis {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Redis {
    pub fn start() -> Redis {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Redis {
        let dir = tempfile::Builder::new().prefix("drctl-redis-test-").tempdir().unwrap();
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--requirepass", REDIS_PASSWORD])
            .arg("--dir")
            .arg(dir.path())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        wait_port(port, "redis-server", Duration::from_secs(20));
        Redis { port, dir, child }
    }

    /// URL with the password as `${VAR}` for configs.
    pub fn url_env(&self, var: &str) -> String {
        format!("redis://:${{{var}}}@127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("redis://:{REDIS_PASSWORD}@127.0.0.1:{}", self.port)
    }

    pub fn url_db(&self, db: u32) -> String {
        format!("redis://:{REDIS_PASSWORD}@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throwaway nats-server with JetStream and monitoring, store in a temp dir.
pub struct Nats {
    pub port: u16,
    pub monitor: u16,
    pub store: PathBuf,
    _dir: Option<tempfile::TempDir>,
    child: Child,
}

impl Nats {
    pub fn start() -> Nats {
        let dir = tempfile::Builder::new().prefix("drctl-nats-test-").tempdir().unwrap();
        let store = dir.path().join("store");
        let mut n = Nats::start_on(&store);
        n._dir = Some(dir);
        n
    }

    /// On an existing store directory (a restore).
    pub fn start_on(store: &Path) -> Nats {
        let port = free_port();
        let monitor = free_port();
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-m",
                &monitor.to_string(),
                "-sd",
            ])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (apt-get install nats-server)");
        wait_port(port, "nats-server", Duration::from_secs(20));
        wait_port(monitor, "nats-server monitoring", Duration::from_secs(20));
        Nats {
            port,
            monitor,
            store: store.to_path_buf(),
            _dir: None,
            child,
        }
    }

    pub fn client(&self) -> NatsClient {
        NatsClient::connect(self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Just enough of the NATS text protocol for tests: request/reply against the JetStream API.
pub struct NatsClient {
    r: std::io::BufReader<std::net::TcpStream>,
    w: std::net::TcpStream,
    n: u64,
}

impl NatsClient {
    pub fn connect(port: u16) -> NatsClient {
        use std::io::{BufRead, Write};
        let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut r = std::io::BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap(); // INFO
        let mut w = s;
        w.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":false}\r\nSUB _INBOX.drctl.* 1\r\n")
            .unwrap();
        NatsClient { r, w, n: 0 }
    }

    /// Publishes with a reply inbox and returns the reply payload.
    pub fn request(&mut self, subject: &str, payload: &[u8]) -> Vec<u8> {
        use std::io::{BufRead, Read, Write};
        self.n += 1;
        let inbox = format!("_INBOX.drctl.{}", self.n);
        let mut msg = format!("PUB {subject} {inbox} {}\r\n", payload.len()).into_bytes();
        msg.extend_from_slice(payload);
        msg.extend_from_slice(b"\r\n");
        self.w.write_all(&msg).unwrap();
        loop {
            let mut line = String::new();
            self.r.read_line(&mut line).unwrap();
            if line.starts_with("PING") {
                self.w.write_all(b"PONG\r\n").unwrap();
                continue;
            }
            if line.starts_with("MSG ") {
                let parts: Vec<&str> = line.split_whitespace().collect();
                let len: usize = parts.last().unwrap().parse().unwrap();
                let mut body = vec![0u8; len + 2];
                self.r.read_exact(&mut body).unwrap();
                body.truncate(len);
                if parts[1] == inbox {
                    return body;
                }
            }
            assert!(!line.starts_with("-ERR"), "nats: {line}");
        }
    }

    pub fn request_json(&mut self, subject: &str, v: serde_json::Value) -> serde_json::Value {
        let out = self.request(subject, v.to_string().as_bytes());
        serde_json::from_slice(&out).unwrap()
    }
}

/// What the fault proxy does to the next connections.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// Pass traffic through.
    None,
    /// Answer `503 Slow Down` without forwarding.
    Unavailable,
    /// Forward the request headers and part of the body, then cut both connections.
    DropMidBody,
    /// Accept, read, never answer.
    Stall,
}

/// A fault-injecting TCP proxy in front of a test server (S3, WebDAV). `fail_next(f, n)` applies
/// `f` to the next `n` connections (usize::MAX: for good); everything else passes through.
pub struct FaultProxy {
    pub port: u16,
    state: std::sync::Arc<std::sync::Mutex<(Fault, usize)>>,
    pub faults_injected: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl FaultProxy {
    pub fn start(upstream: u16) -> FaultProxy {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = std::sync::Arc::new(std::sync::Mutex::new((Fault::None, 0usize)));
        let injected = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (st, inj) = (state.clone(), injected.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut client) = conn else { continue };
                let fault = {
                    let mut s = st.lock().unwrap();
                    if s.1 > 0 {
                        if s.1 != usize::MAX {
                            s.1 -= 1;
                        }
                        s.0
                    } else {
                        Fault::None
                    }
                };
                if fault != Fault::None {
                    inj.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::spawn(move || match fault {
                    Fault::Unavailable => {
                        let mut buf = [0u8; 65536];
                        let _ = client.set_read_timeout(Some(Duration::from_millis(200)));
                        let _ = client.read(&mut buf);
                        let body =
                            "<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>injected</Message></Error>";
                        let _ = write!(
                            client,
                            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    Fault::Stall => {
                        let mut buf = [0u8; 65536];
                        let t0 = std::time::Instant::now();
                        while t0.elapsed() < Duration::from_secs(120) {
                            if matches!(client.read(&mut buf), Ok(0) | Err(_)) {
                                break;
                            }
                        }
                    }
                    Fault::DropMidBody => {
                        let Ok(mut up) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                            return;
                        };
                        let mut buf = [0u8; 16384];
                        let mut sent = 0;
                        while sent < 32768 {
                            match client.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    let _ = up.write_all(&buf[..n]);
                                    sent += n;
                                }
                            }
                        }
                        let _ = client.shutdown(std::net::Shutdown::Both);
                        let _ = up.shutdown(std::net::Shutdown::Both);
                    }
                    Fault::None => {
                        let Ok(up) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                            return;
                        };
                        let (mut c2, mut u2) = (client.try_clone().unwrap(), up.try_clone().unwrap());
                        let t = std::thread::spawn(move || {
                            let _ = std::io::copy(&mut c2, &mut u2);
                            let _ = u2.shutdown(std::net::Shutdown::Write);
                        });
                        let (mut c3, mut u3) = (client, up);
                        let _ = std::io::copy(&mut u3, &mut c3);
                        let _ = c3.shutdown(std::net::Shutdown::Write);
                        let _ = t.join();
                    }
                });
            }
        });
        FaultProxy {
            port,
            state,
            faults_injected: injected,
        }
    }

    pub fn fail_next(&self, f: Fault, n: usize) {
        *self.state.lock().unwrap() = (f, n);
    }

    pub fn heal(&self) {
        *self.state.lock().unwrap() = (Fault::None, 0);
    }

    pub fn injected(&self) -> usize {
        self.faults_injected.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl S3Server {
    /// A `[[storage]]` block reaching this server through `port` (a fault proxy).
    pub fn storage_toml_via(&self, name: &str, port: u16, root: &str) -> String {
        format!(
            "[[storage]]\nname = \"{name}\"\ntype = \"s3\"\nbucket = \"{}\"\nendpoint = \"http://127.0.0.1:{port}\"\nregion = \"us-east-1\"\naccess_key_id = \"testing\"\nsecret_access_key = \"${{DRCTL_TEST_S3_SECRET}}\"\nroot = \"{root}\"\n",
            self.bucket
        )
    }

    /// Open multipart uploads in the bucket (moto answers unsigned requests).
    pub fn open_multipart_uploads(&self) -> usize {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "GET /{}?uploads HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.bucket, self.port
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        resp.matches("<Upload>").count()
    }
}

/// A throwaway WebDAV server (`rclone serve webdav`) with basic auth, serving a temp dir.
pub struct WebDav {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
}

pub const WEBDAV_PASSWORD: &str = "dav-pw-7";

impl WebDav {
    pub fn start() -> WebDav {
        let dir = tempfile::Builder::new().prefix("drctl-dav-").tempdir().unwrap();
        let port = free_port();
        let child = Command::new("rclone")
            .args([
                "serve",
                "webdav",
                "--addr",
                &format!("127.0.0.1:{port}"),
                "--user",
                "drctl",
                "--pass",
                WEBDAV_PASSWORD,
            ])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rclone (apt-get install rclone)");
        wait_port(port, "rclone serve webdav", Duration::from_secs(20));
        WebDav { port, dir, child }
    }

    pub fn storage_toml(&self, name: &str, part_size: &str) -> String {
        format!(
            "[[storage]]\nname = \"{name}\"\ntype = \"webdav\"\nendpoint = \"http://127.0.0.1:{}\"\nusername = \"drctl\"\npassword = \"{WEBDAV_PASSWORD}\"\nroot = \"/vps1\"\npart_size = \"{part_size}\"\n",
            self.port
        )
    }
}

impl Drop for WebDav {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throwaway sshd with SFTP, key authentication only, for the current user. Host-key trust
/// is established with `known_hosts = "add"` (trust on first use, then pinned); the entry it
/// adds to ~/.ssh/known_hosts is removed on drop.
pub struct Sftp {
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub key: PathBuf,
    pub user: String,
    child: Child,
}

impl Sftp {
    pub fn start() -> Sftp {
        let dir = tempfile::Builder::new().prefix("drctl-sshd-").tempdir().unwrap();
        let d = dir.path();
        let keygen = |path: &Path, t: &str| {
            let st = Command::new("ssh-keygen")
                .args(["-q", "-t", t, "-N", "", "-f"])
                .arg(path)
                .status()
                .unwrap();
            assert!(st.success());
        };
        keygen(&d.join("host"), "ed25519");
        keygen(&d.join("client"), "ed25519");
        std::fs::copy(d.join("client.pub"), d.join("authorized_keys")).unwrap();
        std::fs::create_dir_all(d.join("data")).unwrap();
        let port = free_port();
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUsePAM no\nSubsystem sftp internal-sftp\n",
            d.join("host").display(),
            d.join("sshd.pid").display(),
            d.join("authorized_keys").display()
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        std::fs::create_dir_all("/run/sshd").ok();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd (apt-get install openssh-server)");
        wait_port(port, "sshd", Duration::from_secs(20));
        Sftp {
            port,
            key: d.join("client"),
            user,
            dir,
            child,
        }
    }

    /// ssh processes (control masters) still connected to this server.
    pub fn ssh_processes(&self) -> Vec<String> {
        let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
        String::from_utf8_lossy(&ps.stdout)
            .lines()
            .filter(|l| l.starts_with("ssh ") && l.contains(&format!("-p {} ", self.port)))
            .map(str::to_string)
            .collect()
    }

    pub fn storage_toml(&self, name: &str) -> String {
        format!(
            "[[storage]]\nname = \"{name}\"\ntype = \"sftp\"\nendpoint = \"127.0.0.1:{}\"\nuser = \"{}\"\nkey = \"{}\"\nroot = \"{}\"\nknown_hosts = \"add\"\n",
            self.port,
            self.user,
            self.key.display(),
            self.dir.path().join("data").display()
        )
    }
}

impl Drop for Sftp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("ssh-keygen")
            .args(["-R", &format!("[127.0.0.1]:{}", self.port)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A database holding ~24 MiB of incompressible bytes: enough for several multipart parts.
pub fn big_pg() -> Postgres {
    let pg = Postgres::start();
    pg.createdb("app");
    pg.psql(
        "app",
        "create table blobs (id int, b bytea); insert into blobs select g, decode(string_agg(md5(random()::text), ''), 'hex') \
         from generate_series(1, 3000) g, generate_series(1, 512) h group by g;",
    );
    pg
}

/// A pg_dump wrapper that produces a real dump, then runs `after` (e.g. `exec sleep 60`) while
/// still holding its stdout open, as a pg_dump stuck on a slow server would. Returns its path.
pub fn slow_pg_dump(dir: &Path, after: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let slow = dir.join("slow-pg_dump");
    std::fs::write(
        &slow,
        format!("#!/bin/sh\nif [ \"$1\" = \"--version\" ]; then exec pg_dump --version; fi\npg_dump \"$@\"\n{after}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).unwrap();
    slow
}

/// Runs a shell script with `sh -e`, panicking with its output if it fails.
pub fn sh(script: &str, env: &[(&str, &str)]) {
    let mut c = Command::new("sh");
    c.arg("-ec").arg(script);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{script}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The image the `docker` sandbox tests use: Debian's PostgreSQL server of `major` behind an
/// entrypoint with the official image's contract, built from Debian packages by
/// `scripts/lib/pg-test-image/build.sh` (no image registry is reachable where the tests run).
pub fn pg_test_image(major: u32) -> String {
    let image = format!("localhost/drctl-test/postgres:{major}");
    let exists = Command::new("podman")
        .args(["image", "exists", &image])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        exists,
        "image {image} is missing: run `bash scripts/lib/pg-test-image/build.sh {major}` (scripts/test.sh does)"
    );
    image
}

/// The major version of the newest installed PostgreSQL server (what `Postgres::start` runs).
pub fn pg_major() -> u32 {
    pg_bindir()
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .expect("a /usr/lib/postgresql/<major>/bin directory")
}

/// A throwaway Docker engine: `podman system service` answering the Docker API on a Unix
/// socket in a temp dir, stopped on drop. Pass `host` as DOCKER_HOST.
pub struct DockerEngine {
    dir: tempfile::TempDir,
    child: Child,
    pub host: String,
}

impl DockerEngine {
    pub fn start() -> DockerEngine {
        let dir = tempfile::Builder::new().prefix("drctl-engine-").tempdir().unwrap();
        // runc with cgroupfs and explicit rlimits: these machines run tests inside a sandbox
        // with hybrid cgroups and without CAP_SYS_RESOURCE, where crun and podman's default
        // rlimits (nofile 1048576) are refused. Harmless on an ordinary host.
        std::fs::write(
            dir.path().join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n\
             [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
        )
        .unwrap();
        let sock = dir.path().join("engine.sock");
        let child = Command::new("podman")
            .env("CONTAINERS_CONF", dir.path().join("containers.conf"))
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", sock.display()))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("engine.log")).unwrap())
            .spawn()
            .expect("podman (apt-get install podman runc; scripts/test.sh does)");
        let t0 = Instant::now();
        while std::os::unix::net::UnixStream::connect(&sock).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "podman system service did not listen on {}: {}",
                sock.display(),
                std::fs::read_to_string(dir.path().join("engine.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let host = format!("unix://{}", sock.display());
        DockerEngine { dir, child, host }
    }

    /// Runs the podman CLI against this engine's storage; its output, a line each.
    fn podman(&self, args: &[&str]) -> Vec<String> {
        let out = Command::new("podman")
            .env("CONTAINERS_CONF", self.dir.path().join("containers.conf"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Verification sandbox containers that exist now, as "name ports" lines.
    pub fn sandboxes(&self) -> Vec<String> {
        self.podman(&[
            "ps",
            "-a",
            "--filter",
            "name=drctl-verify-",
            "--format",
            "{{.Names}} {{.Ports}}",
        ])
    }

    /// A container's environment, one `NAME=value` a line.
    pub fn env_of(&self, container: &str) -> Vec<String> {
        self.podman(&[
            "inspect",
            "--format",
            "{{range .Config.Env}}{{println .}}{{end}}",
            container,
        ])
    }
}

impl Drop for DockerEngine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// PostgreSQL with database `app` seeded for verification tests (`users`: 2000 rows,
/// `billing.invoices`: 300) and a workspace backing it up as source `app-db` to the fs storage
/// `local`; `extra` is appended to the config after the source.
pub fn verify_setup(extra: &str) -> (Postgres, Workspace) {
    let pg = Postgres::start();
    pg.createdb("app");
    pg.psql(
        "app",
        "create table users (id serial primary key, name text); insert into users (name) select 'u' || g from generate_series(1, 2000) g;
         create schema billing; create table billing.invoices (id int, total numeric); insert into billing.invoices select g, g * 2 from generate_series(1, 300) g;",
    );
    let ws = Workspace::new();
    ws.write_config(
        &ws.fs_storage_toml("local"),
        &format!("{}{extra}", pg_source_toml("app-db", &pg, "app")),
    );
    (pg, ws)
}

/// Verification leftovers: `drctl-verify-*` temp dirs, and processes started from them or
/// naming them (postmasters of the local sandbox, a container's monitor).
pub fn verify_leftovers() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("drctl-verify-"))
        .map(|e| e.path().display().to_string())
        .collect();
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    out.extend(
        String::from_utf8_lossy(&ps.stdout)
            .lines()
            .filter(|l| l.contains("drctl-verify-") && !l.contains("ps -eo"))
            .map(str::to_string),
    );
    out
}
