//! The connection a request arrived on: who presented which certificate, how busy the
//! connection is, and the one layer that refuses what a connection may not do.
//!
//! The listener ([`crate::server::connections`]) verifies the client certificate during the TLS
//! handshake and reads its common name once per connection; tonic hands the resulting [`Peer`]
//! to every request as an extension. [`PeerLayer`] counts the calls in flight on a connection
//! (its idle timer starts when the last one ends), answers `RESOURCE_EXHAUSTED` on a connection
//! over its participant's limit, and identifies the caller of every call to the gateway's own
//! services, health and reflection: it puts the [`Caller`] in the request's extensions (where
//! [`super::identity::caller`] reads it) or answers the refusal itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::server::NamedService;
use tonic::Status;
use tower::{Layer, Service};

use super::identity::identify_peer;
use crate::service::{Caller, Gateway};

/// What the listener learnt of a connection: cheap to clone, one per connection.
#[derive(Clone)]
pub struct Peer {
    /// The verified client certificate's subject common name (`None`: it names none).
    pub subject: Option<Arc<str>>,
    /// SHA-256 of the client certificate (DER), hex.
    pub cert_sha256: Arc<str>,
    /// The certificate allows TLS client authentication: an extended key usage extension that
    /// names clientAuth (rustls also accepts a certificate without the extension).
    pub client_auth: bool,
    /// Why every call on this connection is refused (a limit it is over), if it is.
    pub refusal: Option<Arc<str>>,
    /// Calls in flight and the end of the last one.
    pub activity: Arc<Activity>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer").field("subject", &self.subject).field("refusal", &self.refusal).finish_non_exhaustive()
    }
}

/// Calls in flight on one connection, and when the connection last had one.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicUsize,
    started: std::sync::atomic::AtomicU64,
    last: Mutex<Instant>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            in_flight: AtomicUsize::new(0),
            started: std::sync::atomic::AtomicU64::new(0),
            last: Mutex::new(Instant::now()),
        }
    }
}

impl Activity {
    /// When the connection became idle: `None` while a call is in flight.
    pub fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) != 0 {
            return None;
        }
        Some(*self.last.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Calls started on the connection so far.
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Acquire)
    }

    fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.started.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }
}

/// One call in flight; its end (the response body finished or dropped) restarts the idle timer.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that ends its call when it ends.
struct Tracked {
    inner: Body,
    _call: Option<InFlight>,
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The path prefix of the gateway's own services (`bth.gateway.v1`).
const OWN_SERVICES: &str = "/bth.gateway.v1.";

/// The paths only a registered participant may call: the gateway's own services, health and
/// reflection. (Any other path names no service and is answered `UNIMPLEMENTED`.)
fn needs_caller(path: &str) -> bool {
    let others = [
        <tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService> as NamedService>::NAME,
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ];
    path.starts_with(OWN_SERVICES)
        || others.iter().any(|service| {
            path.strip_prefix('/').and_then(|p| p.strip_prefix(service)).is_some_and(|r| r.starts_with('/'))
        })
}

/// Tracks calls per connection and refuses what a connection may not do (see the module docs).
#[derive(Clone)]
pub struct PeerLayer {
    gw: Gateway,
}

impl PeerLayer {
    /// The layer for a gateway (it looks the caller's participant up on every call).
    pub fn new(gw: Gateway) -> PeerLayer {
        PeerLayer { gw }
    }
}

impl std::fmt::Debug for PeerLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerLayer")
    }
}

impl<S> Layer<S> for PeerLayer {
    type Service = PeerService<S>;

    fn layer(&self, inner: S) -> PeerService<S> {
        PeerService { inner, gw: self.gw.clone() }
    }
}

/// See [`PeerLayer`].
#[derive(Clone)]
pub struct PeerService<S> {
    inner: S,
    gw: Gateway,
}

impl<S> std::fmt::Debug for PeerService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerService")
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<Request<B>> for PeerService<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The clone that was made ready serves this call (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let gw = self.gw.clone();
        // Counted when the call starts (hyper runs it in the stream's own task, so a call whose
        // headers arrived may not be counted yet: the idle close waits a grace period and looks
        // again, see `Conn::poll_idle`).
        let peer = request.extensions().get::<Peer>().cloned();
        let call = peer.as_ref().map(|p| p.activity.start());
        Box::pin(async move {
            let refused = match &peer {
                None => Some(Status::unauthenticated("a client certificate is required")),
                Some(Peer { refusal: Some(why), .. }) => Some(Status::resource_exhausted(why.to_string())),
                // Looked up on every call, never cached: a suspension acts on the next call.
                Some(p) if needs_caller(request.uri().path()) => match identify_peer(&gw, p).await {
                    Ok(caller) => {
                        request.extensions_mut().insert::<Caller>(caller);
                        None
                    }
                    Err(e) => Some(Status::from(e)),
                },
                Some(_) => None,
            };
            let response = match refused {
                Some(status) => status.into_http(),
                None => inner.call(request).await?,
            };
            let (parts, body) = response.into_parts();
            Ok(Response::from_parts(parts, Body::new(Tracked { inner: body, _call: call })))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_gateway_service_health_and_reflection_need_a_caller() {
        use crate::pb;
        let own = [
            <pb::admin_server::AdminServer<crate::grpc::admin::AdminService> as NamedService>::NAME,
            <pb::audit_server::AuditServer<crate::grpc::audit::AuditService> as NamedService>::NAME,
            <pb::catalog_server::CatalogServer<crate::grpc::catalog::CatalogService> as NamedService>::NAME,
            <pb::exchange_server::ExchangeServer<crate::grpc::exchange::ExchangeService> as NamedService>::NAME,
            <pb::oversight_server::OversightServer<crate::grpc::oversight::OversightService> as NamedService>::NAME,
            <pb::publishing_server::PublishingServer<crate::grpc::publishing::PublishingService> as NamedService>::NAME,
            <pb::sharing_server::SharingServer<crate::grpc::sharing::SharingService> as NamedService>::NAME,
        ];
        for service in own {
            assert!(needs_caller(&format!("/{service}/AnyMethod")), "{service}");
        }
        for path in [
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            assert!(needs_caller(path), "{path}");
        }
        for path in ["/other.v1.Thing/Call", "/grpc.health.v1.HealthCheck/Check", "/"] {
            assert!(!needs_caller(path), "{path}");
        }
    }
}
