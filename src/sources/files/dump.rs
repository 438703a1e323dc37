//! A streamed tar of the configured paths.

use crate::config::FilesSource;
use crate::sources::{Dump, Facts, Finish};
use crate::tarball;
use anyhow::{anyhow, Result};

pub async fn start_dump(src: &FilesSource) -> Result<Dump> {
    let exclude = tarball::globs(&src.exclude).map_err(|e| anyhow!("source '{}': {e}", src.name))?;
    let mut roots = Vec::new();
    for p in &src.paths {
        if std::fs::symlink_metadata(p).is_err() {
            anyhow::bail!(
                "source '{}': {} does not exist (fix paths, or check the volume is mounted)",
                src.name,
                p.display()
            );
        }
        // Archive names are the absolute paths without the leading '/', as GNU tar does:
        // `tar -xf - -C /restore` recreates /restore/srv/app/.env.
        let name = p.to_string_lossy().trim_start_matches('/').to_string();
        roots.push(tarball::Root { path: p.clone(), name });
    }
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
                unknown: Default::default(),
            }))
        })),
    })
}
