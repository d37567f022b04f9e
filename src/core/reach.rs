//! Reachability, pure: what one node found when it dialled each peer's *advertised* gRPC, HTTP and
//! gossip endpoints, how that travels in gossip (one compact line per source), the N×N matrix
//! every node can assemble, and a diagnosis in words of the failures operators cause.

use crate::core::members::MemberView;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// The services probed, in matrix order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Grpc,
    Http,
    Gossip,
}

impl Service {
    pub(crate) const ALL: [Service; 3] = [Service::Grpc, Service::Http, Service::Gossip];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Service::Grpc => "grpc",
            Service::Http => "http",
            Service::Gossip => "gossip",
        }
    }

    fn letter(self) -> char {
        match self {
            Service::Grpc => 'g',
            Service::Http => 'h',
            Service::Gossip => 'm',
        }
    }

    fn from_letter(c: char) -> Option<Service> {
        match c {
            'g' => Some(Service::Grpc),
            'h' => Some(Service::Http),
            'm' => Some(Service::Gossip),
            _ => None,
        }
    }
}

/// What a probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Connected and the service answered as it should (`SERVING`, `200`, a member's answer).
    Ok,
    /// Connection refused: nothing listens there.
    Refused,
    /// No answer in time: a firewall dropping, a dead host, a black-holed route.
    Timeout,
    /// Connected, but the answer was wrong (not SERVING, not 200, not a stackring member), or
    /// another error (no route, TLS).
    Error,
}

impl Outcome {
    fn letter(self) -> char {
        match self {
            Outcome::Ok => 'o',
            Outcome::Refused => 'r',
            Outcome::Timeout => 't',
            Outcome::Error => 'e',
        }
    }

    fn from_letter(c: char) -> Option<Outcome> {
        match c {
            'o' => Some(Outcome::Ok),
            'r' => Some(Outcome::Refused),
            't' => Some(Outcome::Timeout),
            'e' => Some(Outcome::Error),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Timeout => "timeout",
            Outcome::Error => "error",
        }
    }
}

/// One probe's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Probe {
    pub outcome: Outcome,
    /// Round trip in milliseconds (connect to answer), for `Ok`.
    pub rtt_ms: u32,
}

/// What one node found, per target node id and service. The key `*` marks the node's own
/// listen addresses probed locally (does the service itself answer?).
pub type Findings = BTreeMap<String, BTreeMap<Service, Probe>>;

/// The node id under which a node reports probing its own listen addresses.
pub(crate) const SELF: &str = "*";

/// Longest encoded line a node publishes (a flood of ghost members cannot grow it without bound).
const MAX_ENCODED: usize = 16 * 1024;

/// A round trip as published: rounded up to the next 1-2-5 step (0, 1, 2, 5, 10, 20, 50 … ms).
/// A steady network then publishes the same findings round after round, and an unchanged value
/// is not gossiped again (at 100 nodes, exact milliseconds changed every node's findings every
/// round: a stream of gossip for nothing an operator acts on). `/metrics` keeps the exact value.
pub(crate) fn rtt_step(ms: u32) -> u32 {
    let mut step: u32 = 1;
    loop {
        for m in [1, 2, 5] {
            let bound = step.saturating_mul(m);
            if ms <= bound || bound == u32::MAX {
                return if ms == 0 { 0 } else { bound };
            }
        }
        step = step.saturating_mul(10);
    }
}

/// `target:g=o20,h=o5,m=t;target2:…`: compact, so 100 peers fit one gossip value; round trips in
/// `rtt_step`s.
pub fn encode(findings: &Findings) -> String {
    let mut out = String::new();
    for (target, probes) in findings {
        let mut item = format!("{target}:");
        let cells: Vec<String> = probes
            .iter()
            .map(|(s, p)| {
                format!(
                    "{}={}{}",
                    s.letter(),
                    p.outcome.letter(),
                    rtt_step(p.rtt_ms)
                )
            })
            .collect();
        item.push_str(&cells.join(","));
        if out.len() + item.len() + 1 > MAX_ENCODED {
            break;
        }
        if !out.is_empty() {
            out.push(';');
        }
        out.push_str(&item);
    }
    out
}

/// Whether two encoded findings differ only in round trips: what an operator acts on (an
/// outcome, a target come or gone) did not change.
pub(crate) fn same_outcomes(a: &str, b: &str) -> bool {
    let outcomes = |text: &str| -> Vec<(String, Service, Outcome)> {
        decode(text)
            .into_iter()
            .flat_map(|(target, probes)| {
                probes
                    .into_iter()
                    .map(move |(s, p)| (target.clone(), s, p.outcome))
            })
            .collect()
    };
    outcomes(a) == outcomes(b)
}

/// The inverse of [`encode`]; malformed parts (anything can arrive over gossip) are skipped.
pub fn decode(text: &str) -> Findings {
    let mut out = Findings::new();
    for item in text.split(';').take(1024) {
        let Some((target, cells)) = item.split_once(':') else {
            continue;
        };
        if target != SELF && !crate::core::net::valid_name(target) {
            continue;
        }
        let mut probes = BTreeMap::new();
        for cell in cells.split(',') {
            let mut chars = cell.chars();
            let (Some(s), Some('='), Some(o)) = (chars.next(), chars.next(), chars.next()) else {
                continue;
            };
            let (Some(service), Some(outcome)) = (Service::from_letter(s), Outcome::from_letter(o))
            else {
                continue;
            };
            let Ok(rtt_ms) = chars.as_str().parse::<u32>() else {
                continue;
            };
            probes.insert(service, Probe { outcome, rtt_ms });
        }
        if !probes.is_empty() {
            out.insert(target.to_string(), probes);
        }
    }
    out
}

/// Every source's findings about every target, for the members listed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct Matrix {
    /// Member ids, sorted: rows (sources) and columns (targets).
    pub(crate) nodes: Vec<String>,
    /// source → its findings (only members' rows; a source without any yet has none).
    pub(crate) rows: BTreeMap<String, Findings>,
}

impl Matrix {
    pub(crate) fn new(members: &[MemberView]) -> Matrix {
        let mut nodes: Vec<String> = members.iter().map(|m| m.entry.id.clone()).collect();
        nodes.sort();
        let rows = members
            .iter()
            .map(|m| (m.entry.id.clone(), decode(&m.reach)))
            .collect();
        Matrix { nodes, rows }
    }

    pub(crate) fn get(&self, source: &str, target: &str, service: Service) -> Option<Probe> {
        self.rows.get(source)?.get(target)?.get(&service).copied()
    }

    /// `(source, target, service, probe)` for every failed probe between members.
    fn failures(&self) -> Vec<(&str, &str, Service, Probe)> {
        let mut out = vec![];
        for source in &self.nodes {
            for target in self.nodes.iter().filter(|t| *t != source) {
                for service in Service::ALL {
                    if let Some(p) = self.get(source, target, service) {
                        if p.outcome != Outcome::Ok {
                            out.push((source.as_str(), target.as_str(), service, p));
                        }
                    }
                }
            }
        }
        out
    }

    /// Whether every probe of `service` into `target` (by the others) failed, with at least one.
    fn nobody_reaches(&self, target: &str, service: Service) -> bool {
        let probes: Vec<Probe> = self
            .nodes
            .iter()
            .filter(|s| *s != target)
            .filter_map(|s| self.get(s, target, service))
            .collect();
        !probes.is_empty() && probes.iter().all(|p| p.outcome != Outcome::Ok)
    }

    /// Whether some other node reaches `target`'s `service`.
    fn somebody_reaches(&self, target: &str, service: Service) -> bool {
        self.nodes
            .iter()
            .filter(|s| *s != target)
            .filter_map(|s| self.get(s, target, service))
            .any(|p| p.outcome == Outcome::Ok)
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Service::Grpc => "gRPC",
            Service::Http => "HTTP",
            Service::Gossip => "gossip",
        })
    }
}

/// The failures in words, most specific first: a dead sidecar proxy, a firewall on one port, a
/// broken path between two nodes.
pub(crate) fn diagnose(matrix: &Matrix, members: &[MemberView]) -> Vec<String> {
    let mut out = vec![];
    let mut explained: Vec<(String, Service)> = vec![];
    for m in members {
        let id = &m.entry.id;
        let own = matrix.rows.get(id).and_then(|f| f.get(SELF));
        for service in Service::ALL {
            if !matrix.nobody_reaches(id, service) {
                continue;
            }
            let (advertised, listen) = match service {
                Service::Grpc => (&m.entry.advertised_grpc, Some(&m.entry.listen_grpc)),
                Service::Http => (&m.entry.advertised_http, None),
                Service::Gossip => (&m.entry.advertised_gossip, None),
            };
            let port = |a: &str| a.rsplit_once(':').map(|(_, p)| p.to_string());
            let proxied = listen.is_some_and(|l| port(l) != port(advertised));
            let answers_locally = own
                .and_then(|f| f.get(&service))
                .is_some_and(|p| p.outcome == Outcome::Ok);
            let others_ok: Vec<&str> = Service::ALL
                .into_iter()
                .filter(|s| *s != service && matrix.somebody_reaches(id, *s))
                .map(Service::as_str)
                .collect();
            let sentence = if proxied && answers_locally {
                format!(
                    "{id} advertises {service} {advertised} (a proxy port) and nobody can reach it, while its listen port {} answers locally: the sidecar proxy on {id} is down or not forwarding",
                    listen.and_then(|l| port(l)).unwrap_or_default()
                )
            } else if answers_locally && !others_ok.is_empty() {
                format!(
                    "{id} is reachable over {} but not {service} at {advertised}, which answers locally: a firewall on {id} or between the nodes?",
                    others_ok.join(" and ")
                )
            } else if !answers_locally && own.is_some() {
                format!(
                    "{id}'s {service} does not answer even locally (advertised {advertised}): the service on {id} is down"
                )
            } else {
                format!("nobody reaches {id}'s {service} at {advertised}")
            };
            out.push(sentence);
            explained.push((id.clone(), service));
        }
    }
    // What is left: one source that cannot reach what others can.
    for (source, target, service, probe) in matrix.failures() {
        if explained.iter().any(|(t, s)| t == target && *s == service) {
            continue;
        }
        out.push(format!(
            "{source} cannot reach {target}'s {service} ({}), though others can: a firewall or route between {source} and {target}",
            probe.outcome.as_str()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::members::{summary, Health, NodeEntry, NodeState};

    fn member(id: &str, grpc_listen: &str, grpc_advertised: &str, reach: &str) -> MemberView {
        MemberView {
            entry: NodeEntry {
                id: id.into(),
                hostname: id.into(),
                state: NodeState::Active,
                family: "ipv6".into(),
                addr: String::new(),
                external_addrs: vec![],
                advertised_grpc: grpc_advertised.into(),
                advertised_http: format!("[2001:db8::{id}]:3200"),
                advertised_gossip: format!("[2001:db8::{id}]:7946"),
                listen_grpc: grpc_listen.into(),
                zone: String::new(),
                registered_unix: 0,
                reason: String::new(),
                admin_version: 0,
                applied_ms: 0,
                version: String::new(),
                cert_expires_unix: 0,
            },
            status: Health::Ok,
            last_seen_ms_ago: 0,
            local: false,
            generation: 1,
            summary: summary(Health::Ok, NodeState::Active, "", 0),
            reach: reach.into(),
        }
    }

    #[test]
    fn findings_survive_the_wire_and_garbage_is_dropped() {
        let mut f = Findings::new();
        f.entry("node2".into()).or_default().insert(
            Service::Grpc,
            Probe {
                outcome: Outcome::Ok,
                rtt_ms: 20,
            },
        );
        f.entry(SELF.into()).or_default().insert(
            Service::Http,
            Probe {
                outcome: Outcome::Timeout,
                rtt_ms: 0,
            },
        );
        assert_eq!(decode(&encode(&f)), f);
        assert_eq!(encode(&f), "*:h=t0;node2:g=o20");
        assert!(same_outcomes("*:h=t0;node2:g=o20", "*:h=t0;node2:g=o5"));
        for other in [
            "*:h=t0;node2:g=r0",
            "*:h=t0",
            "*:h=t0;node2:g=o20;node3:g=o1",
        ] {
            assert!(!same_outcomes("*:h=t0;node2:g=o20", other), "{other}");
        }
        // Round trips in 1-2-5 steps: jitter within a step publishes nothing new.
        for (ms, step) in [
            (0, 0),
            (1, 1),
            (2, 2),
            (3, 5),
            (5, 5),
            (6, 10),
            (12, 20),
            (20, 20),
            (21, 50),
            (999, 1000),
            (1001, 2000),
            (u32::MAX, u32::MAX),
        ] {
            assert_eq!(rtt_step(ms), step, "{ms} ms");
        }
        for garbage in [
            "",
            ";;;",
            "x",
            "node2:",
            "node2:g=",
            "node2:q=o1",
            "node 2:g=o1",
            "n:g=o-1",
        ] {
            assert!(decode(garbage).is_empty(), "{garbage:?}");
        }
        // Bounded, whatever a flood of ghost members makes it.
        let mut huge = Findings::new();
        for i in 0..5000 {
            huge.entry(format!("ghost{i}")).or_default().insert(
                Service::Grpc,
                Probe {
                    outcome: Outcome::Refused,
                    rtt_ms: 1,
                },
            );
        }
        assert!(encode(&huge).len() <= MAX_ENCODED);
    }

    /// The cases, each a sentence an operator can act on.
    #[test]
    fn diagnoses_name_the_cause() {
        let ok = "g=o1,h=o1,m=o1";
        // node2 behind a proxy (listens 9095, advertises 19095) whose proxy is dead.
        let members = vec![
            member(
                "node1",
                "[::]:9095",
                "[2001:db8::1]:9095",
                &format!("*:{ok};node2:g=r0,h=o1,m=o1;node3:{ok}"),
            ),
            member(
                "node2",
                "[::]:9095",
                "[2001:db8::2]:19095",
                &format!("*:{ok};node1:{ok};node3:{ok}"),
            ),
            member(
                "node3",
                "[::]:9095",
                "[2001:db8::3]:9095",
                &format!("*:{ok};node1:{ok};node2:g=r0,h=o1,m=o1"),
            ),
        ];
        let d = diagnose(&Matrix::new(&members), &members);
        assert_eq!(d.len(), 1, "{d:#?}");
        assert!(
            d[0].contains("node2 advertises gRPC [2001:db8::2]:19095 (a proxy port)")
                && d[0].contains("listen port 9095 answers locally")
                && d[0].contains("sidecar proxy on node2"),
            "{d:#?}"
        );
        // node3's gRPC blocked by a firewall: gossip and HTTP fine, gRPC answers locally.
        let members = vec![
            member(
                "node1",
                "[::]:9095",
                "[2001:db8::1]:9095",
                &format!("*:{ok};node2:{ok};node3:g=t0,h=o1,m=o1"),
            ),
            member(
                "node2",
                "[::]:9095",
                "[2001:db8::2]:9095",
                &format!("*:{ok};node1:{ok};node3:g=t0,h=o1,m=o1"),
            ),
            member(
                "node3",
                "[::]:9095",
                "[2001:db8::3]:9095",
                &format!("*:{ok};node1:{ok};node2:{ok}"),
            ),
        ];
        let d = diagnose(&Matrix::new(&members), &members);
        assert_eq!(d.len(), 1, "{d:#?}");
        assert!(
            d[0].contains("node3 is reachable over http and gossip but not gRPC")
                && d[0].contains("firewall"),
            "{d:#?}"
        );
        // One path broken: node1 cannot reach node3's HTTP, node2 can.
        let members = vec![
            member(
                "node1",
                "[::]:9095",
                "[2001:db8::1]:9095",
                &format!("*:{ok};node2:{ok};node3:g=o1,h=t0,m=o1"),
            ),
            member(
                "node2",
                "[::]:9095",
                "[2001:db8::2]:9095",
                &format!("*:{ok};node1:{ok};node3:{ok}"),
            ),
            member(
                "node3",
                "[::]:9095",
                "[2001:db8::3]:9095",
                &format!("*:{ok};node1:{ok};node2:{ok}"),
            ),
        ];
        let d = diagnose(&Matrix::new(&members), &members);
        assert_eq!(
            d,
            vec!["node1 cannot reach node3's HTTP (timeout), though others can: a firewall or route between node1 and node3"]
        );
        // Everything fine: nothing to say.
        let members = vec![
            member(
                "node1",
                "[::]:9095",
                "[2001:db8::1]:9095",
                &format!("*:{ok};node2:{ok}"),
            ),
            member(
                "node2",
                "[::]:9095",
                "[2001:db8::2]:9095",
                &format!("*:{ok};node1:{ok}"),
            ),
        ];
        assert!(diagnose(&Matrix::new(&members), &members).is_empty());
    }
}
