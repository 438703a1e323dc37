//! `drctl unlock`.

use super::*;

pub(super) async fn unlock(cfg: &Config, a: &UnlockArgs) -> Result<i32> {
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
