//! `drctl restore`.

use super::*;

pub(super) async fn restore(cfg: &Config, a: &RestoreArgs) -> Result<i32> {
    let at = catalog::parse_time(&a.at, chrono::Utc::now())?;
    let jobs = a.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(8)
    });
    let req = crate::restore::Request {
        at,
        sources: a.sources.clone(),
        storage: a.storage.clone(),
        identity: a.identity.clone(),
        target_url: a.target_url.clone(),
        output_dir: a.output_dir.clone(),
        clean: a.clean,
        dry_run: a.dry_run,
        jobs: jobs.max(1),
        no_owner: a.no_owner,
    };
    crate::restore::run(cfg, &req).await?;
    Ok(0)
}
