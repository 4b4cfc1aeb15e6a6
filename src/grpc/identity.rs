//! Identity: the participant named by the verified client certificate's common name.

use tonic::Request;

use super::peer::Peer;
use crate::service::{identify, Caller, Gateway, ServiceError};

/// The caller of a request. rustls has already verified the chain against the gateway's CA
/// (mutual TLS is required at the handshake) and the listener has read the leaf's subject
/// common name ([`Peer`]); the participant is looked up on every call, so suspension takes
/// effect at once.
///
/// # Errors
/// `Unauthenticated` without a certificate, with one naming no common name, or naming an
/// unknown participant; `PermissionDenied` for a suspended participant.
pub async fn caller<T>(gw: &Gateway, request: &Request<T>) -> Result<Caller, ServiceError> {
    let peer = request
        .extensions()
        .get::<Peer>()
        .ok_or_else(|| ServiceError::Unauthenticated("a client certificate is required".into()))?;
    if !peer.client_auth {
        return Err(ServiceError::Unauthenticated(super::peer::NOT_CLIENT_AUTH.into()));
    }
    let cn = peer
        .subject
        .as_deref()
        .ok_or_else(|| ServiceError::Unauthenticated("the client certificate names no common name".into()))?;
    identify(gw, cn, peer.cert_sha256.to_string()).await
}
