//! The ssh control masters behind SFTP storages, and stopping the ones the crates leave behind.
//!
//! OpenDAL's sftp service opens each pooled connection as an openssh `Session` (process-mux): a
//! daemonized `ssh -M -f -N -o ControlPersist=yes` whose control socket lives in a temp directory
//! `.ssh-connectionXXXXXX` under `$XDG_STATE_HOME`. Such a master runs until it is told to exit
//! through that socket. openssh-sftp-client closes the session in a task of its own when the
//! `Sftp` goes away: `Session::close` takes the temp directory out of the session and then
//! awaits `ssh -O exit`. But it also aborts that task once the `Sftp`'s last reader is gone, and
//! a runtime being dropped drops it too; when that lands while `ssh -O exit` is still starting,
//! the temp directory is removed under it ("Control socket connect(…): No such file or
//! directory"), the session's `Drop` does nothing (the directory is no longer its to keep), and
//! the master runs on, reachable by no one. On a loaded machine this happened to between one
//! drctl run in 25 and one in 3.
//!
//! So drctl stops them itself. `ControlDir` gives this process a control directory of its own, so
//! its masters are told apart from anyone else's by the `-S` path on their command line. A master
//! whose `.ssh-connection` directory is gone is orphaned: its session has been dropped or closed
//! and nothing can reach it any more, so stopping it (SIGTERM; ssh closes the connection and
//! exits) takes nothing from anyone. The daemon stops orphans as it goes (`stop_orphaned_masters`);
//! every run stops and waits for all of its masters when it exits (`ControlDir`'s `Drop`, after
//! the runtime and with it every session is gone), failing runs included.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static CONTROL_DIR: OnceLock<PathBuf> = OnceLock::new();

/// How long an exiting run waits for its masters to go after SIGTERM before it kills them.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// This process's directory for ssh control sockets, removed (after its masters are stopped)
/// on drop.
pub struct ControlDir {
    path: PathBuf,
}

impl ControlDir {
    /// Creates the directory (mode 0700, under the temp dir: openssh's default, ~/.local/state,
    /// is read-only under drctl.service's ProtectHome=read-only) and points `$XDG_STATE_HOME`,
    /// where openssh puts its sockets, at it. Call it first thing in main: it sets an environment
    /// variable, which is sound only while no other thread runs. The operator's own
    /// `$XDG_STATE_HOME` stays readable as `crate::xdg_state_home()`. None (openssh keeps its
    /// default directory) when the directory cannot be made.
    pub fn create() -> Option<ControlDir> {
        crate::xdg_state_home();
        use std::os::unix::fs::PermissionsExt;
        let private = std::fs::Permissions::from_mode(0o700);
        let path = match tempfile::Builder::new()
            .prefix("drctl-ssh-")
            .permissions(private)
            .tempdir()
        {
            Ok(d) => d.keep(),
            Err(e) => {
                tracing::debug!(error = %e, "no private ssh control directory; masters left behind are not stopped");
                return None;
            }
        };
        std::env::set_var("XDG_STATE_HOME", &path);
        let _ = CONTROL_DIR.set(path.clone());
        Some(ControlDir { path })
    }
}

impl Drop for ControlDir {
    fn drop(&mut self) {
        let stopped = stop(&self.path, |_| true, EXIT_GRACE);
        if stopped > 0 {
            tracing::debug!(stopped, "stopped ssh control masters whose sessions did not close them");
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Stops this process's orphaned masters (see the module documentation) without waiting for
/// them; returns how many. For the daemon, whose runs open and drop sessions all along.
pub fn stop_orphaned_masters() -> usize {
    match CONTROL_DIR.get() {
        Some(dir) => stop(dir, Master::orphaned, Duration::ZERO),
        None => 0,
    }
}

/// One `ssh -M` process and its control socket.
#[derive(Debug, PartialEq)]
struct Master {
    pid: i32,
    socket: PathBuf,
}

impl Master {
    /// Its session's temp directory is gone: nothing will use or close it.
    fn orphaned(&self) -> bool {
        self.socket.parent().is_none_or(|d| !d.exists())
    }
}

/// The master whose command line this is (`/proc/<pid>/cmdline`: arguments ended by NULs), if
/// its control socket is under `dir`.
fn parse_master(pid: i32, cmdline: &[u8], dir: &Path) -> Option<Master> {
    let args: Vec<&OsStr> = cmdline.split(|b| *b == 0).map(OsStr::from_bytes).collect();
    if Path::new(args.first()?).file_name() != Some(OsStr::new("ssh")) || !args.contains(&OsStr::new("-M")) {
        return None;
    }
    let socket = Path::new(args.get(args.iter().position(|a| *a == OsStr::new("-S"))? + 1)?);
    socket.starts_with(dir).then(|| Master {
        pid,
        socket: socket.to_path_buf(),
    })
}

/// The masters with a socket under `dir`. A zombie has an empty command line, so it is not one.
fn masters_in(dir: &Path) -> Vec<Master> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse().ok()?;
            parse_master(pid, &std::fs::read(e.path().join("cmdline")).ok()?, dir)
        })
        .collect()
}

/// SIGTERMs the masters under `dir` that `which` picks, waits up to `grace` for them to go and
/// kills what is left; returns how many there were.
fn stop(dir: &Path, which: impl Fn(&Master) -> bool, grace: Duration) -> usize {
    let chosen: Vec<Master> = masters_in(dir).into_iter().filter(|m| which(m)).collect();
    for m in &chosen {
        // SAFETY: kill(2) has no memory effects; the pid was an ssh master with our socket path
        // a moment ago.
        unsafe { libc::kill(m.pid, libc::SIGTERM) };
    }
    if grace.is_zero() || chosen.is_empty() {
        return chosen.len();
    }
    let deadline = Instant::now() + grace;
    let alive = || {
        let now = masters_in(dir);
        chosen.iter().filter(|m| now.contains(m)).count()
    };
    while alive() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for m in masters_in(dir).iter().filter(|m| chosen.contains(m)) {
        // SAFETY: as above.
        unsafe { libc::kill(m.pid, libc::SIGKILL) };
    }
    chosen.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command line as /proc has it, from one with single spaces between the arguments.
    fn cmdline(line: &str) -> Vec<u8> {
        line.split(' ').flat_map(|a| a.bytes().chain([0])).collect()
    }

    #[test]
    fn a_master_is_ours_by_its_socket_path() {
        let dir = Path::new("/tmp/drctl-ssh-abc");
        let master = |s: &str| {
            cmdline(&format!(
                "ssh -E x/log -S {s} -M -f -N -o ControlPersist=yes -p 23 host"
            ))
        };
        assert_eq!(
            parse_master(7, &master("/tmp/drctl-ssh-abc/.ssh-connectionX/master"), dir),
            Some(Master {
                pid: 7,
                socket: "/tmp/drctl-ssh-abc/.ssh-connectionX/master".into()
            })
        );
        // Another process's master, a prefix that is not a path prefix, a client, no -S.
        assert_eq!(
            parse_master(7, &master("/root/.local/state/.ssh-connectionX/master"), dir),
            None
        );
        assert_eq!(
            parse_master(7, &master("/tmp/drctl-ssh-abcd/.ssh-connectionX/master"), dir),
            None
        );
        let client = cmdline("ssh -S /tmp/drctl-ssh-abc/.ssh-connectionX/master -O exit none");
        assert_eq!(parse_master(7, &client, dir), None);
        assert_eq!(parse_master(7, &cmdline("ssh -M host"), dir), None);
        assert_eq!(parse_master(7, &cmdline("ssh -M -S"), dir), None);
        assert_eq!(parse_master(7, b"", dir), None);
    }

    #[test]
    fn a_master_is_orphaned_when_its_session_directory_is_gone() {
        let d = tempfile::tempdir().unwrap();
        let live = Master {
            pid: 1,
            socket: d.path().join("master"),
        };
        let gone = Master {
            pid: 1,
            socket: d.path().join("gone/master"),
        };
        assert!(!live.orphaned());
        assert!(gone.orphaned());
    }
}
