//! stackring: the network-identity and membership agent of a clustered appliance.
//!
//! Module map (pure core first, I/O at the edges):
//! - [`snapshot`]: our own types for links, addresses and default routes; events that change them.
//! - [`config`]: YAML (Tempo/dskit keys) → validated [`config::Settings`]; errors name key, value, fix.
//! - [`decide`]: snapshot + settings (+ cluster family, previous identity) → [`decide::Identity`].
//! - [`peer`]: peer addresses as operators write them (`join_members`, `cluster.nodes`).
//! - [`cluster`]: bootstrap request validation, the cluster record, credentials, join validation.
//! - [`preflight`]: host readiness checks with stable codes (pure `evaluate`, I/O in `gather`).
//! - [`ring`]: the `/ring` HTML page (dskit columns + family, addresses, listen vs advertised).
//! - [`render`]: identity → `identity.env` text and Tempo's network block.
//! - [`hosts`]: `/etc/hosts` parsing and the byte-preserving fix.
//! - [`state`]: what the daemon publishes (identity or reason, generation) and its JSON view.
//! - [`netlink`]: rtnetlink dump and live watch (subscribe, dump, debounce, re-dump on overrun).
//! - [`clusterd`]: bootstrap state machine, persisted record, gRPC Cluster service (the I/O side).
//! - [`membership`]: gossip membership on chitchat: node entries, liveness, last seen.
//! - [`daemon`]: `serve`: phases, sd_notify, signals, identity.env, servers.
//! - [`grpc`], [`http`], [`metrics`]: the daemon's servers (tonic + reflection, axum, Prometheus).
//! - [`systemd`]: sd_notify and journald/stderr logging that never fail the daemon.
//! - [`fsutil`]: atomic, durable file writes.
//! - [`jsonbody`]: request bodies parsed with errors naming the JSON path, value and fix.
//! - [`ipfmt`]: fast canonical address text for large JSON outputs (same text as `Display`).
//! - [`limits`]: listener limits: connections per listener and per peer, stall and first-bytes
//!   timeouts, the descriptor budget, the HTTP/1 accept loop (header-read and body timeouts).
//! - [`authguard`]: password guessing: per-source backoff, bounded verification queue (429).
//! - [`cli`]: the admin CLI.
pub mod authguard;
pub mod cli;
pub mod cluster;
pub mod clusterd;
pub mod config;
pub mod daemon;
pub mod decide;
pub mod fsutil;
pub mod grpc;
pub mod hosts;
pub mod http;
pub mod ipfmt;
pub mod jsonbody;
pub mod limits;
pub mod membership;
pub mod metrics;
pub mod netlink;
pub mod peer;
pub mod preflight;
pub mod render;
pub mod ring;
pub mod snapshot;
pub mod state;
pub mod systemd;
