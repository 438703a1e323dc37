//! A throwaway WebDAV server: `rclone serve webdav` on a temp dir.

use super::{free_port, wait_port};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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
