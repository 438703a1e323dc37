//! Files inside a container, or in a named volume, through the engine's archive endpoint (what
//! `docker cp` uses; works in images without a shell or `tar`, and on stopped containers).
//!
//! The engine sends one tar per path, its entries named from the path's last component
//! (`data/…` for `/data`). drctl reads those entries as they arrive (on a blocking thread, the
//! `tar` crate over the engine's stream: never a temp file, never a whole file in memory) and
//! writes a new tar into the pipeline, recording what the host files source records: every
//! file's SHA-256, size and mode, counts and bytes. On the way it
//! - names entries like the host source does: the path from the root of the filesystem it came
//!   from, without the leading `/` — `/data/caddy/x` in a container is `data/caddy/x`; in a
//!   volume, the path from the volume's root (`caddy/x`), so `tar -x` in the volume's
//!   mount point puts everything back where it was;
//! - applies `exclude` (globs against the path inside the container, or from the volume's
//!   root; an excluded directory drops everything below it);
//! - accepts the two ways engines name entries (Docker: from the path's last component;
//!   podman, reading a volume's mount point: from `/`), refuses an entry named with `..` (the
//!   engine never sends one; a hostile engine might), skips devices, fifos and sockets with a
//!   warning, as the host source does, and keeps hard links (renamed with their targets).
//!
//! A path that does not exist fails the backup: the first one before any byte is handed on,
//! a later one when it is reached — nothing is committed either way.

use super::{FilesFacts, FilesPlace, FilesSource, Origin};
use crate::place::{Engine, TreeReader, VolumeReader};
use crate::sources::{Dump, Facts, Finish};
use crate::tarball::{FileFact, Hashing, TarStats};
use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use tokio_util::io::SyncIoBridge;

/// One path to read, and what its entries are called.
#[derive(Debug, Clone, PartialEq)]
struct Root {
    /// Absolute, inside the container.
    path: String,
    /// Its name in the artifact (empty: its contents at the top).
    name: PathBuf,
    /// What `exclude` globs are matched against for it (the entry's path below is joined).
    shown: PathBuf,
}

/// The roots of `paths` (already clean: absolute in a container, relative in a volume), each
/// once, without those inside another listed one (its read already holds them).
fn roots(paths: &[PathBuf], volume_mount: Option<&str>) -> Vec<Root> {
    let mut listed: Vec<PathBuf> = paths.to_vec();
    if volume_mount.is_some() && listed.is_empty() {
        listed.push(PathBuf::new());
    }
    listed.sort();
    listed.dedup();
    let mut kept: Vec<PathBuf> = Vec::new();
    for p in listed {
        if !kept.iter().any(|k| p.starts_with(k)) {
            kept.push(p);
        }
    }
    kept.into_iter()
        .map(|p| match volume_mount {
            Some(mount) => Root {
                path: join(Path::new(mount), &p).to_string_lossy().into_owned(),
                name: p.clone(),
                shown: p,
            },
            None => Root {
                path: p.to_string_lossy().into_owned(),
                name: p.components().filter(|c| matches!(c, Component::Normal(_))).collect(),
                shown: p,
            },
        })
        .collect()
}

pub async fn start_dump(src: &FilesSource) -> Result<Dump> {
    let name = &src.name;
    let exclude = crate::tarball::globs(&src.exclude).map_err(|e| anyhow!("source '{name}': {e}"))?;
    let engine = Engine::connect().with_context(|| format!("source '{name}'"))?;
    let (container, roots, cleanup, origin) = match &src.place {
        FilesPlace::Container { place, paths } => {
            // Stopped is fine: the archive endpoint reads a stopped container's files.
            let c = engine
                .resolve_any(place)
                .await
                .with_context(|| format!("source '{name}' ({place})"))?;
            let origin = Origin::Container {
                container: c.name.clone(),
            };
            (c, roots(paths, None), None, origin)
        }
        FilesPlace::Volume {
            volume,
            paths,
            reader_image,
        } => {
            let r = engine
                .volume_reader(volume, reader_image.as_deref())
                .await
                .with_context(|| format!("source '{name}'"))?;
            let VolumeReader {
                container,
                mount_point,
                cleanup,
            } = r;
            let roots = roots(paths, Some(&mount_point));
            (
                container,
                roots,
                Some(cleanup),
                Origin::Volume { volume: volume.clone() },
            )
        }
        FilesPlace::Host { .. } => unreachable!("host files are archived by dump.rs"),
    };
    let release = async move {
        if let Some(c) = cleanup {
            c.release().await;
        }
    };
    // The first path now, so a missing one fails before the pipeline starts.
    let first = match roots.first() {
        Some(r) => container.read_tree(&r.path).await,
        None => Err(anyhow!("no paths")),
    };
    let first = match first {
        Ok(f) => f,
        Err(e) => {
            release.await;
            return Err(e.context(format!("source '{name}'")));
        }
    };
    let (w, r) = tokio::io::duplex(1024 * 1024);
    let handle = tokio::runtime::Handle::current();
    let container = Arc::new(container);
    let task = tokio::task::spawn_blocking(move || {
        rewrite(
            &roots,
            &exclude,
            first,
            |path| handle.block_on(container.read_tree(path)),
            &handle,
            SyncIoBridge::new(w),
        )
    });
    let source = name.clone();
    Ok(Dump {
        reader: Box::new(r),
        format: "tar",
        finish: Finish::TaskThen(
            tokio::spawn(async move {
                let tar = task
                    .await
                    .map_err(|e| anyhow!("archive task failed: {e}"))?
                    .with_context(|| format!("source '{source}'"))?;
                Ok(Facts::Files(FilesFacts {
                    tar,
                    origin: Some(origin),
                    unknown: Default::default(),
                }))
            }),
            Box::pin(release),
        ),
    })
}

/// `a/b`, and `a` itself when `b` is empty (`join` would add a trailing `/`).
fn join(a: &Path, b: &Path) -> PathBuf {
    if b.as_os_str().is_empty() {
        a.to_path_buf()
    } else {
        a.join(b)
    }
}

/// How an engine names the entries of one archive: Docker (and podman for most paths) from the
/// path's last component (`data/x` for `/data/x`); podman, for a path that is a volume's mount
/// point, from `/` (`/`, `/x`). One archive uses one of the two.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Naming {
    Basename,
    Rooted,
}

/// The entry's name from the engine, relative to the path that was read (empty: that path
/// itself); refuses `..` and a name of the other style than the archive's first entry.
fn below_root(raw: &Path, naming: &mut Option<Naming>) -> Result<PathBuf> {
    let refuse = || {
        anyhow!(
            "the engine sent a tar entry named '{}' (with '..', or unlike the archive's other names); refusing it",
            raw.display()
        )
    };
    let this = if raw.has_root() {
        Naming::Rooted
    } else {
        Naming::Basename
    };
    if *naming.get_or_insert(this) != this {
        return Err(refuse());
    }
    let mut parts = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(x) => parts.push(x),
            Component::CurDir | Component::RootDir => {}
            _ => return Err(refuse()),
        }
    }
    let skip = match this {
        Naming::Basename if parts.is_empty() => return Err(refuse()),
        Naming::Basename => 1,
        Naming::Rooted => 0,
    };
    Ok(parts.into_iter().skip(skip).collect())
}

fn record(
    files: &mut BTreeMap<String, FileFact>,
    hex_names: &mut BTreeMap<String, FileFact>,
    name: &Path,
    f: FileFact,
) {
    match name.to_str() {
        Some(utf8) => files.insert(utf8.to_string(), f),
        None => hex_names.insert(hex::encode(name.as_os_str().as_bytes()), f),
    };
}

fn recorded<'a>(
    files: &'a BTreeMap<String, FileFact>,
    hex_names: &'a BTreeMap<String, FileFact>,
    name: &Path,
) -> Option<&'a FileFact> {
    match name.to_str() {
        Some(utf8) => files.get(utf8),
        None => hex_names.get(&hex::encode(name.as_os_str().as_bytes())),
    }
}

/// Reads each root's tar from the engine (`first` for the first, `open` for the rest) and
/// writes the renamed, filtered entries to `out`, hashing every file.
fn rewrite<W: Write>(
    roots: &[Root],
    exclude: &globset::GlobSet,
    first: TreeReader,
    open: impl Fn(&str) -> Result<TreeReader>,
    handle: &tokio::runtime::Handle,
    out: W,
) -> Result<TarStats> {
    let mut b = tar::Builder::new(out);
    let (mut files, mut hex_names) = (BTreeMap::new(), BTreeMap::new());
    let (mut count, mut bytes) = (0u64, 0u64);
    let mut written: HashSet<PathBuf> = HashSet::new();
    let mut first = Some(first);
    for root in roots {
        let stream = match first.take() {
            Some(f) => f,
            None => open(&root.path)?,
        };
        let mut archive = tar::Archive::new(SyncIoBridge::new_with_handle(stream, handle.clone()));
        // Directories an exclude matched: everything below them goes too.
        let mut excluded: Vec<PathBuf> = Vec::new();
        let mut naming = None;
        let what = |rel: &Path| {
            if rel.as_os_str().is_empty() {
                root.path.clone()
            } else {
                format!("{}/{}", root.path, rel.display())
            }
        };
        for entry in archive
            .entries()
            .with_context(|| format!("cannot read the engine's archive of {}", root.path))?
        {
            let mut e = entry.with_context(|| format!("cannot read the engine's archive of {}", root.path))?;
            let raw = e.path()?.into_owned();
            let rel = below_root(&raw, &mut naming)?;
            if excluded.iter().any(|d| rel.starts_with(d)) {
                continue;
            }
            let kind = e.header().entry_type();
            if exclude.is_match(join(&root.shown, &rel)) {
                if kind.is_dir() {
                    excluded.push(rel);
                }
                continue;
            }
            let name = join(&root.name, &rel);
            if name.as_os_str().is_empty() {
                continue; // the root itself of a whole volume
            }
            let h0 = e.header();
            let mode = h0.mode().unwrap_or(0o644) & 0o7777;
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_uid(h0.uid().unwrap_or(0));
            h.set_gid(h0.gid().unwrap_or(0));
            h.set_mtime(h0.mtime().unwrap_or(0));
            if let Ok(Some(u)) = h0.username() {
                let _ = h.set_username(u);
            }
            if let Ok(Some(g)) = h0.groupname() {
                let _ = h.set_groupname(g);
            }
            if !written.insert(name.clone()) {
                bail!(
                    "cannot archive {}: '{}' is already in the archive (a path listed twice?); an archive with two entries of one name cannot be restored",
                    what(&rel),
                    name.display()
                );
            }
            match kind {
                tar::EntryType::Directory => {
                    h.set_size(0);
                    b.append_data(&mut h, &name, std::io::empty())
                        .with_context(|| format!("cannot archive {}", what(&rel)))?;
                }
                tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                    h.set_entry_type(tar::EntryType::Regular);
                    let size = e.size();
                    h.set_size(size);
                    let mut reader = Hashing {
                        inner: (&mut e).take(size),
                        hasher: Sha256::new(),
                        n: 0,
                    };
                    b.append_data(&mut h, &name, &mut reader)
                        .with_context(|| format!("cannot archive {}", what(&rel)))?;
                    if reader.n != size {
                        bail!(
                            "the engine's archive of {} ended {} bytes into a {size}-byte file; nothing is committed, run the backup again",
                            what(&rel),
                            reader.n
                        );
                    }
                    count += 1;
                    bytes += size;
                    let fact = FileFact {
                        sha256: hex::encode(reader.hasher.finalize()),
                        size,
                        mode: format!("{mode:o}"),
                    };
                    record(&mut files, &mut hex_names, &name, fact);
                }
                tar::EntryType::Symlink => {
                    let target = e
                        .link_name()?
                        .ok_or_else(|| anyhow!("symlink {} without a target in the engine's archive", what(&rel)))?
                        .into_owned();
                    h.set_size(0);
                    b.append_link(&mut h, &name, &target)
                        .with_context(|| format!("cannot archive {}", what(&rel)))?;
                }
                tar::EntryType::Link => {
                    // A hard link names an earlier entry of the engine's tar: rename it alike.
                    let target = e
                        .link_name()?
                        .ok_or_else(|| anyhow!("hard link {} without a target in the engine's archive", what(&rel)))?
                        .into_owned();
                    let target_rel = below_root(&target, &mut naming)?;
                    let target_name = join(&root.name, &target_rel);
                    let Some(fact) = recorded(&files, &hex_names, &target_name).cloned() else {
                        bail!(
                            "{} is a hard link to {}, which is not in the backup (excluded?); exclude both or neither",
                            what(&rel),
                            what(&target_rel)
                        );
                    };
                    h.set_size(0);
                    b.append_link(&mut h, &name, &target_name)
                        .with_context(|| format!("cannot archive {}", what(&rel)))?;
                    count += 1;
                    bytes += fact.size;
                    record(&mut files, &mut hex_names, &name, fact);
                }
                _ => {
                    written.remove(&name);
                    tracing::warn!(path = %what(&rel), "skipping a socket, fifo or device");
                }
            }
        }
        // The rest of the stream (end-of-archive padding) to its end: a connection that broke
        // after the last entry is an error too.
        std::io::copy(&mut archive.into_inner(), &mut std::io::sink())
            .with_context(|| format!("cannot read the engine's archive of {} to its end", root.path))?;
    }
    let mut out = b.into_inner().context("cannot finish the archive")?;
    out.flush()?;
    drop(out); // closes the pipe: EOF for the pipeline
    Ok(TarStats {
        file_count: count,
        file_bytes: bytes,
        files: Some(files),
        files_hex_names: (!hex_names.is_empty()).then_some(hex_names),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_are_named_like_the_host_source_and_overlaps_dropped() {
        let r = roots(
            &[
                PathBuf::from("/data/caddy"),
                PathBuf::from("/config"),
                PathBuf::from("/data"),
                PathBuf::from("/config"),
            ],
            None,
        );
        let got: Vec<(&str, &Path, &Path)> = r
            .iter()
            .map(|r| (r.path.as_str(), r.name.as_path(), r.shown.as_path()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/config", Path::new("config"), Path::new("/config")),
                ("/data", Path::new("data"), Path::new("/data")),
            ]
        );
        let r = roots(&[], Some("/srv/v"));
        assert_eq!(
            r,
            vec![Root {
                path: "/srv/v".into(),
                name: PathBuf::new(),
                shown: PathBuf::new()
            }]
        );
        let r = roots(&[PathBuf::from("caddy")], Some("/srv/v"));
        assert_eq!(r[0].path, "/srv/v/caddy");
        assert_eq!(r[0].name, Path::new("caddy"));
    }

    #[test]
    fn hostile_engine_names_are_refused() {
        let mut docker = None;
        assert_eq!(below_root(Path::new("data"), &mut docker).unwrap(), Path::new(""));
        assert_eq!(
            below_root(Path::new("data/a/b"), &mut docker).unwrap(),
            Path::new("a/b")
        );
        assert!(below_root(Path::new("data/../../etc/passwd"), &mut docker).is_err());
        assert!(below_root(Path::new("/etc/passwd"), &mut docker).is_err());
        // podman, reading a volume's mount point.
        let mut podman = None;
        assert_eq!(below_root(Path::new("/"), &mut podman).unwrap(), Path::new(""));
        assert_eq!(below_root(Path::new("/a/f"), &mut podman).unwrap(), Path::new("a/f"));
        assert!(below_root(Path::new("/../x"), &mut podman).is_err());
        assert!(below_root(Path::new("a/f"), &mut podman).is_err());
    }

    /// A tar shaped like the engine's archive of `/data`.
    fn engine_tar(extra: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |name: &str, kind: tar::EntryType, data: &[u8], link: Option<&str>, mode: u32| {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_size(data.len() as u64);
            h.set_mtime(1_700_000_000);
            // The name written as is (the tar crate refuses to write `..`, a hostile engine would).
            h.as_mut_bytes()[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            h.set_cksum();
            b.append(&h, data).unwrap();
        };
        add("data", tar::EntryType::Directory, b"", None, 0o755);
        add("data/key", tar::EntryType::Regular, b"secret", None, 0o600);
        add("data/x.log", tar::EntryType::Regular, b"log", None, 0o644);
        add("data/cache", tar::EntryType::Directory, b"", None, 0o755);
        add("data/cache/blob", tar::EntryType::Regular, b"blob", None, 0o644);
        add("data/key2", tar::EntryType::Link, b"", Some("data/key"), 0o600);
        add("data/cur", tar::EntryType::Symlink, b"", Some("key"), 0o777);
        add("data/fifo", tar::EntryType::Fifo, b"", None, 0o644);
        for (name, kind, data, link) in extra {
            add(name, *kind, data, *link, 0o644);
        }
        b.into_inner().unwrap()
    }

    fn run(tar: Vec<u8>, exclude: &[&str]) -> Result<(TarStats, Vec<u8>)> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let exclude = crate::tarball::globs(&exclude.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let roots = roots(&[PathBuf::from("/srv/data")], None);
        let handle = rt.handle().clone();
        rt.block_on(async move {
            tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                let first: TreeReader = Box::pin(std::io::Cursor::new(tar));
                let stats = rewrite(&roots, &exclude, first, |_| bail!("one root only"), &handle, &mut out)?;
                Ok((stats, out))
            })
            .await
            .unwrap()
        })
    }

    #[test]
    fn the_engines_tar_is_renamed_filtered_and_hashed() {
        let (stats, out) = run(engine_tar(&[]), &["**/*.log", "/srv/data/cache"]).unwrap();
        let mut names = Vec::new();
        for e in tar::Archive::new(&out[..]).entries().unwrap() {
            let e = e.unwrap();
            let link = e.link_name().unwrap().map(|l| l.display().to_string());
            names.push((e.path().unwrap().display().to_string(), link));
        }
        assert_eq!(
            names,
            vec![
                ("srv/data".to_string(), None),
                ("srv/data/key".to_string(), None),
                ("srv/data/key2".to_string(), Some("srv/data/key".to_string())),
                ("srv/data/cur".to_string(), Some("key".to_string())),
            ]
        );
        assert_eq!((stats.file_count, stats.file_bytes), (2, 12));
        let files = stats.files.unwrap();
        assert_eq!(files["srv/data/key"].mode, "600");
        assert_eq!(files["srv/data/key"].sha256, hex::encode(Sha256::digest(b"secret")));
        assert_eq!(files["srv/data/key2"], files["srv/data/key"]);
    }

    #[test]
    fn hostile_names_and_links_to_excluded_files_fail_the_backup() {
        let e = run(
            engine_tar(&[("data/../../etc/x", tar::EntryType::Regular, b"x", None)]),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("refusing it"), "{e}");
        let e = run(engine_tar(&[("/etc/x", tar::EntryType::Regular, b"x", None)]), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("refusing it"), "{e}");
        let e = run(engine_tar(&[]), &["**/key"]).unwrap_err().to_string();
        assert!(e.contains("hard link") && e.contains("exclude both"), "{e}");
    }
}
