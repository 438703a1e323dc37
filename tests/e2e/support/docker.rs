//! A throwaway Docker-API engine (podman's service) and the PostgreSQL images the `docker`
//! verification sandbox tests run.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
