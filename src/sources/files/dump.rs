//! A streamed tar of the configured paths.
//!
//! Each file must be in the archive once, under its exact name, or the artifact cannot be
//! restored (`File exists`). So the listed paths are first put in the form the archive records
//! (absolute, no `.`, `..` or doubled `/`, the leading `/` dropped, as GNU tar does), then a
//! path listed twice, or inside another listed directory that is archived whole, is dropped: the
//! directory's walk already holds it. Names are kept as bytes, never converted to text.

use super::{FilesPlace, FilesSource};
use crate::sources::{Dump, Facts, Finish};
use crate::tarball;
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Component, Path, PathBuf};

/// `p` as the archive records it: absolute, lexically clean, `..` resolved on disk (through the
/// parent directory, so a listed symlink stays a symlink).
fn archive_path(p: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(p)?;
    if !abs.components().any(|c| c == Component::ParentDir) {
        // components() already drops `.` and doubled or trailing `/`.
        return Ok(abs.components().collect());
    }
    Ok(match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(file)) if !abs.ends_with("..") => std::fs::canonicalize(parent)?.join(file),
        _ => std::fs::canonicalize(&abs)?,
    })
}

/// The listed paths, in archive form, without those another one already covers.
fn roots(src: &FilesSource, paths: &[PathBuf]) -> Result<Vec<tarball::Root>> {
    let mut listed = Vec::new();
    for p in paths {
        if std::fs::symlink_metadata(p).is_err() {
            bail!(
                "source '{}': {} does not exist (fix paths, or check the volume is mounted)",
                src.name,
                p.display()
            );
        }
        let path = archive_path(p).with_context(|| format!("source '{}': cannot resolve {}", src.name, p.display()))?;
        listed.push(path);
    }
    // Component-wise order puts a directory right before everything below it.
    listed.sort();
    listed.dedup();
    let mut kept: Vec<PathBuf> = Vec::new();
    for path in listed {
        // The walk of a listed directory (a symlink to one is followed, as the walk does)
        // archives everything below it.
        let Some(k) = kept.iter().find(|k| path.starts_with(k) && k.is_dir()) else {
            kept.push(path);
            continue;
        };
        // …but it does not follow links below it: a path reached through one would be written
        // through an archived link, which restore refuses.
        if let Some(link) = path.ancestors().skip(1).take_while(|a| a != k).find(|a| a.is_symlink()) {
            bail!(
                "source '{}': {} is reached through the symlink {}, which is archived as a link with {} (list the link's target instead)",
                src.name,
                path.display(),
                link.display(),
                k.display()
            );
        }
    }
    Ok(kept
        .into_iter()
        .map(|path| {
            let name = path
                .components()
                .filter(|c| matches!(c, Component::Normal(_)))
                .collect();
            tarball::Root { path, name }
        })
        .collect())
}

/// Starts the archive of the source's paths, wherever they are.
pub async fn start_dump(src: &FilesSource) -> Result<Dump> {
    match &src.place {
        FilesPlace::Host { paths } => start_host(src, paths),
        FilesPlace::Container { .. } | FilesPlace::Volume { .. } => super::container::start_dump(src).await,
    }
}

fn start_host(src: &FilesSource, paths: &[PathBuf]) -> Result<Dump> {
    let exclude = tarball::globs(&src.exclude).map_err(|e| anyhow!("source '{}': {e}", src.name))?;
    let roots = roots(src, paths)?;
    let (reader, task) = tarball::start(tarball::Spec {
        roots,
        exclude,
        hash_files: true,
    });
    Ok(Dump {
        reader: Box::new(reader),
        format: "tar",
        finish: Finish::Task(tokio::spawn(async move {
            let tar = task.await.map_err(|e| anyhow!("archive task failed: {e}"))??;
            Ok(Facts::Files(super::FilesFacts {
                tar,
                origin: None,
                unknown: Default::default(),
            }))
        })),
    })
}
