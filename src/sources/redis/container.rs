//! Redis in a container: the same file-mode backup as on the host (BGSAVE with its save
//! counter, the prologue's key counts), with `redis-cli` exec'd next to the server instead of a
//! connection, and the RDB streamed out through the engine's archive endpoint with its size
//! known up front. Nothing needs to be published or mounted, and drctl's host needs no Redis
//! tools for a backup. The password, if the server has `requirepass`, reaches redis-cli only
//! through the exec's environment (`REDISCLI_AUTH`).
//!
//! A restore into a container sends every key of the RDB as `RESTORE key ttl payload REPLACE`
//! (the payload read out of the file, see `load`) in RESP into `redis-cli --pipe` exec'd in the
//! target container: RESTORE carries every type and TTL, the target needs no published port,
//! drctl's host needs no Redis, and the pipe's own reply count says whether every command
//! succeeded.

use super::client::{field, parse_keyspace};
use super::dump::file_mode;
use super::load;
use super::server::{Cli, Server};
use super::{RedisFacts, RedisSource};
use crate::catalog::Entry;
use crate::fetch::fetch_to_scratch;
use crate::keys::Identities;
use crate::place::{ContainerRef, Engine};
use crate::sources::{Dump, Options, Restored};
use crate::storage::Storage;
use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub async fn start_dump(src: &RedisSource, place: &ContainerRef, password: Option<&str>) -> Result<Dump> {
    tokio::select! {
        r = start(src, place, password) => r,
        _ = crate::process::shutdown().cancelled() => bail!(
            "interrupted by a signal while Redis '{}' in {place} was saving; nothing was committed",
            src.name
        ),
    }
}

async fn start(src: &RedisSource, place: &ContainerRef, password: Option<&str>) -> Result<Dump> {
    let name = &src.name;
    let engine = Engine::connect().with_context(|| format!("source '{name}'"))?;
    let c = engine
        .resolve(place)
        .await
        .with_context(|| format!("source '{name}' ({place})"))?;
    let container = c.name.clone();
    let cli = Cli::new(c, password, name);
    let server_info = cli
        .run(&["INFO", "server"])
        .await
        .with_context(|| format!("source '{name}': cannot talk to Redis in container '{container}'"))?;
    let version = field(&server_info, "redis_version").unwrap_or("").to_string();
    tracing::info!(source = %name, container = %container, redis_version = %version, "BGSAVE in the container");
    let facts = RedisFacts {
        redis_version: Some(version),
        ..Default::default()
    };
    file_mode(src, &mut Server::Cli(cli), None, facts).await
}

/// Keys in every database of the server, from `INFO keyspace`.
async fn key_count(cli: &Cli) -> Result<u64> {
    let info = cli.run(&["INFO", "keyspace"]).await?;
    Ok(parse_keyspace(&info).values().map(|v| v.keys).sum())
}

pub async fn restore_into_container(
    place: &ContainerRef,
    entry: &Entry,
    storages: &[Storage],
    identities: &Identities,
    opts: Options<'_>,
) -> Result<Restored> {
    let m = &entry.manifest;
    let engine = Engine::connect().context("--target")?;
    let c = engine
        .resolve(place)
        .await
        .with_context(|| format!("--target {place}"))?;
    let shown = format!("{place} (container '{}')", c.name);
    // The target's requirepass, as redis-cli itself reads it: never on a command line.
    let password = std::env::var("REDISCLI_AUTH").ok().filter(|p| !p.is_empty());
    let cli = Cli::new(c, password.as_deref(), &m.source);
    // Refuse a non-empty target early, but flush it (--clean) only once the backup has been
    // fetched, checked and loaded by the throwaway server: a wrong key, a damaged object or an
    // RDB this host's redis-server cannot read leaves the target as it was.
    let present = key_count(&cli)
        .await
        .with_context(|| format!("cannot ask the target Redis in {shown} for its keys"))?;
    if present > 0 && !opts.clean {
        bail!(
            "the target Redis in {shown} is not empty ({present} keys); restore into an empty Redis, or pass --clean to FLUSHALL it first"
        );
    }
    let rdb = fetch_to_scratch(storages, entry, identities, "dump.rdb", opts.scratch_dir).await?;
    let checked = load::check(&rdb.file).await?;
    if let Some(payload) = &checked.probe {
        let probe = load::Command {
            db: None,
            args: load::probe_command(payload),
        };
        if let Err(e) = pipe(&cli, load::fixed(vec![probe])).await {
            return Err(load::probe_refused(&shown, checked.version, &format!("{e:#}")));
        }
    }
    if present > 0 {
        cli.run(&["FLUSHALL"])
            .await
            .with_context(|| format!("--clean: cannot flush {shown}"))?;
    }
    let sent = pipe(&cli, load::commands(rdb.file.clone())).await.with_context(|| {
        format!(
            "loading '{}' into {shown} failed; it may hold part of the backup (run again with --clean)",
            m.source
        )
    })?;
    let (keys, with_ttl) = (sent.keys, sent.with_ttl);
    // Keys whose TTL ran out during the load are gone; nothing else may be missing or extra.
    let now = key_count(&cli).await?;
    if now > keys || keys - now > with_ttl {
        bail!(
            "after loading '{}' into {shown}, it holds {now} keys; {keys} were sent ({with_ttl} with a TTL) — was something else writing to it?",
            m.source
        );
    }
    Ok(Restored::RedisKeys {
        source: m.source.clone(),
        backup: m.id.clone(),
        target: shown,
        keys,
    })
}

/// Commands into `redis-cli --pipe` in the container, `SELECT` before each change of
/// database. Returns the tally once the pipe reported a reply for every command and no error.
async fn pipe(cli: &Cli, mut batches: tokio::sync::mpsc::Receiver<Result<load::Batch>>) -> Result<load::Sent> {
    let (mut out, mut stdin, done) = cli.pipe().await?;
    let summary = tokio::spawn(async move {
        let mut s = String::new();
        out.read_to_string(&mut s).await.map(|_| s)
    });
    let sent = async {
        let (mut commands, mut db) = (0u64, 0u64);
        let mut buf = Vec::new();
        while let Some(b) = batches.recv().await {
            let cmds = match b? {
                load::Batch::Done(sent) => {
                    stdin.flush().await?;
                    // EOF: redis-cli sends its last command, waits for every reply and prints the count.
                    stdin.shutdown().await?;
                    return Ok::<_, anyhow::Error>((commands, sent));
                }
                load::Batch::Commands(c) => c,
            };
            for c in cmds {
                if let Some(d) = c.db.filter(|d| *d != db) {
                    load::resp(&mut buf, &[b"SELECT".to_vec(), d.to_string().into_bytes()]);
                    commands += 1;
                    db = d;
                }
                load::resp(&mut buf, &c.args);
                commands += 1;
            }
            stdin.write_all(&buf).await?;
            buf.clear();
        }
        bail!("the RDB reader stopped without a result")
    }
    .await;
    let (commands, tally) = match sent {
        Ok(v) => v,
        Err(e) => {
            drop(stdin);
            done.kill().await;
            return Err(e.context("sending the keys to redis-cli --pipe"));
        }
    };
    let summary = summary
        .await
        .map_err(|e| anyhow!("reading redis-cli --pipe's output: {e}"))??;
    // A non-zero exit carries the error replies (redis-cli prints them on stderr).
    done.wait().await?;
    let (errors, replies) = parse_summary(&summary)
        .ok_or_else(|| anyhow!("redis-cli --pipe printed no reply summary: {}", summary.trim()))?;
    if errors != 0 || replies != commands {
        bail!("redis-cli --pipe: {errors} errors, {replies} replies for {commands} commands sent");
    }
    Ok(tally)
}

/// `errors: E, replies: R` from the last lines redis-cli --pipe prints.
fn parse_summary(s: &str) -> Option<(u64, u64)> {
    let line = s.lines().rev().find(|l| l.trim_start().starts_with("errors:"))?;
    let (e, r) = line.trim().strip_prefix("errors:")?.split_once(", replies:")?;
    Some((e.trim().parse().ok()?, r.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pipe_summary_is_read() {
        let out = "All data transferred. Waiting for the last reply...\nLast reply received from server.\nerrors: 0, replies: 4\n";
        assert_eq!(parse_summary(out), Some((0, 4)));
        assert_eq!(parse_summary("errors: 2, replies: 10"), Some((2, 10)));
        assert_eq!(parse_summary("Connection refused"), None);
    }
}
