//! Extracting a tar artifact (files, NATS store) under a directory, refusing any entry that
//! would land outside it: absolute paths, `..` components, and symlinks or hard links that
//! point out — also through other links of the same archive (`a/l -> ..`, then `b -> a/l/..`).
//! The whole archive is checked before anything is written. setuid and setgid bits are
//! stripped unless the caller keeps them on purpose.
//!
//! Names are bytes (an `OsStr`), never converted to text, so `a\xff` and `a\xfe` come back as
//! two files. drctl writes each name once; archives written before it deduplicated listed
//! paths hold some files twice (`paths = ["/x/app", "/x/app/.env"]`): a file that appears again
//! is skipped, with a warning, instead of failing the restore with `File exists`. A link that
//! appears twice is refused: the checks above must see the links that will be on disk.

use anyhow::{bail, Context, Result};
use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};

/// Where `p` (relative to the restore directory) really is once the archive's own symlinks
/// (`links`: link path → target) are followed, as they will be on disk; None if it leaves the
/// directory or the links loop.
fn resolve(p: &Path, links: &HashMap<PathBuf, PathBuf>, depth: u32) -> Option<PathBuf> {
    if depth > 40 {
        return None;
    }
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(x) => {
                out.push(x);
                if let Some(target) = links.get(&out) {
                    if target.is_absolute() {
                        return None;
                    }
                    let base = out.parent().map(Path::to_path_buf).unwrap_or_default();
                    out = resolve(&base.join(target), links, depth + 1)?;
                }
            }
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Checks one entry against the links seen before it in the archive, then records it if it
/// is a symlink.
fn check_entry(path: &Path, link: Option<&Path>, hard: bool, links: &mut HashMap<PathBuf, PathBuf>) -> Result<()> {
    let outside = || {
        anyhow::anyhow!(
            "refusing tar entry '{}': it would be written outside the restore directory (absolute path, '..', or through a link)",
            path.display()
        )
    };
    let inside = resolve(path, &HashMap::new(), 0).ok_or_else(outside)?;
    // Its directory, with the archive's links followed, must still be inside.
    let parent = inside.parent().map(Path::to_path_buf).unwrap_or_default();
    resolve(&parent, links, 0).ok_or_else(outside)?;
    if let Some(target) = link {
        // Symlink targets are relative to the link's directory; hard link targets to the root.
        let base = if hard { PathBuf::new() } else { parent };
        if target.is_absolute() || resolve(&base.join(target), links, 0).is_none() {
            bail!(
                "refusing tar entry '{}': it links to '{}', outside the restore directory",
                path.display(),
                target.display()
            );
        }
        if !hard {
            links.insert(inside, target.to_path_buf());
        }
    }
    Ok(())
}

/// Checks every entry of the archive at `file`, then extracts it into `dest`. setuid and setgid
/// bits are kept only with `keep_special_bits`.
pub fn extract(file: &Path, dest: &Path, keep_special_bits: bool) -> Result<()> {
    let open = || -> Result<tar::Archive<std::fs::File>> {
        Ok(tar::Archive::new(
            std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
        ))
    };
    let mut a = open()?;
    let mut links = HashMap::new();
    // Every name seen, and whether it was a link.
    let mut seen: HashMap<PathBuf, bool> = HashMap::new();
    for e in a.entries()? {
        let e = e?;
        let path = e.path()?.into_owned();
        let kind = e.header().entry_type();
        let link = e.link_name()?.map(|l| l.into_owned());
        check_entry(&path, link.as_deref(), kind == tar::EntryType::Link, &mut links)?;
        let is_link = link.is_some();
        if let Some(was_link) = seen.insert(same_name(&path), is_link) {
            if is_link || was_link {
                bail!(
                    "refusing tar entry '{}': it appears twice in the archive, and as a link at least once",
                    path.display()
                );
            }
        }
    }
    std::fs::create_dir_all(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let mut a = open()?;
    a.set_preserve_permissions(true);
    a.set_preserve_mtime(true);
    a.set_overwrite(false);
    a.set_preserve_ownerships(crate::is_root());
    if !keep_special_bits {
        a.set_mask(0o6000);
    }
    let mut files_written = HashSet::new();
    for e in a.entries()? {
        let mut e = e?;
        let path = e.path()?.into_owned();
        if e.header().entry_type().is_file() && !files_written.insert(same_name(&path)) {
            tracing::warn!(
                entry = %path.display(),
                "skipping a second copy of a file in the archive (written before drctl archived each listed path once); the first copy is restored"
            );
            continue;
        }
        if !e
            .unpack_in(dest)
            .with_context(|| format!("cannot extract {}", path.display()))?
        {
            bail!(
                "refusing tar entry '{}': it would be written outside the restore directory",
                path.display()
            );
        }
    }
    Ok(())
}

/// The name an entry is written to: `a/./b/` and `a/b` are one file.
fn same_name(p: &Path) -> PathBuf {
    p.components().filter(|c| *c != Component::CurDir).collect()
}

/// A restore directory must be new or empty: restoring over existing files hides what came
/// from the backup.
pub fn require_empty(dir: &Path) -> Result<()> {
    if let Ok(mut rd) = std::fs::read_dir(dir) {
        if rd.next().is_some() {
            bail!("{} is not empty; restore into a new or empty directory", dir.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(path: &str, link: Option<&str>, hard: bool, links: &mut HashMap<PathBuf, PathBuf>) -> Result<()> {
        check_entry(Path::new(path), link.map(Path::new), hard, links)
    }

    #[test]
    fn escapes_are_refused() {
        let l = &mut HashMap::new();
        assert!(check("srv/app/.env", None, false, l).is_ok());
        assert!(check("../evil", None, false, l).is_err());
        assert!(check("a/../../evil", None, false, l).is_err());
        assert!(check("/etc/passwd", None, false, l).is_err());
        assert!(check("a/link", Some("../b"), false, l).is_ok());
        assert!(check("a/link", Some("../../etc"), false, l).is_err());
        assert!(check("a/link", Some("/etc/shadow"), false, l).is_err());
        assert!(check("a/hard", Some("../x"), true, l).is_err());
    }

    #[test]
    fn escapes_through_the_archives_own_links_are_refused() {
        // `a/l -> ..` points at the restore directory itself: fine on its own. `b -> a/l/..`
        // looks like `a` lexically, but on disk a/l/.. is the restore directory's parent.
        let l = &mut HashMap::new();
        assert!(check("a/", None, false, l).is_ok());
        assert!(check("a/l", Some(".."), false, l).is_ok());
        let e = check("b", Some("a/l/.."), false, l).unwrap_err().to_string();
        assert!(e.contains("links to 'a/l/..'"), "{e}");
        // Writing through a link that leads out is refused too.
        let l = &mut HashMap::new();
        assert!(check("up", Some("x/../.."), false, l).is_err());
        assert!(check("d", Some("."), false, l).is_ok());
        assert!(check("d/d/d/file", None, false, l).is_ok());
        assert!(check("inside/ok", Some("../srv/app"), false, l).is_ok());
    }

    fn tar_of(entries: &[(&[u8], Option<&str>, &[u8])]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        let mut b = tar::Builder::new(f.reopen().unwrap());
        for (name, link, body) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            match link {
                Some(target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    b.append_link(&mut h, std::ffi::OsStr::from_bytes(name), target)
                        .unwrap();
                }
                None => {
                    h.set_size(body.len() as u64);
                    b.append_data(&mut h, std::ffi::OsStr::from_bytes(name), *body).unwrap();
                }
            }
        }
        b.finish().unwrap();
        f
    }

    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn names_that_are_not_utf8_come_back_byte_exact() {
        let t = tar_of(&[(b"d/a\xff", None, b"1"), (b"d/a\xfe", None, b"2")]);
        let dest = tempfile::tempdir().unwrap();
        extract(t.path(), dest.path(), false).unwrap();
        let read = |n: &[u8]| std::fs::read(dest.path().join(std::ffi::OsStr::from_bytes(n))).unwrap();
        assert_eq!(read(b"d/a\xff"), b"1");
        assert_eq!(read(b"d/a\xfe"), b"2");
    }

    #[test]
    fn an_old_archive_with_a_file_twice_restores_and_a_link_twice_is_refused() {
        // What `paths = ["/x/app", "/x/app/.env"]` wrote before each path was archived once.
        let t = tar_of(&[(b"x/app/.env", None, b"A=1"), (b"x/app/./.env", None, b"A=1")]);
        let dest = tempfile::tempdir().unwrap();
        extract(t.path(), dest.path(), false).unwrap();
        assert_eq!(std::fs::read(dest.path().join("x/app/.env")).unwrap(), b"A=1");
        let t = tar_of(&[(b"l", Some("d"), b""), (b"l", Some("e"), b"")]);
        let e = extract(t.path(), tempfile::tempdir().unwrap().path(), false).unwrap_err();
        assert!(e.to_string().contains("appears twice"), "{e}");
    }
}
