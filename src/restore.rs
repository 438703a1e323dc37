//! Restore: pick the newest complete backup at or before a time, for every source asked for,
//! say what that point loses, then bring it back into a target. What a kind's backup is
//! restored into, and how, lives with the kind (`sources::restore_into`, `sources::restore_to_dir`);
//! this file plans, fetches and checks.

use crate::catalog::{self, Entry};
use crate::config::Config;
use crate::sources::{self, Options, Restored, Target};
use crate::storage::{self, Storage};
use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct Request {
    pub at: DateTime<Utc>,
    pub sources: Vec<String>,
    pub storage: Option<String>,
    pub identity: Option<PathBuf>,
    pub target_url: Option<String>,
    /// `--target container:NAME | service:NAME`.
    pub target: Option<String>,
    /// `--compose-project`, with `--target service:NAME`.
    pub compose_project: Option<String>,
    pub output_dir: Option<PathBuf>,
    pub clean: bool,
    pub dry_run: bool,
    pub jobs: usize,
    pub no_owner: bool,
    pub keep_special_bits: bool,
    /// `--scratch-dir`; default `<state_dir>/scratch`.
    pub scratch_dir: Option<PathBuf>,
}

/// One row of the plan: which backup each source comes back from.
pub struct Choice {
    pub entry: Entry,
    pub loss: chrono::Duration,
}

pub fn plan(listing: &catalog::Listing, sources: &[String], at: DateTime<Utc>) -> Result<Vec<Choice>> {
    let entries = &listing.entries;
    let unread = catalog::unread_note(&listing.problems);
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
                        "no backup of '{s}' at or before {}; the oldest is from {} (pick a later --at){unread}",
                        at.to_rfc3339(),
                        o.to_rfc3339()
                    ),
                    None => bail!(
                        "no backup of '{s}' in the selected storages (run `drctl list` to see what exists){unread}"
                    ),
                }
            }
        }
    }
    Ok(out)
}

/// A restore whose arguments checked out and whose backups are chosen; nothing touched yet.
pub struct Prepared {
    pub choices: Vec<Choice>,
    /// Storages or manifests that could not be read: the choice was made without them.
    pub problems: Vec<catalog::Problem>,
    storages: Vec<Storage>,
    target: Option<Target>,
}

/// Checks the request and picks the backups. Touches no target.
pub async fn prepare(cfg: &Config, req: &Request) -> Result<Prepared> {
    let wheres = [req.target_url.is_some(), req.target.is_some(), req.output_dir.is_some()];
    if wheres.iter().filter(|w| **w).count() != 1 && !req.dry_run {
        bail!("say where to restore: --target-url URL (load into a database), --target service:NAME or container:NAME (into the server in that container), or --output-dir DIR (write the decrypted dump)");
    }
    // Parsed first: a password on the command line is refused before anything else happens.
    let target = match (&req.target_url, &req.target) {
        (Some(url), _) => Some(Target::parse(url)?),
        (None, Some(spec)) => Some(Target::container(spec, req.compose_project.clone())?),
        (None, None) => None,
    };
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
    if target.is_some() && sources.len() > 1 {
        let flag = if req.target_url.is_some() {
            "--target-url"
        } else {
            "--target"
        };
        bail!(
            "{flag} restores one source; pass --source NAME (one of: {})",
            sources.join(", ")
        );
    }
    // One storage down or one damaged manifest (of any source) must not stop a restore that
    // the rest can serve; what was not read is reported with the plan.
    let listing = catalog::list(&storages, None).await;
    let mut choices = plan(&listing, &sources, req.at)?;
    // What is restored is the manifest itself, not its copy in an index.
    for c in &mut choices {
        catalog::reload(&storages, &mut c.entry).await?;
        c.loss = req.at - c.entry.manifest.started_at;
    }
    Ok(Prepared {
        choices,
        problems: listing.problems,
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
    // Not /tmp: often a small tmpfs, and a dump decrypted there can fill memory.
    let scratch = req
        .scratch_dir
        .clone()
        .unwrap_or_else(|| cfg.daemon.state_dir().join("scratch"));
    let opts = Options {
        clean: req.clean,
        jobs: req.jobs,
        no_owner: req.no_owner,
        keep_special_bits: req.keep_special_bits,
        scratch_dir: &scratch,
    };
    if let Some(target) = &prepared.target {
        let entry = &prepared.choices[0].entry;
        out.push(sources::restore_into(target, entry, storages, &identities, opts).await?);
    } else if let Some(dir) = &req.output_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create --output-dir {}", dir.display()))?;
        for c in &prepared.choices {
            out.push(sources::restore_to_dir(dir, &c.entry, storages, &identities, opts).await?);
        }
    }
    Ok(out)
}
