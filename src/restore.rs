//! Restore: pick the newest complete backup at or before a time, for every source asked for,
//! say what that point loses, then bring it back into a target.

use crate::archive;
use crate::catalog::{self, Entry};
use crate::config::Config;
use crate::keys::Identities;
use crate::pipeline;
use crate::sources::postgres::restore as postgres;
use crate::sources::redis::restore as redis;
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

/// One row of the plan: which backup each source comes back from.
pub struct Choice<'a> {
    pub entry: &'a Entry,
    pub loss: chrono::Duration,
}

pub fn plan<'a>(entries: &'a [Entry], sources: &[String], at: DateTime<Utc>) -> Result<Vec<Choice<'a>>> {
    let mut out = Vec::new();
    for s in sources {
        match catalog::pick(entries, s, at) {
            Some(e) => out.push(Choice {
                entry: e,
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

pub fn print_plan(at: DateTime<Utc>, choices: &[Choice<'_>]) {
    println!(
        "restore point {}",
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    println!(
        "{:<16} {:<28} {:<22} {:>10} DATA LOSS WINDOW",
        "SOURCE", "BACKUP", "TIME (UTC)", "SIZE"
    );
    for c in choices {
        let m = &c.entry.manifest;
        println!(
            "{:<16} {:<28} {:<22} {:>10} {}",
            m.source,
            m.id,
            m.started_at.format("%Y-%m-%d %H:%M:%S"),
            catalog::human_bytes(m.plain.size),
            catalog::human_duration(c.loss)
        );
    }
}

pub async fn run(cfg: &Config, req: &Request) -> Result<()> {
    if req.target_url.is_some() == req.output_dir.is_some() && !req.dry_run {
        bail!("say where to restore: --target-url URL (load into a database) or --output-dir DIR (write the decrypted dump)");
    }
    // Parsed first: a password on the command line is refused before anything else happens.
    let target = req
        .target_url
        .as_deref()
        .filter(|u| u.starts_with("postgres"))
        .map(postgres::parse_target)
        .transpose()?;
    if let Some(u) = req
        .target_url
        .as_deref()
        .filter(|u| u.starts_with("redis") || u.starts_with("nats"))
    {
        if let Some(pw) = url::Url::parse(u).ok().and_then(|x| x.password().map(str::to_string)) {
            if std::env::args().any(|a| a.contains(&pw)) {
                bail!("--target-url contains a password on the command line; put the URL in DRCTL_TARGET_URL instead");
            }
        }
    }
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
    print_plan(req.at, &choices);
    if req.dry_run {
        return Ok(());
    }
    let identity_path = req
        .identity
        .clone()
        .or_else(|| cfg.encryption.identity_file.clone())
        .ok_or_else(|| {
            anyhow!("restore needs the private identity: pass --identity FILE or set encryption.identity_file")
        })?;
    let identities = crate::keys::load_identities(&identity_path)?;

    if let Some(url) = &req.target_url {
        let choice = &choices[0];
        let m = &choice.entry.manifest;
        let scratch = tempfile::Builder::new().prefix("drctl-restore-").tempdir()?;
        match m.kind.as_str() {
            "postgres" => {
                let conn = target.expect("parsed above for postgres URLs");
                // Refuse early, before spending time on the download.
                postgres::check_target(&conn, req.clean).await?;
                let file = scratch.path().join("dump.pgdump");
                fetch_to_file(&storages, choice.entry, &identities, &file).await?;
                postgres::pg_restore(&file, &conn, req.jobs, req.clean, req.no_owner).await?;
                println!("restored '{}' from backup {} into {}", m.source, m.id, conn.display());
            }
            "redis" => {
                redis::prepare_target(url, req.clean).await?;
                let file = scratch.path().join("dump.rdb");
                fetch_to_file(&storages, choice.entry, &identities, &file).await?;
                let n = redis::load(&file, url, scratch.path()).await?;
                println!(
                    "restored '{}' from backup {} into {}: {n} keys",
                    m.source,
                    m.id,
                    crate::secret::redact_url(url)
                );
            }
            "nats" if m.facts.get("nats_mode").and_then(|v| v.as_str()) == Some("snapshot") => {
                let file = scratch.path().join("snapshot.tar");
                fetch_to_file(&storages, choice.entry, &identities, &file).await?;
                let done = crate::sources::nats::snapshot::restore(&file, url, req.clean).await?;
                for (stream, state) in &done {
                    println!(
                        "restored stream {stream} of '{}' (backup {}): {} messages, last sequence {}",
                        m.source, m.id, state["messages"], state["last_seq"]
                    );
                }
            }
            "nats" => bail!(
                "'{}' was backed up in tarball mode: restore it with --output-dir, then `nats-server -js -sd DIR/{}`",
                m.source,
                m.source
            ),
            other => bail!("--target-url cannot restore {other} backups; use --output-dir"),
        }
    } else if let Some(dir) = &req.output_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create --output-dir {}", dir.display()))?;
        for c in &choices {
            let m = &c.entry.manifest;
            match m.kind.as_str() {
                "postgres" => {
                    let dest = dir.join(format!("{}-{}.{}", m.source, m.id, artifact_format(m)));
                    fetch_to_file(&storages, c.entry, &identities, &dest).await?;
                    println!("wrote {}", dest.display());
                }
                "redis" => {
                    let sub = dir.join(&m.source);
                    std::fs::create_dir_all(&sub)?;
                    let dest = sub.join("dump.rdb");
                    if dest.exists() {
                        bail!("{} exists; restore into a new or empty directory", dest.display());
                    }
                    fetch_to_file(&storages, c.entry, &identities, &dest).await?;
                    println!(
                        "wrote {} (stop Redis, put it in Redis's dir as its dbfilename, start Redis)",
                        dest.display()
                    );
                }
                _ => {
                    let sub = dir.join(&m.source);
                    archive::require_empty(&sub)?;
                    let scratch = tempfile::Builder::new().prefix("drctl-restore-").tempdir_in(dir)?;
                    let file = scratch.path().join("artifact.tar");
                    fetch_to_file(&storages, c.entry, &identities, &file).await?;
                    let (f, s) = (file.clone(), sub.clone());
                    tokio::task::spawn_blocking(move || archive::extract(&f, &s)).await??;
                    if m.kind == "nats" {
                        println!(
                            "extracted {} (start it with: nats-server -js -sd {})",
                            sub.display(),
                            sub.display()
                        );
                    } else {
                        println!("extracted {}", sub.display());
                    }
                }
            }
        }
    }
    Ok(())
}

/// `pgdump` from `data/app/ID.pgdump.zst.age`.
fn artifact_format(m: &catalog::Manifest) -> String {
    m.objects
        .first()
        .and_then(|o| o.key.rsplit('/').next())
        .and_then(|f| f.split('.').nth(1))
        .unwrap_or("dump")
        .to_string()
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
                let wrong_key = e.to_string().starts_with("wrong identity");
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
