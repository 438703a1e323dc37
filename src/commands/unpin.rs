//! `drctl unpin`.

use super::*;

pub(super) async fn unpin(cfg: &Config, a: &UnpinArgs) -> Result<i32> {
    let storages = storage::select(&cfg.storages, None)?;
    let n = crate::pin::unpin(&storages, &a.source, &a.id).await?;
    if n == 0 {
        bail!(
            "backup {} of '{}' is not pinned on any storage (`drctl list` marks pinned backups)",
            a.id,
            a.source
        );
    }
    println!(
        "unpinned backup {} of '{}' on {n} storage(s); retention may drop it now",
        a.id, a.source
    );
    Ok(0)
}
