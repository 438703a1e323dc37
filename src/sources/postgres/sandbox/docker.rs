//! The `docker` sandbox: a throwaway PostgreSQL container of the dumped major version, started
//! through testcontainers on the Docker engine that `DOCKER_HOST` names (default: the local
//! socket). Any image that keeps the official `postgres` image's contract works: the superuser
//! `postgres` gets `POSTGRES_PASSWORD`, the server listens on 5432, and `postgres -c …`
//! arguments reach the server.
//!
//! The restored data is a copy of production, so the container's port is published on the
//! engine host's 127.0.0.1 only (never on every interface, Docker's default) and the password
//! is random per run and only ever passed through the container's environment.

use crate::sources::postgres::ConnInfo;
use anyhow::{anyhow, Result};
use std::borrow::Cow;
use std::time::{Duration, Instant};
use testcontainers::bollard::models::{HostConfig, PortBinding};
use testcontainers::core::error::ClientError;
use testcontainers::core::{ContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, Image, ImageExt, TestcontainersError};

const PORT: ContainerPort = ContainerPort::Tcp(5432);

/// How long the server in a started container may take to accept connections. The official
/// image runs initdb first, which takes a few seconds on a small VPS.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone)]
pub struct PgImage {
    name: String,
    tag: String,
    password: String,
}

impl std::fmt::Debug for PgImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgImage")
            .field("name", &self.name)
            .field("tag", &self.tag)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Image for PgImage {
    fn name(&self) -> &str {
        &self.name
    }

    fn tag(&self) -> &str {
        &self.tag
    }

    /// None: readiness is a working connection (see `wait_ready`), not a log line, whose
    /// wording and count differ between images and versions.
    fn ready_conditions(&self) -> Vec<WaitFor> {
        Vec::new()
    }

    fn env_vars(&self) -> impl IntoIterator<Item = (impl Into<Cow<'_, str>>, impl Into<Cow<'_, str>>)> {
        [("POSTGRES_PASSWORD", self.password.as_str())]
    }

    /// A throwaway server: durability settings off, as in the local sandbox.
    fn cmd(&self) -> impl IntoIterator<Item = impl Into<Cow<'_, str>>> {
        [
            "postgres",
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "synchronous_commit=off",
        ]
    }

    fn expose_ports(&self) -> &[ContainerPort] {
        &[PORT]
    }
}

/// Where the engine is, for messages.
fn engine() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

fn explain(e: TestcontainersError, image: &str) -> anyhow::Error {
    match e {
        TestcontainersError::Client(ClientError::PullImage { err, .. }) => anyhow!(
            "cannot pull {image}: {err} (check [verify] docker_image, or pull it on this host with `docker pull {image}`)"
        ),
        TestcontainersError::Client(err) => anyhow!(
            "no Docker engine answered at {} for {image}: {err} (start Docker, point DOCKER_HOST at a running engine, or use [verify] sandbox = \"local\")",
            engine()
        ),
        other => anyhow!("cannot start {image}: {other}"),
    }
}

/// Starts the container and waits until the `verify` database exists in it. On any error the
/// container, if it was created, is removed when the `ContainerAsync` drops.
pub async fn start(name: String, tag: String, backup_id: &str) -> Result<(ContainerAsync<PgImage>, ConnInfo)> {
    let reference = format!("{name}:{tag}");
    let password = hex::encode(rand::random::<[u8; 24]>());
    let container = PgImage {
        name,
        tag,
        password: password.clone(),
    }
    .with_container_name(format!("drctl-verify-{:08x}", rand::random::<u32>()))
    .with_label("drctl.verify.backup", backup_id)
    .with_host_config_modifier(loopback_only)
    .start()
    .await
    .map_err(|e| explain(e, &reference))?;
    let port = container
        .get_host_port_ipv4(PORT)
        .await
        .map_err(|e| anyhow!("{reference}: cannot find the published port: {e}"))?;
    let admin = ConnInfo {
        host: Some("127.0.0.1".into()),
        port: Some(port),
        user: Some("postgres".into()),
        password: Some(password),
        dbname: Some("postgres".into()),
        params: Vec::new(),
    };
    let client = wait_ready(&admin, &container, &reference).await?;
    client
        .batch_execute("create database verify")
        .await
        .map_err(|e| anyhow!("{reference}: cannot create the scratch database: {e}"))?;
    let mut conn = admin;
    conn.dbname = Some("verify".into());
    Ok((container, conn))
}

/// "image:tag, container <short id>", for the verification record.
pub fn describe(c: &ContainerAsync<PgImage>) -> String {
    let img = c.image();
    let id: String = c.id().chars().take(12).collect();
    format!("{}:{}, container {id}", img.name, img.tag)
}

/// Publish 5432 on 127.0.0.1 with a port the engine picks, instead of testcontainers' default
/// of every exposed port on every interface.
fn loopback_only(hc: &mut HostConfig) {
    hc.publish_all_ports = Some(false);
    hc.port_bindings = Some(
        [(
            PORT.to_string(),
            Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: None,
            }]),
        )]
        .into(),
    );
}

/// The official image's entrypoint runs a temporary server on its Unix socket only while it
/// initializes, so the first TCP connection that works is to the final server.
async fn wait_ready(
    admin: &ConnInfo,
    container: &ContainerAsync<PgImage>,
    reference: &str,
) -> Result<tokio_postgres::Client> {
    let t0 = Instant::now();
    loop {
        let last = match super::connect(admin).await {
            Ok(c) => match c.simple_query("select 1").await {
                Ok(_) => return Ok(c),
                Err(e) => e.to_string(),
            },
            Err(e) => format!("{e:#}"),
        };
        if !container.is_running().await.unwrap_or(true) {
            let logs = container.stderr_to_vec().await.unwrap_or_default();
            let tail: Vec<&str> = std::str::from_utf8(&logs).unwrap_or("").lines().rev().take(5).collect();
            return Err(anyhow!(
                "the {reference} container exited before PostgreSQL accepted connections: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            ));
        }
        if t0.elapsed() > READY_TIMEOUT {
            return Err(anyhow!(
                "PostgreSQL in {reference} did not accept connections within {}s: {last}",
                READY_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
