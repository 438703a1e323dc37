//! A base backup: `pg_basebackup -D - -Ft -X none --checkpoint=fast` streamed through the
//! pipeline. `-X none` because the WAL comes from the archive (`drctl wal-push`): the server
//! then waits, before it reports the backup done, until the segment holding the backup's end
//! is archived, so a base backup that finished is one whose WAL is on storage.

use super::wal::{Lsn, Segment};
use super::{ClusterFacts, ClusterSource};
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
    if major < 13 {
        bail!(
            "source '{}': PostgreSQL {major} is too old for a postgres_cluster source (13 or newer; use type = \"postgres\")",
            src.name
        );
    }
    let archive_mode = q("show archive_mode").await?;
    if archive_mode == "off" {
        bail!(
            "source '{}': the server has archive_mode = off, so no WAL reaches the archive and a base backup could never be recovered; set archive_mode = on and archive_command = 'drctl wal-push --source {} %p' (restart needed), then back up",
            src.name,
            src.name
        );
    }
    Ok(Server {
        system_identifier: q("select system_identifier from pg_control_system()").await?,
        version: q("show server_version").await?,
        major,
        segment_size: q("select setting::bigint from pg_settings where name = 'wal_segment_size'")
            .await?
            .parse()
            .map_err(|_| anyhow!("source '{}': cannot read wal_segment_size", src.name))?,
    })
}

/// `pg_basebackup --verbose` says where the backup's WAL starts and ends:
/// `write-ahead log start point: 0/2000028 on timeline 1`, `write-ahead log end point: 0/2000100`.
pub fn parse_points(stderr: &str) -> Option<(Lsn, u32, Lsn)> {
    let mut start = None;
    let mut end = None;
    for line in stderr.lines() {
        if let Some(rest) = line.split("log start point: ").nth(1) {
            let mut w = rest.split_whitespace();
            let lsn = Lsn::parse(w.next()?)?;
            let tli = rest.split("on timeline ").nth(1)?.trim().parse().ok()?;
            start = Some((lsn, tli));
        }
        if let Some(rest) = line.split("log end point: ").nth(1) {
            end = Lsn::parse(rest.split_whitespace().next()?);
        }
    }
    let (s, t) = start?;
    Some((s, t, end?))
}

pub async fn start_dump(src: &ClusterSource) -> Result<Dump> {
    let conn = conn_for(&src.name, &src.url, src.password_file.as_deref())?;
    // The server's major decides which psql/pg_basebackup; ask with whatever psql there is.
    let psql = match &src.pg_bin_dir {
        Some(d) => d.join("psql"),
        None => PathBuf::from("psql"),
    };
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
    cmd.args([
        "--pgdata=-",
        "--format=tar",
        "--wal-method=none",
        "--checkpoint=fast",
        "--verbose",
        "--no-password",
    ]);
    cmd.arg(format!("--label=drctl {}", src.name));
    let (stdout, completion) = process::spawn_streaming(cmd, format!("pg_basebackup for '{}'", src.name))?;
    let name = src.name.clone();
    let task = tokio::spawn(async move {
        let stderr = completion.wait().await?;
        let (start, timeline, stop) = parse_points(&stderr).ok_or_else(|| {
            anyhow!("source '{name}': pg_basebackup did not report its WAL start and end points: {stderr}")
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
            unknown: Default::default(),
        }))
    });
    Ok(Dump {
        reader: Box::new(stdout),
        format: "tar",
        finish: Finish::Task(task),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_and_end_points_are_read_from_verbose_output() {
        let out = "pg_basebackup: initiating base backup, waiting for checkpoint to complete\n\
                   pg_basebackup: checkpoint completed\n\
                   pg_basebackup: write-ahead log start point: 0/2000028 on timeline 1\n\
                   pg_basebackup: write-ahead log end point: 0/2000100\n\
                   pg_basebackup: base backup completed\n";
        assert_eq!(
            parse_points(out),
            Some((Lsn(0x2000028), 1, Lsn(0x2000100)))
        );
        assert_eq!(parse_points("pg_basebackup: checkpoint completed\n"), None);
    }
}
