//! Getting a backup back out of storage: every object fetched from the first storage that holds
//! it, checked (size, stored SHA-256, age authentication, plain SHA-256) while it is decrypted
//! into a private partial file, and renamed into place only when everything matched. What each
//! kind then does with the file lives with the kind (`sources/<kind>/restore.rs`).

use crate::catalog::{self, Entry};
use crate::keys::Identities;
use crate::pipeline;
use crate::storage::Storage;
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};

/// `pgdump` from `data/app/ID.pgdump.zst.age`.
pub(crate) fn artifact_format(m: &catalog::Manifest) -> String {
    m.objects
        .first()
        .and_then(|o| o.key.rsplit('/').next())
        .and_then(|f| f.split('.').nth(1))
        .unwrap_or("dump")
        .to_string()
}

/// A decrypted, checked artifact in a private scratch directory, on its way into a server;
/// removed when dropped.
pub(crate) struct Fetched {
    /// Held so the directory lives as long as the file.
    _dir: tempfile::TempDir,
    pub file: PathBuf,
}

/// Fetches and checks a backup into a private directory under `scratch_root` (created 0700
/// if missing; `restore --scratch-dir`), as `<name>` (see `fetch_to_file`).
pub(crate) async fn fetch_to_scratch(
    storages: &[Storage],
    entry: &Entry,
    identities: &Identities,
    name: &str,
    scratch_root: &Path,
) -> Result<Fetched> {
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(scratch_root)
            .with_context(|| {
                format!(
                    "cannot create the scratch directory {} (pass --scratch-dir DIR on a disk with room for the dump)",
                    scratch_root.display()
                )
            })?;
    }
    let dir = tempfile::Builder::new()
        .prefix("drctl-restore-")
        .tempdir_in(scratch_root)
        .with_context(|| format!("cannot create a scratch directory in {}", scratch_root.display()))?;
    let file = dir.path().join(name);
    fetch_to_file(storages, entry, identities, &file).await?;
    Ok(Fetched { _dir: dir, file })
}

/// Free bytes for an unprivileged writer on the filesystem holding `dir`.
fn available_space(dir: &Path) -> Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
    // SAFETY: statvfs(3) fills the zeroed struct we own; `c` is a valid NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot read the free space of {}", dir.display()));
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// Refuses, before a byte is written, to decrypt `need` bytes into a filesystem with less room:
/// a restore that fills the disk at 3 a.m. fails late and may take the server down with it.
fn ensure_space(dir: &Path, need: u64, what: &str) -> Result<()> {
    let free = available_space(dir)?;
    if free < need {
        bail!(
            "{} has {} free, but {what} needs {} (free space there, or restore elsewhere: --scratch-dir DIR for a database target, another --output-dir for files)",
            dir.display(),
            catalog::human_bytes(free),
            catalog::human_bytes(need)
        );
    }
    Ok(())
}

/// Fetches, checks and extracts a tar artifact into `dir/<source>`, which must be new or empty.
pub(crate) async fn extract_to_dir(
    dir: &Path,
    entry: &Entry,
    storages: &[Storage],
    identities: &Identities,
    keep_special_bits: bool,
) -> Result<PathBuf> {
    let m = &entry.manifest;
    let sub = dir.join(&m.source);
    crate::archive::require_empty(&sub)?;
    // The archive and what it unpacks to are both on this filesystem until the archive goes.
    ensure_space(
        dir,
        m.plain.size.saturating_mul(2),
        &format!(
            "backup {} of '{}' (the archive and its extracted files)",
            m.id, m.source
        ),
    )?;
    let scratch = tempfile::Builder::new().prefix("drctl-restore-").tempdir_in(dir)?;
    let file = scratch.path().join("artifact.tar");
    fetch_to_file(storages, entry, identities, &file).await?;
    let (f, s) = (file.clone(), sub.clone());
    tokio::task::spawn_blocking(move || crate::archive::extract(&f, &s, keep_special_bits)).await??;
    Ok(sub)
}

/// Decrypts a backup into `dest` through a partial file that is renamed only after every
/// check passed. Tries each storage that holds the backup, in order, and says so.
///
/// The partial file lives in a private directory drctl creates next to `dest` and is opened
/// with O_EXCL (which never follows a symlink): a name planted in a directory someone else can
/// write (a symlink where the partial file would go) cannot redirect the decrypted bytes.
pub async fn fetch_to_file(storages: &[Storage], entry: &Entry, identities: &Identities, dest: &Path) -> Result<()> {
    let m = &entry.manifest;
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    ensure_space(
        parent,
        m.plain.size,
        &format!("backup {} of '{}' (decrypted)", m.id, m.source),
    )?;
    let private = tempfile::Builder::new()
        .prefix(".drctl-partial-")
        .tempdir_in(parent)
        .with_context(|| format!("cannot create a private directory in {}", parent.display()))?;
    let partial = private.path().join("partial");
    let holders: Vec<&Storage> = storages.iter().filter(|s| entry.storages.contains(&s.name)).collect();
    let mut errors = Vec::new();
    for st in holders {
        let fetch = async {
            let mut f = open_private(&partial).await?;
            pipeline::open_into(st, m, entry.objects_on(&st.name), identities, &mut f).await?;
            f.sync_all().await?;
            Ok::<_, anyhow::Error>(())
        };
        let result = tokio::select! {
            r = fetch => r,
            _ = crate::process::shutdown().cancelled() => {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(crate::process::Interrupted(format!("the download of backup {}", m.id)).into());
            }
        };
        match result {
            Ok(()) => {
                tokio::fs::rename(&partial, dest).await?;
                return Ok(());
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&partial).await;
                let wrong_key = matches!(
                    e.downcast_ref::<pipeline::OpenError>(),
                    Some(pipeline::OpenError::WrongIdentity { .. })
                );
                if !wrong_key && errors.is_empty() {
                    tracing::warn!(storage = %st.name, error = %format!("{e:#}"), "restore from this storage failed; trying the next one that holds the backup");
                }
                errors.push(e);
                if wrong_key {
                    break;
                }
            }
        }
    }
    match errors.len() {
        0 => bail!("backup {} of '{}' is on no selected storage", m.id, m.source),
        1 => Err(errors.remove(0)),
        _ => {
            let all: Vec<String> = errors.iter().map(|e| format!("{e:#}")).collect();
            Err(anyhow!("every storage failed:\n  - {}", all.join("\n  - ")))
        }
    }
}

async fn open_private(path: &Path) -> Result<tokio::fs::File> {
    let f = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true) // O_CREAT|O_EXCL: never an existing file, never through a symlink
        .mode(0o600)
        .open(path)
        .await
        .with_context(|| format!("cannot create {}", path.display()))?;
    Ok(f)
}
