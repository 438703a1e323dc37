//! Prometheus metrics (prometheus-client), served by the daemon on `--metrics-addr`.
//! Only `events.rs` updates them, so logs, metrics and notifications cannot drift apart.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceStorageLabel {
    pub source: String,
    pub storage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StorageLabel {
    pub storage: String,
}

/// Not `job`: Prometheus sets `job` to the scrape job's name and would rename ours.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabel {
    pub job_name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotifierLabel {
    pub notifier: String,
}

type FGauge = Gauge<f64, AtomicU64>;

pub struct Metrics {
    registry: Registry,
    pub last_success: Family<SourceLabel, FGauge>,
    pub last_duration: Family<SourceLabel, FGauge>,
    pub read_bytes: Family<SourceLabel, Counter>,
    pub stored_bytes: Family<SourceLabel, Counter>,
    pub failures: Family<SourceLabel, Counter>,
    pub newest_age: Family<SourceStorageLabel, FGauge>,
    pub storage_write_errors: Family<StorageLabel, Counter>,
    pub verify_last_success: Family<SourceLabel, FGauge>,
    pub verify_rto: Family<SourceLabel, FGauge>,
    pub verify_failures: Family<SourceLabel, Counter>,
    pub prune_failures: Family<SourceLabel, Counter>,
    pub last_failure: Family<SourceLabel, FGauge>,
    pub max_age: Family<SourceLabel, FGauge>,
    pub verify_last_failure: Family<SourceLabel, FGauge>,
    pub verify_interval: FGauge,
    pub ping_failures: Family<JobLabel, Counter>,
    pub notify_failures: Family<NotifierLabel, Counter>,
    pub wal_spool_files: Family<SourceLabel, FGauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            last_success: Family::default(),
            last_duration: Family::default(),
            read_bytes: Family::default(),
            stored_bytes: Family::default(),
            failures: Family::default(),
            newest_age: Family::default(),
            storage_write_errors: Family::default(),
            verify_last_success: Family::default(),
            verify_rto: Family::default(),
            verify_failures: Family::default(),
            prune_failures: Family::default(),
            last_failure: Family::default(),
            max_age: Family::default(),
            verify_last_failure: Family::default(),
            verify_interval: FGauge::default(),
            ping_failures: Family::default(),
            notify_failures: Family::default(),
            wal_spool_files: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "drctl_backup_last_success_timestamp_seconds",
            "Unix time of the last successful backup of the source",
            m.last_success.clone(),
        );
        registry.register(
            "drctl_backup_last_duration_seconds",
            "Duration of the last successful backup of the source",
            m.last_duration.clone(),
        );
        // prometheus-client appends _total to counters.
        registry.register(
            "drctl_backup_read_bytes",
            "Bytes read from the source (plain dump)",
            m.read_bytes.clone(),
        );
        registry.register(
            "drctl_backup_stored_bytes",
            "Bytes stored per storage copy (compressed, encrypted)",
            m.stored_bytes.clone(),
        );
        registry.register(
            "drctl_backup_failures",
            "Failed backups of the source",
            m.failures.clone(),
        );
        registry.register(
            "drctl_backup_newest_age_seconds",
            "Age of the newest complete backup of the source in the storage",
            m.newest_age.clone(),
        );
        registry.register(
            "drctl_storage_write_errors",
            "Backups that failed on this storage",
            m.storage_write_errors.clone(),
        );
        registry.register(
            "drctl_verify_last_success_timestamp_seconds",
            "Unix time of the last passing restore verification",
            m.verify_last_success.clone(),
        );
        registry.register(
            "drctl_verify_rto_seconds",
            "Restore time measured by the last verification",
            m.verify_rto.clone(),
        );
        registry.register(
            "drctl_verify_failures",
            "Failed restore verifications",
            m.verify_failures.clone(),
        );
        registry.register(
            "drctl_prune_failures",
            "Failed prunes (after a backup, or by the daemon) of the source's backups",
            m.prune_failures.clone(),
        );
        registry.register(
            "drctl_backup_last_failure_timestamp_seconds",
            "Unix time of the last failed (or degraded) backup of the source; failing while newer than the last success",
            m.last_failure.clone(),
        );
        registry.register(
            "drctl_backup_max_age_seconds",
            "The source's max_age (from its job): the newest backup should never be older",
            m.max_age.clone(),
        );
        registry.register(
            "drctl_verify_last_failure_timestamp_seconds",
            "Unix time of the last failed restore verification",
            m.verify_last_failure.clone(),
        );
        registry.register(
            "drctl_verify_interval_seconds",
            "Time between two scheduled verifications ([verify] schedule) on this host",
            m.verify_interval.clone(),
        );
        registry.register(
            "drctl_ping_failures",
            "Pings of the job that failed after every retry (the backup itself is not affected)",
            m.ping_failures.clone(),
        );
        registry.register(
            "drctl_notify_failures",
            "Notifications that could not be delivered, per notifier type",
            m.notify_failures.clone(),
        );
        registry.register(
            "drctl_wal_spool_files",
            "WAL files waiting in the spool of a postgres_cluster source in a container after the last drain (growing: archiving is stuck)",
            m.wal_spool_files.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

pub fn source(s: &str) -> SourceLabel {
    SourceLabel { source: s.to_string() }
}

/// The status page, in both forms.
pub struct Page {
    pub html: String,
    pub json: String,
}

/// Computes the status page on request (given by the daemon: this layer knows no backups).
pub type PageFn = std::sync::Arc<dyn Fn() -> futures::future::BoxFuture<'static, Page> + Send + Sync>;

/// Serves `/metrics`, `/healthz`, and with `page` the status page (`/`, `/status.json`) until
/// the process exits. Read-only: every route is a GET.
pub async fn serve(
    addr: std::net::SocketAddr,
    metrics: std::sync::Arc<Metrics>,
    page: Option<PageFn>,
) -> anyhow::Result<()> {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("--metrics-addr {addr}: cannot listen: {e}"))?;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.encode(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }));
    let app = match page {
        None => app,
        Some(page) => {
            let p2 = page.clone();
            app.route(
                "/",
                get(move || {
                    let f = page();
                    async move {
                        (
                            [
                                (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
                                // No script, no outside asset, no frame: say so to the browser.
                                (
                                    axum::http::header::CONTENT_SECURITY_POLICY,
                                    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'",
                                ),
                            ],
                            f.await.html,
                        )
                    }
                }),
            )
            .route(
                "/status.json",
                get(move || {
                    let f = p2();
                    async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], f.await.json) }
                }),
            )
        }
    };
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok(())
}
