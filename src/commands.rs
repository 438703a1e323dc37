//! Subcommand bodies: glue between the CLI and the library. Returns the exit code.

use crate::catalog;
use crate::cli::{
    BackupArgs, CheckArgs, Cli, Command, CopyArgs, ListArgs, PruneArgs, RestoreArgs, StatusArgs, UnlockArgs, VerifyArgs,
};
use crate::config::{self, Config};
use crate::lock;
use crate::storage;
use crate::storage::Storage;
use anyhow::{bail, Result};
use tokio_util::sync::CancellationToken;

fn load(cli: &Cli) -> Result<Config> {
    let path = config::resolve_path(cli.config.as_deref());
    Ok(config::load(&path)?)
}

pub async fn run(cli: Cli) -> Result<i32> {
    match &cli.command {
        Command::Init(a) => init(&a.dir),
        Command::Validate => {
            let path = config::resolve_path(cli.config.as_deref());
            let cfg = config::load(&path)?;
            println!(
                "config {} is valid: {} source(s), {} storage(s)",
                path.display(),
                cfg.sources.len(),
                cfg.storages.len()
            );
            Ok(0)
        }
        Command::Keygen(a) => {
            let recipient = crate::keys::keygen(a.output.as_deref())?;
            if let Some(p) = &a.output {
                eprintln!(
                    "wrote identity to {} (mode 0600); keep a copy offline: without it no backup can be restored",
                    p.display()
                );
                println!("{recipient}");
            } else {
                eprintln!("public key: {recipient}");
            }
            Ok(0)
        }
        Command::Backup(a) => backup(&load(&cli)?, a).await,
        Command::List(a) => list(&load(&cli)?, a).await,
        Command::Restore(a) => restore(&load(&cli)?, a).await,
        Command::Prune(a) => prune(&load(&cli)?, a).await,
        Command::Unlock(a) => unlock(&load(&cli)?, a).await,
        Command::Daemon(a) => crate::daemon::run(config::resolve_path(cli.config.as_deref()), a.metrics_addr).await,
        Command::Status(a) => status(&load(&cli)?, a).await,
        Command::Verify(a) => verify(&load(&cli)?, a).await,
        Command::Check(a) => check(&load(&cli)?, a).await,
        Command::Copy(a) => copy(&load(&cli)?, a).await,
    }
}

const STARTER: &str = include_str!("starter.toml");

fn init(dir: &std::path::Path) -> Result<i32> {
    std::fs::create_dir_all(dir)?;
    let config = dir.join("drctl.toml");
    let identity = dir.join("identity.txt");
    for p in [&config, &identity] {
        if p.exists() {
            bail!(
                "{} already exists; refusing to overwrite it (choose another --dir)",
                p.display()
            );
        }
    }
    let recipient = crate::keys::keygen(Some(&identity))?;
    let text = STARTER.replace("RECIPIENT", &recipient);
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&config)?;
        f.write_all(text.as_bytes())?;
    }
    println!(
        "wrote {} (mode 0600): one local storage, no sources yet",
        config.display()
    );
    println!(
        "wrote {} (mode 0600): the private key; public key {recipient}",
        identity.display()
    );
    println!();
    println!("next:");
    println!(
        "  1. move {} OFF this machine: a password manager and a printed copy.",
        identity.display()
    );
    println!(
        "     The server needs only the public key (already in drctl.toml); the identity is for restore and verify."
    );
    println!("     Without it no backup can ever be restored.");
    println!(
        "  2. add your [[source]] blocks (examples are in the file), then: drctl validate --config {}",
        config.display()
    );
    println!("  3. drctl backup --config {}", config.display());
    Ok(0)
}

/// SIGINT/SIGTERM cancel the token; the pipeline then aborts its uploads.
fn cancel_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        tracing::warn!("signal received: aborting uploads; nothing of this run will be committed");
        t.cancel();
    });
    token
}

async fn backup(cfg: &Config, a: &BackupArgs) -> Result<i32> {
    let sources: Vec<_> = if a.sources.is_empty() {
        cfg.sources.iter().collect()
    } else {
        a.sources
            .iter()
            .map(|n| {
                cfg.source(n).ok_or_else(|| {
                    let names: Vec<&str> = cfg.sources.iter().map(|s| s.name()).collect();
                    anyhow::anyhow!("no source named '{n}' (configured: {})", names.join(", "))
                })
            })
            .collect::<Result<_>>()?
    };
    if sources.is_empty() {
        bail!("no sources configured; add a [[source]] to the config");
    }
    let cancel = cancel_on_signal();
    let opts = crate::jobs::Options {
        prune: !a.no_prune,
        lock_wait: duration_arg("--lock-wait", &a.lock_wait)?,
    };
    let events = events_for(cfg);
    let out = crate::jobs::run(cfg, &sources, &opts, "manual", None, &events, &cancel).await;
    for m in &out.manifests {
        println!(
            "{}  {}  {} → {} stored on {}",
            m.source,
            m.id,
            catalog::human_bytes(m.plain.size),
            catalog::human_bytes(m.stored.size),
            m.storages.join(", "),
        );
    }
    for (name, done) in &out.pruned {
        if done.backups_deleted + done.orphans_deleted > 0 {
            println!(
                "pruned '{name}': {} backup(s), {} orphaned object(s)",
                done.backups_deleted, done.orphans_deleted
            );
        }
    }
    for (name, e) in &out.failures {
        eprintln!("error: {name}: {e}");
    }
    for (name, st, e) in &out.degraded {
        eprintln!("degraded: {name}: storage '{st}' missed this backup: {e}");
    }
    Ok(out.exit_code())
}

fn events_for(cfg: &Config) -> crate::events::Events {
    crate::events::Events::new(
        crate::status::StateDir::new(cfg.daemon.state_dir()),
        cfg.notify.clone(),
        None,
    )
}

fn duration_arg(flag: &str, v: &str) -> Result<std::time::Duration> {
    let d = crate::retention::parse_duration(v).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
    Ok(d.to_std().unwrap_or_default())
}

async fn prune(cfg: &Config, a: &PruneArgs) -> Result<i32> {
    if let Some(s) = &a.source {
        if cfg.source(s).is_none() {
            tracing::warn!(source = %s, "not in the config; pruning its backups with the default policy");
        }
    }
    let storages = storage::select(&cfg.storages, a.storage.as_deref())?;
    let now = match &a.now {
        Some(t) => catalog::parse_time(t, chrono::Utc::now())?,
        None => chrono::Utc::now(),
    };
    let orphan_age = crate::retention::parse_duration(a.orphan_age.as_deref().unwrap_or(&cfg.prune.orphan_age))
        .map_err(|e| anyhow::anyhow!("--orphan-age: {e}"))?;
    // A dry run only reads, so it takes no lock and never waits.
    let locks = if a.dry_run {
        Vec::new()
    } else {
        lock::acquire_all(
            &storages,
            lock::Kind::Exclusive,
            "prune",
            duration_arg("--lock-wait", &a.lock_wait)?,
        )
        .await?
    };
    let result = prune_locked(cfg, a, &storages, now, orphan_age).await;
    lock::release_all(locks).await;
    result
}

async fn prune_locked(
    cfg: &Config,
    a: &PruneArgs,
    storages: &[Storage],
    now: chrono::DateTime<chrono::Utc>,
    orphan_age: chrono::Duration,
) -> Result<i32> {
    let plan = crate::prune::plan(cfg, storages, a.source.as_deref(), now, orphan_age).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        plan.print();
    }
    if a.dry_run {
        return Ok(0);
    }
    let done = crate::prune::apply(&plan, storages).await?;
    if !a.json {
        println!(
            "deleted {} backup(s) and {} orphaned object(s), aborted {} unfinished upload(s)",
            done.backups_deleted, done.orphans_deleted, done.uploads_aborted
        );
    }
    Ok(0)
}

async fn status(cfg: &Config, a: &StatusArgs) -> Result<i32> {
    let state = crate::status::StateDir::new(cfg.daemon.state_dir());
    let storages = storage::select(&cfg.storages, None)?;
    let now = chrono::Utc::now();
    let mut newest: std::collections::BTreeMap<(String, String), catalog::Manifest> = Default::default();
    let mut last_verify: std::collections::HashMap<String, crate::verify::Record> = Default::default();
    let mut storage_errors = Vec::new();
    for st in &storages {
        match catalog::list(std::slice::from_ref(st), None).await {
            Ok(entries) => {
                for e in entries {
                    newest
                        .entry((e.manifest.source.clone(), st.name.clone()))
                        .or_insert(e.manifest);
                }
            }
            Err(e) => storage_errors.push((st.name.clone(), format!("{e:#}"))),
        }
        for ((source, _), r) in crate::verify::records(st).await.unwrap_or_default() {
            if last_verify.get(&source).is_none_or(|old| old.at < r.at) {
                last_verify.insert(source, r);
            }
        }
    }
    let tz = crate::schedule::parse_tz(&cfg.daemon.timezone).map_err(anyhow::Error::msg)?;
    let mut rows = Vec::new();
    for src in &cfg.sources {
        let s = state.load(src.name());
        let next = cfg
            .jobs
            .iter()
            .filter(|j| cfg.job_sources(j).iter().any(|x| x.name() == src.name()))
            .filter_map(|j| crate::schedule::next_after(&j.schedule, tz, now))
            .min();
        let per_storage: Vec<serde_json::Value> = storages
            .iter()
            .map(|st| {
                let m = newest.get(&(src.name().to_string(), st.name.clone()));
                serde_json::json!({
                    "storage": st.name,
                    "newest_id": m.map(|m| m.id.clone()),
                    "newest_at": m.map(|m| m.started_at),
                    "age_seconds": m.map(|m| (now - m.started_at).num_seconds()),
                })
            })
            .collect();
        rows.push(serde_json::json!({
            "source": src.name(),
            "last_success": s.last_success,
            "last_failure": s.last_failure,
            "storages": per_storage,
            "next_run": next,
            "last_verification": last_verify.get(src.name()).map(|r| serde_json::json!({
                "at": r.at, "backup_id": r.backup_id, "ok": r.ok, "rto_seconds": r.rto_seconds, "failures": r.failures(),
            })),
        }));
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "sources": rows, "storage_errors": storage_errors }))?
        );
        return Ok(0);
    }
    for r in &rows {
        println!("source '{}'", r["source"].as_str().unwrap_or_default());
        match r["last_success"].as_object() {
            Some(o) => println!(
                "  last success  {} ({})",
                o["at"].as_str().unwrap_or_default(),
                o["id"].as_str().unwrap_or_default()
            ),
            None => println!("  last success  never (on this host)"),
        }
        if let Some(o) = r["last_failure"].as_object() {
            println!(
                "  last failure  {}: {}",
                o["at"].as_str().unwrap_or_default(),
                o["error"].as_str().unwrap_or_default()
            );
        }
        for st in r["storages"].as_array().into_iter().flatten() {
            let age = st["age_seconds"]
                .as_i64()
                .map(|s| catalog::human_duration(chrono::Duration::seconds(s)));
            println!(
                "  storage {:<10} newest {}",
                st["storage"].as_str().unwrap_or_default(),
                match age {
                    Some(a) => format!("{} ago ({})", a, st["newest_id"].as_str().unwrap_or_default()),
                    None => "none".into(),
                }
            );
        }
        match r["last_verification"].as_object() {
            Some(v) if v["ok"].as_bool() == Some(true) => println!(
                "  verified      {} (backup {}, restore took {:.1}s)",
                v["at"].as_str().unwrap_or_default(),
                v["backup_id"].as_str().unwrap_or_default(),
                v["rto_seconds"].as_f64().unwrap_or_default()
            ),
            Some(v) => println!(
                "  verification  FAILED {}: {}",
                v["at"].as_str().unwrap_or_default(),
                v["failures"]
            ),
            None => println!("  verified      never"),
        }
        match r["next_run"].as_str() {
            Some(n) => println!("  next run      {n}"),
            None => println!("  next run      not scheduled (no [[job]] includes it)"),
        }
    }
    for (st, e) in &storage_errors {
        println!("storage '{st}' unreachable: {e}");
    }
    Ok(if storage_errors.is_empty() { 0 } else { 1 })
}

async fn verify(cfg: &Config, a: &VerifyArgs) -> Result<i32> {
    let storages = storage::select(&cfg.storages, a.storage.as_deref())?;
    let at =
        a.at.as_deref()
            .map(|t| catalog::parse_time(t, chrono::Utc::now()))
            .transpose()?;
    let identity = a
        .identity
        .clone()
        .or_else(|| cfg.encryption.identity_file.clone())
        .ok_or_else(|| {
            anyhow::anyhow!("verify needs the private identity: pass --identity FILE or set encryption.identity_file")
        })?;
    let identities = crate::keys::load_identities(&identity)?;
    let sources: Vec<String> = if a.sources.is_empty() {
        cfg.sources.iter().map(|s| s.name().to_string()).collect()
    } else {
        a.sources.clone()
    };
    let events = events_for(cfg);
    // Ctrl-C or SIGTERM drops the verification: its sandbox is stopped and removed on drop.
    let cancel = cancel_on_signal();
    let run = crate::verify::run_all(cfg, &sources, at, &storages, &identities, &events);
    let results = tokio::select! {
        r = run => r,
        _ = cancel.cancelled() => bail!("verification interrupted; the sandbox was removed"),
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &results
                    .iter()
                    .map(|r| match r {
                        Ok(rec) => serde_json::to_value(rec).expect("record serializes"),
                        Err((s, e)) => serde_json::json!({ "source": s, "ok": false, "error": e }),
                    })
                    .collect::<Vec<_>>()
            )?
        );
    } else {
        for r in &results {
            match r {
                Ok(rec) => {
                    // A failed verification's time is no restore time: the restore may not
                    // have run at all (no engine, wrong identity).
                    let (verdict, took) = if rec.ok {
                        ("PASS", "restore took")
                    } else {
                        ("FAIL", "failed after")
                    };
                    println!(
                        "{verdict} {}  backup {}  {took} {:.1}s  ({})",
                        rec.source, rec.backup_id, rec.rto_seconds, rec.sandbox
                    );
                    for c in &rec.checks {
                        println!("  {} {}: {}", if c.ok { "ok  " } else { "FAIL" }, c.name, c.detail);
                    }
                }
                Err((s, e)) => println!("FAIL {s}: {e}"),
            }
        }
    }
    let failed = results.iter().any(|r| !matches!(r, Ok(rec) if rec.ok));
    Ok(if failed { 1 } else { 0 })
}

async fn check(cfg: &Config, a: &CheckArgs) -> Result<i32> {
    let storages = storage::select(&cfg.storages, a.storage.as_deref())?;
    let read = match (a.read_data, &a.read_data_subset) {
        (true, _) => crate::integrity::ReadData::All,
        (false, Some(p)) => {
            let n: u8 = p
                .trim_end_matches('%')
                .parse()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| anyhow::anyhow!("--read-data-subset: '{p}' is not a percentage like 10%"))?;
            crate::integrity::ReadData::Subset(n)
        }
        _ => crate::integrity::ReadData::No,
    };
    let r = crate::integrity::check(cfg, &storages, read).await?;
    for n in &r.notes {
        println!("note: {n}");
    }
    for p in &r.problems {
        println!("PROBLEM {p}");
    }
    println!(
        "checked {} backup(s) on {} storage(s), read {} object(s): {} problem(s)",
        r.backups,
        storages.len(),
        r.objects_read,
        r.problems.len()
    );
    Ok(if r.problems.is_empty() { 0 } else { 1 })
}

async fn copy(cfg: &Config, a: &CopyArgs) -> Result<i32> {
    let from = storage::select(&cfg.storages, Some(&a.from))?.remove(0);
    let to = storage::select(&cfg.storages, Some(&a.to))?.remove(0);
    let since = a
        .since
        .as_deref()
        .map(|t| catalog::parse_time(t, chrono::Utc::now()))
        .transpose()?;
    let locks = lock::acquire_all(
        std::slice::from_ref(&to),
        lock::Kind::Shared,
        "copy",
        duration_arg("--lock-wait", &a.lock_wait)?,
    )
    .await?;
    let result = crate::integrity::copy(&from, &to, a.source.as_deref(), since).await;
    lock::release_all(locks).await;
    let copied = result?;
    for m in &copied {
        println!(
            "copied {} {} ({}) from '{}' to '{}'",
            m.source,
            m.id,
            catalog::human_bytes(m.stored.size),
            a.from,
            a.to
        );
    }
    println!("{} backup(s) copied", copied.len());
    Ok(0)
}

async fn unlock(cfg: &Config, a: &UnlockArgs) -> Result<i32> {
    let storages = storage::select(&cfg.storages, a.storage.as_deref())?;
    let now = chrono::Utc::now();
    for st in &storages {
        for (key, info) in lock::list(st).await? {
            let stale = info.as_ref().is_none_or(|i| i.is_stale(now));
            let what = info
                .as_ref()
                .map(|i| i.describe())
                .unwrap_or_else(|| "an unreadable lock".into());
            if stale || a.force {
                st.delete(&key).await?;
                println!(
                    "storage '{}': removed {} lock: {what}",
                    st.name,
                    if stale { "stale" } else { "live" }
                );
            } else {
                println!(
                    "storage '{}': kept live lock: {what} (pass --force only if you are sure it is not running)",
                    st.name
                );
            }
        }
    }
    Ok(0)
}

async fn list(cfg: &Config, a: &ListArgs) -> Result<i32> {
    let storages = storage::select(&cfg.storages, a.storage.as_deref())?;
    let entries = catalog::list(&storages, a.source.as_deref()).await?;
    // The latest verification of each backup, from whichever storage recorded it.
    let mut verified: std::collections::HashMap<(String, String), crate::verify::Record> = Default::default();
    for st in &storages {
        for (k, r) in crate::verify::records(st).await? {
            match verified.get(&k) {
                Some(old) if old.at >= r.at => {}
                _ => {
                    verified.insert(k, r);
                }
            }
        }
    }
    let verification = |m: &catalog::Manifest| verified.get(&(m.source.clone(), m.id.clone()));
    if a.json {
        let v: Vec<serde_json::Value> = entries
            .iter()
            .map(|e| {
                let mut m = serde_json::to_value(&e.manifest).expect("manifest serializes");
                m["held_by"] = serde_json::json!(e.storages);
                m["verification"] = serde_json::to_value(verification(&e.manifest)).expect("record serializes");
                m
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    if entries.is_empty() {
        println!("no backups yet");
        return Ok(0);
    }
    // Grouped by run: the sources backed up together are one recovery point.
    let mut runs: Vec<&str> = Vec::new();
    for e in &entries {
        if !runs.contains(&e.manifest.run_id.as_str()) {
            runs.push(&e.manifest.run_id);
        }
    }
    for run in runs {
        let members: Vec<&catalog::Entry> = entries.iter().filter(|e| e.manifest.run_id == run).collect();
        println!("run {run}");
        println!(
            "  {:<28} {:<16} {:<20} {:>10} {:>10}  {:<9} STORAGES",
            "ID", "SOURCE", "TIME (UTC)", "SIZE", "STORED", "VERIFIED"
        );
        for e in members {
            let m = &e.manifest;
            let v = match verification(m) {
                Some(r) if r.ok => "verified",
                Some(_) => "FAILED",
                None => "never",
            };
            println!(
                "  {:<28} {:<16} {:<20} {:>10} {:>10}  {:<9} {}",
                m.id,
                m.source,
                m.started_at.format("%Y-%m-%d %H:%M:%S"),
                catalog::human_bytes(m.plain.size),
                catalog::human_bytes(m.stored.size),
                v,
                e.storages.join(",")
            );
        }
    }
    Ok(0)
}

async fn restore(cfg: &Config, a: &RestoreArgs) -> Result<i32> {
    let at = catalog::parse_time(&a.at, chrono::Utc::now())?;
    let jobs = a.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(8)
    });
    let req = crate::restore::Request {
        at,
        sources: a.sources.clone(),
        storage: a.storage.clone(),
        identity: a.identity.clone(),
        target_url: a.target_url.clone(),
        output_dir: a.output_dir.clone(),
        clean: a.clean,
        dry_run: a.dry_run,
        jobs: jobs.max(1),
        no_owner: a.no_owner,
    };
    crate::restore::run(cfg, &req).await?;
    Ok(0)
}
