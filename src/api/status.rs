//! The one place that maps service errors to gRPC status codes.
//!
//! Internal errors are logged with their cause and reach the caller only as a short, safe
//! message; everything else carries the service's own words, which never quote private data.

use tonic::{Code, Status};

use crate::domain::DomainError;

/// Converts a service error into the status a client receives.
pub fn to_status(e: DomainError) -> Status {
    let code = match &e {
        DomainError::Invalid { .. } => Code::InvalidArgument,
        DomainError::Precondition { .. } => Code::FailedPrecondition,
        DomainError::NotFound(_) => Code::NotFound,
        DomainError::AlreadyExists(_) => Code::AlreadyExists,
        DomainError::PermissionDenied(_) => Code::PermissionDenied,
        DomainError::Unauthenticated(_) => Code::Unauthenticated,
        DomainError::Exhausted(_) => Code::ResourceExhausted,
        DomainError::Cancelled(_) => Code::Cancelled,
        DomainError::DeadlineExceeded(_) => Code::DeadlineExceeded,
        DomainError::Internal(cause) => {
            tracing::error!(error = %cause, "internal error");
            return Status::internal(
                "internal error; the service's operators have the details in its log",
            );
        }
    };
    Status::new(code, e.to_string())
}

impl From<DomainError> for Status {
    fn from(e: DomainError) -> Self {
        to_status(e)
    }
}
