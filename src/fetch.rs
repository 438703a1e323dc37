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
    pub dir: tempfile::TempDir,
    pub file: PathBuf,
}

/// Fetches and checks a backup into `<scratch>/<name>` (see `fetch_to_file`).
pub(crate) async fn fetch_to_scratch(
    storages: &[Storage],
    entry: &Entry,
    identities: &Identities,
    name: &str,
) -> Result<Fetched> {
    let dir = tempfile::Builder::new().prefix("drctl-restore-").tempdir()?;
    let file = dir.path().join(name);
    fetch_to_file(storages, entry, identities, &file).await?;
    Ok(Fetched { dir, file })
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
    let private = tempfile::Builder::new()
        .prefix(".drctl-partial-")
        .tempdir_in(parent)
        .with_context(|| format!("cannot create a private directory in {}", parent.display()))?;
    let partial = private.path().join("partial");
    let holders: Vec<&Storage> = storages.iter().filter(|s| entry.storages.contains(&s.name)).collect();
    let mut errors = Vec::new();
    for st in holders {
        let result = async {
            let mut f = open_private(&partial).await?;
            pipeline::open_into(st, m, entry.objects_on(&st.name), identities, &mut f).await?;
            f.sync_all().await?;
            Ok::<_, anyhow::Error>(())
        }
        .await;
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
