//! stackring: the network-identity and membership agent of a clustered appliance.
//!
//! Module map. Dependencies point one way: `cli` and `serve` → `api` → `agent` → `core`; `core`
//! depends on nothing else in the crate, and nothing in it does I/O or is async. README
//! "Architecture" follows one request through them.
//!
//! - [`core`] — pure rules, tested with tables:
//!   - `core::net`: address roles (usable, advertised, external, listen) and the one address
//!     parser; node and cluster names.
//!   - `core::snapshot`: our own types for links, addresses and default routes; events that change them.
//!   - `core::config`: YAML (Tempo/dskit keys) → validated `Settings` (and `Overrides` applied to
//!     them); errors name key, value, fix.
//!   - `core::decide`: snapshot + settings (+ cluster family, previous identity) → `Identity`.
//!   - `core::peer`: peer addresses as operators write them (`join_members`, `cluster.nodes`).
//!   - `core::cluster`: the cluster record, bootstrap validation and its state machine, join
//!     validation, admin operations (`apply_external`, changes gossiped for a node that was
//!     down), credentials, relay proofs, the typed admin replies.
//!   - `core::members`: member projection (gossip rows → one row per node, OK/DOWN, LEFT).
//!   - `core::mix`: SplitMix64 and FNV-1a, one copy (the digests members compare must agree).
//!   - `core::swim`: the failure detector (SWIM with Lifeguard's suspicion, as
//!     hashicorp/memberlist): probes, indirect probes, suspicion and refutation, piggybacked
//!     changes, its datagrams (`core::swim::wire`) and a simulator under virtual time
//!     (`core::swim::sim`).
//!   - `core::refusal`: why a request is refused (a kind and the operator's body).
//!   - `core::preflight`: host readiness checks with stable codes (`evaluate`, the hosts fix plan).
//!   - `core::firewall`: the appliance's nftables ruleset from the settings (only stackring's
//!     ports open; `stackring config firewall`).
//!   - `core::firstboot`: the system credentials an appliance's first boot takes (host name,
//!     configuration, secrets) and their rules; `agent::firstboot` applies them, all or nothing.
//!   - `core::token`: join tokens (kubeadm's shape: seed, one-time secret, CA pin), the member's
//!     book of the ones it printed, and their lifetimes.
//!   - `core::seal`: sealed gossip datagrams, the keyring (Consul's) and its changes
//!     (`KeyringOp`: `gossip-key install|use|remove`, one validator per key and key id).
//!   - `core::ring`, `core::render`, `core::hosts`, `core::state`, `core::ipfmt`: the `/ring` page,
//!     `identity.env` and Tempo/Loki/Mimir blocks, `/etc/hosts` parsing, what the daemon
//!     publishes, fast address text.
//!   - `core::products`: where Tempo, Loki and Mimir keep their network keys (each ring's address,
//!     port, interfaces and IPv6 flag), for `core::render` and `check`.
//! - [`agent`] — the daemon's moving parts, each owning its state:
//!   - `agent::node`: the cluster node — one actor task that owns membership and writes the record,
//!     and the handle the servers hold (bootstrap, admin changes, joins, the gRPC client).
//!   - `agent::membership`: gossip on chitchat with the transport injected (UDP, or in memory),
//!     liveness from the SWIM prober it hands every node to; `agent::gossip_seal`, the live
//!     transport's keyring (changed by `gossip-key`), which shares the port with the prober.
//!   - `agent::netlink`, `agent::files`, `agent::sockets`: the kernel's interfaces, the files the
//!     rules read and write (config, credentials, `/etc/hosts`, preflight's readings), listeners.
//!   - `agent::pki`: the cluster CA, node certificates signed at join, the self-signed
//!     certificate of a node not yet in a cluster, SPKI pins, their files, rustls configurations.
//!   - `agent::tls`: the node's TLS material as the servers and clients use it (replaced whole
//!     at join and renewal; a generation count tells caches when).
//!   - `agent::reach`: the reachability prober (every peer's advertised endpoints, TLS clients
//!     kept per peer so handshakes resume).
//!   - `agent::firstboot`: an appliance's first boot from systemd credentials (`stackring
//!     firstboot`).
//!   - `agent::swim`: `core::swim` as a task (tokio's clock, an inbox of opened datagrams, an
//!     `Outbox` seam, liveness on a watch channel; an in-memory hub for tests).
//!   - `agent::authguard`, `agent::metrics`, `agent::procstat`, `agent::systemd`,
//!     `agent::fsutil`: password guessing (backoff, bounded queue), Prometheus and the process's
//!     own figures, sd_notify and logging, atomic durable files.
//! - [`api`] — the wire: `api::http` (axum), `api::grpc` (tonic services), `api::admin` (request
//!   bodies → typed values), `api::error` (one refusal → HTTP status or gRPC code),
//!   `api::jsonbody`, `api::limits` (connection limits and timeouts, the HTTP/1 accept loop),
//!   `api::tls` (TLS sniffed on the gRPC port; the HTTPS listener's handshakes). One router serves
//!   HTTPS (everything), plain HTTP (reads only: a change or credentials get `TlsRequired` with the
//!   HTTPS URL) and the admin socket (trusted).
//! - [`proto`] — the generated gRPC types (public: the API for programs).
//! - `check` — `stackring check tempo|loki|mimir FILE`: a product's network block judged against
//!   the host and the decided identity (pure, on `core`; file, DNS and printing in `check::shim`).
//! - [`cli`] — the admin CLI.
//! - `serve` — wiring: bind, build, READY=1, the identity loop, signals, reload, shutdown.
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
    pub use crate::agent::membership::fuzz_gossip_listener;
    pub use crate::api::admin::{AddrChange, ExternalChange};
    pub use crate::api::jsonbody::parse as parse_json_body;
    pub use crate::cli::admin::parse_admin_response;
    pub use crate::core::cluster::{
        apply_external, newest_override, proofs_match, relay_fields, relay_proof,
        validate_bootstrap, Action, BootstrapRequest, ExternalOp, Override, Seeds,
    };
    pub use crate::core::config::{parse_str, ConfigError};
    pub use crate::core::members::NodeEntry;
    pub use crate::core::net::{parse_address, valid_name, AddrProblem, AddrRole};
    pub use crate::core::peer::{PeerAddr, PeerHost};
    pub use crate::core::reach::{decode as decode_reach, encode as encode_reach};

    /// A gRPC channel to `uri` (`http://host:port`) over TLS, trusting the server on first use (as a
    /// joiner without a pin does), through the product's own connector. For tests of the calls
    /// that are only served over TLS.
    #[doc(hidden)]
    pub async fn grpc_tls_channel(uri: &str) -> Result<tonic::transport::Channel, String> {
        let (config, _) = crate::agent::pki::client_config_tofu().map_err(|e| e.to_string())?;
        crate::agent::node::client::tls_channel(
            uri,
            crate::agent::tls::h2_client(config),
            std::time::Duration::from_secs(10),
        )
        .await
        .map_err(String::from)
    }

    /// [`grpc_tls_channel`] presenting a member's certificate (`node.pem`, `node.key` and the
    /// cluster's `ca.pem` as a member keeps them): what an attacker holding a stolen member
    /// certificate can call.
    #[doc(hidden)]
    pub async fn grpc_tls_channel_as(
        uri: &str,
        node_pem: &str,
        node_key: &str,
        ca_pem: &str,
    ) -> Result<tonic::transport::Channel, String> {
        use crate::agent::pki;
        let node = pki::NodeCredentials::new(
            pki::NodeCert::from_pem(node_pem).map_err(|e| e.to_string())?,
            pki::NodeKey::from_pem(node_key).map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
        let ca = pki::CaCert::from_pem(ca_pem).map_err(|e| e.to_string())?;
        let config = pki::client_config_mutual(&node, &ca, None).map_err(|e| e.to_string())?;
        crate::agent::node::client::tls_channel(
            uri,
            crate::agent::tls::h2_client(config),
            std::time::Duration::from_secs(25),
        )
        .await
        .map_err(String::from)
    }

    /// [`grpc_tls_channel`] over one connection the caller made (e.g. from a chosen source
    /// address): that connection only, never a reconnect.
    #[doc(hidden)]
    pub async fn grpc_tls_channel_over(
        stream: tokio::net::TcpStream,
    ) -> Result<tonic::transport::Channel, String> {
        let (config, _) = crate::agent::pki::client_config_tofu().map_err(|e| e.to_string())?;
        let peer = stream.peer_addr().map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(crate::agent::tls::h2_client(config))
            .connect(
                rustls_pki_types::ServerName::IpAddress(peer.ip().into()),
                stream,
            )
            .await
            .map_err(|e| e.to_string())?;
        let once = std::sync::Arc::new(std::sync::Mutex::new(Some(tls)));
        tonic::transport::Endpoint::from_static("http://node")
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let stream = once.lock().unwrap_or_else(|p| p.into_inner()).take();
                async move {
                    stream
                        .map(hyper_util::rt::TokioIo::new)
                        .ok_or_else(|| std::io::Error::other("one connection only"))
                }
            }))
            .await
            .map_err(|e| e.to_string())
    }

    /// `message` (a chitchat message's bytes) sealed under the gossip key `key_hex` (64 hex
    /// digits, as `cluster.json` keeps it) by a new sender session, stamped with the current
    /// clock: what a key holder sends. For tests that show the seal is all that refuses a forgery.
    ///
    /// # Panics
    /// When `key_hex` is not a gossip key.
    #[doc(hidden)]
    pub fn seal_gossip(key_hex: &str, message: &[u8]) -> Vec<u8> {
        let key = crate::core::seal::GossipKey::parse(key_hex).unwrap_or_else(|e| panic!("{e}"));
        let session = crate::agent::gossip_seal::random_session();
        let mut out = Vec::new();
        crate::core::seal::Sealer::new(session).seal(
            &key,
            crate::agent::now_ms(),
            message,
            &mut out,
        );
        out
    }
}
