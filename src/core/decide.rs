//! The decision: host snapshot + settings (+ cluster family, + previous identity) → identity.
//!
//! Pure: no I/O, no clock. Everything the daemon, the CLI and the tests agree on about which family,
//! which internal address, which external addresses and which listen/advertise endpoints this node
//! has comes from `decide`.

use crate::core::config::Settings;
use crate::core::net::{refusal, AddrRole};
use crate::core::snapshot::{Address, Family, HostSnapshot, Scope};
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Where a server listens and what the node tells its peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct Endpoint {
    #[schema(value_type = String, example = "[::]:9095")]
    pub(crate) listen: SocketAddr,
    #[schema(value_type = String, example = "[2001:db8::1]:9095")]
    pub(crate) advertise: SocketAddr,
}

/// This node's network identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Identity {
    pub(crate) id: String,
    pub(crate) zone: String,
    pub(crate) family: Family,
    /// Which rule chose the family, in words (`"only IPv6 is usable"`, …).
    pub(crate) family_reason: String,
    pub(crate) internal_addr: IpAddr,
    /// The interface holding the internal address.
    pub(crate) internal_interface: String,
    pub(crate) external_addrs: Vec<IpAddr>,
    pub(crate) grpc: Endpoint,
    pub(crate) http: Endpoint,
    /// The bootstrap and admin API over TLS (`server.https_listen_port`, on HTTP's address).
    pub(crate) https: Endpoint,
    pub(crate) gossip: Endpoint,
}

impl Identity {
    /// One line for `STATUS=` and logs.
    pub(crate) fn summary(&self) -> String {
        format!(
            "advertising {} {} on {} (gRPC {}, gossip {})",
            self.family,
            self.internal_addr,
            self.internal_interface,
            self.grpc.advertise,
            self.gossip.advertise
        )
    }
}

/// Why no identity can be decided (yet). The daemon keeps waiting and shows this in `STATUS=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NotReady {
    /// No usable address of the family that the rules call for.
    NoUsableAddress {
        family: Option<Family>,
        rule: String,
        /// Addresses that would do once something changes (DAD, link state), with why not yet.
        pending: Vec<String>,
    },
    /// `node.addr` is set but not usable on this host.
    PinnedNotUsable { addr: IpAddr, why: String },
    /// The configuration imposes one family and the cluster uses the other.
    FamilyConflict {
        cluster: Family,
        key: String,
        ip: IpAddr,
    },
}

impl fmt::Display for NotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotReady::NoUsableAddress {
                family,
                rule,
                pending,
            } => {
                match family {
                    Some(family) => write!(f, "waiting for a usable {family} address ({rule})")?,
                    None => write!(
                        f,
                        "waiting for a usable address (no IPv4 or IPv6 address is usable)"
                    )?,
                }
                if !pending.is_empty() {
                    write!(f, ": {}", pending.join("; "))?;
                }
                Ok(())
            }
            NotReady::PinnedNotUsable { addr, why } => {
                write!(f, "node.addr {addr} is not usable: {why}")
            }
            NotReady::FamilyConflict { cluster, key, ip } => write!(
                f,
                "the cluster uses {cluster} but {key} '{ip}' is {}",
                Family::of(ip)
            ),
        }
    }
}

/// Why an address of the host cannot serve as the internal address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unusable {
    NoLink,
    Loopback,
    LinkDown,
    Scope(Scope),
    Tentative,
    DadFailed,
    SpecialAddress(&'static str),
}

impl Unusable {
    /// Whether waiting can fix it without an operator (DAD finishing, a link coming up).
    pub(crate) fn is_transient(&self) -> bool {
        matches!(self, Unusable::Tentative | Unusable::LinkDown)
    }
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unusable::NoLink => write!(f, "its interface is gone"),
            Unusable::Loopback => write!(f, "on a loopback interface"),
            Unusable::LinkDown => write!(f, "its interface is down"),
            Unusable::Scope(s) => write!(f, "scope {s:?} (not global)"),
            Unusable::Tentative => write!(f, "duplicate address detection is still running"),
            Unusable::DadFailed => write!(
                f,
                "duplicate address detection failed (another host has it)"
            ),
            Unusable::SpecialAddress(why) => write!(f, "{why}"),
        }
    }
}

/// SPEC §1: whether an address can carry cluster traffic, and if not, why.
pub(crate) fn usability(snapshot: &HostSnapshot, addr: &Address) -> Result<(), Unusable> {
    let link = snapshot.link(addr.link_index).ok_or(Unusable::NoLink)?;
    if link.loopback {
        return Err(Unusable::Loopback);
    }
    if let Some(why) = refusal(AddrRole::Usable, &addr.ip) {
        return Err(Unusable::SpecialAddress(why));
    }
    // Site-local (fec0::/10, deprecated by RFC 3879) is what QEMU's plain user network hands out:
    // usable, but only as a last resort (see `best_address`).
    if addr.scope != Scope::Global && !(addr.scope == Scope::Site && is_site_local(&addr.ip)) {
        return Err(Unusable::Scope(addr.scope));
    }
    if addr.dad_failed() {
        return Err(Unusable::DadFailed);
    }
    if addr.tentative() {
        return Err(Unusable::Tentative);
    }
    if !link.is_active() {
        return Err(Unusable::LinkDown);
    }
    Ok(())
}

/// The host's usable addresses (SPEC §1): what `decide` chooses from, `GET /v1/bootstrap` lists as
/// `available_addrs` and the config's fixes suggest.
pub(crate) fn usable_addrs(snapshot: &HostSnapshot) -> impl Iterator<Item = &Address> {
    snapshot
        .addresses
        .values()
        .filter(|a| usability(snapshot, a).is_ok())
}

/// `fec0::/10`: IPv6 site-local unicast, deprecated by RFC 3879 (the kernel gives it scope `site`).
pub(crate) fn is_site_local(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfec0)
}

/// Where a server listens. An empty listen address is `[::]` with `IPV6_V6ONLY` off (both
/// families: the HTTP API is external traffic and must answer at every external address, as Go
/// services such as Tempo do) unless the kernel has IPv6 off, then `0.0.0.0` (SPEC §3). It does
/// not depend on the identity, so the servers can answer while the node waits for an address.
pub(crate) fn server_listen(
    snapshot: &HostSnapshot,
    address: Option<IpAddr>,
    port: u16,
) -> SocketAddr {
    let unspecified = if snapshot.ipv6_disabled {
        Family::Ipv4.unspecified()
    } else {
        Family::Ipv6.unspecified()
    };
    SocketAddr::new(address.unwrap_or(unspecified), port)
}

/// Inputs beyond the host and the config.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Context<'a> {
    /// The cluster's family, once this node belongs to a cluster (SPEC §2 rule 1).
    pub(crate) cluster_family: Option<Family>,
    /// The identity decided last time: its internal address is kept while usable (sticky).
    pub(crate) previous: Option<&'a Identity>,
}

/// SPEC §2–3.
pub(crate) fn decide(
    snapshot: &HostSnapshot,
    settings: &Settings,
    ctx: Context<'_>,
) -> Result<Identity, NotReady> {
    let usable: Vec<&Address> = usable_addrs(snapshot).collect();
    let candidates: Vec<&Address> = usable
        .iter()
        .copied()
        .filter(|a| interface_allowed(snapshot, settings, a))
        .collect();
    let has = |family: Family| candidates.iter().any(|a| a.family() == family);

    let (family, rule) = choose_family(
        settings,
        ctx.cluster_family,
        has(Family::Ipv4),
        has(Family::Ipv6),
    )
    .map_err(|e| match e {
        NotReady::NoUsableAddress { family, rule, .. } => NotReady::NoUsableAddress {
            pending: pending(snapshot, settings, family),
            family,
            rule,
        },
        other => other,
    })?;

    // An automatic choice is sticky too: an IPv6-only node that gains an IPv4 lease keeps IPv6.
    let automatic = ctx.cluster_family.is_none()
        && !settings.use_internal_ipv6
        && settings.explicit_family().is_none();
    let (family, rule) = match ctx.previous {
        Some(p) if automatic && p.family != family && has(p.family) => {
            (p.family, format!("{}, kept while running", p.family_reason))
        }
        _ => (family, rule),
    };

    let internal = match settings.internal_addr {
        Some(pinned) => pinned_address(snapshot, settings, pinned)?,
        None => {
            // A site-local address is a last resort: it is kept only until a global or ULA
            // address of the family is usable.
            let better_than_site_local = candidates
                .iter()
                .any(|a| a.family() == family && !is_site_local(&a.ip));
            let sticky = ctx
                .previous
                .filter(|p| p.family == family)
                .filter(|p| !(is_site_local(&p.internal_addr) && better_than_site_local))
                .and_then(|p| candidates.iter().find(|a| a.ip == p.internal_addr));
            match sticky {
                Some(a) => *a,
                None => best_address(snapshot, settings, &candidates, family).ok_or_else(|| {
                    NotReady::NoUsableAddress {
                        family: Some(family),
                        rule: rule.clone(),
                        pending: pending(snapshot, settings, Some(family)),
                    }
                })?,
            }
        }
    };
    let internal_interface = snapshot
        .link(internal.link_index)
        .map(|l| l.name.clone())
        .unwrap_or_default();

    let external_addrs = match &settings.external_addrs {
        Some(list) => list.clone(),
        None => {
            let mut others: Vec<&Address> = usable
                .iter()
                .copied()
                .filter(|a| a.ip != internal.ip && !a.deprecated() && !a.temporary())
                .collect();
            others.sort_by_key(|a| (a.family(), link_name(snapshot, a), a.ip));
            let mut ips: Vec<IpAddr> = others.iter().map(|a| a.ip).collect();
            ips.dedup();
            if ips.is_empty() {
                vec![internal.ip]
            } else {
                ips
            }
        }
    };

    let advertise_ip = settings.advertise_addr.unwrap_or(internal.ip);
    let grpc = Endpoint {
        listen: server_listen(snapshot, settings.grpc.address, settings.grpc.port),
        advertise: SocketAddr::new(
            advertise_ip,
            settings.advertise_port.unwrap_or(settings.grpc.port),
        ),
    };
    let http = Endpoint {
        listen: server_listen(snapshot, settings.http.address, settings.http.port),
        advertise: SocketAddr::new(advertise_ip, settings.http.port),
    };
    let https = Endpoint {
        listen: server_listen(snapshot, settings.http.address, settings.https_port),
        advertise: SocketAddr::new(advertise_ip, settings.https_port),
    };
    let gossip = Endpoint {
        // Gossip is internal traffic only: the internal family's unspecified address.
        listen: SocketAddr::new(
            settings
                .gossip
                .address
                .unwrap_or_else(|| family.unspecified()),
            settings.gossip.port,
        ),
        advertise: SocketAddr::new(
            settings.gossip_advertise_addr.unwrap_or(internal.ip),
            settings
                .gossip_advertise_port
                .unwrap_or(settings.gossip.port),
        ),
    };

    Ok(Identity {
        id: settings.id.clone(),
        zone: settings.zone.clone(),
        family,
        family_reason: rule,
        internal_addr: internal.ip,
        internal_interface,
        external_addrs,
        grpc,
        http,
        https,
        gossip,
    })
}

/// SPEC §2, rules 1–5.
fn choose_family(
    settings: &Settings,
    cluster: Option<Family>,
    has_v4: bool,
    has_v6: bool,
) -> Result<(Family, String), NotReady> {
    if let Some(cluster) = cluster {
        if let Some((family, key, ip)) = settings.explicit_family() {
            if family != cluster {
                return Err(NotReady::FamilyConflict {
                    cluster,
                    key: key.to_string(),
                    ip,
                });
            }
        }
        return Ok((cluster, "the cluster's family".to_string()));
    }
    if settings.use_internal_ipv6 {
        // Name the key the operator wrote (`lifecycler.enable_inet6`, `node.use_internal_ipv6`, …).
        let key = settings
            .use_internal_ipv6_written
            .as_ref()
            .map_or("use_internal_ipv6", |w| w.key.as_str());
        return Ok((Family::Ipv6, format!("{key} is true")));
    }
    if let Some((family, key, ip)) = settings.explicit_family() {
        return Ok((family, format!("{key} is {ip}")));
    }
    match (has_v4, has_v6) {
        (true, true) => Ok((Family::Ipv4, "dual-stack host, IPv4 by default".to_string())),
        (true, false) => Ok((Family::Ipv4, "only IPv4 is usable".to_string())),
        (false, true) => Ok((Family::Ipv6, "only IPv6 is usable".to_string())),
        (false, false) => Err(NotReady::NoUsableAddress {
            family: None,
            rule: "no usable address".to_string(),
            pending: vec![],
        }),
    }
}

fn pinned_address<'a>(
    snapshot: &'a HostSnapshot,
    settings: &Settings,
    pinned: IpAddr,
) -> Result<&'a Address, NotReady> {
    let mut found = snapshot
        .addresses
        .values()
        .filter(|a| a.ip == pinned)
        .peekable();
    if found.peek().is_none() {
        return Err(NotReady::PinnedNotUsable {
            addr: pinned,
            why: "it is not bound to any interface of this host".to_string(),
        });
    }
    let mut last_reason = String::new();
    for addr in found {
        match usability(snapshot, addr) {
            Ok(()) if interface_allowed(snapshot, settings, addr) => return Ok(addr),
            Ok(()) => {
                last_reason = format!(
                    "its interface {} is not in lifecycler.interface_names",
                    link_name(snapshot, addr)
                )
            }
            Err(why) => last_reason = format!("on {}: {why}", link_name(snapshot, addr)),
        }
    }
    Err(NotReady::PinnedNotUsable {
        addr: pinned,
        why: last_reason,
    })
}

/// The preference order of SPEC §1: global/ULA before site-local, default-route link, not
/// deprecated, not temporary, then interface (configured order, else name), then address.
fn best_address<'a>(
    snapshot: &HostSnapshot,
    settings: &Settings,
    candidates: &[&'a Address],
    family: Family,
) -> Option<&'a Address> {
    let route_link = snapshot.default_route_link(family);
    candidates
        .iter()
        .copied()
        .filter(|a| a.family() == family)
        .min_by_key(|a| {
            let name = link_name(snapshot, a);
            let position = settings.interface_names.iter().position(|n| *n == name);
            (
                is_site_local(&a.ip),
                Reverse(route_link == Some(a.link_index)),
                a.deprecated(),
                a.temporary(),
                position,
                name,
                a.ip,
            )
        })
}

fn interface_allowed(snapshot: &HostSnapshot, settings: &Settings, addr: &Address) -> bool {
    settings.interface_names.is_empty()
        || settings
            .interface_names
            .iter()
            .any(|n| *n == link_name(snapshot, addr))
}

fn link_name<'a>(snapshot: &'a HostSnapshot, addr: &Address) -> &'a str {
    snapshot
        .link(addr.link_index)
        .map(|l| l.name.as_str())
        .unwrap_or_default()
}

/// Addresses of `family` that could become usable by themselves, for the waiting message.
fn pending(snapshot: &HostSnapshot, settings: &Settings, family: Option<Family>) -> Vec<String> {
    snapshot
        .addresses
        .values()
        .filter(|a| {
            family.is_none_or(|f| a.family() == f) && interface_allowed(snapshot, settings, a)
        })
        .filter_map(|a| match usability(snapshot, a) {
            Err(why) if why.is_transient() => {
                Some(format!("{} on {}: {why}", a.ip, link_name(snapshot, a)))
            }
            _ => None,
        })
        .collect()
}

/// Every address of the host with its verdict, for `inspect` and `GET /v1/bootstrap`.
pub(crate) fn address_report<'a>(
    snapshot: &'a HostSnapshot,
    settings: &Settings,
) -> Vec<AddressVerdict<'a>> {
    snapshot
        .addresses
        .values()
        .map(|a| {
            let reason = match usability(snapshot, a) {
                Err(why) => Some(why.to_string()),
                Ok(()) if !interface_allowed(snapshot, settings, a) => {
                    Some("interface not in lifecycler.interface_names".to_string())
                }
                Ok(()) => None,
            };
            AddressVerdict {
                address: a.ip,
                prefix_len: a.prefix_len,
                family: a.family(),
                interface: link_name(snapshot, a),
                flags: a.flags.names(a.family()),
                usable: reason.is_none(),
                reason,
            }
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct AddressVerdict<'a> {
    #[serde(serialize_with = "crate::core::ipfmt::serialize")]
    pub(crate) address: IpAddr,
    pub(crate) prefix_len: u8,
    pub(crate) family: Family,
    pub(crate) interface: &'a str,
    pub(crate) flags: Vec<&'static str>,
    pub(crate) usable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::parse_str;
    use crate::core::snapshot::{AddrFlags, DefaultRoute, HostEvent, Link, OperState};

    /// A host built from a compact description: `("eth0", up, [("2001:db8::5", flags)])`.
    struct Host(HostSnapshot);

    impl Host {
        fn new() -> Host {
            let mut s = HostSnapshot::default();
            s.apply(HostEvent::LinkChanged(Link {
                index: 1,
                name: "lo".into(),
                kind: None,
                admin_up: true,
                oper: OperState::Unknown,
                loopback: true,
            }));
            s.apply(HostEvent::AddressChanged(addr(1, "::1", 0)));
            s.apply(HostEvent::AddressChanged(addr(1, "127.0.0.1", 0)));
            Host(s)
        }
        fn link(mut self, index: u32, name: &str, up: bool) -> Host {
            self.0.apply(HostEvent::LinkChanged(Link {
                index,
                name: name.into(),
                kind: Some("veth".into()),
                admin_up: up,
                oper: if up { OperState::Up } else { OperState::Down },
                loopback: false,
            }));
            self
        }
        fn addr(mut self, index: u32, ip: &str, flags: u32) -> Host {
            self.0
                .apply(HostEvent::AddressChanged(addr(index, ip, flags)));
            self
        }
        fn addr_scoped(mut self, index: u32, ip: &str, flags: u32, scope: Scope) -> Host {
            let mut a = addr(index, ip, flags);
            a.scope = scope;
            self.0.apply(HostEvent::AddressChanged(a));
            self
        }
        fn default_route(mut self, family: Family, index: u32) -> Host {
            self.0.apply(HostEvent::DefaultRouteAdded(DefaultRoute {
                family,
                link_index: index,
                gateway: None,
                metric: 100,
            }));
            self
        }
    }

    fn addr(link_index: u32, ip: &str, flags: u32) -> Address {
        let ip: IpAddr = ip.parse().unwrap();
        let scope = if ip.is_loopback() {
            Scope::Host
        } else if crate::core::net::is_link_local(&ip) {
            Scope::Link
        } else {
            Scope::Global
        };
        Address {
            link_index,
            ip,
            prefix_len: if ip.is_ipv4() { 24 } else { 64 },
            scope,
            flags: AddrFlags(flags | AddrFlags::PERMANENT),
        }
    }

    fn settings(yaml: &str) -> Settings {
        parse_str(yaml, "node-a").unwrap()
    }

    fn run(host: &Host, yaml: &str) -> Result<Identity, NotReady> {
        decide(&host.0, &settings(yaml), Context::default())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const TENTATIVE: u32 = AddrFlags::TENTATIVE;
    const DADFAILED: u32 = AddrFlags::DADFAILED;
    const DEPRECATED: u32 = AddrFlags::DEPRECATED;
    const TEMPORARY: u32 = AddrFlags::SECONDARY;

    /// Family and internal address for each kind of host (SPEC §1–2).
    #[test]
    fn family_and_internal_address_table() {
        let v6only = || {
            Host::new()
                .link(2, "eth0", true)
                .addr(2, "fe80::1", 0)
                .addr(2, "2001:db8::5", 0)
        };
        let dual = || v6only().addr(2, "192.0.2.5", 0);
        type Want = Result<(Family, &'static str), &'static str>;
        let table: Vec<(&str, Host, &str, Want)> = vec![
            (
                "IPv6-only host → IPv6",
                v6only(),
                "",
                Ok((Family::Ipv6, "2001:db8::5")),
            ),
            (
                "IPv4-only host → IPv4",
                Host::new().link(2, "eth0", true).addr(2, "198.51.100.7", 0),
                "",
                Ok((Family::Ipv4, "198.51.100.7")),
            ),
            (
                "dual-stack → IPv4 by default",
                dual(),
                "",
                Ok((Family::Ipv4, "192.0.2.5")),
            ),
            (
                "dual-stack + use_internal_ipv6 → IPv6",
                dual(),
                "node: {use_internal_ipv6: true}",
                Ok((Family::Ipv6, "2001:db8::5")),
            ),
            (
                "dual-stack + enable_inet6 → IPv6",
                dual(),
                "lifecycler: {enable_inet6: true}",
                Ok((Family::Ipv6, "2001:db8::5")),
            ),
            (
                "use_internal_ipv6 on an IPv4-only host → waits",
                Host::new().link(2, "eth0", true).addr(2, "192.0.2.5", 0),
                "node: {use_internal_ipv6: true}",
                Err("usable IPv6"),
            ),
            (
                "pinned node.addr picks its family",
                dual(),
                "node: {addr: '2001:db8::5'}",
                Ok((Family::Ipv6, "2001:db8::5")),
            ),
            (
                "lifecycler.address picks the family",
                dual(),
                "lifecycler: {address: '2001:db8::99'}",
                Ok((Family::Ipv6, "2001:db8::5")),
            ),
            (
                "pinned but not bound",
                dual(),
                "node: {addr: '2001:db8::77'}",
                Err("not bound"),
            ),
            (
                "text containing ::1 is not loopback",
                Host::new().link(2, "eth0", true).addr(2, "2001:db8::1", 0),
                "",
                Ok((Family::Ipv6, "2001:db8::1")),
            ),
            (
                "ULA counts as global",
                Host::new().link(2, "eth0", true).addr(2, "fd00::1:5", 0),
                "",
                Ok((Family::Ipv6, "fd00::1:5")),
            ),
            (
                "loopback and link-local only → waits",
                Host::new().link(2, "eth0", true).addr(2, "fe80::1", 0),
                "",
                Err("waiting for a usable address"),
            ),
            (
                "169.254/16 is not usable",
                Host::new()
                    .link(2, "eth0", true)
                    .addr(2, "169.254.3.4", 0)
                    .addr(2, "2001:db8::5", 0),
                "",
                Ok((Family::Ipv6, "2001:db8::5")),
            ),
            (
                "link down → its addresses are not usable",
                Host::new()
                    .link(2, "eth0", false)
                    .addr(2, "192.0.2.5", 0)
                    .link(3, "eth1", true)
                    .addr(3, "2001:db8::5", 0),
                "",
                Ok((Family::Ipv6, "2001:db8::5")),
            ),
            (
                "tentative IPv6 → waits, naming DAD",
                Host::new()
                    .link(2, "eth0", true)
                    .addr(2, "2001:db8::5", TENTATIVE),
                "node: {use_internal_ipv6: true}",
                Err("duplicate address detection is still running"),
            ),
            (
                "dadfailed is skipped",
                Host::new()
                    .link(2, "eth0", true)
                    .addr(2, "2001:db8::5", DADFAILED | TENTATIVE)
                    .addr(2, "2001:db8::6", 0),
                "",
                Ok((Family::Ipv6, "2001:db8::6")),
            ),
            (
                "preferred beats deprecated",
                Host::new()
                    .link(2, "eth0", true)
                    .addr(2, "2001:db8::1", DEPRECATED)
                    .addr(2, "2001:db8::9", 0),
                "",
                Ok((Family::Ipv6, "2001:db8::9")),
            ),
            (
                "stable beats temporary",
                Host::new()
                    .link(2, "eth0", true)
                    .addr(2, "2001:db8::1", TEMPORARY)
                    .addr(2, "2001:db8::9", 0),
                "",
                Ok((Family::Ipv6, "2001:db8::9")),
            ),
            (
                "secondary IPv4 is not 'temporary'",
                Host::new()
                    .link(2, "eth0", true)
                    .addr(2, "192.0.2.1", TEMPORARY)
                    .addr(2, "192.0.2.9", 0),
                "",
                Ok((Family::Ipv4, "192.0.2.1")),
            ),
            (
                "default-route link beats name order",
                Host::new()
                    .link(2, "eth0", true)
                    .addr(2, "2001:db8:a::5", 0)
                    .link(3, "eth1", true)
                    .addr(3, "2001:db8:b::5", 0)
                    .default_route(Family::Ipv6, 3),
                "",
                Ok((Family::Ipv6, "2001:db8:b::5")),
            ),
            (
                "default-route link beats deprecation",
                Host::new()
                    .link(2, "eth0", true)
                    .addr(2, "2001:db8:a::5", 0)
                    .link(3, "eth1", true)
                    .addr(3, "2001:db8:b::5", DEPRECATED)
                    .default_route(Family::Ipv6, 3),
                "",
                Ok((Family::Ipv6, "2001:db8:b::5")),
            ),
            (
                "tie-break by link name then address",
                Host::new()
                    .link(3, "eth1", true)
                    .addr(3, "2001:db8::1", 0)
                    .link(2, "eth0", true)
                    .addr(2, "2001:db8::9", 0)
                    .addr(2, "2001:db8::8", 0),
                "",
                Ok((Family::Ipv6, "2001:db8::8")),
            ),
            (
                "interface_names filters and orders",
                Host::new()
                    .link(2, "eth0", true)
                    .addr(2, "2001:db8:a::5", 0)
                    .link(3, "eth1", true)
                    .addr(3, "2001:db8:b::5", 0)
                    .default_route(Family::Ipv6, 2),
                "lifecycler: {interface_names: [eth1]}",
                Ok((Family::Ipv6, "2001:db8:b::5")),
            ),
            (
                "interface_names decides the family too",
                Host::new()
                    .link(2, "eth0", true)
                    .addr(2, "192.0.2.5", 0)
                    .link(3, "eth1", true)
                    .addr(3, "2001:db8:b::5", 0),
                "lifecycler: {interface_names: [eth1]}",
                Ok((Family::Ipv6, "2001:db8:b::5")),
            ),
            (
                "pinned address outside interface_names",
                Host::new()
                    .link(2, "eth0", true)
                    .addr(2, "2001:db8:a::5", 0)
                    .link(3, "eth1", true),
                "node: {addr: '2001:db8:a::5'}\nlifecycler: {interface_names: [eth1]}",
                Err("not in lifecycler.interface_names"),
            ),
        ];
        for (name, host, yaml, want) in table {
            let got = run(&host, yaml);
            match (&got, want) {
                (Ok(id), Ok((family, addr))) => {
                    assert_eq!((id.family, id.internal_addr), (family, ip(addr)), "{name}");
                }
                (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{name}: {e}"),
                _ => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn cluster_family_wins_and_conflicts_are_named() {
        let host = Host::new()
            .link(2, "eth0", true)
            .addr(2, "192.0.2.5", 0)
            .addr(2, "2001:db8::5", 0);
        let s = settings("");
        let ctx = Context {
            cluster_family: Some(Family::Ipv6),
            previous: None,
        };
        assert_eq!(decide(&host.0, &s, ctx).unwrap().family, Family::Ipv6);

        let s = settings("node: {addr: '192.0.2.5'}");
        let err = decide(&host.0, &s, ctx).unwrap_err().to_string();
        assert!(
            err.contains("IPv6") && err.contains("IPv4") && err.contains("node.addr"),
            "{err}"
        );

        let v4only = Host::new().link(2, "eth0", true).addr(2, "192.0.2.5", 0);
        let err = decide(&v4only.0, &settings(""), ctx)
            .unwrap_err()
            .to_string();
        assert!(err.contains("usable IPv6"), "{err}");
    }

    #[test]
    fn internal_address_is_sticky_and_renumbers_when_it_goes() {
        let host = Host::new().link(2, "eth0", true).addr(2, "2001:db8::9", 0);
        let s = settings("");
        let first = decide(&host.0, &s, Context::default()).unwrap();
        assert_eq!(first.internal_addr, ip("2001:db8::9"));

        // A better-sorting address appears: the chosen one is kept.
        let host = host.addr(2, "2001:db8::1", 0);
        let ctx = Context {
            cluster_family: None,
            previous: Some(&first),
        };
        assert_eq!(
            decide(&host.0, &s, ctx).unwrap().internal_addr,
            ip("2001:db8::9")
        );
        // Without history the better one would win.
        assert_eq!(
            decide(&host.0, &s, Context::default())
                .unwrap()
                .internal_addr,
            ip("2001:db8::1")
        );

        // The chosen one goes away: renumber to the next best of the same family.
        let mut gone = host.0.clone();
        gone.apply(HostEvent::AddressRemoved((2, ip("2001:db8::9"), 64)));
        assert_eq!(
            decide(&gone, &s, ctx).unwrap().internal_addr,
            ip("2001:db8::1")
        );

        // Sticky also across a deprecation, as long as it stays usable.
        let host = Host::new()
            .link(2, "eth0", true)
            .addr(2, "2001:db8::9", DEPRECATED)
            .addr(2, "2001:db8::1", 0);
        assert_eq!(
            decide(&host.0, &s, ctx).unwrap().internal_addr,
            ip("2001:db8::9")
        );
    }

    #[test]
    fn automatic_family_is_sticky_while_running() {
        let v6 = Host::new().link(2, "eth0", true).addr(2, "2001:db8::5", 0);
        let s = settings("");
        let first = decide(&v6.0, &s, Context::default()).unwrap();
        assert_eq!(first.family, Family::Ipv6);
        let dual = v6.addr(2, "192.0.2.5", 0);
        let ctx = Context {
            cluster_family: None,
            previous: Some(&first),
        };
        assert_eq!(decide(&dual.0, &s, ctx).unwrap().family, Family::Ipv6);
        assert_eq!(
            decide(&dual.0, &s, Context::default()).unwrap().family,
            Family::Ipv4
        );
    }

    #[test]
    fn pinned_address_that_goes_away_is_not_ready_not_renumbered() {
        let host = Host::new().link(2, "eth0", true).addr(2, "2001:db8::1", 0);
        let err = run(&host, "node: {addr: '2001:db8::9'}").unwrap_err();
        assert!(matches!(err, NotReady::PinnedNotUsable { .. }), "{err:?}");
        let host = Host::new().link(2, "eth0", false).addr(2, "2001:db8::9", 0);
        let err = run(&host, "node: {addr: '2001:db8::9'}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("down"), "{err}");
    }

    #[test]
    fn external_addresses() {
        let host = Host::new()
            .link(2, "eth0", true)
            .addr(2, "2001:db8::5", 0)
            .addr(2, "2001:db8::6", TEMPORARY)
            .addr(2, "2001:db8::7", DEPRECATED)
            .link(3, "eth1", true)
            .addr(3, "203.0.113.5", 0)
            .addr(3, "fe80::5", 0);
        let id = run(&host, "node: {use_internal_ipv6: true}").unwrap();
        assert_eq!(id.external_addrs, vec![ip("203.0.113.5")]);

        let only = Host::new().link(2, "eth0", true).addr(2, "2001:db8::5", 0);
        assert_eq!(
            run(&only, "").unwrap().external_addrs,
            vec![ip("2001:db8::5")]
        );

        // Configured externals may be unbound here (an elastic IP).
        let id = run(
            &only,
            "node: {external_addr: ['198.51.100.200', '2001:db8:ff::1']}",
        )
        .unwrap();
        assert_eq!(
            id.external_addrs,
            vec![ip("198.51.100.200"), ip("2001:db8:ff::1")]
        );
    }

    #[test]
    fn listen_versus_advertise() {
        let host = Host::new().link(2, "eth0", true).addr(2, "2001:db8::5", 0);
        let id = run(&host, "").unwrap();
        assert_eq!(id.grpc.listen.to_string(), "[::]:9095");
        assert_eq!(id.grpc.advertise.to_string(), "[2001:db8::5]:9095");
        assert_eq!(id.http.listen.to_string(), "[::]:3200");
        assert_eq!(id.gossip.listen.to_string(), "[::]:7946");
        assert_eq!(id.gossip.advertise.to_string(), "[2001:db8::5]:7946");

        // Behind a sidecar proxy: advertised port is the proxy's, listening stays local.
        let id = run(
            &host,
            "server: {grpc_listen_address: '::1', grpc_listen_port: 9095}\n\
             lifecycler: {port: 19095}\nmemberlist: {advertise_port: 17946, advertise_addr: '2001:db8::99'}",
        )
        .unwrap();
        assert_eq!(id.grpc.listen.to_string(), "[::1]:9095");
        assert_eq!(id.grpc.advertise.to_string(), "[2001:db8::5]:19095");
        assert_eq!(id.gossip.advertise.to_string(), "[2001:db8::99]:17946");

        // SPEC §3 (amended): an empty listen address is a dual-stack `[::]` whatever the internal
        // family (the HTTP API must answer at IPv6 external addresses of an IPv4-internal node);
        // gossip keeps the internal family's unspecified address.
        let v4 = Host::new().link(2, "eth0", true).addr(2, "192.0.2.5", 0);
        let id = run(&v4, "lifecycler: {address: '198.51.100.1'}").unwrap();
        assert_eq!(id.grpc.listen.to_string(), "[::]:9095");
        assert_eq!(id.http.listen.to_string(), "[::]:3200");
        assert_eq!(id.gossip.listen.to_string(), "0.0.0.0:7946");
        assert_eq!(id.grpc.advertise.to_string(), "198.51.100.1:9095");
        // The kernel has IPv6 off: `0.0.0.0`.
        let mut no_v6 = Host::new().link(2, "eth0", true).addr(2, "192.0.2.5", 0);
        no_v6.0.ipv6_disabled = true;
        let id = run(&no_v6, "").unwrap();
        assert_eq!(id.grpc.listen.to_string(), "0.0.0.0:9095");
        assert_eq!(id.http.listen.to_string(), "0.0.0.0:3200");
        // Explicit listen addresses are kept as written.
        let id = run(&v4, "server: {http_listen_address: '192.0.2.5'}").unwrap();
        assert_eq!(id.http.listen.to_string(), "192.0.2.5:3200");
        assert_eq!(id.grpc.listen.to_string(), "[::]:9095");
    }

    /// SPEC §1/§2 (amended): site-local (fec0::/10, RFC 3879) is usable as a last resort, below
    /// every global and ULA address, and yields to one as soon as one is usable.
    #[test]
    fn site_local_is_a_last_resort() {
        // QEMU's plain `-netdev user,ipv6=on`: fec0::/64 with scope site, nothing else.
        let qemu = Host::new().link(2, "eth0", true).addr_scoped(
            2,
            "fec0::5054:ff:fe12:3456",
            0,
            Scope::Site,
        );
        let id = run(&qemu, "").unwrap();
        assert_eq!(id.family, Family::Ipv6);
        assert_eq!(id.internal_addr, ip("fec0::5054:ff:fe12:3456"));

        // A ULA or global address wins over it, even on another link and with a higher name.
        let both = Host::new()
            .link(2, "eth0", true)
            .addr_scoped(2, "fec0::5", 0, Scope::Site)
            .link(3, "eth9", true)
            .addr(3, "fd00:1::5", 0);
        let id = run(&both, "").unwrap();
        assert_eq!(id.internal_addr, ip("fd00:1::5"));

        // Sticky only while it is the only choice: a ULA that appears later takes over.
        let first = run(&qemu, "").unwrap();
        let later = Host::new()
            .link(2, "eth0", true)
            .addr_scoped(2, "fec0::5054:ff:fe12:3456", 0, Scope::Site)
            .addr(2, "fd00:5a::5", 0);
        let ctx = Context {
            cluster_family: None,
            previous: Some(&first),
        };
        let id = decide(&later.0, &settings(""), ctx).unwrap();
        assert_eq!(id.internal_addr, ip("fd00:5a::5"));

        // Other non-global scopes stay unusable; a site-scoped IPv4 address too.
        let odd = Host::new()
            .link(2, "eth0", true)
            .addr_scoped(2, "2001:db8::5", 0, Scope::Site)
            .addr_scoped(2, "192.0.2.5", 0, Scope::Site);
        assert!(run(&odd, "").is_err());
    }

    #[test]
    fn report_explains_each_address() {
        let host = Host::new()
            .link(2, "eth0", true)
            .addr(2, "2001:db8::5", TENTATIVE);
        let report = address_report(&host.0, &settings(""));
        let tentative = report
            .iter()
            .find(|r| r.address == ip("2001:db8::5"))
            .unwrap();
        assert!(!tentative.usable);
        assert!(tentative.flags.contains(&"tentative"));
        let lo = report.iter().find(|r| r.address == ip("::1")).unwrap();
        assert_eq!(lo.reason.as_deref(), Some("on a loopback interface"));
    }
}
