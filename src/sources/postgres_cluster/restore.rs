//! Point-in-time recovery: the newest base backup that ended before the target, written into
//! an empty data directory, with recovery set up to replay the archived WAL to the target.
//!
//! Everything that can be checked is checked before the first byte is written: the backup's
//! cluster is the archive's, the timeline to follow is known, and every WAL segment from the
//! backup's start to the first segment archived after the target is on storage (a missing one
//! is named). Only then is the base backup fetched (verified, into scratch) and extracted.

use super::archive::{self, ArchiveInfo};
use super::wal::{self, Segment, WalFile};
use super::ClusterFacts;
use crate::catalog::{self, Entry};
use crate::keys::Identities;
use crate::sources::Facts;
use crate::storage::Storage;
use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};

/// `--at` for a cluster: a time with an explicit offset, or `now` (the end of the archive).
/// A time without an offset is refused: PostgreSQL would read `recovery_target_time` in the
/// restored server's `TimeZone`, which may not be the operator's.
pub fn parse_target(s: &str) -> Result<Option<DateTime<Utc>>> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("now") {
        return Ok(None);
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(Some(d.with_timezone(&Utc)));
    }
    for f in [
        "%Y-%m-%d %H:%M:%S%.f%#z",
        "%Y-%m-%d %H:%M:%S%#z",
        "%Y-%m-%dT%H:%M:%S%#z",
        "%Y-%m-%d %H:%M:%S %#z",
        "%Y-%m-%d %H:%M%#z",
    ] {
        if let Ok(d) = DateTime::parse_from_str(t, f) {
            return Ok(Some(d.with_timezone(&Utc)));
        }
    }
    if catalog::parse_time(t, Utc::now()).is_ok() {
        bail!(
            "--at '{t}' has no UTC offset; PostgreSQL would read it in the restored server's TimeZone setting, which may not be yours. Add one: '{t}+01' or '{t}Z'"
        );
    }
    bail!("cannot read --at '{t}'; give a time with an offset, like '2026-12-01 17:04:30+01' or 2026-12-01T16:04:30Z, or 'now'")
}

/// What a point-in-time restore will do, decided before anything is written.
pub struct Plan {
    pub entry: Entry,
    pub facts: ClusterFacts,
    /// None: to the end of the archive.
    pub target: Option<DateTime<Utc>>,
    pub target_timeline: u32,
    /// The segments replay reads, from the backup's start to the first one archived after the
    /// target (or the newest).
    pub first_wal: String,
    pub last_wal: String,
    pub segments: usize,
    /// When the newest segment in the plan was archived: recovery cannot get past that.
    pub archive_end: Option<DateTime<Utc>>,
    /// The storage the WAL chain was checked on.
    pub storage: String,
    /// The WAL files replay reads, by name: the segments from the backup's start to
    /// `last_wal`, and every timeline history file of the archive.
    pub wal: Vec<String>,
}

fn cluster_facts(e: &Entry) -> Option<&ClusterFacts> {
    match &e.manifest.facts {
        Facts::PostgresCluster(f) => Some(f),
        _ => None,
    }
}

/// Picks the base backup and checks the WAL chain. Touches no target.
pub async fn plan(source: &str, storages: &[Storage], target: Option<DateTime<Utc>>) -> Result<Plan> {
    let listing = catalog::list(storages, Some(source)).await;
    let unread = catalog::unread_note(&listing.problems);
    let until = target.unwrap_or_else(Utc::now);
    // A base backup is usable once it ended: recovery must replay past its end to be consistent.
    let entry = listing
        .entries
        .iter()
        .filter(|e| e.manifest.source == source && cluster_facts(e).is_some() && e.manifest.finished_at <= until)
        .max_by_key(|e| (e.manifest.finished_at, e.manifest.id.clone()))
        .cloned();
    let mut entry = match entry {
        Some(e) => e,
        None => {
            let oldest = listing
                .entries
                .iter()
                .filter(|e| e.manifest.source == source)
                .map(|e| e.manifest.finished_at)
                .min();
            match oldest {
                Some(o) => bail!(
                    "no base backup of '{source}' had ended by {}; the oldest ended at {} (pick a later --at){unread}",
                    until.to_rfc3339(),
                    o.to_rfc3339()
                ),
                None => bail!(
                    "no base backup of '{source}' in the selected storages (take one with `drctl backup --source {source}`){unread}"
                ),
            }
        }
    };
    catalog::reload(storages, &mut entry).await?;
    let facts = cluster_facts(&entry)
        .cloned()
        .ok_or_else(|| anyhow!("backup {} of '{source}' is not a base backup", entry.manifest.id))?;

    // The chain is checked on the first storage that holds the backup and whose archive
    // belongs to the backup's cluster.
    let mut errors = Vec::new();
    for st in storages.iter().filter(|s| entry.storages.contains(&s.name)) {
        match check_chain(source, st, &facts, target).await {
            Ok(p) => {
                return Ok(Plan {
                    entry,
                    facts,
                    target,
                    target_timeline: p.target_timeline,
                    first_wal: p.first_wal,
                    last_wal: p.last_wal,
                    segments: p.segments,
                    archive_end: p.archive_end,
                    storage: p.storage,
                    wal: p.wal,
                });
            }
            Err(e) => errors.push(format!("storage '{}': {e:#}", st.name)),
        }
    }
    bail!(
        "cannot recover '{source}' from base backup {}: {}; nothing was written",
        entry.manifest.id,
        errors.join("; ")
    )
}

/// One storage's WAL archive of a source, read once: its identity, the archived names by
/// timeline and every timeline's history. The chains of any number of base backups are laid
/// out from it without reading the storage again. Needs no identity: a history file's lines
/// are in its record.
pub struct ArchiveView {
    pub info: Option<ArchiveInfo>,
    /// Archived names by timeline, sorted.
    pub archived: std::collections::BTreeMap<u32, Vec<String>>,
    histories: std::collections::BTreeMap<u32, Vec<wal::Branch>>,
}

impl ArchiveView {
    pub async fn read(source: &str, st: &Storage) -> Result<ArchiveView> {
        let info = archive::archive_info(source, std::slice::from_ref(st)).await?;
        let archived = archive::list_archived(source, st).await?;
        let mut histories = std::collections::BTreeMap::new();
        for (tli, names) in &archived {
            let name = WalFile::History(*tli).name();
            if !names.contains(&name) {
                continue;
            }
            let history = archive::record(source, st, &name)
                .await?
                .and_then(|r| r.history)
                .ok_or_else(|| anyhow!("the record of {name} does not list the timeline's history"))?;
            histories.insert(*tli, history);
        }
        Ok(ArchiveView {
            info,
            archived,
            histories,
        })
    }

    /// The chain a recovery from the base backup with `facts` would read.
    pub fn chain(&self, source: &str, facts: &ClusterFacts) -> Result<Chain<'_>> {
        let Some(info) = &self.info else {
            bail!("there is no WAL archive of '{source}' (is archive_command = 'drctl wal-push --source {source} %p' set?)")
        };
        if info.system_identifier != facts.system_identifier {
            bail!(
                "the WAL archive belongs to cluster {}, but the base backup is of cluster {}: they cannot be combined",
                info.system_identifier,
                facts.system_identifier
            );
        }
        let seg = facts.segment_size;
        // recovery_target_timeline = 'latest': PostgreSQL probes NNNNNNNN.history upwards from
        // the backup's timeline and follows the newest it finds without a gap.
        let mut target_tli = facts.timeline;
        let mut history: &[wal::Branch] = &[];
        while let Some(h) = self.histories.get(&(target_tli + 1)) {
            history = h;
            target_tli += 1;
        }
        if let Some(b) = history.iter().find(|b| b.timeline == facts.timeline) {
            if b.switchpoint < facts.stop_lsn {
                bail!(
                    "timeline {target_tli} branched off timeline {} at {}, before the base backup ended ({}): this backup cannot reach it",
                    facts.timeline,
                    b.switchpoint,
                    facts.stop_lsn
                );
            }
        }
        let last = self
            .archived
            .get(&target_tli)
            .into_iter()
            .flatten()
            .filter_map(|n| Segment::parse(n, seg))
            .map(|s| s.number)
            .max();
        Ok(Chain {
            target_timeline: target_tli,
            segments: wal::chain(facts.timeline, facts.start_lsn, history, target_tli, last, seg),
            archived: &self.archived,
            segment_size: seg,
        })
    }
}

/// The archive of one storage as seen from a base backup: the timeline recovery will follow
/// and the segments it reads, from the backup's start to the newest archived on that timeline.
pub struct Chain<'a> {
    pub target_timeline: u32,
    pub segments: Vec<Segment>,
    archived: &'a std::collections::BTreeMap<u32, Vec<String>>,
    pub segment_size: u64,
}

impl Chain<'_> {
    pub fn present(&self, s: &Segment) -> bool {
        self.archived
            .get(&s.timeline)
            .is_some_and(|v| v.binary_search(&s.name(self.segment_size)).is_ok())
    }

    /// The segments of the chain that are not archived, by name.
    pub fn missing(&self) -> Vec<String> {
        self.segments
            .iter()
            .filter(|s| !self.present(s))
            .map(|s| s.name(self.segment_size))
            .collect()
    }
}

async fn check_chain(
    source: &str,
    st: &Storage,
    facts: &ClusterFacts,
    target: Option<DateTime<Utc>>,
) -> Result<PlanFields> {
    let view = ArchiveView::read(source, st).await?;
    let c = view.chain(source, facts)?;
    let (seg, chain, target_tli) = (c.segment_size, &c.segments, c.target_timeline);
    let stop = Segment::containing(facts.timeline, facts.stop_lsn, seg);
    if chain.is_empty() || chain.last().map(|s| s.number) < Some(stop.number) {
        bail!(
            "the WAL the base backup needs to become consistent ({} to {}) is not all archived: {} is missing; check archive_command and `drctl wal-verify`",
            facts.start_wal,
            facts.stop_wal,
            chain.last().map(|s| s.next()).unwrap_or(Segment::containing(facts.timeline, facts.start_lsn, seg)).name(seg)
        );
    }
    // The chain needed: up to the first segment archived at or after the target (it holds the
    // target's commits), found by bisection over the archive times (they grow along the chain).
    let present = |s: &Segment| c.present(s);
    let mut needed = chain.len();
    let mut archive_end = None;
    if let Some(t) = target {
        let (mut lo, mut hi) = (0usize, chain.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            let pushed = if present(&chain[mid]) {
                Some(pushed_at(source, st, &chain[mid], seg).await?)
            } else {
                None
            };
            // A missing segment counts as "after": the gap check below names it.
            match pushed {
                Some(p) if p < t => lo = mid + 1,
                _ => hi = mid,
            }
        }
        needed = (lo + 1).min(chain.len());
    }
    let stop_index = chain
        .iter()
        .position(|s| s.number >= stop.number)
        .unwrap_or(chain.len() - 1);
    needed = needed.max(stop_index + 1);
    if let Some(missing) = chain[..needed].iter().find(|s| !present(s)) {
        bail!(
            "WAL segment {} is missing from the archive (needed between {} and {}); recovery would stop there. Restore it from another storage (--storage) or pick an --at before it",
            missing.name(seg),
            chain[0].name(seg),
            chain[needed - 1].name(seg)
        );
    }
    if let Some(last) = chain.get(needed - 1) {
        archive_end = Some(pushed_at(source, st, last, seg).await?);
    }
    Ok(PlanFields {
        target_timeline: target_tli,
        first_wal: chain[0].name(seg),
        last_wal: chain[needed - 1].name(seg),
        segments: needed,
        archive_end,
        storage: st.name.clone(),
        wal: chain[..needed]
            .iter()
            .map(|s| s.name(seg))
            .chain(
                view.archived
                    .values()
                    .flatten()
                    .filter(|n| n.ends_with(".history"))
                    .cloned(),
            )
            .collect(),
    })
}

/// For `drctl check` and `wal-verify`: on one storage, every base backup whose WAL chain (from
/// its start to the newest segment on the timeline recovery would follow) has a gap, or whose
/// archive cannot be read, as problems naming the segment and the backups it breaks.
pub async fn gaps(st: &Storage, entries: &[Entry]) -> Vec<String> {
    let mut by_segment: std::collections::BTreeMap<(String, String), Vec<String>> = Default::default();
    let mut problems = Vec::new();
    // Each source's archive is read once, whatever the number of its base backups.
    let mut views: std::collections::BTreeMap<&str, Result<ArchiveView, String>> = Default::default();
    for e in entries {
        let Some(f) = cluster_facts(e) else { continue };
        let source = e.manifest.source.as_str();
        if !views.contains_key(source) {
            let v = ArchiveView::read(source, st).await.map_err(|e| format!("{e:#}"));
            views.insert(source, v);
        }
        match views[source]
            .as_ref()
            .map_err(String::clone)
            .and_then(|v| v.chain(source, f).map_err(|e| format!("{e:#}")))
        {
            Ok(c) => {
                for s in c.missing() {
                    by_segment
                        .entry((source.to_string(), s))
                        .or_default()
                        .push(e.manifest.id.clone());
                }
            }
            Err(err) => problems.push(format!(
                "storage '{}': base backup {} of '{source}': {err}",
                st.name, e.manifest.id
            )),
        }
    }
    for ((source, seg), ids) in by_segment {
        problems.push(format!(
            "storage '{}': WAL segment {seg} of '{source}' is missing: recovery from base backup(s) {} stops before it",
            st.name,
            ids.join(", ")
        ));
    }
    problems
}

/// What `check_chain` found on one storage.
struct PlanFields {
    target_timeline: u32,
    first_wal: String,
    last_wal: String,
    segments: usize,
    archive_end: Option<DateTime<Utc>>,
    storage: String,
    wal: Vec<String>,
}

async fn pushed_at(source: &str, st: &Storage, s: &Segment, seg: u64) -> Result<DateTime<Utc>> {
    let name = s.name(seg);
    Ok(archive::record(source, st, &name)
        .await?
        .ok_or_else(|| anyhow!("the record of {name} vanished while the chain was checked"))?
        .pushed_at)
}

/// How the restored server is told to recover.
pub struct Setup<'a> {
    pub source: &'a str,
    pub datadir: &'a Path,
    pub scratch_dir: &'a Path,
    /// The `drctl` that recovery runs as `restore_command`, with the arguments that must come
    /// before `wal-fetch` (`--config FILE`); absolute paths.
    pub drctl: Vec<String>,
    pub identity: &'a Path,
    /// The environment variables the config refers to (`${VAR}`): what `restore_command`
    /// needs from drctl's environment.
    pub env: Vec<String>,
}

/// The `${VAR}` names in a config file's text, and drctl's own `DRCTL_*` settings.
pub fn referenced_vars(config_text: &str) -> Vec<String> {
    let mut out: Vec<String> = config_text
        .split("${")
        .skip(1)
        .filter_map(|rest| {
            rest.split_once('}')
                .map(|(name, _)| name.split([':', '-']).next().unwrap_or(name))
        })
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .map(str::to_string)
        .collect();
    out.extend(
        std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .filter(|k| k.starts_with("DRCTL_")),
    );
    out.sort();
    out.dedup();
    out
}

/// Quotes `s` for the shell that runs `restore_command`.
fn sh_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-=:+,".contains(&b)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// `restore_command`, as PostgreSQL will run it.
pub fn restore_command(setup: &Setup<'_>) -> String {
    let mut words: Vec<String> = setup.drctl.iter().map(|w| sh_quote(w)).collect();
    words.push("wal-fetch".into());
    words.push("--source".into());
    words.push(sh_quote(setup.source));
    words.push("--identity".into());
    words.push(sh_quote(&setup.identity.to_string_lossy()));
    words.push("%f".into());
    words.push("%p".into());
    words.join(" ")
}

/// The recovery settings, in postgresql.conf syntax.
pub fn recovery_settings(setup: &Setup<'_>, target: Option<DateTime<Utc>>) -> String {
    settings_with(&restore_command(setup), target)
}

fn settings_with(restore_command: &str, target: Option<DateTime<Utc>>) -> String {
    let conf = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let mut out = String::from("# drctl restore: point-in-time recovery (remove after recovery if you like)\n");
    out.push_str(&format!("restore_command = {}\n", conf(restore_command)));
    if let Some(t) = target {
        // UTC with an explicit offset: the server's TimeZone setting does not matter.
        out.push_str(&format!(
            "recovery_target_time = {}\n",
            conf(&t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string())
        ));
    }
    out.push_str("recovery_target_action = 'promote'\nrecovery_target_timeline = 'latest'\n");
    out
}

/// Settings an earlier restore wrote into the backed-up cluster's postgresql.auto.conf: an old
/// `recovery_target_time` left there would silently stop this recovery at the old target.
pub(super) fn strip_recovery_settings(text: &str) -> String {
    text.lines()
        .filter(|l| {
            let k = l.trim_start();
            !(k.starts_with("restore_command") || k.starts_with("recovery_target") || k.starts_with("# drctl restore:"))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Fetches the base backup (verified, into scratch), extracts it into the empty data
/// directory, and sets up recovery.
pub async fn write(plan: &Plan, storages: &[Storage], identities: &Identities, setup: &Setup<'_>) -> Result<()> {
    write_with(
        &plan.entry,
        storages,
        identities,
        setup.datadir,
        setup.scratch_dir,
        &recovery_settings(setup, plan.target),
    )
    .await
}

/// [`write`] with the recovery settings given.
pub async fn write_with(
    entry: &Entry,
    storages: &[Storage],
    identities: &Identities,
    dir: &Path,
    scratch_dir: &Path,
    settings: &str,
) -> Result<()> {
    crate::archive::require_empty(dir)?;
    let fetched = crate::fetch::fetch_to_scratch(storages, entry, identities, "base.tar", scratch_dir).await?;
    let (f, d) = (fetched.file.clone(), dir.to_path_buf());
    tokio::task::spawn_blocking(move || crate::archive::extract(&f, &d, false)).await??;
    drop(fetched);
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private (PostgreSQL requires 0700)", dir.display()))?;
    }
    let auto = dir.join("postgresql.auto.conf");
    let old = std::fs::read_to_string(&auto).unwrap_or_default();
    let text = format!("{}{settings}", strip_recovery_settings(&old));
    crate::durable::write_file(&auto, text.as_bytes()).with_context(|| format!("cannot write {}", auto.display()))?;
    crate::durable::write_file(&dir.join("recovery.signal"), b"")
        .with_context(|| format!("cannot write {}/recovery.signal", dir.display()))?;
    // The backup's own (empty) pg_wal must exist; pg_basebackup -X none writes it, check anyway.
    std::fs::create_dir_all(dir.join("pg_wal/archive_status"))?;
    Ok(())
}

/// Where recovery ended, read from the promoted server.
pub struct Reached {
    /// `pg_last_xact_replay_timestamp()`: the commit time of the last transaction replayed.
    pub last_replayed: Option<String>,
    pub timeline: Option<String>,
    pub log: PathBuf,
}

/// Starts PostgreSQL on the restored directory (as `postgres` when drctl runs as root), waits
/// until recovery has finished and the server is promoted, and reads where it ended.
/// How to start the recovered server.
pub struct Start<'a> {
    pub datadir: &'a Path,
    pub major: u32,
    pub port: u16,
    pub pg_bin_dir: Option<&'a Path>,
    /// Files restore_command reads, which the server's user must be able to read.
    pub must_read: Vec<(&'static str, PathBuf)>,
    /// Variables of drctl's environment the server (its restore_command) gets.
    pub env: &'a [String],
    /// More `postgres` options (`-c archive_mode=off` for a verification).
    pub options: &'a str,
    /// The role to ask the recovered server as (`ClusterFacts::superuser`).
    pub superuser: Option<&'a str>,
}

impl Setup<'_> {
    /// The files `restore_command` reads: the identity and drctl's config.
    pub fn must_read(&self) -> Vec<(&'static str, PathBuf)> {
        [("the identity", self.identity.to_path_buf())]
            .into_iter()
            .chain(
                self.drctl
                    .windows(2)
                    .filter(|w| w[0] == "--config")
                    .map(|w| ("the config", PathBuf::from(&w[1]))),
            )
            .collect()
    }
}

pub async fn start(how: &Start<'_>) -> Result<Reached> {
    let dir = how.datadir;
    let port = how.port;
    let bin = |name: &str| super::basebackup::tool(how.pg_bin_dir, how.major, name);
    let run_as = crate::is_root().then(|| "postgres".to_string());
    if let Some(u) = &run_as {
        let mut chown = crate::process::command("chown");
        chown.arg("-R").arg(u).arg(dir);
        crate::process::run(chown, "chown").await?;
        // restore_command runs as that user: it must read drctl's config and the identity.
        for (what, p) in how.must_read.iter() {
            let mut test = crate::process::command_as(Some(u), "test");
            test.arg("-r").arg(p);
            if crate::process::run(test, "test -r").await.is_err() {
                bail!(
                    "the restored server runs as {u}, and its restore_command (drctl wal-fetch) must read {what} {}, which {u} cannot; copy it somewhere {u} owns (install -o {u} -m 600 …) and pass that path; the data directory is written, start it yourself when fixed",
                    p.display()
                );
            }
        }
    }
    let as_user = |prog: PathBuf| {
        let mut c = crate::process::command_as(run_as.as_deref(), prog);
        // restore_command (a child of the server) needs the variables drctl's config names
        // (storage credentials); nothing else of drctl's environment goes to the server.
        c.envs(
            how.env
                .iter()
                .filter_map(|k| std::env::var_os(k).map(|v| (k.clone(), v))),
        );
        c
    };
    let log = dir.join("drctl-recovery.log");
    let mut ctl = as_user(bin("pg_ctl"));
    ctl.arg("-D")
        .arg(dir)
        .arg("-l")
        .arg(&log)
        .arg("-o")
        .arg(format!(
            "-p {port} -k {} {}",
            sh_quote(&dir.to_string_lossy()),
            how.options
        ))
        .args(["-w", "-t", "3600", "start"]);
    // The server's own words, when it stops: the last lines of its log.
    let log_tail = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "the server's log ({}) ends with:\n{}",
            log.display(),
            lines[lines.len().saturating_sub(15)..].join("\n")
        )
    };
    if let Err(e) = crate::process::run(ctl, "pg_ctl start").await {
        bail!("{e:#}\n{}", log_tail());
    }
    let user = how.superuser.unwrap_or("postgres").to_string();
    let query = |sql: &'static str| {
        let mut c = as_user(bin("psql"));
        c.arg("-h")
            .arg(dir)
            .arg("-p")
            .arg(port.to_string())
            .args(["-U", &user, "-d", "postgres", "-X", "-A", "-t", "-q", "-c", sql]);
        async move { crate::process::run(c, "psql").await.map(|s| s.trim().to_string()) }
    };
    let t0 = std::time::Instant::now();
    loop {
        match query("select pg_is_in_recovery()").await {
            Ok(s) if s == "f" => break,
            Ok(_) => {}
            Err(e) => bail!("recovery did not finish: {e:#}\n{}", log_tail()),
        }
        if t0.elapsed() > std::time::Duration::from_secs(24 * 3600) {
            bail!("recovery is still running after 24 hours; see {}", log.display());
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let last_replayed = query("select pg_last_xact_replay_timestamp()")
        .await
        .ok()
        .filter(|s| !s.is_empty());
    let timeline = query("select timeline_id from pg_control_checkpoint()").await.ok();
    let _ = std::fs::remove_dir_all(dir.join("pg_wal/.drctl-prefetch"));
    Ok(Reached {
        last_replayed,
        timeline,
        log,
    })
}

/// `--output-dir`: the base backup as the tar pg_basebackup wrote (`tar -x` into an empty data
/// directory; then recovery as the README's "Point-in-time recovery by hand" says).
pub async fn restore_to_dir(
    dir: &Path,
    entry: &Entry,
    storages: &[Storage],
    identities: &Identities,
) -> Result<crate::sources::Restored> {
    let sub = dir.join(&entry.manifest.source);
    std::fs::create_dir_all(&sub)?;
    let dest = sub.join(format!("{}.base.tar", entry.manifest.id));
    if dest.exists() {
        bail!("{} exists; restore into a new or empty directory", dest.display());
    }
    crate::fetch::fetch_to_file(storages, entry, identities, &dest).await?;
    Ok(crate::sources::Restored::Wrote {
        path: dest,
        hint: Some(
            "a base backup: `tar -x -C DATADIR -f` it into an empty directory (mode 0700), then recover with restore_command = 'drctl wal-fetch --source NAME %f %p', or use restore --target-datadir".into(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_need_an_offset() {
        assert_eq!(parse_target("now").unwrap(), None);
        let t = parse_target("2026-12-01 17:04:30+01").unwrap().unwrap();
        assert_eq!(t.to_rfc3339(), "2026-12-01T16:04:30+00:00");
        assert!(parse_target("2026-12-01T16:04:30Z").unwrap().is_some());
        let e = parse_target("2026-12-01 17:04:30").unwrap_err().to_string();
        assert!(e.contains("no UTC offset") && e.contains("TimeZone"), "{e}");
        assert!(parse_target("yesterday").is_err());
    }

    #[test]
    fn recovery_settings_quote_for_the_shell_and_the_conf_file() {
        let setup = Setup {
            source: "app-cluster",
            datadir: Path::new("/x"),
            scratch_dir: Path::new("/tmp"),
            drctl: vec![
                "/usr/bin/drctl".into(),
                "--config".into(),
                "/etc/it's/drctl.toml".into(),
            ],
            identity: Path::new("/k/key.txt"),
            env: Vec::new(),
        };
        let t = parse_target("2026-12-01 17:04:30.25+01").unwrap();
        let s = recovery_settings(&setup, t);
        assert!(
            s.contains("restore_command = '/usr/bin/drctl --config ''/etc/it''\\''''s/drctl.toml'' wal-fetch --source app-cluster --identity /k/key.txt %f %p'"),
            "{s}"
        );
        assert!(
            s.contains("recovery_target_time = '2026-12-01 16:04:30.250000+00'"),
            "{s}"
        );
        assert!(!recovery_settings(&setup, None).contains("recovery_target_time ="));
        let old = "work_mem = '8MB'\nrestore_command = 'x'\nrecovery_target_time = 'y'\n";
        assert_eq!(strip_recovery_settings(old), "work_mem = '8MB'\n");
        let vars = referenced_vars("secret = \"${S3_SECRET}\"\nurl = \"${PG_URL:-x}\"\nx = \"${}\"");
        assert!(
            vars.contains(&"S3_SECRET".to_string()) && vars.contains(&"PG_URL".to_string()),
            "{vars:?}"
        );
    }
}
