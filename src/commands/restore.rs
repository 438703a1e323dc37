//! `drctl restore`.

use super::*;
use crate::restore::Choice;
use crate::sources::Restored;
use chrono::{DateTime, Utc};

pub(super) async fn restore(cfg: &Config, a: &RestoreArgs, cli: &Cli) -> Result<i32> {
    let one_cluster = match a.sources.as_slice() {
        [s] => matches!(cfg.source(s), Some(crate::sources::SourceConfig::PostgresCluster(_))),
        _ => false,
    };
    if a.target_datadir.is_some() || (one_cluster && a.target.is_some()) {
        return restore_cluster(cfg, a, cli).await;
    }
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
        target: a.target.clone(),
        compose_project: a.compose_project.clone(),
        output_dir: a.output_dir.clone(),
        clean: a.clean,
        dry_run: a.dry_run,
        jobs: jobs.max(1),
        no_owner: a.no_owner,
        keep_special_bits: a.keep_special_bits,
        scratch_dir: a.scratch_dir.clone(),
    };
    // A signal stops pg_restore (and waits for it) and removes the decrypted scratch copy.
    let _cancel = cancel_on_signal();
    let prepared = crate::restore::prepare(cfg, &req).await?;
    for p in &prepared.problems {
        eprintln!("warning: {p}");
    }
    print_plan(at, &prepared.choices);
    if req.dry_run {
        return Ok(0);
    }
    for r in crate::restore::execute(cfg, &req, &prepared).await? {
        println!("{}", describe(&r));
    }
    Ok(0)
}

/// `--target-datadir` (or `--target service:…`): point-in-time recovery of a
/// `postgres_cluster` source.
async fn restore_cluster(cfg: &Config, a: &RestoreArgs, cli: &Cli) -> Result<i32> {
    use crate::sources::postgres_cluster::restore as pitr;
    // Into a stopped container's volume, or a directory here.
    // (clap refuses --target with --target-datadir, and --start without it.)
    let place = match &a.target {
        Some(spec) => match crate::sources::Target::container(spec, a.compose_project.clone())? {
            crate::sources::Target::Container(p) => Some(p),
            _ => unreachable!("Target::container gives a container"),
        },
        None => None,
    };
    let source = match a.sources.as_slice() {
        [s] => s.clone(),
        _ => bail!("--target-datadir restores one postgres_cluster source; pass --source NAME"),
    };
    let cluster = match cfg.source(&source) {
        Some(crate::sources::SourceConfig::PostgresCluster(c)) => c,
        Some(other) => bail!(
            "--target-datadir restores a postgres_cluster source, and '{source}' is a {} source (use --target-url, --target or --output-dir)",
            other.kind()
        ),
        None => bail!("no source named '{source}' in the config"),
    };
    let target = pitr::parse_target(&a.at)?;
    if a.start && a.port.is_none() {
        bail!("--start needs --port PORT: the port the restored server listens on (not one another server uses)");
    }
    let storages = storage::select(&cfg.storages, a.storage.as_deref())?;
    // A dry run needs no identity.
    let identity = a.identity.clone().or_else(|| cfg.encryption.identity_file.clone());
    let identities = match &identity {
        Some(p) => Some(crate::keys::load_identities(p)?),
        None if a.dry_run => None,
        None => bail!("restore needs the private identity: pass --identity FILE or set encryption.identity_file"),
    };
    let _cancel = cancel_on_signal();
    let plan = pitr::plan(&source, &storages, target).await?;
    let m = &plan.entry.manifest;
    match plan.target {
        Some(t) => println!("recovery target {} (UTC)", t.format("%Y-%m-%d %H:%M:%S%.f")),
        None => println!("recovery target: the end of the archive"),
    }
    println!(
        "base backup {} of '{source}' (PostgreSQL {}, system {}), taken {} – {} UTC, {}",
        m.id,
        plan.facts.major,
        plan.facts.system_identifier,
        m.started_at.format("%Y-%m-%d %H:%M:%S"),
        m.finished_at.format("%Y-%m-%d %H:%M:%S"),
        catalog::human_bytes(m.plain.size)
    );
    println!(
        "WAL: {} segments on storage '{}', {} to {} (timeline {}), all archived{}",
        plan.segments,
        plan.storage,
        plan.first_wal,
        plan.last_wal,
        plan.target_timeline,
        plan.archive_end
            .map(|t| format!("; the last of them at {} UTC", t.format("%Y-%m-%d %H:%M:%S")))
            .unwrap_or_default()
    );
    if let (Some(t), Some(end)) = (plan.target, plan.archive_end) {
        if end < t {
            println!(
                "warning: the archive ends before the target: recovery stops at about {} UTC, losing what was committed after it (up to {})",
                end.format("%Y-%m-%d %H:%M:%S"),
                catalog::human_duration(t - end)
            );
        }
    }
    let (Some(identity), Some(identities)) = (identity, identities) else {
        return Ok(0);
    };
    if a.dry_run {
        return Ok(0);
    }
    let scratch = a
        .scratch_dir
        .clone()
        .unwrap_or_else(|| cfg.daemon.state_dir().join("scratch"));
    if let Some(place) = &place {
        let w = crate::sources::postgres_cluster::container::restore_into_container(
            &plan,
            place,
            &storages,
            &identities,
            &scratch,
        )
        .await?;
        println!(
            "wrote base backup {} and {} WAL file(s) into {} of the stopped container '{}', with recovery.signal; start it (docker compose start), it replays to the target and promotes",
            m.id, w.wal_files, w.datadir, w.container
        );
        return Ok(0);
    }
    let dir = a.target_datadir.as_deref().expect("--target-datadir");
    let config_path = std::path::absolute(config::resolve_path(cli.config.as_deref()))?;
    let config_text = std::fs::read_to_string(&config_path).unwrap_or_default();
    let drctl = std::path::absolute(std::env::current_exe()?)?;
    let identity = std::path::absolute(&identity)?;
    let datadir = std::path::absolute(dir)?;
    let setup = pitr::Setup {
        source: &source,
        datadir: &datadir,
        scratch_dir: &scratch,
        drctl: vec![
            drctl.to_string_lossy().into_owned(),
            "--config".into(),
            config_path.to_string_lossy().into_owned(),
        ],
        identity: &identity,
        env: pitr::referenced_vars(&config_text),
    };
    pitr::write(&plan, &storages, &identities, &setup).await?;
    println!(
        "wrote base backup {} into {} with recovery.signal; restore_command = '{}'",
        m.id,
        datadir.display(),
        pitr::restore_command(&setup)
    );
    let Some(port) = a.port.filter(|_| a.start) else {
        println!(
            "start it (as the postgres user) with: pg_ctl -D {} start; it replays the WAL, then promotes",
            datadir.display()
        );
        return Ok(0);
    };
    let t0 = std::time::Instant::now();
    let reached = pitr::start(&pitr::Start {
        datadir: &datadir,
        major: plan.facts.major,
        port,
        pg_bin_dir: cluster.pg_bin_dir.as_deref(),
        must_read: setup.must_read(),
        env: &setup.env,
        options: "",
        superuser: plan.facts.superuser.as_deref(),
    })
    .await?;
    println!(
        "recovered in {:.1}s; PostgreSQL is running on port {port} (log: {}), timeline {}",
        t0.elapsed().as_secs_f64(),
        reached.log.display(),
        reached.timeline.as_deref().unwrap_or("?")
    );
    println!(
        "asked for: {}",
        plan.target
            .map(|t| format!("{} UTC", t.format("%Y-%m-%d %H:%M:%S%.f")))
            .unwrap_or_else(|| "the end of the archive".into())
    );
    println!(
        "reached:   {} (the commit time of the last transaction replayed)",
        reached
            .last_replayed
            .as_deref()
            .unwrap_or("no transaction replayed after the base backup")
    );
    Ok(0)
}

fn print_plan(at: DateTime<Utc>, choices: &[Choice]) {
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

fn describe(r: &Restored) -> String {
    match r {
        Restored::Database {
            source,
            backup,
            target,
            replaced,
            roles_created,
        } => {
            use crate::sources::postgres::restore::Replaced;
            let how = match replaced {
                Replaced::Empty => String::new(),
                Replaced::OneTransaction => {
                    " (--clean, in one transaction: had it failed, the database would be unchanged)".into()
                }
                Replaced::Swapped { previous } => format!(
                    " (--clean: loaded into a new database and swapped in; the previous database is kept as '{previous}': drop it with DROP DATABASE \"{previous}\" when satisfied, or rename it back to undo)"
                ),
            };
            let roles = if roles_created.is_empty() {
                String::new()
            } else {
                format!(
                    "\ncreated the backup's roles the target lacked (with their recorded attributes and password hashes): {}",
                    roles_created.join(", ")
                )
            };
            format!("restored '{source}' from backup {backup} into {target}{how}{roles}")
        }
        Restored::RedisKeys {
            source,
            backup,
            target,
            keys,
        } => format!("restored '{source}' from backup {backup} into {target}: {keys} keys"),
        Restored::NatsStreams {
            source,
            backup,
            streams,
        } => streams
            .iter()
            .map(|(stream, state)| format!("restored stream {stream} of '{source}' (backup {backup}): {state}"))
            .collect::<Vec<_>>()
            .join("\n"),
        Restored::Wrote { path, hint: None } => format!("wrote {}", path.display()),
        Restored::Wrote { path, hint: Some(h) } => format!("wrote {} ({h})", path.display()),
        Restored::Extracted { dir, hint: None } => format!("extracted {}", dir.display()),
        Restored::Extracted { dir, hint: Some(h) } => format!("extracted {} ({h})", dir.display()),
    }
}
