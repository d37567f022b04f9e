//! One refusal, two wires: a [`Refusal`] becomes an HTTP response (status, JSON body,
//! `Retry-After`) or a gRPC status (code, message, `retry-after` metadata). The agent never
//! chooses a status code; this table does.

use crate::agent::authguard::Denied;
use crate::core::refusal::{ErrorBody, Refusal, RefusalKind};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use std::net::IpAddr;

/// The HTTP status of each kind of refusal.
pub(crate) fn http_status(kind: RefusalKind) -> StatusCode {
    match kind {
        RefusalKind::Invalid => StatusCode::BAD_REQUEST,
        RefusalKind::Forbidden => StatusCode::FORBIDDEN,
        RefusalKind::NotFound => StatusCode::NOT_FOUND,
        RefusalKind::Conflict => StatusCode::CONFLICT,
        RefusalKind::Throttled => StatusCode::TOO_MANY_REQUESTS,
        RefusalKind::NotDurable => StatusCode::INSUFFICIENT_STORAGE,
        RefusalKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        RefusalKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The gRPC code of each kind of refusal.
pub(crate) fn grpc_code(kind: RefusalKind) -> tonic::Code {
    match kind {
        RefusalKind::Invalid => tonic::Code::InvalidArgument,
        RefusalKind::Forbidden => tonic::Code::PermissionDenied,
        RefusalKind::NotFound => tonic::Code::NotFound,
        RefusalKind::Conflict => tonic::Code::FailedPrecondition,
        RefusalKind::Throttled => tonic::Code::ResourceExhausted,
        RefusalKind::NotDurable => tonic::Code::ResourceExhausted,
        RefusalKind::Unavailable => tonic::Code::Unavailable,
        RefusalKind::Internal => tonic::Code::Internal,
    }
}

/// A JSON error response with `status`; a body with `retry_after_s` also sets `Retry-After`.
pub(crate) fn json_error(status: StatusCode, body: ErrorBody) -> Response {
    let retry = body.retry_after_s;
    let mut response = (status, Json(body)).into_response();
    if let Some(secs) = retry {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    }
    response
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        json_error(http_status(self.kind), self.body)
    }
}

impl From<Refusal> for tonic::Status {
    fn from(r: Refusal) -> tonic::Status {
        let mut status = tonic::Status::new(grpc_code(r.kind), r.body.description);
        if let Some(secs) = r.body.retry_after_s {
            if let Ok(v) = secs.to_string().parse() {
                status.metadata_mut().insert("retry-after", v);
            }
        }
        status
    }
}

/// A guard's refusal as gRPC: `UNAUTHENTICATED`, or `RESOURCE_EXHAUSTED` with the wait in the
/// message and in `retry-after`.
pub(crate) fn denied_status(denied: &Denied, source: Option<IpAddr>) -> tonic::Status {
    match denied.retry_after_secs() {
        None => tonic::Status::unauthenticated(denied.message(source)),
        Some(secs) => {
            let mut status = tonic::Status::resource_exhausted(denied.message(source));
            if let Ok(v) = secs.to_string().parse() {
                status.metadata_mut().insert("retry-after", v);
            }
            status
        }
    }
}

/// A guard's refusal as HTTP: 401 with `WWW-Authenticate`, or 429 with `Retry-After`.
pub(crate) fn denied_response(denied: &Denied, source: Option<IpAddr>) -> Response {
    match denied {
        Denied::Invalid => {
            let mut response = json_error(
                StatusCode::UNAUTHORIZED,
                ErrorBody::new(
                    "Unauthorized",
                    None,
                    "this call changes the cluster: send the cluster credentials (HTTP Basic), or use the CLI on a node",
                ),
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"stackring\""),
            );
            response
        }
        throttled => {
            let mut body = ErrorBody::new(
                "TooManyRequests",
                Some("rate_limited"),
                throttled.message(source),
            );
            body.retry_after_s = throttled.retry_after_secs();
            json_error(StatusCode::TOO_MANY_REQUESTS, body)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mapping operators and programs rely on (README "Errors"): a full disk is 507 over
    /// HTTP, and every kind has a distinct, meaningful gRPC code except the two "wait" kinds.
    #[test]
    fn every_kind_maps_to_its_documented_status_and_code() {
        use RefusalKind::*;
        for (kind, http, grpc) in [
            (Invalid, 400, tonic::Code::InvalidArgument),
            (Forbidden, 403, tonic::Code::PermissionDenied),
            (NotFound, 404, tonic::Code::NotFound),
            (Conflict, 409, tonic::Code::FailedPrecondition),
            (Throttled, 429, tonic::Code::ResourceExhausted),
            (NotDurable, 507, tonic::Code::ResourceExhausted),
            (Unavailable, 503, tonic::Code::Unavailable),
            (Internal, 500, tonic::Code::Internal),
        ] {
            assert_eq!(http_status(kind).as_u16(), http, "{kind:?}");
            assert_eq!(grpc_code(kind), grpc, "{kind:?}");
        }
    }

    #[test]
    fn a_throttled_refusal_carries_its_wait_on_both_wires() {
        let mut body = ErrorBody::new("TooManyRequests", Some("rate_limited"), "wait");
        body.retry_after_s = Some(7);
        let refusal = Refusal::new(RefusalKind::Throttled, body);
        let response = refusal.clone().into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
        let status = tonic::Status::from(refusal);
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(status.metadata().get("retry-after").unwrap(), "7");
    }
}
