//! Throwaway PostgreSQL servers to restore into:
//! * `local` (default): a temporary cluster (initdb + pg_ctl) from the server binaries of the
//!   dumped server's major version, listening on a Unix socket in a private temp dir only — no
//!   TCP port, so no other local user can read the restored data. As root it runs as the
//!   `postgres` user (initdb refuses root).
//! * `url`: an existing scratch server; drctl creates a uniquely named database and drops it.
//! * `docker`: a `postgres:<major>` container through testcontainers on the local Docker engine,
//!   its port published on 127.0.0.1 only, a random password; removed afterwards.

mod docker;

use super::{pg_config, ConnInfo, PostgresFacts};
use crate::config::{Config, VerifySandbox};
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

/// A throwaway place to restore into. Always cleaned up: `stop()` on every path, and `Drop`
/// as the last resort (an early return, a panic, Ctrl-C dropping the future).
pub struct Sandbox {
    pub conn: ConnInfo,
    pub work: tempfile::TempDir,
    kind: Kind,
    /// The non-superuser role the dump is loaded as (`loader`), dropped with a `url` sandbox.
    loader_role: Option<String>,
}

/// A login role without any privilege beyond owning the sandbox database. The dump is loaded
/// and the operator's SQL assertions run as this role, never as a superuser: a function an
/// application role planted in its database (an expression index calling `COPY … TO PROGRAM`
/// when a superuser runs it) then has no more power in the sandbox than it had in production.
pub struct Loader {
    pub conn: ConnInfo,
}

enum Kind {
    Local {
        bin: PathBuf,
        data: PathBuf,
        run_as: Option<String>,
        /// False from the moment `pg_ctl start` is launched: from then on a server may be running.
        stopped: bool,
        /// The setup step (initdb, pg_ctl start, createdb) while it runs; see `local_step`.
        step: Option<Child>,
    },
    Url {
        admin: ConnInfo,
        db: String,
        dropped: bool,
    },
    /// Removed by `stop()`, or by the container's own `Drop` (testcontainers removes it there).
    Docker {
        container: Option<Box<testcontainers::ContainerAsync<docker::PgImage>>>,
    },
}

impl Sandbox {
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Local { bin, .. } => format!("local ({})", bin.display()),
            Kind::Url { admin, db, .. } => format!("url ({}, database {db})", admin.display()),
            Kind::Docker { container: Some(c) } => format!("docker ({})", docker::describe(c)),
            Kind::Docker { container: None } => "docker".into(),
        }
    }

    pub async fn start(cfg: &Config, facts: &PostgresFacts, backup_id: &str) -> Result<Sandbox> {
        let work = tempfile::Builder::new()
            .prefix("drctl-verify-")
            .tempdir_in(cfg.verify.work_dir())?;
        match &cfg.verify.sandbox {
            VerifySandbox::Local => {
                let major = dumped_major(facts)?;
                let bin = match &cfg.verify.pg_bin_dir {
                    Some(d) => d.clone(),
                    None => PathBuf::from(format!("/usr/lib/postgresql/{major}/bin")),
                };
                if !bin.join("initdb").exists() {
                    bail!(
                        "the backup is from PostgreSQL {major}, but {} has no initdb; install postgresql-{major} (the server package) or set [verify] pg_bin_dir",
                        bin.display()
                    );
                }
                let run_as = crate::is_root().then(|| "postgres".to_string());
                let data = work.path().join("data");
                let sock = work.path().to_path_buf();
                if let Some(u) = &run_as {
                    let mut chown = crate::process::command("chown");
                    chown.arg("-R").arg(u).arg(work.path());
                    run(chown, "chown").await?;
                    // The cluster runs as `postgres`, which must reach the work dir through
                    // its parents; a private work_dir otherwise fails deep inside initdb.
                    let reachable = as_user_async(&run_as, Path::new("test"))
                        .arg("-x")
                        .arg(work.path())
                        .status()
                        .await
                        .map(|s| s.success())
                        .unwrap_or(false);
                    if !reachable {
                        bail!(
                            "the local sandbox runs PostgreSQL as the {u} user, which cannot reach {} (a parent directory is private); set [verify] work_dir to a directory {u} can traverse, e.g. /var/tmp",
                            work.path().display()
                        );
                    }
                }
                let mut sb = Sandbox {
                    conn: ConnInfo {
                        host: Some(sock.to_string_lossy().into_owned()),
                        port: Some(5432),
                        user: Some("postgres".into()),
                        password: None,
                        dbname: Some("verify".into()),
                        params: Vec::new(),
                    },
                    loader_role: None,
                    kind: Kind::Local {
                        bin: bin.clone(),
                        data: data.clone(),
                        run_as: run_as.clone(),
                        stopped: true,
                        step: None,
                    },
                    work,
                };
                let mut initdb = as_user_async(&run_as, &bin.join("initdb"));
                initdb
                    .args([
                        "-U",
                        "postgres",
                        "--auth=trust",
                        "--no-sync",
                        "-E",
                        "UTF8",
                        "--locale=C",
                        "-D",
                    ])
                    .arg(&data);
                sb.local_step(initdb, "initdb").await?;
                // No TCP at all: the restored data is reachable only through the private socket dir.
                let opts = format!(
                    "-c listen_addresses='' -k {} -p 5432 -c fsync=off -c full_page_writes=off -c synchronous_commit=off",
                    sock.display()
                );
                let mut pg_ctl = as_user_async(&run_as, &bin.join("pg_ctl"));
                pg_ctl
                    .arg("-D")
                    .arg(&data)
                    .args(["-o", &opts, "-l"])
                    .arg(sock.join("log"))
                    .args(["-w", "-t", "60", "start"]);
                if let Kind::Local { stopped, .. } = &mut sb.kind {
                    *stopped = false;
                }
                sb.local_step(pg_ctl, "pg_ctl start").await?;
                let mut createdb = as_user_async(&run_as, &bin.join("createdb"));
                createdb
                    .args(["-h"])
                    .arg(&sock)
                    .args(["-p", "5432", "-U", "postgres", "verify"]);
                sb.local_step(createdb, "createdb").await?;
                Ok(sb)
            }
            VerifySandbox::Url => {
                let url = cfg
                    .verify
                    .url
                    .as_deref()
                    .ok_or_else(|| anyhow!("[verify] sandbox = \"url\" needs url"))?;
                let admin = ConnInfo::parse(url).map_err(|e| anyhow!("[verify] url: {e}"))?;
                let db = format!("drctl_verify_{:08x}", rand::random::<u32>());
                let client = connect(&admin).await?;
                client
                    .batch_execute(&format!("create database {db}"))
                    .await
                    .context("cannot create the scratch database")?;
                let mut conn = admin.clone();
                conn.dbname = Some(db.clone());
                Ok(Sandbox {
                    conn,
                    work,
                    loader_role: None,
                    kind: Kind::Url {
                        admin,
                        db,
                        dropped: false,
                    },
                })
            }
            VerifySandbox::Docker => {
                let (name, tag) = cfg
                    .verify
                    .docker_image_for(dumped_major(facts)?)
                    .map_err(|e| anyhow!("[verify] docker_image: {e}"))?;
                let (container, conn) = docker::start(name, tag, backup_id).await?;
                Ok(Sandbox {
                    conn,
                    work,
                    loader_role: None,
                    kind: Kind::Docker {
                        container: Some(Box::new(container)),
                    },
                })
            }
        }
    }

    /// Creates the loader role (see `Loader`) and hands it the sandbox database.
    pub async fn loader(&mut self) -> Result<Loader> {
        let role = format!("drctl_loader_{:08x}", rand::random::<u32>());
        let password: String = {
            use rand::Rng;
            rand::thread_rng()
                .sample_iter(&rand::distributions::Alphanumeric)
                .take(32)
                .map(char::from)
                .collect()
        };
        let db = self.conn.dbname.clone().unwrap_or_default();
        let client = connect(&self.conn).await?;
        client
            .batch_execute(&format!(
                "create role {role} login nosuperuser nocreatedb nocreaterole noinherit password '{password}'"
            ))
            .await
            .context("cannot create a non-superuser role to restore as (the sandbox user needs CREATEROLE)")?;
        self.loader_role = Some(role.clone());
        client
            .batch_execute(&format!(
                "alter database \"{db}\" owner to {role}; alter schema public owner to {role}"
            ))
            .await
            .context("cannot give the sandbox database to the restore role")?;
        Ok(Loader {
            conn: ConnInfo {
                user: Some(role),
                password: Some(password),
                ..self.conn.clone()
            },
        })
    }

    pub async fn stop(mut self) {
        if let Kind::Url { admin, db, dropped } = &mut self.kind {
            match connect(admin).await {
                Ok(c) => {
                    match c
                        .batch_execute(&format!("drop database if exists {db} with (force)"))
                        .await
                    {
                        Ok(()) => *dropped = true,
                        Err(e) => tracing::warn!(db = %db, error = %e, "cannot drop the scratch database"),
                    }
                    // A role is cluster-wide: on a shared scratch server it would stay behind.
                    if let Some(role) = self.loader_role.take() {
                        if let Err(e) = c.batch_execute(&format!("drop role if exists {role}")).await {
                            tracing::warn!(role = %role, error = %e, "cannot drop the sandbox's restore role");
                        }
                    }
                }
                Err(e) => tracing::warn!(db = %db, error = %format!("{e:#}"), "cannot drop the scratch database"),
            }
        }
        if let Kind::Docker { container } = &mut self.kind {
            if let Some(c) = container.take() {
                let id = c.id().to_string();
                if let Err(e) = c.rm().await {
                    tracing::warn!(container = %id, error = %e, "cannot remove the sandbox container; remove it with `docker rm -f {id}`");
                }
            }
        }
        // Local clusters are stopped by Drop.
    }

    /// Runs one step of setting up the local cluster, like `run`, but keeps the child in the
    /// sandbox while it runs. If the verification is dropped meanwhile (Ctrl-C), `Drop` then
    /// waits for the step to end before it stops the server and the work dir is removed;
    /// otherwise a server that `pg_ctl start` was still bringing up would be left running, or an
    /// initdb would go on writing into the removed work dir.
    async fn local_step(&mut self, mut cmd: Command, what: &str) -> Result<()> {
        let Kind::Local { step, .. } = &mut self.kind else {
            unreachable!("only a local sandbox has setup steps")
        };
        // stdout is not used, and a pipe that nobody reads any more after a cancel would kill
        // pg_ctl with SIGPIPE before its server is up (and so before Drop could stop it).
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {what}"))?;
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let child = step.insert(child);
        let mut err = Vec::new();
        let (read, status) = tokio::join!(stderr.read_to_end(&mut err), child.wait());
        *step = None;
        read.with_context(|| format!("cannot run {what}"))?;
        if !status.with_context(|| format!("cannot run {what}"))?.success() {
            bail!("{what} failed: {}", String::from_utf8_lossy(&err).trim());
        }
        Ok(())
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        match &mut self.kind {
            Kind::Local {
                bin,
                data,
                run_as,
                stopped,
                step,
            } => {
                // A step still running means the verification was dropped in the middle of
                // starting the cluster. Wait for it (pg_ctl's `-t 60` bounds this), as the
                // blocking setup used to: a server it brings up is stopped below, and nothing
                // writes into the work dir after it is removed.
                if let Some(child) = step {
                    while let Ok(None) = child.try_wait() {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                }
                if !*stopped {
                    // Synchronous on purpose: Drop cannot await, and this is the last resort that
                    // must stop the cluster before the TempDir under it is removed (an early
                    // return, a panic, Ctrl-C dropping the future). `-m immediate` is quick.
                    let _ = as_user(run_as, &bin.join("pg_ctl"))
                        .arg("-D")
                        .arg(&*data)
                        .args(["-m", "immediate", "-w", "stop"])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                    *stopped = true;
                }
            }
            Kind::Url { db, dropped, .. } if !*dropped => {
                tracing::warn!(db = %db, "scratch database was not dropped; drop it by hand");
            }
            _ => {}
        }
    }
}

/// The major version of the server a backup was dumped from.
fn dumped_major(facts: &PostgresFacts) -> Result<u32> {
    facts
        .server_major()
        .ok_or_else(|| anyhow!("the manifest records no server version"))
}

pub(crate) async fn connect(c: &ConnInfo) -> Result<tokio_postgres::Client> {
    let (client, connection) = pg_config(c)?
        .connect(tokio_postgres::NoTls)
        .await
        .with_context(|| format!("cannot connect to {}", c.display()))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// `prog` run as `user` (through runuser) if given, with only the base environment: not the
/// operator's libpq variables (a PGPORT exported for their real server must not steer the
/// sandbox's tools elsewhere), and nothing of drctl's secrets, which the sandbox server (and
/// code a restored database runs in it) must never see. A std `Command` so that `Drop` can use
/// it too; async code uses `as_user_async`.
fn as_user(user: &Option<String>, prog: &Path) -> StdCommand {
    let mut c = match user {
        Some(u) => {
            let mut c = StdCommand::new("runuser");
            c.args(["-u", u, "--"]).arg(prog);
            c
        }
        None => StdCommand::new(prog),
    };
    c.env_clear().envs(crate::process::base_env());
    c
}

/// `as_user` for async code: the same command (program, arguments, environment) as a
/// `tokio::process::Command`, so waiting for it does not block the runtime.
fn as_user_async(user: &Option<String>, prog: &Path) -> Command {
    Command::from(as_user(user, prog))
}

async fn run(mut cmd: Command, what: &str) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}
