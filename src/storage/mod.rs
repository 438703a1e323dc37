//! Storages: OpenDAL operators built from config, with retry (temporary errors only) and
//! timeouts inside the retry.
//!
//! Which storages stream: fs writes to a temp file under `<root>/.tmp` and renames it on close
//! (so an aborted or killed write never shows under its final name); S3 (R2, B2's S3 endpoint,
//! MinIO, AWS) uses multipart uploads of `CHUNK` bytes, aborted on failure.

pub mod config;
mod s3;
pub mod ssh;

pub use config::StorageConfig;
pub use s3::{abort_upload, housekeeping_warning, open_uploads, Unsupported, Upload};

use anyhow::{Context, Result};
use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::{services, Operator};
use std::time::Duration;

/// Multipart part size. S3 wants ≥ 5 MiB parts; 8 MiB × `CONCURRENT` in flight bounds memory.
pub const CHUNK: usize = 8 * 1024 * 1024;
pub const CONCURRENT: usize = 2;

#[derive(Clone)]
pub struct Storage {
    pub name: String,
    pub op: Operator,
    /// The section it was built from: which backend it is, and what the few backend-specific
    /// paths need (S3 upload housekeeping, WebDAV's part size).
    pub config: StorageConfig,
}

/// One stored object of an artifact (the whole artifact, or one numbered part) and its size.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Object {
    pub key: String,
    pub size: u64,
}

/// A storage named in a failure, attached as anyhow context where a storage operation fails
/// (events read it to count the failure against that storage).
#[derive(Debug, Clone)]
pub struct StorageFailure(pub String);

impl std::fmt::Display for StorageFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "storage '{}' failed", self.0)
    }
}

/// Where one artifact is being written: a streaming writer, or numbered part objects.
pub enum Sink {
    Stream {
        writer: opendal::Writer,
        op: Operator,
        key: String,
        /// fs storages: the root, to make the rename durable on close.
        fs_root: Option<std::path::PathBuf>,
    },
    Parts {
        op: Operator,
        key: String,
        part_size: usize,
        buf: bytes::BytesMut,
        written: Vec<Object>,
    },
}

pub fn part_key(key: &str, n: usize) -> String {
    format!("{key}.part{n:06}")
}

impl Sink {
    pub async fn write(&mut self, b: bytes::Bytes) -> Result<()> {
        match self {
            Sink::Stream { writer, .. } => Ok(writer.write(b).await?),
            Sink::Parts {
                op,
                key,
                part_size,
                buf,
                written,
            } => {
                buf.extend_from_slice(&b);
                while buf.len() >= *part_size {
                    let chunk = buf.split_to(*part_size).freeze();
                    let k = part_key(key, written.len() + 1);
                    let n = chunk.len() as u64;
                    op.write(&k, chunk).await?;
                    written.push(Object { key: k, size: n });
                }
                Ok(())
            }
        }
    }

    /// Finishes the artifact; returns the objects that now hold it, in order.
    pub async fn close(&mut self, single_key: &str, total: u64) -> Result<Vec<Object>> {
        match self {
            Sink::Stream {
                writer, key, fs_root, ..
            } => {
                writer.close().await?;
                sync_fs_dirs(fs_root.as_deref(), key).await?;
                Ok(vec![Object {
                    key: single_key.to_string(),
                    size: total,
                }])
            }
            Sink::Parts {
                op, key, buf, written, ..
            } => {
                if !buf.is_empty() || written.is_empty() {
                    let chunk = std::mem::take(buf).freeze();
                    let k = part_key(key, written.len() + 1);
                    let n = chunk.len() as u64;
                    op.write(&k, chunk).await?;
                    written.push(Object { key: k, size: n });
                }
                Ok(written.clone())
            }
        }
    }

    pub async fn abort(&mut self) -> Result<()> {
        match self {
            Sink::Stream { writer, op, key, .. } => match writer.abort().await {
                Ok(()) => Ok(()),
                // SFTP writes in place and cannot abort: finish the partial file and delete it,
                // so a failed backup leaves nothing under its final name.
                Err(e) if e.kind() == opendal::ErrorKind::Unsupported => {
                    let _ = writer.close().await;
                    match op.delete(key).await {
                        Ok(()) => Ok(()),
                        Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(()),
                        Err(e) => Err(e.into()),
                    }
                }
                Err(e) => Err(e.into()),
            },
            Sink::Parts { op, written, .. } => {
                for o in written.drain(..) {
                    let _ = op.delete(&o.key).await;
                }
                Ok(())
            }
        }
    }
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Storage({} {})", self.config.kind(), self.name)
    }
}

pub fn build(cfg: &StorageConfig) -> Result<Storage> {
    let op = match cfg {
        StorageConfig::Fs(fs) => {
            let tmp = fs.root.join(".tmp");
            std::fs::create_dir_all(&tmp).with_context(|| {
                format!(
                    "storage '{}': cannot create {} (check that the directory is writable by this user)",
                    fs.name,
                    tmp.display()
                )
            })?;
            let b = services::Fs::default()
                .root(&fs.root.to_string_lossy())
                .atomic_write_dir(&tmp.to_string_lossy());
            Operator::new(b)?
        }
        StorageConfig::S3(s3) => {
            let mut b = services::S3::default()
                .bucket(&s3.bucket)
                .region(&s3.region)
                .root(s3.root.as_deref().unwrap_or("/"));
            if let Some(ep) = &s3.endpoint {
                b = b.endpoint(ep);
            }
            if let (Some(k), Some(s)) = (&s3.access_key_id, &s3.secret_access_key) {
                b = b.access_key_id(k).secret_access_key(s).disable_config_load();
            }
            if s3.virtual_host_style {
                b = b.enable_virtual_host_style();
            }
            b = b.disable_ec2_metadata();
            Operator::new(b)?
        }
        StorageConfig::B2(b2) => Operator::new(
            services::B2::default()
                .bucket(&b2.bucket)
                .bucket_id(&b2.bucket_id)
                .application_key_id(&b2.application_key_id)
                .application_key(&b2.application_key)
                .root(b2.root.as_deref().unwrap_or("/")),
        )?,
        StorageConfig::Sftp(sf) => Operator::new(
            services::Sftp::default()
                // openssh takes a port only in the ssh:// form.
                .endpoint(&if sf.endpoint.starts_with("ssh://") {
                    sf.endpoint.clone()
                } else {
                    format!("ssh://{}", sf.endpoint)
                })
                .user(&sf.user)
                .key(&sf.key.to_string_lossy())
                .root(sf.root.as_deref().unwrap_or("/"))
                .known_hosts_strategy(&sf.known_hosts),
        )?,
        StorageConfig::Webdav(w) => {
            let mut b = services::Webdav::default()
                .endpoint(&w.endpoint)
                .root(w.root.as_deref().unwrap_or("/"));
            if let Some(u) = &w.username {
                b = b.username(u);
            }
            if let Some(p) = &w.password {
                b = b.password(p);
            }
            Operator::new(b)?
        }
    };
    let timeout = match cfg {
        StorageConfig::S3(s) => s.timeout.std(),
        _ => Duration::from_secs(60),
    };
    // Timeouts sit inside the retry: a stalled request times out and is retried.
    let op = op
        .layer(TimeoutLayer::new().with_timeout(timeout).with_io_timeout(timeout))
        .layer(
            RetryLayer::new()
                .with_max_times(4)
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(10))
                .with_jitter(),
        );
    Ok(Storage {
        name: cfg.name().to_string(),
        op,
        config: cfg.clone(),
    })
}

/// The storages named, or all of them.
pub fn select(cfgs: &[StorageConfig], only: Option<&str>) -> Result<Vec<Storage>> {
    let chosen: Vec<&StorageConfig> = cfgs.iter().filter(|c| only.is_none_or(|n| c.name() == n)).collect();
    if chosen.is_empty() {
        let names: Vec<&str> = cfgs.iter().map(|c| c.name()).collect();
        anyhow::bail!(
            "no storage named '{}' (configured: {})",
            only.unwrap_or(""),
            names.join(", ")
        );
    }
    chosen.into_iter().map(build).collect()
}

impl Storage {
    /// Storages whose writer cannot stream (OpenDAL's WebDAV writer holds the whole object in
    /// memory) store artifacts as numbered parts of at most this size.
    pub fn part_size(&self) -> Option<usize> {
        match &self.config {
            StorageConfig::Webdav(w) => Some(*w.part_size.get() as usize),
            _ => None,
        }
    }

    /// A sink for one artifact: streaming where the storage streams, parts where it cannot.
    pub async fn sink(&self, key: &str) -> Result<Sink> {
        match self.part_size() {
            Some(part_size) => Ok(Sink::Parts {
                op: self.op.clone(),
                key: key.to_string(),
                part_size,
                buf: bytes::BytesMut::new(),
                written: Vec::new(),
            }),
            None => Ok(Sink::Stream {
                writer: self.writer(key).await?,
                op: self.op.clone(),
                key: key.to_string(),
                fs_root: self.fs_root(),
            }),
        }
    }

    pub async fn writer(&self, key: &str) -> Result<opendal::Writer> {
        let (chunk, concurrent) = match &self.config {
            StorageConfig::S3(s3) => (*s3.part_size.get() as usize, s3.parts_in_flight as usize),
            _ => (CHUNK, CONCURRENT),
        };
        self.op
            .writer_with(key)
            .chunk(chunk)
            .concurrent(concurrent)
            .await
            .with_context(|| {
                format!(
                    "storage '{}': cannot start writing {key} (is the endpoint reachable and are the credentials right?)",
                    self.name
                )
            })
    }

    /// A small object (manifest, lock, index) in one request. On an fs storage a failed write
    /// (a full disk) leaves no temp file behind under `.tmp/`.
    pub async fn put(&self, key: &str, data: Vec<u8>) -> Result<()> {
        if let Err(e) = self.op.write(key, data).await {
            self.remove_temp_of(key).await;
            return Err(anyhow::Error::new(e).context(format!("storage '{}': cannot write {key}", self.name)));
        }
        sync_fs_dirs(self.fs_root().as_deref(), key)
            .await
            .with_context(|| format!("storage '{}': cannot make {key} durable", self.name))
    }

    /// The root directory of an fs storage.
    fn fs_root(&self) -> Option<std::path::PathBuf> {
        match &self.config {
            StorageConfig::Fs(fs) => Some(fs.root.clone()),
            _ => None,
        }
    }

    pub async fn get(&self, key: &str) -> Result<Vec<u8>> {
        Ok(self
            .op
            .read(key)
            .await
            .with_context(|| format!("storage '{}': cannot read {key}", self.name))?
            .to_vec())
    }

    /// Every object key below `prefix` (recursive). A missing prefix is an empty list.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        Ok(self.list_sized(prefix).await?.into_iter().map(|(k, _)| k).collect())
    }

    /// Every object key below `prefix` with its size as the listing reports it.
    pub async fn list_sized(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let entries = match self.op.list_with(prefix).recursive(true).await {
            Ok(e) => e,
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "storage '{}': cannot list {prefix} (is the endpoint reachable, the bucket there, and are the credentials right?)",
                        self.name
                    )
                })
            }
        };
        Ok(entries
            .into_iter()
            .filter(|e| e.metadata().is_file())
            .map(|e| (e.path().to_string(), e.metadata().content_length()))
            .collect())
    }

    pub async fn size(&self, key: &str) -> Result<u64> {
        Ok(self
            .op
            .stat(key)
            .await
            .with_context(|| format!("storage '{}': cannot stat {key}", self.name))?
            .content_length())
    }

    /// fs only: removes temp files OpenDAL made for `key` under `.tmp/` (named after the
    /// object's file name plus a random suffix).
    pub async fn remove_temp_of(&self, key: &str) {
        if !matches!(self.config, StorageConfig::Fs(_)) {
            return;
        }
        let base = key.rsplit('/').next().unwrap_or(key);
        for k in self.list(crate::layout::FS_TEMP).await.unwrap_or_default() {
            if k.trim_start_matches(crate::layout::FS_TEMP).starts_with(base) {
                let _ = self.op.delete(&k).await;
            }
        }
    }

    pub async fn delete(&self, key: &str) -> Result<()> {
        self.op
            .delete(key)
            .await
            .with_context(|| format!("storage '{}': cannot delete {key}", self.name))?;
        // Prune deletes a manifest before its data: that order must hold after a crash too.
        sync_fs_dirs(self.fs_root().as_deref(), key)
            .await
            .with_context(|| format!("storage '{}': cannot make the deletion of {key} durable", self.name))
    }
}

/// fs storages: OpenDAL fsyncs a file before renaming it into place but not the directories
/// the rename (or a new directory) changed; without that, a power cut can undo a committed
/// backup or a deletion. Other storages commit on the server: nothing to do.
async fn sync_fs_dirs(root: Option<&std::path::Path>, key: &str) -> Result<()> {
    let Some(root) = root else { return Ok(()) };
    let (root, key) = (root.to_path_buf(), key.to_string());
    tokio::task::spawn_blocking(move || crate::durable::sync_key_dirs(&root, &key))
        .await
        .context("fsync task")?
        .context("cannot fsync the storage directory")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fs commit path (streamed artifact, small object, deletion) fsyncs the directories
    /// it changed. An fsync cannot be observed short of a power cut; the seam records calls.
    #[tokio::test]
    async fn fs_commits_and_deletes_sync_their_directories() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("store");
        let st = build(&StorageConfig::Fs(config::FsStorage {
            name: "local".into(),
            root: root.clone(),
        }))
        .unwrap();
        let mut sink = st.sink("data/pg/a.dump.age").await.unwrap();
        sink.write(bytes::Bytes::from_static(b"artifact")).await.unwrap();
        sink.close("data/pg/a.dump.age", 8).await.unwrap();
        assert!(crate::durable::seam::synced(&root.join("data/pg")));
        assert!(crate::durable::seam::synced(&root.join("data")));
        st.put("manifests/pg/a.json", b"{}".to_vec()).await.unwrap();
        assert!(crate::durable::seam::synced(&root.join("manifests/pg")));
        st.put("locks/l.json", b"{}".to_vec()).await.unwrap();
        assert!(crate::durable::seam::synced(&root.join("locks")));
        assert!(crate::durable::seam::synced(&root));
        st.delete("manifests/pg/a.json").await.unwrap();
        assert_eq!(std::fs::read(root.join("data/pg/a.dump.age")).unwrap(), b"artifact");
    }
}
