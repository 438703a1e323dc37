//! One file out of a container through the engine's archive endpoint (what `docker cp` uses):
//! the engine sends a tar stream; drctl parses the headers itself and hands on the one entry's
//! bytes as they arrive — never a temp file, never the whole file in memory. Works in images
//! without a shell or `tar` (the scratch-based `nats`), and reads volumes as the container
//! sees them.

use super::Container;
use anyhow::{anyhow, bail, Result};
use bollard::query_parameters::DownloadFromContainerOptions;
use futures::{StreamExt, TryStreamExt};
use std::pin::Pin;
use tokio::io::{AsyncRead, AsyncReadExt};

/// A regular file being read out of a container.
pub struct ArchiveFile {
    /// Its size in the tar header: the reader yields exactly this many bytes, or an error.
    pub size: u64,
    pub reader: Pin<Box<dyn AsyncRead + Send>>,
}

impl Container {
    /// Streams the regular file at `path` (absolute, inside the container).
    pub async fn read_file(&self, path: &str) -> Result<ArchiveFile> {
        let what = format!("{path} in container '{}'", self.name);
        let stream = self
            .engine
            .docker
            .download_from_container(&self.id, Some(DownloadFromContainerOptions { path: path.to_string() }))
            .map_err(std::io::Error::other);
        let mut tar = tokio_util::io::StreamReader::new(Box::pin(stream));
        let size = match first_file(&mut tar).await {
            Ok(s) => s,
            Err(e) => {
                if let Some(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) = e
                    .downcast_ref::<std::io::Error>()
                    .and_then(|io| io.get_ref())
                    .and_then(|inner| inner.downcast_ref::<bollard::errors::Error>())
                {
                    bail!("cannot read {what}: no such file (check the path inside the container)");
                }
                return Err(e.context(format!("cannot read {what} through the engine's archive endpoint")));
            }
        };
        let reader = Sized {
            inner: tar.take(size),
            left: size,
            what,
        };
        Ok(ArchiveFile {
            size,
            reader: Box::pin(reader),
        })
    }
}

/// A path inside a container as the engine's tar stream (a directory with everything under it,
/// entries named from the path's last component: `data/…` for `/data`).
pub type TreeReader = Pin<Box<dyn AsyncRead + Send>>;

impl Container {
    /// Streams `path` (absolute, inside the container; works on a stopped container too) as the
    /// engine's tar. A missing path is an error here, before any byte is handed on.
    pub async fn read_tree(&self, path: &str) -> Result<TreeReader> {
        let what = format!("{path} in container '{}'", self.name);
        let mut stream = Box::pin(
            self.engine
                .docker
                .download_from_container(&self.id, Some(DownloadFromContainerOptions { path: path.to_string() })),
        );
        let first = match stream.try_next().await {
            Ok(first) => first,
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
                bail!("cannot read {what}: no such file or directory (check the path inside the container)")
            }
            Err(e) => {
                return Err(anyhow!(e).context(format!("cannot read {what} through the engine's archive endpoint")))
            }
        };
        let rest = stream.map_err(move |e| std::io::Error::other(format!("reading {what}: {e}")));
        let all = futures::stream::iter(first.map(Ok)).chain(rest);
        Ok(Box::pin(tokio_util::io::StreamReader::new(all)))
    }

    /// Extracts the tar `tar` into the directory `dir` inside the container (which must exist),
    /// through the archive endpoint (`docker cp` into a container; works on a stopped one, so a
    /// volume can be written with its server down). Give it a checked, complete archive: the
    /// engine extracts as it reads. A read error aborts the upload (the request fails) rather
    /// than ending it early like a complete one.
    pub async fn write_tree<S>(&self, dir: &str, tar: S) -> Result<()>
    where
        S: futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
    {
        let opts = bollard::query_parameters::UploadToContainerOptionsBuilder::new()
            .path(dir)
            .no_overwrite_dir_non_dir("true")
            .build();
        self.engine
            .docker
            .upload_to_container(&self.id, Some(opts), bollard::body_try_stream(tar))
            .await
            .map_err(|e| match e {
                bollard::errors::Error::DockerResponseServerError { status_code: 404, .. } => {
                    anyhow!(
                        "cannot write into {dir} in container '{}': no such directory",
                        self.name
                    )
                }
                e => anyhow!(
                    "cannot write into {dir} in container '{}' through the engine's archive endpoint: {e}",
                    self.name
                ),
            })
    }
}

/// Reads tar headers up to the first entry, which must be a regular file; returns its size,
/// leaving `tar` at its first data byte. Handles PAX (`size=` for files over 8 GiB) and GNU
/// long-name headers, which the engine writes for long paths and big files.
async fn first_file<R: AsyncRead + Unpin>(tar: &mut R) -> Result<u64> {
    let mut pax_size: Option<u64> = None;
    loop {
        let mut h = [0u8; 512];
        tar.read_exact(&mut h).await?;
        if h.iter().all(|b| *b == 0) {
            bail!("the archive is empty");
        }
        let stored: u64 = header_number(&h[124..136]).ok_or_else(|| anyhow!("a tar header with a bad size field"))?;
        match h[156] {
            b'0' | 0 | b'7' => return Ok(pax_size.unwrap_or(stored)),
            b'x' => {
                let data = read_padded(tar, stored).await?;
                pax_size = pax_record(&data, "size").and_then(|v| v.parse().ok()).or(pax_size);
            }
            b'g' | b'L' | b'K' => {
                read_padded(tar, stored).await?;
            }
            b'5' => bail!("it is a directory, not a file"),
            b'1' | b'2' => bail!("it is a link; give the path of the file it points to"),
            t => bail!("it is not a regular file (tar type '{}')", t as char),
        }
    }
}

/// An extended header's data (at most 1 MiB: it holds a few records, not file contents).
async fn read_padded<R: AsyncRead + Unpin>(tar: &mut R, size: u64) -> Result<Vec<u8>> {
    if size > 1 << 20 {
        bail!("a tar extended header of {size} bytes");
    }
    let padded = size.div_ceil(512) * 512;
    let mut data = vec![0u8; padded as usize];
    tar.read_exact(&mut data).await?;
    data.truncate(size as usize);
    Ok(data)
}

/// Octal (NUL/space padded), or GNU base-256 when the first byte's high bit is set.
fn header_number(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut v: u64 = (field[0] & 0x7f) as u64;
        for b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(*b as u64)?;
        }
        return Some(v);
    }
    let s = std::str::from_utf8(field).ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c == ' ');
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

/// The value of `key` in PAX records (`"<len> key=value\n"`…).
fn pax_record(data: &[u8], key: &str) -> Option<String> {
    let mut rest = data;
    while !rest.is_empty() {
        let sp = rest.iter().position(|b| *b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..sp]).ok()?.parse().ok()?;
        if len <= sp || len > rest.len() {
            return None;
        }
        let rec = std::str::from_utf8(&rest[sp + 1..len]).ok()?.trim_end_matches('\n');
        if let Some((k, v)) = rec.split_once('=') {
            if k == key {
                return Some(v.to_string());
            }
        }
        rest = &rest[len..];
    }
    None
}

/// The entry's bytes: exactly `size`, and an error (not a short, clean end) when the engine's
/// stream stops before that — a truncated file must not pass for a whole one.
struct Sized<R> {
    inner: tokio::io::Take<R>,
    left: u64,
    what: String,
}

impl<R: AsyncRead + Unpin> AsyncRead for Sized<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            std::task::Poll::Ready(Ok(())) => {
                let n = (buf.filled().len() - before) as u64;
                if n == 0 && this.left > 0 {
                    return std::task::Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!(
                            "{}: the engine's archive stream ended {} bytes early",
                            this.what, this.left
                        ),
                    )));
                }
                this.left -= n;
                std::task::Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, typ: u8, size_field: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[124..124 + size_field.len()].copy_from_slice(size_field);
        h[156] = typ;
        h
    }

    #[tokio::test]
    async fn first_file_reads_plain_pax_and_gnu_headers() {
        let mut t = header("PG_VERSION", b'0', b"00000000003\0");
        t.extend(b"15\n");
        t.resize(1024, 0);
        let mut r = &t[..];
        assert_eq!(first_file(&mut r).await.unwrap(), 3);
        let mut rest = String::new();
        r.take(3).read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "15\n");

        // A PAX header whose size overrides the (too small) octal field, as for a file > 8 GiB.
        let body = "size=9000000000000000000\n";
        let rec = format!("{} {body}", body.len() + 3); // "28 " + body: 28 bytes in all
        assert_eq!(rec.len(), 28);
        let mut t = header("PaxHeaders/dump.rdb", b'x', format!("{:011o}\0", rec.len()).as_bytes());
        t.extend(rec.as_bytes());
        t.resize(1024, 0);
        t.extend(header("dump.rdb", b'0', b"00000000000\0"));
        assert_eq!(first_file(&mut &t[..]).await.unwrap(), 9_000_000_000_000_000_000);

        // GNU base-256 size.
        let mut f = [0u8; 12];
        f[0] = 0x80;
        f[11] = 7;
        f[10] = 1;
        let t = header("big", b'0', &f);
        assert_eq!(first_file(&mut &t[..]).await.unwrap(), 263);

        let t = header("data", b'5', b"00000000000\0");
        assert!(first_file(&mut &t[..])
            .await
            .unwrap_err()
            .to_string()
            .contains("directory"));
        let t = vec![0u8; 1024];
        assert!(first_file(&mut &t[..]).await.unwrap_err().to_string().contains("empty"));
    }

    #[tokio::test]
    async fn a_short_stream_is_an_error_not_a_short_file() {
        let data = b"abc".to_vec();
        let mut r = Sized {
            inner: (&data[..]).take(10),
            left: 10,
            what: "x".into(),
        };
        let mut out = Vec::new();
        let e = r.read_to_end(&mut out).await.unwrap_err();
        assert!(e.to_string().contains("7 bytes early"), "{e}");
    }
}
