//! S3 housekeeping that OpenDAL does not cover: listing and aborting unfinished multipart uploads.

use super::{Storage, StorageConfig};
use anyhow::{Context, Result};

/// An S3 multipart upload that was started and never completed or aborted (a killed backup).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Upload {
    pub storage: String,
    /// Relative to the storage root, like every other key.
    pub key: String,
    pub upload_id: String,
    pub initiated: chrono::DateTime<chrono::Utc>,
}

fn s3_parts(s3: &super::config::S3Storage) -> Result<(rusty_s3::Bucket, String, String, String)> {
    let endpoint = s3
        .endpoint
        .clone()
        .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", s3.region));
    let style = if s3.virtual_host_style {
        rusty_s3::UrlStyle::VirtualHost
    } else {
        rusty_s3::UrlStyle::Path
    };
    let bucket = rusty_s3::Bucket::new(url::Url::parse(&endpoint)?, style, s3.bucket.clone(), s3.region.clone())
        .map_err(|e| anyhow::anyhow!("storage '{}': {e}", s3.name))?;
    let root = s3.root.as_deref().unwrap_or("").trim_matches('/').to_string();
    let key = s3.access_key_id.clone().unwrap_or_default();
    let secret = s3.secret_access_key.clone().unwrap_or_default();
    Ok((bucket, root, key, secret))
}

fn xml_field<'a>(block: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = block.find(&open)? + open.len();
    let end = block[start..].find(&format!("</{tag}>"))?;
    Some(&block[start..start + end])
}

/// Unfinished multipart uploads under `data/` (S3 storages only; empty elsewhere).
pub async fn open_uploads(st: &Storage) -> Result<Vec<Upload>> {
    let StorageConfig::S3(s3) = &st.config else {
        return Ok(Vec::new());
    };
    let (bucket, root, key, secret) = s3_parts(s3)?;
    let data = crate::layout::DATA;
    let prefix = if root.is_empty() {
        data.to_string()
    } else {
        format!("{root}/{data}")
    };
    let url = rusty_s3::signing::sign(
        &jiff::Timestamp::now(),
        rusty_s3::Method::Get,
        bucket.base_url().clone(),
        &key,
        &secret,
        None,
        &s3.region,
        300,
        [("uploads", ""), ("prefix", prefix.as_str())].into_iter(),
        std::iter::empty(),
    );
    let body = reqwest::get(url)
        .await
        .with_context(|| format!("storage '{}': cannot list multipart uploads", st.name))?
        .error_for_status()
        .with_context(|| format!("storage '{}': cannot list multipart uploads", st.name))?
        .text()
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
        let rel = k.strip_prefix(&format!("{root}/")).unwrap_or(k).to_string();
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
    let StorageConfig::S3(s3) = &st.config else {
        return Ok(());
    };
    let (bucket, root, key, secret) = s3_parts(s3)?;
    let full = if root.is_empty() {
        u.key.clone()
    } else {
        format!("{root}/{}", u.key)
    };
    let url = rusty_s3::signing::sign(
        &jiff::Timestamp::now(),
        rusty_s3::Method::Delete,
        bucket.object_url(&full),
        &key,
        &secret,
        None,
        &s3.region,
        300,
        [("uploadId", u.upload_id.as_str())].into_iter(),
        std::iter::empty(),
    );
    reqwest::Client::new()
        .delete(url)
        .send()
        .await?
        .error_for_status()
        .with_context(|| format!("storage '{}': cannot abort the upload of {}", st.name, u.key))?;
    Ok(())
}
