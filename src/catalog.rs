//! Manifests: what a backup is, how its objects are named (keys: `layout.rs`), listing across
//! storages and picking one by time.
//!
//! A manifest is written only after every byte of the data object is stored and its size
//! confirmed, so a listing never shows a backup that is not all there.

use crate::config::Algorithm;
use crate::sources::{Facts, Kind};
use crate::storage::Storage;
use anyhow::{anyhow, bail, Result};
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Digest {
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Compression {
    pub algorithm: Algorithm,
    pub level: i32,
}

pub use crate::storage::Object;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format_version: u32,
    pub id: String,
    pub run_id: String,
    pub source: String,
    /// `"kind"` and `"facts"` in the JSON: what was dumped and what the source recorded about
    /// it (server and tool versions, counts, hashes), one typed struct per kind.
    #[serde(flatten)]
    pub facts: Facts,
    /// The recovery point: the dump's snapshot is taken when it starts.
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub drctl_version: String,
    /// The dump as the source produced it.
    pub plain: Digest,
    /// The bytes in storage (after compression and encryption).
    pub stored: Digest,
    pub compression: Compression,
    pub recipients: Vec<String>,
    pub objects: Vec<Object>,
    /// The storages this backup was written to in its run.
    pub storages: Vec<String>,
    /// The source's retention policy when it was backed up, so that a prune host whose config
    /// does not define the source still applies the right one (absent before 0.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<crate::retention::Policy>,
    /// The facts that describe the data itself (per-file SHA-256, table names and row counts),
    /// age-encrypted to the recipients in ASCII armor: a reader of the bucket cannot test
    /// guesses at a small secret against a file's hash. Verification opens it with the identity
    /// (`open_private`); by hand: `jq -r .private M.json | age -d -i key.txt`. Manifests before
    /// 0.2 carry these facts in `facts` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private: Option<String>,
}

impl Manifest {
    pub fn kind(&self) -> Kind {
        self.facts.kind()
    }

    /// Moves the facts that describe the data out of `facts` into `private`, encrypted to
    /// `recipients`.
    pub fn seal_private(&mut self, recipients: &[&age::x25519::Recipient]) -> Result<()> {
        if let Some(p) = self.facts.take_private() {
            let json = serde_json::to_vec(&p)?;
            self.private = Some(crate::keys::seal_text(recipients, &json)?);
        }
        Ok(())
    }

    /// Puts the private facts back into `facts` (a no-op for manifests that have none).
    pub fn open_private(&mut self, identities: &crate::keys::Identities) -> Result<()> {
        let Some(text) = self.private.take() else {
            return Ok(());
        };
        let json = crate::keys::open_text(identities, &text)
            .map_err(|e| anyhow!("the private facts of backup {} of '{}': {e:#}", self.id, self.source))?;
        let v: serde_json::Value = serde_json::from_slice(&json).map_err(|e| {
            anyhow!(
                "the private facts of backup {} of '{}' are not valid ({e})",
                self.id,
                self.source
            )
        })?;
        self.facts.put_private(v)
    }
}

pub fn data_key(source: &str, id: &str, format: &str, alg: Algorithm) -> String {
    crate::layout::data_key(source, id, format, alg.suffix())
}

pub use crate::layout::manifest_key;

/// A backup as seen across storages: one manifest, and where it is.
#[derive(Debug, Clone)]
pub struct Entry {
    pub manifest: Manifest,
    pub storages: Vec<String>,
    /// Each storage's own object list (parts on storages that cannot stream).
    pub objects: BTreeMap<String, Vec<Object>>,
}

impl Entry {
    pub fn objects_on(&self, storage: &str) -> &[Object] {
        self.objects
            .get(storage)
            .map(Vec::as_slice)
            .unwrap_or(&self.manifest.objects)
    }
}

/// What `list` read: every backup it could, and what it could not read. One storage that is
/// down, or one damaged manifest, never hides the backups the others hold.
#[derive(Debug, Default)]
pub struct Listing {
    pub entries: Vec<Entry>,
    pub problems: Vec<Problem>,
}

/// Something `list` could not read, named so the operator can find it.
#[derive(Debug, Clone)]
pub enum Problem {
    /// The storage could not be listed at all.
    Storage { storage: String, error: String },
    /// One manifest could not be read or parsed; its backup is unknown, not absent.
    Manifest {
        storage: String,
        key: String,
        error: String,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Storage { storage, error } => write!(
                f,
                "storage '{storage}' was skipped: {error} (the other storages were read)"
            ),
            Problem::Manifest { storage, key, error } => write!(
                f,
                "storage '{storage}': manifest {key} was skipped: {error} (move it aside or copy it from another storage; `drctl check` lists such problems)"
            ),
        }
    }
}

impl Problem {
    pub fn storage(&self) -> &str {
        match self {
            Problem::Storage { storage, .. } | Problem::Manifest { storage, .. } => storage,
        }
    }
}

impl Listing {
    /// The problems as one error, for commands that cannot go on without every storage.
    pub fn into_result(self) -> Result<Vec<Entry>> {
        match self.problems.first() {
            None => Ok(self.entries),
            Some(p) => Err(anyhow!("{p}")),
        }
    }

    /// Whether a storage could be listed (its manifests may still be partly unreadable).
    pub fn storage_failed(&self, storage: &str) -> bool {
        self.problems
            .iter()
            .any(|p| matches!(p, Problem::Storage { storage: s, .. } if s == storage))
    }

    /// (source, id) of the backups on `storage` whose manifest could not be read: their data
    /// must be treated as referenced, never as orphans.
    pub fn unreadable_backups(&self, storage: &str) -> std::collections::HashSet<(&str, &str)> {
        self.problems
            .iter()
            .filter_map(|p| match p {
                Problem::Manifest { storage: s, key, .. } if s == storage => crate::layout::parse_manifest_key(key),
                _ => None,
            })
            .collect()
    }
}

/// " (not read: …)", for an error saying a backup was not found: it may be where we could not look.
pub fn unread_note(problems: &[Problem]) -> String {
    if problems.is_empty() {
        return String::new();
    }
    let p: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    format!("; not read: {}", p.join("; "))
}

/// A storage's copy of one source's manifests, `index/<source>.json`, so that picking among
/// thousands of backups costs a listing and one read instead of a read per backup. The
/// manifests stay the truth: an entry is used only while the listing shows its manifest with
/// the size recorded here; a manifest that is new, changed or missing from the index is read
/// itself, and an entry whose manifest is gone is ignored. A stale or lost index costs reads,
/// never correctness, and a crash between a manifest and its index loses nothing. Written by
/// the commands that change manifests (backup, prune, copy); `private` facts are not copied.
#[derive(Debug, Serialize, Deserialize)]
struct Index {
    format_version: u32,
    source: String,
    entries: Vec<IndexEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct IndexEntry {
    /// The manifest object's size when indexed: a manifest rewritten or damaged since then
    /// (another size in the listing) is read again.
    size: u64,
    manifest: Manifest,
}

/// How `list_with` reads a storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// Index entries where they match the listing, the manifests themselves for the rest.
    Index,
    /// Every manifest itself (`drctl check`).
    Manifests,
}

/// Manifests read at once from one storage.
const FETCH_CONCURRENCY: usize = 16;

/// Reads every manifest from every storage (through each storage's index), each storage and
/// each manifest on its own: what cannot be read is reported in `problems`, and the rest is
/// listed.
pub async fn list(storages: &[Storage], source: Option<&str>) -> Listing {
    list_with(storages, source, Read::Index).await
}

pub async fn list_with(storages: &[Storage], source: Option<&str>, how: Read) -> Listing {
    let mut by_key: BTreeMap<(String, String), Entry> = BTreeMap::new();
    let mut problems = Vec::new();
    for st in storages {
        let found = match read_storage(st, source, how, &mut problems).await {
            Ok(f) => f,
            Err(e) => {
                problems.push(Problem::Storage {
                    storage: st.name.clone(),
                    error: format!("{e:#}"),
                });
                continue;
            }
        };
        for (m, _) in found {
            let objects = m.objects.clone();
            let e = by_key.entry((m.source.clone(), m.id.clone())).or_insert(Entry {
                manifest: m,
                storages: Vec::new(),
                objects: BTreeMap::new(),
            });
            e.storages.push(st.name.clone());
            e.objects.insert(st.name.clone(), objects);
        }
    }
    let mut v: Vec<Entry> = by_key.into_values().collect();
    v.sort_by(|a, b| {
        b.manifest
            .started_at
            .cmp(&a.manifest.started_at)
            .then(b.manifest.id.cmp(&a.manifest.id))
    });
    Listing { entries: v, problems }
}

/// One storage's manifests, each with the size of its object; unreadable ones go to `problems`.
async fn read_storage(
    st: &Storage,
    source: Option<&str>,
    how: Read,
    problems: &mut Vec<Problem>,
) -> Result<Vec<(Manifest, u64)>> {
    use futures::StreamExt;
    let keys: Vec<(String, u64)> = st
        .list_sized(&crate::layout::manifest_prefix(source))
        .await?
        .into_iter()
        .filter(|(k, _)| k.ends_with(".json"))
        .collect();
    let mut cached: std::collections::HashMap<(String, String), IndexEntry> = Default::default();
    if how == Read::Index {
        let sources: std::collections::BTreeSet<&str> = keys
            .iter()
            .filter_map(|(k, _)| crate::layout::parse_manifest_key(k).map(|(s, _)| s))
            .collect();
        for s in sources {
            for e in read_index(st, s).await {
                cached.insert((e.manifest.source.clone(), e.manifest.id.clone()), e);
            }
        }
    }
    let mut found = Vec::new();
    let mut fetch = Vec::new();
    for (key, size) in keys {
        let hit = crate::layout::parse_manifest_key(&key)
            .and_then(|(s, id)| cached.remove(&(s.to_string(), id.to_string())))
            .filter(|e| e.size == size);
        match hit {
            Some(e) => found.push((e.manifest, size)),
            None => fetch.push((key, size)),
        }
    }
    let read: Vec<_> = futures::stream::iter(fetch)
        .map(|(key, size)| async move {
            let r = st.get(&key).await;
            (key, size, r)
        })
        .buffer_unordered(FETCH_CONCURRENCY)
        .collect()
        .await;
    for (key, size, r) in read {
        match r.map(|bytes| serde_json::from_slice::<Manifest>(&bytes)) {
            Ok(Ok(m)) => found.push((m, size)),
            Ok(Err(e)) => problems.push(Problem::Manifest {
                storage: st.name.clone(),
                key,
                error: format!("not a valid manifest ({e})"),
            }),
            Err(e) => problems.push(Problem::Manifest {
                storage: st.name.clone(),
                key,
                error: format!("{e:#}"),
            }),
        }
    }
    Ok(found)
}

/// The index entries of `source` on `st`; none when it is missing or unreadable (the
/// manifests are then read one by one, as without an index).
async fn read_index(st: &Storage, source: &str) -> Vec<IndexEntry> {
    let key = crate::layout::index_key(source);
    let bytes = match st.op.read(&key).await {
        Ok(b) => b.to_vec(),
        Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::debug!(storage = %st.name, key, error = %e, "index unreadable; reading the manifests");
            return Vec::new();
        }
    };
    match serde_json::from_slice::<Index>(&bytes) {
        Ok(ix) if ix.source == source => ix.entries,
        Ok(_) => Vec::new(),
        Err(e) => {
            tracing::debug!(storage = %st.name, key, error = %e, "index not valid; reading the manifests");
            Vec::new()
        }
    }
}

/// Rewrites `index/<source>.json` on `st` from the manifests there (reading only those the old
/// index does not hold). Best-effort for callers: a failure only costs later readers reads.
pub async fn update_index(st: &Storage, source: &str) -> Result<()> {
    let mut problems = Vec::new();
    let found = read_storage(st, Some(source), Read::Index, &mut problems).await?;
    let mut entries: Vec<IndexEntry> = found
        .into_iter()
        .map(|(mut manifest, size)| {
            manifest.private = None;
            IndexEntry { size, manifest }
        })
        .collect();
    entries.sort_by(|a, b| (a.manifest.started_at, &a.manifest.id).cmp(&(b.manifest.started_at, &b.manifest.id)));
    let ix = Index {
        format_version: FORMAT_VERSION,
        source: source.to_string(),
        entries,
    };
    st.put(&crate::layout::index_key(source), serde_json::to_vec(&ix)?)
        .await
}

/// Replaces an entry's manifest (perhaps from an index) by the manifest object itself, read
/// from the first storage that holds the backup: what a restore or verification acts on.
pub async fn reload(storages: &[Storage], entry: &mut Entry) -> Result<()> {
    let key = manifest_key(&entry.manifest.source, &entry.manifest.id);
    let mut errors = Vec::new();
    for st in storages.iter().filter(|s| entry.storages.contains(&s.name)) {
        match st
            .get(&key)
            .await
            .and_then(|b| Ok(serde_json::from_slice::<Manifest>(&b)?))
        {
            Ok(m) => {
                entry.objects.insert(st.name.clone(), m.objects.clone());
                entry.manifest = m;
                return Ok(());
            }
            Err(e) => errors.push(format!("storage '{}': {e:#}", st.name)),
        }
    }
    bail!(
        "the manifest {key} cannot be read on any storage that holds it: {}",
        errors.join("; ")
    )
}

/// Newest backup of `source` whose recovery point is at or before `at`.
pub fn pick<'a>(entries: &'a [Entry], source: &str, at: DateTime<Utc>) -> Option<&'a Entry> {
    entries
        .iter()
        .filter(|e| e.manifest.source == source && e.manifest.started_at <= at)
        .max_by(|a, b| {
            a.manifest
                .started_at
                .cmp(&b.manifest.started_at)
                .then(a.manifest.id.cmp(&b.manifest.id))
        })
}

/// TIME for `--at`: RFC 3339, `YYYY-MM-DD` (end of that day is *not* implied: midnight),
/// `YYYY-MM-DD HH:MM[:SS]` (UTC unless an offset is given), or `now`.
pub fn parse_time(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&Utc));
    }
    for f in [
        "%Y-%m-%d %H:%M:%S%:z",
        "%Y-%m-%d %H:%M%:z",
        "%Y-%m-%dT%H:%M%:z",
        "%Y-%m-%d %H:%M:%S %z",
        "%Y-%m-%d %H:%M %z",
    ] {
        if let Ok(d) = DateTime::parse_from_str(t, f) {
            return Ok(d.with_timezone(&Utc));
        }
    }
    for f in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(d) = NaiveDateTime::parse_from_str(t, f) {
            return Ok(Utc.from_utc_datetime(&d));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight exists")));
    }
    bail!(
        "cannot read time '{s}'; use RFC 3339 (2026-11-20T03:00:00Z), 'YYYY-MM-DD', 'YYYY-MM-DD HH:MM[:SS]' (UTC unless an offset like +01:00 follows) or 'now'"
    )
}

/// "2h 13m", "3d 4h", "12s" — the data-loss window.
pub fn human_duration(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    let (days, h, m, sec) = (s / 86400, (s % 86400) / 3600, (s % 3600) / 60, s % 60);
    if days > 0 {
        format!("{days}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {sec}s")
    } else {
        format!("{sec}s")
    }
}

pub fn human_bytes(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn time_formats() {
        let now = t("2026-11-23T10:00:00Z");
        assert_eq!(parse_time("now", now).unwrap(), now);
        assert_eq!(
            parse_time("2026-11-20T03:00:00+01:00", now).unwrap(),
            t("2026-11-20T02:00:00Z")
        );
        assert_eq!(parse_time("2026-11-20", now).unwrap(), t("2026-11-20T00:00:00Z"));
        assert_eq!(parse_time("2026-11-20 03:04", now).unwrap(), t("2026-11-20T03:04:00Z"));
        assert_eq!(
            parse_time("2026-11-20 03:04:05", now).unwrap(),
            t("2026-11-20T03:04:05Z")
        );
        assert_eq!(
            parse_time("2026-11-20 03:04:05+02:00", now).unwrap(),
            t("2026-11-20T01:04:05Z")
        );
        let e = parse_time("yesterday", now).unwrap_err().to_string();
        assert!(e.contains("'yesterday'") && e.contains("RFC 3339"), "{e}");
    }

    fn entry(source: &str, id: &str, at: &str) -> Entry {
        Entry {
            manifest: Manifest {
                format_version: 1,
                id: id.into(),
                run_id: id.into(),
                source: source.into(),
                facts: Facts::Postgres(Default::default()),
                started_at: t(at),
                finished_at: t(at),
                drctl_version: "0".into(),
                plain: Digest {
                    size: 0,
                    sha256: String::new(),
                },
                stored: Digest {
                    size: 0,
                    sha256: String::new(),
                },
                compression: Compression {
                    algorithm: Algorithm::Zstd,
                    level: 3,
                },
                recipients: vec![],
                objects: vec![],
                storages: vec![],
                retention: None,
                private: None,
            },
            storages: vec!["local".into()],
            objects: BTreeMap::new(),
        }
    }

    #[test]
    fn pick_newest_at_or_before() {
        let es = vec![
            entry("db", "a", "2026-11-20T01:00:00Z"),
            entry("db", "b", "2026-11-21T01:00:00Z"),
            entry("other", "c", "2026-11-21T00:30:00Z"),
        ];
        assert_eq!(pick(&es, "db", t("2026-11-21T00:59:59Z")).unwrap().manifest.id, "a");
        assert_eq!(pick(&es, "db", t("2026-11-21T01:00:00Z")).unwrap().manifest.id, "b");
        assert!(pick(&es, "db", t("2026-11-19T00:00:00Z")).is_none());
        assert_eq!(human_duration(chrono::Duration::seconds(3 * 3600 + 120)), "3h 2m");
    }
}
