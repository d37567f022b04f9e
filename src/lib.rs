//! stackring: the network-identity and membership agent of a clustered appliance.
//!
//! Module map. Dependencies point one way: `cli` and `serve` → `api` → `agent` → `core`; `core`
//! depends on nothing else in the crate, and nothing in it does I/O or is async.
//!
//! - [`core`] — pure rules, tested with tables:
//!   - `core::net`: address roles (what may be advertised, listened on, given as external), node
//!     names; the one validator of each.
//!   - `core::snapshot`: our own types for links, addresses and default routes; events that change them.
//!   - `core::config`: YAML (Tempo/dskit keys) → validated `Settings`; errors name key, value, fix.
//!   - `core::decide`: snapshot + settings (+ cluster family, previous identity) → `Identity`.
//!   - `core::peer`: peer addresses as operators write them (`join_members`, `cluster.nodes`).
//!   - `core::cluster`: the cluster record, bootstrap and join validation, admin operations with
//!     their ordering rule, credentials, relay proofs, the bootstrap state machine.
//!   - `core::members`: member projection (gossip states → one row per node, OK/DOWN, LEFT).
//!   - `core::preflight`: host readiness checks with stable codes (pure `evaluate`, I/O in `gather`).
//!   - `core::ring`, `core::render`, `core::hosts`, `core::state`, `core::ipfmt`: the `/ring` page,
//!     `identity.env` and Tempo/Loki/Mimir blocks, `/etc/hosts` parsing and fix, what the daemon
//!     publishes, fast address text.
//!   - `core::products`: where Tempo, Loki and Mimir keep their network keys (each ring's address,
//!     port, interfaces and IPv6 flag), for `core::render` and `check`.
//! - [`agent`] — the daemon's moving parts, each owning its state:
//!   - `agent::node`: the cluster node (bootstrap, persisted record, admin changes, join client).
//!   - `agent::membership`: gossip on chitchat with the transport injected (UDP, or in memory in tests).
//!   - `agent::netlink`, `agent::systemd`, `agent::metrics`, `agent::fsutil`: the kernel's interfaces,
//!     sd_notify and logging, Prometheus, atomic durable files.
//! - [`api`] — the wire: `api::http` (axum), `api::grpc` (tonic services), `api::error` (one error
//!   type → HTTP response or gRPC status), `api::jsonbody`, `api::limits`, `api::authguard`.
//! - [`proto`] — the generated gRPC types (public: the API for programs).
//! - `check` — `stackring check tempo|loki|mimir FILE`: a product's network block judged against
//!   the host and the decided identity (pure, on `core`; file, DNS and printing in `check::shim`).
//! - [`cli`] — the admin CLI (one dispatch `match`, one admin client).
//! - `serve` — wiring: bind, build, READY=1, the identity loop, signals, shutdown.
pub mod cli;
pub mod proto;

pub(crate) mod agent;
pub(crate) mod api;
pub(crate) mod check;
pub(crate) mod core;
pub(crate) mod serve;

/// What the fuzz targets and integration tests drive directly (not an API: it may change).
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::api::admin::{AddrChange, ExternalChange};
    pub use crate::api::jsonbody::parse as parse_json_body;
    pub use crate::cli::parse_admin_response;
    pub use crate::core::cluster::{
        apply_external, newest_override, proofs_match, relay_proof, validate_bootstrap, Action,
        BootstrapRequest, ExternalOp, Override, Seeds,
    };
    pub use crate::core::config::{parse_str, ConfigError};
    pub use crate::core::members::NodeEntry;
    pub use crate::core::net::{parse_address, valid_name, AddrProblem, AddrRole};
    pub use crate::core::peer::{PeerAddr, PeerHost};
}
