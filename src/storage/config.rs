//! `[[storage]]` sections: one variant per backend, chosen by `type`.

use crate::layout::check_names;
use crate::units::{ByteSize, Duration};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum StorageConfig {
    Fs(FsStorage),
    S3(S3Storage),
    B2(B2Storage),
    Sftp(SftpStorage),
    Webdav(WebdavStorage),
}

/// Backblaze B2 through its native API (for B2's S3 endpoint use `type = "s3"`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct B2Storage {
    pub name: String,
    pub bucket: String,
    pub bucket_id: String,
    pub application_key_id: String,
    pub application_key: String,
    #[serde(default)]
    pub root: Option<String>,
}

impl fmt::Debug for B2Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("B2Storage")
            .field("name", &self.name)
            .field("bucket", &self.bucket)
            .field("root", &self.root)
            .field("application_key", &"<redacted>")
            .finish()
    }
}

/// SFTP, e.g. a Hetzner Storage Box on port 23 with key authentication. Uses the system `ssh`
/// client; the server's host key must be in the drctl user's `~/.ssh/known_hosts`
/// (`ssh-keyscan -p 23 HOST >> ~/.ssh/known_hosts`) unless `known_hosts` says otherwise.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftpStorage {
    pub name: String,
    /// `host:port`, e.g. "u123456.your-storagebox.de:23".
    pub endpoint: String,
    pub user: String,
    /// Private key file (no passphrase, or loaded in an ssh-agent).
    pub key: PathBuf,
    #[serde(default)]
    pub root: Option<String>,
    /// "strict" (default: the host key must already be in ~/.ssh/known_hosts), "add" (trust a
    /// new host on first use and pin its key: ssh's accept-new), or "accept" (no host key
    /// checking at all: only for throwaway setups).
    #[serde(default = "default_known_hosts")]
    pub known_hosts: String,
}

fn default_known_hosts() -> String {
    "strict".into()
}

/// WebDAV (a Storage Box also speaks it). OpenDAL's WebDAV writer holds a whole object in
/// memory, so artifacts are stored as numbered parts of at most `part_size`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebdavStorage {
    pub name: String,
    /// e.g. "https://u123456.your-storagebox.de"
    pub endpoint: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub root: Option<String>,
    #[serde(default = "default_part_size")]
    pub part_size: ByteSize,
}

fn default_part_size() -> ByteSize {
    ByteSize::known("16MiB")
}

impl fmt::Debug for WebdavStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebdavStorage")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("root", &self.root)
            .field("part_size", &self.part_size)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsStorage {
    pub name: String,
    pub root: PathBuf,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Storage {
    pub name: String,
    pub bucket: String,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    #[serde(default)]
    pub root: Option<String>,
    /// Path-style requests are the default (MinIO, R2 and most S3 clones want them).
    #[serde(default)]
    pub virtual_host_style: bool,
    /// Per request; a stalled request is retried (4 times, with backoff) after this.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Multipart part size (S3 wants 5 MiB to 5 GiB).
    #[serde(default = "default_s3_part_size")]
    pub part_size: ByteSize,
    /// Parts uploaded at once. Memory per storage is about `part_size × parts_in_flight`; on a
    /// long link (a bucket across an ocean) more parts in flight keep it full.
    #[serde(default = "default_parts_in_flight")]
    pub parts_in_flight: u32,
}

fn default_s3_part_size() -> ByteSize {
    ByteSize::known("8MiB")
}

fn default_parts_in_flight() -> u32 {
    2
}

fn default_timeout() -> Duration {
    Duration::known("60s")
}

fn default_region() -> String {
    "auto".into()
}

// Hand-written so a `{:?}` in a log line can never print a key.
impl fmt::Debug for S3Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Storage")
            .field("name", &self.name)
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("root", &self.root)
            .field("part_size", &self.part_size)
            .field("parts_in_flight", &self.parts_in_flight)
            .field("access_key_id", &self.access_key_id.as_ref().map(|_| "<redacted>"))
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageConfig::Fs(s) => s.fmt(f),
            StorageConfig::S3(s) => s.fmt(f),
            StorageConfig::B2(s) => s.fmt(f),
            StorageConfig::Sftp(s) => s.fmt(f),
            StorageConfig::Webdav(s) => s.fmt(f),
        }
    }
}

impl StorageConfig {
    pub fn name(&self) -> &str {
        match self {
            StorageConfig::Fs(s) => &s.name,
            StorageConfig::S3(s) => &s.name,
            StorageConfig::B2(s) => &s.name,
            StorageConfig::Sftp(s) => &s.name,
            StorageConfig::Webdav(s) => &s.name,
        }
    }
    pub fn kind(&self) -> &'static str {
        match self {
            StorageConfig::Fs(_) => "fs",
            StorageConfig::S3(_) => "s3",
            StorageConfig::B2(_) => "b2",
            StorageConfig::Sftp(_) => "sftp",
            StorageConfig::Webdav(_) => "webdav",
        }
    }
}

pub(crate) fn validate_storages(storages: &[StorageConfig], errors: &mut Vec<String>) {
    if storages.is_empty() {
        errors.push("storage: none configured; add a [[storage]] (e.g. type = \"fs\", root = \"./backups\")".into());
    }
    check_names("storage", storages.iter().map(|s| s.name()), errors);
    for (i, s) in storages.iter().enumerate() {
        match s {
            StorageConfig::Fs(fs) if fs.root.as_os_str().is_empty() => {
                errors.push(format!("storage[{i}] ('{}').root: empty", fs.name))
            }
            StorageConfig::S3(s3) => {
                match s3.part_size.error() {
                    None if (5 << 20..=5 << 30).contains(s3.part_size.get()) => {}
                    None => errors.push(format!(
                        "storage[{i}] ('{}').part_size: must be between 5MiB and 5GiB (S3's multipart limits)",
                        s3.name
                    )),
                    Some(e) => errors.push(format!("storage[{i}] ('{}').part_size: {e}", s3.name)),
                }
                if !(1..=64).contains(&s3.parts_in_flight) {
                    errors.push(format!(
                        "storage[{i}] ('{}').parts_in_flight: {} must be between 1 and 64",
                        s3.name, s3.parts_in_flight
                    ));
                }
                if s3.bucket.is_empty() {
                    errors.push(format!("storage[{i}] ('{}').bucket: empty", s3.name));
                }
                if let Some(ep) = &s3.endpoint {
                    if url::Url::parse(ep).is_err() {
                        errors.push(format!(
                            "storage[{i}] ('{}').endpoint: '{ep}' is not a URL (e.g. https://ACCOUNT.r2.cloudflarestorage.com)",
                            s3.name
                        ));
                    }
                }
                if let Some(e) = s3.timeout.error() {
                    errors.push(format!("storage[{i}] ('{}').timeout: {e}", s3.name));
                }
                if s3.access_key_id.is_some() != s3.secret_access_key.is_some() {
                    errors.push(format!(
                        "storage[{i}] ('{}'): access_key_id and secret_access_key go together; set both or neither",
                        s3.name
                    ));
                }
            }
            StorageConfig::Sftp(sf) => {
                if !["strict", "accept", "add"].contains(&sf.known_hosts.as_str()) {
                    errors.push(format!(
                        "storage[{i}] ('{}').known_hosts: '{}' must be strict, add or accept",
                        sf.name, sf.known_hosts
                    ));
                }
                if which("ssh").is_none() {
                    errors.push(format!(
                        "storage[{i}] ('{}'): type sftp needs the system ssh client, and none is on PATH (apt-get install openssh-client)",
                        sf.name
                    ));
                }
            }
            StorageConfig::Webdav(w) => {
                if url::Url::parse(&w.endpoint).is_err() {
                    errors.push(format!(
                        "storage[{i}] ('{}').endpoint: '{}' is not a URL",
                        w.name, w.endpoint
                    ));
                }
                match w.part_size.error() {
                    None if (1 << 20..=1 << 30).contains(w.part_size.get()) => {}
                    None => errors.push(format!(
                        "storage[{i}] ('{}').part_size: must be between 1MiB and 1GiB",
                        w.name
                    )),
                    Some(e) => errors.push(format!("storage[{i}] ('{}').part_size: {e}", w.name)),
                }
            }
            _ => {}
        }
    }
}

fn which(prog: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(prog))
        .find(|p| p.is_file())
}
