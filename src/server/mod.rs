//! Server assembly: the gRPC services behind mutual TLS and the listener's caps, health,
//! reflection, graceful shutdown.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;

use crate::config::{Config, NetworkConfig};
use crate::grpc::peer::PeerLayer;
use crate::grpc::{
    admin::AdminService, catalog::CatalogService, exchange::ExchangeService, oversight::OversightService,
    publishing::PublishingService, sharing::SharingService, status::size_limit_code,
};

pub mod connections;
mod health;

/// Largest header block a client may send (HTTP/2 `SETTINGS_MAX_HEADER_LIST_SIZE`).
const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;
use crate::log::sequencer::{LogSettings, TransferLog};
use crate::pb::{
    admin_server::AdminServer, catalog_server::CatalogServer, exchange_server::ExchangeServer,
    oversight_server::OversightServer, publishing_server::PublishingServer, sharing_server::SharingServer,
};
use crate::service::{maintenance, Gateway, SystemClock};

/// The PEM material of the TLS listener.
#[derive(Clone)]
pub struct TlsPem {
    /// Server certificate chain.
    pub cert: String,
    /// Server private key.
    pub key: String,
    /// CA that client certificates must chain to.
    pub client_ca: String,
}

impl std::fmt::Debug for TlsPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsPem { .. }")
    }
}

/// What the listener and the services accept, from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest gRPC message accepted.
    pub max_message_bytes: usize,
    /// `[network]`: handshakes, connections, streams, keep-alive, idle connections.
    pub network: NetworkConfig,
    /// Reconciliation of cut transfers, purge of stale uploads, refused attempts.
    pub maintenance: maintenance::Settings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings::from(&Config::default())
    }
}

impl From<&Config> for Settings {
    fn from(c: &Config) -> Settings {
        Settings {
            max_message_bytes: c.max_message_bytes,
            network: c.network.clone(),
            maintenance: maintenance::Settings {
                every: Duration::from_secs(c.maintenance_secs.max(1)),
                stale_upload: Duration::from_secs(c.stale_upload_secs),
            },
        }
    }
}

/// Serves the gateway on `listener` until `shutdown` completes, then drains in-flight calls
/// and streams and returns. Mutual TLS is required: a client without a certificate from
/// `tls.client_ca` fails the handshake. The caps of [`connections`] bound what any client can
/// hold; health answers `NOT_SERVING` while the store or the log cannot make progress.
///
/// # Errors
/// Bad TLS material, or a transport failure.
pub async fn run(
    listener: TcpListener,
    gw: Gateway,
    tls: &TlsPem,
    settings: &Settings,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(connections::tls_config(&tls.cert, &tls.key, &tls.client_ca)?);
    let (health, health_service) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service")?;

    let limit = settings.max_message_bytes;
    let net = &settings.network;
    let local = listener.local_addr()?;
    tracing::info!(%local, "serving (mutual TLS required)");
    let stop = CancellationToken::new();
    let store = gw.store.clone();
    let (conns, incoming) = tokio::sync::mpsc::channel(64);
    let stats = Arc::new(connections::ListenerStats::default());
    let accepting = tokio::spawn(connections::accept(
        listener,
        acceptor,
        connections::Limits::from(net),
        stats.clone(),
        conns,
        stop.clone(),
    ));
    let serving = health::start(&gw, &health).await;
    let monitor = tokio::spawn(health::watch(gw.clone(), health, serving, stop.clone()));
    let maintaining = tokio::spawn(maintenance::run(gw.clone(), settings.maintenance.clone(), stop.clone()));
    let served = Server::builder()
        .max_concurrent_streams(net.max_streams_per_connection)
        .http2_keepalive_interval(Some(Duration::from_secs(net.keepalive_interval_secs.max(1))))
        .http2_keepalive_timeout(Some(Duration::from_secs(net.keepalive_timeout_secs.max(1))))
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .layer(tower::util::MapResponseLayer::new(size_limit_code::<tonic::body::Body>))
        .layer(PeerLayer::new(gw.clone()))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(AdminServer::new(AdminService(gw.clone())).max_decoding_message_size(limit))
        .add_service(CatalogServer::new(CatalogService(gw.clone())).max_decoding_message_size(limit))
        .add_service(PublishingServer::new(PublishingService(gw.clone())).max_decoding_message_size(limit))
        .add_service(SharingServer::new(SharingService(gw.clone())).max_decoding_message_size(limit))
        .add_service(OversightServer::new(OversightService(gw.clone())).max_decoding_message_size(limit))
        .add_service(
            crate::pb::review_server::ReviewServer::new(crate::grpc::review::ReviewService(gw.clone()))
                .max_decoding_message_size(limit),
        )
        .add_service(
            crate::pb::monitoring_server::MonitoringServer::new(crate::grpc::monitoring::MonitoringService(gw.clone()))
                .max_decoding_message_size(limit),
        )
        .add_service(
            crate::pb::reports_server::ReportsServer::new(crate::grpc::reports::ReportsService(gw.clone()))
                .max_decoding_message_size(limit),
        )
        .add_service(
            crate::pb::audit_server::AuditServer::new(crate::grpc::audit::AuditService(gw.clone()))
                .max_decoding_message_size(limit),
        )
        .add_service(ExchangeServer::new(ExchangeService(gw)).max_decoding_message_size(limit))
        .serve_with_incoming_shutdown(tokio_stream::wrappers::ReceiverStream::new(incoming), shutdown)
        .await
        .context("serving");
    stop.cancel();
    let _ = accepting.await;
    {
        use std::sync::atomic::Ordering::Relaxed;
        tracing::info!(
            evicted_handshakes = stats.evicted.load(Relaxed),
            timed_out_handshakes = stats.timed_out.load(Relaxed),
            refused_full = stats.refused_full.load(Relaxed),
            accept_errors = stats.accept_errors.load(Relaxed),
            "listener stopped"
        );
    }
    let _ = monitor.await;
    let _ = maintaining.await;
    if let Err(e) = store.settle().await {
        tracing::warn!(error = %e, "the database could not be settled on disk (its write-ahead log stays beside it)");
    }
    served?;
    tracing::info!("drained; stopped");
    Ok(())
}

/// Reads the TLS material a configuration names.
pub fn read_tls(config: &Config) -> anyhow::Result<TlsPem> {
    let read = |p: &std::path::Path| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
    Ok(TlsPem { cert: read(&config.tls_cert)?, key: read(&config.tls_key)?, client_ca: read(&config.client_ca)? })
}

/// Opens the store (creating and migrating SQLite on first start) and assembles the use-case
/// context. ([`run`] starts the maintenance that discards uploads a crash left behind.)
pub async fn gateway(config: &Config) -> anyhow::Result<Gateway> {
    if let Some(path) = config.database_url.strip_prefix("sqlite:") {
        let path = path.split('?').next().unwrap_or(path);
        if let Some(parent) = std::path::Path::new(path).parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
            }
        }
    }
    let store = crate::store::open_with(&config.database_url, config.database_pool).await?;
    let secret = config.read_secret()?;
    let log = TransferLog::start(store.clone(), config.log_signer()?, LogSettings::new(&config.log_origin)).await?;
    let witnesses = crate::log::witnesses::Witnesses::start(&config.witness, store.clone(), &log).await?;
    let gw = Gateway::new(store, &secret, Arc::new(SystemClock), config.limits(), config.policy.clone(), log)
        .with_witnesses(witnesses);
    if let Err(e) = gw.log_policy().await {
        // Every decision cites the policy: none is taken until it is logged.
        tracing::warn!(error = %e, "the export policy could not be logged yet; decisions will retry");
    }
    Ok(gw)
}

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn termination() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
    }
}
