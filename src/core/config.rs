//! Configuration: YAML with Tempo/dskit key names, validated once into typed `Settings`.
//!
//! The file is first read into a generic tree, then walked key by key, so that every error names the
//! full key path (`server.grpc_listen_port`), the offending value and the fix — and so that all errors
//! are reported at once. Nothing here binds a socket or reads the network.

use crate::core::net::{parse_address_on, valid_name, AddrProblem, AddrRole, HostAddrs, NAME_RULE};
use crate::core::peer::PeerAddr;
use crate::core::snapshot::Family;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

pub(crate) const DEFAULT_CONFIG_PATH: &str = "/etc/stackring/stackring.yaml";
pub(crate) const DEFAULT_GRPC_PORT: u16 = 9095;
pub(crate) const DEFAULT_HTTP_PORT: u16 = 3200;
/// The HTTPS port of the bootstrap and admin API: Redis Enterprise's REST API port.
pub(crate) const DEFAULT_HTTPS_PORT: u16 = 9443;
pub(crate) const DEFAULT_GOSSIP_PORT: u16 = 7946;
pub(crate) const DEFAULT_STATE_DIR: &str = "/var/lib/stackring";
pub(crate) const DEFAULT_RUNTIME_DIR: &str = "/run/stackring";
/// sysexits.h EX_CONFIG: what systemd and operators expect from a configuration error.
pub(crate) const EXIT_CONFIG: i32 = 78;

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ConfigError {
    pub key: String,
    pub value: String,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}: {}; fix: {}", self.key, self.problem, self.fix)
        } else {
            write!(
                f,
                "{}: {} {}; fix: {}",
                self.key, self.value, self.problem, self.fix
            )
        }
    }
}

/// Every problem found in one configuration, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A listen address: `None` means "the unspecified address of the internal family".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ListenSpec {
    pub(crate) address: Option<IpAddr>,
    pub(crate) port: u16,
}

/// The validated configuration. Only typed values; the decision reads nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Settings {
    pub(crate) grpc: ListenSpec,
    pub(crate) http: ListenSpec,
    /// `server.https_listen_port`: the bootstrap and admin API over TLS; it listens on
    /// `server.http_listen_address`.
    pub(crate) https_port: u16,
    /// `server.bootstrap_api`: who may call `create_cluster` and `join_cluster`.
    pub(crate) bootstrap_api: BootstrapApi,
    pub(crate) gossip: ListenSpec,
    /// `memberlist.advertise_addr`; `None` → the internal address.
    pub(crate) gossip_advertise_addr: Option<IpAddr>,
    /// `memberlist.advertise_port`; `None` → `bind_port`.
    pub(crate) gossip_advertise_port: Option<u16>,
    /// `memberlist.join_members`: gossip addresses of members (dskit's meaning).
    pub(crate) join_members: Vec<PeerAddr>,
    /// `lifecycler.address`: the advertised gRPC address (a proxy's, or the internal one).
    pub(crate) advertise_addr: Option<IpAddr>,
    /// `lifecycler.port`: the advertised gRPC port (a sidecar proxy's); `None` → grpc listen port.
    pub(crate) advertise_port: Option<u16>,
    /// `lifecycler.interface_names`: internal address candidates only from these, in this order.
    pub(crate) interface_names: Vec<String>,
    /// `node.use_internal_ipv6` or one of its aliases (`lifecycler.enable_inet6`, Tempo's
    /// `<component>.ring.enable_inet6`), whichever was written: the effective value.
    pub(crate) use_internal_ipv6: bool,
    /// The same flag as the operator wrote it: `None` when no key sets it. A joiner that does not
    /// set it takes the cluster's family (Redis Enterprise's rule).
    pub(crate) use_internal_ipv6_written: Option<WrittenFlag>,
    pub(crate) id: String,
    pub(crate) zone: String,
    /// `node.addr`: the pinned internal address.
    pub(crate) internal_addr: Option<IpAddr>,
    /// `node.external_addr`: `None` → every other usable address.
    pub(crate) external_addrs: Option<Vec<IpAddr>>,
    pub(crate) state_dir: PathBuf,
    pub(crate) runtime_dir: PathBuf,
    /// `node.reachability_interval`: how often every peer's advertised endpoints are probed
    /// (seconds, jittered); `None` (0) turns probing off.
    pub(crate) reachability_interval: Option<std::time::Duration>,
    /// `cluster:`: create or join by itself at start-up (declarative bootstrap).
    pub(crate) cluster: Option<DeclaredCluster>,
}

/// `server.bootstrap_api`: where the bootstrap API (`create_cluster`, `join_cluster`) is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum BootstrapApi {
    /// Over HTTPS to anyone with the request (Redis Enterprise's shape; the default).
    Network,
    /// Only on the node's admin socket (root on the node): an appliance that has not been told
    /// its cluster cannot be taken by whoever calls it first.
    Local,
}

/// A boolean as written in the file, with the key that set it (errors name what the operator
/// wrote, e.g. `ingester.lifecycler.enable_inet6`, not our canonical key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct WrittenFlag {
    pub(crate) value: bool,
    pub(crate) key: String,
}

/// The `cluster:` section: what an image that must cluster without an operator declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct DeclaredCluster {
    /// Required to create and to join with credentials; with a join token the node learns it
    /// (a name given must match).
    pub(crate) name: Option<String>,
    /// What the node proves itself with, read from a file (secrets stay out of the config).
    pub(crate) secret: DeclaredSecret,
    /// Exactly one node creates; the others join through `memberlist.join_members` (or the seed
    /// a join token names).
    pub(crate) create: bool,
    /// For a join with credentials: accept only this cluster CA (a token carries its own pin).
    pub(crate) ca_pin: Option<crate::core::pin::SpkiPin>,
}

/// Where a declared bootstrap's secret is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DeclaredSecret {
    /// `cluster.credentials_file`: one `username:password` line.
    CredentialsFile(PathBuf),
    /// `cluster.join_token_file`: a token from `stackring cluster join-token` (join only).
    JoinTokenFile(PathBuf),
}

impl DeclaredSecret {
    pub(crate) fn key(&self) -> &'static str {
        match self {
            DeclaredSecret::CredentialsFile(_) => "cluster.credentials_file",
            DeclaredSecret::JoinTokenFile(_) => "cluster.join_token_file",
        }
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        match self {
            DeclaredSecret::CredentialsFile(p) | DeclaredSecret::JoinTokenFile(p) => p,
        }
    }

    /// The same kind of secret, read from `path` instead.
    pub(crate) fn at(&self, path: PathBuf) -> DeclaredSecret {
        match self {
            DeclaredSecret::CredentialsFile(_) => DeclaredSecret::CredentialsFile(path),
            DeclaredSecret::JoinTokenFile(_) => DeclaredSecret::JoinTokenFile(path),
        }
    }

    /// Reads the file's text with the one parser of each kind; the secret is never in the error.
    pub(crate) fn parse(&self, text: &str) -> Result<DeclaredProof, String> {
        match self {
            DeclaredSecret::CredentialsFile(_) => parse_credentials(text)
                .map(|(username, password)| DeclaredProof::Credentials { username, password })
                .map_err(|p| format!("{p}; fix: write one line 'username:password' (username 1–128 characters, password 8–1024)")),
            DeclaredSecret::JoinTokenFile(_) => text
                .parse::<crate::core::token::JoinToken>()
                .map(DeclaredProof::Token)
                .map_err(|p| format!("{p}; fix: {}", crate::core::token::TOKEN_FIX)),
        }
    }
}

/// A declared bootstrap's secret, read.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum DeclaredProof {
    Credentials { username: String, password: String },
    Token(crate::core::token::JoinToken),
}

impl std::fmt::Debug for DeclaredProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeclaredProof::Credentials { username, .. } => {
                write!(
                    f,
                    "Credentials {{ username: {username:?}, password: <hidden> }}"
                )
            }
            DeclaredProof::Token(t) => write!(f, "Token {{ id: {} }}", t.credential.id),
        }
    }
}

/// Values that replace the config's for this node: what a bootstrap request asked for, or what
/// the cluster record keeps (the one place both are applied).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Overrides {
    pub(crate) id: Option<String>,
    pub(crate) internal_addr: Option<IpAddr>,
    pub(crate) external_addrs: Option<Vec<IpAddr>>,
    pub(crate) use_internal_ipv6: Option<bool>,
    /// The key the flag was written under, when an operator wrote it (a join then checks it
    /// against the cluster's family; unwritten, the joiner takes the cluster's).
    pub(crate) use_internal_ipv6_key: Option<String>,
}

impl Settings {
    pub(crate) fn with_overrides(&self, o: &Overrides) -> Settings {
        let mut s = self.clone();
        if let Some(id) = &o.id {
            s.id = id.clone();
        }
        if o.internal_addr.is_some() {
            s.internal_addr = o.internal_addr;
        }
        if o.external_addrs.is_some() {
            s.external_addrs = o.external_addrs.clone();
        }
        if let Some(flag) = o.use_internal_ipv6 {
            s.use_internal_ipv6 = flag;
            if let Some(key) = &o.use_internal_ipv6_key {
                s.use_internal_ipv6_written = Some(WrittenFlag {
                    value: flag,
                    key: key.clone(),
                });
            }
        }
        s
    }
}

impl Settings {
    /// The family that explicit addresses in the config impose, and the key that imposes it.
    /// `::` imposes nothing (a Linux `::` socket also accepts IPv4); `0.0.0.0` means IPv4.
    pub(crate) fn explicit_family(&self) -> Option<(Family, &'static str, IpAddr)> {
        self.explicit_addresses()
            .into_iter()
            .next()
            .map(|(key, ip)| (Family::of(&ip), key, ip))
    }

    fn explicit_addresses(&self) -> Vec<(&'static str, IpAddr)> {
        let candidates = [
            ("node.addr", self.internal_addr),
            ("lifecycler.address", self.advertise_addr),
            ("memberlist.advertise_addr", self.gossip_advertise_addr),
            ("server.grpc_listen_address", self.grpc.address),
            ("server.http_listen_address", self.http.address),
            ("memberlist.bind_addr", self.gossip.address),
        ];
        candidates
            .into_iter()
            .filter_map(|(key, ip)| ip.map(|ip| (key, ip)))
            .filter(|(_, ip)| *ip != IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED))
            .collect()
    }
}

/// Keys a running daemon cannot take on a reload (SIGHUP): what is bound or opened once at start.
/// Returns each key whose value differs between `running` and `new`, with why.
pub(crate) fn restart_needed(
    running: &Settings,
    new: &Settings,
) -> Vec<(&'static str, &'static str)> {
    let mut keys = Vec::new();
    let mut check = |differs: bool, key: &'static str, why: &'static str| {
        if differs {
            keys.push((key, why));
        }
    };
    check(
        running.runtime_dir != new.runtime_dir,
        "node.runtime_dir",
        "admin.sock and identity.env are opened there at start",
    );
    check(
        running.state_dir != new.state_dir,
        "node.state_dir",
        "the cluster record is read from there at start",
    );
    check(
        running.gossip != new.gossip,
        "memberlist.bind_addr/bind_port",
        "the gossip socket is bound once",
    );
    check(
        running.gossip_advertise_addr != new.gossip_advertise_addr
            || running.gossip_advertise_port != new.gossip_advertise_port,
        "memberlist.advertise_addr/advertise_port",
        "peers know this node by its gossip address",
    );
    check(
        running.cluster != new.cluster,
        "cluster",
        "the declarative bootstrap runs once, at start",
    );
    keys
}

/// A YAML syntax error in our words: the parser's advice about its own options ("set
/// DuplicateKeyPolicy in Options") means nothing to an operator, who should merge the sections.
fn yaml_error(parser: &str) -> ConfigError {
    const LIBRARY_ADVICE: &str = ", set DuplicateKeyPolicy in Options if acceptable";
    let duplicate = parser
        .split("duplicate mapping key: ")
        .nth(1)
        .and_then(|rest| rest.split([',', '\n']).next())
        .map(str::trim);
    let text = cap_lines(&parser.replace(LIBRARY_ADVICE, ""));
    match duplicate.filter(|k| !k.is_empty()) {
        Some(key) => ConfigError {
            key: echo(key),
            value: String::new(),
            problem: format!("appears twice in the same mapping: {text}"),
            fix: format!("keep one '{key}:' and merge the two into it (YAML keeps no duplicates)"),
        },
        None => ConfigError {
            key: "(file)".into(),
            value: String::new(),
            problem: format!("is not valid YAML: {text}"),
            fix: "correct the YAML syntax at the position shown".into(),
        },
    }
}

/// Parses and validates YAML text. Empty text is the default configuration.
pub fn parse_str(text: &str, default_id: &str) -> Result<Settings, ConfigErrors> {
    parse_str_on(text, default_id, HostAddrs::Unknown)
}

/// [`parse_str`] on the host the file configures: `host`'s usable addresses are what the fixes
/// of address errors suggest (a network written for `node.addr` gets one the host has).
pub(crate) fn parse_str_on(
    text: &str,
    default_id: &str,
    host: HostAddrs<'_>,
) -> Result<Settings, ConfigErrors> {
    let tree: Value = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_saphyr::from_str(text).map_err(|e| ConfigErrors(vec![yaml_error(&e.to_string())]))?
    };
    let mut v = Validator {
        errors: vec![],
        host,
    };
    let settings = v.settings(&tree, default_id);
    if v.errors.is_empty() {
        Ok(settings)
    } else {
        Err(ConfigErrors(v.errors))
    }
}

const TOP_KEYS: &[&str] = &[
    "server",
    "memberlist",
    "lifecycler",
    "node",
    "cluster",
    // Tempo's component sections, as its documents print them (the same node-level keys).
    "ingester",
    "distributor",
    "metrics_generator",
    "compactor",
];
const INGESTER_KEYS: &[&str] = &["lifecycler"];
const COMPONENT_KEYS: &[&str] = &["ring"];
/// Tempo's `<component>.ring`: the keys that say where the node is and which family it uses.
const RING_KEYS: &[&str] = &[
    "enable_inet6",
    "instance_addr",
    "instance_port",
    "instance_interface_names",
    "kvstore",
];
const KVSTORE_KEYS: &[&str] = &["store", "prefix"];
const CLUSTER_KEYS: &[&str] = &[
    "name",
    "credentials_file",
    "join_token_file",
    "ca_pin",
    "create",
];
const SERVER_KEYS: &[&str] = &[
    "grpc_listen_address",
    "grpc_listen_port",
    "http_listen_address",
    "http_listen_port",
    "https_listen_port",
    "bootstrap_api",
];
const MEMBERLIST_KEYS: &[&str] = &[
    "bind_addr",
    "bind_port",
    "advertise_addr",
    "advertise_port",
    "join_members",
];
const LIFECYCLER_KEYS: &[&str] = &[
    "address",
    "port",
    "interface_names",
    "enable_inet6",
    "id",
    "zone",
];
const NODE_KEYS: &[&str] = &[
    "addr",
    "external_addr",
    "use_internal_ipv6",
    "state_dir",
    "runtime_dir",
    "reachability_interval",
];

struct Validator<'h> {
    errors: Vec<ConfigError>,
    host: HostAddrs<'h>,
}

impl Validator<'_> {
    fn error(&mut self, key: &str, value: &Value, problem: &str, fix: &str) {
        self.errors.push(ConfigError {
            key: key.to_string(),
            value: show(value),
            problem: problem.to_string(),
            fix: fix.to_string(),
        });
    }

    /// The mapping at `key`, with unknown keys reported. Null (an empty section) is an empty map.
    fn section<'a>(
        &mut self,
        key: &str,
        value: Option<&'a Value>,
        allowed: &[&str],
    ) -> BTreeMap<&'a str, &'a Value> {
        let mut out = BTreeMap::new();
        match value {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (k, v) in map {
                    if allowed.contains(&k.as_str()) {
                        out.insert(k.as_str(), v);
                    } else {
                        // An empty key (`'': 1`, `! :`) is written `""`, so that the error still
                        // names one (found by fuzz/ config); a long one is cut.
                        let k = match k.as_str() {
                            "" => "\"\"".to_string(),
                            k => echo(k),
                        };
                        let full = if key.is_empty() {
                            k
                        } else {
                            format!("{key}.{k}")
                        };
                        self.error(
                            &full,
                            &Value::Null,
                            "is not a known key",
                            &format!("remove it, or use one of: {}", allowed.join(", ")),
                        );
                    }
                }
            }
            Some(other) => {
                let name = if key.is_empty() { "(file)" } else { key };
                self.error(
                    name,
                    other,
                    "is not a mapping",
                    "write a YAML mapping of keys to values",
                )
            }
        }
        out
    }

    fn settings(&mut self, tree: &Value, default_id: &str) -> Settings {
        let top = self.section("", Some(tree), TOP_KEYS);
        let server = self.section("server", top.get("server").copied(), SERVER_KEYS);
        let ml = self.section(
            "memberlist",
            top.get("memberlist").copied(),
            MEMBERLIST_KEYS,
        );
        let ingester = self.section("ingester", top.get("ingester").copied(), INGESTER_KEYS);
        let (lc_key, lc_value) = match (top.get("lifecycler"), ingester.get("lifecycler")) {
            (Some(_), Some(nested)) => {
                self.error(
                    "ingester.lifecycler",
                    nested,
                    "repeats the top-level lifecycler: section",
                    "keep one of lifecycler: and ingester.lifecycler: (they are the same keys)",
                );
                ("lifecycler", top.get("lifecycler").copied())
            }
            (None, Some(nested)) => ("ingester.lifecycler", Some(*nested)),
            (top_level, None) => ("lifecycler", top_level.copied()),
        };
        let lc = self.section(lc_key, lc_value, LIFECYCLER_KEYS);
        let rings: Vec<(String, BTreeMap<&str, &Value>)> =
            ["distributor", "metrics_generator", "compactor"]
                .into_iter()
                .filter_map(|component| {
                    let section =
                        self.section(component, top.get(component).copied(), COMPONENT_KEYS);
                    let key = format!("{component}.ring");
                    let ring = self.section(&key, section.get("ring").copied(), RING_KEYS);
                    (!ring.is_empty()).then_some((key, ring))
                })
                .collect();
        for (key, ring) in &rings {
            let key = format!("{key}.kvstore");
            let kv = self.section(&key, ring.get("kvstore").copied(), KVSTORE_KEYS);
            match kv.get("store") {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) if s == "memberlist" => {}
                Some(other) => self.error(
                    &format!("{key}.store"),
                    other,
                    "is not memberlist: stackring's ring travels by gossip",
                    "write store: memberlist (or leave kvstore out)",
                ),
            }
        }
        let node = self.section("node", top.get("node").copied(), NODE_KEYS);
        let declared = top
            .get("cluster")
            .filter(|v| !v.is_null())
            .map(|v| self.section("cluster", Some(v), CLUSTER_KEYS));

        let grpc = ListenSpec {
            address: self.addr(&server, "server", "grpc_listen_address", AddrRole::Listen),
            port: self
                .port(&server, "server", "grpc_listen_port", false)
                .unwrap_or(DEFAULT_GRPC_PORT),
        };
        let http = ListenSpec {
            address: self.addr(&server, "server", "http_listen_address", AddrRole::Listen),
            port: self
                .port(&server, "server", "http_listen_port", false)
                .unwrap_or(DEFAULT_HTTP_PORT),
        };
        let https_port = self
            .port(&server, "server", "https_listen_port", false)
            .unwrap_or(DEFAULT_HTTPS_PORT);
        let bootstrap_api = match server.get("bootstrap_api") {
            None | Some(Value::Null) => BootstrapApi::Network,
            Some(Value::String(v)) if v == "network" => BootstrapApi::Network,
            Some(Value::String(v)) if v == "local" => BootstrapApi::Local,
            Some(other) => {
                self.error(
                    "server.bootstrap_api",
                    other,
                    "is neither network nor local",
                    "write network (create_cluster and join_cluster over HTTPS, the default) or local (only on the node's admin socket)",
                );
                BootstrapApi::Network
            }
        };
        let gossip = ListenSpec {
            address: self.bind_addr(&ml),
            port: self
                .port(&ml, "memberlist", "bind_port", false)
                .unwrap_or(DEFAULT_GOSSIP_PORT),
        };
        // The IPv6 flag and its aliases: one family at a time, so every written one must agree.
        let mut flags: Vec<WrittenFlag> = Vec::new();
        for (map, section, name) in std::iter::once((&node, "node", "use_internal_ipv6"))
            .chain(std::iter::once((&lc, lc_key, "enable_inet6")))
            .chain(rings.iter().map(|(k, r)| (r, k.as_str(), "enable_inet6")))
        {
            if let Some(value) = self.opt_boolean(map, section, name) {
                flags.push(WrittenFlag {
                    value,
                    key: format!("{section}.{name}"),
                });
            }
        }
        if let Some(first) = flags.first() {
            for other in &flags[1..] {
                if other.value != first.value {
                    self.errors.push(ConfigError {
                        key: other.key.clone(),
                        value: other.value.to_string(),
                        problem: format!(
                            "disagrees with {} ({}): only one address family may be configured at \
                             a time, for every component",
                            first.key, first.value
                        ),
                        fix: format!("set {} and {} to the same value", other.key, first.key),
                    });
                }
            }
        }
        let use_internal_ipv6_written = flags.first().cloned();
        let external = node.get("external_addr").map(|v| {
            self.list(v, "node.external_addr")
                .into_iter()
                .filter_map(|(key, item)| self.parse_addr(&key, item, AddrRole::External))
                .collect::<Vec<_>>()
        });
        let mut interface_lists: Vec<(String, Vec<String>)> = Vec::new();
        for (map, section, name) in std::iter::once((&lc, lc_key, "interface_names")).chain(
            rings
                .iter()
                .map(|(k, r)| (r, k.as_str(), "instance_interface_names")),
        ) {
            if let Some(v) = map.get(name) {
                let key = format!("{section}.{name}");
                let names = self
                    .list(v, &key)
                    .into_iter()
                    .filter_map(|(key, item)| self.interface_name(&key, item))
                    .collect();
                interface_lists.push((key, names));
            }
        }
        self.agree(&interface_lists, |names| format!("{names:?}"));
        let interface_names = interface_lists
            .into_iter()
            .next()
            .map(|(_, names)| names)
            .unwrap_or_default();
        // The advertised gRPC address and port (a sidecar proxy's): lifecycler.address/port, or
        // Tempo's ring `instance_addr`/`instance_port`, which must agree when several are given.
        let mut advertised_addrs = Vec::new();
        let mut advertised_ports = Vec::new();
        for (map, section, addr_key, port_key) in std::iter::once((&lc, lc_key, "address", "port"))
            .chain(
                rings
                    .iter()
                    .map(|(k, r)| (r, k.as_str(), "instance_addr", "instance_port")),
            )
        {
            if let Some(ip) = self.addr(map, section, addr_key, AddrRole::Advertised) {
                advertised_addrs.push((format!("{section}.{addr_key}"), ip));
            }
            if let Some(port) = self.port(map, section, port_key, true) {
                advertised_ports.push((format!("{section}.{port_key}"), port));
            }
        }
        self.agree(&advertised_addrs, |ip| ip.to_string());
        self.agree(&advertised_ports, |port| port.to_string());
        let join_members = ml
            .get("join_members")
            .map(|v| {
                self.list(v, "memberlist.join_members")
                    .into_iter()
                    .filter_map(|(key, item)| self.join_member(&key, item))
                    .collect()
            })
            .unwrap_or_default();

        let settings = Settings {
            grpc,
            http,
            https_port,
            bootstrap_api,
            gossip,
            gossip_advertise_addr: self.addr(
                &ml,
                "memberlist",
                "advertise_addr",
                AddrRole::Advertised,
            ),
            gossip_advertise_port: self.port(&ml, "memberlist", "advertise_port", true),
            join_members,
            advertise_addr: advertised_addrs.first().map(|(_, ip)| *ip),
            advertise_port: advertised_ports.first().map(|(_, port)| *port),
            interface_names,
            use_internal_ipv6: flags.iter().any(|f| f.value),
            use_internal_ipv6_written,
            id: self
                .node_id(&lc, lc_key)
                .unwrap_or_else(|| default_id.to_string()),
            zone: self.zone(&lc, lc_key),
            internal_addr: self.addr(&node, "node", "addr", AddrRole::Advertised),
            external_addrs: external,
            state_dir: self.dir(&node, "state_dir", DEFAULT_STATE_DIR),
            runtime_dir: self.dir(&node, "runtime_dir", DEFAULT_RUNTIME_DIR),
            reachability_interval: self.seconds(&node, "node", "reachability_interval", 10),
            cluster: declared.and_then(|c| self.declared_cluster(&c)),
        };
        self.cross_checks(&settings);
        settings
    }

    fn declared_cluster(&mut self, c: &BTreeMap<&str, &Value>) -> Option<DeclaredCluster> {
        let create = self.boolean(c, "cluster", "create");
        let mut ok = true;
        let mut path = |me: &mut Self, key: &str, what: &str| match c.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) if p.starts_with('/') => Some(PathBuf::from(p)),
            Some(other) => {
                me.error(
                    &format!("cluster.{key}"),
                    other,
                    "is not an absolute path",
                    &format!("point it at a file holding {what}, e.g. /etc/stackring/{key}"),
                );
                ok = false;
                None
            }
        };
        let credentials = path(self, "credentials_file", "'username:password'");
        let token = path(
            self,
            "join_token_file",
            "a token from `stackring cluster join-token`",
        );
        let secret = match (credentials, token) {
            (Some(_), Some(_)) => {
                self.error(
                    "cluster.join_token_file",
                    &Value::Null,
                    "is given with cluster.credentials_file",
                    "keep one of them: a join token, or the credentials",
                );
                None
            }
            (None, Some(_)) if create => {
                self.error(
                    "cluster.join_token_file",
                    &Value::Null,
                    "is only for a node that joins (cluster.create is true)",
                    "a node that creates the cluster takes cluster.credentials_file",
                );
                None
            }
            (Some(p), None) => Some(DeclaredSecret::CredentialsFile(p)),
            (None, Some(p)) => Some(DeclaredSecret::JoinTokenFile(p)),
            (None, None) => {
                if ok {
                    self.error(
                        "cluster.credentials_file",
                        &Value::Null,
                        "is missing",
                        "point it at a file holding 'username:password' (or, to join, cluster.join_token_file at a file holding a join token)",
                    );
                }
                None
            }
        };
        let by_token = matches!(secret, Some(DeclaredSecret::JoinTokenFile(_)));
        let name = match c.get("name") {
            Some(Value::String(n)) if valid_name(n) => Some(n.clone()),
            None | Some(Value::Null) if by_token => None,
            Some(other) if !other.is_null() => {
                self.error(
                    "cluster.name",
                    other,
                    "is not a valid cluster name",
                    NAME_RULE,
                );
                ok = false;
                None
            }
            _ => {
                self.error(
                    "cluster.name",
                    &Value::Null,
                    "is missing",
                    "name the cluster, e.g. name: ring6",
                );
                ok = false;
                None
            }
        };
        let ca_pin = match c.get("ca_pin") {
            None | Some(Value::Null) => None,
            Some(_) if create => {
                self.error(
                    "cluster.ca_pin",
                    &Value::Null,
                    "is only for a node that joins (cluster.create is true)",
                    "remove it: the node that creates the cluster makes its CA",
                );
                ok = false;
                None
            }
            Some(Value::String(text)) => match text.parse::<crate::core::pin::SpkiPin>() {
                Ok(pin) => Some(pin),
                Err(_) => {
                    self.error(
                        "cluster.ca_pin",
                        &Value::String(text.clone()),
                        "is not an SPKI pin",
                        "write sha256:<64 lowercase hex digits>, as `stackring inspect` on a member prints it",
                    );
                    ok = false;
                    None
                }
            },
            Some(other) => {
                self.error(
                    "cluster.ca_pin",
                    other,
                    "is not an SPKI pin",
                    "write sha256:<64 lowercase hex digits>, as `stackring inspect` on a member prints it",
                );
                ok = false;
                None
            }
        };
        if !ok {
            return None;
        }
        Some(DeclaredCluster {
            name,
            secret: secret?,
            create,
            ca_pin,
        })
    }

    /// Rules between keys: one family at a time, ports that do not collide.
    fn cross_checks(&mut self, s: &Settings) {
        if let Some(c) = &s.cluster {
            let by_token = matches!(c.secret, DeclaredSecret::JoinTokenFile(_));
            if !c.create && !by_token && s.join_members.is_empty() {
                self.errors.push(ConfigError {
                    key: "memberlist.join_members".into(),
                    value: String::new(),
                    problem: "is empty while cluster.create is false: there is nothing to join".into(),
                    fix: "list nodes to join through (e.g. ['2001:db8::10']), or set cluster.create: true on exactly one node".into(),
                });
            }
        }
        let explicit = s.explicit_addresses();
        if let Some((first_key, first_ip)) = explicit.first() {
            for (key, ip) in &explicit[1..] {
                if Family::of(ip) != Family::of(first_ip) {
                    self.errors.push(ConfigError {
                        key: key.to_string(),
                        value: format!("'{ip}'"),
                        problem: format!(
                            "is {} but {first_key} '{first_ip}' is {}: listen, advertise and gossip \
                             addresses must all be of the internal family",
                            Family::of(ip),
                            Family::of(first_ip)
                        ),
                        fix: format!(
                            "use one family: change {key} or {first_key}, or leave one empty"
                        ),
                    });
                }
            }
            if let Some(flag) = s.use_internal_ipv6_written.as_ref().filter(|f| f.value) {
                if Family::of(first_ip) == Family::Ipv4 {
                    self.errors.push(ConfigError {
                        key: flag.key.clone(),
                        value: "true".into(),
                        problem: format!(
                            "asks for IPv6 internal traffic but {first_key} '{first_ip}' is IPv4"
                        ),
                        fix: format!(
                            "set {first_key} to an IPv6 address, or set {} to false",
                            flag.key
                        ),
                    });
                }
            }
        }
        let ports = [
            ("server.grpc_listen_port", s.grpc.port),
            ("server.http_listen_port", s.http.port),
            ("server.https_listen_port", s.https_port),
            ("memberlist.bind_port", s.gossip.port),
        ];
        for (i, (key_a, a)) in ports.iter().enumerate() {
            for (key_b, b) in &ports[i + 1..] {
                if a == b {
                    self.errors.push(ConfigError {
                        key: key_b.to_string(),
                        value: a.to_string(),
                        problem: format!("is also {key_a}: two servers cannot share a port"),
                        fix: format!("give {key_b} a port of its own"),
                    });
                }
            }
        }
    }

    fn addr(
        &mut self,
        map: &BTreeMap<&str, &Value>,
        section: &str,
        name: &str,
        role: AddrRole,
    ) -> Option<IpAddr> {
        let value = map.get(name)?;
        self.parse_addr(&format!("{section}.{name}"), value, role)
    }

    /// dskit takes a list for `bind_addr`; gossip binds one socket, so one address.
    fn bind_addr(&mut self, ml: &BTreeMap<&str, &Value>) -> Option<IpAddr> {
        let value = ml.get("bind_addr")?;
        let items = match value {
            Value::String(_) => vec![("memberlist.bind_addr".to_string(), *value)],
            _ => self.list(value, "memberlist.bind_addr"),
        };
        if items.len() > 1 {
            self.error(
                "memberlist.bind_addr",
                value,
                "lists more than one address; gossip binds a single socket",
                "keep one address, or ['::'] to listen on all",
            );
            return None;
        }
        let (key, item) = items.into_iter().next()?;
        self.parse_addr(&key, item, AddrRole::Listen)
    }

    fn parse_addr(&mut self, key: &str, value: &Value, role: AddrRole) -> Option<IpAddr> {
        let Some(text) = value.as_str() else {
            if !value.is_null() {
                self.error(
                    key,
                    value,
                    "is not an address",
                    "write an IP address as a string, e.g. '2001:db8::5'",
                );
            }
            return None;
        };
        if text.trim().is_empty() {
            return None;
        }
        match parse_address_on(text, role, self.host) {
            Ok(ip) => Some(ip),
            Err(AddrProblem { problem, fix }) => {
                self.error(key, value, &problem, &fix);
                None
            }
        }
    }

    /// Ports are read as wide integers so `70000` or `-1` is a range error, not a type error.
    fn port(
        &mut self,
        map: &BTreeMap<&str, &Value>,
        section: &str,
        name: &str,
        zero_means_unset: bool,
    ) -> Option<u16> {
        let value = map.get(name)?;
        let key = format!("{section}.{name}");
        let n = match value {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            Value::Null => return None,
            _ => None,
        };
        let range = if zero_means_unset {
            "0–65535 (0 = same as the listen port)"
        } else {
            "1–65535"
        };
        match n {
            Some(0) if zero_means_unset => None,
            Some(n) if (1..=65535).contains(&n) => Some(n as u16),
            Some(_) => {
                self.error(
                    &key,
                    value,
                    "is out of range",
                    &format!("use a port number {range}"),
                );
                None
            }
            None => {
                self.error(
                    &key,
                    value,
                    "is not a port number",
                    &format!("use a number {range}"),
                );
                None
            }
        }
    }

    /// A number of seconds (`10`, or `10s`), 0–3600; 0 means off (`None`); absent: `default`.
    fn seconds(
        &mut self,
        map: &BTreeMap<&str, &Value>,
        section: &str,
        name: &str,
        default: u64,
    ) -> Option<std::time::Duration> {
        let secs = match map.get(name) {
            None | Some(Value::Null) => Some(default),
            Some(value) => {
                let n = match value {
                    Value::Number(n) => n.as_u64(),
                    Value::String(s) => s.trim().trim_end_matches('s').trim().parse::<u64>().ok(),
                    _ => None,
                };
                match n.filter(|n| *n <= 3600) {
                    Some(n) => Some(n),
                    None => {
                        self.error(
                            &format!("{section}.{name}"),
                            value,
                            "is not a number of seconds from 0 to 3600",
                            &format!("write e.g. {default} (0 turns it off)"),
                        );
                        None
                    }
                }
            }
        };
        secs.filter(|n| *n > 0).map(std::time::Duration::from_secs)
    }

    fn boolean(&mut self, map: &BTreeMap<&str, &Value>, section: &str, name: &str) -> bool {
        match map.get(name) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                self.error(
                    &format!("{section}.{name}"),
                    other,
                    "is not a boolean",
                    "write true or false (unquoted)",
                );
                false
            }
        }
    }

    /// A list of scalars; a single scalar is accepted as a one-item list.
    fn list<'a>(&mut self, value: &'a Value, key: &str) -> Vec<(String, &'a Value)> {
        match value {
            Value::Null => vec![],
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("{key}[{i}]"), v))
                .collect(),
            Value::String(_) => vec![(key.to_string(), value)],
            other => {
                self.error(
                    key,
                    other,
                    "is not a list",
                    "write a YAML list, e.g. ['a', 'b']",
                );
                vec![]
            }
        }
    }

    fn interface_name(&mut self, key: &str, value: &Value) -> Option<String> {
        let Some(name) = value.as_str() else {
            self.error(
                key,
                value,
                "is not an interface name",
                "write the name as a string, e.g. 'eth0'",
            );
            return None;
        };
        match interface_name_problem(name) {
            None => Some(name.to_string()),
            Some(problem) => {
                self.error(
                    key,
                    value,
                    problem,
                    "use a name the kernel accepts: 1–15 bytes, no '/', ':' or whitespace, not '.' or '..'",
                );
                None
            }
        }
    }

    /// A gossip address as dskit takes it (`host`, `host:port`, `dns+host:port`).
    fn join_member(&mut self, key: &str, value: &Value) -> Option<PeerAddr> {
        let Some(text) = value.as_str() else {
            self.error(
                key,
                value,
                "is not a peer address",
                "write it as a string, e.g. '[2001:db8::5]:7946'",
            );
            return None;
        };
        match PeerAddr::parse(text) {
            Ok(peer) => Some(peer),
            Err(p) => {
                self.error(key, value, p.problem, p.fix);
                None
            }
        }
    }

    /// Values given under several keys for one setting must be the same.
    fn agree<T: PartialEq>(&mut self, given: &[(String, T)], show: impl Fn(&T) -> String) {
        let Some((first_key, first)) = given.first() else {
            return;
        };
        for (key, value) in &given[1..] {
            if value != first {
                self.errors.push(ConfigError {
                    key: key.clone(),
                    value: format!("'{}'", echo(&show(value))),
                    problem: format!(
                        "differs from {first_key} '{}': both set the same thing for this node",
                        echo(&show(first))
                    ),
                    fix: format!("give {key} and {first_key} the same value, or keep one"),
                });
            }
        }
    }

    fn opt_boolean(
        &mut self,
        map: &BTreeMap<&str, &Value>,
        section: &str,
        name: &str,
    ) -> Option<bool> {
        match map.get(name) {
            None | Some(Value::Null) => None,
            Some(_) => Some(self.boolean(map, section, name)),
        }
    }

    fn node_id(&mut self, lc: &BTreeMap<&str, &Value>, section: &str) -> Option<String> {
        let value = lc.get("id")?;
        let id = match value {
            Value::String(s) if !s.trim().is_empty() => s.trim(),
            Value::Null => return None,
            Value::String(_) => return None,
            _ => "",
        };
        if !valid_name(id) {
            self.error(
                &format!("{section}.id"),
                value,
                "is not a valid node id",
                &format!("{NAME_RULE} (or leave it out for the hostname)"),
            );
            return None;
        }
        Some(id.to_string())
    }

    fn zone(&mut self, lc: &BTreeMap<&str, &Value>, section: &str) -> String {
        match lc.get("zone") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) if s.len() <= 63 && !s.contains(char::is_control) => s.clone(),
            Some(other) => {
                self.error(
                    &format!("{section}.zone"),
                    other,
                    "is not a valid zone name",
                    "use a string of at most 63 characters",
                );
                String::new()
            }
        }
    }

    fn dir(&mut self, node: &BTreeMap<&str, &Value>, name: &str, default: &str) -> PathBuf {
        match node.get(name) {
            None | Some(Value::Null) => PathBuf::from(default),
            Some(Value::String(s)) if s.starts_with('/') => PathBuf::from(s),
            Some(other) => {
                self.error(
                    &format!("node.{name}"),
                    other,
                    "is not an absolute path",
                    &format!("write an absolute directory path, e.g. '{default}'"),
                );
                PathBuf::from(default)
            }
        }
    }
}

/// A `cluster.credentials_file`'s text: one `username:password` line (surrounding whitespace
/// ignored), with the lengths the bootstrap API accepts. Pure; the loader and the declarative
/// bootstrap both read the file through it.
pub(crate) fn parse_credentials(text: &str) -> Result<(String, String), &'static str> {
    let line = text.trim();
    let Some((user, password)) = line.split_once(':') else {
        return Err("has no 'username:password' line");
    };
    if line.contains('\n') {
        return Err("has more than one line");
    }
    if user.trim().is_empty() || user.len() > 128 {
        return Err("has an empty or too long username (1–128 characters)");
    }
    if password.len() < 8 || password.len() > 1024 {
        return Err("has a password that is not 8–1024 characters long");
    }
    Ok((user.to_string(), password.to_string()))
}

/// Longest value echoed back in an error: a 10 MB value is not repeated whole.
pub(crate) const MAX_ECHO: usize = 80;

/// A value for an error message, cut to a readable length.
pub(crate) fn echo(text: &str) -> String {
    if text.chars().count() <= MAX_ECHO {
        text.to_string()
    } else {
        let cut: String = text.chars().take(MAX_ECHO).collect();
        format!("{cut}… ({} bytes)", text.len())
    }
}

/// The kernel's rules for an interface name (`dev_valid_name`), as an explanation when broken.
pub(crate) fn interface_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name.len() > 15 {
        Some("is longer than 15 bytes (IFNAMSIZ)")
    } else if name == "." || name == ".." {
        Some("is not allowed as an interface name")
    } else if name.contains('/') || name.contains(':') || name.contains(char::is_whitespace) {
        Some("contains '/', ':' or whitespace")
    } else {
        None
    }
}

/// A parser's message with each line cut to a readable length (its snippet quotes the input).
fn cap_lines(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.chars().count() > 200 {
                echo(l)
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A YAML value as it appears in an error message (at most ~80 characters of it).
pub(crate) fn show(value: &Value) -> String {
    use echo;
    match value {
        Value::Null => String::new(),
        Value::String(s) => format!("'{}'", echo(s)),
        other => echo(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key written twice is named with the fix, in our words, not the parser's option names.
    #[test]
    fn duplicate_keys_name_the_key_and_the_fix() {
        let e = parse_str(
            "server:\n  grpc_listen_port: 1\nserver:\n  grpc_listen_port: 2\n",
            "n",
        )
        .unwrap_err();
        let text = e.to_string();
        assert_eq!(e.0[0].key, "server", "{text}");
        assert!(
            text.contains("appears twice") && text.contains("merge"),
            "{text}"
        );
        assert!(
            !text.contains("DuplicateKeyPolicy") && !text.contains("Options"),
            "{text}"
        );
    }

    fn errors(yaml: &str) -> Vec<ConfigError> {
        match parse_str(yaml, "node-a") {
            Ok(s) => panic!("expected an error for {yaml:?}, got {s:?}"),
            Err(e) => e.0,
        }
    }

    /// Issue 11 item 5 (a 10 MB value echoed whole); fuzz/ (config) checks it for any input.
    #[test]
    fn long_values_are_not_echoed_whole() {
        let long = "9".repeat(5000);
        for yaml in [
            format!("server: {{ grpc_listen_port: '{long}' }}"),
            format!("server: {{ grpc_listen_port: {long} }}"),
            format!("memberlist: {{ join_members: ['{long}'] }}"),
            format!("node: {{ addr: 'x{long}' }}"),
        ] {
            for e in errors(&yaml) {
                assert!(e.value.chars().count() <= 110, "{yaml:.60}: {e:?}");
                assert!(e.to_string().len() < 1000, "{yaml:.60}: {e}");
            }
        }
    }

    #[test]
    fn empty_keys_are_named() {
        for (yaml, key) in [
            ("! :", "\"\""),
            ("'': 1", "\"\""),
            ("server: { '': 1 }", "server.\"\""),
        ] {
            let e = errors(yaml);
            assert_eq!(e[0].key, key, "{yaml}: {e:?}");
            assert!(e[0].fix.contains("use one of"), "{yaml}: {e:?}");
        }
    }

    #[test]
    fn empty_file_is_all_defaults() {
        let s = parse_str("", "node-a").unwrap();
        assert_eq!(
            s.grpc,
            ListenSpec {
                address: None,
                port: 9095
            }
        );
        assert_eq!(s.http.port, 3200);
        assert_eq!(s.https_port, DEFAULT_HTTPS_PORT);
        assert_eq!(s.gossip.port, 7946);
        assert_eq!(s.id, "node-a");
        assert_eq!(s.state_dir, PathBuf::from("/var/lib/stackring"));
        assert_eq!(s.runtime_dir, PathBuf::from("/run/stackring"));
        assert!(!s.use_internal_ipv6);
        assert_eq!(s.external_addrs, None);
    }

    /// Tempo "Configure IPv6", the protocol configuration block exactly as the document prints
    /// it: the only refusal is `ingester.lifecycler.address: '::'` (an unspecified address put
    /// in the ring is unreachable); without that line the block is valid and asks for IPv6.
    #[test]
    fn tempo_configure_ipv6_block_as_printed() {
        let block = "memberlist:\n  bind_addr:\n    - '::'\n  bind_port: 7946\n\n\
compactor:\n  ring:\n    kvstore:\n      store: memberlist\n    enable_inet6: true\n\n\
metrics_generator:\n  ring:\n    enable_inet6: true\n\n\
ingester:\n  lifecycler:\n    address: '::'\n    enable_inet6: true\n\n\
server:\n  grpc_listen_address: '::0'\n  grpc_listen_port: 9095\n  http_listen_address: '::0'\n  http_listen_port: 3200\n";
        let errors = parse_str(block, "n").unwrap_err().0;
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!(errors[0].key, "ingester.lifecycler.address");
        assert!(errors[0].problem.contains("unspecified"), "{errors:#?}");
        assert!(errors[0].fix.contains("leave it empty"), "{errors:#?}");

        let fixed = block.replace("    address: '::'\n", "");
        let s = parse_str(&fixed, "n").unwrap();
        assert!(s.use_internal_ipv6);
        assert_eq!(
            s.use_internal_ipv6_written.as_ref().map(|f| f.key.as_str()),
            Some("ingester.lifecycler.enable_inet6")
        );
        assert_eq!(s.grpc.address, Some("::".parse().unwrap()));
        assert_eq!(s.gossip.port, 7946);
    }

    /// Tempo "sidecar proxies": the snippets as printed set the advertised port.
    #[test]
    fn tempo_sidecar_snippets_as_printed() {
        let s = parse_str("ingester:\n   lifecycler:\n       port: 12345\n", "n").unwrap();
        assert_eq!(s.advertise_port, Some(12345));
        assert_eq!(s.grpc.port, 9095);
        let s = parse_str(
            "metrics_generator:\n  ring:\n    instance_port: 12345\n",
            "n",
        )
        .unwrap();
        assert_eq!(s.advertise_port, Some(12345));
        let s = parse_str("server:\n  grpc_listen_port: 12345\n", "n").unwrap();
        assert_eq!((s.grpc.port, s.advertise_port), (12345, None));

        let table: &[(&str, &str, &str)] = &[
            (
                "ingester: {lifecycler: {port: 12345}}\nmetrics_generator: {ring: {instance_port: 23456}}",
                "metrics_generator.ring.instance_port",
                "differs from ingester.lifecycler.port",
            ),
            (
                "lifecycler: {port: 1}\ningester: {lifecycler: {port: 1}}",
                "ingester.lifecycler",
                "repeats",
            ),
            (
                "ingester: {lifecycler: {enable_inet6: true}}\ncompactor: {ring: {enable_inet6: false}}",
                "compactor.ring.enable_inet6",
                "only one address family",
            ),
            (
                "compactor: {ring: {kvstore: {store: consul}}}",
                "compactor.ring.kvstore.store",
                "not memberlist",
            ),
            (
                "ingester: {lifecycler: {id: 'bad id'}}",
                "ingester.lifecycler.id",
                "not a valid node id",
            ),
            ("querier: {ring: {}}", "querier", "not a known key"),
            ("node: {external_addr: ['fe80::1']}", "node.external_addr[0]", "link-local"),
            ("node: {external_addr: ['169.254.1.1']}", "node.external_addr[0]", "link-local"),
        ];
        for (yaml, key, problem) in table {
            let errors = parse_str(yaml, "n").unwrap_err().0;
            assert!(
                errors
                    .iter()
                    .any(|e| e.key == *key && e.problem.contains(problem)),
                "{yaml}: {errors:#?}"
            );
        }
    }

    #[test]
    fn tempo_keys_are_read() {
        let s = parse_str(
            "server: {grpc_listen_address: '::', grpc_listen_port: 9096, http_listen_port: 3201}\n\
             memberlist: {bind_addr: ['::'], bind_port: 7947, advertise_port: 17946, join_members: ['[2001:db8::2]:7946', 'peer-b']}\n\
             lifecycler: {address: '2001:db8::5', port: 19095, interface_names: [eth1, eth0], enable_inet6: true, id: n1, zone: z1}\n\
             node: {external_addr: ['203.0.113.9', '2001:db8:ff::9']}\n",
            "h",
        )
        .unwrap();
        assert_eq!(s.grpc.port, 9096);
        assert_eq!(s.advertise_port, Some(19095));
        assert_eq!(s.gossip_advertise_port, Some(17946));
        assert_eq!(s.interface_names, vec!["eth1", "eth0"]);
        assert!(s.use_internal_ipv6);
        assert_eq!(s.id, "n1");
        assert_eq!(s.external_addrs.as_ref().unwrap().len(), 2);
        assert_eq!(s.join_members.len(), 2);
    }

    #[test]
    fn port_zero_means_same_as_listen_for_advertised_ports() {
        let s = parse_str(
            "lifecycler: {port: 0}\nmemberlist: {advertise_port: 0}",
            "h",
        )
        .unwrap();
        assert_eq!(s.advertise_port, None);
        assert_eq!(s.gossip_advertise_port, None);
    }

    /// Each bad input gives an error naming its key, and a fix.
    #[test]
    fn bad_input_table() {
        let table: &[(&str, &str, &str)] = &[
            (
                "lifecycler: {address: '::'}",
                "lifecycler.address",
                "unspecified",
            ),
            (
                "lifecycler: {address: '0.0.0.0'}",
                "lifecycler.address",
                "unspecified",
            ),
            (
                "lifecycler: {address: '::1'}",
                "lifecycler.address",
                "loopback",
            ),
            (
                "lifecycler: {address: '127.0.0.1'}",
                "lifecycler.address",
                "loopback",
            ),
            (
                "lifecycler: {address: 'fe80::1'}",
                "lifecycler.address",
                "link-local",
            ),
            (
                "lifecycler: {address: '169.254.1.1'}",
                "lifecycler.address",
                "link-local",
            ),
            (
                "lifecycler: {address: 'ff02::1'}",
                "lifecycler.address",
                "multicast",
            ),
            (
                "lifecycler: {address: '::ffff:192.0.2.1'}",
                "lifecycler.address",
                "IPv4-mapped",
            ),
            (
                "memberlist: {advertise_addr: '::'}",
                "memberlist.advertise_addr",
                "unspecified",
            ),
            ("node: {addr: '2001:DB8::/32'}", "node.addr", "CIDR"),
            (
                "node: {addr: '[2001:db8::1]:9095'}",
                "node.addr",
                "not an IP address",
            ),
            (
                "node: {addr: 'not-an-ip'}",
                "node.addr",
                "not an IP address",
            ),
            ("node: {addr: 5}", "node.addr", "not an address"),
            (
                "node: {external_addr: ['198.51.100.0/24']}",
                "node.external_addr[0]",
                "CIDR",
            ),
            (
                "node: {external_addr: ['::']}",
                "node.external_addr[0]",
                "unspecified",
            ),
            (
                "server: {grpc_listen_port: 70000}",
                "server.grpc_listen_port",
                "out of range",
            ),
            (
                "server: {grpc_listen_port: -1}",
                "server.grpc_listen_port",
                "out of range",
            ),
            (
                "server: {grpc_listen_port: 0}",
                "server.grpc_listen_port",
                "out of range",
            ),
            (
                "server: {http_listen_port: 'http'}",
                "server.http_listen_port",
                "not a port",
            ),
            (
                "server: {http_listen_port: [1]}",
                "server.http_listen_port",
                "not a port",
            ),
            (
                "lifecycler: {port: 65536}",
                "lifecycler.port",
                "out of range",
            ),
            (
                "server: {grpc_listen_port: 3200}",
                "server.http_listen_port",
                "share a port",
            ),
            (
                "memberlist: {bind_port: 9095}",
                "memberlist.bind_port",
                "share a port",
            ),
            (
                "server: {https_listen_port: 0}",
                "server.https_listen_port",
                "out of range",
            ),
            (
                "server: {bootstrap_api: open}",
                "server.bootstrap_api",
                "neither network nor local",
            ),
            (
                "server: {bootstrap_api: [local]}",
                "server.bootstrap_api",
                "neither network nor local",
            ),
            (
                "server: {https_listen_port: 'https'}",
                "server.https_listen_port",
                "not a port",
            ),
            (
                "server: {https_listen_port: 3200}",
                "server.https_listen_port",
                "share a port",
            ),
            (
                "lifecycler: {interface_names: ['eth0/1']}",
                "lifecycler.interface_names[0]",
                "'/'",
            ),
            (
                "lifecycler: {interface_names: ['a-very-long-ifname']}",
                "lifecycler.interface_names[0]",
                "15 bytes",
            ),
            (
                "lifecycler: {interface_names: ['eth 0']}",
                "lifecycler.interface_names[0]",
                "whitespace",
            ),
            (
                "lifecycler: {interface_names: ['..']}",
                "lifecycler.interface_names[0]",
                "not allowed",
            ),
            (
                "lifecycler: {interface_names: ['']}",
                "lifecycler.interface_names[0]",
                "empty",
            ),
            (
                "lifecycler: {enable_inet6: 'yes'}",
                "lifecycler.enable_inet6",
                "not a boolean",
            ),
            (
                "lifecycler: {id: 'a b'}",
                "lifecycler.id",
                "not a valid node id",
            ),
            (
                "node: {state_dir: 'relative/dir'}",
                "node.state_dir",
                "absolute",
            ),
            (
                "cluster: {name: c1, credentials_file: /etc/x}",
                "memberlist.join_members",
                "nothing to join",
            ),
            (
                "cluster: {name: 'a b', credentials_file: /etc/x, create: true}",
                "cluster.name",
                "not a valid",
            ),
            (
                "cluster: {name: c1, credentials_file: x, create: true}",
                "cluster.credentials_file",
                "absolute",
            ),
            (
                "cluster: {name: c1, create: true}",
                "cluster.credentials_file",
                "missing",
            ),
            (
                "cluster: {name: c1, credentials_file: /etc/x, create: true, size: 3}",
                "cluster.size",
                "not a known key",
            ),
            (
                "cluster: {credentials_file: /etc/x, join_token_file: /etc/t}",
                "cluster.join_token_file",
                "given with cluster.credentials_file",
            ),
            (
                "cluster: {name: c1, join_token_file: /etc/t, create: true}",
                "cluster.join_token_file",
                "only for a node that joins",
            ),
            (
                "cluster: {join_token_file: t}",
                "cluster.join_token_file",
                "absolute",
            ),
            (
                "cluster: {join_token_file: /etc/t, name: 'a b'}",
                "cluster.name",
                "not a valid",
            ),
            (
                "cluster: {name: c1, credentials_file: /etc/x, create: true, ca_pin: 'sha256:00'}",
                "cluster.ca_pin",
                "only for a node that joins",
            ),
            (
                "cluster: {name: c1, credentials_file: /etc/x, ca_pin: 'sha256:00'}\nmemberlist: {join_members: ['2001:db8::5']}",
                "cluster.ca_pin",
                "not an SPKI pin",
            ),
            (
                "cluster: {name: c1, credentials_file: /etc/x, ca_pin: [1]}\nmemberlist: {join_members: ['2001:db8::5']}",
                "cluster.ca_pin",
                "not an SPKI pin",
            ),
            ("node: {colour: blue}", "node.colour", "not a known key"),
            ("serverr: {}", "serverr", "not a known key"),
            ("server: 5", "server", "not a mapping"),
            (
                "memberlist: {bind_addr: ['::', '0.0.0.0']}",
                "memberlist.bind_addr",
                "more than one",
            ),
            (
                "memberlist: {join_members: ['2001:db8::5:7946x']}",
                "memberlist.join_members[0]",
                "ambiguous",
            ),
            (
                "lifecycler: {address: '192.0.2.5'}\nnode: {addr: '2001:db8::5'}",
                "lifecycler.address",
                "IPv4 but node.addr '2001:db8::5' is IPv6",
            ),
            (
                "server: {grpc_listen_address: '0.0.0.0'}\nnode: {addr: '2001:db8::5'}",
                "server.grpc_listen_address",
                "is IPv4 but node.addr",
            ),
            (
                "node: {addr: '192.0.2.5', use_internal_ipv6: true}",
                "node.use_internal_ipv6",
                "is IPv4",
            ),
            (
                "lifecycler: {enable_inet6: true, address: '192.0.2.5'}",
                "lifecycler.enable_inet6",
                "is IPv4",
            ),
            ("key: [unclosed", "(file)", "not valid YAML"),
            ("server: {a: 1}\nserver: {b: 2}", "server", "appears twice"),
            (
                "node: {reachability_interval: -1}",
                "node.reachability_interval",
                "number of seconds",
            ),
            (
                "node: {reachability_interval: 3601}",
                "node.reachability_interval",
                "number of seconds",
            ),
            (
                "node: {reachability_interval: often}",
                "node.reachability_interval",
                "number of seconds",
            ),
        ];
        for (yaml, key, problem) in table {
            let errs = errors(yaml);
            assert!(
                errs.iter().any(|e| e.key == *key
                    && (e.problem.contains(problem) || e.value.contains(problem))
                    && !e.fix.is_empty()),
                "{yaml:?}: expected {key} / {problem}, got {errs:#?}"
            );
        }
    }

    #[test]
    fn all_errors_are_reported_at_once() {
        let errs =
            errors("server: {grpc_listen_port: 0, http_listen_port: 99999}\nnode: {addr: '::'}");
        assert_eq!(errs.len(), 3, "{errs:#?}");
    }

    #[test]
    fn unspecified_ipv6_listen_imposes_no_family() {
        let s = parse_str(
            "server: {grpc_listen_address: '::'}\nnode: {addr: '192.0.2.5'}",
            "h",
        )
        .unwrap();
        assert_eq!(s.explicit_family().map(|f| f.0), Some(Family::Ipv4));
    }

    /// A declared join with a token needs no name, no join_members and no credentials: the
    /// token names the seed and pins the CA; with credentials a `ca_pin` pins the join.
    #[test]
    fn a_declared_join_takes_a_token_file_or_pinned_credentials() {
        let s = parse_str(
            "cluster: {join_token_file: /etc/stackring/join-token}\n",
            "n1",
        )
        .unwrap();
        let c = s.cluster.unwrap();
        assert_eq!(c.name, None);
        assert_eq!(
            c.secret,
            DeclaredSecret::JoinTokenFile("/etc/stackring/join-token".into())
        );
        let pin = format!("sha256:{}", "ab".repeat(32));
        let s = parse_str(
            &format!("cluster: {{name: c1, credentials_file: /etc/c, ca_pin: '{pin}'}}\nmemberlist: {{join_members: ['2001:db8::5']}}\n"),
            "n1",
        )
        .unwrap();
        assert_eq!(
            s.cluster.unwrap().ca_pin.map(|p| p.to_string()),
            Some(pin.clone())
        );
        // The token file's text, read with the one parser; the secret is never in an error.
        let secret = "0123456789abcdefghijklmnopqrstuv";
        let token = format!("k3x9qa.{secret}@[2001:db8::10]:9095/{pin}\n");
        assert!(matches!(
            c.secret.parse(&token),
            Ok(DeclaredProof::Token(_))
        ));
        for bad in [
            "",
            "admin:secret-pass",
            &token.replace(":9095", ""),
            &token[..40],
        ] {
            let e = c.secret.parse(bad).unwrap_err();
            assert!(e.contains("fix") && !e.contains(secret), "{bad:?}: {e}");
        }
        let creds = DeclaredSecret::CredentialsFile("/etc/c".into());
        assert!(matches!(
            creds.parse("admin:secret-pass\n"),
            Ok(DeclaredProof::Credentials { .. })
        ));
    }

    #[test]
    fn error_text_names_key_value_and_fix() {
        let text = ConfigErrors(errors("lifecycler: {address: '::'}")).to_string();
        assert!(text.contains("lifecycler.address"), "{text}");
        assert!(text.contains("'::'"), "{text}");
        assert!(text.contains("fix:"), "{text}");
    }

    #[test]
    fn huge_values_are_echoed_cut() {
        let huge = "x".repeat(1_000_000);
        let errors = errors(&format!("server: {{grpc_listen_address: '{huge}'}}"));
        let text = errors[0].to_string();
        assert!(text.len() < 400, "{} bytes", text.len());
        assert!(text.contains("… (1000000 bytes)"), "{text}");
    }

    #[test]
    fn reload_refuses_keys_that_need_a_restart_and_takes_the_others() {
        let running = parse_str("node: {runtime_dir: /run/a, state_dir: /var/lib/a}", "n").unwrap();
        let table: &[(&str, &[&str])] = &[
            ("node: {runtime_dir: /run/a, state_dir: /var/lib/a}", &[]),
            (
                "node: {runtime_dir: /run/a, state_dir: /var/lib/a}\nlifecycler: {port: 19095}\nmemberlist: {join_members: ['[2001:db8::1]:7946']}\nserver: {http_listen_port: 3300}",
                &[],
            ),
            ("node: {runtime_dir: /run/b, state_dir: /var/lib/a}", &["node.runtime_dir"]),
            ("node: {runtime_dir: /run/a}", &["node.state_dir"]),
            (
                "node: {runtime_dir: /run/a, state_dir: /var/lib/a}\nmemberlist: {bind_port: 7947, advertise_port: 17946}",
                &["memberlist.bind_addr/bind_port", "memberlist.advertise_addr/advertise_port"],
            ),
        ];
        for (yaml, want) in table {
            let new = parse_str(yaml, "n").unwrap();
            let got: Vec<&str> = restart_needed(&running, &new)
                .iter()
                .map(|(k, _)| *k)
                .collect();
            assert_eq!(got, *want, "{yaml}");
        }
    }

    /// The seed's mistake (Redis Enterprise's `"addr": "2001:DB8::/32"`) and `ip addr`'s
    /// `2001:db8::5/64`, written as the config's key: the fix names an address this host has
    /// (one in that network, else one of its family, else says there is none and where to look),
    /// never one computed from the network; and the address it names is itself accepted.
    #[test]
    fn a_network_for_an_address_gets_one_the_host_has() {
        let ip = |t: &str| t.parse::<IpAddr>().unwrap();
        let dual = [ip("192.0.2.10"), ip("2001:db8::7"), ip("2001:db8::5")];
        let elsewhere = [ip("198.51.100.4"), ip("2001:db8:7::4")];
        let ula_v4 = [ip("192.0.2.10"), ip("fd00::4")];
        let v4_only = [ip("192.0.2.10")];
        let garbage = format!("2001:db8::/{}", "x/".repeat(5_000));
        let long_prefix = format!("2001:db8::/{}", "9".repeat(10_000));
        let table: Vec<(String, &[IpAddr], &str, &str)> = vec![
            // (YAML, the host's usable addresses, the fix says, the fix suggests)
            (
                "node:\n  addr: 2001:db8::5/64\n".into(),
                &dual,
                "in 2001:db8::/64",
                "'2001:db8::5'",
            ),
            (
                "node:\n  addr: 2001:DB8::/32\n".into(),
                &dual,
                "in 2001:db8::/32",
                "'2001:db8::7'",
            ),
            (
                "node:\n  addr: 2001:DB8::/32\n".into(),
                &elsewhere,
                "in 2001:db8::/32",
                "'2001:db8:7::4'",
            ),
            (
                "node:\n  addr: 2001:DB8::/32\n".into(),
                &ula_v4,
                "no address of this host is in 2001:db8::/32",
                "'fd00::4'",
            ),
            (
                "node:\n  addr: 2001:DB8::/32\n".into(),
                &v4_only,
                "no usable IPv6 address",
                "stackring inspect",
            ),
            (
                "node:\n  addr: 2001:DB8::/32\n".into(),
                &[],
                "no usable IPv6 address",
                "stackring inspect",
            ),
            // A /0 holds every address of its family.
            (
                "node: {addr: '::/0'}\n".into(),
                &dual,
                "in ::/0",
                "'2001:db8::7'",
            ),
            (
                "node: {addr: 0.0.0.0/0}\n".into(),
                &dual,
                "in 0.0.0.0/0",
                "'192.0.2.10'",
            ),
            // A /128 is one address: the host's if it has it, else another of the family.
            (
                "node: {addr: '2001:db8::5/128'}\n".into(),
                &dual,
                "in 2001:db8::5/128",
                "'2001:db8::5'",
            ),
            (
                "node: {addr: '2001:db8::6/128'}\n".into(),
                &dual,
                "no address of this host is in 2001:db8::6/128",
                "'2001:db8::7'",
            ),
            // An IPv4-mapped network is the IPv4 network it maps.
            (
                "node: {addr: '::ffff:192.0.2.0/120'}\n".into(),
                &dual,
                "in 192.0.2.0/24",
                "'192.0.2.10'",
            ),
            // A zone is dropped; a link-local network holds no usable address.
            (
                "node: {addr: 'fe80::1%eth0/64'}\n".into(),
                &dual,
                "no address of this host is in fe80::/64",
                "'2001:db8::7'",
            ),
            // The Tempo keys and the external list take the same fix.
            (
                "ingester:\n  lifecycler:\n    address: 192.0.2.0/24\n".into(),
                &dual,
                "in 192.0.2.0/24",
                "'192.0.2.10'",
            ),
            (
                "node:\n  external_addr: ['2001:db8::/64']\n".into(),
                &dual,
                "in 2001:db8::/64",
                "'2001:db8::7'",
            ),
            (
                "memberlist: {advertise_addr: '2001:db8::/48'}\n".into(),
                &dual,
                "in 2001:db8::/48",
                "'2001:db8::7'",
            ),
            // 10 kB of garbage around a '/' is not a network, and is not echoed in the fix.
            (
                format!("node: {{addr: '{garbage}'}}\n"),
                &dual,
                "without a prefix length",
                "",
            ),
            (
                format!("node: {{addr: '{long_prefix}'}}\n"),
                &dual,
                "without a prefix length",
                "",
            ),
            (
                "node: {addr: '2001:db8::/129'}\n".into(),
                &dual,
                "without a prefix length",
                "",
            ),
            (
                "node: {addr: 192.0.2.0/-1}\n".into(),
                &dual,
                "without a prefix length",
                "",
            ),
        ];
        for (yaml, host, says, suggests) in &table {
            let errors = parse_str_on(yaml, "n", HostAddrs::Known(host))
                .expect_err(yaml)
                .0;
            assert_eq!(errors.len(), 1, "{yaml}: {errors:?}");
            let e = &errors[0];
            let shown = e.to_string();
            assert!(shown.len() < 600, "{} bytes: {shown}", shown.len());
            assert!(e.fix.contains(says), "{yaml} on {host:?}: {shown}");
            assert!(e.fix.contains(suggests), "{yaml} on {host:?}: {shown}");
            // The suggested address, written back in place of the network, is accepted.
            if let Some(addr) = e.fix.rsplit('\'').nth(1).filter(|_| e.fix.ends_with('\'')) {
                let addr_ip = addr.parse::<IpAddr>().unwrap_or_else(|_| panic!("{shown}"));
                assert!(host.contains(&addr_ip), "{addr} is not the host's: {shown}");
                let key = e.key.rsplit('.').next().unwrap().trim_end_matches("[0]");
                let fixed = match key {
                    "external_addr" => format!("node: {{external_addr: ['{addr}']}}"),
                    "address" => format!("lifecycler: {{address: '{addr}'}}"),
                    "advertise_addr" => format!("memberlist: {{advertise_addr: '{addr}'}}"),
                    _ => format!("node: {{addr: '{addr}'}}"),
                };
                parse_str_on(&fixed, "n", HostAddrs::Known(host))
                    .unwrap_or_else(|e| panic!("{fixed}: {e}"));
            }
        }
        // Without the host's addresses (a request about another node; the interfaces unread),
        // no address is made up from the network: the one written, if it is a host's, else
        // where to find them.
        for (yaml, fix) in [
            ("node: {addr: '2001:DB8::/32'}", "stackring inspect"),
            ("node: {addr: '2001:db8::5/64'}", "'2001:db8::5'"),
            ("node: {addr: '::/0'}", "stackring inspect"),
        ] {
            let e = parse_str(yaml, "n").unwrap_err().0.remove(0);
            assert!(e.fix.contains(fix), "{yaml}: {e}");
            assert!(!e.fix.contains("2001:db8::1'"), "{yaml}: {e}");
        }
    }
}
