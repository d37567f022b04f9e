//! Addresses and names, each with its one validator: what an address may be used for (its role),
//! how operator text becomes an address, node and cluster names, interface names. The config, the
//! bootstrap request, the admin API, the CLI and `decide` all ask here.

use std::net::IpAddr;

/// What an address is for; each role refuses different kinds of address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrRole {
    /// Something we bind to: any address, including `::` and `0.0.0.0`.
    Listen,
    /// A host address that could carry cluster traffic (`decide`): never unspecified, loopback,
    /// multicast, link-local or IPv4-mapped.
    Usable,
    /// Something peers dial: the same refusals as [`AddrRole::Usable`].
    Advertised,
    /// Client-facing, possibly not bound here (an elastic IP): never unspecified, loopback,
    /// multicast, link-local or IPv4-mapped.
    External,
}

/// The kinds of address no role but `Listen` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Special {
    Unspecified,
    Loopback,
    Multicast,
    LinkLocal,
    Ipv4Mapped,
}

fn special(ip: &IpAddr) -> Option<Special> {
    if ip.is_unspecified() {
        Some(Special::Unspecified)
    } else if ip.is_loopback() {
        Some(Special::Loopback)
    } else if ip.is_multicast() {
        Some(Special::Multicast)
    } else if is_link_local(ip) {
        Some(Special::LinkLocal)
    } else if matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some()) {
        Some(Special::Ipv4Mapped)
    } else {
        None
    }
}

/// Why `ip` cannot serve in `role`, if it cannot: the one address-role check.
pub(crate) fn refusal(role: AddrRole, ip: &IpAddr) -> Option<&'static str> {
    use Special::*;
    let kind = special(ip)?;
    Some(match (role, kind) {
        (AddrRole::Listen, _) => return None,
        (AddrRole::Usable, Unspecified) => "unspecified address",
        (AddrRole::Usable, Loopback) => "loopback address",
        (AddrRole::Usable, Multicast) => "multicast address",
        (AddrRole::Usable, LinkLocal) => "link-local address",
        (AddrRole::Usable, Ipv4Mapped) => "IPv4-mapped address",
        (AddrRole::Advertised, Unspecified) => "is the unspecified address: peers cannot dial it",
        (AddrRole::Advertised, Loopback) => "is a loopback address: peers would dial themselves",
        (AddrRole::Advertised, Multicast) => "is a multicast address",
        (AddrRole::Advertised, LinkLocal) => {
            "is link-local: it needs an interface to be dialled and is not routed"
        }
        (AddrRole::External, Unspecified | Loopback | Multicast) => {
            "cannot be reached by clients (unspecified, loopback or multicast)"
        }
        (AddrRole::External, LinkLocal) => {
            "is link-local: clients cannot reach it without naming an interface, and it is not routed"
        }
        (AddrRole::Advertised | AddrRole::External, Ipv4Mapped) => "is an IPv4-mapped IPv6 address",
    })
}

pub(crate) fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// What is wrong with an address as written, and how to write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrProblem {
    pub problem: String,
    pub fix: String,
}

/// What the parser knows of the host's addresses when it suggests one in a fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostAddrs<'a> {
    /// Not known: the text is about another node (a request body), or the host was not read.
    Unknown,
    /// This host's usable addresses (`core::decide::usable_addrs`), possibly none.
    Known(&'a [IpAddr]),
}

/// Operator text → an address fit for `role`: the one parser of addresses (config keys, bootstrap
/// bodies, admin requests). The text is trimmed; an empty text is for the caller to handle.
pub fn parse_address(text: &str, role: AddrRole) -> Result<IpAddr, AddrProblem> {
    parse_address_on(text, role, HostAddrs::Unknown)
}

/// [`parse_address`] for text about this host: a network written where an address belongs gets
/// one of `host`'s addresses as its fix (one in that network, else one of its family), never an
/// address computed from the network, which the host may not have.
pub(crate) fn parse_address_on(
    text: &str,
    role: AddrRole,
    host: HostAddrs<'_>,
) -> Result<IpAddr, AddrProblem> {
    let problem = |problem: &str, fix: String| AddrProblem {
        problem: problem.to_string(),
        fix,
    };
    let text = text.trim();
    if let Some(network) = Network::parse(text) {
        return Err(problem(
            "is a network (CIDR), not an address",
            network.fix(role, host),
        ));
    }
    let ip: IpAddr = text.parse().map_err(|_| {
        let fix = if text.contains('/') {
            "write one address alone, without a prefix length"
        } else if text.starts_with('[') || text.contains("]:") || text.matches(':').count() == 1 {
            "write the address alone, without brackets or a port (ports have their own keys)"
        } else {
            "write an IPv4 address like 192.0.2.10 or an IPv6 address like 2001:db8::10"
        };
        problem("is not an IP address", fix.to_string())
    })?;
    if let IpAddr::V6(v6) = ip {
        if let Some(v4) = v6.to_ipv4_mapped() {
            return Err(problem(
                "is an IPv4-mapped IPv6 address",
                format!("write the IPv4 address '{v4}' itself"),
            ));
        }
    }
    if let Some(why) = refusal(role, &ip) {
        let fix = match role {
            AddrRole::Advertised => {
                "leave it empty to advertise the chosen internal address, or write a routable \
                 unicast address of this node (or of its proxy)"
            }
            _ => "write a unicast address clients can reach",
        };
        return Err(problem(why, fix.to_string()));
    }
    Ok(ip)
}

/// A network as operators write one where an address belongs (`2001:db8::5/64`, what `ip addr`
/// prints): the address as written and its prefix. An IPv4-mapped network (`::ffff:192.0.2.0/120`)
/// is the IPv4 network it maps; a zone (`fe80::1%eth0/64`) is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Network {
    written: IpAddr,
    prefix_len: u8,
}

impl Network {
    /// `None` unless the text is an address, a `/` and a prefix length that fits the family:
    /// anything else is not an IP address, and is not called a network.
    fn parse(text: &str) -> Option<Network> {
        let (addr, len) = text.split_once('/')?;
        let addr = addr.trim();
        let addr = addr.split_once('%').map_or(addr, |(bare, _zone)| bare);
        let written: IpAddr = addr.parse().ok()?;
        let len = len.trim();
        if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let prefix_len: u8 = len.parse().ok()?;
        let network = match written {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if prefix_len >= 96 => Network {
                    written: IpAddr::V4(v4),
                    prefix_len: prefix_len - 96,
                },
                _ => Network {
                    written,
                    prefix_len,
                },
            },
            IpAddr::V4(_) => Network {
                written,
                prefix_len,
            },
        };
        (network.prefix_len <= network.bits()).then_some(network)
    }

    fn bits(&self) -> u8 {
        if self.written.is_ipv4() {
            32
        } else {
            128
        }
    }

    fn host_bits(&self) -> u32 {
        u32::from(self.bits() - self.prefix_len)
    }

    /// The network part of `ip`, if it is of the network's family.
    fn network_part(&self, ip: &IpAddr) -> Option<u128> {
        (ip.is_ipv4() == self.written.is_ipv4())
            .then(|| value(ip).checked_shr(self.host_bits()).unwrap_or(0))
    }

    fn contains(&self, ip: &IpAddr) -> bool {
        self.network_part(ip).is_some() && self.network_part(ip) == self.network_part(&self.written)
    }

    /// Whether the address as written is the network's own (`2001:db8::/64`), which no host holds.
    fn written_is_network_address(&self) -> bool {
        let low = 1u128
            .checked_shl(self.host_bits())
            .map_or(u128::MAX, |bit| bit - 1);
        self.host_bits() > 0 && value(&self.written) & low == 0
    }

    /// The network, as `2001:db8::/64`.
    fn show(&self) -> String {
        let base = self
            .network_part(&self.written)
            .and_then(|n| n.checked_shl(self.host_bits()))
            .unwrap_or(0);
        let base = match self.written {
            IpAddr::V4(_) => IpAddr::V4((base as u32).into()),
            IpAddr::V6(_) => IpAddr::V6(base.into()),
        };
        format!("{base}/{}", self.prefix_len)
    }

    fn family(&self) -> &'static str {
        if self.written.is_ipv4() {
            "IPv4"
        } else {
            "IPv6"
        }
    }

    /// The fix: the address alone, one the host has. Without the host's addresses: the address
    /// as written unless it is the network's own (`192.0.2.7/24`, as `ip addr` prints it), and
    /// never one computed from the network.
    fn fix(&self, role: AddrRole, host: HostAddrs<'_>) -> String {
        const LIST: &str = "`stackring inspect` lists the addresses of the host and why each \
                            is or is not usable";
        let fits = |ip: &&IpAddr| refusal(role, ip).is_none() && special(ip).is_none();
        let host = match host {
            HostAddrs::Known(addrs) => addrs,
            HostAddrs::Unknown => {
                return match Some(&self.written).filter(fits) {
                    Some(ip) if !self.written_is_network_address() => {
                        format!("write the address alone, without the prefix length: '{ip}'")
                    }
                    _ => format!(
                        "write one address of {} alone, without the prefix length; on the \
                         node, {LIST}",
                        self.show()
                    ),
                };
            }
        };
        let usable: Vec<&IpAddr> = host.iter().filter(fits).collect();
        let inside = usable
            .iter()
            .find(|ip| ***ip == self.written)
            .or_else(|| usable.iter().find(|ip| self.contains(ip)));
        if let Some(ip) = inside {
            return format!(
                "write the address this host has in {} alone, without the prefix length: '{ip}'",
                self.show()
            );
        }
        let same_family = usable
            .iter()
            .find(|ip| ip.is_ipv4() == self.written.is_ipv4());
        match same_family {
            Some(ip) => format!(
                "no address of this host is in {}; write one it has, without the prefix length, e.g. '{ip}'",
                self.show()
            ),
            None => format!(
                "this host has no usable {} address; write one alone, without the prefix \
                 length, once the host has it ({LIST})",
                self.family()
            ),
        }
    }
}

fn value(ip: &IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(*a)),
        IpAddr::V6(a) => u128::from(*a),
    }
}

/// The rule [`valid_name`] checks, in words, for error messages.
pub(crate) const NAME_RULE: &str = "use 1–63 characters from A–Z, a–z, 0–9, '-', '_' and '.'";

/// Cluster and node names: what fits in a DNS label and a ring id.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each role refuses what the SPEC says it must (§1 usable addresses, §3 advertised, §4
    /// external), and nothing else.
    #[test]
    fn roles_refuse_the_special_addresses() {
        let refused = |role, text: &str| refusal(role, &text.parse().unwrap()).is_some();
        for text in [
            "::",
            "0.0.0.0",
            "::1",
            "127.0.0.1",
            "ff02::1",
            "224.0.0.1",
            "fe80::1",
            "169.254.1.1",
            "::ffff:192.0.2.1",
        ] {
            assert!(!refused(AddrRole::Listen, text), "{text} listen");
            assert!(refused(AddrRole::Usable, text), "{text} usable");
            assert!(refused(AddrRole::Advertised, text), "{text} advertised");
            assert!(refused(AddrRole::External, text), "{text} external");
        }
        for text in ["2001:db8::1", "192.0.2.1", "fd00::1", "fec0::1", "10.0.0.1"] {
            for role in [
                AddrRole::Listen,
                AddrRole::Usable,
                AddrRole::Advertised,
                AddrRole::External,
            ] {
                assert!(!refused(role, text), "{text} {role:?}");
            }
        }
    }

    /// The mistakes operators make, each with a fix that is itself valid input.
    #[test]
    fn parse_names_the_mistake_and_a_fix_that_works() {
        for (text, problem, fix) in [
            // Without the host's addresses, none is made up from the network.
            ("2001:db8::/32", "CIDR", "stackring inspect"),
            ("192.0.2.0/24", "CIDR", "stackring inspect"),
            ("192.0.2.7/24", "CIDR", "'192.0.2.7'"),
            ("::1/128", "CIDR", "stackring inspect"),
            (
                "2001:db8::/x",
                "not an IP address",
                "without a prefix length",
            ),
            (
                "[2001:db8::1]:9095",
                "not an IP address",
                "without brackets or a port",
            ),
            (
                "192.0.2.1:9095",
                "not an IP address",
                "without brackets or a port",
            ),
            ("node-1", "not an IP address", "2001:db8::10"),
            ("::ffff:192.0.2.1", "IPv4-mapped", "'192.0.2.1'"),
        ] {
            let got = parse_address(text, AddrRole::External).unwrap_err();
            assert!(got.problem.contains(problem), "{text}: {got:?}");
            assert!(got.fix.contains(fix), "{text}: {got:?}");
        }
        // The suggested address is accepted.
        assert!(parse_address("192.0.2.7", AddrRole::External).is_ok());
        assert_eq!(
            parse_address(" 2001:db8::5 ", AddrRole::Advertised).unwrap(),
            "2001:db8::5".parse::<IpAddr>().unwrap()
        );
        let loopback = parse_address("::1", AddrRole::Advertised).unwrap_err();
        assert!(loopback.problem.contains("loopback"), "{loopback:?}");
        assert!(parse_address("::", AddrRole::Listen).is_ok());
    }

    #[test]
    fn names_fit_a_dns_label() {
        for ok in ["node1", "a", "n-1_2.x", &"a".repeat(63)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "node 1", "node/1", "nöde", "node:1", &"a".repeat(64)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
