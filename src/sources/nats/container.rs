//! A NATS server in a container (`container = …` / `service = …`).
//!
//! * **tarball**: the store directory (`data_dir`, the `-sd` path inside the container) is read
//!   through the engine's archive endpoint, which needs nothing in the image (the official
//!   `nats` image is scratch-based: no shell, no `tar`). The engine's tar is passed through as
//!   it arrives — never a temp copy — with one change: the engine names every entry from the
//!   path's last component (`data/jetstream/…` for `/data`), and that first component is
//!   dropped, so the artifact is laid out exactly like a host-mode one (`jetstream/…` at the
//!   top): `tar -x` into an empty DIR, then `nats-server -js -sd DIR`. (A `data_dir` ending in
//!   `/jetstream` keeps its `jetstream/` prefix, as on the host.) The file count and bytes are
//!   counted from the headers while they pass. With `pause = true` the container is paused
//!   for the copy, at most `pause_timeout`, and always unpaused (see `place::Paused`).
//! * **snapshot**: the JetStream API at the container's address on its network (from the
//!   engine), with the credentials and port of `url` if one is given.
//! * **restore** (`--target container:NAME | service:NAME`): a snapshot backup through the API
//!   at the container's address; a tarball backup written into the store directory of the
//!   *stopped* container (its volume), after it was fetched and checked in full.

use super::{snapshot, stream_states, NatsFacts, NatsMode, NatsSource};
use crate::catalog::Entry;
use crate::fetch::fetch_to_scratch;
use crate::keys::Identities;
use crate::place::{Container, ContainerRef, Engine};
use crate::sources::{Dump, Facts, Finish, Options, Restored};
use crate::storage::Storage;
use anyhow::{anyhow, bail, Context, Result};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The NATS client port when `url` names none.
const NATS_PORT: u16 = 4222;
/// How long a connection to the container's address may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts a tarball-mode dump of the store inside the container.
pub async fn tarball_dump(
    src: &NatsSource,
    place: &ContainerRef,
    data_dir: &Path,
    pause: Option<std::time::Duration>,
) -> Result<Dump> {
    let name = src.name.clone();
    let engine = Engine::connect().with_context(|| format!("source '{name}'"))?;
    // A stopped container's volume is read as well (nothing writes to it then); pause only
    // applies to a running one.
    let c = engine
        .resolve_any(place)
        .await
        .with_context(|| format!("source '{name}' ({place})"))?;
    let dir = data_dir
        .to_str()
        .ok_or_else(|| anyhow!("source '{name}': data_dir {} is not UTF-8", data_dir.display()))?
        .trim_end_matches('/')
        .to_string();
    let dir = if dir.is_empty() { "/".to_string() } else { dir };
    let streams = match &src.monitor_url {
        Some(m) => {
            let m = at_container(&c, m, 8222)
                .await
                .map_err(|e| anyhow!("source '{name}': {e:#}"))?;
            Some(stream_states(&m).await.map_err(|e| anyhow!("source '{name}': {e:#}"))?)
        }
        None => None,
    };
    // `…/jetstream` is archived as `jetstream/…`, so the extract is an `-sd` directory; any
    // other store directory is archived as its contents.
    let rename = match Path::new(&dir).file_name().and_then(|n| n.to_str()) {
        Some(last) => Rename {
            top: last.to_string(),
            keep: last == "jetstream",
        },
        None => bail!("source '{name}': data_dir '/' is not a store directory; give the -sd path (e.g. /data)"),
    };
    let paused = match pause {
        Some(_) if c.running => Some(c.pause().await.with_context(|| format!("source '{name}'"))?),
        _ => None,
    };
    let tree = match c.read_tree(&dir).await {
        Ok(t) => t,
        Err(e) => {
            let e = anyhow!("source '{name}': {e:#} (data_dir is the -sd path inside the container)");
            return Err(match paused {
                Some(p) => match p.resume().await {
                    Ok(()) => e,
                    Err(u) => e.context(format!("{u:#}")),
                },
                None => e,
            });
        }
    };
    tracing::info!(source = %name, container = %c.name, data_dir = %dir, paused = paused.is_some(), "copying the NATS store out of the container");
    let (w, reader) = tokio::io::duplex(1024 * 1024);
    let container = c.name.clone();
    // One task copies, watches the pause's deadline and the shutdown signal, and unpauses. If
    // the task is aborted (the upload failed) or dropped with the runtime (drctl stopping),
    // `Paused`'s drop unpauses before the process ends.
    let task = tokio::spawn(async move {
        let copy = pass_through(tree, w, &rename);
        let deadline = async {
            match pause {
                Some(t) if paused.is_some() => tokio::time::sleep(t).await,
                _ => std::future::pending().await,
            }
        };
        let copied = tokio::select! {
            r = copy => r.map_err(|e| anyhow!("source '{name}': copying {dir} out of container '{container}': {e:#}")),
            _ = deadline => Err(anyhow!(
                "source '{name}': the copy of {dir} took longer than pause_timeout ({}); container '{container}' was unpaused and the backup abandoned (raise pause_timeout)",
                humantime(pause.unwrap_or_default())
            )),
            _ = crate::process::shutdown().cancelled() => Err(anyhow!(
                "source '{name}': interrupted by a signal while copying {dir} out of container '{container}'; nothing was committed"
            )),
        };
        let resumed = match paused {
            Some(p) => p.resume().await,
            None => Ok(()),
        };
        let stats = match (copied, resumed) {
            (Ok(s), Ok(())) => s,
            (Err(e), Ok(())) => return Err(e),
            (Ok(_), Err(u)) => return Err(u.context(format!("source '{name}'"))),
            (Err(e), Err(u)) => return Err(e.context(format!("{u:#}"))),
        };
        Ok(Facts::Nats(NatsFacts {
            nats_mode: None,
            streams,
            file_count: Some(stats.file_count),
            file_bytes: Some(stats.file_bytes),
            container_data_dir: Some(dir),
            unknown: Default::default(),
        }))
    });
    Ok(Dump {
        reader: Box::new(reader),
        format: "tar",
        finish: Finish::Task(task),
    })
}

fn humantime(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s >= 60 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// A snapshot-mode dump through the JetStream API at the container's address.
pub async fn snapshot_dump(src: &NatsSource, place: &ContainerRef, url: &str, streams: &[String]) -> Result<Dump> {
    let name = &src.name;
    let engine = Engine::connect().with_context(|| format!("source '{name}'"))?;
    let c = engine
        .resolve(place)
        .await
        .with_context(|| format!("source '{name}' ({place})"))?;
    let url = at_container(&c, url, NATS_PORT)
        .await
        .map_err(|e| anyhow!("source '{name}': {e:#}"))?;
    snapshot::start_dump(src, &url, streams).await
}

/// `url` with its host replaced by the first address of `c` that accepts a connection on the
/// URL's port (`default_port` when it names none); user, password and token kept.
async fn at_container(c: &Container, url: &str, default_port: u16) -> Result<String> {
    let mut u = url::Url::parse(url).map_err(|e| anyhow!("{}: not a URL ({e})", crate::secret::redact_url(url)))?;
    let port = u.port().unwrap_or(default_port);
    let addrs = c.addresses().await?;
    if addrs.is_empty() {
        bail!(
            "container '{}' has no address on a network (host networking?); give a url that reaches it from here instead of container/service",
            c.name
        );
    }
    let mut tried = Vec::new();
    for a in &addrs {
        let sock = std::net::SocketAddr::new(a.ip, port);
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(sock)).await {
            Ok(Ok(_)) => {
                u.set_ip_host(a.ip)
                    .map_err(|_| anyhow!("cannot put {} in a URL", a.ip))?;
                if u.port().is_none() {
                    let _ = u.set_port(Some(port));
                }
                return Ok(u.to_string());
            }
            Ok(Err(e)) => tried.push(format!("{sock} on network {}: {e}", a.network)),
            Err(_) => tried.push(format!(
                "{sock} on network {}: no answer within {CONNECT_TIMEOUT:?}",
                a.network
            )),
        }
    }
    bail!(
        "cannot reach container '{}' at {} (is the server listening on port {port}? drctl reaches a container's address from the engine's host or from a container on the same network; run it there)",
        c.name,
        tried.join("; ")
    )
}

/// What passed through: regular files and their bytes.
#[derive(Debug, Default, PartialEq)]
struct TreeStats {
    file_count: u64,
    file_bytes: u64,
}

/// How entry names change on the way through: the engine names them from the directory's last
/// component `top` (`data/jetstream/…`; or `/jetstream/…` when it reads a paused or stopped
/// container's mount, as podman does); that component is dropped (and the entry of the
/// directory itself), or with `keep` (a `…/jetstream` data_dir) kept as `top/`.
struct Rename {
    top: String,
    keep: bool,
}

impl Rename {
    /// The new name; `None` to leave the entry out.
    fn apply(&self, name: &[u8]) -> Result<Option<Vec<u8>>> {
        let rel = relative(name, &self.top)?;
        Ok(match (self.keep, rel) {
            (false, rel) => rel,
            (true, None) => Some(format!("{}/", self.top).into_bytes()),
            (true, Some(rel)) => {
                let mut n = format!("{}/", self.top).into_bytes();
                n.extend_from_slice(&rel);
                Some(n)
            }
        })
    }
}

/// Copies the engine's tar from `r` to `w`, renaming every entry as `rename` says, and
/// counting regular files. Names
/// may come from the header (with its ustar prefix), a PAX `path` record or a GNU long-name
/// entry; all three are rewritten. Data is copied in bounded chunks as it arrives. The engine's
/// stream must end with the end-of-archive blocks: a stream cut short is an error.
async fn pass_through<R, W>(mut r: R, mut w: W, rename: &Rename) -> Result<TreeStats>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut stats = TreeStats::default();
    let mut pax: Option<Vec<(String, Vec<u8>)>> = None;
    let mut long_name: Option<Vec<u8>> = None;
    let mut long_name_header: Option<[u8; 512]> = None;
    let mut pax_header: Option<[u8; 512]> = None;
    loop {
        let mut block = [0u8; 512];
        r.read_exact(&mut block)
            .await
            .map_err(|e| anyhow!("the archive stream ended before its end marker: {e}"))?;
        if block.iter().all(|b| *b == 0) {
            // End of archive: write ours, and read the engine's to its end so that an error
            // after the last entry still fails the copy.
            w.write_all(&[0u8; 1024]).await?;
            tokio::io::copy(&mut r, &mut tokio::io::sink()).await?;
            w.shutdown().await?;
            return Ok(stats);
        }
        let header = tar::Header::from_byte_slice(&block);
        let kind = header.entry_type();
        let stored = header
            .entry_size()
            .map_err(|e| anyhow!("a tar header with a bad size: {e}"))?;
        match kind {
            tar::EntryType::XHeader => {
                pax = Some(pax_records(&read_padded(&mut r, stored).await?)?);
                pax_header = Some(block);
                continue;
            }
            tar::EntryType::GNULongName => {
                let mut n = read_padded(&mut r, stored).await?;
                while n.last() == Some(&0) {
                    n.pop();
                }
                long_name = Some(n);
                long_name_header = Some(block);
                continue;
            }
            tar::EntryType::XGlobalHeader => {
                let data = read_padded(&mut r, stored).await?;
                w.write_all(&block).await?;
                write_padded(&mut w, &data).await?;
                continue;
            }
            _ => {}
        }
        let pax_path = pax
            .as_ref()
            .and_then(|p| p.iter().find(|(k, _)| k == "path").map(|(_, v)| v.clone()));
        let size = pax
            .as_ref()
            .and_then(|p| p.iter().find(|(k, _)| k == "size"))
            .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
            .unwrap_or(stored);
        let name = pax_path
            .clone()
            .or_else(|| long_name.clone())
            .unwrap_or_else(|| header.path_bytes().into_owned());
        let new_name = rename.apply(&name)?;
        let Some(new_name) = new_name else {
            // The store directory's own entry: its contents go to the top of the archive.
            skip_padded(&mut r, size).await?;
            (pax, long_name, pax_header, long_name_header) = (None, None, None, None);
            continue;
        };
        if let (Some(records), Some(h)) = (pax.take(), pax_header.take()) {
            let records: Vec<(String, Vec<u8>)> = records
                .into_iter()
                .map(|(k, v)| match k.as_str() {
                    "path" => (k, new_name.clone()),
                    "linkpath" if kind == tar::EntryType::Link => {
                        let v = rename.apply(&v).ok().flatten().unwrap_or(v);
                        (k, v)
                    }
                    _ => (k, v),
                })
                .collect();
            let data = pax_data(&records);
            let mut h = tar::Header::from_byte_slice(&h).clone();
            h.set_size(data.len() as u64);
            h.set_cksum();
            w.write_all(h.as_bytes()).await?;
            write_padded(&mut w, &data).await?;
        }
        if let (Some(_), Some(h)) = (long_name.take(), long_name_header.take()) {
            let mut data = new_name.clone();
            data.push(0);
            let mut h = tar::Header::from_byte_slice(&h).clone();
            h.set_size(data.len() as u64);
            h.set_cksum();
            w.write_all(h.as_bytes()).await?;
            write_padded(&mut w, &data).await?;
        }
        let mut h = header.clone();
        set_name(&mut h, &new_name);
        if kind == tar::EntryType::Link {
            if let Some(target) = h.link_name_bytes().map(|t| t.into_owned()) {
                if let Ok(Some(t)) = rename.apply(&target) {
                    let _ = h.set_link_name(std::ffi::OsStr::from_bytes(&t));
                }
            }
        }
        h.set_cksum();
        w.write_all(h.as_bytes()).await?;
        copy_padded(&mut r, &mut w, size).await?;
        if matches!(kind, tar::EntryType::Regular | tar::EntryType::Continuous) {
            stats.file_count += 1;
            stats.file_bytes += size;
        }
    }
}

/// `name` relative to the copied directory `top`: `top/x` and `/x` are `x`; `None` for the
/// directory itself (`top`, `top/`, `/`).
fn relative(name: &[u8], top: &str) -> Result<Option<Vec<u8>>> {
    let dir = name.last() == Some(&b'/');
    let mut n = name.strip_prefix(b"./").unwrap_or(name);
    while n.last() == Some(&b'/') {
        n = &n[..n.len() - 1];
    }
    let rest = if n.first() == Some(&b'/') || n.is_empty() {
        let mut r = n;
        while r.first() == Some(&b'/') {
            r = &r[1..];
        }
        r
    } else if n == top.as_bytes() {
        b""
    } else {
        match n.strip_prefix(top.as_bytes()).and_then(|r| r.strip_prefix(b"/")) {
            Some(r) => r,
            None => bail!(
                "the engine's archive has an entry '{}' outside '{top}/'",
                String::from_utf8_lossy(name)
            ),
        }
    };
    if rest.is_empty() {
        return Ok(None);
    }
    let mut out = rest.to_vec();
    if dir {
        out.push(b'/');
    }
    Ok(Some(out))
}

/// Puts `name` in the header's name (and ustar prefix) fields. A name too long for them is
/// carried by the PAX or GNU long-name entry written before the header; the field then holds
/// its first bytes, as Go's archive/tar does.
fn set_name(h: &mut tar::Header, name: &[u8]) {
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(name));
    if h.set_path(path).is_ok() {
        // set_path drops a directory's trailing slash; keep it, as the engine wrote it.
        return;
    }
    let old = h.as_old_mut();
    old.name = [0u8; 100];
    let n = name.len().min(100);
    old.name[..n].copy_from_slice(&name[..n]);
    if let Some(u) = h.as_ustar_mut() {
        u.prefix = [0u8; 155];
    }
}

async fn read_padded<R: AsyncRead + Unpin>(r: &mut R, size: u64) -> Result<Vec<u8>> {
    if size > 1 << 20 {
        bail!("a tar extended header of {size} bytes");
    }
    let padded = size.div_ceil(512) * 512;
    let mut data = vec![0u8; padded as usize];
    r.read_exact(&mut data).await?;
    data.truncate(size as usize);
    Ok(data)
}

async fn write_padded<W: AsyncWrite + Unpin>(w: &mut W, data: &[u8]) -> Result<()> {
    w.write_all(data).await?;
    let pad = (512 - data.len() % 512) % 512;
    w.write_all(&[0u8; 512][..pad]).await?;
    Ok(())
}

async fn skip_padded<R: AsyncRead + Unpin>(r: &mut R, size: u64) -> Result<()> {
    let padded = size.div_ceil(512) * 512;
    let n = tokio::io::copy(&mut (&mut *r).take(padded), &mut tokio::io::sink()).await?;
    if n != padded {
        bail!("the archive stream ended inside an entry");
    }
    Ok(())
}

/// Copies an entry's data and padding, in bounded chunks.
async fn copy_padded<R, W>(r: &mut R, w: &mut W, size: u64) -> Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let padded = size.div_ceil(512) * 512;
    let n = tokio::io::copy(&mut (&mut *r).take(padded), w).await?;
    if n != padded {
        bail!("the archive stream ended {} bytes early, inside an entry", padded - n);
    }
    Ok(())
}

/// PAX records (`"<len> key=value\n"`…), in order.
fn pax_records(data: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let bad = || anyhow!("a malformed PAX header in the engine's archive");
        let sp = rest.iter().position(|b| *b == b' ').ok_or_else(bad)?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)?;
        if len <= sp + 1 || len > rest.len() {
            return Err(bad());
        }
        let rec = &rest[sp + 1..len];
        let rec = rec.strip_suffix(b"\n").unwrap_or(rec);
        let eq = rec.iter().position(|b| *b == b'=').ok_or_else(bad)?;
        out.push((String::from_utf8_lossy(&rec[..eq]).into_owned(), rec[eq + 1..].to_vec()));
        rest = &rest[len..];
    }
    Ok(out)
}

fn pax_data(records: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let body = k.len() + v.len() + 3; // ' ', '=', '\n'
        let mut len = body + 1;
        while len != body + len.to_string().len() {
            len = body + len.to_string().len();
        }
        out.extend_from_slice(format!("{len} {k}=").as_bytes());
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

/// The target server's URL for a snapshot restore into a container: its credentials, when it
/// requires some, come from drctl's environment as the `nats` CLI takes them (`NATS_TOKEN`, or
/// `NATS_USER` + `NATS_PASSWORD`), never from the command line.
fn target_url(name: &str, env: impl Fn(&str) -> Option<String>) -> Result<String> {
    let mut u = url::Url::parse(&format!("nats://placeholder:{NATS_PORT}"))?;
    u.set_host(Some(name))
        .map_err(|_| anyhow!("container name '{name}' cannot be a host name"))?;
    let set = |u: &mut url::Url, user: &str, pw: Option<&str>| -> Result<()> {
        u.set_username(user)
            .map_err(|_| anyhow!("cannot put the NATS user in a URL"))?;
        u.set_password(pw)
            .map_err(|_| anyhow!("cannot put the NATS password in a URL"))?;
        Ok(())
    };
    match (
        env("NATS_TOKEN").filter(|t| !t.is_empty()),
        env("NATS_USER").filter(|u| !u.is_empty()),
    ) {
        (Some(_), Some(_)) => {
            bail!("both NATS_TOKEN and NATS_USER are set for the restore target; keep the one its server uses")
        }
        (Some(token), None) => set(&mut u, &token, None)?,
        (None, Some(user)) => set(&mut u, &user, env("NATS_PASSWORD").as_deref())?,
        (None, None) => {}
    }
    Ok(u.to_string())
}

/// `--target container:NAME | service:NAME`.
pub async fn restore_into_container(
    facts: &NatsFacts,
    place: &ContainerRef,
    entry: &Entry,
    storages: &[Storage],
    identities: &Identities,
    opts: Options<'_>,
) -> Result<Restored> {
    let m = &entry.manifest;
    let engine = Engine::connect()?;
    if facts.mode() == NatsMode::Snapshot {
        let c = engine
            .resolve(place)
            .await
            .with_context(|| format!("restore of '{}'", m.source))?;
        let base = target_url(&c.name, |k| std::env::var(k).ok())?;
        let url = at_container(&c, &base, NATS_PORT).await?;
        let tar = fetch_to_scratch(storages, entry, identities, "snapshot.tar", opts.scratch_dir).await?;
        let streams = snapshot::restore(&tar.file, &url, opts.clean).await?;
        return Ok(Restored::NatsStreams {
            source: m.source.clone(),
            backup: m.id.clone(),
            streams,
        });
    }
    // A store is written with its server stopped: a running nats-server would neither see the
    // files nor keep them (it rewrites its store as it runs).
    let c = engine
        .resolve_any(place)
        .await
        .with_context(|| format!("restore of '{}'", m.source))?;
    let service = match place {
        ContainerRef::Service { service, .. } => service.clone(),
        ContainerRef::Name(n) => n.clone(),
    };
    if c.running {
        bail!(
            "container '{}' is running; a NATS store is written with its server stopped: stop it first: docker compose stop {service} (then run this restore again, and start it)",
            c.name
        );
    }
    let store = store_dir(&c, facts).await?;
    let existing = entries_in(&c, &store).await?;
    if existing > 0 && !opts.clean {
        bail!(
            "the store {store} in container '{}' is not empty ({existing}+ entries); restore into an empty volume, or pass --clean to write over it",
            c.name
        );
    }
    // Everything is fetched and checked before the first byte is written into the volume.
    let tar = fetch_to_scratch(storages, entry, identities, "store.tar", opts.scratch_dir).await?;
    let file = tar.file.clone();
    let (files, has_jetstream) = tokio::task::spawn_blocking(move || check_store_tar(&file))
        .await
        .map_err(|e| anyhow!("checking the archive failed: {e}"))??;
    if !has_jetstream {
        bail!(
            "backup {} of '{}' holds no jetstream/ directory: it is not a NATS store (restore it with --output-dir to look at it)",
            m.id,
            m.source
        );
    }
    if existing > 0 {
        tracing::warn!(container = %c.name, store = %store, "--clean: writing over a non-empty store; files that are not in the backup stay (the engine cannot delete files in the container)");
    }
    let f = tokio::fs::File::open(&tar.file).await?;
    c.write_tree(&store, tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024))
        .await?;
    Ok(Restored::Extracted {
        dir: std::path::PathBuf::from(format!("{}:{store}", c.name)),
        hint: Some(format!(
            "{files} files of backup {} into the stopped container; start it: docker compose start {service}",
            m.id
        )),
    })
}

/// Where the stopped container keeps its store: the `-sd`/`--store_dir` argument of its
/// command, else the directory the backup was taken from.
async fn store_dir(c: &Container, facts: &NatsFacts) -> Result<String> {
    let args = c.command_line().await?;
    let from_args = store_dir_arg(&args);
    from_args.or_else(|| facts.container_data_dir.clone()).ok_or_else(|| {
        anyhow!(
            "cannot tell where container '{}' keeps its NATS store: its command has no -sd DIR; run it with `-js -sd /data`",
            c.name
        )
    })
}

fn store_dir_arg(args: &[String]) -> Option<String> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let a = a.trim_start_matches('-');
        match a.split_once('=') {
            Some(("sd" | "store_dir", v)) => return Some(v.to_string()),
            None if a == "sd" || a == "store_dir" => return it.next().cloned(),
            _ => {}
        }
    }
    None
}

/// How many entries `dir` in the container holds (counting stops at a few).
async fn entries_in(c: &Container, dir: &str) -> Result<usize> {
    let tree = c.read_tree(dir).await?;
    let bridge = tokio_util::io::SyncIoBridge::new(tree);
    tokio::task::spawn_blocking(move || -> Result<usize> {
        let mut a = tar::Archive::new(bridge);
        let mut n = 0;
        for e in a.entries()? {
            let e = e?;
            // The first entry is the directory itself (`data/`); anything below it counts.
            let name = e.path_bytes();
            let name = name.strip_suffix(b"/").unwrap_or(&name);
            if name.contains(&b'/') {
                n += 1;
                if n >= 3 {
                    break;
                }
            }
        }
        Ok(n)
    })
    .await
    .map_err(|e| anyhow!("reading the store failed: {e}"))?
}

/// Reads the whole archive: every entry's name must be relative and stay inside; returns the
/// number of regular files and whether it holds `jetstream/`.
fn check_store_tar(file: &Path) -> Result<(u64, bool)> {
    let mut a = tar::Archive::new(std::fs::File::open(file)?);
    let (mut files, mut js) = (0u64, false);
    for e in a.entries().context("the backup is not a tar archive")? {
        let mut e = e.context("the backup's archive is damaged")?;
        let path = e.path()?.into_owned();
        if path.is_absolute() || path.components().any(|c| c == std::path::Component::ParentDir) {
            bail!(
                "the backup's archive has an entry outside its directory: {}",
                path.display()
            );
        }
        if path.components().next().is_some_and(|c| c.as_os_str() == "jetstream") {
            js = true;
        }
        if e.header().entry_type().is_file() {
            files += 1;
        }
        std::io::copy(&mut e, &mut std::io::sink()).context("the backup's archive is damaged")?;
    }
    Ok((files, js))
}

#[cfg(test)]
mod target_tests {
    use super::*;

    #[test]
    fn target_credentials_come_from_the_environment_encoded() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        assert_eq!(target_url("app-nats-1", env(&[])).unwrap(), "nats://app-nats-1:4222");
        assert_eq!(
            target_url("nats", env(&[("NATS_TOKEN", "t@k/en")])).unwrap(),
            "nats://t%40k%2Fen@nats:4222"
        );
        assert_eq!(
            target_url("nats", env(&[("NATS_USER", "app"), ("NATS_PASSWORD", "p:w@")])).unwrap(),
            "nats://app:p%3Aw%40@nats:4222"
        );
        let e = target_url("nats", env(&[("NATS_USER", "a"), ("NATS_TOKEN", "t")])).unwrap_err();
        assert!(e.to_string().contains("both"), "{e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine_like_tar(names: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in names {
            let mut h = tar::Header::new_gnu();
            if name.ends_with('/') {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                h.set_mode(0o755);
                b.append_data(&mut h, name, &[][..]).unwrap();
            } else {
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                b.append_data(&mut h, name, *data).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    #[tokio::test]
    async fn the_store_directory_component_is_dropped_and_files_counted() {
        let long = format!("data/jetstream/$G/streams/{}/msgs/1.blk", "S".repeat(150));
        let blk = [7u8; 1000];
        let entries: [(&str, &[u8]); 4] = [
            ("data/", b""),
            ("data/jetstream/", b""),
            ("data/jetstream/$G/streams/ORDERS/meta.inf", b"{\"name\":\"ORDERS\"}"),
            (&long, &blk),
        ];
        let input = engine_like_tar(&entries);
        let mut out = Vec::new();
        let stats = pass_through(&input[..], &mut out, &data()).await.unwrap();
        assert_eq!(
            stats,
            TreeStats {
                file_count: 2,
                file_bytes: 17 + 1000
            }
        );
        let mut a = tar::Archive::new(&out[..]);
        let got: Vec<(String, Vec<u8>)> = a
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut d = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut d).unwrap();
                (e.path().unwrap().to_string_lossy().into_owned(), d)
            })
            .collect();
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "jetstream/",
                "jetstream/$G/streams/ORDERS/meta.inf",
                &long["data/".len()..]
            ]
        );
        assert_eq!(got[2].1, vec![7u8; 1000]);
    }

    #[tokio::test]
    async fn a_stream_cut_short_is_an_error() {
        let blk = [1u8; 4000];
        let entries: [(&str, &[u8]); 2] = [("data/", b""), ("data/x", &blk)];
        let input = engine_like_tar(&entries);
        let mut out = Vec::new();
        let e = pass_through(&input[..2048], &mut out, &data()).await.unwrap_err();
        assert!(e.to_string().contains("early"), "{e}");
    }

    fn data() -> Rename {
        Rename {
            top: "data".into(),
            keep: false,
        }
    }

    #[test]
    fn names_of_running_and_paused_copies_map_alike() {
        let r = data();
        for (engine, ours) in [
            ("data", None),
            ("data/", None),
            ("/", None),
            ("data/jetstream/", Some("jetstream/")),
            ("/jetstream", Some("jetstream")),
            ("./data/jetstream/x.blk", Some("jetstream/x.blk")),
        ] {
            assert_eq!(
                r.apply(engine.as_bytes()).unwrap(),
                ours.map(|s| s.as_bytes().to_vec()),
                "{engine}"
            );
        }
        assert!(r.apply(b"etc/passwd").is_err());
        let js = Rename {
            top: "jetstream".into(),
            keep: true,
        };
        assert_eq!(js.apply(b"/").unwrap(), Some(b"jetstream/".to_vec()));
        assert_eq!(js.apply(b"/$G/x").unwrap(), Some(b"jetstream/$G/x".to_vec()));
        assert_eq!(js.apply(b"jetstream/$G").unwrap(), Some(b"jetstream/$G".to_vec()));
    }

    #[test]
    fn pax_records_round_trip_with_new_lengths() {
        let recs = vec![
            ("path".to_string(), b"a".repeat(95)),
            ("size".to_string(), b"12".to_vec()),
        ];
        let data = pax_data(&recs);
        assert_eq!(pax_records(&data).unwrap(), recs);
        assert!(data.starts_with(b"105 path="), "{}", String::from_utf8_lossy(&data));
    }

    #[test]
    fn the_store_dir_is_read_from_the_command() {
        let a = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            store_dir_arg(&a(&["/nats-server", "-js", "-sd", "/data"])),
            Some("/data".into())
        );
        assert_eq!(
            store_dir_arg(&a(&["nats-server", "--store_dir=/srv/js"])),
            Some("/srv/js".into())
        );
        assert_eq!(store_dir_arg(&a(&["nats-server", "-js"])), None);
    }
}
