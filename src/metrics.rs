//! Prometheus metrics, served at `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

#[derive(Default)]
pub struct Metrics {
    registry: Registry,
    pub ready: Gauge,
    pub identity_changes: Counter,
    pub renumberings: Counter,
    pub reloads: Family<Labels, Counter>,
    pub host_snapshots: Counter,
    pub netlink_overruns: Counter,
    /// Always 1, labelled with the current family, address and interface.
    pub identity_info: Family<Labels, Gauge>,
}

impl Metrics {
    pub fn new() -> Metrics {
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
        m
    }

    pub fn set_identity(&self, family: &str, addr: &str, interface: &str) {
        self.identity_info.clear();
        self.identity_info
            .get_or_create(&vec![
                ("family".into(), family.into()),
                ("internal_addr".into(), addr.into()),
                ("interface".into(), interface.into()),
            ])
            .set(1);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}
