//! Restore: pick the newest complete backup at or before a time, for every source asked for,
//! say what that point loses, then bring it back into a target. What a kind's backup is
//! restored into, and how, lives with the kind (`sources::restore_into`, `sources::restore_to_dir`);
//! this file plans, fetches and checks.

use crate::catalog::{self, Entry};
use crate::config::Config;
use crate::keys::Identities;
use crate::pipeline;
use crate::sources::{self, nats::StreamState, Target};
use crate::storage::{self, Storage};
use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Request {
    pub at: DateTime<Utc>,
    pub sources: Vec<String>,
    pub storage: Option<String>,
    pub identity: Option<PathBuf>,
    pub target_url: Option<String>,
    pub output_dir: Option<PathBuf>,
    pub clean: bool,
    pub dry_run: bool,
    pub jobs: usize,
    pub no_owner: bool,
}

/// How to load into a running server.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub clean: bool,
    pub jobs: usize,
    pub no_owner: bool,
}

/// One row of the plan: which backup each source comes back from.
pub struct Choice {
    pub entry: Entry,
    pub loss: chrono::Duration,
}

/// What a restore brought back, for `commands/` to report.
pub enum Restored {
    Database {
        source: String,
        backup: String,
        target: String,
    },
    RedisKeys {
        source: String,
        backup: String,
        target: String,
        keys: u64,
    },
    NatsStreams {
        source: String,
        backup: String,
        streams: Vec<(String, StreamState)>,
    },
    /// A decrypted artifact written as a file, with what to do with it.
    Wrote { path: PathBuf, hint: Option<String> },
    /// An archive extracted into a directory, with what to do with it.
    Extracted { dir: PathBuf, hint: Option<String> },
}

pub fn plan(entries: &[Entry], sources: &[String], at: DateTime<Utc>) -> Result<Vec<Choice>> {
    let mut out = Vec::new();
    for s in sources {
        match catalog::pick(entries, s, at) {
            Some(e) => out.push(Choice {
                entry: e.clone(),
                loss: at - e.manifest.started_at,
            }),
            None => {
                let oldest = entries
                    .iter()
                    .filter(|e| &e.manifest.source == s)
                    .map(|e| e.manifest.started_at)
                    .min();
                match oldest {
                    Some(o) => bail!(
                        "no backup of '{s}' at or before {}; the oldest is from {} (pick a later --at)",
                        at.to_rfc3339(),
                        o.to_rfc3339()
                    ),
                    None => bail!("no backup of '{s}' in the selected storages (run `drctl list` to see what exists)"),
                }
            }
        }
    }
    Ok(out)
}

/// A restore whose arguments checked out and whose backups are chosen; nothing touched yet.
pub struct Prepared {
    pub choices: Vec<Choice>,
    storages: Vec<Storage>,
    target: Option<Target>,
}

/// Checks the request and picks the backups. Touches no target.
pub async fn prepare(cfg: &Config, req: &Request) -> Result<Prepared> {
    if req.target_url.is_some() == req.output_dir.is_some() && !req.dry_run {
        bail!("say where to restore: --target-url URL (load into a database) or --output-dir DIR (write the decrypted dump)");
    }
    // Parsed first: a password on the command line is refused before anything else happens.
    let target = req.target_url.as_deref().map(Target::parse).transpose()?;
    let storages = storage::select(&cfg.storages, req.storage.as_deref())?;
    let sources: Vec<String> = if req.sources.is_empty() {
        cfg.sources.iter().map(|s| s.name().to_string()).collect()
    } else {
        for s in &req.sources {
            if cfg.source(s).is_none() && !req.dry_run && req.output_dir.is_none() {
                bail!("no source named '{s}' in the config");
            }
        }
        req.sources.clone()
    };
    if sources.is_empty() {
        bail!("no sources to restore (configure a [[source]] or pass --source NAME)");
    }
    if req.target_url.is_some() && sources.len() > 1 {
        bail!(
            "--target-url restores one database; pass --source NAME (one of: {})",
            sources.join(", ")
        );
    }
    let entries = catalog::list(&storages, None).await?;
    let choices = plan(&entries, &sources, req.at)?;
    Ok(Prepared {
        choices,
        storages,
        target,
    })
}

/// Restores what `prepare` chose into the target or the output directory.
pub async fn execute(cfg: &Config, req: &Request, prepared: &Prepared) -> Result<Vec<Restored>> {
    let identity_path = req
        .identity
        .clone()
        .or_else(|| cfg.encryption.identity_file.clone())
        .ok_or_else(|| {
            anyhow!("restore needs the private identity: pass --identity FILE or set encryption.identity_file")
        })?;
    let identities = crate::keys::load_identities(&identity_path)?;
    let storages = &prepared.storages;
    let mut out = Vec::new();
    if let Some(target) = &prepared.target {
        let opts = Options {
            clean: req.clean,
            jobs: req.jobs,
            no_owner: req.no_owner,
        };
        let entry = &prepared.choices[0].entry;
        out.push(sources::restore_into(target, entry, storages, &identities, opts).await?);
    } else if let Some(dir) = &req.output_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create --output-dir {}", dir.display()))?;
        for c in &prepared.choices {
            out.push(sources::restore_to_dir(dir, &c.entry, storages, &identities).await?);
        }
    }
    Ok(out)
}

/// `pgdump` from `data/app/ID.pgdump.zst.age`.
pub(crate) fn artifact_format(m: &catalog::Manifest) -> String {
    m.objects
        .first()
        .and_then(|o| o.key.rsplit('/').next())
        .and_then(|f| f.split('.').nth(1))
        .unwrap_or("dump")
        .to_string()
}

/// A decrypted, checked artifact in a private scratch directory, on its way into a server;
/// removed when dropped.
pub(crate) struct Fetched {
    pub dir: tempfile::TempDir,
    pub file: PathBuf,
}

/// Fetches and checks a backup into `<scratch>/<name>` (see `fetch_to_file`).
pub(crate) async fn fetch_to_scratch(
    storages: &[Storage],
    entry: &Entry,
    identities: &Identities,
    name: &str,
) -> Result<Fetched> {
    let dir = tempfile::Builder::new().prefix("drctl-restore-").tempdir()?;
    let file = dir.path().join(name);
    fetch_to_file(storages, entry, identities, &file).await?;
    Ok(Fetched { dir, file })
}

/// Fetches, checks and extracts a tar artifact into `dir/<source>`, which must be new or empty.
pub(crate) async fn extract_to_dir(
    dir: &Path,
    entry: &Entry,
    storages: &[Storage],
    identities: &Identities,
) -> Result<PathBuf> {
    let m = &entry.manifest;
    let sub = dir.join(&m.source);
    crate::archive::require_empty(&sub)?;
    let scratch = tempfile::Builder::new().prefix("drctl-restore-").tempdir_in(dir)?;
    let file = scratch.path().join("artifact.tar");
    fetch_to_file(storages, entry, identities, &file).await?;
    let (f, s) = (file.clone(), sub.clone());
    tokio::task::spawn_blocking(move || crate::archive::extract(&f, &s)).await??;
    Ok(sub)
}

/// Decrypts a backup into `dest` through a hidden partial file that is renamed only after
/// every check passed. Tries each storage that holds the backup, in order, and says so.
pub async fn fetch_to_file(storages: &[Storage], entry: &Entry, identities: &Identities, dest: &Path) -> Result<()> {
    let m = &entry.manifest;
    let partial = dest.with_file_name(format!(
        ".{}.partial",
        dest.file_name().and_then(|f| f.to_str()).unwrap_or("restore")
    ));
    let holders: Vec<&Storage> = storages.iter().filter(|s| entry.storages.contains(&s.name)).collect();
    let mut errors = Vec::new();
    for st in holders {
        let result = async {
            let mut f = open_private(&partial).await?;
            pipeline::open_into(st, m, entry.objects_on(&st.name), identities, &mut f).await?;
            f.sync_all().await?;
            Ok::<_, anyhow::Error>(())
        }
        .await;
        match result {
            Ok(()) => {
                tokio::fs::rename(&partial, dest).await?;
                return Ok(());
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&partial).await;
                let wrong_key = matches!(
                    e.downcast_ref::<pipeline::OpenError>(),
                    Some(pipeline::OpenError::WrongIdentity { .. })
                );
                if !wrong_key && errors.is_empty() {
                    tracing::warn!(storage = %st.name, error = %format!("{e:#}"), "restore from this storage failed; trying the next one that holds the backup");
                }
                errors.push(e);
                if wrong_key {
                    break;
                }
            }
        }
    }
    match errors.len() {
        0 => bail!("backup {} of '{}' is on no selected storage", m.id, m.source),
        1 => Err(errors.remove(0)),
        _ => {
            let all: Vec<String> = errors.iter().map(|e| format!("{e:#}")).collect();
            Err(anyhow!("every storage failed:\n  - {}", all.join("\n  - ")))
        }
    }
}

async fn open_private(path: &Path) -> Result<tokio::fs::File> {
    let f = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .await
        .with_context(|| format!("cannot create {}", path.display()))?;
    Ok(f)
}
