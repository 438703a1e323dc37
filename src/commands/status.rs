//! `drctl status`.

use super::*;
use serde::Serialize;

/// Everything `status` shows, and the status page besides: the last backups of each source.
pub struct Snapshot {
    status: StatusOwned,
    /// Per source, its newest complete backups (up to [`HISTORY`]), oldest first.
    history: std::collections::BTreeMap<String, Vec<Point>>,
    /// Per source, the smallest `max_age` of the jobs that back it up.
    max_age: std::collections::HashMap<String, chrono::Duration>,
    at: chrono::DateTime<chrono::Utc>,
}

/// How many backups the status page charts per source (a month of nightly backups).
const HISTORY: usize = 30;

/// One backup on the chart.
struct Point {
    stored_bytes: u64,
    seconds: f64,
}

pub async fn snapshot(cfg: &Config) -> Result<Snapshot> {
    let state = crate::state::StateDir::new(cfg.daemon.state_dir());
    let storages = storage::select(&cfg.storages, None)?;
    let now = chrono::Utc::now();
    let mut newest: std::collections::BTreeMap<(String, String), catalog::Manifest> = Default::default();
    let mut last_verify: std::collections::HashMap<String, crate::verification::Record> = Default::default();
    let mut history: std::collections::BTreeMap<String, Vec<Point>> = Default::default();
    let mut seen = std::collections::HashSet::new();
    let mut storage_errors = Vec::new();
    for st in &storages {
        let listing = catalog::list(std::slice::from_ref(st), None).await;
        storage_errors.extend(listing.problems.iter().map(|p| (st.name.clone(), p.to_string())));
        for e in listing.entries {
            // Entries come newest first; a backup on two storages is charted once.
            let h = history.entry(e.manifest.source.clone()).or_default();
            if h.len() < HISTORY && seen.insert(e.manifest.id.clone()) {
                h.push(Point {
                    stored_bytes: e.manifest.stored.size,
                    seconds: (e.manifest.finished_at - e.manifest.started_at).num_milliseconds() as f64 / 1000.0,
                });
            }
            newest
                .entry((e.manifest.source.clone(), st.name.clone()))
                .or_insert(e.manifest);
        }
        for ((source, _), r) in crate::verification::records(st).await.unwrap_or_default() {
            if last_verify.get(&source).is_none_or(|old| old.at < r.at) {
                last_verify.insert(source, r);
            }
        }
    }
    for h in history.values_mut() {
        h.reverse();
    }
    let tz = *cfg.daemon.timezone.get();
    let mut rows = Vec::new();
    let mut max_age = std::collections::HashMap::new();
    for src in &cfg.sources {
        let s = state.load(src.name());
        let jobs: Vec<_> = cfg
            .jobs
            .iter()
            .filter(|j| cfg.job_sources(j).iter().any(|x| x.name() == src.name()))
            .collect();
        let next = jobs.iter().filter_map(|j| j.schedule.next_after(tz, now)).min();
        if let Some(m) = jobs.iter().filter_map(|j| j.max_age.as_ref().map(|m| m.chrono())).min() {
            max_age.insert(src.name().to_string(), m);
        }
        let per_storage = storages
            .iter()
            .map(|st| {
                let m = newest.get(&(src.name().to_string(), st.name.clone()));
                StorageRow {
                    age_seconds: m.map(|m| (now - m.started_at).num_seconds()),
                    newest_at: m.map(|m| m.started_at),
                    newest_id: m.map(|m| m.id.clone()),
                    storage: st.name.clone(),
                }
            })
            .collect();
        let wal = match src {
            crate::sources::SourceConfig::PostgresCluster(c) => {
                Some(crate::sources::postgres_cluster::status::archiving(c, &storages).await)
            }
            _ => None,
        };
        rows.push(Row {
            wal,
            last_failure: s.last_failure,
            last_prune_failure: s.last_prune_failure,
            last_success: s.last_success,
            last_verification: last_verify.get(src.name()).map(|r| Verification {
                at: r.at,
                backup_id: r.backup_id.clone(),
                failures: r.failures(),
                ok: r.ok,
                rto_seconds: r.rto_seconds,
            }),
            next_run: next,
            source: src.name().to_string(),
            storages: per_storage,
        });
    }
    Ok(Snapshot {
        status: StatusOwned {
            sources: rows,
            storage_errors,
        },
        history,
        max_age,
        at: now,
    })
}

pub(super) async fn status(cfg: &Config, a: &StatusArgs) -> Result<i32> {
    let snap = snapshot(cfg).await?;
    let (rows, storage_errors) = (&snap.status.sources, &snap.status.storage_errors);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&snap.status)?);
        return Ok(0);
    }
    for r in rows {
        println!("source '{}'", r.source);
        match &r.last_success {
            Some(o) => println!("  last success  {} ({})", iso(&o.at), o.id),
            None => println!("  last success  never (on this host)"),
        }
        if let Some(o) = &r.last_failure {
            println!("  last failure  {}: {}", iso(&o.at), o.error);
        }
        if let Some(o) = &r.last_prune_failure {
            println!("  prune FAILED  {}: {}", iso(&o.at), o.error);
        }
        for st in &r.storages {
            let age = st
                .age_seconds
                .map(|s| catalog::human_duration(chrono::Duration::seconds(s)));
            println!(
                "  storage {:<10} newest {}",
                st.storage,
                match age {
                    Some(a) => format!("{} ago ({})", a, st.newest_id.as_deref().unwrap_or_default()),
                    None => "none".into(),
                }
            );
        }
        if let Some(w) = &r.wal {
            for st in &w.storages {
                match (&st.newest, &st.error) {
                    (_, Some(e)) => println!("  WAL on {:<7} cannot be listed: {e}", st.storage),
                    (Some(n), None) => println!(
                        "  WAL on {:<7} newest {n}{}",
                        st.storage,
                        st.newest_at
                            .map(|t| format!(", archived {} ago", catalog::human_duration(snap.at - t)))
                            .unwrap_or_default()
                    ),
                    (None, None) => println!("  WAL on {:<7} none archived", st.storage),
                }
            }
            match (&w.server, &w.server_error) {
                (Some(s), _) => {
                    println!(
                        "  server        writing {}; {} complete segment(s) not yet on every storage",
                        s.current_wal,
                        s.segments_behind.map(|n| n.to_string()).unwrap_or_else(|| "?".into())
                    );
                    if s.failed_count > 0 {
                        println!(
                            "  archiving     {} failure(s), the last for {} at {}",
                            s.failed_count,
                            s.last_failed_wal.as_deref().unwrap_or("?"),
                            s.last_failed_at.as_deref().unwrap_or("?")
                        );
                    }
                }
                (None, Some(e)) => println!("  server        cannot be asked: {e}"),
                (None, None) => {}
            }
        }
        match &r.last_verification {
            Some(v) if v.ok => println!(
                "  verified      {} (backup {}, restore took {:.1}s)",
                iso(&v.at),
                v.backup_id,
                v.rto_seconds
            ),
            Some(v) => println!(
                "  verification  FAILED {}: {}",
                iso(&v.at),
                serde_json::to_string(&v.failures)?
            ),
            None => println!("  verified      never"),
        }
        match &r.next_run {
            Some(n) => println!("  next run      {}", iso(n)),
            None => println!("  next run      not scheduled (no [[job]] includes it)"),
        }
    }
    for (_, e) in storage_errors {
        println!("problem: {e}");
    }
    Ok(if storage_errors.is_empty() { 0 } else { 1 })
}

// What `status` reports, as `--json` prints it and the text output formats it. Fields are in
// alphabetical order because that is the key order `--json` has always had (it used to go
// through `serde_json::Value`, whose maps sort their keys); keep it so scripts diffing the
// output see no change.

#[derive(Serialize)]
struct StatusOwned {
    sources: Vec<Row>,
    /// (storage, error) pairs, printed as two-element arrays.
    storage_errors: Vec<(String, String)>,
}

/// One configured source.
#[derive(Serialize)]
struct Row {
    /// Only this host's runs: the state directory is local.
    last_failure: Option<crate::state::Failure>,
    /// The last prune after a backup failed on this host (absent once one succeeds).
    #[serde(skip_serializing_if = "Option::is_none")]
    last_prune_failure: Option<crate::state::Failure>,
    last_success: Option<crate::state::Success>,
    /// The newest verification record of any of the source's backups, on any storage.
    last_verification: Option<Verification>,
    next_run: Option<chrono::DateTime<chrono::Utc>>,
    source: String,
    storages: Vec<StorageRow>,
    /// postgres_cluster sources: the WAL archive against the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    wal: Option<crate::sources::postgres_cluster::status::WalStatus>,
}

/// The source's newest backup on one storage; all `None` when it has none there.
#[derive(Serialize)]
struct StorageRow {
    age_seconds: Option<i64>,
    newest_at: Option<chrono::DateTime<chrono::Utc>>,
    newest_id: Option<String>,
    storage: String,
}

#[derive(Serialize)]
struct Verification {
    at: chrono::DateTime<chrono::Utc>,
    backup_id: String,
    failures: Vec<String>,
    ok: bool,
    rto_seconds: f64,
}

/// A time as the text output shows it: exactly the form serde gives it in `--json`.
fn iso(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

impl Snapshot {
    /// `GET /status.json`: what `drctl status --json` prints.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(&self.status).expect("status serializes")
    }

    /// `GET /`: one small page, no script, no external asset. Nothing secret is on it: source
    /// and storage names, backup ids, times, sizes, and errors as `drctl status` shows them.
    pub fn html(&self) -> String {
        let mut o = String::new();
        o.push_str(concat!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
            "<meta http-equiv=\"refresh\" content=\"60\"><title>drctl status</title><style>",
            "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222;max-width:72em}",
            "table{border-collapse:collapse;margin:.5em 0}td,th{padding:.2em .8em;text-align:left;border-bottom:1px solid #ddd}",
            ".stale,.fail{color:#b00020;font-weight:bold}.ok{color:#1b7f3b}section{margin-bottom:2em}",
            "small{color:#666}svg{background:#fafafa;border:1px solid #eee}",
            "</style></head><body>"
        ));
        o.push_str(&format!(
            "<h1>drctl status</h1><p><small>{} — refreshes every minute; <a href=\"status.json\">status.json</a>, <a href=\"metrics\">metrics</a></small></p>",
            iso(&self.at)
        ));
        for r in &self.status.sources {
            let max_age = self.max_age.get(&r.source);
            o.push_str(&format!(
                "<section id=\"source-{0}\"><h2>{0}</h2><table>",
                esc(&r.source)
            ));
            for st in &r.storages {
                let (cell, class) = match st.age_seconds {
                    Some(a) => {
                        let stale = max_age.is_some_and(|m| a > m.num_seconds());
                        (
                            format!(
                                "{} ago <small>{}</small>{}",
                                catalog::human_duration(chrono::Duration::seconds(a)),
                                esc(st.newest_id.as_deref().unwrap_or_default()),
                                match (stale, max_age) {
                                    (true, Some(m)) => format!(" — older than max_age {}", catalog::human_duration(*m)),
                                    _ => String::new(),
                                }
                            ),
                            if stale { "stale" } else { "ok" },
                        )
                    }
                    None => ("no backup".into(), if max_age.is_some() { "stale" } else { "" }),
                };
                o.push_str(&format!(
                    "<tr><th>newest on {}</th><td class=\"{class}\">{cell}</td></tr>",
                    esc(&st.storage)
                ));
            }
            let failing = match (&r.last_failure, &r.last_success) {
                (Some(f), Some(s)) => f.at > s.at,
                (Some(_), None) => true,
                _ => false,
            };
            match &r.last_success {
                Some(s) => o.push_str(&format!(
                    "<tr><th>last success</th><td>{} <small>{} stored in {:.1}s</small></td></tr>",
                    iso(&s.at),
                    catalog::human_bytes(s.stored_bytes),
                    s.duration_seconds
                )),
                None => o.push_str("<tr><th>last success</th><td>never (on this host)</td></tr>"),
            }
            if let Some(f) = &r.last_failure {
                o.push_str(&format!(
                    "<tr><th>last failure</th><td class=\"{}\">{}: {}</td></tr>",
                    if failing { "fail" } else { "" },
                    iso(&f.at),
                    esc(&f.error)
                ));
            }
            match &r.last_verification {
                Some(v) if v.ok => o.push_str(&format!(
                    "<tr><th>verified</th><td class=\"ok\">passed {} <small>backup {}, restore took {:.1}s</small></td></tr>",
                    iso(&v.at),
                    esc(&v.backup_id),
                    v.rto_seconds
                )),
                Some(v) => o.push_str(&format!(
                    "<tr><th>verified</th><td class=\"fail\">FAILED {}: {}</td></tr>",
                    iso(&v.at),
                    esc(&v.failures.join("; "))
                )),
                None => o.push_str("<tr><th>verified</th><td>never</td></tr>"),
            }
            o.push_str(&format!(
                "<tr><th>next run</th><td>{}</td></tr></table>",
                r.next_run.map(|n| iso(&n)).unwrap_or_else(|| "not scheduled".into())
            ));
            o.push_str(&chart(
                self.history.get(&r.source).map(Vec::as_slice).unwrap_or_default(),
            ));
            o.push_str("</section>");
        }
        for (st, e) in &self.status.storage_errors {
            o.push_str(&format!("<p class=\"fail\">storage {}: {}</p>", esc(st), esc(e)));
        }
        o.push_str("</body></html>\n");
        o
    }
}

/// The last backups as an inline SVG: stored size as bars, duration as a line.
fn chart(points: &[Point]) -> String {
    if points.is_empty() {
        return "<p><small>no backups to chart</small></p>".into();
    }
    let (w, h, pad) = (600.0, 120.0, 4.0);
    let max_b = points.iter().map(|p| p.stored_bytes).max().unwrap_or(1).max(1) as f64;
    let max_s = points.iter().map(|p| p.seconds).fold(0.0_f64, f64::max).max(0.001);
    // A slot per backup of a full chart: a month of nightly backups fills it, fewer start left.
    let step = (w - 2.0 * pad) / points.len().max(HISTORY) as f64;
    let mut o = format!(
        "<svg class=\"history\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"last {} backups: stored size (bars, max {}) and duration (line, max {:.1}s)\">",
        points.len(),
        catalog::human_bytes(max_b as u64),
        max_s
    );
    for (i, p) in points.iter().enumerate() {
        let bh = (p.stored_bytes as f64 / max_b) * (h - 2.0 * pad);
        o.push_str(&format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#8ab4f8\"><title>{} stored, {:.1}s</title></rect>",
            pad + i as f64 * step + step * 0.1,
            h - pad - bh,
            step * 0.8,
            bh,
            catalog::human_bytes(p.stored_bytes),
            p.seconds
        ));
    }
    let line: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "{:.1},{:.1}",
                pad + i as f64 * step + step / 2.0,
                h - pad - (p.seconds / max_s) * (h - 2.0 * pad)
            )
        })
        .collect();
    o.push_str(&format!(
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#e37400\" stroke-width=\"2\"/></svg>",
        line.join(" ")
    ));
    o.push_str(&format!(
        "<p><small>last {} backups, oldest left: bars stored size (max {}), line duration (max {:.1}s)</small></p>",
        points.len(),
        catalog::human_bytes(max_b as u64),
        max_s
    ));
    o
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// What the daemon's `/` and `/status.json` serve, computed per request from the config the
/// daemon runs with.
pub fn page(cfg: std::sync::Arc<Config>) -> futures::future::BoxFuture<'static, crate::metrics::Page> {
    Box::pin(async move {
        match snapshot(&cfg).await {
            Ok(s) => crate::metrics::Page {
                html: s.html(),
                json: s.json(),
            },
            Err(e) => {
                let msg = format!("{e:#}");
                crate::metrics::Page {
                    html: format!(
                        "<!doctype html><title>drctl status</title><p>cannot read the status: {}</p>",
                        esc(&msg)
                    ),
                    json: serde_json::json!({ "error": msg }).to_string(),
                }
            }
        }
    })
}
