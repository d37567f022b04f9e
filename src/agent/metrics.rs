//! Prometheus metrics, served at `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

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
    /// Gossip datagrams refused before chitchat saw them, by reason (`core::seal::Rejected`, and
    /// `malformed` for a sealed datagram that is not a chitchat message).
    pub(crate) gossip_rejected: Family<Labels, Counter>,
    /// Gossip exchanges started because a member's anti-entropy digest showed a state unlike
    /// ours (a change it or we missed).
    pub(crate) gossip_repairs: Counter,
    /// Gossip datagrams sealed, by wire format (`standard`, `compact`): during a rolling upgrade,
    /// how much still goes in the format every build opens.
    pub(crate) gossip_sealed: Family<Labels, Counter>,
    /// Always 1, labelled with the version and the commit.
    build_info: Family<Labels, Gauge>,
    /// Members as this node sees them, by health (OK, DOWN) and state (JOINING, ACTIVE, …).
    pub(crate) members: Family<Labels, Gauge>,
    /// Joins this node answered as the contacted member, by result and sub-code.
    pub(crate) joins: Family<Labels, Counter>,
    /// Admin changes applied to this node's own record, by kind.
    pub(crate) admin_changes: Family<Labels, Counter>,
    /// 1 when the last probe of a peer's advertised service succeeded, by peer and service.
    peer_reachable: Family<Labels, Gauge>,
    /// Round trip of the last successful probe, by peer and service (seconds).
    peer_rtt: Family<Labels, Gauge<f64, AtomicU64>>,
    process_cpu: Counter<f64, AtomicU64>,
    process_rss: Gauge,
    process_open_fds: Gauge,
    process_max_fds: Gauge,
    process_start: Gauge,
    /// CPU seconds already counted into `process_cpu`.
    cpu_counted: Mutex<f64>,
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
        r.register(
            "stackring_gossip_rejected",
            "Gossip datagrams refused (not sealed, unknown key, forged, replayed, stale, malformed)",
            m.gossip_rejected.clone(),
        );
        r.register(
            "stackring_gossip_repairs",
            "Gossip exchanges started because a member's anti-entropy digest showed a state unlike ours (a change one side missed)",
            m.gossip_repairs.clone(),
        );
        r.register(
            "stackring_gossip_sealed",
            "Gossip datagrams sealed, by wire format (standard: every build opens it; compact: 16 bytes less, to members that said they open it)",
            m.gossip_sealed.clone(),
        );
        r.register(
            "stackring_build_info",
            "The running build (value always 1)",
            m.build_info.clone(),
        );
        m.build_info
            .get_or_create(&vec![
                ("version".into(), env!("CARGO_PKG_VERSION").into()),
                ("build".into(), env!("STACKRING_BUILD").into()),
            ])
            .set(1);
        r.register(
            "stackring_members",
            "Members as this node sees them, by status (OK, DOWN) and state (JOINING, ACTIVE, LEAVING, LEFT)",
            m.members.clone(),
        );
        r.register(
            "stackring_joins",
            "Joins answered as the contacted member, by result (admitted, refused, throttled) and sub-code",
            m.joins.clone(),
        );
        r.register(
            "stackring_admin_changes",
            "Admin changes applied to this node's own record, by kind (external_addrs, addr)",
            m.admin_changes.clone(),
        );
        r.register(
            "stackring_peer_reachable",
            "1 when the last probe of the peer's advertised service succeeded, 0 when it failed",
            m.peer_reachable.clone(),
        );
        r.register(
            "stackring_peer_rtt_seconds",
            "Round trip of the last successful probe of the peer's advertised service",
            m.peer_rtt.clone(),
        );
        // The process collector's names (Prometheus client conventions).
        r.register(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            m.process_cpu.clone(),
        );
        r.register(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            m.process_rss.clone(),
        );
        r.register(
            "process_open_fds",
            "Number of open file descriptors",
            m.process_open_fds.clone(),
        );
        r.register(
            "process_max_fds",
            "Maximum number of open file descriptors",
            m.process_max_fds.clone(),
        );
        r.register(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            m.process_start.clone(),
        );
        m
    }

    /// One gauge per (status, state) pair present, replacing the previous counts.
    pub(crate) fn set_members(&self, counts: &std::collections::BTreeMap<(&str, &str), i64>) {
        self.members.clear();
        for ((status, state), n) in counts {
            self.members
                .get_or_create(&vec![
                    ("status".into(), (*status).into()),
                    ("state".into(), (*state).into()),
                ])
                .set(*n);
        }
    }

    /// The findings of this node's last probe round (peers only; its own listen addresses are
    /// not a peer).
    pub(crate) fn set_reachability(&self, findings: &crate::core::reach::Findings) {
        self.peer_reachable.clear();
        self.peer_rtt.clear();
        for (peer, probes) in findings
            .iter()
            .filter(|(p, _)| p.as_str() != crate::core::reach::SELF)
        {
            for (service, probe) in probes {
                let labels = vec![
                    ("peer".into(), peer.clone()),
                    ("service".into(), service.as_str().into()),
                ];
                let ok = probe.outcome == crate::core::reach::Outcome::Ok;
                self.peer_reachable.get_or_create(&labels).set(ok as i64);
                if ok {
                    self.peer_rtt
                        .get_or_create(&labels)
                        .set(f64::from(probe.rtt_ms) / 1000.0);
                }
            }
        }
    }

    pub(crate) fn count_join(&self, result: &str, sub_code: &str) {
        self.joins
            .get_or_create(&vec![
                ("result".into(), result.into()),
                ("sub_code".into(), sub_code.into()),
            ])
            .inc();
    }

    /// Reads this process's figures from /proc (at scrape time, as Prometheus clients do).
    fn refresh_process(&self) {
        let Some(p) = crate::agent::procstat::read_self() else {
            return;
        };
        let mut counted = self.cpu_counted.lock().unwrap_or_else(|e| e.into_inner());
        if p.cpu_seconds > *counted {
            self.process_cpu.inc_by(p.cpu_seconds - *counted);
            *counted = p.cpu_seconds;
        }
        self.process_rss.set(p.rss_bytes as i64);
        self.process_open_fds.set(p.open_fds as i64);
        self.process_max_fds.set(p.max_fds as i64);
        self.process_start.set(p.start_time_seconds as i64);
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
        self.refresh_process();
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}
