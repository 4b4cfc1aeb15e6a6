//! The one mapping from use-case errors to gRPC statuses, with standard rich error details.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::service::ServiceError;

/// The `ErrorInfo.domain` of every detail the gateway sends.
pub const ERROR_DOMAIN: &str = "bth-gateway";

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Status {
        let message = e.to_string();
        match e {
            ServiceError::InvalidArgument { field, message: why } => Status::with_error_details(
                Code::InvalidArgument,
                message,
                ErrorDetails::with_bad_request_violation(field, why),
            ),
            ServiceError::Unauthenticated(_) => Status::unauthenticated(message),
            ServiceError::PermissionDenied(_) => Status::permission_denied(message),
            ServiceError::Blocked { rules, .. } => Status::with_error_details(
                Code::PermissionDenied,
                message,
                ErrorDetails::with_error_info(
                    "TRANSFER_BLOCKED",
                    ERROR_DOMAIN,
                    HashMap::from([("rules".to_owned(), rules.join(","))]),
                ),
            ),
            ServiceError::Held { rules, mechanism, hold, .. } => {
                let mut details = ErrorDetails::with_error_info(
                    "TRANSFER_HELD",
                    ERROR_DOMAIN,
                    HashMap::from([
                        ("rules".to_owned(), rules.join(",")),
                        ("mechanism".to_owned(), mechanism.clone()),
                        ("hold_id".to_owned(), hold),
                    ]),
                );
                details.add_precondition_failure_violation(
                    "APPROVAL_REQUIRED",
                    mechanism,
                    "record an applicable approval, then retry",
                );
                Status::with_error_details(Code::FailedPrecondition, message, details)
            }
            ServiceError::NotFound(_) => Status::not_found(message),
            ServiceError::AlreadyExists(_) => Status::already_exists(message),
            ServiceError::FailedPrecondition(_) => Status::failed_precondition(message),
            ServiceError::ResourceExhausted(_) => Status::resource_exhausted(message),
            ServiceError::Unwitnessed(_) => Status::unavailable(message),
            ServiceError::Unavailable(source) => {
                tracing::error!(error = %source, cause = ?std::error::Error::source(&*source), "storage unavailable");
                Status::unavailable(message)
            }
            ServiceError::DataLoss(_) => {
                tracing::error!(%message, "stored content fails its digest");
                Status::data_loss(message)
            }
            ServiceError::Internal(source) => {
                tracing::error!(error = ?source, "internal error");
                Status::internal(message)
            }
        }
    }
}

/// tonic reports a message over the decoding limit with `OUT_OF_RANGE` and this text.
const OVER_LIMIT: &str = "message length too large";

/// How tonic and prost describe a request body that is not a well-formed message of the
/// method's request type (all reported as `INTERNAL`, with the decoder's text).
const UNDECODABLE: &[&str] = &[
    // prost: bytes that are not the message (`DecodeError`'s display).
    "failed to decode Protobuf message",
    // tonic: a gRPC frame header with a bad compression flag.
    "protocol error: received message with",
    // tonic: a body that ends inside a frame.
    "Unexpected EOF decoding stream",
    // tonic: a unary or server-streaming call whose body holds no message at all.
    "Missing request message",
];

/// The stable message of a request that does not decode; the decoder's text goes nowhere.
pub const UNDECODABLE_MESSAGE: &str = "the request message does not decode";

/// The field named in the `BadRequest` detail of a request that does not decode.
pub const UNDECODABLE_FIELD: &str = "request";

/// Undoes the percent-encoding of a `grpc-message` header (invalid escapes are kept as is).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a status is tonic's "message over the decoding limit".
fn is_over_limit(code: Code, message: &str) -> bool {
    code == Code::OutOfRange && message.contains(OVER_LIMIT)
}

/// Whether a status is tonic's report of a request body that does not decode: the client's
/// fault, never the gateway's.
fn is_undecodable(code: Code, message: &str) -> bool {
    code == Code::Internal && UNDECODABLE.iter().any(|m| message.starts_with(m))
}

/// The status a client gets for a request that does not decode: `INVALID_ARGUMENT`, a stable
/// message and a `BadRequest` detail naming [`UNDECODABLE_FIELD`].
pub fn undecodable() -> Status {
    Status::with_error_details(
        Code::InvalidArgument,
        UNDECODABLE_MESSAGE,
        ErrorDetails::with_bad_request_violation(
            UNDECODABLE_FIELD,
            "is not a protobuf encoding of the method's request message",
        ),
    )
}

/// The gateway's contract for statuses tonic raises while decoding a request, where tonic's
/// own codes would mislead: `RESOURCE_EXHAUSTED` for a message over the size limit (tonic says
/// `OUT_OF_RANGE`), and `INVALID_ARGUMENT` with a stable message for bytes that do not decode
/// (tonic says `INTERNAL` with the decoder's text). For statuses a handler sees (a client
/// stream's error); any other status is returned unchanged.
pub fn client_stream_status(s: Status) -> Status {
    if is_over_limit(s.code(), s.message()) {
        Status::resource_exhausted(s.message().to_owned())
    } else if is_undecodable(s.code(), s.message()) {
        tracing::debug!(decoder = s.message(), "a request message does not decode");
        undecodable()
    } else {
        s
    }
}

/// The same for every response's headers: unary and server-streaming requests that fail to
/// decode never reach a handler and are answered trailers-only. Applied to every response (as
/// a `MapResponseLayer`); responses without a `grpc-status` header pass unchanged.
pub fn size_limit_code<B>(mut response: tonic::codegen::http::Response<B>) -> tonic::codegen::http::Response<B> {
    let headers = response.headers_mut();
    let Some(code) = headers.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|c| c.parse::<i32>().ok())
    else {
        return response;
    };
    let code = Code::from_i32(code);
    let message = percent_decode(headers.get("grpc-message").and_then(|m| m.to_str().ok()).unwrap_or(""));
    if is_over_limit(code, &message) {
        headers.insert("grpc-status", tonic::codegen::http::HeaderValue::from_static("8"));
    } else if is_undecodable(code, &message) {
        tracing::debug!(decoder = %message, "a request message does not decode");
        headers.remove("grpc-status-details-bin");
        if undecodable().add_header(headers).is_err() {
            // Our own constant message and details always encode; fall back to the bare code.
            headers.insert("grpc-status", tonic::codegen::http::HeaderValue::from_static("3"));
            headers.remove("grpc-message");
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoded_messages_are_decoded() {
        assert_eq!(percent_decode("failed%20to%20decode%3A%20x"), "failed to decode: x");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn a_decoder_error_becomes_invalid_argument_without_its_text() {
        let s = client_stream_status(Status::internal("failed to decode Protobuf message: invalid wire type"));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), UNDECODABLE_MESSAGE);
        let own = client_stream_status(Status::internal("internal error"));
        assert_eq!((own.code(), own.message()), (Code::Internal, "internal error"));
    }

    #[test]
    fn a_trailers_only_decoder_error_is_rewritten() {
        let response = Status::internal("failed to decode Protobuf message: buffer underflow").into_http::<()>();
        let response = size_limit_code(response);
        let status = Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), UNDECODABLE_MESSAGE);
        assert!(!status.message().contains("Protobuf"));
        let over = size_limit_code(Status::out_of_range("decoded message length too large: 5").into_http::<()>());
        assert_eq!(Status::from_header_map(over.headers()).unwrap().code(), Code::ResourceExhausted);
        let ok = size_limit_code(tonic::codegen::http::Response::new(()));
        assert!(ok.headers().get("grpc-status").is_none());
    }
}
