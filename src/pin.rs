//! Pinned backups: `drctl backup --keep [--note …]` marks the backups of a run so that no
//! retention policy drops them until `drctl unpin`. A pin is an object next to the backup
//! (`pins/<source>/<id>.json`) on every storage that holds it, so a prune on another host sees
//! it too; manifests stay as they were written.

use crate::catalog::Manifest;
use crate::storage::Storage;
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Pin {
    pub source: String,
    pub backup_id: String,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub host: String,
}

/// Pins `m` on each of `storages` that holds it.
pub async fn pin(storages: &[Storage], m: &Manifest, note: Option<&str>) -> Result<()> {
    let p = Pin {
        source: m.source.clone(),
        backup_id: m.id.clone(),
        at: Utc::now(),
        note: note.map(str::to_string),
        host: crate::lock::hostname(),
    };
    let json = serde_json::to_vec_pretty(&p)?;
    for st in storages.iter().filter(|s| m.storages.contains(&s.name)) {
        st.put(&crate::layout::pin_key(&m.source, &m.id), json.clone())
            .await
            .with_context(|| format!("storage '{}': cannot pin backup {} of '{}'", st.name, m.id, m.source))?;
    }
    Ok(())
}

/// Pins on one storage, by (source, backup id). Unreadable pin objects still pin: a pin is
/// there to stop deletion, and a damaged one is no reason to delete.
pub async fn pins(st: &Storage) -> Result<HashMap<(String, String), Pin>> {
    let mut out = HashMap::new();
    for key in st.list(crate::layout::PINS).await? {
        let Some((source, id)) = crate::layout::parse_pin_key(&key) else {
            continue;
        };
        let pin = match st
            .get(&key)
            .await
            .ok()
            .and_then(|b| serde_json::from_slice::<Pin>(&b).ok())
        {
            Some(p) => p,
            None => Pin {
                source: source.clone(),
                backup_id: id.clone(),
                at: Utc::now(),
                note: Some(format!("unreadable pin object {key}")),
                host: String::new(),
            },
        };
        out.insert((source, id), pin);
    }
    Ok(out)
}

/// Removes the pin of one backup from every storage; returns how many storages had it.
pub async fn unpin(storages: &[Storage], source: &str, id: &str) -> Result<usize> {
    let key = crate::layout::pin_key(source, id);
    let mut n = 0;
    for st in storages {
        if st.size(&key).await.is_ok() {
            st.delete(&key)
                .await
                .with_context(|| format!("storage '{}': cannot remove {key}", st.name))?;
            n += 1;
        }
    }
    Ok(n)
}
