//! Storages: OpenDAL operators built from config, with retry (temporary errors only) and
//! timeouts inside the retry.
//!
//! Which storages stream: fs writes to a temp file under `<root>/.tmp` and renames it on close
//! (so an aborted or killed write never shows under its final name); S3 (R2, B2's S3 endpoint,
//! MinIO, AWS) uses multipart uploads of `CHUNK` bytes, aborted on failure.

use crate::config::StorageConfig;
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
    pub kind: &'static str,
    pub op: Operator,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Storage({} {})", self.kind, self.name)
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
    };
    let op = op
        .layer(TimeoutLayer::new().with_timeout(Duration::from_secs(60)).with_io_timeout(Duration::from_secs(60)))
        .layer(
            RetryLayer::new()
                .with_max_times(4)
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(10))
                .with_jitter(),
        );
    Ok(Storage {
        name: cfg.name().to_string(),
        kind: cfg.kind(),
        op,
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
    pub async fn writer(&self, key: &str) -> Result<opendal::Writer> {
        self.op
            .writer_with(key)
            .chunk(CHUNK)
            .concurrent(CONCURRENT)
            .await
            .with_context(|| {
                format!(
                    "storage '{}': cannot start writing {key} (is the endpoint reachable and are the credentials right?)",
                    self.name
                )
            })
    }

    /// A small object (manifest) in one request.
    pub async fn put(&self, key: &str, data: Vec<u8>) -> Result<()> {
        self.op
            .write(key, data)
            .await
            .with_context(|| format!("storage '{}': cannot write {key}", self.name))?;
        Ok(())
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
            .map(|e| e.path().to_string())
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

    pub async fn delete(&self, key: &str) -> Result<()> {
        self.op
            .delete(key)
            .await
            .with_context(|| format!("storage '{}': cannot delete {key}", self.name))
    }
}
