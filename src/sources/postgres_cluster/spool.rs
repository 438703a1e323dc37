//! WAL archiving for a server in a container. drctl is not in the `postgres` image (and a glibc
//! binary would not run in the Alpine one), so the server's `archive_command` does only what
//! its own shell can: copy the WAL file durably into `pg_wal/drctl-spool/` (a directory the
//! server owns, on its data volume, so a recreated container keeps it, and which
//! `pg_basebackup` leaves out like the rest of `pg_wal`). drctl drains the spool through the
//! engine: it lists it, reads each file through the archive endpoint, archives it exactly as
//! `wal-push` does (cluster check, every storage, never overwriting), and only then removes it
//! from the spool. The daemon drains every few seconds; `drctl wal-spool` drains once.
//!
//! Why a spool and not a replication connection (`pg_receivewal`): the spool needs nothing in
//! the drctl image or the network, keeps PostgreSQL's own contract (a WAL file is recycled only
//! once archive_command succeeded, and the spool copy is fsynced before it does), and survives
//! drctl being down: files wait in the spool, on the server's volume, and `drctl status` and the
//! `drctl_wal_spool_files` metric show them waiting.

use super::archive::{self, Pushed};
use super::wal::WalFile;
use super::{ClusterServer, ClusterSource};
use crate::config::Config;
use crate::place::{Container, ContainerRef, Engine, ExecSpec};
use crate::storage::Storage;
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;

/// The spool, relative to the data directory (the server's working directory).
pub const SPOOL: &str = "pg_wal/drctl-spool";

/// The `archive_command`: an existing spool copy with the same content is success (PostgreSQL
/// repeats a command after a crash), different content is failure; otherwise copy under a
/// dot-name, fsync it, rename it into place, fsync the directory. Only `sh`, `cp`, `cmp`,
/// `sync` and `mv` (busybox has them all); no `$`, so Compose does not interpolate it.
pub fn archive_command() -> String {
    let d = SPOOL;
    format!(
        "test -d {d} || mkdir {d}; if test -f {d}/%f; then cmp -s %p {d}/%f; else cp %p {d}/.%f && sync {d}/.%f && mv {d}/.%f {d}/%f && sync {d}; fi"
    )
}

/// The server arguments that turn archiving on into the spool (`command:` in Compose).
pub fn server_args() -> Vec<String> {
    vec![
        "-c".into(),
        "archive_mode=on".into(),
        "-c".into(),
        format!("archive_command={}", archive_command()),
        "-c".into(),
        "archive_timeout=60".into(),
    ]
}

/// What one drain did.
#[derive(Debug, Default)]
pub struct Drained {
    pub archived: usize,
    pub already: usize,
    /// Files still in the spool afterwards.
    pub left: usize,
}

/// The spool's path in the container: under its `PGDATA` (the official image's default).
fn spool_dir(c: &Container) -> String {
    let pgdata = c.env("PGDATA").unwrap_or("/var/lib/postgresql/data");
    format!("{}/{SPOOL}", pgdata.trim_end_matches('/'))
}

/// The WAL files waiting in the spool, in archiving order (timeline, then position; a
/// timeline's history file before its segments). Dot-names are copies in progress.
async fn waiting(c: &Container, dir: &str, source: &str) -> Result<Vec<String>> {
    let out = c
        .exec_output(ExecSpec {
            // `ls -a` of a missing directory fails; `test` first tells that apart.
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "test ! -d \"$1\" || ls -1 \"$1\"".into(),
                "sh".into(),
                dir.into(),
            ],
            env: Vec::new(),
            what: format!("listing the WAL spool of '{source}'"),
        })
        .await?;
    let mut names: Vec<String> = out
        .lines()
        .filter(|n| !n.starts_with('.') && WalFile::parse(n).is_some())
        .map(str::to_string)
        .collect();
    names.sort();
    Ok(names)
}

/// Drains the spool of `src` once: every waiting file archived on every storage, then removed
/// from the spool. Stops at the first file that cannot be archived (it stays, with the ones
/// after it), and says why.
pub async fn drain(cfg: &Config, src: &ClusterSource, storages: &[Storage]) -> Result<Drained> {
    let ClusterServer::Container { place, .. } = &src.server else {
        bail!(
            "source '{}' runs on the host: its archive_command runs drctl wal-push, there is no spool",
            src.name
        );
    };
    let c = resolve(place, &src.name).await?;
    let dir = spool_dir(&c);
    let names = waiting(&c, &dir, &src.name).await?;
    let mut done = Drained::default();
    if names.is_empty() {
        return Ok(done);
    }
    // One file at a time through a private directory: push() reads it twice (checksum, then
    // upload), and a WAL file is at most one segment.
    let scratch = tempfile::Builder::new()
        .prefix("drctl-wal-spool-")
        .tempdir()
        .context("cannot create a scratch directory for the WAL spool")?;
    let mut removable = Vec::new();
    let mut failure = None;
    for name in &names {
        let local = scratch.path().join(name);
        let r = async {
            copy_out(&c, &format!("{dir}/{name}"), &local).await?;
            let pushed = tokio::time::timeout(src.wal_timeout.std(), archive::push(cfg, &src.name, storages, &local))
                .await
                .map_err(|_| anyhow!("archiving took longer than wal_timeout ({})", src.wal_timeout.text()))??;
            Ok::<_, anyhow::Error>(pushed)
        }
        .await;
        let _ = std::fs::remove_file(&local);
        match r {
            Ok(Pushed::Stored { .. }) => done.archived += 1,
            Ok(Pushed::AlreadyArchived) => done.already += 1,
            Err(e) => {
                failure = Some(e.context(format!("source '{}': {name} from the WAL spool", src.name)));
                break;
            }
        }
        removable.push(name.clone());
    }
    remove(&c, &dir, &removable, &src.name).await?;
    done.left = names.len() - removable.len();
    match failure {
        Some(e) => Err(e),
        None => Ok(done),
    }
}

async fn resolve(place: &ContainerRef, source: &str) -> Result<Container> {
    let engine = Engine::connect().with_context(|| format!("source '{source}'"))?;
    engine
        .resolve(place)
        .await
        .with_context(|| format!("source '{source}' ({place})"))
}

/// How many files wait in the spool of `src` (for status and metrics).
pub async fn waiting_count(src: &ClusterSource) -> Result<usize> {
    let ClusterServer::Container { place, .. } = &src.server else {
        return Ok(0);
    };
    let c = resolve(place, &src.name).await?;
    let dir = spool_dir(&c);
    Ok(waiting(&c, &dir, &src.name).await?.len())
}

async fn copy_out(c: &Container, path: &str, local: &Path) -> Result<()> {
    let mut f = c.read_file(path).await?;
    let mut out = tokio::fs::File::create(local)
        .await
        .with_context(|| format!("cannot create {}", local.display()))?;
    let n = tokio::io::copy(&mut f.reader, &mut out).await?;
    if n != f.size {
        bail!("{path}: {n} bytes read of {}", f.size);
    }
    Ok(())
}

/// Removes archived files from the spool, many per exec.
async fn remove(c: &Container, dir: &str, names: &[String], source: &str) -> Result<()> {
    for chunk in names.chunks(200) {
        let mut cmd = vec!["rm".to_string(), "-f".into(), "--".into()];
        cmd.extend(chunk.iter().map(|n| format!("{dir}/{n}")));
        c.exec_output(ExecSpec {
            cmd,
            env: Vec::new(),
            what: format!("removing archived WAL from the spool of '{source}'"),
        })
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archive_command_has_nothing_compose_would_interpolate() {
        let c = archive_command();
        assert!(!c.contains('$'), "{c}");
        assert!(
            c.contains("cmp -s %p pg_wal/drctl-spool/%f")
                && c.contains("mv pg_wal/drctl-spool/.%f pg_wal/drctl-spool/%f")
        );
        assert!(server_args().iter().any(|a| a == "archive_mode=on"));
    }
}
