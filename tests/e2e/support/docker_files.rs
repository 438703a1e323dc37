//! Containers and named volumes holding files, for the files source's container tests: made
//! from the Redis test image (a Debian root with a shell, built from Debian's packages), on a
//! user-defined network, no published port; everything removed on drop (volumes included).

use super::{redis_test_image, DockerEngine};
use std::process::Stdio;

/// Containers and volumes one test made; removed (with their anonymous volumes) on drop.
pub struct FilesFixture<'a> {
    pub engine: &'a DockerEngine,
    /// A suffix unique to this test run: other tests use the same podman storage.
    pub tag: String,
    containers: std::sync::Mutex<Vec<String>>,
    volumes: std::sync::Mutex<Vec<String>>,
}

impl<'a> FilesFixture<'a> {
    pub fn new(engine: &'a DockerEngine) -> FilesFixture<'a> {
        let tag = format!(
            "{}{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        FilesFixture {
            engine,
            tag,
            containers: Default::default(),
            volumes: Default::default(),
        }
    }

    /// A long-running container of Compose `service` in `project` (labels as Compose sets
    /// them), its command `sleep infinity`, with `volume` mounted when given ("vol:/path").
    pub fn service(&self, project: &str, service: &str, name: &str, volume: Option<&str>) {
        let net = format!("{project}_default");
        self.engine.network(&net);
        let mut args = vec![
            "run".to_string(),
            "-d".into(),
            "--name".into(),
            name.into(),
            "--network".into(),
            net,
            "--label".into(),
            format!("com.docker.compose.project={project}"),
            "--label".into(),
            format!("com.docker.compose.service={service}"),
        ];
        if let Some(v) = volume {
            args.extend(["-v".to_string(), v.to_string()]);
        }
        args.extend([redis_test_image(), "sleep".into(), "infinity".into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.engine.podman(&args);
        self.containers.lock().unwrap().push(name.to_string());
    }

    /// A container that mounts `volume` at `mount`, ran `script` (sh) in it, and exited:
    /// stopped, still there.
    pub fn stopped_with_volume(&self, name: &str, volume: &str, mount: &str, script: &str) {
        let v = format!("{volume}:{mount}");
        self.engine.podman(&[
            "run",
            "--name",
            name,
            "--network",
            "none",
            "-v",
            &v,
            &redis_test_image(),
            "sh",
            "-ec",
            script,
        ]);
        self.containers.lock().unwrap().push(name.to_string());
    }

    /// A named volume filled by `script` (sh, the volume at /v) in a container that is removed
    /// right after: afterwards no container mounts it.
    pub fn volume(&self, name: &str, script: &str) {
        self.engine.podman(&["volume", "create", name]);
        self.volumes.lock().unwrap().push(name.to_string());
        let v = format!("{name}:/v");
        self.engine.podman(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            &v,
            &redis_test_image(),
            "sh",
            "-ec",
            script,
        ]);
    }

    /// Runs `script` with sh in the container; its stdout.
    pub fn sh_in(&self, container: &str, script: &str) -> String {
        self.engine.podman(&["exec", container, "sh", "-ec", script]).join("\n")
    }

    /// Containers (running or not) whose name starts with drctl's temporary volume reader's.
    pub fn volume_readers(&self) -> Vec<String> {
        self.engine.podman(&[
            "ps",
            "-a",
            "--filter",
            "label=drctl.role=volume-reader",
            "--format",
            "{{.Names}} {{.Mounts}}",
        ])
    }
}

impl Drop for FilesFixture<'_> {
    fn drop(&mut self) {
        for c in self.containers.lock().unwrap().drain(..) {
            let _ = self
                .engine
                .podman_command(&["rm", "-f", "-v", "-t", "0", &c])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        for v in self.volumes.lock().unwrap().drain(..) {
            let _ = self
                .engine
                .podman_command(&["volume", "rm", "-f", &v])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// `sha256 mode path` of every regular file below `dir` (relative paths), sorted: the same
/// lines the `files_listing` script prints inside a container.
pub fn host_files_listing(dir: &std::path::Path) -> Vec<String> {
    use sha2::Digest;
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    for rel in super::files_under(dir) {
        let p = dir.join(&rel);
        if p.is_symlink() {
            continue;
        }
        let bytes = std::fs::read(&p).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
        out.push(format!(
            "{} {:o} {rel}",
            hex::encode(sha2::Sha256::digest(&bytes)),
            mode
        ));
    }
    out.sort();
    out
}

/// A shell script printing `sha256 mode path` for every regular file below the current
/// directory, paths without the leading `./`, sorted (run it after `cd`).
pub const FILES_LISTING: &str =
    "find . -type f | sed 's|^\\./||' | sort | while read -r f; do echo \"$(sha256sum \"$f\" | cut -d' ' -f1) $(stat -c %a \"$f\") $f\"; done";
