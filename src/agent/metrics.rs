//! Prometheus metrics, served at `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

#[derive(Default)]
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) ready: Gauge,
    pub(crate) identity_changes: Counter,
    pub(crate) renumberings: Counter,
    pub(crate) reloads: Family<Labels, Counter>,
    pub(crate) host_snapshots: Counter,
    pub(crate) netlink_overruns: Counter,
    /// Always 1, labelled with the current family, address and interface.
    pub(crate) identity_info: Family<Labels, Gauge>,
    /// Open client connections, by listener.
    pub(crate) connections: Family<Labels, Gauge>,
    /// Connections closed at accept, by listener and reason (`per_peer`, `listener`).
    pub(crate) connections_refused: Family<Labels, Counter>,
    /// Refused credential checks, by reason (`wrong_username`, `wrong_password`, `missing`,
    /// `backoff`).
    pub(crate) auth_failures: Family<Labels, Counter>,
    /// Credential checks not run because the verification queue was full.
    pub(crate) auth_shed: Counter,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut m = Metrics::default();
        let r = &mut m.registry;
        r.register(
            "stackring_ready",
            "1 when an identity is decided and advertised",
            m.ready.clone(),
        );
        r.register(
            "stackring_identity_changes",
            "Identity changes since start",
            m.identity_changes.clone(),
        );
        r.register(
            "stackring_renumberings",
            "Internal address replacements since start",
            m.renumberings.clone(),
        );
        r.register(
            "stackring_reloads",
            "Configuration reloads by result",
            m.reloads.clone(),
        );
        r.register(
            "stackring_host_snapshots",
            "Host state changes read from netlink",
            m.host_snapshots.clone(),
        );
        r.register(
            "stackring_netlink_overruns",
            "Times netlink events were lost and the host was read again",
            m.netlink_overruns.clone(),
        );
        r.register(
            "stackring_identity_info",
            "The current identity (value always 1)",
            m.identity_info.clone(),
        );
        r.register(
            "stackring_connections",
            "Open client connections by listener",
            m.connections.clone(),
        );
        r.register(
            "stackring_connections_refused",
            "Connections closed at accept by listener and reason (per_peer, listener)",
            m.connections_refused.clone(),
        );
        r.register(
            "stackring_auth_failures",
            "Refused credential checks by reason (wrong_username, wrong_password, missing, backoff)",
            m.auth_failures.clone(),
        );
        r.register(
            "stackring_auth_shed",
            "Credential checks not run because the verification queue was full (answered 429)",
            m.auth_shed.clone(),
        );
        m
    }

    pub(crate) fn set_identity(&self, family: &str, addr: &str, interface: &str) {
        self.identity_info.clear();
        self.identity_info
            .get_or_create(&vec![
                ("family".into(), family.into()),
                ("internal_addr".into(), addr.into()),
                ("interface".into(), interface.into()),
            ])
            .set(1);
    }

    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}
