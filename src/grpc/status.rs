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

/// tonic answers a message over the decoding limit with `OUT_OF_RANGE`; the gateway's contract
/// says `RESOURCE_EXHAUSTED`. Applied to every response's headers (unary and streaming errors
/// raised before a handler runs are trailers-only responses).
pub fn size_limit_code<B>(mut response: tonic::codegen::http::Response<B>) -> tonic::codegen::http::Response<B> {
    let headers = response.headers_mut();
    let over_limit = headers.get("grpc-status").is_some_and(|v| v == "11")
        && headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| m.contains("message%20length%20too%20large") || m.contains("message length too large"));
    if over_limit {
        headers.insert("grpc-status", tonic::codegen::http::HeaderValue::from_static("8"));
    }
    response
}
