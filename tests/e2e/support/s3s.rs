//! A second S3-compatible server: s3s-fs (the s3s project's file-system server). Unlike moto it
//! checks every request's SigV4 signature, and it implements only part of the API (no
//! ListMultipartUploads), as several small providers do.

use super::{free_port, wait_port};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The access key id the server accepts: distinctive, so a test can grep output for it.
pub const S3S_ACCESS_KEY: &str = "AKIADRCTLS3STEST0001";

pub struct S3sServer {
    pub port: u16,
    pub bucket: String,
    _root: tempfile::TempDir,
    child: Child,
}

/// The s3s-fs binary: `DRCTL_S3S_FS`, else on PATH, else where scripts/test.sh installs it.
fn binary() -> String {
    if let Ok(p) = std::env::var("DRCTL_S3S_FS") {
        return p;
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = std::path::Path::new(dir).join("s3s-fs");
        if p.is_file() {
            return p.to_string_lossy().into_owned();
        }
    }
    "/var/tmp/drctl-tools/bin/s3s-fs".into()
}

impl S3sServer {
    pub fn start() -> S3sServer {
        let root = tempfile::tempdir().unwrap();
        let bucket = "drctl-s3s".to_string();
        // s3s-fs serves each directory of its root as a bucket.
        std::fs::create_dir(root.path().join(&bucket)).unwrap();
        let port = free_port();
        let child = Command::new(binary())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", S3S_ACCESS_KEY, "--secret-key", "s3s-test-secret"])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start s3s-fs (scripts/test.sh installs it: cargo install s3s-fs --features binary)");
        wait_port(port, "s3s-fs", Duration::from_secs(30));
        S3sServer {
            port,
            bucket,
            _root: root,
            child,
        }
    }

    /// A `[[storage]]` block for this server; the secret comes from `${DRCTL_TEST_S3S_SECRET}`.
    pub fn storage_toml(&self, name: &str) -> String {
        format!(
            "[[storage]]\nname = \"{name}\"\ntype = \"s3\"\nbucket = \"{}\"\nendpoint = \"http://127.0.0.1:{}\"\nregion = \"us-east-1\"\naccess_key_id = \"{S3S_ACCESS_KEY}\"\nsecret_access_key = \"${{DRCTL_TEST_S3S_SECRET}}\"\nroot = \"/vps1\"\n",
            self.bucket, self.port
        )
    }
}

impl Drop for S3sServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
