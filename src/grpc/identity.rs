//! Identity: the participant named by the verified client certificate's common name.

use ring::digest;
use tonic::Request;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::service::{identify, Caller, Gateway, ServiceError};

/// The caller of a request. rustls has already verified the chain against the gateway's CA
/// (mutual TLS is required at the handshake); this reads the leaf's subject common name and
/// looks the participant up on every call, so suspension takes effect at once.
///
/// # Errors
/// `Unauthenticated` without a certificate, with one naming no common name, or naming an
/// unknown participant; `PermissionDenied` for a suspended participant.
pub async fn caller<T>(gw: &Gateway, request: &Request<T>) -> Result<Caller, ServiceError> {
    let certs =
        request.peer_certs().ok_or_else(|| ServiceError::Unauthenticated("a client certificate is required".into()))?;
    let leaf = certs.first().ok_or_else(|| ServiceError::Unauthenticated("a client certificate is required".into()))?;
    let (_, cert) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|_| ServiceError::Unauthenticated("the client certificate does not parse".into()))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or_else(|| ServiceError::Unauthenticated("the client certificate names no common name".into()))?
        .to_owned();
    let fingerprint = hex::encode(digest::digest(&digest::SHA256, leaf.as_ref()));
    identify(gw, &cn, fingerprint).await
}
