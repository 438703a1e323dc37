//! An in-process, streamed tar of directories (files and NATS sources): no `tar` child process
//! and no temp file. The `tar` crate writes on a blocking thread into an in-memory pipe that
//! the pipeline reads; modes, owners and mtimes are kept (GNU tar restores them).

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use tokio::task::JoinHandle;
use tokio_util::io::SyncIoBridge;

pub struct Root {
    /// Where it is on disk.
    pub path: PathBuf,
    /// Its name inside the archive (relative; empty: its contents at the top). Kept as bytes
    /// (an `OsStr`), so a name that is not UTF-8 is archived exactly as it is on disk.
    pub name: PathBuf,
}

pub struct Spec {
    pub roots: Vec<Root>,
    pub exclude: globset::GlobSet,
    /// Record per-file SHA-256, size and mode in the facts.
    pub hash_files: bool,
}

/// Reads through to a hasher (also used by the files source's re-archiving of an engine's tar).
pub(crate) struct Hashing<R> {
    pub(crate) inner: R,
    pub(crate) hasher: Sha256,
    pub(crate) n: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
}

/// What a finished archive holds. Serialized into the manifest's facts under these names.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TarStats {
    #[serde(default)]
    pub file_count: u64,
    #[serde(default)]
    pub file_bytes: u64,
    /// Per-file SHA-256, size and mode, by archive name (files sources only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<BTreeMap<String, FileFact>>,
    /// The same for files whose archive name is not UTF-8, by the hex of the name's bytes (a
    /// JSON key is text, and a lossy conversion would merge `a\xff` and `a\xfe`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_hex_names: Option<BTreeMap<String, FileFact>>,
}

impl TarStats {
    /// Every recorded file: (archive name, fact), names as bytes.
    pub fn file_facts(&self) -> Vec<(PathBuf, &FileFact)> {
        let utf8 = self.files.iter().flatten().map(|(n, f)| (PathBuf::from(n), f));
        let raw = self.files_hex_names.iter().flatten().filter_map(|(h, f)| {
            let bytes = hex::decode(h).ok()?;
            Some((PathBuf::from(std::ffi::OsStr::from_bytes(&bytes)), f))
        });
        utf8.chain(raw).collect()
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FileFact {
    pub sha256: String,
    pub size: u64,
    /// Octal permission bits, e.g. "644".
    pub mode: String,
}

pub fn start(spec: Spec) -> (tokio::io::DuplexStream, JoinHandle<Result<TarStats>>) {
    let (w, r) = tokio::io::duplex(1024 * 1024);
    let handle = tokio::task::spawn_blocking(move || write_tar(spec, SyncIoBridge::new(w)));
    (r, handle)
}

fn write_tar<W: std::io::Write>(spec: Spec, out: W) -> Result<TarStats> {
    let mut b = tar::Builder::new(out);
    b.mode(tar::HeaderMode::Complete);
    b.follow_symlinks(false);
    let (mut files, mut files_hex_names) = (BTreeMap::new(), BTreeMap::new());
    let (mut count, mut bytes) = (0u64, 0u64);
    // Names already written. A second entry of one name makes an archive that cannot be
    // extracted (`File exists`), so it is refused here, while the backup can still fail.
    let mut written: HashSet<PathBuf> = HashSet::new();
    let mut once = |name: &Path, path: &Path| -> Result<()> {
        if !written.insert(name.to_path_buf()) {
            bail!(
                "cannot archive {}: '{}' is already in the archive (a path listed twice, or inside another listed path); an archive with two entries of one name cannot be restored",
                path.display(),
                name.display()
            );
        }
        Ok(())
    };
    for root in &spec.roots {
        let meta = std::fs::symlink_metadata(&root.path).with_context(|| {
            format!(
                "cannot read {} (check the path and that drctl may read it)",
                root.path.display()
            )
        })?;
        let walker = walkdir::WalkDir::new(&root.path)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| !spec.exclude.is_match(e.path()));
        for entry in walker {
            let entry = entry.map_err(|e| anyhow!("cannot walk {}: {e}", root.path.display()))?;
            let rel = entry.path().strip_prefix(&root.path).expect("below root");
            let name = if rel.as_os_str().is_empty() {
                root.name.clone()
            } else {
                root.name.join(rel)
            };
            if name.as_os_str().is_empty() {
                continue; // the root itself of an unnamed root
            }
            once(&name, entry.path())?;
            let ft = entry.file_type();
            if ft.is_dir() {
                b.append_dir(&name, entry.path())
                    .with_context(|| format!("cannot archive {}", entry.path().display()))?;
            } else if ft.is_symlink() {
                b.append_path_with_name(entry.path(), &name)
                    .with_context(|| format!("cannot archive {}", entry.path().display()))?;
            } else if ft.is_file() {
                let m = entry
                    .metadata()
                    .with_context(|| format!("cannot stat {}", entry.path().display()))?;
                let f = std::fs::File::open(entry.path())
                    .with_context(|| format!("cannot open {} (is it readable by drctl?)", entry.path().display()))?;
                let mut header = tar::Header::new_gnu();
                header.set_metadata_in_mode(&m, tar::HeaderMode::Complete);
                let size = m.len();
                header.set_size(size);
                // Read exactly the size the header promises: a file that grows would corrupt
                // the archive, one that shrinks is caught below.
                let mut reader = Hashing {
                    inner: f.take(size),
                    hasher: Sha256::new(),
                    n: 0,
                };
                b.append_data(&mut header, &name, &mut reader)
                    .with_context(|| format!("cannot archive {}", entry.path().display()))?;
                if reader.n != size {
                    bail!(
                        "{} shrank while it was read ({} of {size} bytes); run the backup again",
                        entry.path().display(),
                        reader.n
                    );
                }
                count += 1;
                bytes += size;
                if spec.hash_files {
                    use std::os::unix::fs::PermissionsExt;
                    let fact = FileFact {
                        sha256: hex::encode(reader.hasher.finalize()),
                        size,
                        mode: format!("{:o}", m.permissions().mode() & 0o7777),
                    };
                    match name.to_str() {
                        Some(utf8) => files.insert(utf8.to_string(), fact),
                        None => files_hex_names.insert(hex::encode(name.as_os_str().as_bytes()), fact),
                    };
                }
            } else {
                tracing::warn!(path = %entry.path().display(), "skipping a socket, fifo or device");
            }
        }
        let _ = meta;
    }
    let mut out = b.into_inner().context("cannot finish the archive")?;
    out.flush()?;
    drop(out); // closes the pipe: EOF for the pipeline
    Ok(TarStats {
        file_count: count,
        file_bytes: bytes,
        files: spec.hash_files.then_some(files),
        files_hex_names: (!files_hex_names.is_empty()).then_some(files_hex_names),
    })
}

pub fn globs(patterns: &[String]) -> Result<globset::GlobSet, String> {
    let mut b = globset::GlobSetBuilder::new();
    for p in patterns {
        b.add(globset::Glob::new(p).map_err(|e| format!("exclude '{p}': {e}"))?);
    }
    b.build().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(roots: Vec<Root>) -> Spec {
        Spec {
            roots,
            exclude: globs(&[]).unwrap(),
            hash_files: true,
        }
    }

    #[test]
    fn a_second_entry_of_one_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".env"), "x").unwrap();
        let root = || Root {
            path: dir.path().to_path_buf(),
            name: PathBuf::from("srv/app"),
        };
        let e = write_tar(spec(vec![root(), root()]), Vec::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("'srv/app' is already in the archive"), "{e}");
        let file = Root {
            path: dir.path().join(".env"),
            name: PathBuf::from("srv/app/.env"),
        };
        let e = write_tar(spec(vec![root(), file]), Vec::new()).unwrap_err().to_string();
        assert!(e.contains("'srv/app/.env' is already in the archive"), "{e}");
    }

    #[test]
    fn names_that_are_not_utf8_are_archived_byte_exact() {
        let dir = tempfile::tempdir().unwrap();
        for n in [&b"a\xff"[..], b"a\xfe"] {
            std::fs::write(dir.path().join(std::ffi::OsStr::from_bytes(n)), n).unwrap();
        }
        let mut out = Vec::new();
        let stats = write_tar(
            spec(vec![Root {
                path: dir.path().to_path_buf(),
                name: PathBuf::new(),
            }]),
            &mut out,
        )
        .unwrap();
        let mut names: Vec<Vec<u8>> = tar::Archive::new(&out[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path_bytes().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec![b"a\xfe".to_vec(), b"a\xff".to_vec()]);
        let facts = stats.file_facts();
        assert_eq!(facts.len(), 2);
        assert!(facts
            .iter()
            .any(|(n, f)| n.as_os_str().as_bytes() == b"a\xff" && f.size == 2));
    }
}
