//! `drctl copy`.

use super::*;

pub(super) async fn copy(cfg: &Config, a: &CopyArgs) -> Result<i32> {
    let from = storage::select(&cfg.storages, Some(&a.from))?.remove(0);
    let to = storage::select(&cfg.storages, Some(&a.to))?.remove(0);
    let since = a
        .since
        .as_deref()
        .map(|t| catalog::parse_time(t, chrono::Utc::now()))
        .transpose()?;
    let locks = lock::acquire_all(
        std::slice::from_ref(&to),
        lock::Kind::Shared,
        "copy",
        duration_arg("--lock-wait", &a.lock_wait)?,
    )
    .await?;
    let result = crate::copy::copy(&from, &to, a.source.as_deref(), since).await;
    lock::release_all(locks).await;
    let copied = result?;
    for m in &copied {
        println!(
            "copied {} {} ({}) from '{}' to '{}'",
            m.source,
            m.id,
            catalog::human_bytes(m.stored.size),
            a.from,
            a.to
        );
    }
    println!("{} backup(s) copied", copied.len());
    Ok(0)
}
