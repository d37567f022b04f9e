//! `stackring check tempo|loki|mimir FILE`: a product's network block judged against this host and
//! the identity stackring decided for it.
//!
//! Pure: the YAML tree, the host snapshot, the decided identity and a [`Resolver`] go in; findings
//! with stable codes come out, each naming the key as the operator wrote it, its value and the fix.
//! Reading the file, resolving names and gathering the host happen in [`shim`]. The key names of
//! each product are in `core::products`. The codes:
//!
//! | code | severity | what |
//! |---|---|---|
//! | `advertised.unspecified` | error | `::`/`0.0.0.0` advertised (grafana/tempo#3981, #3984) |
//! | `advertised.loopback` | error | `127.0.0.1`/`::1`/`localhost` advertised (grafana/loki#5206) |
//! | `advertised.link_local` | error | `fe80::/10`, `169.254/16` advertised |
//! | `advertised.multicast` | error | a multicast address advertised |
//! | `advertised.wrong_family` | error | an advertised address of the other family |
//! | `advertised.differs` | warning | not the address stackring advertises for this node |
//! | `ring.inet6_missing` | error | IPv6 cluster, a written ring without its IPv6 flag (grafana/loki#13416) |
//! | `ring.inet6_unset` | warning | IPv6 cluster, a default ring left out of the file |
//! | `ring.inet6_on_ipv4` | error/warning | the IPv6 flag on in an IPv4 cluster (an error when the ring's interfaces hold IPv6: dskit then prefers it) |
//! | `interface.absent` | error/warning | an interface name that does not exist here (grafana/mimir#8325) |
//! | `interface.no_address` | error/warning | an interface with no usable address of the family |
//! | `memberlist.bind_wrong_family` | error | gossip bound to the other family only |
//! | `memberlist.bind_loopback` | error | gossip bound to loopback |
//! | `memberlist.bind_not_local` | warning | gossip bound to an address this host does not have |
//! | `memberlist.join_wrong_family` | error | a join member (resolving) only to the other family |
//! | `memberlist.join_mixed_family` | warning | a join name resolving to both families (grafana/dskit#185) |
//! | `memberlist.join_unresolved` | warning | a join name that does not resolve here |
//! | `port.proxy_bypassed` | error/warning | the ring advertises the listen port, stackring a proxy's (cortexproject/cortex#3642) |
//! | `port.no_proxy` | error/warning | the ring advertises another port, stackring the listen port |
//! | `port.advertised_mismatch` | error/warning | both differ from the listen port, and from each other |
//!
//! "error/warning": an error where the file writes the ring, a warning for a ring of the default
//! deployment that the file leaves out (or, for interfaces, where another listed one works).
//! | `listen.excludes_family` | error | a listen address that cannot accept the cluster's family |
//! | `listen.loopback` | error | a listen address on loopback |
//! | `listen.not_local` | warning | a listen address this host does not have |
//! | `value.invalid` | error | a value that is not what the key takes |
//! | `value.unchecked` | warning | a value left to the product (`${ENV}`, `dnssrv+`) |
//! | `identity.undecided` | warning | stackring has no identity yet: family checks skipped |

pub(crate) mod shim;
#[cfg(test)]
mod tests;

use crate::core::config::{interface_name_problem, show};
use crate::core::decide::{usability, usable_addrs, Identity};
use crate::core::net::{is_link_local, parse_address_on, refusal, AddrRole, HostAddrs};
use crate::core::peer::{PeerAddr, PeerHost};
pub(crate) use crate::core::preflight::Severity;
pub(crate) use crate::core::products::Product;
use crate::core::products::{Ring, Spec};
use crate::core::snapshot::{Address, Family, HostSnapshot};
use serde::Serialize;
use serde_json::Value;
use std::net::IpAddr;

/// One thing wrong (or worth a look) in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Finding {
    pub(crate) code: &'static str,
    pub(crate) severity: Severity,
    /// The key as the operator wrote it (`memberlist.join_members[1]`).
    pub(crate) key: String,
    /// The value as written (`'::'`), or `(not set)`.
    pub(crate) value: String,
    pub(crate) message: String,
    pub(crate) fix: String,
}

/// Name resolution, injected so that tests need no DNS.
pub(crate) trait Resolver {
    /// Every address a name has (A and AAAA), or why none.
    fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, String>;
}

impl<F: Fn(&str) -> Result<Vec<IpAddr>, String>> Resolver for F {
    fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        self(name)
    }
}

/// What the file is judged against.
pub(crate) struct Host<'a> {
    pub(crate) snapshot: &'a HostSnapshot,
    /// The identity stackring decided for this node, or why there is none yet.
    pub(crate) identity: Result<&'a Identity, String>,
}

impl Host<'_> {
    fn family(&self) -> Option<Family> {
        self.identity.as_ref().ok().map(|id| id.family)
    }
}

/// The YAML text as a tree: a mapping (an empty file is an empty one), or why not.
pub(crate) fn parse(text: &str) -> Result<Value, String> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    match serde_saphyr::from_str::<Value>(text) {
        Ok(tree @ Value::Object(_)) => Ok(tree),
        Ok(Value::Null) => Ok(Value::Object(Default::default())),
        Ok(_) => Err("is not a YAML mapping of sections (server:, memberlist:, …)".into()),
        Err(e) => Err(format!("is not valid YAML: {e}")),
    }
}

/// Every finding for `tree`, a parsed configuration of `product`, in a fixed order: listen
/// addresses, memberlist, shared (`common`) keys, then each ring of the product in turn.
pub(crate) fn check(
    product: Product,
    tree: &Value,
    host: &Host<'_>,
    resolver: &dyn Resolver,
) -> Vec<Finding> {
    let mut c = Checker {
        spec: crate::core::products::spec(product),
        tree,
        host,
        family: host.family(),
        findings: Vec::new(),
    };
    if let Err(why) = &host.identity {
        c.push(
            "identity.undecided",
            Severity::Warning,
            "(host)".into(),
            String::new(),
            format!("stackring has not decided this node's identity ({why}): family and port checks are skipped"),
            "run `stackring inspect` to see what it waits for, then check again".into(),
        );
    }
    c.listen();
    c.memberlist(resolver);
    for source in c.spec.inherit_addr {
        c.advertised(source, resolver, Endpoint::Grpc);
    }
    for ring in c.spec.rings {
        c.ring(ring, resolver);
    }
    let mut seen = std::collections::HashSet::new();
    c.findings
        .retain(|f| seen.insert((f.code, f.key.clone(), f.value.clone())));
    c.findings
}

/// Whether any finding is an error (exit 1).
pub(crate) fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Error)
}

#[derive(Clone, Copy)]
enum Endpoint {
    Grpc,
    Gossip,
}

/// A ring's interface names: the key they were read from, the names, the written value (`None`
/// for the product's default).
type InterfaceList<'a> = (String, Vec<String>, Option<&'a Value>);

/// An address as written: literal, a name (with what it resolved to), or left to the product.
enum Written {
    Ips(Vec<IpAddr>, Option<String>),
    Unchecked,
    Invalid,
}

struct Checker<'a> {
    spec: &'static Spec,
    tree: &'a Value,
    host: &'a Host<'a>,
    family: Option<Family>,
    findings: Vec<Finding>,
}

/// The value at a dotted path; `null` counts as absent.
fn lookup<'v>(tree: &'v Value, path: &str) -> Option<&'v Value> {
    let mut node = tree;
    for part in path.split('.') {
        node = node.as_object()?.get(part)?;
    }
    (!node.is_null()).then_some(node)
}

/// A list's items with their keys (`key[0]`, …); a single value is a list of one, as dskit takes it.
fn items<'v>(value: &'v Value, key: &str) -> Vec<(String, &'v Value)> {
    match value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("{key}[{i}]"), v))
            .collect(),
        other => vec![(key.to_string(), other)],
    }
}

fn list(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `${POD_IP}` (`-config.expand-env`) and the like: the product fills it in at start.
fn is_env(text: &str) -> bool {
    text.contains("${") || text.starts_with('$')
}

impl<'a> Checker<'a> {
    fn push(
        &mut self,
        code: &'static str,
        severity: Severity,
        key: String,
        value: String,
        message: String,
        fix: String,
    ) {
        self.findings.push(Finding {
            code,
            severity,
            key,
            value,
            message,
            fix,
        });
    }

    fn invalid(&mut self, key: &str, value: &Value, message: &str, fix: &str) {
        self.push(
            "value.invalid",
            Severity::Error,
            key.into(),
            show(value),
            message.into(),
            fix.into(),
        );
    }

    /// Whether an interface of this host holds `ip` (whatever its state).
    fn has_local(&self, ip: &IpAddr) -> bool {
        self.host.snapshot.addresses.values().any(|a| a.ip == *ip)
    }

    /// An address key's value: a literal address (brackets allowed, as Go's listeners take
    /// `[::0]`), a name resolved with `resolver`, `${ENV}`, or something else (reported).
    fn address(&mut self, key: &str, value: &Value, resolver: &dyn Resolver) -> Option<Written> {
        let Some(text) = value.as_str().map(str::trim) else {
            self.invalid(
                key,
                value,
                "is not an address",
                "write an IP address as a string, e.g. '2001:db8::5'",
            );
            return Some(Written::Invalid);
        };
        if text.is_empty() {
            return None;
        }
        if is_env(text) {
            self.push(
                "value.unchecked",
                Severity::Warning,
                key.into(),
                show(value),
                "is expanded from the environment when the product starts: not checked here".into(),
                "run the check on the expanded file, or write the address".into(),
            );
            return Some(Written::Unchecked);
        }
        let bare = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(text);
        // The one address parser (core::net); what it refuses is reported with its words, unless
        // the text is a host name.
        // The host is this one: a network's fix suggests one of its usable addresses.
        let usable: Vec<IpAddr> = usable_addrs(self.host.snapshot).map(|a| a.ip).collect();
        let problem = match parse_address_on(bare, AddrRole::Listen, HostAddrs::Known(&usable)) {
            Ok(ip) => return Some(Written::Ips(vec![ip], None)),
            Err(problem) => problem,
        };
        if bare.contains(['/', ':', '[']) {
            self.invalid(key, value, &problem.problem, &problem.fix);
            return Some(Written::Invalid);
        }
        // A host name: what it stands for is what peers get.
        match PeerAddr::parse(text) {
            Ok(PeerAddr {
                host: PeerHost::Name(name),
                ..
            }) => match resolver.resolve(&name) {
                Ok(ips) if !ips.is_empty() => Some(Written::Ips(ips, Some(name))),
                Ok(_) | Err(_) => {
                    self.invalid(
                        key,
                        value,
                        "is a name that does not resolve on this host",
                        "write the node's IP address, or a name in DNS or /etc/hosts",
                    );
                    Some(Written::Invalid)
                }
            },
            _ => {
                self.invalid(
                    key,
                    value,
                    "is not an IP address or a host name",
                    "write an IPv4 address like 192.0.2.10 or an IPv6 address like 2001:db8::10",
                );
                Some(Written::Invalid)
            }
        }
    }

    /// An address peers dial: never unspecified, loopback, link-local or multicast, always of the
    /// cluster's family, and normally the one stackring advertises for this node.
    fn advertised(&mut self, key: &str, resolver: &dyn Resolver, endpoint: Endpoint) -> bool {
        let Some(value) = lookup(self.tree, key) else {
            return false;
        };
        let Some(written) = self.address(key, value, resolver) else {
            return false;
        };
        let Written::Ips(ips, name) = written else {
            return true;
        };
        let shown = show(value);
        let via = |ip: &IpAddr| match &name {
            Some(n) => format!("resolves to {ip} (from '{n}'), which"),
            None => String::new(),
        };
        let fix = "leave it empty to use the interface address, or write this node's routable \
                   address (or its proxy's)";
        for ip in &ips {
            let code = if ip.is_unspecified() {
                "advertised.unspecified"
            } else if ip.is_loopback() {
                "advertised.loopback"
            } else if is_link_local(ip) {
                "advertised.link_local"
            } else if ip.is_multicast() {
                "advertised.multicast"
            } else {
                continue;
            };
            let why = refusal(AddrRole::Advertised, ip).unwrap_or("cannot be dialled by peers");
            let fix = match self.host.identity {
                Ok(id) => format!(
                    "{fix}: stackring advertises {} for this node",
                    id.internal_addr
                ),
                Err(_) => fix.to_string(),
            };
            let message = format!("{}{why}", via(ip)).trim().to_string();
            self.push(
                code,
                Severity::Error,
                key.into(),
                shown.clone(),
                message,
                fix,
            );
            return true;
        }
        let Some(family) = self.family else {
            return true;
        };
        if ips.iter().all(|ip| Family::of(ip) != family) {
            self.push(
                "advertised.wrong_family",
                Severity::Error,
                key.into(),
                shown,
                format!(
                    "is {} ({}) but the cluster uses {family}: peers cannot reach it",
                    Family::of(&ips[0]),
                    list(&ips)
                ),
                match self.host.identity {
                    Ok(id) => format!("write {} (what stackring advertises)", id.internal_addr),
                    Err(_) => format!("write this node's {family} address"),
                },
            );
            return true;
        }
        if let Ok(id) = self.host.identity {
            let ours = match endpoint {
                Endpoint::Grpc => id.grpc.advertise.ip(),
                Endpoint::Gossip => id.gossip.advertise.ip(),
            };
            if !ips.contains(&ours) {
                self.push(
                    "advertised.differs",
                    Severity::Warning,
                    key.into(),
                    shown,
                    format!("is not {ours}, the address stackring advertises for this node"),
                    format!("write '{ours}', or leave the key empty"),
                );
            }
        }
        true
    }

    /// `server.*_listen_address`: empty or `::` accepts both families; anything else must be of
    /// the cluster's family, not loopback, and on this host.
    fn listen(&mut self) {
        let no_dns = |_: &str| Err::<Vec<IpAddr>, String>("not resolved".into());
        for name in ["grpc_listen_address", "http_listen_address"] {
            let key = format!("server.{name}");
            let Some(value) = lookup(self.tree, &key) else {
                continue;
            };
            let Some(Written::Ips(ips, _)) = self.address(&key, value, &no_dns) else {
                continue;
            };
            let ip = ips[0];
            if ip == IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED) {
                continue;
            }
            if ip.is_loopback() {
                self.push(
                    "listen.loopback",
                    Severity::Error,
                    key,
                    show(value),
                    "is a loopback address: only this host can connect, peers cannot".into(),
                    "write '::' (every address, both families) or leave it empty".into(),
                );
                continue;
            }
            if let Some(family) = self.family {
                if Family::of(&ip) != family {
                    let what = if ip.is_unspecified() {
                        "accepts IPv4 connections only".to_string()
                    } else {
                        format!("is an {} address", Family::of(&ip))
                    };
                    self.push(
                        "listen.excludes_family",
                        Severity::Error,
                        key,
                        show(value),
                        format!("{what}, but the cluster uses {family}: peers cannot connect"),
                        "write '::' (every address, both families) or leave it empty".into(),
                    );
                    continue;
                }
            }
            if !ip.is_unspecified() && !self.has_local(&ip) {
                self.push(
                    "listen.not_local",
                    Severity::Warning,
                    key,
                    show(value),
                    "is not an address of this host: the server cannot bind it".into(),
                    "write '::', or an address `stackring inspect` lists".into(),
                );
            }
        }
    }

    fn memberlist(&mut self, resolver: &dyn Resolver) {
        if let Some(value) = lookup(self.tree, "memberlist.bind_addr") {
            let no_dns = |_: &str| Err::<Vec<IpAddr>, String>("not resolved".into());
            for (key, item) in items(value, "memberlist.bind_addr") {
                if let Some(Written::Ips(ips, _)) = self.address(&key, item, &no_dns) {
                    self.bind(&key, item, ips[0]);
                }
            }
        }
        let gossip_written =
            self.advertised("memberlist.advertise_addr", resolver, Endpoint::Gossip);
        if !gossip_written {
            for source in self.spec.inherit_gossip_addr {
                self.advertised(source, resolver, Endpoint::Gossip);
            }
        }
        if let Some(value) = lookup(self.tree, "memberlist.join_members") {
            for (key, item) in items(value, "memberlist.join_members") {
                self.join_member(&key, item, resolver);
            }
        }
    }

    fn bind(&mut self, key: &str, value: &Value, ip: IpAddr) {
        if ip.is_loopback() {
            self.push(
                "memberlist.bind_loopback",
                Severity::Error,
                key.into(),
                show(value),
                "is a loopback address: gossip from other nodes cannot arrive".into(),
                "write '::' or this node's internal address".into(),
            );
            return;
        }
        let Some(family) = self.family else {
            return;
        };
        let v6_any = ip == IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED);
        if !v6_any && Family::of(&ip) != family {
            self.push(
                "memberlist.bind_wrong_family",
                Severity::Error,
                key.into(),
                show(value),
                format!(
                    "binds {} only, but the cluster gossips over {family}",
                    Family::of(&ip)
                ),
                format!(
                    "write '{}' or this node's {family} address",
                    family.unspecified()
                ),
            );
        } else if !ip.is_unspecified() && !self.has_local(&ip) {
            self.push(
                "memberlist.bind_not_local",
                Severity::Warning,
                key.into(),
                show(value),
                "is not an address of this host: gossip cannot bind it".into(),
                "write '::', or an address `stackring inspect` lists".into(),
            );
        }
    }

    /// dskit resolves `join_members` (A and AAAA for `dns+` and plain names) and dials each
    /// address; the ones of a family the node does not gossip on time out (grafana/dskit#185).
    fn join_member(&mut self, key: &str, value: &Value, resolver: &dyn Resolver) {
        let Some(text) = value.as_str() else {
            self.invalid(
                key,
                value,
                "is not a peer address",
                "write it as a string, e.g. '[2001:db8::5]:7946'",
            );
            return;
        };
        if is_env(text) || text.starts_with("dnssrv") {
            self.push(
                "value.unchecked",
                Severity::Warning,
                key.into(),
                show(value),
                "is resolved by the product (SRV records or the environment): not checked here"
                    .into(),
                "list the peers, or use 'dns+name:port' (A/AAAA records) to have it checked".into(),
            );
            return;
        }
        let peer = match PeerAddr::parse(text) {
            Ok(peer) => peer,
            Err(p) => {
                self.invalid(key, value, p.problem, p.fix);
                return;
            }
        };
        let Some(family) = self.family else {
            return;
        };
        let ips = match &peer.host {
            PeerHost::Ip(ip) => vec![*ip],
            PeerHost::Name(name) => match resolver.resolve(name) {
                Ok(ips) if !ips.is_empty() => ips,
                Ok(_) => {
                    self.unresolved(key, value, "no addresses".into());
                    return;
                }
                Err(e) => {
                    self.unresolved(key, value, e);
                    return;
                }
            },
        };
        let (ours, theirs): (Vec<IpAddr>, Vec<IpAddr>) =
            ips.iter().partition(|ip| Family::of(ip) == family);
        let resolved = match &peer.host {
            PeerHost::Ip(_) => String::new(),
            PeerHost::Name(_) => format!("resolves to {}: ", list_families(&ips)),
        };
        let records = if family == Family::Ipv6 { "AAAA" } else { "A" };
        let (code, severity, message, fix) = if ours.is_empty() {
            (
                "memberlist.join_wrong_family",
                Severity::Error,
                format!(
                    "{resolved}only {} while the cluster gossips over {family}: the join cannot reach it",
                    Family::of(&theirs[0])
                ),
                format!("write the peer's {family} address, or a name with {records} records"),
            )
        } else if !theirs.is_empty() {
            (
                "memberlist.join_mixed_family",
                Severity::Warning,
                format!(
                    "{resolved}the {} addresses ({}) are dialled too and time out",
                    Family::of(&theirs[0]),
                    list(&theirs)
                ),
                format!("use a name with only {records} records, or list the {family} addresses"),
            )
        } else {
            return;
        };
        self.push(code, severity, key.into(), show(value), message, fix);
    }

    fn unresolved(&mut self, key: &str, value: &Value, why: String) {
        self.push(
            "memberlist.join_unresolved",
            Severity::Warning,
            key.into(),
            show(value),
            format!("does not resolve on this host ({why})"),
            "check the name (DNS, /etc/hosts), or list the peers' addresses".into(),
        );
    }

    /// The first written value among `own` and the inherited keys, with its key.
    fn effective(&self, own: &str, inherited: &[&str]) -> Option<(String, &'a Value)> {
        std::iter::once(own)
            .chain(inherited.iter().copied())
            .find_map(|key| lookup(self.tree, key).map(|v| (key.to_string(), v)))
            .filter(|(_, v)| v.as_str().is_none_or(|s| !s.trim().is_empty()))
    }

    fn ring(&mut self, ring: &Ring, resolver: &dyn Resolver) {
        let section = lookup(self.tree, ring.path);
        if let Some(v) = section {
            if !v.is_object() {
                self.invalid(
                    ring.path,
                    v,
                    "is not a mapping",
                    "write the section as a YAML mapping of keys",
                );
                return;
            }
        }
        let present = section.is_some();
        if !present && !ring.core {
            return;
        }
        let addr_key = ring.key(ring.addr);
        if present {
            self.advertised(&addr_key, resolver, Endpoint::Grpc);
        }
        // dskit uses a written address as it is; only without one does the ring read its
        // interfaces and its IPv6 flag (ring/util.go GetInstanceAddr).
        let explicit = self.effective(&addr_key, self.spec.inherit_addr).is_some();
        if !explicit {
            let list = self.interface_list(ring);
            self.inet6(ring, present, list.as_ref());
            if let Some(list) = list {
                self.interfaces(ring, list);
            }
        }
        if present || ring.core {
            self.port(ring, present);
        }
    }

    fn inet6(&mut self, ring: &Ring, present: bool, list: Option<&InterfaceList<'a>>) {
        let key = ring.key(ring.inet6);
        let written = lookup(self.tree, &key);
        let on = match written {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) if s == "true" || s == "false" => s == "true",
            Some(other) => {
                self.invalid(
                    &key,
                    other,
                    "is not a boolean",
                    "write true or false (unquoted)",
                );
                return;
            }
        };
        match self.family {
            Some(Family::Ipv6) if !on && present => self.push(
                "ring.inet6_missing",
                Severity::Error,
                key.clone(),
                written.map(show).unwrap_or_else(|| "(not set)".into()),
                format!(
                    "is not true while the cluster uses IPv6: {} finds no IPv4 address to register and fails (or registers an IPv4 one){}",
                    ring.path,
                    self.uncopied_inet6()
                ),
                format!("set {key}: true, or write {} explicitly", ring.key(ring.addr)),
            ),
            Some(Family::Ipv6) if !on => self.push(
                "ring.inet6_unset",
                Severity::Warning,
                key.clone(),
                "(not set)".into(),
                format!(
                    "{} is not in the file; its component runs in the default deployment and would look for an IPv4 address only",
                    ring.path
                ),
                format!("add {key}: true (harmless where the component does not run)"),
            ),
            Some(Family::Ipv4) if on => {
                // dskit prefers an IPv6 address over an IPv4 one of the same quality when the
                // flag is on (netutil `filterBestIP`): with one on the interfaces, the ring
                // advertises IPv6 in an IPv4 cluster.
                let snapshot = self.host.snapshot;
                let v6 = list.and_then(|(_, names, _)| {
                    snapshot.addresses.values().find(|a| {
                        a.family() == Family::Ipv6
                            && usability(snapshot, a).is_ok()
                            && snapshot
                                .link(a.link_index)
                                .is_some_and(|l| names.contains(&l.name))
                    })
                });
                let (severity, message) = match v6 {
                    Some(a) => (
                        Severity::Error,
                        format!(
                            "makes {} advertise {} (dskit prefers IPv6 when the flag is on) while the cluster uses IPv4",
                            ring.path, a.ip
                        ),
                    ),
                    None => (
                        Severity::Warning,
                        "lets the ring take an IPv6 address of its interfaces (dskit prefers one when the flag is on) while the cluster uses IPv4".into(),
                    ),
                };
                self.push(
                    "ring.inet6_on_ipv4",
                    severity,
                    key.clone(),
                    "true".into(),
                    message,
                    format!("set {key}: false, or write {} explicitly", ring.key(ring.addr)),
                )
            }
            _ => {}
        }
    }

    /// `; common.ring.instance_enable_ipv6 is not copied into the rings` when the file relies on it.
    fn uncopied_inet6(&self) -> String {
        self.spec
            .uncopied_inet6
            .iter()
            .find(|key| lookup(self.tree, key) == Some(&Value::Bool(true)))
            .map(|key| format!("; {key} is not copied into the rings"))
            .unwrap_or_default()
    }

    /// The interfaces a ring reads its address from: written (own or inherited), else the
    /// product's fixed default; `None` when unknown (the host's private interfaces) or invalid.
    fn interface_list(&mut self, ring: &Ring) -> Option<InterfaceList<'a>> {
        let own = ring.key(ring.interfaces);
        match self.effective(&own, self.spec.inherit_interfaces) {
            Some((key, value)) => {
                let mut names = Vec::new();
                for (_, item) in items(value, &key) {
                    match item.as_str() {
                        Some(s) if interface_name_problem(s).is_none() => names.push(s.to_string()),
                        _ => {
                            self.invalid(
                                &key,
                                value,
                                "is not a list of interface names",
                                "write names the kernel accepts, e.g. ['eth0']",
                            );
                            return None;
                        }
                    }
                }
                Some((key, names, Some(value)))
            }
            None if !ring.default_interfaces.is_empty() => Some((
                own,
                ring.default_interfaces
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                None,
            )),
            None => None,
        }
    }

    /// The interfaces a ring reads its address from must exist and hold a usable address of the
    /// cluster's family; missing ones are errors when none of the list does (grafana/mimir#8325,
    /// grafana/tempo#3590), warnings otherwise. A link-local address does not count: dskit's
    /// netutil (`filterBestIP`, since grafana/dskit#185) falls back to one when nothing better is
    /// there, and peers cannot dial it.
    fn interfaces(&mut self, ring: &Ring, list: InterfaceList<'a>) {
        let (key, names, written) = list;
        let snapshot = self.host.snapshot;
        let family = self.family;
        let usable =
            |a: &&Address| usability(snapshot, a).is_ok() && family.is_none_or(|f| a.family() == f);
        // Each name with what is wrong with it, if anything. Without a decided family only
        // existence is judged.
        let verdicts: Vec<(String, Option<String>)> = names
            .iter()
            .map(|name| {
                let Some(link) = snapshot.links.values().find(|l| l.name == *name) else {
                    return (name.clone(), Some("does not exist here".to_string()));
                };
                let addrs: Vec<_> = snapshot
                    .addresses
                    .values()
                    .filter(|a| a.link_index == link.index)
                    .collect();
                if family.is_none() || addrs.iter().any(&usable) {
                    return (name.clone(), None);
                }
                let has: Vec<String> = addrs
                    .iter()
                    .map(|a| match usability(snapshot, a) {
                        Ok(()) => format!("{} ({})", a.ip, a.family()),
                        Err(why) => format!("{} ({why})", a.ip),
                    })
                    .collect();
                let has = if has.is_empty() {
                    "no address".to_string()
                } else {
                    has.join(", ")
                };
                let f = family.map(|f| format!("{f} ")).unwrap_or_default();
                (
                    name.clone(),
                    Some(format!("holds no usable {f}address: {has}")),
                )
            })
            .collect();
        let bad: Vec<String> = verdicts
            .iter()
            .filter_map(|(name, why)| why.as_ref().map(|w| format!("'{name}' ({w})")))
            .collect();
        let none_good = bad.len() == verdicts.len();
        // A default list with one good interface works; say nothing about the others.
        if bad.is_empty() || (!none_good && written.is_none()) {
            return;
        }
        let code = if verdicts
            .iter()
            .any(|(_, w)| w.as_deref() == Some("does not exist here"))
        {
            "interface.absent"
        } else {
            "interface.no_address"
        };
        let value = match written {
            Some(v) => show(v),
            None => format!("(not set: {:?})", ring.default_interfaces),
        };
        let (severity, consequence) = if none_good {
            (
                Severity::Error,
                format!(
                    "; no interface of the list has a usable address, so {} cannot register",
                    ring.path
                ),
            )
        } else {
            (Severity::Warning, String::new())
        };
        let fix = match self.host.identity {
            Ok(id) => format!(
                "write ['{}'] (where stackring found {}), or write {} explicitly",
                id.internal_interface,
                id.internal_addr,
                ring.key(ring.addr)
            ),
            Err(_) => "name an interface that exists here (`stackring inspect` lists them)".into(),
        };
        self.push(
            code,
            severity,
            key,
            value,
            format!("names {}{consequence}", bad.join(", ")),
            fix,
        );
    }

    /// The port a ring advertises (its own, else the listen port) against the port stackring
    /// publishes for this node: they differ behind a sidecar proxy (the seed "Run Tempo
    /// distributed with sidecar proxies"; cortexproject/cortex#3642 behind Istio).
    fn port(&mut self, ring: &Ring, present: bool) {
        let Ok(id) = self.host.identity else {
            return;
        };
        let listen_key = "server.grpc_listen_port";
        let listen = match lookup(self.tree, listen_key) {
            None => Some(crate::core::config::DEFAULT_GRPC_PORT),
            Some(v) => self.port_value(listen_key, v, false),
        };
        let Some(listen) = listen else { return };
        let own = ring.key(ring.port);
        let written = self.effective(&own, self.spec.inherit_port);
        let port_written = written.is_some();
        let (key, value, port) = match written {
            Some((key, v)) => match self.port_value(&key, v, true) {
                Some(p) => (key, show(v), Some(p)),
                None if v.as_u64() == Some(0) => (key, show(v), None),
                None => return,
            },
            None => (own, "(not set)".to_string(), None),
        };
        let advertised = port.unwrap_or(listen);
        let ours = id.grpc.advertise.port();
        let proxy = id.grpc.advertise.port() != id.grpc.listen.port();
        if advertised == ours {
            return;
        }
        if !present && !proxy {
            return;
        }
        let (code, message, fix) = if proxy && advertised == listen {
            (
                "port.proxy_bypassed",
                format!(
                    "advertises the listen port {listen}, while this node is published at port {ours} (its sidecar proxy): peers would bypass the proxy"
                ),
                format!("set {key}: {ours}"),
            )
        } else if !proxy {
            (
                "port.no_proxy",
                format!(
                    "advertises port {advertised}, but this node has no proxy: stackring publishes port {ours}, where it listens, and nothing answers at {advertised}"
                ),
                format!("remove {key} (or set it to 0)"),
            )
        } else {
            (
                "port.advertised_mismatch",
                format!("advertises port {advertised}, but this node is published at port {ours}"),
                format!("set {key}: {ours}"),
            )
        };
        // A ring left out of the file (its port too) runs only where its component does: worth a
        // look, not a failure.
        let severity = if present || port_written {
            Severity::Error
        } else {
            Severity::Warning
        };
        self.push(code, severity, key, value, message, fix);
    }

    fn port_value(&mut self, key: &str, value: &Value, zero_ok: bool) -> Option<u16> {
        let n = match value {
            Value::Number(n) => n.as_i64(),
            Value::String(s) if is_env(s) => return None,
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        match n {
            Some(0) if zero_ok => None,
            Some(n) if (1..=65535).contains(&n) => Some(n as u16),
            _ => {
                self.invalid(
                    key,
                    value,
                    "is not a port number",
                    if zero_ok {
                        "use a number 0–65535 (0 = the listen port)"
                    } else {
                        "use a number 1–65535"
                    },
                );
                None
            }
        }
    }
}

/// `10.0.0.5, 10.0.0.6 (IPv4)` or `2001:db8::5 (IPv6), 10.0.0.5 (IPv4)`.
fn list_families(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(|ip| format!("{ip} ({})", Family::of(ip)))
        .collect::<Vec<_>>()
        .join(", ")
}
