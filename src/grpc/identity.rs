//! Identity: the participant named by the verified client certificate's common name, found once
//! per call by [`PeerLayer`](super::peer::PeerLayer) and read by the handlers with [`caller`].

use tonic::Request;

use super::peer::Peer;
use crate::service::{identify, Caller, Gateway, ServiceError};

/// Why a certificate without the clientAuth usage is refused.
pub const NOT_CLIENT_AUTH: &str = "the client certificate is not for TLS client authentication (no clientAuth usage)";

/// Identifies the participant a connection's certificate names. rustls has already verified the
/// chain against the gateway's CA (mutual TLS is required at the handshake) and the listener has
/// read the leaf's subject common name ([`Peer`]); [`PeerLayer`](super::peer::PeerLayer) calls
/// this on every call and nothing caches its answer, so a suspension takes effect at once.
///
/// # Errors
/// `Unauthenticated` for a certificate without the clientAuth usage, naming no common name, or
/// naming an unknown participant; `PermissionDenied` for a suspended participant; `Unavailable`
/// when the participant cannot be read.
pub async fn identify_peer(gw: &Gateway, peer: &Peer) -> Result<Caller, ServiceError> {
    if !peer.client_auth {
        return Err(ServiceError::Unauthenticated(NOT_CLIENT_AUTH.into()));
    }
    let cn = peer
        .subject
        .as_deref()
        .ok_or_else(|| ServiceError::Unauthenticated("the client certificate names no common name".into()))?;
    identify(gw, cn, peer.cert_sha256.to_string()).await
}

/// The caller of a request to one of the gateway's own services, as
/// [`PeerLayer`](super::peer::PeerLayer) identified it for this call (see [`identify_peer`]).
///
/// # Errors
/// `Internal` when the request carries no [`Caller`]: the layer is not in front of the service.
/// That is a wiring bug, not the client's fault, so the call fails closed with `INTERNAL` and the
/// server's log says why.
pub fn caller<T>(request: &Request<T>) -> Result<Caller, ServiceError> {
    request.extensions().get::<Caller>().cloned().ok_or_else(|| {
        ServiceError::Internal(anyhow::anyhow!("no caller in the request's extensions: PeerLayer is not installed"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_the_layer_did_not_identify_is_an_internal_error() {
        let request = Request::new(());
        assert!(matches!(caller(&request), Err(ServiceError::Internal(_))));
    }
}
