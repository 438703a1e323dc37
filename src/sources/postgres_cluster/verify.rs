//! Verifying a base backup: recovered, with every WAL segment archived since it, into a
//! throwaway server, and queried. The WAL chain is fetched (checked, decrypted) into the work
//! directory first and handed to the server by `cp` — its restore_command needs neither drctl's
//! config nor the identity, and the throwaway server runs with `archive_mode = off` and no TCP
//! listener, so a verification never pushes into the production archive nor is reachable.

use super::archive::{self, Fetched};
use super::restore::{self, Start};
use super::ClusterFacts;
use crate::catalog::Entry;
use crate::config::Config;
use crate::keys::Identities;
use crate::storage::Storage;
use crate::verification::Check;
use anyhow::{anyhow, Context, Result};
use std::path::Path;

fn check(name: &str, ok: bool, detail: String) -> Check {
    Check {
        name: name.into(),
        ok,
        detail,
    }
}

pub async fn verify(
    cfg: &Config,
    entry: &Entry,
    facts: &ClusterFacts,
    storages: &[Storage],
    identities: &Identities,
) -> (Vec<Check>, Option<f64>, String) {
    let t0 = std::time::Instant::now();
    let work = match tempfile::Builder::new()
        .prefix("drctl-verify-")
        .tempdir_in(cfg.verify.work_dir())
    {
        Ok(w) => w,
        Err(e) => {
            return (
                vec![check("restore", false, format!("cannot create a work directory: {e}"))],
                None,
                "local".into(),
            )
        }
    };
    let data = work.path().join("data");
    let result = run(cfg, entry, facts, storages, identities, work.path()).await;
    // Whatever happened, the throwaway server goes.
    let pg_ctl = super::basebackup::tool(cfg.verify.pg_bin_dir.as_deref(), facts.major, "pg_ctl");
    let mut stop = crate::process::command_as(crate::is_root().then_some("postgres"), &pg_ctl);
    stop.arg("-D").arg(&data).args(["-m", "immediate", "-w", "stop"]);
    if data.join("postmaster.pid").exists() {
        let _ = crate::process::run(stop, "pg_ctl stop").await;
    }
    let sandbox = format!("local (PostgreSQL {}, recovered base backup + WAL)", facts.major);
    match result {
        Ok(checks) => {
            let rto = t0.elapsed().as_secs_f64();
            (checks, Some(rto), sandbox)
        }
        Err(e) => (vec![check("restore", false, format!("{e:#}"))], None, sandbox),
    }
}

async fn run(
    cfg: &Config,
    entry: &Entry,
    facts: &ClusterFacts,
    storages: &[Storage],
    identities: &Identities,
    work: &Path,
) -> Result<Vec<Check>> {
    let source = &entry.manifest.source;
    let st = storages
        .iter()
        .find(|s| entry.storages.contains(&s.name))
        .ok_or_else(|| anyhow!("backup {} is on no selected storage", entry.manifest.id))?;
    let mut checks = Vec::new();
    let view = restore::ArchiveView::read(source, st).await?;
    let chain = view.chain(source, facts)?;
    let missing = chain.missing();
    checks.push(check(
        "wal chain",
        missing.is_empty(),
        if missing.is_empty() {
            format!(
                "{} segment(s) archived from the backup's start to the newest on timeline {}",
                chain.segments.len(),
                chain.target_timeline
            )
        } else {
            format!("missing: {}", missing.join(", "))
        },
    ));
    // The chain and the timeline histories, fetched and checked into work/wal.
    let wal = work.join("wal");
    std::fs::create_dir_all(&wal)?;
    let mut names: Vec<String> = chain
        .segments
        .iter()
        .filter(|s| chain.present(s))
        .map(|s| s.name(chain.segment_size))
        .collect();
    names.extend(
        view.archived
            .values()
            .flatten()
            .filter(|n| n.ends_with(".history"))
            .cloned(),
    );
    // One after the other: a verification is not in a hurry, and it runs in the daemon.
    for n in &names {
        match archive::fetch(
            source,
            std::slice::from_ref(st),
            identities,
            view.info.as_ref(),
            n,
            &wal.join(n),
        )
        .await
        .with_context(|| format!("WAL file {n}"))?
        {
            Fetched::Written { .. } => {}
            Fetched::NotArchived => return Err(anyhow!("WAL file {n} vanished from storage '{}'", st.name)),
        }
    }
    let data = work.join("data");
    let settings = format!(
        "# drctl verify\nrestore_command = 'cp \"{}/%f\" \"%p\"'\nrecovery_target_action = 'promote'\nrecovery_target_timeline = 'latest'\n",
        wal.display()
    );
    restore::write_with(entry, storages, identities, &data, work, &settings).await?;
    if crate::is_root() {
        let mut chown = crate::process::command("chown");
        chown.arg("-R").arg("postgres").arg(work);
        crate::process::run(chown, "chown").await?;
    }
    let replay_started = std::time::Instant::now();
    let reached = restore::start(&Start {
        datadir: &data,
        major: facts.major,
        port: 5432,
        pg_bin_dir: cfg.verify.pg_bin_dir.as_deref(),
        must_read: Vec::new(),
        env: &[],
        options: "-c archive_mode=off -c listen_addresses=''",
        superuser: facts.superuser.as_deref(),
    })
    .await?;
    checks.push(check(
        "recovery",
        true,
        format!(
            "replayed to the end of the archive and promoted in {:.1}s; last transaction replayed: {}",
            replay_started.elapsed().as_secs_f64(),
            reached.last_replayed.as_deref().unwrap_or("none after the base backup")
        ),
    ));
    Ok(checks)
}
