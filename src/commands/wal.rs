//! `drctl wal-push`, `wal-fetch` and the hidden `wal-prefetch`: the commands PostgreSQL runs.
//! Their exit codes are a contract with the server, so every failure is mapped here, and
//! nothing else (no `?` to main, whose codes mean other things):
//! * wal-push: 0 stored (or already stored with the same content), 1 anything else. A signal
//!   or a code ≥ 126 would make the archiver process abort and restart.
//! * wal-fetch: 0 written, 1 not archived (recovery ends there), 126 any other failure: the
//!   server stops recovering instead of promoting with data missing.

use super::*;
use crate::cli::{WalFetchArgs, WalPrefetchArgs, WalPushArgs};
use crate::sources::postgres_cluster::{archive, prefetch, ClusterSource};
use crate::sources::SourceConfig;

/// wal-fetch's exit code for "failed, and it is not known whether the file exists".
pub const FETCH_FAILED: i32 = 126;

pub(super) fn cluster<'a>(cfg: &'a Config, name: &str) -> Result<&'a ClusterSource> {
    match cfg.source(name) {
        Some(SourceConfig::PostgresCluster(c)) => Ok(c),
        Some(other) => bail!(
            "source '{name}' is a {} source; WAL archiving needs type = \"postgres_cluster\"",
            other.kind()
        ),
        None => bail!("no source named '{name}' in the config"),
    }
}

fn identities(cfg: &Config, flag: Option<&std::path::Path>) -> Result<crate::keys::Identities> {
    let path = flag
        .map(std::path::Path::to_path_buf)
        .or_else(|| cfg.encryption.identity_file.clone())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "wal-fetch needs the private identity: pass --identity FILE or set encryption.identity_file"
            )
        })?;
    crate::keys::load_identities(&path)
}

pub(super) async fn push(cli: &Cli, a: &WalPushArgs) -> i32 {
    let r = async {
        let cfg = load_for(cli, config::Uses::Restore)?;
        let limit = cluster(&cfg, &a.source)?.wal_timeout.std();
        let storages = storage::select(&cfg.storages, None)?;
        tokio::time::timeout(limit, archive::push(&cfg, &a.source, &storages, &a.path))
            .await
            .map_err(|_| {
                anyhow::anyhow!("not archived within wal_timeout ({limit:?}); the server keeps the file and retries")
            })?
    }
    .await;
    match r {
        Ok(archive::Pushed::Stored { bytes }) => {
            tracing::debug!(source = %a.source, file = %a.path.display(), stored_bytes = bytes, "archived");
            0
        }
        Ok(archive::Pushed::AlreadyArchived) => {
            tracing::info!(source = %a.source, file = %a.path.display(), "already archived with the same content");
            0
        }
        Err(e) => {
            eprintln!("error: drctl wal-push {}: {e:#}", a.path.display());
            1
        }
    }
}

pub(super) async fn fetch(cli: &Cli, a: &WalFetchArgs) -> i32 {
    let r = async {
        // Served from the read-ahead cache when a prefetcher already brought it.
        if prefetch::take_cached(&a.dest, &a.file)? {
            spawn_prefetch(cli, a);
            return Ok::<i32, anyhow::Error>(0);
        }
        let cfg = load_for(cli, config::Uses::Restore)?;
        let limit = cluster(&cfg, &a.source)?.wal_timeout.std();
        let storages = storage::select(&cfg.storages, None)?;
        let ids = identities(&cfg, a.identity.as_deref())?;
        let fetched = tokio::time::timeout(limit, async {
            let info = archive::archive_info(&a.source, &storages).await?;
            archive::fetch(&a.source, &storages, &ids, info.as_ref(), &a.file, &a.dest).await
        })
        .await
        .map_err(|_| anyhow::anyhow!("not fetched within wal_timeout ({limit:?})"))??;
        match fetched {
            archive::Fetched::Written { .. } => {
                spawn_prefetch(cli, a);
                Ok(0)
            }
            archive::Fetched::NotArchived => Ok(1),
        }
    }
    .await;
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!(
                "error: drctl wal-fetch {}: {e:#} (exit {FETCH_FAILED}: recovery stops here rather than end without this file; fix the cause and start the server again)",
                a.file
            );
            FETCH_FAILED
        }
    }
}

/// Starts a detached `drctl wal-prefetch` for the segments after `a.file`. Best effort: a
/// prefetcher that cannot start only makes recovery slower.
fn spawn_prefetch(cli: &Cli, a: &WalFetchArgs) {
    if crate::sources::postgres_cluster::wal::WalFile::parse(&a.file)
        .is_none_or(|f| !matches!(f, crate::sources::postgres_cluster::wal::WalFile::Segment(_)))
    {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let mut cmd = std::process::Command::new(exe);
    if let Some(c) = &cli.config {
        cmd.arg("--config")
            .arg(std::path::absolute(c).unwrap_or_else(|_| c.clone()));
    }
    cmd.args(["wal-prefetch", "--source", &a.source, "--after", &a.file, "--dir"])
        .arg(std::path::absolute(prefetch::cache_dir(&a.dest)).unwrap_or_else(|_| prefetch::cache_dir(&a.dest)));
    if let Some(i) = &a.identity {
        cmd.arg("--identity")
            .arg(std::path::absolute(i).unwrap_or_else(|_| i.clone()));
    }
    use std::os::unix::process::CommandExt;
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0);
    if let Err(e) = cmd.spawn() {
        tracing::debug!(error = %e, "cannot start the WAL prefetcher");
    }
}

pub(super) async fn prefetch(cli: &Cli, a: &WalPrefetchArgs) -> i32 {
    let r = async {
        let cfg = load_for(cli, config::Uses::Restore)?;
        let c = cluster(&cfg, &a.source)?;
        let storages = storage::select(&cfg.storages, None)?;
        let ids = identities(&cfg, a.identity.as_deref())?;
        let Some(info) = archive::archive_info(&a.source, &storages).await? else {
            return Ok(0);
        };
        prefetch::run(&a.source, &storages, &ids, &info, &a.after, &a.dir, c.prefetch).await
    }
    .await;
    match r {
        Ok(_) => 0,
        Err(e) => {
            tracing::debug!(error = %format!("{e:#}"), "prefetch stopped");
            1
        }
    }
}

/// `drctl wal-verify`: per storage, the archive's timelines, and for every base backup of the
/// source whether its WAL chain is complete. Exit 1 on any gap.
pub(super) async fn verify(cfg: &Config, a: &crate::cli::WalVerifyArgs) -> Result<i32> {
    use crate::sources::postgres_cluster::restore as pitr;
    cluster(cfg, &a.source)?;
    let storages = storage::select(&cfg.storages, a.storage.as_deref())?;
    let mut problems = 0;
    for st in &storages {
        let view = pitr::ArchiveView::read(&a.source, st).await?;
        let archived = &view.archived;
        let listing = catalog::list(std::slice::from_ref(st), Some(&a.source)).await;
        for p in &listing.problems {
            eprintln!("problem: {p}");
            problems += 1;
        }
        println!("storage '{}':", st.name);
        for (tli, names) in archived {
            let segs: Vec<&String> = names.iter().filter(|n| n.len() == 24).collect();
            println!(
                "  timeline {tli}: {} segment(s){}",
                segs.len(),
                match (segs.first(), segs.last()) {
                    (Some(f), Some(l)) => format!(", {f} … {l}"),
                    _ => String::new(),
                }
            );
        }
        for e in &listing.entries {
            let Some(f) = (match &e.manifest.facts {
                crate::sources::Facts::PostgresCluster(f) => Some(f),
                _ => None,
            }) else {
                continue;
            };
            match view.chain(&a.source, f) {
                Ok(c) => {
                    let missing = c.missing();
                    let first = c.segments.first().map(|s| s.name(c.segment_size)).unwrap_or_default();
                    let last = c.segments.last().map(|s| s.name(c.segment_size)).unwrap_or_default();
                    if missing.is_empty() {
                        println!(
                            "  base backup {}: WAL complete, {} segment(s) {first} … {last} (timeline {})",
                            e.manifest.id,
                            c.segments.len(),
                            c.target_timeline
                        );
                    } else {
                        problems += 1;
                        println!(
                            "  base backup {}: {} segment(s) missing between {first} and {last}: {}",
                            e.manifest.id,
                            missing.len(),
                            missing.join(", ")
                        );
                    }
                }
                Err(err) => {
                    problems += 1;
                    println!("  base backup {}: {err:#}", e.manifest.id);
                }
            }
        }
    }
    println!("{problems} problem(s)");
    Ok(if problems == 0 { 0 } else { 1 })
}
