//! The streaming pass. Backup: source → SHA-256 → compress → age → SHA-256 → every storage.
//! Restore: storage → SHA-256 → age → decompress → SHA-256 → target.
//!
//! Memory is bounded by construction: the source is read in `READ_BUF` pieces, the encoder
//! writes into a `PIPE` sized in-memory pipe, the upload side takes `UPLOAD_CHUNK` pieces off
//! it and hands the same `Bytes` (reference-counted, not copied) to every storage writer, and
//! each OpenDAL writer holds at most `CHUNK × CONCURRENT` for its multipart parts. Nothing
//! grows with the dump's size and nothing touches a temp file.
//!
//! Encoding runs on its own task so that compression (CPU) and uploading (network) overlap
//! on a multi-core machine.

use crate::catalog::{Digest, Manifest};
use crate::config::{Algorithm, CompressionConfig};
use crate::keys::Identities;
use crate::storage::Storage;
use anyhow::{anyhow, bail, Context, Result};
use async_compression::tokio::bufread::{GzipDecoder, ZstdDecoder};
use async_compression::tokio::write::{GzipEncoder, ZstdEncoder};
use async_compression::Level;
use bytes::BytesMut;
use sha2::{Digest as _, Sha256};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio_util::compat::{FuturesAsyncReadCompatExt, FuturesAsyncWriteCompatExt, TokioAsyncWriteCompatExt};
use tokio_util::sync::CancellationToken;

const READ_BUF: usize = 256 * 1024;
const PIPE: usize = 2 * 1024 * 1024;
const UPLOAD_CHUNK: usize = 1024 * 1024;

/// Hashes of both ends of one pass.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub plain: Digest,
    pub stored: Digest,
}

#[derive(Default)]
struct Tally {
    hasher: Sha256,
    size: u64,
}

impl Tally {
    fn update(&mut self, b: &[u8]) {
        self.hasher.update(b);
        self.size += b.len() as u64;
    }
    fn digest(self) -> Digest {
        Digest {
            size: self.size,
            sha256: hex::encode(self.hasher.finalize()),
        }
    }
}

/// Error for a run stopped by a signal; callers map it to "aborted, nothing committed".
#[derive(Debug, thiserror::Error)]
#[error("interrupted: the backup was stopped before it finished; nothing was committed")]
pub struct Interrupted;

/// One storage being written. A storage that fails mid-stream is marked and left behind; the
/// others go on (the caller decides whether a partial set may commit).
pub struct Target {
    pub storage: Storage,
    pub writer: crate::storage::Sink,
    pub failed: Option<anyhow::Error>,
    /// The object being written.
    pub key: String,
}

/// Streams `source` through compression and age into every writer. Does not close or abort
/// the writers: the caller commits only after the source, too, has reported success.
/// Fails only when every target failed (or the source did).
pub async fn seal_into(
    source: Box<dyn AsyncRead + Unpin + Send>,
    compression: CompressionConfig,
    recipients: Vec<age::x25519::Recipient>,
    targets: &mut [Target],
    cancel: &CancellationToken,
) -> Result<Sealed> {
    let (pipe_w, pipe_r) = tokio::io::duplex(PIPE);
    let encoder = tokio::spawn(encode(source, compression, recipients, pipe_w));
    let uploaded = upload(pipe_r, targets, cancel).await;
    match uploaded {
        Ok(stored) => {
            let plain = encoder.await.map_err(|e| anyhow!("encoder task failed: {e}"))??;
            Ok(Sealed { plain, stored })
        }
        Err(e) => {
            encoder.abort();
            Err(e)
        }
    }
}

async fn encode(
    mut source: Box<dyn AsyncRead + Unpin + Send>,
    compression: CompressionConfig,
    recipients: Vec<age::x25519::Recipient>,
    pipe: tokio::io::DuplexStream,
) -> Result<Digest> {
    let encryptor = age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
        .map_err(|e| anyhow!("cannot set up encryption: {e}"))?;
    let sealed = encryptor.wrap_async_output(pipe.compat_write()).await?.compat_write();
    let level = compression.effective_level();
    let mut w: Box<dyn AsyncWrite + Unpin + Send> = match compression.algorithm {
        Algorithm::Zstd => Box::new(ZstdEncoder::with_quality_and_params(
            sealed,
            Level::Precise(level),
            // Frame checksums let `zstd -t` and `zstd -d` detect damage without drctl.
            &[async_compression::zstd::CParameter::checksum_flag(true)],
        )),
        Algorithm::Gzip => Box::new(GzipEncoder::with_quality(sealed, Level::Precise(level))),
        Algorithm::None => Box::new(sealed),
    };
    let mut plain = Tally::default();
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let n = source.read(&mut buf).await.context("reading the source stream")?;
        if n == 0 {
            break;
        }
        plain.update(&buf[..n]);
        w.write_all(&buf[..n]).await?;
    }
    // Finishes the zstd frame, then the last age chunk, then closes the pipe (EOF downstream).
    w.shutdown().await?;
    Ok(plain.digest())
}

async fn upload(
    mut pipe: tokio::io::DuplexStream,
    targets: &mut [Target],
    cancel: &CancellationToken,
) -> Result<Digest> {
    let mut stored = Tally::default();
    loop {
        let mut buf = BytesMut::with_capacity(UPLOAD_CHUNK);
        let mut eof = false;
        while buf.len() < UPLOAD_CHUNK {
            let n = tokio::select! {
                r = pipe.read_buf(&mut buf) => r?,
                _ = cancel.cancelled() => return Err(Interrupted.into()),
            };
            if n == 0 {
                eof = true;
                break;
            }
        }
        if !buf.is_empty() {
            let bytes = buf.freeze();
            stored.update(&bytes);
            let writes = targets.iter_mut().filter(|t| t.failed.is_none()).map(|t| {
                let b = bytes.clone();
                async move {
                    if let Err(e) = t.writer.write(b).await {
                        tracing::warn!(storage = %t.storage.name, error = %e, "storage failed mid-backup; continuing with the others");
                        t.failed = Some(e.context(crate::storage::StorageFailure(t.storage.name.clone())));
                    }
                }
            });
            futures::future::join_all(writes).await;
            if targets.iter().all(|t| t.failed.is_some()) {
                let first = targets
                    .iter_mut()
                    .find_map(|t| t.failed.take())
                    .expect("at least one target");
                return Err(first);
            }
        }
        if eof {
            return Ok(stored.digest());
        }
    }
}

/// A futures `AsyncRead` that tallies what passes through it.
struct Tallied<R> {
    inner: R,
    tally: Arc<Mutex<Tally>>,
    progress: indicatif::ProgressBar,
}

impl<R: futures::AsyncRead + Unpin> futures::AsyncRead for Tallied<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &mut [u8]) -> Poll<std::io::Result<usize>> {
        let p = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = &p {
            self.tally.lock().expect("tally lock").update(&buf[..*n]);
            self.progress.inc(*n as u64);
        }
        p
    }
}

/// What a reader needs to know of a sealed object: what it is (for messages: "backup 2026… of
/// 'app-db'", "WAL file 0000… of 'app-cluster'"), both digests, the compression, the recipients.
pub struct Item<'a> {
    pub what: &'static str,
    pub id: &'a str,
    pub source: &'a str,
    pub plain: &'a Digest,
    pub stored: &'a Digest,
    pub algorithm: Algorithm,
    pub recipients: &'a [String],
}

impl Manifest {
    pub fn item(&self) -> Item<'_> {
        Item {
            what: "backup",
            id: &self.id,
            source: &self.source,
            plain: &self.plain,
            stored: &self.stored,
            algorithm: self.compression.algorithm,
            recipients: &self.recipients,
        }
    }
}

/// Why a stored backup could not be opened, where callers decide by the reason: a wrong
/// identity fails on every storage alike (so restore stops trying others), a damaged object is
/// a reason to try the next storage.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("wrong identity: none of the given identities can decrypt {what} {id} of '{source_name}' (it was encrypted to {recipients}); pass --identity with the matching AGE-SECRET-KEY file")]
    WrongIdentity {
        what: &'static str,
        id: String,
        source_name: String,
        recipients: String,
    },
    #[error("{what} {id} of '{source_name}': object {key} on storage '{storage}' is damaged or was altered (age: {detail}); try another storage with --storage")]
    Damaged {
        what: &'static str,
        id: String,
        source_name: String,
        key: String,
        storage: String,
        detail: String,
    },
}

/// What went wrong reading a stored object, so that the message can say what to do.
fn describe_decrypt_error(e: age::DecryptError, m: &Item<'_>, key: &str, storage: &str) -> anyhow::Error {
    match e {
        age::DecryptError::NoMatchingKeys => OpenError::WrongIdentity {
            what: m.what,
            id: m.id.to_string(),
            source_name: m.source.to_string(),
            recipients: m.recipients.join(", "),
        }
        .into(),
        other => OpenError::Damaged {
            what: m.what,
            id: m.id.to_string(),
            source_name: m.source.to_string(),
            key: key.to_string(),
            storage: storage.to_string(),
            detail: other.to_string(),
        }
        .into(),
    }
}

/// Fetches the backup's object from `storage`, checks it, decrypts and decompresses it into
/// `out`. Returns only after both hashes and sizes match the manifest: callers write to a
/// scratch place and use the result only on `Ok`.
/// The stored bytes of a backup on one storage: its objects (one, or numbered parts) read one
/// after the other, each checked against its recorded size first.
pub async fn stored_reader(
    storage: &Storage,
    m: &Manifest,
    objects: &[crate::catalog::Object],
) -> Result<Box<dyn futures::AsyncRead + Unpin + Send>> {
    stored_item_reader(storage, &m.item(), objects).await
}

/// [`stored_reader`] for any sealed object (a backup's artifact, a WAL file).
pub async fn stored_item_reader(
    storage: &Storage,
    m: &Item<'_>,
    objects: &[crate::catalog::Object],
) -> Result<Box<dyn futures::AsyncRead + Unpin + Send>> {
    use futures::AsyncReadExt as _;
    if objects.is_empty() {
        bail!("manifest of {} {} of '{}' lists no objects", m.what, m.id, m.source);
    }
    let total: u64 = objects.iter().map(|o| o.size).sum();
    if total != m.stored.size {
        bail!(
            "manifest of {} {} of '{}' is inconsistent: its objects add up to {total} bytes, not {}",
            m.what,
            m.id,
            m.source,
            m.stored.size
        );
    }
    let mut reader: Option<Box<dyn futures::AsyncRead + Unpin + Send>> = None;
    for obj in objects {
        let actual = match storage.op.stat(&obj.key).await {
            Ok(meta) => meta.content_length(),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => bail!(
                "{} {} of '{}': object {} on storage '{}' is missing; try another storage with --storage",
                m.what,
                m.id,
                m.source,
                obj.key,
                storage.name
            ),
            Err(e) => {
                return Err(
                    anyhow::Error::from(e).context(format!("storage '{}': cannot stat {}", storage.name, obj.key))
                )
            }
        };
        if actual != obj.size {
            bail!(
                "{} {} of '{}': object {} on storage '{}' is {} bytes but the manifest says {}: it was truncated or replaced; try another storage with --storage",
                m.what,
                m.id,
                m.source,
                obj.key,
                storage.name,
                actual,
                obj.size
            );
        }
        let r: Box<dyn futures::AsyncRead + Unpin + Send> = Box::new(
            storage
                .op
                .reader_with(&obj.key)
                .chunk(crate::storage::CHUNK)
                .await?
                .into_futures_async_read(..)
                .await?,
        );
        reader = Some(match reader {
            None => r,
            Some(prev) => Box::new(prev.chain(r)),
        });
    }
    Ok(reader.expect("at least one object"))
}

pub async fn open_into(
    storage: &Storage,
    m: &Manifest,
    objects: &[crate::catalog::Object],
    identities: &Identities,
    out: &mut (dyn AsyncWrite + Unpin + Send),
) -> Result<Sealed> {
    open_item_into(storage, &m.item(), objects, identities, out).await
}

/// [`open_into`] for any sealed object (a backup's artifact, a WAL file).
pub async fn open_item_into(
    storage: &Storage,
    m: &Item<'_>,
    objects: &[crate::catalog::Object],
    identities: &Identities,
    out: &mut (dyn AsyncWrite + Unpin + Send),
) -> Result<Sealed> {
    let obj = &objects
        .first()
        .ok_or_else(|| anyhow!("manifest of {} {} of '{}' lists no objects", m.what, m.id, m.source))?
        .clone();
    let reader = stored_item_reader(storage, m, objects).await?;
    let stored_tally = Arc::new(Mutex::new(Tally::default()));
    let progress = crate::progress::bytes(m.stored.size, m.source);
    let tallied = futures::io::BufReader::with_capacity(
        64 * 1024,
        Tallied {
            inner: reader,
            tally: stored_tally.clone(),
            progress: progress.clone(),
        },
    );
    let decryptor = age::Decryptor::new_async_buffered(tallied)
        .await
        .map_err(|e| describe_decrypt_error(e, m, &obj.key, &storage.name))?;
    let decrypted = decryptor
        .decrypt_async(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| describe_decrypt_error(e, m, &obj.key, &storage.name))?;
    let decrypted = BufReader::with_capacity(64 * 1024, decrypted.compat());
    let mut plain_reader: Box<dyn AsyncRead + Unpin + Send> = match m.algorithm {
        Algorithm::Zstd => Box::new(ZstdDecoder::new(decrypted)),
        Algorithm::Gzip => Box::new(GzipDecoder::new(decrypted)),
        Algorithm::None => Box::new(decrypted),
    };
    let mut plain = Tally::default();
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let n = plain_reader.read(&mut buf).await.map_err(|e| {
            anyhow!(
                "{} {} of '{}': object {} on storage '{}' is damaged or was altered ({e}); try another storage with --storage",
                m.what,
                m.id,
                m.source,
                obj.key,
                storage.name
            )
        })?;
        if n == 0 {
            break;
        }
        plain.update(&buf[..n]);
        out.write_all(&buf[..n]).await?;
    }
    out.flush().await?;
    progress.finish_and_clear();
    drop(plain_reader);
    let stored = std::mem::take(&mut *stored_tally.lock().expect("tally lock")).digest();
    let plain = plain.digest();
    if &stored != m.stored {
        bail!(
            "{} {} of '{}': object {} on storage '{}' has SHA-256 {} ({} bytes) but the manifest says {} ({} bytes); the object was altered",
            m.what,
            m.id,
            m.source,
            obj.key,
            storage.name,
            stored.sha256,
            stored.size,
            m.stored.sha256,
            m.stored.size
        );
    }
    if &plain != m.plain {
        bail!(
            "{} {} of '{}': the decrypted data has SHA-256 {} ({} bytes) but the manifest says {} ({} bytes)",
            m.what,
            m.id,
            m.source,
            plain.sha256,
            plain.size,
            m.plain.sha256,
            m.plain.size
        );
    }
    Ok(Sealed { plain, stored })
}
