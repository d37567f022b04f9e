//! Peer addresses as operators write them: `memberlist.join_members` entries (dskit's gossip
//! addresses) and `cluster.nodes` of a `join_cluster` request. One parser, typed values; pure.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// The host part of a peer address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PeerHost {
    Ip(IpAddr),
    /// A DNS name (plain, or written `dns+name` as in dskit).
    Name(String),
}

/// A peer as written: a host and an optional port (the caller's default applies without one).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerAddr {
    pub host: PeerHost,
    pub port: Option<u16>,
    /// Written with dskit's `dns+` prefix (resolved to A/AAAA records, like a plain name).
    pub dns_prefix: bool,
}

/// Why a text is not a peer address, and how to write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerProblem {
    pub problem: &'static str,
    pub fix: &'static str,
}

const FIX: &str =
    "write 'host', 'host:port', '2001:db8::5', '[2001:db8::5]:7946' or 'dns+host:port'";

fn problem(problem: &'static str) -> PeerProblem {
    PeerProblem { problem, fix: FIX }
}

impl PeerAddr {
    pub fn parse(text: &str) -> Result<PeerAddr, PeerProblem> {
        let t = text.trim();
        if t.is_empty() {
            return Err(problem("is empty"));
        }
        if t.contains(char::is_whitespace) {
            return Err(problem("contains whitespace"));
        }
        if t.contains('/') {
            return Err(problem("is a network (CIDR) or a URL, not a peer address"));
        }
        if t.starts_with("dnssrv+") || t.starts_with("dnssrvnoa+") {
            return Err(PeerProblem {
                problem: "is a DNS SRV lookup, which stackring does not resolve",
                fix: "list the peers, or use 'dns+host:port' (A/AAAA records)",
            });
        }
        let (dns_prefix, rest) = match t.strip_prefix("dns+") {
            Some(rest) => (true, rest),
            None => (false, t),
        };
        if let Ok(ip) = rest.parse::<IpAddr>() {
            return Ok(PeerAddr {
                host: PeerHost::Ip(ip),
                port: None,
                dns_prefix,
            });
        }
        if let Ok(sa) = rest.parse::<SocketAddr>() {
            return Ok(PeerAddr {
                host: PeerHost::Ip(sa.ip()),
                port: Some(port_or_problem(sa.port())?),
                dns_prefix,
            });
        }
        if let Some(bracketed) = rest.strip_prefix('[') {
            // `[2001:db8::5]:99999` or `[bad]:7946`.
            let Some((inside, after)) = bracketed.split_once(']') else {
                return Err(problem("has an unclosed '['"));
            };
            if inside.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(problem(
                    "has brackets around something that is not an IPv6 address",
                ));
            }
            let ip = IpAddr::V6(inside.parse().map_err(|_| problem("is not valid"))?);
            let port = match after {
                "" => None,
                _ => match after.strip_prefix(':') {
                    Some(port) => Some(port_or_problem(parse_port(port)?)?),
                    None => return Err(problem("has text after ']' that is not ':port'")),
                },
            };
            return Ok(PeerAddr {
                host: PeerHost::Ip(ip),
                port,
                dns_prefix,
            });
        }
        if rest.matches(':').count() > 1 {
            return Err(PeerProblem {
                problem: "is ambiguous: an IPv6 address with a port needs brackets",
                fix: "bracket the address: '[2001:db8::5]:7946'",
            });
        }
        let (name, port) = match rest.split_once(':') {
            Some((name, port)) => (name, Some(parse_port(port)?)),
            None => (rest, None),
        };
        if !valid_dns_name(name) {
            return Err(problem("is not an IP address or a DNS name"));
        }
        Ok(PeerAddr {
            host: PeerHost::Name(name.to_ascii_lowercase()),
            port,
            dns_prefix,
        })
    }

    /// `host:port` with the default port filled in, IPv6 bracketed (what a resolver takes).
    pub fn host_port(&self, default_port: u16) -> String {
        let port = self.port.unwrap_or(default_port);
        match &self.host {
            PeerHost::Ip(ip) => SocketAddr::new(*ip, port).to_string(),
            PeerHost::Name(name) => format!("{name}:{port}"),
        }
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.dns_prefix {
            write!(f, "dns+")?;
        }
        match (&self.host, self.port) {
            (PeerHost::Ip(ip), Some(port)) => write!(f, "{}", SocketAddr::new(*ip, port)),
            (PeerHost::Ip(ip), None) => write!(f, "{ip}"),
            (PeerHost::Name(name), Some(port)) => write!(f, "{name}:{port}"),
            (PeerHost::Name(name), None) => write!(f, "{name}"),
        }
    }
}

impl serde::Serialize for PeerAddr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

fn parse_port(text: &str) -> Result<u16, PeerProblem> {
    // Digits only: `str::parse` also takes a sign (`+6`), which then prints as another address.
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(problem("has a port that is not a number"));
    }
    match text.parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
        // Digits, but 0 or more than a port (or a u32) holds.
        _ => Err(PeerProblem {
            problem: "has a port out of range",
            fix: "use a port 1–65535 (the gossip port is memberlist.bind_port, 7946 by default)",
        }),
    }
}

fn port_or_problem(port: u16) -> Result<u16, PeerProblem> {
    if port == 0 {
        return Err(PeerProblem {
            problem: "has port 0",
            fix: "use a port 1–65535, or leave the port out for the default",
        });
    }
    Ok(port)
}

/// RFC 1123 host names (underscores allowed, as resolvers do for service names). The last label
/// is not all digits (RFC 3696 §2): `192.0.2.300` or `010.0.0.1` is a mistyped address, not a name.
fn valid_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && !name
            .rsplit('.')
            .next()
            .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_as_dskit_operators_write_them() {
        let ok: &[(&str, &str, Option<u16>)] = &[
            ("2001:db8::1", "2001:db8::1", None),
            ("[2001:db8::1]", "2001:db8::1", None),
            ("[2001:db8::1]:7946", "[2001:db8::1]:7946", Some(7946)),
            ("192.0.2.1", "192.0.2.1", None),
            ("192.0.2.1:7946", "192.0.2.1:7946", Some(7946)),
            ("tempo-gossip-ring", "tempo-gossip-ring", None),
            ("Node-B.example:7946", "node-b.example:7946", Some(7946)),
            (
                "dns+tempo-gossip-ring.trace.svc.cluster.local:7946",
                "dns+tempo-gossip-ring.trace.svc.cluster.local:7946",
                Some(7946),
            ),
        ];
        for (text, shown, port) in ok {
            let p = PeerAddr::parse(text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
            assert_eq!(p.to_string(), *shown, "{text}");
            assert_eq!(p.port, *port, "{text}");
        }
        let bad: &[(&str, &str)] = &[
            ("", "empty"),
            ("[2001:db8::1]:99999", "out of range"),
            ("192.0.2.1:99999", "out of range"),
            ("2001:db8::1:7946x", "ambiguous"),
            ("2001:DB8::/32", "CIDR"),
            ("host name", "whitespace"),
            ("dnssrv+_memberlist._tcp.example", "SRV"),
            ("[fe80::1", "unclosed"),
            ("[node]:7946", "not an IPv6"),
            ("-bad-:7946", "DNS name"),
            ("192.0.2.1:0", "port 0"),
            ("node:x", "not a number"),
            // Found by fuzz/ (peer_addr): `+6` was read as port 6, so the text named a host
            // `0.0.0.1` and printed as the address 0.0.0.1:6.
            ("dns+0.0.0.1:+6", "not a number"),
            ("node:+7946", "not a number"),
            ("node:", "not a number"),
            ("node:99999999999", "out of range"),
            ("192.0.2.300:7946", "not an IP address or a DNS name"),
            ("010.0.0.1", "not an IP address or a DNS name"),
            ("ring.42", "not an IP address or a DNS name"),
        ];
        for (text, needle) in bad {
            let e = PeerAddr::parse(text).expect_err(text);
            assert!(e.problem.contains(needle), "{text}: {e:?}");
        }
    }

    #[test]
    fn default_port_applies_only_without_one() {
        for (text, want) in [
            ("2001:db8::10", "[2001:db8::10]:9095"),
            ("[2001:db8::10]:19095", "[2001:db8::10]:19095"),
            ("192.0.2.1", "192.0.2.1:9095"),
            ("192.0.2.1:7000", "192.0.2.1:7000"),
            ("node-b", "node-b:9095"),
            ("node-b:7000", "node-b:7000"),
            ("dns+ring:17946", "ring:17946"),
        ] {
            assert_eq!(
                PeerAddr::parse(text).unwrap().host_port(9095),
                want,
                "{text}"
            );
        }
    }
}
