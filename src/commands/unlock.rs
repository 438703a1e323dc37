//! `drctl unlock`.
//!
//! Removes the locks drctl has evidence are stale (see `lock.rs`: the holder's process gone on
//! this host, or not rewritten for 15 minutes by the storage's own clock) and says for each
//! lock which it was and why. A lock on another host that still looks live is kept: its
//! timestamps are that host's clock and prove nothing; `--force` removes it anyway.

use super::*;

pub(super) async fn unlock(cfg: &Config, a: &UnlockArgs) -> Result<i32> {
    let storages = storage::select(&cfg.storages, a.storage.as_deref())?;
    for st in &storages {
        for seen in lock::survey(st, "unlock (reading the storage clock)").await? {
            let what = seen
                .info
                .as_ref()
                .map(|i| i.describe())
                .unwrap_or_else(|| "an unreadable lock".into());
            let stale = seen.stale.is_some();
            if stale || a.force {
                st.delete(&seen.key).await?;
                println!(
                    "storage '{}': removed {} lock: {what} ({})",
                    st.name,
                    if stale { "stale" } else { "live" },
                    seen.verdict()
                );
            } else {
                println!(
                    "storage '{}': kept live lock: {what} ({}; pass --force only if you are sure it is not running)",
                    st.name,
                    seen.verdict()
                );
            }
        }
    }
    Ok(0)
}
