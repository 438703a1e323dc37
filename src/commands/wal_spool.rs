//! `drctl wal-spool`: one drain of a container cluster's WAL spool (see
//! `sources::postgres_cluster::spool`); the daemon runs the same drain every few seconds.

use super::*;
use crate::cli::WalSpoolArgs;
use crate::sources::postgres_cluster::spool;

pub(super) async fn drain_once(cfg: &Config, a: &WalSpoolArgs) -> Result<i32> {
    let src = super::wal::cluster(cfg, &a.source)?;
    let storages = storage::select(&cfg.storages, None)?;
    let d = spool::drain(cfg, src, &storages).await?;
    println!(
        "{}: {} WAL file(s) archived, {} already archived, {} left in the spool",
        a.source, d.archived, d.already, d.left
    );
    Ok(0)
}
