//! `drctl daemon` as the daemon and monitoring tests run it.

use super::Workspace;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// `drctl daemon` in a workspace, its stderr in `daemon.log`; killed on drop.
pub struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    pub fn start(ws: &Workspace, metrics_port: Option<u16>) -> Daemon {
        let log = ws.path().join("daemon.log");
        let f = std::fs::File::create(&log).unwrap();
        let mut cmd = ws.drctl();
        cmd.arg("daemon");
        if let Some(p) = metrics_port {
            cmd.arg("--metrics-addr").arg(format!("127.0.0.1:{p}"));
        }
        let child = cmd.stdout(Stdio::null()).stderr(f).spawn().unwrap();
        Daemon { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    pub fn wait_for(&self, what: &str, timeout: Duration, cond: impl Fn(&Daemon) -> bool) {
        let t0 = Instant::now();
        while !cond(self) {
            assert!(
                t0.elapsed() < timeout,
                "timed out waiting for {what}; daemon log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn signal(&self, sig: &str) {
        std::process::Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
    }

    /// SIGTERM and wait; returns (exit code, seconds it took).
    pub fn stop(mut self) -> (Option<i32>, f64, String) {
        self.signal("TERM");
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return (st.code(), t0.elapsed().as_secs_f64(), self.log());
            }
            if t0.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                panic!("daemon did not stop within 60s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
