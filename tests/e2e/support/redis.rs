//! A throwaway redis-server with a password.

use super::{free_port, wait_port};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const REDIS_PASSWORD: &str = "r3dis-pw";

/// A throwaway redis-server with a password, its data dir in a temp dir.
pub struct Redis {
    pub port: u16,
    /// Holds the data dir until the server is stopped.
    _dir: tempfile::TempDir,
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
        Redis { port, _dir: dir, child }
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

/// `redis-cli` against `r` with the test password (from the environment, never argv);
/// panics on failure, returns trimmed stdout.
pub fn redis_cli(r: &Redis, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &r.port.to_string(), "--no-auth-warning"])
        .env("REDISCLI_AUTH", REDIS_PASSWORD)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
