//! Health: `SERVING` only while the store can be read and written and the transfer log
//! integrates.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::grpc::{
    admin::AdminService, audit::AuditService, catalog::CatalogService, exchange::ExchangeService,
    oversight::OversightService, publishing::PublishingService, sharing::SharingService,
};
use crate::pb::{
    admin_server::AdminServer, audit_server::AuditServer, catalog_server::CatalogServer,
    exchange_server::ExchangeServer, oversight_server::OversightServer, publishing_server::PublishingServer,
    sharing_server::SharingServer,
};
use crate::service::Gateway;

/// How often the probe runs.
const EVERY: Duration = Duration::from_secs(2);

/// How long a store read may take before the store counts as stuck.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The services health reports on; `""` is the server as a whole.
const SERVICES: [&str; 8] = [
    "",
    <AdminServer<AdminService> as NamedService>::NAME,
    <CatalogServer<CatalogService> as NamedService>::NAME,
    <PublishingServer<PublishingService> as NamedService>::NAME,
    <SharingServer<SharingService> as NamedService>::NAME,
    <ExchangeServer<ExchangeService> as NamedService>::NAME,
    <OversightServer<OversightService> as NamedService>::NAME,
    <AuditServer<AuditService> as NamedService>::NAME,
];

/// Why the gateway cannot serve now, if it cannot.
async fn problem(gw: &Gateway) -> Option<String> {
    match tokio::time::timeout(PROBE_TIMEOUT, gw.store.checkpoint(None)).await {
        Err(_) => return Some("the store did not answer within 3 s".into()),
        Ok(Err(e)) => return Some(format!("the store cannot be read: {e}")),
        Ok(Ok(_)) => {}
    }
    match tokio::time::timeout(PROBE_TIMEOUT, gw.store.probe_write(chrono::Utc::now())).await {
        Err(_) => return Some("a write to the store did not finish within 3 s".into()),
        Ok(Err(e)) => return Some(format!("the store cannot be written: {e}")),
        Ok(Ok(())) => {}
    }
    gw.log.failing_for().map(|d| format!("the transfer log has failed to integrate for {} s", d.as_secs()))
}

/// Sets every service's status from a first probe; returns whether it is serving.
pub async fn start(gw: &Gateway, health: &HealthReporter) -> bool {
    let serving = problem(gw).await.is_none();
    set(health, serving).await;
    serving
}

async fn set(health: &HealthReporter, serving: bool) {
    let status = if serving { ServingStatus::Serving } else { ServingStatus::NotServing };
    for service in SERVICES {
        health.set_service_status(service, status).await;
    }
}

/// Keeps every service's status up to date from a probe of the store and the log every two
/// seconds, until `stop`; `serving` is what [`start`] found.
pub async fn watch(gw: Gateway, health: HealthReporter, serving: bool, stop: CancellationToken) {
    let mut serving = Some(serving);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
        let now_serving = match problem(&gw).await {
            None => true,
            Some(why) => {
                if serving != Some(false) {
                    tracing::error!(%why, "health: NOT_SERVING");
                }
                false
            }
        };
        if serving != Some(now_serving) {
            if now_serving && serving.is_some() {
                tracing::info!("health: SERVING again");
            }
            set(&health, now_serving).await;
            serving = Some(now_serving);
        }
    }
}
