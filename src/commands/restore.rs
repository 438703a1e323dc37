//! `drctl restore`.

use super::*;
use crate::restore::Choice;
use crate::sources::Restored;
use chrono::{DateTime, Utc};

pub(super) async fn restore(cfg: &Config, a: &RestoreArgs) -> Result<i32> {
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
