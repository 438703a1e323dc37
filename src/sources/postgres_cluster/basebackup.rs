//! A base backup: `pg_basebackup -D - -Ft -X none --checkpoint=fast` streamed through the
//! pipeline. `-X none` because the WAL comes from the archive (`drctl wal-push`): the server
//! then waits, before it reports the backup done, until the segment holding the backup's end
//! is archived, so a base backup that finished is one whose WAL is on storage.

use super::wal::{Lsn, Segment};
use super::{ClusterFacts, ClusterServer, ClusterSource};
use crate::place::{ContainerRef, Engine, ExecSpec};
use crate::process;
use crate::sources::postgres::{conn_for, query_value, server_major, ConnInfo};
use crate::sources::{Dump, Facts, Finish};
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};

/// The PostgreSQL client tool `name` for a server of `major`: from `pg_bin_dir`, else the
/// server's own major under /usr/lib/postgresql, else PATH.
pub fn tool(pg_bin_dir: Option<&Path>, major: u32, name: &str) -> PathBuf {
    if let Some(d) = pg_bin_dir {
        return d.join(name);
    }
    let own = PathBuf::from(format!("/usr/lib/postgresql/{major}/bin/{name}"));
    if own.exists() {
        own
    } else {
        PathBuf::from(name)
    }
}

/// Facts about the server, asked before the backup starts.
struct Server {
    system_identifier: String,
    superuser: String,
    version: String,
    major: u32,
    segment_size: u64,
}

async fn ask(src: &ClusterSource, conn: &ConnInfo, psql: &Path) -> Result<Server> {
    let q = |sql: &'static str| async move {
        query_value(psql, conn, sql, &format!("psql (asking {} for {sql})", conn.display()))
            .await
            .with_context(|| format!("source '{}': cannot query {}", src.name, conn.display()))
    };
    let num: u32 = q("show server_version_num")
        .await?
        .parse()
        .map_err(|_| anyhow!("source '{}': the server's version is not a number", src.name))?;
    let major = server_major(num);
    check_server(src, major, &q("show archive_mode").await?)?;
    Ok(Server {
        system_identifier: q("select system_identifier from pg_control_system()").await?,
        superuser: q(SUPERUSER).await?,
        version: q("show server_version").await?,
        major,
        segment_size: q("select setting::bigint from pg_settings where name = 'wal_segment_size'")
            .await?
            .parse()
            .map_err(|_| anyhow!("source '{}': cannot read wal_segment_size", src.name))?,
    })
}

/// A server drctl can take base backups of: new enough, and archiving.
fn check_server(src: &ClusterSource, major: u32, archive_mode: &str) -> Result<()> {
    if major < 13 {
        bail!(
            "source '{}': PostgreSQL {major} is too old for a postgres_cluster source (13 or newer; use type = \"postgres\")",
            src.name
        );
    }
    if archive_mode == "off" {
        bail!(
            "source '{}': the server has archive_mode = off, so no WAL reaches the archive and a base backup could never be recovered; set archive_mode = on and archive_command = 'drctl wal-push --source {} %p' (in a container: {}), restart, then back up",
            src.name,
            src.name,
            super::spool::server_args().join(" ")
        );
    }
    Ok(())
}

/// What the base backup's own files say about its WAL: `backup_label` (written at the start:
/// `START WAL LOCATION: 0/2000028 (file …)`, `START TIMELINE: 1`) and the end of
/// `backup_manifest` (`"WAL-Ranges": [{ "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN":
/// "0/2000100" }]`), both read from the tar stream as it passes (`TarTap`). pg_basebackup
/// prints the points itself only when it fetches or streams the WAL, which `-X none` does not.
pub fn parse_points(label: &str, manifest_tail: &str) -> Option<(Lsn, u32, Lsn)> {
    let field = |name: &str| {
        label
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let start = Lsn::parse(field("START WAL LOCATION:")?.split_whitespace().next()?)?;
    let timeline: u32 = field("START TIMELINE:")?.parse().ok()?;
    let end = manifest_tail
        .rsplit("\"End-LSN\"")
        .next()
        .filter(|_| manifest_tail.contains("\"End-LSN\""))?;
    let end = end.split('"').nth(1)?;
    Some((start, timeline, Lsn::parse(end)?))
}

/// Reads a tar stream through, keeping `backup_label` and the last `TAIL` bytes of
/// `backup_manifest` (its WAL ranges are at the end; the rest lists every file). Memory is
/// bounded: one header, the label (refused past 64 KiB) and the tail.
pub struct TarTap<R> {
    inner: R,
    scan: std::sync::Arc<std::sync::Mutex<TarScan>>,
    /// Told when the stream has ended: only then has the scan seen the manifest (the child
    /// exits as soon as its last bytes are in the pipe, before they are read).
    eof: Option<tokio::sync::oneshot::Sender<()>>,
}

const TAIL: usize = 64 * 1024;

#[derive(Default)]
pub struct TarScan {
    header: Vec<u8>,
    /// Bytes left in the current entry's data, then its padding to 512.
    data_left: u64,
    pad_left: u64,
    capture: Option<&'static str>,
    pub label: Vec<u8>,
    pub manifest_tail: Vec<u8>,
}

impl TarScan {
    fn feed(&mut self, mut b: &[u8]) {
        while !b.is_empty() {
            if self.data_left > 0 {
                let n = (self.data_left as usize).min(b.len());
                match self.capture {
                    Some("backup_label") if self.label.len() + n <= TAIL => self.label.extend_from_slice(&b[..n]),
                    Some("backup_manifest") => {
                        self.manifest_tail.extend_from_slice(&b[..n]);
                        if self.manifest_tail.len() > 2 * TAIL {
                            self.manifest_tail.drain(..self.manifest_tail.len() - TAIL);
                        }
                    }
                    _ => {}
                }
                self.data_left -= n as u64;
                b = &b[n..];
                continue;
            }
            if self.pad_left > 0 {
                let n = (self.pad_left as usize).min(b.len());
                self.pad_left -= n as u64;
                b = &b[n..];
                continue;
            }
            let n = (512 - self.header.len()).min(b.len());
            self.header.extend_from_slice(&b[..n]);
            b = &b[n..];
            if self.header.len() == 512 {
                let h = std::mem::take(&mut self.header);
                let size = tar_size(&h[124..136]);
                let name_end = h[..100].iter().position(|c| *c == 0).unwrap_or(100);
                let name = &h[..name_end];
                self.capture = match name {
                    b"backup_label" | b"./backup_label" => Some("backup_label"),
                    b"backup_manifest" | b"./backup_manifest" => Some("backup_manifest"),
                    _ => None,
                };
                self.data_left = size;
                self.pad_left = (512 - size % 512) % 512;
            }
        }
    }
}

/// A tar header's size field: octal text, or base-256 when the high bit is set.
fn tar_size(f: &[u8]) -> u64 {
    if f[0] & 0x80 != 0 {
        f[1..].iter().fold((f[0] & 0x7f) as u64, |n, b| (n << 8) | *b as u64)
    } else {
        f.iter()
            .take_while(|c| **c != 0 && **c != b' ')
            .fold(0, |n, c| n * 8 + c.saturating_sub(b'0') as u64)
    }
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for TarTap<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let p = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = &p {
            let new = buf.filled()[before..].to_vec();
            if new.is_empty() && buf.remaining() > 0 {
                if let Some(tx) = self.eof.take() {
                    let _ = tx.send(());
                }
            }
            self.scan.lock().expect("tar scan lock").feed(&new);
        }
        p
    }
}

pub async fn start_dump(src: &ClusterSource) -> Result<Dump> {
    match &src.server {
        ClusterServer::Host { url, password_file } => start_host(src, url, password_file.as_deref()).await,
        ClusterServer::Container { place, user } => {
            tokio::select! {
                r = start_container(src, place, user.as_deref()) => r,
                _ = crate::process::shutdown().cancelled() => bail!(
                    "interrupted by a signal while starting pg_basebackup for '{}' in {place}; nothing was committed",
                    src.name
                ),
            }
        }
    }
}

async fn start_host(src: &ClusterSource, url: &str, password_file: Option<&Path>) -> Result<Dump> {
    let conn = conn_for(&src.name, url, password_file)?;
    // The server's major decides which psql/pg_basebackup; ask with whatever psql there is.
    let psql = src.client_tool("psql");
    let server = ask(src, &conn, &psql).await?;
    let bb = tool(src.pg_bin_dir.as_deref(), server.major, "pg_basebackup");
    let mut version = process::pg_command(&bb);
    version.arg("--version");
    let tool_version = process::run(version, &format!("{} --version", bb.display()))
        .await
        .with_context(|| {
            format!(
                "source '{}': no usable pg_basebackup (install postgresql-client-{} or set pg_bin_dir)",
                src.name, server.major
            )
        })?;
    let (tool_major, tool_version) = crate::sources::postgres::parse_tool_version(&tool_version)
        .ok_or_else(|| anyhow!("source '{}': cannot read {}'s version", src.name, bb.display()))?;
    if tool_major < server.major {
        bail!(
            "source '{}': {} is version {tool_major}, older than server {}; install postgresql-client-{} or set pg_bin_dir",
            src.name,
            bb.display(),
            server.major,
            server.major
        );
    }
    tracing::info!(source = %src.name, server = %server.version, pg_basebackup = %bb.display(), "starting pg_basebackup");
    let mut cmd = process::pg_command(&bb);
    conn.apply(&mut cmd);
    cmd.args(BASEBACKUP_ARGS);
    cmd.arg(format!("--label=drctl {}", src.name));
    // The manifest (in the tar stream when writing to stdout) records the WAL range.
    let (stdout, completion) = process::spawn_streaming(cmd, format!("pg_basebackup for '{}'", src.name))?;
    Ok(tapped(&src.name, server, tool_version, stdout, async move {
        completion.wait().await.map(|_| ())
    }))
}

/// The bootstrap superuser: the role initdb made, with OID 10.
const SUPERUSER: &str = "select rolname from pg_roles where oid = 10";

const BASEBACKUP_ARGS: [&str; 5] = [
    "--pgdata=-",
    "--format=tar",
    "--wal-method=none",
    "--checkpoint=fast",
    "--no-password",
];

/// pg_basebackup exec'd in the container (its major is the server's), over the container's
/// local socket as the login `user` (default: its `POSTGRES_USER`), like the logical source.
async fn start_container(src: &ClusterSource, place: &ContainerRef, user: Option<&str>) -> Result<Dump> {
    let name = &src.name;
    let engine = Engine::connect().with_context(|| format!("source '{name}'"))?;
    let c = engine
        .resolve(place)
        .await
        .with_context(|| format!("source '{name}' ({place})"))?;
    let login = crate::sources::postgres::container_login(&c, user, None);
    // One psql run, one answer per line.
    let answers = c
        .exec_output(ExecSpec {
            cmd: crate::sources::postgres::container_psql(&[
                "-c",
                "show server_version_num",
                "-c",
                "show archive_mode",
                "-c",
                "select system_identifier from pg_control_system()",
                "-c",
                "show server_version",
                "-c",
                "select setting from pg_settings where name = 'wal_segment_size'",
                "-c",
                "show archive_command",
                "-c",
                SUPERUSER,
            ]),
            env: login.env.clone(),
            what: format!("psql for '{name}' (as '{}')", login.user),
        })
        .await
        .with_context(|| {
            format!(
                "source '{name}': cannot connect as '{}' in container '{}' (set user = … in the source)",
                login.user, c.name
            )
        })?;
    let lines: Vec<&str> = answers.lines().collect();
    let [num, archive_mode, system_identifier, version, segment_size, archive_command, superuser] = lines[..] else {
        bail!("source '{name}': psql in container '{}' answered {answers:?}", c.name);
    };
    let num: u32 = num
        .trim()
        .parse()
        .map_err(|_| anyhow!("source '{name}': the server's version is not a number"))?;
    let server = Server {
        system_identifier: system_identifier.trim().to_string(),
        superuser: superuser.trim().to_string(),
        version: version.trim().to_string(),
        major: server_major(num),
        segment_size: segment_size
            .trim()
            .parse()
            .map_err(|_| anyhow!("source '{name}': cannot read wal_segment_size"))?,
    };
    check_server(src, server.major, archive_mode.trim())?;
    if !archive_command.contains(super::spool::SPOOL) {
        bail!(
            "source '{name}': the server in container '{}' archives with archive_command = '{}', which does not copy into {}; drctl takes WAL from there. Start it with these arguments (drctl init --from-compose prints them for the compose file): {}",
            c.name,
            archive_command.trim(),
            super::spool::SPOOL,
            super::spool::server_args().join(" ")
        );
    }
    let tool_version = c
        .exec_output(ExecSpec {
            cmd: vec!["pg_basebackup".into(), "--version".into()],
            env: Vec::new(),
            what: format!("pg_basebackup --version for '{name}'"),
        })
        .await
        .with_context(|| format!("source '{name}': no pg_basebackup in container '{}'", c.name))?;
    let (_, tool_version) = crate::sources::postgres::parse_tool_version(&tool_version).ok_or_else(|| {
        anyhow!(
            "source '{name}': pg_basebackup in container '{}' printed '{}' for its version",
            c.name,
            tool_version.trim()
        )
    })?;
    tracing::info!(source = %name, container = %c.name, server = %server.version, "starting pg_basebackup in the container");
    let mut cmd: Vec<String> = vec!["pg_basebackup".into()];
    cmd.extend(BASEBACKUP_ARGS.iter().map(|s| s.to_string()));
    cmd.push(format!("--label=drctl {name}"));
    let (stdout, _, done) = c
        .exec(
            ExecSpec {
                cmd,
                env: login.env.clone(),
                what: format!("pg_basebackup for '{name}'"),
            },
            false,
        )
        .await?;
    Ok(tapped(name, server, tool_version, stdout, async move {
        done.wait().await.map(|_| ())
    }))
}

/// The backup's stream, read through a [`TarTap`]; its facts once the stream has ended and
/// `finished` (the tool's exit) says it succeeded.
fn tapped<R, F>(name: &str, server: Server, tool_version: String, stdout: R, finished: F) -> Dump
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    F: std::future::Future<Output = Result<()>> + Send + 'static,
{
    let scan = std::sync::Arc::new(std::sync::Mutex::new(TarScan::default()));
    let (eof_tx, eof_rx) = tokio::sync::oneshot::channel();
    let reader = TarTap {
        inner: stdout,
        scan: scan.clone(),
        eof: Some(eof_tx),
    };
    let name = name.to_string();
    let task = tokio::spawn(async move {
        finished.await?;
        eof_rx
            .await
            .map_err(|_| anyhow!("source '{name}': the base backup stream was not read to its end"))?;
        let (label, tail) = {
            let s = scan.lock().expect("tar scan lock");
            (
                String::from_utf8_lossy(&s.label).into_owned(),
                String::from_utf8_lossy(&s.manifest_tail).into_owned(),
            )
        };
        let (start, timeline, stop) = parse_points(&label, &tail).ok_or_else(|| {
            anyhow!("source '{name}': the base backup's backup_label and backup_manifest do not say where its WAL starts and ends (backup_label: {label:?})")
        })?;
        let seg = server.segment_size;
        Ok(Facts::PostgresCluster(ClusterFacts {
            system_identifier: server.system_identifier,
            server_version: server.version,
            major: server.major,
            pg_basebackup_version: tool_version,
            timeline,
            start_lsn: start,
            stop_lsn: stop,
            segment_size: seg,
            start_wal: Segment::containing(timeline, start, seg).name(seg),
            stop_wal: Segment::containing(timeline, stop, seg).name(seg),
            superuser: Some(server.superuser),
            unknown: Default::default(),
        }))
    });
    Dump {
        reader: Box::new(reader),
        format: "tar",
        finish: Finish::Task(task),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_and_end_points_are_read_from_the_label_and_the_manifest() {
        let label = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
                     CHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\nSTART TIMELINE: 1\n";
        let tail =
            "\"WAL-Ranges\": [\n{ \"Timeline\": 1, \"Start-LSN\": \"0/2000028\", \"End-LSN\": \"0/2000100\" }\n],\n";
        assert_eq!(parse_points(label, tail), Some((Lsn(0x2000028), 1, Lsn(0x2000100))));
        assert_eq!(parse_points(label, "{}"), None);
        assert_eq!(parse_points("", tail), None);
    }

    #[test]
    fn the_tap_finds_the_label_and_the_manifest_in_a_tar_stream() {
        let mut tar = tar::Builder::new(Vec::new());
        for (name, body) in [
            ("PG_VERSION", b"15\n".to_vec()),
            (
                "backup_label",
                b"START WAL LOCATION: 0/3000028 (file x)\nSTART TIMELINE: 2\n".to_vec(),
            ),
            ("base/1/1259", vec![7u8; 9000]),
            ("backup_manifest", {
                let mut m = vec![b' '; 200_000];
                m.extend_from_slice(b"\"End-LSN\": \"0/3000100\" }\n]}");
                m
            }),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o600);
            h.set_cksum();
            tar.append_data(&mut h, name, body.as_slice()).unwrap();
        }
        let bytes = tar.into_inner().unwrap();
        let mut scan = TarScan::default();
        // Fed in odd-sized pieces, as a pipe delivers them.
        for piece in bytes.chunks(777) {
            scan.feed(piece);
        }
        assert!(scan.manifest_tail.len() <= 2 * TAIL);
        assert_eq!(
            parse_points(
                &String::from_utf8_lossy(&scan.label),
                &String::from_utf8_lossy(&scan.manifest_tail)
            ),
            Some((Lsn(0x3000028), 2, Lsn(0x3000100)))
        );
    }
}
