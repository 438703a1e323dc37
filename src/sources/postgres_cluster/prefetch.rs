//! Read-ahead for `restore_command`. PostgreSQL asks for one WAL file at a time and waits for
//! it; one round trip (and one decryption) per 16 MiB would make replay as slow as the link's
//! latency. After serving a segment, `wal-fetch` starts a detached `drctl wal-prefetch`, which
//! downloads the next `prefetch` segments in parallel into `pg_wal/.drctl-prefetch/` (each
//! checked and renamed into place only when complete, as every fetch is), so that the next
//! requests are answered from local disk. At most one prefetcher runs (a lock file); the cache
//! holds at most `prefetch` segments, and those already replayed are removed.

use super::archive::{self, ArchiveInfo, Fetched};
use super::wal::Segment;
use crate::keys::Identities;
use crate::storage::Storage;
use anyhow::{Context, Result};
use futures::StreamExt;
use std::path::{Path, PathBuf};

/// The cache directory for a `%p` like `pg_wal/RECOVERYXLOG`.
pub fn cache_dir(dest: &Path) -> PathBuf {
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    parent.join(".drctl-prefetch")
}

/// Takes `name` from the cache into `dest` if a prefetcher already brought it.
pub fn take_cached(dest: &Path, name: &str) -> Result<bool> {
    let cached = cache_dir(dest).join(name);
    match std::fs::rename(&cached, dest) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot move {} to {}", cached.display(), dest.display())),
    }
}

/// An exclusive, non-blocking lock on the cache: None when another prefetcher holds it.
fn try_lock(dir: &Path) -> Result<Option<std::fs::File>> {
    use std::os::unix::io::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".lock"))
        .with_context(|| format!("cannot open {}/.lock", dir.display()))?;
    // SAFETY: flock(2) on a descriptor we own; the lock goes with the file.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    Ok((r == 0).then_some(f))
}

/// Downloads up to `count` segments after `after` into `dir`. Stops quietly at the end of the
/// archive or at the first error: the `wal-fetch` that needs the segment fetches it itself
/// and reports what is wrong.
pub async fn run(
    source: &str,
    storages: &[Storage],
    identities: &Identities,
    info: &ArchiveInfo,
    after: &str,
    dir: &Path,
    count: usize,
) -> Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let Some(_lock) = try_lock(dir)? else {
        return Ok(0);
    };
    let seg = info.segment_size;
    let Some(after) = Segment::parse(after, seg) else {
        return Ok(0);
    };
    // Replayed segments and partial downloads of an earlier prefetcher go.
    for e in std::fs::read_dir(dir)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let stale = match Segment::parse(&name, seg) {
            Some(s) => {
                s.timeline != after.timeline || s.number <= after.number || s.number > after.number + count as u64
            }
            None => name != ".lock",
        };
        if stale {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let wanted: Vec<String> = (1..=count as u64)
        .map(|i| Segment {
            timeline: after.timeline,
            number: after.number + i,
        })
        .map(|s| s.name(seg))
        .filter(|n| !dir.join(n).exists())
        .collect();
    let mut fetched = 0;
    let mut results = futures::stream::iter(wanted.into_iter().map(|name| async move {
        let dest = dir.join(&name);
        archive::fetch(source, storages, identities, Some(info), &name, &dest).await
    }))
    .buffered(count.max(1));
    while let Some(r) = results.next().await {
        match r {
            Ok(Fetched::Written { .. }) => fetched += 1,
            Ok(Fetched::NotArchived) | Err(_) => break,
        }
    }
    Ok(fetched)
}
