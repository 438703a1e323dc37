//! `restore --at T --target service:NAME | container:NAME` for a `postgres_cluster` source: the
//! recovery written into a *stopped* database container's data directory (its volume), so that
//! `docker compose start` brings up the cluster as it was at T. There is no drctl in the
//! container to serve `restore_command`, so everything recovery reads is put there first:
//! the base backup, every WAL file the plan needs in `pg_wal/` (marked archived, so the
//! recovered server does not archive them again), `recovery.signal`, and the recovery target in
//! `postgresql.auto.conf` with `restore_command = 'false'` (PostgreSQL then reads `pg_wal/`,
//! and promotes at the target or at the end of what is there).
//!
//! Everything is fetched and verified into scratch before the first byte goes into the volume,
//! and the volume must hold no cluster yet. The files are written with the owner the base
//! backup's own entries carry (the server's user in that image).

use super::archive::{self, Fetched};
use super::restore::Plan;
use crate::keys::Identities;
use crate::place::{ContainerRef, Engine};
use crate::storage::Storage;
use anyhow::{anyhow, bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The settings recovery runs with in the container.
fn settings(plan: &Plan) -> String {
    let mut out = String::from("# drctl restore: point-in-time recovery (remove after recovery if you like)\n");
    out.push_str("restore_command = 'false'\n");
    if let Some(t) = plan.target {
        out.push_str(&format!(
            "recovery_target_time = '{}'\n",
            t.format("%Y-%m-%d %H:%M:%S%.6f+00")
        ));
    }
    out.push_str("recovery_target_action = 'promote'\nrecovery_target_timeline = 'latest'\n");
    out
}

/// What was written, for the command's output.
pub struct Written {
    pub container: String,
    pub datadir: String,
    pub wal_files: usize,
}

pub async fn restore_into_container(
    plan: &Plan,
    place: &ContainerRef,
    storages: &[Storage],
    identities: &Identities,
    scratch_dir: &Path,
) -> Result<Written> {
    let source = plan.entry.manifest.source.clone();
    let engine = Engine::connect().context("--target")?;
    let c = engine
        .resolve_any(place)
        .await
        .with_context(|| format!("--target {place}"))?;
    let service = match place {
        ContainerRef::Service { service, .. } => service.clone(),
        ContainerRef::Name(n) => n.clone(),
    };
    if c.running {
        bail!(
            "container '{}' is running; a cluster is recovered into a stopped container with an empty data volume: docker compose create {service} on a new server (or stop it and give it a new volume), then run this restore again",
            c.name
        );
    }
    let pgdata = c
        .env("PGDATA")
        .unwrap_or("/var/lib/postgresql/data")
        .trim_end_matches('/')
        .to_string();
    if c.read_file(&format!("{pgdata}/PG_VERSION")).await.is_ok() {
        bail!(
            "the data directory {pgdata} of container '{}' already holds a cluster; recover into a new, empty volume (nothing was written)",
            c.name
        );
    }
    // Fetched and verified before anything is written.
    let base = crate::fetch::fetch_to_scratch(storages, &plan.entry, identities, "base.tar", scratch_dir).await?;
    let wal_dir = tempfile::Builder::new()
        .prefix("drctl-restore-wal-")
        .tempdir_in(scratch_dir)
        .with_context(|| format!("cannot create a scratch directory in {}", scratch_dir.display()))?;
    let info = archive::archive_info(&source, storages).await?;
    for n in &plan.wal {
        match archive::fetch(&source, storages, identities, info.as_ref(), n, &wal_dir.path().join(n))
            .await
            .with_context(|| format!("WAL file {n}"))?
        {
            Fetched::Written { .. } => {}
            Fetched::NotArchived => {
                bail!("WAL file {n} vanished from storage while the restore ran; nothing was written")
            }
        }
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(8);
    let (base_file, wal_path, wal_names, conf) = (
        base.file.clone(),
        wal_dir.path().to_path_buf(),
        plan.wal.clone(),
        settings(plan),
    );
    let builder = tokio::task::spawn_blocking(move || {
        let out = ChannelWriter { tx: tx.clone() };
        let r = build_tar(&base_file, &wal_path, &wal_names, &conf, out);
        if let Err(e) = &r {
            // The upload must fail, not end as if the archive were complete.
            let _ = tx.blocking_send(Err(std::io::Error::other(format!("{e:#}"))));
        }
        r
    });
    let upload = c
        .write_tree(
            &pgdata,
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|chunk| (chunk, rx)) }),
        )
        .await;
    builder
        .await
        .map_err(|e| anyhow!("building the archive stopped: {e}"))??;
    upload?;
    Ok(Written {
        container: c.name.clone(),
        datadir: pgdata,
        wal_files: plan.wal.len(),
    })
}

/// Bytes written into the channel the upload reads, a chunk at a time.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Ok(bytes::Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::other("the upload into the container stopped"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The base backup's entries (its `postgresql.auto.conf` with the recovery settings instead of
/// an older restore's), then `recovery.signal`, the WAL files in `pg_wal/` with their
/// `archive_status/*.done`, all owned like the backup's `PG_VERSION`.
fn build_tar(base: &Path, wal_dir: &Path, wal: &[String], conf: &str, out: impl Write) -> Result<()> {
    let mut a = tar::Archive::new(std::io::BufReader::new(
        std::fs::File::open(base).with_context(|| format!("cannot open {}", base.display()))?,
    ));
    let mut b = tar::Builder::new(std::io::BufWriter::with_capacity(256 * 1024, out));
    let mut owner: Option<(u64, u64)> = None;
    let mut auto_conf = String::new();
    for e in a.entries()? {
        let mut e = e?;
        let path: PathBuf = e.path()?.into_owned();
        let name = path.to_string_lossy().trim_start_matches("./").to_string();
        if name == "PG_VERSION" {
            owner = Some((e.header().uid()?, e.header().gid()?));
        }
        if name == "postgresql.auto.conf" {
            std::io::Read::read_to_string(&mut e, &mut auto_conf)?;
            continue;
        }
        let mut h = e.header().clone();
        b.append_data(&mut h, &path, &mut e)
            .with_context(|| format!("copying {name} from the base backup"))?;
    }
    let (uid, gid) = owner.ok_or_else(|| anyhow!("the base backup has no PG_VERSION: it is not a data directory"))?;
    let file = |b: &mut tar::Builder<_>, name: &str, data: &[u8]| -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(chrono::Utc::now().timestamp().max(0) as u64);
        h.set_cksum();
        b.append_data(&mut h, name, data)?;
        Ok(())
    };
    let text = format!("{}{conf}", super::restore::strip_recovery_settings(&auto_conf));
    file(&mut b, "postgresql.auto.conf", text.as_bytes())?;
    file(&mut b, "recovery.signal", b"")?;
    for n in wal {
        let path = wal_dir.join(n);
        let mut f = std::fs::File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut h = tar::Header::new_gnu();
        h.set_size(f.metadata()?.len());
        h.set_mode(0o600);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(chrono::Utc::now().timestamp().max(0) as u64);
        h.set_cksum();
        b.append_data(&mut h, format!("pg_wal/{n}"), &mut f)?;
        file(&mut b, &format!("pg_wal/archive_status/{n}.done"), b"")?;
    }
    b.into_inner()?.flush()?;
    Ok(())
}
