//! How far archiving is behind, for `drctl status`: the newest WAL segment on each storage, and
//! what the server says (`pg_stat_archiver` and its current segment), so that "the storage is
//! N segments behind the server" and "archiving has been failing since …" are visible before a
//! restore needs that WAL.

use super::wal::{Segment, WalFile};
use super::{archive, ClusterSource};
use crate::storage::Storage;
use anyhow::{anyhow, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct WalStatus {
    pub storages: Vec<WalOnStorage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerArchiver>,
    /// Why the server could not be asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct WalOnStorage {
    pub storage: String,
    pub newest: Option<String>,
    pub newest_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ServerArchiver {
    /// The segment the server is writing now.
    pub current_wal: String,
    pub last_archived_wal: Option<String>,
    pub last_archived_at: Option<String>,
    pub failed_count: i64,
    pub last_failed_wal: Option<String>,
    pub last_failed_at: Option<String>,
    /// Complete segments the server has that the storage with the fewest lacks (0 when
    /// archiving keeps up: the current segment is not complete yet).
    pub segments_behind: Option<u64>,
}

pub async fn archiving(src: &ClusterSource, storages: &[Storage]) -> WalStatus {
    let info = archive::archive_info(&src.name, storages).await.ok().flatten();
    let seg_size = info.as_ref().map(|i| i.segment_size).unwrap_or(16 * 1024 * 1024);
    let mut rows = Vec::new();
    let mut newest_numbers: Vec<Option<Segment>> = Vec::new();
    for st in storages {
        match archive::list_archived(&src.name, st).await {
            Ok(by_tli) => {
                let newest = by_tli
                    .iter()
                    .next_back()
                    .and_then(|(_, names)| {
                        names
                            .iter()
                            .rev()
                            .find(|n| matches!(WalFile::parse(n), Some(WalFile::Segment(_))))
                    })
                    .cloned();
                let at = match &newest {
                    Some(n) => archive::record(&src.name, st, n)
                        .await
                        .ok()
                        .flatten()
                        .map(|r| r.pushed_at),
                    None => None,
                };
                newest_numbers.push(newest.as_deref().and_then(|n| Segment::parse(n, seg_size)));
                rows.push(WalOnStorage {
                    storage: st.name.clone(),
                    newest,
                    newest_at: at,
                    error: None,
                });
            }
            Err(e) => {
                newest_numbers.push(None);
                rows.push(WalOnStorage {
                    storage: st.name.clone(),
                    newest: None,
                    newest_at: None,
                    error: Some(format!("{e:#}")),
                });
            }
        }
    }
    let (server, server_error) = match ask_server(src).await {
        Ok(mut s) => {
            let current = Segment::parse(&s.current_wal, seg_size);
            s.segments_behind = current.map(|c| {
                newest_numbers
                    .iter()
                    .map(|n| match n {
                        Some(n) if n.timeline == c.timeline => c.number.saturating_sub(n.number + 1),
                        // Nothing on the server's timeline yet: everything before the current one.
                        _ => c.number,
                    })
                    .max()
                    .unwrap_or(0)
            });
            (Some(s), None)
        }
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    WalStatus {
        storages: rows,
        server,
        server_error,
    }
}

async fn ask_server(src: &ClusterSource) -> Result<ServerArchiver> {
    let sql = "select pg_walfile_name(pg_current_wal_lsn()) || '|' || coalesce(last_archived_wal, '') || '|' || \
         coalesce(last_archived_time::text, '') || '|' || failed_count || '|' || coalesce(last_failed_wal, '') || '|' || \
         coalesce(last_failed_time::text, '') from pg_stat_archiver";
    let row = src.query(sql).await?;
    let f: Vec<&str> = row.split('|').collect();
    if f.len() != 6 {
        return Err(anyhow!("unexpected answer from pg_stat_archiver: {row}"));
    }
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    Ok(ServerArchiver {
        current_wal: f[0].to_string(),
        last_archived_wal: opt(f[1]),
        last_archived_at: opt(f[2]),
        failed_count: f[3].parse().unwrap_or(0),
        last_failed_wal: opt(f[4]),
        last_failed_at: opt(f[5]),
        segments_behind: None,
    })
}
