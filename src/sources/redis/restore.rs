//! Redis targets. `--output-dir` writes `dump.rdb` (stop Redis, replace its file, start it).
//! `--target-url` loads into a running Redis: every key of the RDB is sent as `RESTORE` with
//! the payload read out of the file (`load`). RESTORE carries Redis's own serialization, so every
//! type (strings, hashes, lists, sets, sorted sets, streams, modules' types) and every TTL
//! arrives as it was, it needs no Redis installed here, and it works against a managed Redis
//! where `REPLICAOF` is not allowed.

use crate::catalog::Entry;
use crate::fetch::{fetch_to_file, fetch_to_scratch};
use crate::keys::Identities;
use crate::sources::{Options, Restored};
use crate::storage::Storage;
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;

fn with_db(url: &str, db: u64) -> Result<String> {
    let mut u = url::Url::parse(url).map_err(|e| anyhow!("--target-url: {e}"))?;
    u.set_path(&format!("/{db}"));
    Ok(u.to_string())
}

/// How many keys the target holds; refuses a non-empty target unless `clean`. Touches nothing.
async fn check_target(url: &str, clean: bool) -> Result<u64> {
    let mut c = crate::sources::redis::connect(url)
        .await
        .context("cannot connect to the target Redis")?;
    let ks = crate::sources::redis::keyspace(&mut c).await?;
    let keys: u64 = ks.values().map(|v| v.keys).sum();
    if keys > 0 && !clean {
        bail!("target Redis is not empty ({keys} keys); restore into an empty Redis, or pass --clean to FLUSHALL it first");
    }
    Ok(keys)
}

/// `--target-url redis://…`: every key of the backup copied into the running server.
pub async fn restore_into(
    url: &str,
    entry: &Entry,
    storages: &[Storage],
    identities: &Identities,
    opts: Options<'_>,
) -> Result<Restored> {
    let m = &entry.manifest;
    // Refuse a non-empty target early, but flush it (--clean) only once the backup has been
    // fetched and every check passed: a wrong key or a damaged object leaves it as it was.
    let present = check_target(url, opts.clean).await?;
    let rdb = fetch_to_scratch(storages, entry, identities, "dump.rdb", opts.scratch_dir).await?;
    let checked = super::load::check(&rdb.file).await?;
    let mut c = crate::sources::redis::connect(url)
        .await
        .context("cannot connect to the target Redis")?;
    if let Some(payload) = &checked.probe {
        let args = super::load::probe_command(payload);
        let mut probe = redis::cmd("RESTORE");
        for a in &args[1..] {
            probe.arg(a.as_slice());
        }
        if let Err(e) = probe.query_async::<()>(&mut c).await {
            return Err(super::load::probe_refused(
                "the target Redis",
                checked.version,
                &e.to_string(),
            ));
        }
    }
    if present > 0 {
        redis::cmd("FLUSHALL").query_async::<()>(&mut c).await?;
    }
    let sent = super::load::into_url(&rdb.file, |db| with_db(url, db)).await?;
    let keys = sent.keys;
    Ok(Restored::RedisKeys {
        source: m.source.clone(),
        backup: m.id.clone(),
        target: crate::secret::redact_url(url),
        keys,
    })
}

/// `--output-dir`: `DIR/<source>/dump.rdb`, to put in place of a stopped server's file.
pub async fn restore_to_dir(
    dir: &Path,
    entry: &Entry,
    storages: &[Storage],
    identities: &Identities,
) -> Result<Restored> {
    let sub = dir.join(&entry.manifest.source);
    std::fs::create_dir_all(&sub)?;
    let dest = sub.join("dump.rdb");
    if dest.exists() {
        bail!("{} exists; restore into a new or empty directory", dest.display());
    }
    fetch_to_file(storages, entry, identities, &dest).await?;
    Ok(Restored::Wrote {
        path: dest,
        hint: Some("stop Redis, put it in Redis's dir as its dbfilename, start Redis".into()),
    })
}

/// `--target container:NAME | service:NAME`: into the Redis server running in a container.
pub async fn restore_into_container(
    place: &crate::place::ContainerRef,
    entry: &Entry,
    storages: &[Storage],
    identities: &Identities,
    opts: Options<'_>,
) -> Result<Restored> {
    super::container::restore_into_container(place, entry, storages, identities, opts).await
}
