//! Writes that survive a power cut on local filesystems. A rename is atomic but lives in the
//! directory: until the directory itself is fsynced, a crash can bring back the old name (or
//! no name at all, for a directory created just before). So: fsync the file, rename, then
//! fsync every directory from the file's parent up to the root that already existed.
//!
//! Used by the fs storage (OpenDAL's fs backend fsyncs the temp file before its rename, but
//! never the directory) and by the local state dir.

use std::io;
use std::path::{Path, PathBuf};

/// fsyncs `dir`.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(test)]
    seam::record(dir);
    std::fs::File::open(dir)?.sync_all()
}

/// fsyncs the directories holding `key` below `root`, innermost first, `root` included (a
/// directory created for `key` is an entry in its parent). `key` uses '/' like storage keys.
pub fn sync_key_dirs(root: &Path, key: &str) -> io::Result<()> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut parts: Vec<&str> = key.split('/').filter(|p| !p.is_empty()).collect();
    parts.pop(); // the file itself
    while !parts.is_empty() {
        dirs.push(parts.iter().fold(root.to_path_buf(), |p, s| p.join(s)));
        parts.pop();
    }
    dirs.push(root.to_path_buf());
    for d in dirs {
        match sync_dir(&d) {
            Ok(()) => {}
            // Deleted meanwhile (a delete of the last object may remove the directory).
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically and durably: a temp file beside it, fsynced, renamed
/// over `path`, and the directory fsynced.
pub fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    sync_dir(dir)
}

/// `create_dir_all`, with each directory it created made durable in its parent.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.exists() {
        missing.push(d.to_path_buf());
        match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => d = p,
            _ => break,
        }
    }
    std::fs::create_dir_all(dir)?;
    for m in missing.iter().rev() {
        if let Some(p) = m.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(p)?;
        }
    }
    Ok(())
}

/// Test seam: which directories were fsynced, so tests can check a commit path calls it
/// (nothing short of a power cut can observe an fsync itself).
#[cfg(test)]
pub mod seam {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    static SYNCED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

    pub(super) fn record(dir: &Path) {
        SYNCED.lock().unwrap().push(dir.to_path_buf());
    }

    /// Whether `dir` was fsynced (by any test in this process: use unique temp dirs).
    pub fn synced(dir: &Path) -> bool {
        SYNCED.lock().unwrap().iter().any(|d| d == dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_syncs_its_directories_up_to_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        std::fs::create_dir_all(root.join("data/pg")).unwrap();
        sync_key_dirs(root, "data/pg/x.dump.age").unwrap();
        assert!(seam::synced(&root.join("data/pg")));
        assert!(seam::synced(&root.join("data")));
        assert!(seam::synced(root));
        assert!(!seam::synced(&root.join("data/pg/x.dump.age")));
    }

    #[test]
    fn write_file_replaces_and_syncs_the_directory() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("a/b");
        create_dir_all(&dir).unwrap();
        assert!(
            seam::synced(&t.path().join("a")),
            "new dir a made durable in its parent"
        );
        assert!(seam::synced(t.path()));
        let f = dir.join("s.json");
        write_file(&f, b"one").unwrap();
        write_file(&f, b"two").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        assert!(!dir.join("s.json.tmp").exists());
        assert!(seam::synced(&dir));
    }
}
