//! The domain: challenges, submissions, limits and verdicts as the service understands them,
//! independent of the wire format (see `crate::api::convert`) and of storage.
//!
//! These types are serde-friendly because the same shapes are read from an admin's
//! `challenge.toml`, stored as JSON in SQLite, and converted to and from protobuf.

mod challenge;
mod ids;
mod limits;
mod schedule;
mod status;
mod submission;

pub use challenge::*;
pub use ids::*;
pub use limits::*;
pub use schedule::{Window, parse_rfc3339, rfc3339, validate_schedule};
pub use status::*;
pub use submission::*;

/// The service layer's error: every failure a caller can be told about, by kind.
///
/// `crate::api::status` is the one place that maps these kinds to gRPC codes.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// A request field is malformed (INVALID_ARGUMENT).
    #[error("{field}: {reason}")]
    Invalid {
        /// The offending field, as named in the API.
        field: String,
        /// Why, in words a caller can act on.
        reason: String,
    },
    /// The request is well formed but the system is not in a state to do it
    /// (FAILED_PRECONDITION).
    #[error("{field}: {reason}")]
    Precondition {
        /// The field or object concerned.
        field: String,
        /// Why.
        reason: String,
    },
    /// Nothing by that name that the caller may see (NOT_FOUND).
    #[error("{0} not found")]
    NotFound(String),
    /// The name is taken (ALREADY_EXISTS).
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The caller's role may not do this (PERMISSION_DENIED).
    #[error("{0}")]
    PermissionDenied(String),
    /// No usable credentials (UNAUTHENTICATED).
    #[error("{0}")]
    Unauthenticated(String),
    /// A quota or capacity is spent (RESOURCE_EXHAUSTED).
    #[error("{0}")]
    Exhausted(String),
    /// The request was cancelled by the client.
    #[error("{0}")]
    Cancelled(String),
    /// The client took too long (DEADLINE_EXCEEDED).
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The service failed; the cause chain is logged, the caller only learns that it failed.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl DomainError {
    /// An INVALID_ARGUMENT about `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        DomainError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A FAILED_PRECONDITION about `field`.
    pub fn precondition(field: impl Into<String>, reason: impl Into<String>) -> Self {
        DomainError::Precondition {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// An internal failure, with its cause (and the cause's own chain) kept for the log.
    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        DomainError::Internal(cause.into())
    }
}

/// An error and every cause under it, joined by ": ", for logs and admin-only details.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        // Some errors repeat their source in their own message; say it once.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// Milliseconds since the Unix epoch, the one time format stored and compared.
pub type UnixMillis = i64;

/// Now, in [`UnixMillis`].
pub fn now_millis() -> UnixMillis {
    chrono::Utc::now().timestamp_millis()
}
