//! Our own view of the host's interfaces: links, addresses, default routes.
//!
//! Netlink messages are converted into these types once (in `netlink.rs`); everything else — the
//! decision, preflight, rendering, tests — sees only these. Tests build snapshots by hand.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

/// The address family of the cluster's internal traffic.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub(crate) fn of(ip: &IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }

    /// `0.0.0.0` or `::`.
    pub(crate) fn unspecified(self) -> IpAddr {
        match self {
            Family::Ipv4 => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            Family::Ipv6 => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }

    /// The inverse of [`Family::as_str`]; anything else is not a family (never a silent IPv4).
    pub(crate) fn parse(text: &str) -> Option<Family> {
        match text {
            "ipv4" => Some(Family::Ipv4),
            "ipv6" => Some(Family::Ipv6),
            _ => None,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::Ipv4 => "IPv4",
            Family::Ipv6 => "IPv6",
        })
    }
}

/// RFC 2863 operational state, as the kernel reports it (IFLA_OPERSTATE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OperState {
    Unknown,
    NotPresent,
    Down,
    LowerLayerDown,
    Testing,
    Dormant,
    Up,
}

impl OperState {
    /// Up, or unknown (what loopback-like and some virtual links report while working).
    pub(crate) fn is_running(self) -> bool {
        matches!(self, OperState::Up | OperState::Unknown)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Link {
    pub(crate) index: u32,
    pub(crate) name: String,
    /// IFLA_INFO_KIND (`veth`, `bridge`, …); `None` for physical NICs and loopback.
    pub(crate) kind: Option<String>,
    pub(crate) admin_up: bool,
    pub(crate) oper: OperState,
    pub(crate) loopback: bool,
}

impl Link {
    /// Admin-up, oper up/unknown, not loopback: addresses on it can carry traffic.
    pub(crate) fn is_active(&self) -> bool {
        self.admin_up && self.oper.is_running() && !self.loopback
    }
}

/// Address scope (IFA scope byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Scope {
    Global,
    Site,
    Link,
    Host,
    Nowhere,
    Other(u8),
}

impl Scope {
    pub(crate) fn from_raw(raw: u8) -> Scope {
        match raw {
            0 => Scope::Global,
            200 => Scope::Site,
            253 => Scope::Link,
            254 => Scope::Host,
            255 => Scope::Nowhere,
            n => Scope::Other(n),
        }
    }
}

/// The kernel's 32-bit IFA_F_* address flags (IFA_FLAGS attribute), kept whole.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub(crate) struct AddrFlags(pub u32);

impl AddrFlags {
    /// IFA_F_SECONDARY on IPv4; on IPv6 the same bit is IFA_F_TEMPORARY (RFC 4941).
    pub(crate) const SECONDARY: u32 = 0x01;
    pub(crate) const NODAD: u32 = 0x02;
    pub(crate) const OPTIMISTIC: u32 = 0x04;
    pub(crate) const DADFAILED: u32 = 0x08;
    pub(crate) const HOMEADDRESS: u32 = 0x10;
    pub(crate) const DEPRECATED: u32 = 0x20;
    pub(crate) const TENTATIVE: u32 = 0x40;
    pub(crate) const PERMANENT: u32 = 0x80;
    pub(crate) const MANAGETEMPADDR: u32 = 0x100;
    pub(crate) const NOPREFIXROUTE: u32 = 0x200;
    pub(crate) const MCAUTOJOIN: u32 = 0x400;
    pub(crate) const STABLE_PRIVACY: u32 = 0x800;

    const NAMES: [(u32, &'static str); 12] = [
        (Self::SECONDARY, "secondary"),
        (Self::NODAD, "nodad"),
        (Self::OPTIMISTIC, "optimistic"),
        (Self::DADFAILED, "dadfailed"),
        (Self::HOMEADDRESS, "homeaddress"),
        (Self::DEPRECATED, "deprecated"),
        (Self::TENTATIVE, "tentative"),
        (Self::PERMANENT, "permanent"),
        (Self::MANAGETEMPADDR, "mngtmpaddr"),
        (Self::NOPREFIXROUTE, "noprefixroute"),
        (Self::MCAUTOJOIN, "autojoin"),
        (Self::STABLE_PRIVACY, "stable-privacy"),
    ];

    pub(crate) fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }

    /// Flag names as `ip addr` prints them; on IPv6 the 0x01 bit reads "temporary".
    pub(crate) fn names(self, family: Family) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = Self::NAMES
            .iter()
            .filter(|(bit, _)| self.has(*bit))
            .map(|(bit, name)| {
                if *bit == Self::SECONDARY && family == Family::Ipv6 {
                    "temporary"
                } else {
                    name
                }
            })
            .collect();
        if !self.has(Self::PERMANENT) {
            names.push("dynamic");
        }
        names
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Address {
    pub(crate) link_index: u32,
    pub(crate) ip: IpAddr,
    pub(crate) prefix_len: u8,
    pub(crate) scope: Scope,
    #[serde(with = "flags_serde")]
    pub(crate) flags: AddrFlags,
}

impl Address {
    pub(crate) fn family(&self) -> Family {
        Family::of(&self.ip)
    }
    pub(crate) fn tentative(&self) -> bool {
        self.flags.has(AddrFlags::TENTATIVE)
    }
    pub(crate) fn dad_failed(&self) -> bool {
        self.flags.has(AddrFlags::DADFAILED)
    }
    pub(crate) fn deprecated(&self) -> bool {
        self.flags.has(AddrFlags::DEPRECATED)
    }
    /// RFC 4941 temporary address. The bit means "secondary" on IPv4, which is no reason to avoid it.
    pub(crate) fn temporary(&self) -> bool {
        self.family() == Family::Ipv6 && self.flags.has(AddrFlags::SECONDARY)
    }
    /// The identity of an address in the kernel: updates (DAD done, lifetimes) re-send the same key.
    pub(crate) fn key(&self) -> AddrKey {
        (self.link_index, self.ip, self.prefix_len)
    }
}

pub(crate) type AddrKey = (u32, IpAddr, u8);

/// Flags serialize as a list of names (readable JSON fixtures and `inspect --json`) plus the raw value.
mod flags_serde {
    use super::AddrFlags;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(flags: &AddrFlags, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(flags.0)
    }
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<AddrFlags, D::Error> {
        Ok(AddrFlags(u32::deserialize(d)?))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DefaultRoute {
    pub(crate) family: Family,
    pub(crate) link_index: u32,
    pub(crate) gateway: Option<IpAddr>,
    pub(crate) metric: u32,
}

/// Everything the decision needs to know about the host, at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HostSnapshot {
    pub(crate) links: BTreeMap<u32, Link>,
    pub(crate) addresses: BTreeMap<AddrKey, Address>,
    /// Keyed by (family, output link, metric) so two default routes of one family both show.
    pub(crate) default_routes: BTreeMap<(Family, u32, u32), DefaultRoute>,
    /// The kernel has IPv6 off (`net.ipv6.conf.all.disable_ipv6=1`, or `ipv6.disable=1`): empty
    /// listen addresses then bind `0.0.0.0` instead of a dual-stack `[::]`.
    pub(crate) ipv6_disabled: bool,
}

/// One change reported by the kernel, already converted to our types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostEvent {
    LinkChanged(Link),
    LinkRemoved(u32),
    AddressChanged(Address),
    AddressRemoved(AddrKey),
    DefaultRouteAdded(DefaultRoute),
    DefaultRouteRemoved(DefaultRoute),
}

impl HostSnapshot {
    pub(crate) fn link(&self, index: u32) -> Option<&Link> {
        self.links.get(&index)
    }

    /// The output link of the family's default route with the lowest metric.
    pub(crate) fn default_route_link(&self, family: Family) -> Option<u32> {
        self.default_routes
            .values()
            .filter(|r| r.family == family)
            .min_by_key(|r| (r.metric, r.link_index))
            .map(|r| r.link_index)
    }

    /// Applies one kernel event; returns whether anything changed.
    pub(crate) fn apply(&mut self, event: HostEvent) -> bool {
        match event {
            HostEvent::LinkChanged(link) => {
                let changed = self.links.get(&link.index) != Some(&link);
                self.links.insert(link.index, link);
                changed
            }
            HostEvent::LinkRemoved(index) => {
                // The kernel removes a link's addresses and routes with it, without always
                // sending a message for each: drop them here too.
                self.addresses.retain(|(link, _, _), _| *link != index);
                self.default_routes.retain(|(_, link, _), _| *link != index);
                self.links.remove(&index).is_some()
            }
            HostEvent::AddressChanged(addr) => {
                let key = addr.key();
                self.addresses.insert(key, addr.clone()) != Some(addr)
            }
            HostEvent::AddressRemoved(key) => self.addresses.remove(&key).is_some(),
            HostEvent::DefaultRouteAdded(route) => {
                let key = (route.family, route.link_index, route.metric);
                self.default_routes.insert(key, route.clone()) != Some(route)
            }
            HostEvent::DefaultRouteRemoved(route) => self
                .default_routes
                .remove(&(route.family, route.link_index, route.metric))
                .is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_names_read_temporary_only_on_ipv6() {
        let flags = AddrFlags(AddrFlags::SECONDARY | AddrFlags::PERMANENT);
        assert_eq!(flags.names(Family::Ipv6), vec!["temporary", "permanent"]);
        assert_eq!(flags.names(Family::Ipv4), vec!["secondary", "permanent"]);
        assert_eq!(
            AddrFlags(AddrFlags::TENTATIVE).names(Family::Ipv6),
            vec!["tentative", "dynamic"]
        );
    }

    #[test]
    fn removing_a_link_drops_its_addresses_and_routes() {
        let mut snap = HostSnapshot::default();
        snap.apply(HostEvent::LinkChanged(Link {
            index: 2,
            name: "e0".into(),
            kind: Some("veth".into()),
            admin_up: true,
            oper: OperState::Up,
            loopback: false,
        }));
        snap.apply(HostEvent::AddressChanged(Address {
            link_index: 2,
            ip: "2001:db8::1".parse().unwrap(),
            prefix_len: 64,
            scope: Scope::Global,
            flags: AddrFlags(AddrFlags::PERMANENT),
        }));
        snap.apply(HostEvent::DefaultRouteAdded(DefaultRoute {
            family: Family::Ipv6,
            link_index: 2,
            gateway: None,
            metric: 1024,
        }));
        assert_eq!(snap.default_route_link(Family::Ipv6), Some(2));
        assert!(snap.apply(HostEvent::LinkRemoved(2)));
        assert!(snap.addresses.is_empty());
        assert!(snap.default_routes.is_empty());
    }

    #[test]
    fn an_identical_address_update_is_no_change() {
        let mut snap = HostSnapshot::default();
        let addr = Address {
            link_index: 2,
            ip: "192.0.2.10".parse().unwrap(),
            prefix_len: 24,
            scope: Scope::Global,
            flags: AddrFlags(AddrFlags::PERMANENT),
        };
        assert!(snap.apply(HostEvent::AddressChanged(addr.clone())));
        assert!(!snap.apply(HostEvent::AddressChanged(addr.clone())));
        let mut deprecated = addr;
        deprecated.flags = AddrFlags(AddrFlags::PERMANENT | AddrFlags::DEPRECATED);
        assert!(snap.apply(HostEvent::AddressChanged(deprecated)));
    }
}
