//! Child processes whose stdout is the data stream (pg_dump) or who consume a file (pg_restore).
//! stderr is drained concurrently (a child blocked on a full stderr pipe never finishes) and its
//! tail is carried into the error. Unlike ripgrep we treat an early close as failure: only a
//! zero exit status makes a dump good.

use anyhow::{anyhow, Result};
use std::process::{ExitStatus, Stdio};
use std::sync::LazyLock;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Cancelled when this process is asked to stop (SIGINT/SIGTERM, see `commands`): every child
/// run through `run` is then stopped and waited for, so none outlives drctl (an orphaned
/// pg_restore would go on loading), and scratch files are removed as the error unwinds.
static SHUTDOWN: LazyLock<CancellationToken> = LazyLock::new(CancellationToken::new);

pub fn shutdown() -> &'static CancellationToken {
    &SHUTDOWN
}

/// A child stopped because drctl was asked to stop.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by a signal: {0} was stopped and waited for; scratch files were removed")]
pub struct Interrupted(pub String);

/// How long a child gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The variables every child process starts from: what a program needs to run and to print
/// readable messages, nothing of drctl's own. drctl's environment holds storage keys, webhook
/// URLs and other sources' passwords; a child gets only these, plus what its own job needs
/// (`libpq_env` for PostgreSQL tools), set by the caller.
const BASE_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TZ",
    "TMPDIR",
];

/// `BASE_ENV`, as this process has them.
pub fn base_env() -> Vec<(String, std::ffi::OsString)> {
    BASE_ENV
        .iter()
        .filter_map(|k| std::env::var_os(k).map(|v| (k.to_string(), v)))
        .collect()
}

/// The operator's libpq variables (PGPASSFILE, PGPASSWORD, PGSSLROOTCERT, …): a PostgreSQL
/// tool drctl runs for the operator's server honours them, as it would run by hand.
pub fn libpq_env() -> Vec<(String, std::ffi::OsString)> {
    std::env::vars_os()
        .filter_map(|(k, v)| k.to_str().filter(|k| k.starts_with("PG")).map(|k| (k.to_string(), v)))
        .collect()
}

/// A command for `prog` with only `base_env`.
pub fn command(prog: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(prog);
    c.env_clear().envs(base_env());
    c
}

/// [`command`] run as `user` through runuser (drctl as root runs PostgreSQL's server tools as
/// `postgres`, which refuses root), or as drctl's own user when None.
pub fn command_as(user: Option<&str>, prog: impl AsRef<std::ffi::OsStr>) -> Command {
    match user {
        Some(u) => {
            let mut c = command("runuser");
            c.args(["-u", u, "--"]).arg(prog);
            c
        }
        None => command(prog),
    }
}

/// A command for a PostgreSQL client tool: `base_env` and `libpq_env`; the caller then sets
/// the connection (`ConnInfo::apply`).
pub fn pg_command(prog: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = command(prog);
    c.envs(libpq_env());
    c
}

/// How much of a child's stderr we keep for the error message.
const STDERR_TAIL: usize = 16 * 1024;

pub struct Completion {
    what: String,
    child: Child,
    stderr: JoinHandle<String>,
    /// Whatever must live as long as the child runs (a snapshot-holding connection).
    keep: Vec<Box<dyn std::any::Any + Send>>,
}

impl Completion {
    pub fn keep_alive(&mut self, thing: Box<dyn std::any::Any + Send>) {
        self.keep.push(thing);
    }

    /// Waits for the child; Ok only on exit status 0.
    pub async fn wait(mut self) -> Result<String> {
        let status = self.child.wait().await?;
        let stderr = self.stderr.await.unwrap_or_default();
        drop(std::mem::take(&mut self.keep));
        check_status(&self.what, status, &stderr)?;
        Ok(stderr)
    }

    /// Kills the child (used when the upload side failed first).
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
        self.stderr.abort();
    }
}

fn check_status(what: &str, status: ExitStatus, stderr: &str) -> Result<()> {
    if status.success() {
        return Ok(());
    }
    let tail = stderr.trim();
    let how = match status.code() {
        Some(c) => format!("exited with status {c}"),
        None => {
            use std::os::unix::process::ExitStatusExt;
            format!("was killed by signal {}", status.signal().unwrap_or(0))
        }
    };
    if tail.is_empty() {
        Err(anyhow!("{what} {how} (it printed nothing on stderr)"))
    } else {
        Err(anyhow!("{what} {how}: {tail}"))
    }
}

fn drain_stderr(child: &mut Child) -> JoinHandle<String> {
    let mut err = child.stderr.take().expect("stderr piped");
    tokio::spawn(async move {
        let mut keep: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match err.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    keep.extend_from_slice(&buf[..n]);
                    if keep.len() > STDERR_TAIL * 2 {
                        keep.drain(..keep.len() - STDERR_TAIL);
                    }
                }
            }
        }
        if keep.len() > STDERR_TAIL {
            keep.drain(..keep.len() - STDERR_TAIL);
        }
        String::from_utf8_lossy(&keep).into_owned()
    })
}

/// Spawns `cmd` with stdout as a stream. `what` names it in errors ("pg_dump for 'app-db'").
pub fn spawn_streaming(mut cmd: Command, what: String) -> Result<(tokio::process::ChildStdout, Completion)> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| anyhow!("cannot start {what}: {e}"))?;
    let stdout = child.stdout.take().expect("stdout piped");
    let stderr = drain_stderr(&mut child);
    Ok((
        stdout,
        Completion {
            what,
            child,
            stderr,
            keep: Vec::new(),
        },
    ))
}

/// Runs `cmd` to completion, returning stdout; a non-zero exit carries stderr. If drctl is asked
/// to stop meanwhile, the child gets SIGTERM (pg_restore then cancels its workers' queries),
/// is waited for (killed after `STOP_GRACE`), and the result is `Interrupted`.
pub async fn run(cmd: Command, what: &str) -> Result<String> {
    run_with(cmd, None, what).await
}

/// [`run`] with `input` written to the child's stdin (a script with secrets in it: never argv).
pub async fn run_input(cmd: Command, input: Vec<u8>, what: &str) -> Result<String> {
    run_with(cmd, Some(input), what).await
}

async fn run_with(mut cmd: Command, input: Option<Vec<u8>>, what: &str) -> Result<String> {
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| anyhow!("cannot start {what}: {e}"))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let _ = stdin.write_all(&input).await;
        });
    }
    let mut out = child.stdout.take().expect("stdout piped");
    let stdout = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf).await;
        buf
    });
    let stderr = drain_stderr(&mut child);
    let status = tokio::select! {
        s = child.wait() => s?,
        _ = SHUTDOWN.cancelled() => {
            stop(&mut child).await;
            return Err(Interrupted(what.to_string()).into());
        }
    };
    let stderr = stderr.await.unwrap_or_default();
    check_status(what, status, &stderr)?;
    Ok(String::from_utf8_lossy(&stdout.await.unwrap_or_default()).into_owned())
}

/// SIGTERM, then wait; SIGKILL if it has not exited within `STOP_GRACE`.
async fn stop(child: &mut Child) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on our own child's pid, which is not reaped yet (we hold the Child).
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }
    if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}
