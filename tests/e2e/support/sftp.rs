//! A throwaway sshd serving SFTP to the current user.

use super::{free_port, wait_port};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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
