//! Server assembly: the gRPC services behind mutual TLS, health, reflection, graceful shutdown.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::config::Config;
use crate::grpc::{
    admin::AdminService, catalog::CatalogService, exchange::ExchangeService, oversight::OversightService,
    publishing::PublishingService, sharing::SharingService, status::size_limit_code,
};
use crate::pb::{
    admin_server::AdminServer, catalog_server::CatalogServer, exchange_server::ExchangeServer,
    oversight_server::OversightServer, publishing_server::PublishingServer, sharing_server::SharingServer,
};
use crate::service::{Gateway, SystemClock};
use crate::translog::sequencer::{LogSettings, TransferLog};

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

/// Serves the gateway on `listener` until `shutdown` completes, then drains in-flight calls
/// and streams and returns. Mutual TLS is required: a client without a certificate from
/// `tls.client_ca` fails the handshake.
///
/// # Errors
/// Bad TLS material, or a transport failure.
pub async fn run(
    listener: TcpListener,
    gw: Gateway,
    tls: &TlsPem,
    max_message_bytes: usize,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let tls_config = ServerTlsConfig::new()
        .identity(Identity::from_pem(&tls.cert, &tls.key))
        .client_ca_root(Certificate::from_pem(&tls.client_ca));

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<AdminServer<AdminService>>().await;
    health.set_serving::<CatalogServer<CatalogService>>().await;
    health.set_serving::<PublishingServer<PublishingService>>().await;
    health.set_serving::<SharingServer<SharingService>>().await;
    health.set_serving::<ExchangeServer<ExchangeService>>().await;
    health.set_serving::<OversightServer<OversightService>>().await;
    health.set_serving::<crate::pb::audit_server::AuditServer<crate::grpc::audit::AuditService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service")?;

    let limit = max_message_bytes;
    let local = listener.local_addr()?;
    tracing::info!(%local, "serving (mutual TLS required)");
    Server::builder()
        .tls_config(tls_config)
        .context("configuring TLS")?
        .layer(tower::util::MapResponseLayer::new(size_limit_code::<tonic::body::Body>))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(AdminServer::new(AdminService(gw.clone())).max_decoding_message_size(limit))
        .add_service(CatalogServer::new(CatalogService(gw.clone())).max_decoding_message_size(limit))
        .add_service(PublishingServer::new(PublishingService(gw.clone())).max_decoding_message_size(limit))
        .add_service(SharingServer::new(SharingService(gw.clone())).max_decoding_message_size(limit))
        .add_service(OversightServer::new(OversightService(gw.clone())).max_decoding_message_size(limit))
        .add_service(
            crate::pb::audit_server::AuditServer::new(crate::grpc::audit::AuditService(gw.clone()))
                .max_decoding_message_size(limit),
        )
        .add_service(ExchangeServer::new(ExchangeService(gw)).max_decoding_message_size(limit))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
        .context("serving")?;
    tracing::info!("drained; stopped");
    Ok(())
}

/// Reads the TLS material a configuration names.
pub fn read_tls(config: &Config) -> anyhow::Result<TlsPem> {
    let read = |p: &std::path::Path| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
    Ok(TlsPem { cert: read(&config.tls_cert)?, key: read(&config.tls_key)?, client_ca: read(&config.client_ca)? })
}

/// Opens the store (creating and migrating SQLite on first start), discards uploads a crash
/// left behind, and assembles the use-case context.
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
    // Uploads in flight on other replicas are younger than a day.
    let purged = store.purge_abandoned_uploads(chrono::Utc::now() - chrono::Duration::days(1)).await?;
    if purged > 0 {
        tracing::info!(purged, "discarded unfinished uploads");
    }
    let secret = config.read_secret()?;
    let log = TransferLog::start(store.clone(), config.log_signer()?, LogSettings::new(&config.log_origin)).await?;
    Ok(Gateway::new(store, &secret, Arc::new(SystemClock), config.limits(), config.policy.clone(), log))
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
