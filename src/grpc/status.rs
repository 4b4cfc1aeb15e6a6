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

/// Whether a status is tonic's "message over the decoding limit" (its message may arrive
/// percent-encoded, as in a `grpc-message` header).
fn is_over_limit(code: &str, message: &str) -> bool {
    code == "11" && (message.contains(OVER_LIMIT) || message.contains(&OVER_LIMIT.replace(' ', "%20")))
}

/// The gateway's contract says `RESOURCE_EXHAUSTED` for a message over the size limit, where
/// tonic says `OUT_OF_RANGE`. For statuses a handler sees (a client stream's error).
pub fn size_limit_status(s: Status) -> Status {
    if is_over_limit(&(s.code() as i32).to_string(), s.message()) {
        Status::resource_exhausted(s.message().to_owned())
    } else {
        s
    }
}

/// The same for every response's headers: unary and streaming errors raised before a handler
/// runs are trailers-only responses.
pub fn size_limit_code<B>(mut response: tonic::codegen::http::Response<B>) -> tonic::codegen::http::Response<B> {
    let headers = response.headers_mut();
    let code = headers.get("grpc-status").and_then(|v| v.to_str().ok()).unwrap_or("");
    let message = headers.get("grpc-message").and_then(|m| m.to_str().ok()).unwrap_or("");
    if is_over_limit(code, message) {
        headers.insert("grpc-status", tonic::codegen::http::HeaderValue::from_static("8"));
    }
    response
}
