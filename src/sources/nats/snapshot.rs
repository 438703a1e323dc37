//! NATS JetStream, snapshot mode: a consistent snapshot of each stream through the JetStream
//! API, needing no access to the server's disk. async-nats has no helper for it; the protocol:
//!
//! * subscribe to an inbox, then request `$JS.API.STREAM.SNAPSHOT.<stream>` with
//!   `{"deliver_subject": inbox, "chunk_size": …}`; the reply carries the stream's config and
//!   state (message count, last sequence: exact, since the snapshot is taken at that point);
//! * the server sends the snapshot (an S2-compressed tar) as chunks to the inbox, each with a
//!   reply subject we answer to acknowledge it (flow control); an empty message ends it.
//! * restore: request `$JS.API.STREAM.RESTORE.<stream>` with `{"config", "state"}`, send each
//!   chunk as a request to the returned deliver subject, then an empty request to finish.
//!
//! The artifact is a tar, written as the chunks arrive (no temp file, so the snapshot's total
//! size is not known up front): for every stream `STREAM/backup.json` and the snapshot as
//! numbered parts `STREAM/stream.tar.s2.000001`, …. `cat` the parts back together and you have
//! what `nats stream backup` writes, ready for `nats stream restore`.

use super::{NatsFacts, NatsMode, StreamState};
use crate::config::NatsSource;
use crate::sources::{Dump, Facts, Finish};
use anyhow::{anyhow, bail, Context, Result};
use futures::StreamExt;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const CHUNK: usize = 128 * 1024;
const API_TIMEOUT: Duration = Duration::from_secs(30);

/// The credentials a `nats://` URL carries, taken out of it.
enum Credentials {
    None,
    /// `nats://user:password@host`
    UserPassword {
        user: String,
        password: String,
    },
    /// `nats://TOKEN@host`: a user without a password is a token (NATS CLI, nats.go).
    Token(String),
}

/// Splits `url` into the server address without credentials and the credentials. async-nats
/// ignores a URL's user info when authenticating, and its connector logs the address it was
/// given (with `Debug`, password included), so credentials travel only in `ConnectOptions`.
fn split_credentials(url: &str) -> Result<(String, Credentials)> {
    let mut u = url::Url::parse(url).map_err(|e| {
        anyhow!(
            "{}: not a URL ({e}); expected nats://[user:password@]host:4222",
            crate::secret::redact_url(url)
        )
    })?;
    let user = crate::secret::decode_userinfo(u.username());
    let creds = match u.password().map(crate::secret::decode_userinfo) {
        Some(password) => Credentials::UserPassword { user, password },
        None if !user.is_empty() => Credentials::Token(user),
        None => Credentials::None,
    };
    let _ = u.set_password(None);
    let _ = u.set_username("");
    Ok((u.to_string(), creds))
}

pub async fn connect(url: &str) -> Result<async_nats::Client> {
    let (server, creds) = split_credentials(url)?;
    let options = async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(15));
    let (options, check) = match creds {
        Credentials::None => (
            options,
            "the server asks for credentials: put them in the URL, nats://user:password@host:4222 or nats://TOKEN@host:4222".to_string(),
        ),
        Credentials::UserPassword { user, password } => (
            options.user_and_password(user.clone(), password),
            format!("check the user '{user}' and its password in the URL"),
        ),
        Credentials::Token(token) => (options.token(token), "check the token in the URL".to_string()),
    };
    options.connect(server.as_str()).await.map_err(|e| {
        let hint = match e.kind() {
            async_nats::ConnectErrorKind::AuthorizationViolation | async_nats::ConnectErrorKind::Authentication => {
                format!(" ({check})")
            }
            _ => String::new(),
        };
        anyhow!(
            "cannot connect to NATS at {}: {e}{hint}",
            crate::secret::redact_url(url)
        )
    })
}

async fn api(client: &async_nats::Client, subject: String, body: serde_json::Value) -> Result<serde_json::Value> {
    let msg = tokio::time::timeout(API_TIMEOUT, client.request(subject.clone(), body.to_string().into()))
        .await
        .map_err(|_| anyhow!("{subject}: no answer within {API_TIMEOUT:?} (is JetStream enabled?)"))?
        .map_err(|e| anyhow!("{subject}: {e}"))?;
    let v: serde_json::Value =
        serde_json::from_slice(&msg.payload).with_context(|| format!("{subject}: answer is not JSON"))?;
    if let Some(e) = v.get("error") {
        bail!("{subject}: {}", e["description"].as_str().unwrap_or("error"));
    }
    Ok(v)
}

/// All stream names in the account.
pub async fn stream_names(client: &async_nats::Client) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let mut offset = 0;
    loop {
        let v = api(
            client,
            "$JS.API.STREAM.NAMES".into(),
            serde_json::json!({ "offset": offset }),
        )
        .await?;
        let page: Vec<String> = v["streams"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(String::from))
            .collect();
        offset += page.len();
        let total = v["total"].as_u64().unwrap_or(0) as usize;
        names.extend(page);
        if offset >= total || names.is_empty() {
            return Ok(names);
        }
    }
}

fn tar_header(path: &str, size: u64) -> Result<[u8; 512]> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path)?;
    h.set_size(size);
    h.set_mode(0o600);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(chrono::Utc::now().timestamp().max(0) as u64);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    Ok(*h.as_bytes())
}

async fn tar_entry(w: &mut tokio::io::DuplexStream, path: &str, data: &[u8]) -> Result<()> {
    w.write_all(&tar_header(path, data.len() as u64)?).await?;
    w.write_all(data).await?;
    let pad = (512 - data.len() % 512) % 512;
    w.write_all(&vec![0u8; pad]).await?;
    Ok(())
}

pub async fn start_dump(src: &NatsSource, url: &str, streams: &[String]) -> Result<Dump> {
    let client = connect(url).await.map_err(|e| anyhow!("source '{}': {e}", src.name))?;
    let streams = if streams.is_empty() {
        stream_names(&client)
            .await
            .map_err(|e| anyhow!("source '{}': {e:#}", src.name))?
    } else {
        streams.to_vec()
    };
    let (mut w, reader) = tokio::io::duplex(1024 * 1024);
    let name = src.name.clone();
    let task = tokio::spawn(async move {
        let mut states = std::collections::BTreeMap::new();
        for stream in &streams {
            let state = snapshot_stream(&client, stream, &mut w)
                .await
                .map_err(|e| anyhow!("source '{name}': snapshot of stream {stream}: {e:#}"))?;
            states.insert(stream.clone(), state);
        }
        w.write_all(&[0u8; 1024]).await?; // end of archive
        w.shutdown().await?;
        Ok(Facts::Nats(NatsFacts {
            nats_mode: Some(NatsMode::Snapshot),
            streams: Some(states),
            file_count: None,
            file_bytes: None,
            container_data_dir: None,
            unknown: Default::default(),
        }))
    });
    Ok(Dump {
        reader: Box::new(reader),
        format: "tar",
        finish: Finish::Task(task),
    })
}

/// Writes one stream's snapshot into the archive; returns its recorded state.
async fn snapshot_stream(
    client: &async_nats::Client,
    stream: &str,
    w: &mut tokio::io::DuplexStream,
) -> Result<StreamState> {
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await?;
    let resp = api(
        client,
        format!("$JS.API.STREAM.SNAPSHOT.{stream}"),
        serde_json::json!({ "deliver_subject": inbox, "chunk_size": CHUNK, "no_consumers": false, "jsck": false }),
    )
    .await?;
    let meta = serde_json::json!({ "config": resp["config"], "state": resp["state"] });
    tar_entry(
        w,
        &format!("{stream}/backup.json"),
        serde_json::to_string_pretty(&meta)?.as_bytes(),
    )
    .await?;
    let mut part = 0u32;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(60), sub.next())
            .await
            .map_err(|_| anyhow!("no snapshot data for 60s"))?
            .ok_or_else(|| anyhow!("subscription closed"))?;
        if let Some(status) = msg.status {
            if !msg.payload.is_empty() || status != async_nats::StatusCode::OK {
                bail!("server reported {status}: {}", msg.description.unwrap_or_default());
            }
        }
        if msg.payload.is_empty() {
            break;
        }
        part += 1;
        tar_entry(w, &format!("{stream}/stream.tar.s2.{part:06}"), &msg.payload).await?;
        if let Some(reply) = msg.reply {
            client.publish(reply, bytes::Bytes::new()).await?;
        }
    }
    let _ = sub.unsubscribe().await;
    Ok(StreamState::from_api(&resp["state"]))
}

/// A stream in a snapshot artifact: name, backup.json, and (offset, size) of each part.
type StreamParts = (String, serde_json::Value, Vec<(u64, u64)>);

/// Restores every stream of a snapshot-mode artifact (a tar file) into the server at `url`.
/// Refuses streams that exist unless `clean`, in which case they are deleted first.
pub async fn restore(tar_file: &std::path::Path, url: &str, clean: bool) -> Result<Vec<(String, StreamState)>> {
    let client = connect(url).await?;
    // Group the archive's entries per stream, in order.
    let file = tar_file.to_path_buf();
    let layout = tokio::task::spawn_blocking(move || -> Result<Vec<StreamParts>> {
        let mut a = tar::Archive::new(std::fs::File::open(&file)?);
        let mut out: Vec<StreamParts> = Vec::new();
        for e in a.entries()? {
            let mut e = e?;
            let path = e.path()?.to_string_lossy().into_owned();
            let (stream, rest) = path.split_once('/').ok_or_else(|| anyhow!("unexpected entry {path}"))?;
            if rest == "backup.json" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut e, &mut s)?;
                out.push((stream.to_string(), serde_json::from_str(&s)?, Vec::new()));
            } else if rest.starts_with("stream.tar.s2.") {
                let last = out
                    .last_mut()
                    .filter(|l| l.0 == stream)
                    .ok_or_else(|| anyhow!("{path} before its backup.json"))?;
                last.2.push((e.raw_file_position(), e.size()));
            }
        }
        Ok(out)
    })
    .await??;
    let existing = stream_names(&client).await?;
    let mut restored = Vec::new();
    for (stream, meta, parts) in layout {
        if existing.contains(&stream) {
            if !clean {
                bail!("stream {stream} already exists on the target; pass --clean to delete and replace it");
            }
            api(
                &client,
                format!("$JS.API.STREAM.DELETE.{stream}"),
                serde_json::json!({}),
            )
            .await?;
        }
        let r = api(&client, format!("$JS.API.STREAM.RESTORE.{stream}"), meta.clone()).await?;
        let deliver = r["deliver_subject"]
            .as_str()
            .ok_or_else(|| anyhow!("restore of {stream}: no deliver subject"))?
            .to_string();
        let mut f = tokio::fs::File::open(tar_file).await?;
        for (pos, size) in parts {
            use tokio::io::{AsyncReadExt, AsyncSeekExt};
            f.seek(std::io::SeekFrom::Start(pos)).await?;
            let mut buf = vec![0u8; size as usize];
            f.read_exact(&mut buf).await?;
            let ack = tokio::time::timeout(API_TIMEOUT, client.request(deliver.clone(), buf.into()))
                .await
                .map_err(|_| anyhow!("restore of {stream}: chunk not acknowledged"))??;
            if !ack.payload.is_empty() {
                let v: serde_json::Value = serde_json::from_slice(&ack.payload).unwrap_or_default();
                if let Some(e) = v.get("error") {
                    bail!("restore of {stream}: {}", e["description"]);
                }
            }
        }
        let done = tokio::time::timeout(Duration::from_secs(3600), client.request(deliver, bytes::Bytes::new()))
            .await
            .map_err(|_| anyhow!("restore of {stream}: the server did not finish"))??;
        let v: serde_json::Value = serde_json::from_slice(&done.payload).context("final restore answer")?;
        if let Some(e) = v.get("error") {
            bail!("restore of {stream}: {}", e["description"]);
        }
        restored.push((stream, StreamState::from_api(&v["state"])));
    }
    Ok(restored)
}
