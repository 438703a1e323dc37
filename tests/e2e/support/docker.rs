//! A throwaway Docker-API engine (podman's service) and the PostgreSQL images the `docker`
//! verification sandbox tests run.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The image the `docker` sandbox tests use: Debian's PostgreSQL server of `major` behind an
/// entrypoint with the official image's contract, built from Debian packages by
/// `scripts/lib/pg-test-image/build.sh` (no image registry is reachable where the tests run).
pub fn pg_test_image(major: u32) -> String {
    built_image(
        format!("localhost/drctl-test/postgres:{major}"),
        &format!("bash scripts/lib/pg-test-image/build.sh {major}"),
    )
}

/// Debian's redis-server behind an entrypoint with the official redis image's contract (`/data`,
/// `redis-server` arguments), built by `scripts/lib/redis-test-image/build.sh`.
pub fn redis_test_image() -> String {
    built_image(
        "localhost/drctl-test/redis:latest".into(),
        "bash scripts/lib/redis-test-image/build.sh",
    )
}

/// `image` if podman has it; else a panic naming the script that builds it.
pub fn built_image(image: String, build: &str) -> String {
    let exists = Command::new("podman")
        .args(["image", "exists", &image])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(exists, "image {image} is missing: run `{build}` (scripts/test.sh does)");
    image
}

/// A throwaway Docker engine: `podman system service` answering the Docker API on a Unix
/// socket in a temp dir, stopped on drop. Pass `host` as DOCKER_HOST.
pub struct DockerEngine {
    dir: tempfile::TempDir,
    child: Child,
    pub host: String,
    /// Containers and networks the tests created, removed on drop (podman keeps them in its
    /// storage after the service stops).
    pub created: std::sync::Mutex<Vec<(&'static str, String)>>,
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
        DockerEngine {
            dir,
            child,
            host,
            created: Default::default(),
        }
    }

    /// The podman CLI against this engine's storage, to spawn.
    /// drctl with DOCKER_HOST pointing at this engine and a PATH with no tool on it (no
    /// database tools, no docker CLI, no tar): whatever it does, it does through the engine.
    pub fn drctl(&self, ws: &super::Workspace, args: &[&str]) -> Command {
        let empty = ws.path().join("empty-bin");
        std::fs::create_dir_all(&empty).unwrap();
        let mut c = ws.drctl();
        c.args(args).env("DOCKER_HOST", &self.host).env("PATH", &empty);
        c
    }

    /// [`DockerEngine::drctl`] run to the end, with `env` added: (exit code, stdout, stderr).
    pub fn run_drctl(&self, ws: &super::Workspace, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let mut c = self.drctl(ws, args);
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

    /// The podman configuration that points the CLI at this engine's storage.
    pub fn containers_conf(&self) -> std::path::PathBuf {
        self.dir.path().join("containers.conf")
    }

    pub fn podman_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", self.dir.path().join("containers.conf"))
            .args(args);
        c
    }

    /// Runs the podman CLI against this engine's storage; its output, a line each.
    pub fn podman(&self, args: &[&str]) -> Vec<String> {
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

/// How `compose_redis_with` runs the server.
#[derive(Default)]
pub struct RedisOpts {
    /// A named volume mounted on /data.
    pub volume: Option<String>,
    /// The server's requirepass (given in `args` too): used for the readiness PING.
    pub password: Option<String>,
}

/// A PostgreSQL container as Compose would create it for `service` of `project`: the Compose
/// labels, the official image's environment, on a user-defined network, and NO published port:
/// drctl can only reach it through the engine.
pub struct ComposePostgres {
    pub name: String,
    pub user: String,
    pub db: String,
}

pub const CONTAINER_PG_PASSWORD: &str = "in-container-Pg-s3cret";

impl DockerEngine {
    /// Creates the network if it does not exist.
    pub fn network(&self, name: &str) {
        if self
            .podman(&["network", "ls", "--format", "{{.Name}}"])
            .iter()
            .all(|n| n != name)
        {
            self.podman(&["network", "create", name]);
            self.created.lock().unwrap().push(("network", name.to_string()));
        }
    }

    /// Starts `name` from the test image with the labels Compose sets, and waits until the
    /// server answers on its local socket.
    pub fn compose_postgres(&self, project: &str, service: &str, name: &str) -> ComposePostgres {
        self.compose_postgres_with(project, service, name, &[])
    }

    /// `compose_postgres` with `command: postgres ARGS…` (server settings as `-c k=v`).
    pub fn compose_postgres_with(&self, project: &str, service: &str, name: &str, args: &[String]) -> ComposePostgres {
        let pg = self.compose_postgres_created(project, service, name, args);
        self.start_postgres(&pg);
        pg
    }

    /// `docker compose create`: the container (with a new, empty data volume), not started.
    pub fn compose_postgres_created(
        &self,
        project: &str,
        service: &str,
        name: &str,
        args: &[String],
    ) -> ComposePostgres {
        let image = pg_test_image(super::pg_major());
        let net = format!("{project}_default");
        self.network(&net);
        let (user, db) = ("app".to_string(), "appdb".to_string());
        let mut server: Vec<&str> = vec!["postgres"];
        server.extend(args.iter().map(String::as_str));
        self.podman(
            &[
                &[
                    "create",
                    "--name",
                    name,
                    "--network",
                    &net,
                    "--label",
                    &format!("com.docker.compose.project={project}"),
                    "--label",
                    &format!("com.docker.compose.service={service}"),
                    "-e",
                    &format!("POSTGRES_USER={user}"),
                    "-e",
                    &format!("POSTGRES_PASSWORD={CONTAINER_PG_PASSWORD}"),
                    "-e",
                    &format!("POSTGRES_DB={db}"),
                    &image,
                ][..],
                &server[..],
            ]
            .concat(),
        );
        self.created.lock().unwrap().push(("container", name.to_string()));
        ComposePostgres {
            name: name.to_string(),
            user,
            db,
        }
    }

    /// Starts a created PostgreSQL container and waits until its server answers on its local
    /// socket (and is out of recovery), with no port published.
    pub fn start_postgres(&self, pg: &ComposePostgres) {
        let name = pg.name.as_str();
        self.podman(&["start", name]);
        let t0 = Instant::now();
        loop {
            let ok = Command::new("podman")
                .env("CONTAINERS_CONF", self.dir.path().join("containers.conf"))
                .args([
                    "exec", name, "psql", "-X", "-U", &pg.user, "-d", &pg.db, "-c", "select 1",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "postgres in container {name} did not start: {:?}",
                self.podman(&["logs", name])
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        // EXPOSE 5432 shows as `{"5432/tcp":null}`: exposed, bound to no host port.
        let ports = self.podman(&["inspect", "--format", "{{json .NetworkSettings.Ports}}", name]);
        assert!(
            ports.iter().all(|p| !p.contains("HostPort")),
            "the database container must publish no port: {ports:?}"
        );
    }

    /// Starts `name` from the Redis test image as Compose would run `service` of `project`
    /// with `command: redis-server ARGS…`: labels, a user-defined network, no published port.
    /// Waits until it answers PING.
    pub fn compose_redis(&self, project: &str, service: &str, name: &str, args: &[&str]) {
        self.compose_redis_with(project, service, name, args, &RedisOpts::default())
    }

    /// `compose_redis` with a named volume on /data (kept when the container is recreated, as
    /// Compose keeps it) and the password the server requires, if any (PING is sent with it).
    pub fn compose_redis_with(&self, project: &str, service: &str, name: &str, args: &[&str], opts: &RedisOpts) {
        let image = redis_test_image();
        let net = format!("{project}_default");
        self.network(&net);
        let (project_label, service_label) = (
            format!("com.docker.compose.project={project}"),
            format!("com.docker.compose.service={service}"),
        );
        let mut run = vec![
            "run",
            "-d",
            "--name",
            name,
            "--network",
            &net,
            "--label",
            &project_label,
            "--label",
            &service_label,
        ];
        let mount = opts.volume.as_ref().map(|v| format!("{v}:/data"));
        if let (Some(v), Some(m)) = (&opts.volume, &mount) {
            if !self.podman(&["volume", "ls", "--format", "{{.Name}}"]).contains(v) {
                self.podman(&["volume", "create", v]);
                self.created.lock().unwrap().push(("volume", v.clone()));
            }
            run.extend(["-v", m.as_str()]);
        }
        run.extend([image.as_str(), "redis-server"]);
        run.extend_from_slice(args);
        self.podman(&run);
        self.created.lock().unwrap().push(("container", name.to_string()));
        let t0 = Instant::now();
        loop {
            let mut ping = Command::new("podman");
            ping.env("CONTAINERS_CONF", self.dir.path().join("containers.conf"));
            ping.arg("exec");
            let auth = opts.password.as_ref().map(|p| format!("REDISCLI_AUTH={p}"));
            if let Some(a) = &auth {
                ping.args(["-e", a]);
            }
            ping.args([name, "redis-cli", "ping"]);
            let ok = ping
                .output()
                .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("PONG"))
                .unwrap_or(false);
            if ok {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "redis in container {name} did not start: {:?}",
                self.podman(&["logs", name])
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `redis-cli ARGS…` in `container` (with the password in its environment, if given);
    /// panics on failure, returns stdout's lines joined by newlines.
    pub fn redis_cli_in(&self, container: &str, password: Option<&str>, args: &[&str]) -> String {
        let auth = password.map(|p| format!("REDISCLI_AUTH={p}"));
        let mut a = vec!["exec"];
        if let Some(x) = &auth {
            a.extend(["-e", x.as_str()]);
        }
        a.extend([container, "redis-cli", "--no-auth-warning"]);
        a.extend_from_slice(args);
        self.podman(&a).join("\n")
    }

    /// psql in the container (as the image's user, over its local socket); panics on error.
    pub fn psql_in(&self, pg: &ComposePostgres, sql: &str) -> String {
        self.podman(&[
            "exec",
            &pg.name,
            "psql",
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            &pg.user,
            "-d",
            &pg.db,
            "-c",
            sql,
        ])
        .join("\n")
    }
}

impl Drop for DockerEngine {
    fn drop(&mut self) {
        // Containers first, then their volumes and networks.
        let mut created = std::mem::take(&mut *self.created.lock().unwrap());
        created.sort_by_key(|(kind, _)| *kind != "container");
        for (kind, name) in created {
            let args: &[&str] = match kind {
                "network" => &["network", "rm", "-f", &name],
                "volume" => &["volume", "rm", "-f", &name],
                _ => &["rm", "-f", "-t", "0", &name],
            };
            let _ = Command::new("podman")
                .env("CONTAINERS_CONF", self.dir.path().join("containers.conf"))
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The command line (program and arguments) of every exec session the engine still knows of
/// in `container`, read through the Docker API as any user of the engine could.
pub fn exec_command_lines(engine: &DockerEngine, container: &str) -> Vec<Vec<String>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let path = engine.host.trim_start_matches("unix://");
        let docker = bollard::Docker::connect_with_unix(path, 60, bollard::API_DEFAULT_VERSION).unwrap();
        let info = docker.inspect_container(container, None).await.unwrap();
        let mut out = Vec::new();
        for id in info.exec_ids.unwrap_or_default() {
            if let Ok(e) = docker.inspect_exec(&id).await {
                if let Some(p) = e.process_config {
                    let mut line = vec![p.entrypoint.unwrap_or_default()];
                    line.extend(p.arguments.unwrap_or_default());
                    out.push(line);
                }
            }
        }
        out
    })
}
