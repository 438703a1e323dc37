//! The streaming pass. Backup: source → SHA-256 → compress → age → SHA-256 → every storage.
//! Restore: storage → SHA-256 → age → decompress → SHA-256 → target.
//!
//! Backup runs as three stages that overlap, each on its own thread, so that the hashing, the
//! compressor and the uploads do not take turns on one core (the shell pipeline
//! `pg_dump | zstd | age` they replace runs its stages in separate processes too):
//!
//! 1. the *reader* task reads the source in `READ_CHUNK` pieces and SHA-256s the plain bytes;
//! 2. the *encoder* thread (a blocking thread: compression is CPU work that must not hold a
//!    runtime worker) compresses with the synchronous zstd/gzip encoders, encrypts with age's
//!    synchronous `StreamWriter`, and cuts the result into `UPLOAD_CHUNK` pieces;
//! 3. the *upload* side (the calling task) SHA-256s the stored bytes and hands the same `Bytes`
//!    (reference-counted, not copied) to every storage writer.
//!
//! Memory is bounded by construction; the stages are joined by bounded channels:
//! - reader → encoder: at most `PLAIN_DEPTH` pieces queued + 1 being read + 1 being encoded,
//!   i.e. (`PLAIN_DEPTH` + 2) × `READ_CHUNK` = 1.5 MiB;
//! - the encoder's own state: zstd's input buffer (the window + 3 × `ZSTD_JOB`), its jobs'
//!   output buffers and its worker's tables (≈ 10 MiB at level 3, the default; more at high
//!   levels, whose windows are larger), age's 64 KiB chunk;
//! - encoder → upload: at most `STORED_DEPTH` pieces queued + 1 being cut + 1 being written,
//!   i.e. (`STORED_DEPTH` + 2) × `UPLOAD_CHUNK` = 4 MiB;
//! - each OpenDAL writer holds at most `CHUNK × CONCURRENT` for its multipart parts.
//!
//! Nothing grows with the dump's size and nothing touches a temp file.

use crate::catalog::{Digest, Manifest};
use crate::config::{Algorithm, CompressionConfig};
use crate::keys::Identities;
use crate::storage::Storage;
use anyhow::{anyhow, bail, Context, Result};
use async_compression::tokio::bufread::{GzipDecoder, ZstdDecoder};
use bytes::{Bytes, BytesMut};
use sha2::{Digest as _, Sha256};
use std::io::Write;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio_util::compat::FuturesAsyncReadCompatExt;
use tokio_util::sync::CancellationToken;

const READ_BUF: usize = 256 * 1024;
/// Size of the plain pieces the reader hands to the encoder thread.
const READ_CHUNK: usize = 256 * 1024;
/// Plain pieces queued between the reader and the encoder thread.
const PLAIN_DEPTH: usize = 4;
/// Size of the stored pieces handed to the storage writers.
const UPLOAD_CHUNK: usize = 1024 * 1024;
/// Stored pieces queued between the encoder thread and the uploads.
const STORED_DEPTH: usize = 2;
/// zstd worker threads beside the encoder thread (zstd's `nb_workers`, `zstd -T1`).
const ZSTD_WORKERS: u32 = 1;
/// zstd's job size: its input buffer holds the window plus three jobs, and each job has an
/// output buffer, so this bounds zstd's memory (about 5 + 5 MiB at level 3). zstd's default (4×
/// the window, 8 MiB at level 3) measured 33 MiB more RSS for no less CPU; the ratio is the
/// same within 1 % (each job starts with the last 256 KiB of the one before as history).
const ZSTD_JOB: u32 = 1024 * 1024;
/// The highest level compressed by a zstd worker (levels 1–4: windows of 2 MiB at most, at
/// most 256 KiB of history carried into each job). Higher levels have larger windows and carry
/// up to half of one into each job, so small jobs would redo much of their work and large ones
/// would multiply the memory; they compress single-threaded on the encoder thread (which still
/// overlaps with the reading, hashing and uploading).
const ZSTD_MT_MAX_LEVEL: i32 = 4;

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
    let (plain_tx, plain_rx) = mpsc::channel(PLAIN_DEPTH);
    let (stored_tx, stored_rx) = mpsc::channel(STORED_DEPTH);
    let reader = tokio::spawn(read_plain(source, plain_tx));
    let encoder = tokio::task::spawn_blocking(move || encode(plain_rx, compression, recipients, stored_tx));
    let uploaded = upload(stored_rx, targets, cancel).await;
    match uploaded {
        Ok(stored) => {
            // The upload saw the end of the stream: the encoder has finished or failed (its
            // error first: a reader cut short by it would only say that it stopped). A source
            // error, too, ends the stream early, so the reader's result is checked as well.
            encoder.await.map_err(|e| anyhow!("encoder task failed: {e}"))??;
            let plain = reader.await.map_err(|e| anyhow!("reader task failed: {e}"))??;
            Ok(Sealed { plain, stored })
        }
        Err(e) => {
            // Dropping the source (with the reader) stops the producer; the encoder thread
            // then ends on its own: its input closes and its output has no receiver.
            reader.abort();
            Err(e)
        }
    }
}

/// Reads the source in `READ_CHUNK` pieces, hashes them, and hands them to the encoder.
async fn read_plain(mut source: Box<dyn AsyncRead + Unpin + Send>, tx: mpsc::Sender<Bytes>) -> Result<Digest> {
    let mut plain = Tally::default();
    loop {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let mut eof = false;
        while buf.len() < READ_CHUNK {
            if source.read_buf(&mut buf).await.context("reading the source stream")? == 0 {
                eof = true;
                break;
            }
        }
        if !buf.is_empty() {
            let piece = buf.freeze();
            plain.update(&piece);
            if tx.send(piece).await.is_err() {
                // The encoder stopped early; its own error says why.
                bail!("the encoder stopped before the end of the source");
            }
        }
        if eof {
            return Ok(plain.digest());
        }
    }
}

/// The compressor, as a plain `Write` over age's writer.
enum Compressor<W: Write> {
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Gzip(flate2::write::GzEncoder<W>),
    None(W),
}

impl<W: Write> Compressor<W> {
    fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Compressor::Zstd(w) => w.write_all(b),
            Compressor::Gzip(w) => w.write_all(b),
            Compressor::None(w) => w.write_all(b),
        }
    }
    /// Ends the compressed stream (the zstd frame with its checksum, the gzip trailer).
    fn finish(self) -> std::io::Result<W> {
        match self {
            Compressor::Zstd(w) => w.finish(),
            Compressor::Gzip(w) => w.finish(),
            Compressor::None(w) => Ok(w),
        }
    }
}

/// The encoder thread: plain pieces in, compressed and encrypted `UPLOAD_CHUNK` pieces out.
/// The end of its input (the reader's sender dropped) is the end of the stream.
fn encode(
    mut rx: mpsc::Receiver<Bytes>,
    compression: CompressionConfig,
    recipients: Vec<age::x25519::Recipient>,
    tx: mpsc::Sender<Bytes>,
) -> Result<()> {
    let encryptor = age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
        .map_err(|e| anyhow!("cannot set up encryption: {e}"))?;
    let sealed = encryptor.wrap_output(Cutter {
        buf: BytesMut::with_capacity(UPLOAD_CHUNK),
        tx,
    })?;
    let level = compression.effective_level();
    let mut w = match compression.algorithm {
        Algorithm::Zstd => {
            let mut z = zstd::stream::write::Encoder::new(sealed, level)?;
            // Frame checksums let `zstd -t` and `zstd -d` detect damage without drctl.
            z.include_checksum(true)?;
            // zstd's own worker compresses while this thread feeds it and encrypts what it
            // gives back (like `zstd -T1`, which the shell pipeline runs). Its jobs are
            // compressed from a contiguous buffer, which also avoids the slower
            // external-dictionary path of the single-threaded streaming encoder: less CPU, too.
            if level <= ZSTD_MT_MAX_LEVEL {
                z.multithread(ZSTD_WORKERS)?;
                z.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB))?;
            }
            Compressor::Zstd(z)
        }
        Algorithm::Gzip => Compressor::Gzip(flate2::write::GzEncoder::new(
            sealed,
            flate2::Compression::new(level.clamp(0, 9) as u32),
        )),
        Algorithm::None => Compressor::None(sealed),
    };
    while let Some(piece) = rx.blocking_recv() {
        w.write_all(&piece)?;
    }
    // Finishes the compressed stream, then the last age chunk, then sends the rest.
    let cutter = w.finish()?.finish()?;
    cutter.finish()?;
    Ok(())
}

/// The encoder's output: cuts the stored bytes into `UPLOAD_CHUNK` pieces for the uploads.
struct Cutter {
    buf: BytesMut,
    tx: mpsc::Sender<Bytes>,
}

impl Cutter {
    fn send(&mut self, piece: Bytes) -> std::io::Result<()> {
        self.tx
            .blocking_send(piece)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the upload stopped"))
    }
    fn finish(mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let rest = self.buf.split().freeze();
            self.send(rest)?;
        }
        Ok(())
    }
}

impl Write for Cutter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = b.len().min(UPLOAD_CHUNK - self.buf.len());
        self.buf.extend_from_slice(&b[..n]);
        if self.buf.len() == UPLOAD_CHUNK {
            let piece = std::mem::replace(&mut self.buf, BytesMut::with_capacity(UPLOAD_CHUNK)).freeze();
            self.send(piece)?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn upload(mut rx: mpsc::Receiver<Bytes>, targets: &mut [Target], cancel: &CancellationToken) -> Result<Digest> {
    let mut stored = Tally::default();
    loop {
        let next = tokio::select! {
            b = rx.recv() => b,
            _ = cancel.cancelled() => return Err(Interrupted.into()),
        };
        let Some(bytes) = next else {
            return Ok(stored.digest());
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    async fn fs_target(root: &std::path::Path, key: &str) -> Target {
        let storage = crate::storage::build(&crate::config::StorageConfig::Fs(crate::config::FsStorage {
            name: "local".into(),
            root: root.to_path_buf(),
        }))
        .unwrap();
        let writer = storage.sink(key).await.unwrap();
        Target {
            storage,
            writer,
            failed: None,
            key: key.into(),
        }
    }

    fn sha256(b: &[u8]) -> String {
        hex::encode(Sha256::digest(b))
    }

    /// Several zstd jobs' worth of bytes through the pass, for each algorithm and for a level
    /// on either side of `ZSTD_MT_MAX_LEVEL`: the object decrypts with age's reader and
    /// decompresses with the plain zstd/gzip readers (what `age -d | zstd -d` does), the zstd
    /// frame carries its checksum, and both digests are those of the bytes on either side.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sealed_object_opens_by_hand_and_both_digests_match() {
        let plain: Bytes = (0..600_000u32)
            .flat_map(|i| format!("{i} {:x} row\n", (i % 997).wrapping_mul(2_654_435_761)).into_bytes())
            .collect::<Vec<u8>>()
            .into();
        assert!(plain.len() > 4 * ZSTD_JOB as usize);
        let identity = age::x25519::Identity::generate();
        for (algorithm, level) in [
            (Algorithm::Zstd, None),
            (Algorithm::Zstd, Some(ZSTD_MT_MAX_LEVEL + 1)),
            (Algorithm::Gzip, None),
            (Algorithm::None, None),
        ] {
            let t = tempfile::tempdir().unwrap();
            let key = "data/x/a.age";
            let mut targets = vec![fs_target(t.path(), key).await];
            let sealed = seal_into(
                Box::new(std::io::Cursor::new(plain.clone())),
                CompressionConfig { algorithm, level },
                vec![identity.to_public()],
                &mut targets,
                &CancellationToken::new(),
            )
            .await
            .unwrap();
            targets[0].writer.close(key, sealed.stored.size).await.unwrap();
            let stored = std::fs::read(t.path().join(key)).unwrap();
            assert_eq!(sealed.stored.size, stored.len() as u64);
            assert_eq!(sealed.stored.sha256, sha256(&stored));
            assert_eq!(sealed.plain.size, plain.len() as u64);
            assert_eq!(sealed.plain.sha256, sha256(&plain));

            let mut decrypted = Vec::new();
            age::Decryptor::new(&stored[..])
                .unwrap()
                .decrypt(std::iter::once(&identity as &dyn age::Identity))
                .unwrap()
                .read_to_end(&mut decrypted)
                .unwrap();
            let opened = match algorithm {
                Algorithm::Zstd => {
                    assert_eq!(decrypted[..4], [0x28, 0xb5, 0x2f, 0xfd], "a zstd frame");
                    assert_ne!(decrypted[4] & 0x04, 0, "the frame has its content checksum");
                    zstd::stream::decode_all(&decrypted[..]).unwrap()
                }
                Algorithm::Gzip => {
                    let mut out = Vec::new();
                    flate2::read::GzDecoder::new(&decrypted[..])
                        .read_to_end(&mut out)
                        .unwrap();
                    out
                }
                Algorithm::None => decrypted,
            };
            assert!(opened == plain[..], "{algorithm:?} {level:?}: the opened bytes differ");
        }
    }

    /// A source that fails mid-stream fails the pass (it must not look like a short dump).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_source_error_fails_the_pass() {
        struct Broken;
        impl AsyncRead for Broken {
            fn poll_read(
                self: Pin<&mut Self>,
                _: &mut TaskContext<'_>,
                _: &mut tokio::io::ReadBuf<'_>,
            ) -> Poll<std::io::Result<()>> {
                Poll::Ready(Err(std::io::Error::other("pg_dump went away")))
            }
        }
        let t = tempfile::tempdir().unwrap();
        let mut targets = vec![fs_target(t.path(), "data/x/a.age").await];
        let source = AsyncReadExt::chain(std::io::Cursor::new(vec![7u8; 3 * READ_CHUNK]), Broken);
        let e = seal_into(
            Box::new(source),
            CompressionConfig::default(),
            vec![age::x25519::Identity::generate().to_public()],
            &mut targets,
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(format!("{e:#}").contains("pg_dump went away"), "{e:#}");
    }

    /// Cancelling stops a pass whose source never ends, with `Interrupted`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cancel_stops_an_endless_source() {
        let t = tempfile::tempdir().unwrap();
        let mut targets = vec![fs_target(t.path(), "data/x/a.age").await];
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            c.cancel();
        });
        let e = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            seal_into(
                Box::new(tokio::io::repeat(b'x')),
                CompressionConfig::default(),
                vec![age::x25519::Identity::generate().to_public()],
                &mut targets,
                &cancel,
            ),
        )
        .await
        .expect("the pass stops")
        .unwrap_err();
        assert!(e.downcast_ref::<Interrupted>().is_some(), "{e:#}");
    }
}
