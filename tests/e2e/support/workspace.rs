//! A drctl workspace (config and identity in a temp dir) and running the drctl binary.

use super::{PG_PASSWORD, REDIS_PASSWORD};
use std::path::{Path, PathBuf};
use std::process::Command;

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
        .env("DRCTL_TEST_S3S_SECRET", "s3s-test-secret")
        .env("DRCTL_PG_PASSWORD", PG_PASSWORD)
        .env("DRCTL_REDIS_PASSWORD", REDIS_PASSWORD)
        .env("RUST_LOG", "drctl=debug");
    c
}

impl Workspace {
    /// Replaces `from` by `to` in a manifest's encrypted `private` facts (row counts, file
    /// hashes), with stock age: decrypted with this workspace's identity, re-encrypted to its
    /// recipient, as anyone holding the (public) recipient could forge them.
    pub fn edit_private_facts(&self, manifest: &Path, from: &str, to: &str) {
        let mut m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(manifest).unwrap()).unwrap();
        let sealed = self.path().join("private.age");
        std::fs::write(&sealed, m["private"].as_str().expect("a private section")).unwrap();
        let out = Command::new("age")
            .args(["-d", "-i"])
            .arg(&self.identity)
            .arg(&sealed)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let plain = String::from_utf8(out.stdout).unwrap();
        assert!(plain.contains(from), "{from:?} not in the private facts: {plain}");
        let edited = self.path().join("private.json");
        std::fs::write(&edited, plain.replace(from, to)).unwrap();
        let out = Command::new("age")
            .args(["-a", "-r", &self.recipient])
            .arg(&edited)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        m["private"] = serde_json::Value::String(String::from_utf8(out.stdout).unwrap());
        std::fs::write(manifest, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    }
}
