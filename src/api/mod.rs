//! The wire: HTTP (axum on our own accept loop) and gRPC (tonic) handlers that parse their format
//! and call typed agent methods, listener limits, the password-guessing guard.
pub(crate) mod admin;
pub(crate) mod error;
pub(crate) mod grpc;
pub(crate) mod http;
pub(crate) mod jsonbody;
pub(crate) mod limits;
pub(crate) mod openapi;
pub(crate) mod tls;
