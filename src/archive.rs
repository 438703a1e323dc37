//! Extracting a tar artifact (files, NATS store) under a directory, refusing any entry that
//! would land outside it: absolute paths, `..` components, and symlinks or hard links that
//! point out. The whole archive is checked before anything is written.

use anyhow::{bail, Context, Result};
use std::path::{Component, Path, PathBuf};

/// `p` with `.` and `..` resolved lexically; None if it climbs above its start.
fn normalize(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(x) => out.push(x),
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

fn check_entry(path: &Path, link: Option<&Path>, hard: bool) -> Result<()> {
    let Some(inside) = normalize(path) else {
        bail!(
            "refusing tar entry '{}': it would be written outside the restore directory (absolute path or '..')",
            path.display()
        );
    };
    if let Some(target) = link {
        // Symlink targets are relative to the link's directory; hard link targets to the root.
        let base = if hard {
            PathBuf::new()
        } else {
            inside.parent().map(Path::to_path_buf).unwrap_or_default()
        };
        if target.is_absolute() || normalize(&base.join(target)).is_none() {
            bail!(
                "refusing tar entry '{}': it links to '{}', outside the restore directory",
                path.display(),
                target.display()
            );
        }
    }
    Ok(())
}

/// Checks every entry of the archive at `file`, then extracts it into `dest`.
pub fn extract(file: &Path, dest: &Path) -> Result<()> {
    let open = || -> Result<tar::Archive<std::fs::File>> {
        Ok(tar::Archive::new(
            std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
        ))
    };
    let mut a = open()?;
    for e in a.entries()? {
        let e = e?;
        let path = e.path()?.into_owned();
        let kind = e.header().entry_type();
        let link = e.link_name()?.map(|l| l.into_owned());
        check_entry(&path, link.as_deref(), kind == tar::EntryType::Link)?;
    }
    std::fs::create_dir_all(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let mut a = open()?;
    a.set_preserve_permissions(true);
    a.set_preserve_mtime(true);
    a.set_overwrite(false);
    a.set_preserve_ownerships(crate::is_root());
    for e in a.entries()? {
        let mut e = e?;
        let path = e.path()?.into_owned();
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

    #[test]
    fn escapes_are_refused() {
        assert!(check_entry(Path::new("srv/app/.env"), None, false).is_ok());
        assert!(check_entry(Path::new("../evil"), None, false).is_err());
        assert!(check_entry(Path::new("a/../../evil"), None, false).is_err());
        assert!(check_entry(Path::new("/etc/passwd"), None, false).is_err());
        assert!(check_entry(Path::new("a/link"), Some(Path::new("../b")), false).is_ok());
        assert!(check_entry(Path::new("a/link"), Some(Path::new("../../etc")), false).is_err());
        assert!(check_entry(Path::new("a/link"), Some(Path::new("/etc/shadow")), false).is_err());
        assert!(check_entry(Path::new("a/hard"), Some(Path::new("../x")), true).is_err());
    }
}
