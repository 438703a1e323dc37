//! The WAL archive on storage: what `archive_command` (`drctl wal-push`) stores and what
//! `restore_command` (`drctl wal-fetch`) reads back. Keys are in `layout.rs`:
//! `wal/<source>/<TLI>/<file>.zst.age` (the file, through the same zstd + age pass as every
//! backup) and `<file>.json` beside it, written last: a file is archived when its record is
//! there. `wal/<source>/archive.json` names the cluster the archive belongs to; a segment of
//! any other cluster is refused.
//!
//! The contract PostgreSQL relies on (see `../shared/notes/pitr-anchors.md` for where the
//! anchors broke it):
//! * push never overwrites: a file already archived with the same content is success (the
//!   archiver retries after a crash), different content is an error, and the stored copy stays;
//! * push succeeds only when every storage holds the file and its record;
//! * fetch says "not there" only when every storage answered that it is not there; any other
//!   failure is an error the caller must not mistake for the end of the archive.

use super::wal::{SegmentHeader, WalFile};
use crate::catalog::{Compression, Digest, Object};
use crate::config::Config;
use crate::keys::Identities;
use crate::layout;
use crate::pipeline::{self, Item, Target};
use crate::storage::Storage;
use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use std::path::Path;
use tokio_util::sync::CancellationToken;

/// `wal/<source>/archive.json`: the cluster whose WAL this is, fixed by the first segment pushed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchiveInfo {
    /// `pg_control_system().system_identifier`, as a decimal string (it does not fit JSON numbers).
    pub system_identifier: String,
    pub major: u32,
    pub segment_size: u64,
    pub created_at: DateTime<Utc>,
}

/// `<file>.json`: one archived WAL file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub file: String,
    pub timeline: u32,
    pub plain: Digest,
    pub stored: Digest,
    pub compression: Compression,
    pub recipients: Vec<String>,
    pub objects: Vec<Object>,
    pub pushed_at: DateTime<Utc>,
    pub drctl_version: String,
    /// A timeline history file's lines, also here in the clear (which timeline forked where;
    /// no data): the chain checks of `restore`, `check` and `wal-verify` need no identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<super::wal::Branch>>,
}

impl Record {
    pub fn item<'a>(&'a self, source: &'a str) -> Item<'a> {
        Item {
            what: "WAL file",
            id: &self.file,
            source,
            plain: &self.plain,
            stored: &self.stored,
            algorithm: self.compression.algorithm,
            recipients: &self.recipients,
        }
    }
}

/// Errors a caller branches on.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("WAL file {file} of '{source_name}' is already archived with different content (stored SHA-256 {stored}, this file {local}); the archived copy is kept. Another cluster, or a restored copy of this one, is archiving into the same place: give it its own source name")]
    Different {
        file: String,
        source_name: String,
        stored: String,
        local: String,
    },
    #[error("{file} is from another cluster (system identifier {got}, PostgreSQL {got_major}), but the archive of '{source_name}' belongs to system identifier {want} (PostgreSQL {want_major}); point this cluster's archive_command at a source of its own")]
    OtherCluster {
        file: String,
        source_name: String,
        got: u64,
        got_major: String,
        want: String,
        want_major: u32,
    },
}

/// What a push did.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Stored {
        bytes: u64,
    },
    /// Archived earlier with the same content (the archiver retried after a crash).
    AlreadyArchived,
}

/// The segment header of `path`, if it is a segment (history and backup-label files have none).
fn read_header(path: &Path) -> Result<SegmentHeader> {
    use std::io::Read;
    let mut b = [0u8; 40];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut b))
        .with_context(|| format!("cannot read {}", path.display()))?;
    SegmentHeader::parse(&b).ok_or_else(|| {
        anyhow!(
            "{} does not start with a WAL segment header; it is not a WAL segment",
            path.display()
        )
    })
}

fn sha256_file(path: &Path) -> Result<Digest> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok(Digest {
        size,
        sha256: hex::encode(h.finalize()),
    })
}

async fn get_json<T: serde::de::DeserializeOwned>(st: &Storage, key: &str) -> Result<Option<T>> {
    match st.op.read(key).await {
        Ok(b) => Ok(Some(serde_json::from_slice(&b.to_vec()).with_context(|| {
            format!("storage '{}': {key} is not valid (damaged?)", st.name)
        })?)),
        Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context(format!("storage '{}': cannot read {key}", st.name))),
    }
}

/// Reads `archive.json` from every storage that has one; they must agree.
pub async fn archive_info(source: &str, storages: &[Storage]) -> Result<Option<ArchiveInfo>> {
    Ok(archive_infos(source, storages).await?.0)
}

/// [`archive_info`], and the storages (indexes) that have none yet.
async fn archive_infos(source: &str, storages: &[Storage]) -> Result<(Option<ArchiveInfo>, Vec<usize>)> {
    let mut found: Option<ArchiveInfo> = None;
    let mut lacking = Vec::new();
    for (i, st) in storages.iter().enumerate() {
        let Some(info) = get_json::<ArchiveInfo>(st, &layout::wal_archive_key(source)).await? else {
            lacking.push(i);
            continue;
        };
        if let Some(f) = &found {
            if f.system_identifier != info.system_identifier {
                bail!(
                    "the WAL archives of '{source}' disagree: storage '{}' holds cluster {}, another holds {}; they are archives of different clusters",
                    st.name,
                    info.system_identifier,
                    f.system_identifier
                );
            }
        }
        found = Some(info);
    }
    Ok((found, lacking))
}

/// Archives the file at `path` (PostgreSQL's `%p`) on every storage. See the module docs for
/// the contract.
pub async fn push(cfg: &Config, source: &str, storages: &[Storage], path: &Path) -> Result<Pushed> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow!("{} has no file name", path.display()))?;
    let file = WalFile::parse(name).ok_or_else(|| {
        anyhow!("'{name}' is not a WAL file name (a segment, NNNNNNNN.history, .backup or .partial); archive_command must pass %p")
    })?;
    let timeline = file.timeline();
    let header = match &file {
        WalFile::Segment(_) | WalFile::Partial(_) => Some(read_header(path)?),
        WalFile::History(_) | WalFile::BackupLabel(_) => None,
    };
    if let (Some(h), WalFile::Segment(n)) = (&header, &file) {
        // A segment renamed or copied over another would otherwise be archived under a name
        // that is not its own.
        let seg_size = h.segment_size as u64;
        let named = super::wal::Segment::parse(n, seg_size)
            .ok_or_else(|| anyhow!("'{n}' is not a segment name for {seg_size}-byte segments"))?;
        // The first segment of a new timeline starts as a copy of its parent's, so its first
        // page may carry an older timeline; never a newer one.
        if h.timeline > named.timeline || h.page_address != named.start(seg_size).0 {
            bail!(
                "{} holds timeline {} at {} but is named {n}: the file is not the segment its name says",
                path.display(),
                h.timeline,
                super::wal::Lsn(h.page_address)
            );
        }
    }
    // The archive belongs to one cluster.
    let (info, lacking) = archive_infos(source, storages).await?;
    if let Some(h) = &header {
        match &info {
            Some(i) if i.system_identifier != h.system_identifier.to_string() => {
                return Err(PushError::OtherCluster {
                    file: name.to_string(),
                    source_name: source.to_string(),
                    got: h.system_identifier,
                    got_major: h.major().map(|m| m.to_string()).unwrap_or_else(|| "?".into()),
                    want: i.system_identifier.clone(),
                    want_major: i.major,
                }
                .into())
            }
            _ => {}
        }
    }
    let history = match &file {
        WalFile::History(_) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            Some(super::wal::parse_history(&text).map_err(|e| anyhow!("{name} is not a timeline history file: {e}"))?)
        }
        _ => None,
    };
    let local = sha256_file(path)?;
    let record_key = layout::wal_record_key(source, timeline, name);
    // Already archived? Everywhere with the same content is done; different content anywhere
    // is refused; storages that lack it get it.
    let mut missing: Vec<Storage> = Vec::new();
    for st in storages {
        match get_json::<Record>(st, &record_key).await? {
            Some(r) if r.plain == local => {}
            Some(r) => {
                return Err(PushError::Different {
                    file: name.to_string(),
                    source_name: source.to_string(),
                    stored: r.plain.sha256,
                    local: local.sha256,
                }
                .into())
            }
            None => missing.push(st.clone()),
        }
    }
    if missing.is_empty() {
        return Ok(Pushed::AlreadyArchived);
    }
    // The identity goes on every storage that lacks it (a new archive, or a storage added later).
    let identity = match (&info, &header) {
        (Some(i), _) => Some(i.clone()),
        (None, Some(h)) => Some(ArchiveInfo {
            system_identifier: h.system_identifier.to_string(),
            major: h.major().ok_or_else(|| {
                anyhow!(
                    "{name} has WAL page magic {:#06X}, which this drctl does not know (a newer PostgreSQL?); upgrade drctl",
                    h.magic
                )
            })?,
            segment_size: h.segment_size as u64,
            created_at: Utc::now(),
        }),
        (None, None) => None,
    };
    if let Some(identity) = &identity {
        for i in &lacking {
            storages[*i]
                .put(&layout::wal_archive_key(source), serde_json::to_vec_pretty(identity)?)
                .await?;
        }
    }

    let key = layout::wal_data_key(source, timeline, name, cfg.compression.algorithm.suffix());
    let mut targets = Vec::new();
    for st in &missing {
        let writer = match st.sink(&key).await {
            Ok(w) => w,
            Err(e) => {
                abort(&mut targets).await;
                return Err(e);
            }
        };
        targets.push(Target {
            storage: st.clone(),
            writer,
            failed: None,
            key: key.clone(),
        });
    }
    let reader = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot read {}", path.display()))?;
    let recipients = cfg.encryption.recipients.iter().map(|r| r.get().clone()).collect();
    let sealed = match pipeline::seal_into(
        Box::new(reader),
        cfg.compression,
        recipients,
        &mut targets,
        &CancellationToken::new(),
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            abort(&mut targets).await;
            return Err(e);
        }
    };
    if let Some(e) = targets.iter_mut().find_map(|t| t.failed.take()) {
        abort(&mut targets).await;
        return Err(e);
    }
    if sealed.plain != local {
        abort(&mut targets).await;
        bail!(
            "{} changed while it was archived ({} bytes read, {} before); not archived",
            path.display(),
            sealed.plain.size,
            local.size
        );
    }
    let mut records = Vec::new();
    for t in targets.iter_mut() {
        let objects = match t.writer.close(&key, sealed.stored.size).await {
            Ok(o) => o,
            Err(e) => {
                let st = t.storage.name.clone();
                abort(&mut targets).await;
                return Err(e.context(format!("storage '{st}': cannot complete {key}")));
            }
        };
        for o in &objects {
            let n = t.storage.size(&o.key).await?;
            if n != o.size {
                bail!(
                    "storage '{}': {} holds {n} bytes after upload, expected {}",
                    t.storage.name,
                    o.key,
                    o.size
                );
            }
        }
        records.push((
            t.storage.clone(),
            Record {
                file: name.to_string(),
                timeline,
                plain: sealed.plain.clone(),
                stored: sealed.stored.clone(),
                compression: Compression {
                    algorithm: cfg.compression.algorithm,
                    level: cfg.compression.effective_level(),
                },
                recipients: cfg.encryption.recipients.iter().map(|r| r.text().to_string()).collect(),
                objects,
                pushed_at: Utc::now(),
                drctl_version: env!("CARGO_PKG_VERSION").to_string(),
                history: history.clone(),
            },
        ));
    }
    for (st, r) in &records {
        st.put(&record_key, serde_json::to_vec_pretty(r)?).await?;
    }
    Ok(Pushed::Stored {
        bytes: sealed.stored.size,
    })
}

async fn abort(targets: &mut [Target]) {
    for t in targets.iter_mut() {
        let _ = t.writer.abort().await;
        t.storage.remove_temp_of(&t.key).await;
    }
}

/// What a fetch found.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    Written {
        storage: String,
    },
    /// Every storage answered, and none has it: the end of the archive (or a timeline that
    /// never existed, when PostgreSQL probes for history files).
    NotArchived,
}

/// Fetches WAL file `name` into `dest` (PostgreSQL's `%p`), written to a temp file beside it
/// and renamed into place only after both digests, and for a segment its header, checked out.
pub async fn fetch(
    source: &str,
    storages: &[Storage],
    identities: &Identities,
    info: Option<&ArchiveInfo>,
    name: &str,
    dest: &Path,
) -> Result<Fetched> {
    let Some(file) = WalFile::parse(name) else {
        // PostgreSQL asks only for names it archives; nothing else is ever stored.
        return Ok(Fetched::NotArchived);
    };
    let mut errors: Vec<String> = Vec::new();
    for st in storages {
        let record = match record(source, st, name).await {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                errors.push(format!("{e:#}"));
                continue;
            }
        };
        match fetch_one(source, st, &record, identities, info, &file, dest).await {
            Ok(()) => {
                return Ok(Fetched::Written {
                    storage: st.name.clone(),
                })
            }
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if errors.is_empty() {
        Ok(Fetched::NotArchived)
    } else {
        Err(anyhow!("{}", errors.join("; ")))
    }
}

async fn fetch_one(
    source: &str,
    st: &Storage,
    record: &Record,
    identities: &Identities,
    info: Option<&ArchiveInfo>,
    file: &WalFile,
    dest: &Path,
) -> Result<()> {
    let tmp = {
        let mut s = dest.as_os_str().to_owned();
        s.push(format!(".drctl-{:08x}", rand::random::<u32>()));
        std::path::PathBuf::from(s)
    };
    let result = async {
        let mut out = tokio::fs::File::create(&tmp)
            .await
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        pipeline::open_item_into(st, &record.item(source), &record.objects, identities, &mut out).await?;
        out.sync_all().await?;
        drop(out);
        if let (WalFile::Segment(n) | WalFile::Partial(n), Some(info)) = (file, info) {
            let h = read_header(&tmp)?;
            if h.system_identifier.to_string() != info.system_identifier {
                bail!(
                    "WAL file {n} on storage '{}' is from cluster {}, not {} whose archive this is",
                    st.name,
                    h.system_identifier,
                    info.system_identifier
                );
            }
        }
        tokio::fs::rename(&tmp, dest)
            .await
            .with_context(|| format!("cannot move the fetched file to {}", dest.display()))?;
        Ok(())
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    result
}

/// Every archived file of a source, by timeline: the names whose record is there.
pub async fn list_archived(source: &str, st: &Storage) -> Result<std::collections::BTreeMap<u32, Vec<String>>> {
    let mut out: std::collections::BTreeMap<u32, Vec<String>> = Default::default();
    for key in st.list(&layout::wal_prefix(source)).await? {
        let Some(rest) = key.strip_prefix(&layout::wal_prefix(source)) else {
            continue;
        };
        let Some((_tli, file)) = rest.split_once('/') else {
            continue;
        };
        let Some(name) = file.strip_suffix(".json") else {
            continue;
        };
        if let Some(f) = WalFile::parse(name) {
            out.entry(f.timeline()).or_default().push(name.to_string());
        }
    }
    for v in out.values_mut() {
        v.sort();
    }
    Ok(out)
}

/// The record of an archived file on one storage, if it is archived there.
pub async fn record(source: &str, st: &Storage, name: &str) -> Result<Option<Record>> {
    let Some(file) = WalFile::parse(name) else {
        return Ok(None);
    };
    get_json(st, &layout::wal_record_key(source, file.timeline(), name)).await
}

/// The WAL file an archive key belongs to: `wal/<source>/<TLI>/<file>.json`,
/// `<file>.zst.age`, `<file>.zst.age.part000001`, … → `<file>`. None for other keys.
pub fn wal_file_of(source: &str, key: &str) -> Option<WalFile> {
    let rest = key.strip_prefix(&layout::wal_prefix(source))?;
    let (_tli, file) = rest.split_once('/')?;
    let parts: Vec<&str> = file.split('.').collect();
    // The longest leading run of dot-separated parts that is a WAL file name: three for a
    // backup label (`SEG.OFFSET.backup`), two for `.history`/`.partial`, one for a segment.
    (1..=parts.len().min(3))
        .rev()
        .find_map(|n| WalFile::parse(&parts[..n].join(".")))
}

/// Archive keys of `source` that no kept base backup needs: every file of a segment numbered
/// below `floor` (the oldest kept base backup's first segment), whatever its timeline; a
/// needed segment of any kept backup is at or after that backup's start. Timeline history
/// files are never expired (recovery reads them to choose its timeline), nor is `archive.json`.
pub fn expired(source: &str, keys: &[String], floor: u64, seg_size: u64) -> Vec<String> {
    let mut out: Vec<String> = keys
        .iter()
        .filter(|k| {
            let number = match wal_file_of(source, k) {
                Some(WalFile::Segment(n) | WalFile::Partial(n) | WalFile::BackupLabel(n)) => {
                    super::wal::Segment::parse(&n[..24], seg_size).map(|s| s.number)
                }
                Some(WalFile::History(_)) | None => None,
            };
            number.is_some_and(|n| n < floor)
        })
        .cloned()
        .collect();
    // Records first: a crash part-way leaves data without a record (never listed as
    // archived), never a record pointing at nothing.
    out.sort_by_key(|k| (!k.ends_with(".json"), k.clone()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_keeps_what_the_oldest_kept_backup_needs_and_every_history() {
        let mb16 = 16 * 1024 * 1024;
        let keys: Vec<String> = [
            "wal/c/00000001/000000010000000000000003.json",
            "wal/c/00000001/000000010000000000000003.zst.age",
            "wal/c/00000001/000000010000000000000004.zst.age.part000002",
            "wal/c/00000001/000000010000000000000004.00000028.backup.json",
            "wal/c/00000001/000000010000000000000005.json",
            "wal/c/00000001/000000010000000000000005.partial.zst.age",
            "wal/c/00000002/00000002.history.json",
            "wal/c/00000002/00000002.history.zst.age",
            "wal/c/00000002/000000020000000000000004.json",
            "wal/c/00000002/000000020000000000000006.json",
            "wal/c/archive.json",
            "wal/other/00000001/000000010000000000000001.json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let gone = expired("c", &keys, 5, mb16);
        assert_eq!(
            gone,
            vec![
                "wal/c/00000001/000000010000000000000003.json",
                "wal/c/00000001/000000010000000000000004.00000028.backup.json",
                "wal/c/00000002/000000020000000000000004.json",
                "wal/c/00000001/000000010000000000000003.zst.age",
                "wal/c/00000001/000000010000000000000004.zst.age.part000002",
            ]
        );
        assert!(expired("c", &keys, 0, mb16).is_empty());
        assert_eq!(
            wal_file_of("c", "wal/c/00000002/00000002.history.zst.age"),
            Some(WalFile::History(2))
        );
    }
}
