//! Files (.env, Caddyfile, compose files): a streamed tar keeping modes, owners and mtimes,
//! with every file's SHA-256 in the manifest.

mod config;
mod dump;
pub mod verify;

pub use config::FilesSource;

/// Facts of a files backup: the archive's counts and every file's SHA-256.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FilesFacts {
    #[serde(flatten)]
    pub tar: crate::tarball::TarStats,
    #[serde(flatten)]
    pub unknown: super::UnknownFacts,
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
    Ok(crate::sources::Restored::Extracted { dir: sub, hint: None })
}
