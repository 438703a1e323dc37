//! Redis: a fresh RDB snapshot, streamed.
//!
//! * `mode = "file"` (default): record the save counter, `BGSAVE` (or wait for one already
//!   running), wait until a new save finished with `rdb_last_bgsave_status:ok`, then stream the
//!   file at `CONFIG GET dir` + `dbfilename` (or `rdb_path`, for Redis in a container whose volume
//!   is mounted elsewhere on the host). No `sleep 2`, no guessing. For a server in a container
//!   the same steps run through `redis-cli` exec'd in it and the file comes out through the
//!   engine (`container.rs`, `server.rs`).
//! * `mode = "replication"`: fetch the RDB over the network the way `redis-cli --rdb` does
//!   (`SYNC` after `REPLCONF rdb-only 1`), for hosts where drctl cannot read Redis's disk. A
//!   diskless transfer's `$EOF:<mark>` framing is stripped, so the stored bytes are a plain RDB.
//!
//! In file mode the file must be the one this save wrote: it must have been modified after the
//! BGSAVE was sent, and when nothing was written since the save's fork (`INFO`'s
//! `rdb_changes_since_last_save:0`) the key count in its prologue (`RESIZEDB`, see `rdb.rs`) must
//! be the server's, give or take keys that expired or were evicted meanwhile. A stale file or
//! another server's is refused with both counts; on a busy server the counts are recorded as not
//! exact instead of compared, so writes never fail a backup.
//!
//! Either way the header (`REDIS00xx`) and the size are checked before the backup commits, and
//! the per-db key counts are recorded. The password travels only inside the connection.

use super::client::{connect, field, info, keyspace, parse_keyspace};
use super::rdb::{first_db, FirstDb};
use super::server::Server;
use super::{Keyspace, RedisFacts};
use super::{RedisAccess, RedisSource};
use crate::sources::{Dump, Facts, Finish};
use anyhow::{anyhow, bail, Context, Result};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

fn saves(info: &str) -> Option<u64> {
    field(info, "rdb_saves").and_then(|v| v.parse().ok())
}

/// BGSAVE and wait for it. Returns when a save that started after this call has finished well,
/// with the time just before the BGSAVE was sent: the file it wrote was last modified after that.
async fn bgsave(server: &mut Server, name: &str, timeout: Duration) -> Result<SystemTime> {
    let t0 = Instant::now();
    let last_before: i64 = server.lastsave().await?;
    // A BGSAVE already running started before our call: wait for it, then start our own (and
    // again if another one slipped in between).
    let (baseline, started) = loop {
        let p = server.info(Some("persistence")).await?;
        if field(&p, "rdb_bgsave_in_progress") != Some("1") {
            let started = SystemTime::now();
            match server.bgsave().await {
                Ok(()) => break (saves(&p), started),
                Err(e) if e.to_string().contains("already in progress") => {}
                Err(e) => bail!("source '{name}': BGSAVE refused: {e:#}"),
            }
        }
        if t0.elapsed() > timeout {
            bail!("source '{name}': a BGSAVE already in progress did not finish within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let p = server.info(Some("persistence")).await?;
        let done = field(&p, "rdb_bgsave_in_progress") == Some("0")
            && match (saves(&p), baseline) {
                (Some(now), Some(b)) => now > b,
                _ => server.lastsave().await? > last_before,
            };
        if field(&p, "rdb_bgsave_in_progress") == Some("0") && field(&p, "rdb_last_bgsave_status") == Some("err") {
            let dir = server.config_get("dir").await.ok();
            bail!(
                "source '{name}': BGSAVE failed (rdb_last_bgsave_status:err); Redis could not write its snapshot to {} — check that directory's permissions and free space, and Redis's log",
                dir.as_deref().unwrap_or("its dir")
            );
        }
        if done {
            return Ok(started);
        }
        if t0.elapsed() > timeout {
            bail!(
                "source '{name}': BGSAVE did not finish within {timeout:?} (raise bgsave_timeout for a large dataset)"
            );
        }
    }
}

fn check_header(h: &[u8]) -> Result<()> {
    if h.len() < 9 || &h[..5] != b"REDIS" || !h[5..9].iter().all(u8::is_ascii_digit) {
        bail!("not an RDB file: it does not start with REDIS00xx");
    }
    Ok(())
}

pub async fn start_dump(src: &RedisSource) -> Result<Dump> {
    let url = match &src.access {
        RedisAccess::Container { place, password } => {
            return super::container::start_dump(src, place, password.as_deref()).await
        }
        RedisAccess::File { url, .. } | RedisAccess::Replication { url } => url,
    };
    let mut con = connect(url).await.with_context(|| {
        format!(
            "source '{}': cannot connect to Redis at {}",
            src.name,
            crate::secret::redact_url(url)
        )
    })?;
    let version = field(&info(&mut con, "server").await?, "redis_version")
        .unwrap_or("")
        .to_string();
    let facts = RedisFacts {
        redis_version: Some(version),
        ..Default::default()
    };
    match &src.access {
        RedisAccess::File { rdb_path, .. } => file_mode(src, &mut Server::Net(con), rdb_path.as_deref(), facts).await,
        RedisAccess::Replication { url } => {
            let keys_before = keyspace(&mut con).await?;
            replication_mode(src, url, con, keys_before, facts).await
        }
        RedisAccess::Container { .. } => unreachable!("handled above"),
    }
}

/// Records the key counts, marking them exact only when nothing changed around the snapshot.
fn record_keys(facts: &mut RedisFacts, before: Keyspace, after: Keyspace) {
    facts.key_counts_exact = before == after;
    facts.key_counts = Some(after);
}

/// The parts of one `INFO` (default sections) that tell whether the file on disk can be compared
/// with the server: read in one call, so they describe the same moment.
struct ServerState {
    keyspace: Keyspace,
    /// Completed saves (`rdb_saves`).
    saves: Option<u64>,
    in_progress: bool,
    /// Writes since the fork of the last completed save (`rdb_changes_since_last_save`).
    changes_since_save: Option<u64>,
    /// Keys expired or evicted so far: they leave without counting as writes.
    removed: u64,
}

async fn server_state(server: &mut Server) -> Result<ServerState> {
    let all = server.info(None).await?;
    let num = |k: &str| field(&all, k).and_then(|v| v.parse::<u64>().ok());
    let keyspace_section = all.split_once("# Keyspace").map(|(_, k)| k).unwrap_or("");
    Ok(ServerState {
        keyspace: parse_keyspace(keyspace_section),
        saves: num("rdb_saves"),
        in_progress: field(&all, "rdb_bgsave_in_progress") == Some("1"),
        changes_since_save: num("rdb_changes_since_last_save"),
        removed: num("expired_keys").unwrap_or(0) + num("evicted_keys").unwrap_or(0),
    })
}

/// How far the prologue is read: AUX fields and functions come before the first database.
const PROLOGUE: u64 = 1 << 20;

/// Redis writes the file after BGSAVE was sent; the slack covers file systems whose timestamps
/// are coarser than the clock (the kernel's coarse clock, 1–2 s on some file systems).
const MTIME_SLACK: Duration = Duration::from_secs(2);

fn when(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn keys_in(keys: u64, db: &str) -> String {
    format!("{keys} keys in {db}")
}

/// What the file's prologue says, in words.
fn file_says(first: FirstDb) -> String {
    match first {
        FirstDb::Empty => "no keys".into(),
        FirstDb::Db { db, keys, .. } => keys_in(keys, &format!("db{db}")),
        FirstDb::Unknown => "an unread number of keys".into(),
    }
}

/// The server's count for the database the file's prologue names (or its first non-empty one).
fn server_says(ks: &Keyspace, first: FirstDb) -> String {
    let db = match first {
        FirstDb::Db { db, .. } => format!("db{db}"),
        _ => match ks.iter().find(|(_, v)| v.keys > 0) {
            Some((db, _)) => db.clone(),
            None => return "no keys".into(),
        },
    };
    keys_in(ks.get(&db).map(|v| v.keys).unwrap_or(0), &db)
}

/// Whether a file whose prologue says `first` can be a snapshot of a server that, with no writes
/// since the fork, now holds `ks` after `removed` keys expired or were evicted.
fn matches_server(first: FirstDb, ks: &Keyspace, removed: u64) -> bool {
    let db_no = |name: &str| name.trim_start_matches("db").parse::<u64>().ok();
    match first {
        FirstDb::Unknown => true,
        // Keys cannot appear without a write.
        FirstDb::Empty => ks.values().all(|v| v.keys == 0),
        FirstDb::Db { db, keys, .. } => {
            let lower_db_has_keys = ks.iter().any(|(n, v)| v.keys > 0 && db_no(n).is_some_and(|n| n < db));
            let now = ks.get(&format!("db{db}")).map(|v| v.keys).unwrap_or(0);
            !lower_db_has_keys && now <= keys && keys - now <= removed
        }
    }
}

/// The RDB being read, from wherever the server is.
struct Opened {
    /// For messages: the path, and the container it is in.
    shown: String,
    size: u64,
    /// Unknown through the engine's archive endpoint (the tar header's mtime is not handed on);
    /// there the file is the one the server itself names in its own container, so the check
    /// against another server's file does not apply.
    mtime: Option<SystemTime>,
    reader: std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>,
}

/// BGSAVE, then the file: for `Server::Net` on this host (`rdb_path` or where Redis says), for
/// `Server::Cli` out of the container through the engine (where Redis says).
pub(super) async fn file_mode(
    src: &RedisSource,
    server: &mut Server,
    rdb_path: Option<&std::path::Path>,
    mut facts: RedisFacts,
) -> Result<Dump> {
    let timeout = src.bgsave_timeout.std();
    let before = server_state(server).await?;
    let started = bgsave(server, &src.name, timeout).await?;
    let after = server_state(server).await?;
    let path = match rdb_path {
        Some(p) => p.to_path_buf(),
        None => {
            let dir = server
                .config_get("dir")
                .await
                .with_context(|| format!("source '{}': cannot ask Redis where its RDB is; set rdb_path", src.name))?;
            let file = server.config_get("dbfilename").await?;
            std::path::Path::new(&dir).join(file)
        }
    };
    let name = &src.name;
    let opened = match server {
        Server::Net(_) => {
            let f = tokio::fs::File::open(&path).await.with_context(|| {
                format!(
                    "source '{name}': cannot read the RDB at {} (if Redis runs in a container, set rdb_path to where its volume is on this host, or use mode = \"replication\")",
                    path.display()
                )
            })?;
            // Redis replaces the file by rename, so this open file is one complete snapshot.
            let meta = f.metadata().await?;
            Opened {
                shown: path.display().to_string(),
                size: meta.len(),
                mtime: Some(meta.modified()?),
                reader: Box::pin(f),
            }
        }
        Server::Cli(cli) => {
            let c = &cli.container;
            let shown = format!("{} in container '{}'", path.display(), c.name);
            // The engine archives the file as it is when the request starts; Redis replaces
            // it by rename, so that is one complete snapshot.
            let f = c
                .read_file(&path.to_string_lossy())
                .await
                .with_context(|| format!("source '{name}': cannot read the RDB Redis wrote ({shown})"))?;
            Opened {
                shown,
                size: f.size,
                mtime: None,
                reader: f.reader,
            }
        }
    };
    let Opened {
        shown,
        size,
        mtime,
        reader: mut f,
    } = opened;
    let mut head = vec![0u8; size.min(PROLOGUE) as usize];
    f.read_exact(&mut head)
        .await
        .map_err(|e| anyhow!("source '{name}': {shown}: {e}"))?;
    check_header(&head).map_err(|e| anyhow!("source '{name}': {shown}: {e}"))?;
    let first = first_db(&head);
    // The counts describe the file exactly when nothing was written since the fork of the save
    // whose file this is (no save completed since `after`, none running). On a busy server they
    // cannot be compared; the file's age still can.
    let saves_now = server_state(server).await?.saves;
    let quiet = after.changes_since_save == Some(0) && !after.in_progress && saves_now == after.saves;
    let removed = after.removed.saturating_sub(before.removed);
    let (file_n, server_n) = (file_says(first), server_says(&after.keyspace, first));
    let (what, not_ours) = match (rdb_path, server) {
        (Some(_), _) => (
            "rdb_path",
            "it is not this server's dump file (check rdb_path against `CONFIG GET dir`/`dbfilename`)",
        ),
        (None, Server::Net(_)) => (
            "the RDB at",
            "Redis does not write the file drctl reads there (if Redis runs in a container, set rdb_path to where its volume is on this host)",
        ),
        (None, Server::Cli(_)) => (
            "the RDB at",
            "the file Redis names is not the one it saved (is something else writing its dir?)",
        ),
    };
    if let Some(mtime) = mtime {
        if mtime + MTIME_SLACK < started {
            bail!(
                "source '{name}': {what} {shown} was last written {}, before the BGSAVE started at {} (the file holds {file_n}, the server {server_n}): {not_ours}",
                when(mtime),
                when(started)
            );
        }
    }
    if quiet && !matches_server(first, &after.keyspace, removed) {
        bail!(
            "source '{name}': {what} {shown} holds {file_n}, but the server reported {server_n} with no writes since its save: {not_ours}"
        );
    }
    tracing::debug!(source = %name, file = %file_n, server = %server_n, quiet, removed, "RDB matches the server");
    // Exact only when the server's counts are the fork's: nothing written, expired or evicted.
    facts.key_counts_exact = quiet && removed == 0;
    facts.key_counts = Some(after.keyspace);
    facts.rdb_path = Some(path.display().to_string());
    facts.expected_size = Some(size);
    let rest = size - head.len() as u64;
    let reader = std::io::Cursor::new(head).chain(f.take(rest));
    Ok(Dump {
        reader: Box::new(reader),
        format: "rdb",
        finish: Finish::Task(tokio::spawn(async move { Ok(Facts::Redis(facts)) })),
    })
}

fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

async fn replication_mode(
    src: &RedisSource,
    url: &str,
    mut con: redis::aio::MultiplexedConnection,
    keys_before: Keyspace,
    mut facts: RedisFacts,
) -> Result<Dump> {
    let u = url::Url::parse(url)?;
    let host = u.host_str().unwrap_or("127.0.0.1").to_string();
    let port = u.port().unwrap_or(6379);
    let stream = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .with_context(|| format!("source '{}': cannot connect to {host}:{port}", src.name))?;
    let mut r = BufReader::new(stream);
    let name = src.name.clone();
    async fn expect_ok(r: &mut BufReader<tokio::net::TcpStream>, what: &str, tolerate: bool) -> Result<()> {
        let mut line = String::new();
        r.read_line(&mut line).await?;
        if line.starts_with('+') || (tolerate && line.starts_with('-')) {
            Ok(())
        } else {
            bail!("{what}: {}", line.trim())
        }
    }
    if let Some(pw) = u.password() {
        let pw = url::form_urlencoded::parse(format!("p={pw}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let user = u.username();
        let cmd = if user.is_empty() {
            resp(&[b"AUTH", pw.as_bytes()])
        } else {
            resp(&[b"AUTH", user.as_bytes(), pw.as_bytes()])
        };
        r.get_mut().write_all(&cmd).await?;
        expect_ok(&mut r, "AUTH failed", false)
            .await
            .map_err(|e| anyhow!("source '{name}': {e}"))?;
    }
    // Diskless transfers are allowed; an old Redis that does not know rdb-only just says so.
    r.get_mut().write_all(&resp(&[b"REPLCONF", b"capa", b"eof"])).await?;
    expect_ok(&mut r, "REPLCONF capa eof", true).await?;
    r.get_mut().write_all(&resp(&[b"REPLCONF", b"rdb-only", b"1"])).await?;
    expect_ok(&mut r, "REPLCONF rdb-only", true).await?;
    r.get_mut().write_all(&resp(&[b"SYNC"])).await?;
    // The master sends newlines as keepalives while it prepares the snapshot.
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            bail!("source '{name}': Redis closed the replication connection before sending an RDB");
        }
        if line.trim().is_empty() {
            continue;
        }
        break;
    }
    let line = line.trim_end().to_string();
    if let Some(err) = line.strip_prefix('-') {
        bail!("source '{name}': SYNC refused: {err}");
    }
    let keys_after = keyspace(&mut con).await?;
    record_keys(&mut facts, keys_before, keys_after);
    let framing = if let Some(mark) = line.strip_prefix("$EOF:") {
        if mark.len() != 40 {
            bail!("source '{name}': bad diskless marker from Redis");
        }
        Framing::Eof(mark.as_bytes().to_vec())
    } else if let Some(n) = line.strip_prefix('$') {
        Framing::Len(
            n.parse()
                .map_err(|_| anyhow!("source '{name}': unexpected SYNC reply '{line}'"))?,
        )
    } else {
        bail!("source '{name}': unexpected SYNC reply '{line}'");
    };
    facts.transfer = Some(
        match framing {
            Framing::Eof(_) => "diskless",
            Framing::Len(_) => "disk",
        }
        .into(),
    );
    let (mut w, reader) = tokio::io::duplex(1024 * 1024);
    let task = tokio::spawn(async move {
        let n = copy_rdb(&mut r, &mut w, framing)
            .await
            .map_err(|e| anyhow!("source '{name}': replication transfer: {e}"))?;
        w.shutdown().await?;
        facts.expected_size = Some(n);
        Ok(Facts::Redis(facts))
    });
    Ok(Dump {
        reader: Box::new(reader),
        format: "rdb",
        finish: Finish::Task(task),
    })
}

enum Framing {
    Len(u64),
    Eof(Vec<u8>),
}

/// Copies the RDB payload, checking its header; for diskless transfers holds back the last
/// 40 bytes until it knows they are not the end mark.
async fn copy_rdb(
    r: &mut BufReader<tokio::net::TcpStream>,
    w: &mut tokio::io::DuplexStream,
    framing: Framing,
) -> Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    let mut header_checked = false;
    let mut pending: Vec<u8> = Vec::new();
    match framing {
        Framing::Len(len) => {
            let mut left = len;
            while left > 0 {
                let want = left.min(buf.len() as u64) as usize;
                let n = r.read(&mut buf[..want]).await?;
                if n == 0 {
                    bail!("connection closed after {} of {len} bytes", len - left);
                }
                pending.extend_from_slice(&buf[..n]);
                if !header_checked && pending.len() >= 9 {
                    check_header(&pending)?;
                    header_checked = true;
                }
                if header_checked {
                    w.write_all(&pending).await?;
                    pending.clear();
                }
                left -= n as u64;
                total += n as u64;
            }
            if !header_checked {
                check_header(&pending)?;
            }
            w.write_all(&pending).await?;
            Ok(total)
        }
        Framing::Eof(mark) => loop {
            let n = r.read(&mut buf).await?;
            if n == 0 {
                bail!("connection closed before the end mark");
            }
            pending.extend_from_slice(&buf[..n]);
            if !header_checked && pending.len() >= 9 {
                check_header(&pending)?;
                header_checked = true;
            }
            if pending.ends_with(&mark) {
                let body = &pending[..pending.len() - mark.len()];
                w.write_all(body).await?;
                return Ok(total + body.len() as u64);
            }
            if header_checked && pending.len() > mark.len() {
                let keep = pending.split_off(pending.len() - mark.len());
                w.write_all(&pending).await?;
                total += pending.len() as u64;
                pending = keep;
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::redis::parse_keyspace;

    #[test]
    fn keyspace_and_header() {
        let ks =
            parse_keyspace("# Keyspace\r\ndb0:keys=1000,expires=50,avg_ttl=3600\r\ndb3:keys=7,expires=0,avg_ttl=0\r\n");
        assert_eq!(ks["db0"].keys, 1000);
        assert_eq!(ks["db0"].expires, 50);
        assert_eq!(ks["db3"].keys, 7);
        assert!(check_header(b"REDIS0011\xfa").is_ok());
        assert!(check_header(b"PGDMP....").is_err());
    }
}
