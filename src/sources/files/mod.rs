//! Files (.env, Caddyfile, compose files, a container's data, a named volume): a streamed tar
//! keeping modes, owners and mtimes, with every file's SHA-256 in the manifest.
//!
//! On the host the tar is written from the paths (`dump.rs`); inside a container or a named
//! volume it is re-written from the engine's archive endpoint as it streams (`container.rs`;
//! a volume is read through a container that mounts it, see `crate::place::VolumeReader`).
//! Both name entries by their path from the root they came from, without the leading `/`.

mod config;
mod container;
mod dump;
pub mod verify;

pub use config::{FilesPlace, FilesSource};

/// Facts of a files backup: the archive's counts and every file's SHA-256.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FilesFacts {
    #[serde(flatten)]
    pub tar: crate::tarball::TarStats,
    /// Where the files were read when not on the host (absent for host paths).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    #[serde(flatten)]
    pub unknown: super::UnknownFacts,
}

/// A container or a volume, as it was called when the backup was taken.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "in", rename_all = "lowercase")]
pub enum Origin {
    /// Entries are paths inside the container, from its `/`.
    Container { container: String },
    /// Entries are paths from the volume's root.
    Volume { volume: String },
}

pub use dump::start_dump;

/// `--output-dir`: the files under `DIR/<source>/`, with their archive paths.
pub async fn restore_to_dir(
    dir: &std::path::Path,
    entry: &crate::catalog::Entry,
    storages: &[crate::storage::Storage],
    identities: &crate::keys::Identities,
    opts: crate::sources::Options<'_>,
) -> anyhow::Result<crate::sources::Restored> {
    let sub = crate::fetch::extract_to_dir(dir, entry, storages, identities, opts.keep_special_bits).await?;
    let origin = match &entry.manifest.facts {
        crate::sources::Facts::Files(f) => f.origin.as_ref(),
        _ => None,
    };
    let hint = origin.map(|o| put_back_hint(o, &sub));
    Ok(crate::sources::Restored::Extracted { dir: sub, hint })
}

/// How to put files restored from a container or volume back where they were: drctl restores
/// files to a directory only; `docker cp` (which also works on a stopped container) copies them in.
fn put_back_hint(origin: &Origin, sub: &std::path::Path) -> String {
    let d = sub.display();
    match origin {
        Origin::Container { container } => format!(
            "the paths are those inside container '{container}' (from its /); to put one back, e.g. /data: `docker cp {d}/data/. {container}:/data` (works with the container stopped; stop it first for a consistent copy)"
        ),
        Origin::Volume { volume } => format!(
            "these are the files of volume '{volume}', from its root; to put them back, stop the containers using it, then copy them in through one that mounts it: `docker cp {d}/. <container>:<mount point>` (docker cp works on a stopped container)"
        ),
    }
}
