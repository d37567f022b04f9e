//! Why the cluster refuses a request, in domain terms: a kind (what went wrong, which the API
//! maps to an HTTP status and a gRPC code) and the body operators read (Redis Enterprise's
//! `{error_code, sub_code, description}`, plus every config-style error at once).

use crate::core::config::ConfigError;
use serde::Serialize;

/// What went wrong, independent of the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefusalKind {
    /// The request itself is wrong (a bad address, an unknown action): fix it and resend.
    Invalid,
    /// The credentials are wrong.
    Forbidden,
    /// No such node.
    NotFound,
    /// The request is fine but the cluster's state does not allow it (already bootstrapped, a
    /// family mismatch, the node is up).
    Conflict,
    /// Wait and retry (a source that failed too often, a seed shedding load).
    Throttled,
    /// The change could not be made durable: nothing changed.
    NotDurable,
    /// A node that must take part did not answer.
    Unavailable,
    /// A defect or an environment failure (hashing, binding the gossip socket).
    Internal,
}

/// The JSON body of every refusal: `{error_code, sub_code, description}`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    pub(crate) error_code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sub_code: Option<String>,
    pub(crate) description: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) errors: Vec<ConfigError>,
    /// With a 429: seconds to wait before trying again (also sent as `Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) retry_after_s: Option<u64>,
}

impl ErrorBody {
    pub(crate) fn new(
        code: &str,
        sub_code: Option<&str>,
        description: impl Into<String>,
    ) -> ErrorBody {
        ErrorBody {
            error_code: code.into(),
            sub_code: sub_code.map(str::to_string),
            description: description.into(),
            errors: vec![],
            retry_after_s: None,
        }
    }

    /// Every problem of a request at once, each naming its JSON path, value and fix.
    pub(crate) fn invalid(errors: Vec<ConfigError>) -> ErrorBody {
        let description = errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        ErrorBody {
            error_code: "InvalidRequest".into(),
            sub_code: None,
            description,
            errors,
            retry_after_s: None,
        }
    }
}

/// A refused request: nothing changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) kind: RefusalKind,
    pub(crate) body: ErrorBody,
}

impl Refusal {
    pub(crate) fn new(kind: RefusalKind, body: ErrorBody) -> Refusal {
        Refusal { kind, body }
    }

    /// A malformed request (one problem).
    pub(crate) fn invalid(description: impl Into<String>) -> Refusal {
        Refusal::new(
            RefusalKind::Invalid,
            ErrorBody::new("InvalidRequest", None, description),
        )
    }

    /// A malformed request, every problem named.
    pub(crate) fn invalid_fields(errors: Vec<ConfigError>) -> Refusal {
        Refusal::new(RefusalKind::Invalid, ErrorBody::invalid(errors))
    }

    /// A bootstrap the node's state does not allow (`NodeBootstrapError` with a sub-code).
    pub(crate) fn bootstrap(sub_code: &str, description: impl Into<String>) -> Refusal {
        Refusal::new(
            RefusalKind::Conflict,
            ErrorBody::new("NodeBootstrapError", Some(sub_code), description),
        )
    }

    /// An admin change the cluster's state does not allow (`AdminError` with a sub-code).
    pub(crate) fn admin(sub_code: &str, description: impl Into<String>) -> Refusal {
        Refusal::new(
            RefusalKind::Conflict,
            ErrorBody::new("AdminError", Some(sub_code), description),
        )
    }

    pub(crate) fn not_in_cluster() -> Refusal {
        Refusal::admin(
            "not_in_cluster",
            "this node does not belong to a cluster yet",
        )
    }

    pub(crate) fn internal(e: impl std::fmt::Display) -> Refusal {
        Refusal::new(
            RefusalKind::Internal,
            ErrorBody::new("InternalError", None, e.to_string()),
        )
    }

    /// The sub-code, or "" when there is none.
    pub(crate) fn sub_code(&self) -> &str {
        self.body.sub_code.as_deref().unwrap_or("")
    }
}
