//! S3 housekeeping that OpenDAL does not cover: listing and aborting unfinished multipart uploads.
//!
//! Requests are signed with SigV4 *headers* (reqsign, the signer OpenDAL itself uses), never
//! presigned: a presigned URL carries the access key id in its query, and a URL ends up in
//! error messages, logs and `/fail` pings. Errors here name the operation and the storage,
//! never the request URL.

use super::{Storage, StorageConfig};
use anyhow::{anyhow, bail, Context, Result};

/// An S3 multipart upload that was started and never completed or aborted (a killed backup).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Upload {
    pub storage: String,
    /// Relative to the storage root, like every other key.
    pub key: String,
    pub upload_id: String,
    pub initiated: chrono::DateTime<chrono::Utc>,
}

/// The provider answered that it does not implement the call (S3-compatible stores differ:
/// several lack ListMultipartUploads). Callers treat it as a warning, not a failure.
#[derive(Debug)]
pub struct Unsupported {
    pub operation: &'static str,
    pub detail: String,
}

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the provider does not support {} ({})", self.operation, self.detail)
    }
}

impl std::error::Error for Unsupported {}

/// The one line prune and check print when upload housekeeping cannot run on a storage.
pub fn housekeeping_warning(st: &Storage, e: &anyhow::Error) -> String {
    let why = match e.downcast_ref::<Unsupported>() {
        Some(u) => u.to_string(),
        None => format!("cannot list unfinished multipart uploads: {e:#}"),
    };
    format!(
        "storage '{}': {why}; uploads abandoned by killed backups are not cleaned up by drctl there (add a bucket lifecycle rule that aborts incomplete multipart uploads)",
        st.name
    )
}

/// Percent-encodes a query value exactly once, as SigV4 canonicalizes it.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct Target<'a> {
    s3: &'a super::config::S3Storage,
    bucket: rusty_s3::Bucket,
    root: String,
}

fn target<'a>(st: &'a Storage) -> Result<Option<Target<'a>>> {
    let StorageConfig::S3(s3) = &st.config else {
        return Ok(None);
    };
    let endpoint = s3
        .endpoint
        .clone()
        .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", s3.region));
    let style = if s3.virtual_host_style {
        rusty_s3::UrlStyle::VirtualHost
    } else {
        rusty_s3::UrlStyle::Path
    };
    let url = url::Url::parse(&endpoint).with_context(|| format!("storage '{}': endpoint is not a URL", st.name))?;
    let bucket = rusty_s3::Bucket::new(url, style, s3.bucket.clone(), s3.region.clone())
        .map_err(|e| anyhow!("storage '{}': {e}", s3.name))?;
    let root = s3.root.as_deref().unwrap_or("").trim_matches('/').to_string();
    Ok(Some(Target { s3, bucket, root }))
}

impl Target<'_> {
    fn full_key(&self, rel: &str) -> String {
        if self.root.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.root)
        }
    }

    /// Sends one header-signed request with an empty body and returns the response body.
    async fn send(
        &self,
        storage: &str,
        operation: &'static str,
        method: http::Method,
        mut url: url::Url,
        query: &[(&str, &str)],
    ) -> Result<String> {
        let q: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        url.set_query(Some(&q.join("&")));
        let fail = || format!("storage '{storage}': {operation} failed");
        let mut parts = http::Request::builder()
            .method(method)
            .uri(url.as_str())
            // SHA-256 of the empty body: every request here has none.
            .header(
                "x-amz-content-sha256",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            )
            .body(())
            .with_context(fail)?
            .into_parts()
            .0;
        if let (Some(k), Some(s)) = (&self.s3.access_key_id, &self.s3.secret_access_key) {
            let signer = reqsign_core::Signer::new(
                reqsign_core::Context::new(),
                reqsign_aws_v4::StaticCredentialProvider::new(k, s),
                reqsign_aws_v4::RequestSigner::new("s3", &self.s3.region),
            );
            signer
                .sign(&mut parts, None)
                .await
                .map_err(|e| anyhow!("{e}"))
                .with_context(fail)?;
        }
        let req = reqwest::Request::try_from(http::Request::from_parts(parts, Vec::<u8>::new())).with_context(fail)?;
        let client = reqwest::Client::builder()
            .timeout(self.s3.timeout.std())
            .build()
            .with_context(fail)?;
        // without_url: the error names the operation, never the request.
        let resp = client
            .execute(req)
            .await
            .map_err(|e| anyhow!(e.without_url()))
            .with_context(fail)?;
        let status = resp.status();
        let body = resp
            .text()
            .await
            .map_err(|e| anyhow!(e.without_url()))
            .with_context(fail)?;
        if status.is_success() {
            return Ok(body);
        }
        let code = xml_field(&body, "Code").unwrap_or("").to_string();
        let message = xml_field(&body, "Message").unwrap_or("").to_string();
        let mut detail = format!("HTTP {}", status.as_u16());
        if !code.is_empty() {
            detail += &format!(", {code}");
        }
        if !message.is_empty() {
            detail += &format!(": {message}");
        }
        if status == reqwest::StatusCode::NOT_IMPLEMENTED || code == "NotImplemented" {
            return Err(anyhow::Error::new(Unsupported { operation, detail }).context(fail()));
        }
        bail!("{}: {detail}", fail())
    }
}

fn xml_field<'a>(block: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = block.find(&open)? + open.len();
    let end = block[start..].find(&format!("</{tag}>"))?;
    Some(&block[start..start + end])
}

/// Unfinished multipart uploads under `data/` (S3 storages only; empty elsewhere).
pub async fn open_uploads(st: &Storage) -> Result<Vec<Upload>> {
    let Some(t) = target(st)? else {
        return Ok(Vec::new());
    };
    let prefix = t.full_key(crate::layout::DATA);
    let body = t
        .send(
            &st.name,
            "ListMultipartUploads",
            http::Method::GET,
            t.bucket.base_url().clone(),
            &[("prefix", prefix.as_str()), ("uploads", "")],
        )
        .await?;
    let mut out = Vec::new();
    for block in body.split("<Upload>").skip(1) {
        let (Some(k), Some(id)) = (xml_field(block, "Key"), xml_field(block, "UploadId")) else {
            continue;
        };
        let initiated = xml_field(block, "Initiated")
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_else(chrono::Utc::now);
        let rel = k.strip_prefix(&format!("{}/", t.root)).unwrap_or(k).to_string();
        out.push(Upload {
            storage: st.name.clone(),
            key: rel,
            upload_id: id.to_string(),
            initiated,
        });
    }
    Ok(out)
}

pub async fn abort_upload(st: &Storage, u: &Upload) -> Result<()> {
    let Some(t) = target(st)? else {
        return Ok(());
    };
    let url = t.bucket.object_url(&t.full_key(&u.key));
    t.send(
        &st.name,
        "AbortMultipartUpload",
        http::Method::DELETE,
        url,
        &[("uploadId", u.upload_id.as_str())],
    )
    .await
    .with_context(|| format!("cannot abort the upload of {}", u.key))?;
    Ok(())
}
