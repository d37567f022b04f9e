//! The cluster's pure rules (SPEC §6): bootstrap requests in Redis Enterprise's shape, the cluster
//! record a node keeps, credentials, and the join validation an existing node applies. No I/O.

use crate::config::{advertised_refusal, ConfigError};
use crate::snapshot::Family;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// `POST /v1/bootstrap/{create_cluster,join_cluster}` body (Redis Enterprise's shape).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapRequest {
    pub action: String,
    pub cluster: ClusterSpec,
    pub credentials: CredentialsSpec,
    #[serde(default)]
    pub node: Option<NodeSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    pub name: String,
    /// For a join: addresses (or `host:port`) of existing nodes' gRPC endpoints.
    #[serde(default)]
    pub nodes: Vec<String>,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsSpec {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for CredentialsSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CredentialsSpec {{ username: {:?}, password: <hidden> }}",
            self.username
        )
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    #[serde(default)]
    pub identity: IdentitySpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySpec {
    #[serde(default)]
    pub addr: Option<String>,
    #[serde(default)]
    pub external_addr: Vec<String>,
    #[serde(default)]
    pub use_internal_ipv6: Option<bool>,
    #[serde(default)]
    pub name: Option<String>,
}

/// A bootstrap request after validation: typed values only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootstrap {
    pub cluster_name: String,
    pub seeds: Vec<String>,
    pub username: String,
    pub password: String,
    pub addr: Option<IpAddr>,
    pub external_addrs: Option<Vec<IpAddr>>,
    pub use_internal_ipv6: Option<bool>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Join,
}

/// Validates a parsed request for `action`; every problem is reported, nothing is changed.
pub fn validate_bootstrap(
    req: BootstrapRequest,
    action: Action,
) -> Result<Bootstrap, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut err = |key: &str, value: &str, problem: &str, fix: &str| {
        errors.push(ConfigError {
            key: key.into(),
            value: if value.is_empty() {
                String::new()
            } else {
                format!("'{value}'")
            },
            problem: problem.into(),
            fix: fix.into(),
        })
    };
    let expected = match action {
        Action::Create => "create_cluster",
        Action::Join => "join_cluster",
    };
    if req.action != expected {
        err(
            "action",
            &req.action,
            "does not match the endpoint",
            &format!("send action '{expected}' to this endpoint"),
        );
    }
    if !valid_name(&req.cluster.name) {
        err(
            "cluster.name",
            &req.cluster.name,
            "is not a valid cluster name",
            "use 1–63 characters from A–Z, a–z, 0–9, '-', '_' and '.'",
        );
    }
    match action {
        Action::Join if req.cluster.nodes.is_empty() => err(
            "cluster.nodes",
            "",
            "is empty",
            "name at least one existing node, e.g. ['2001:db8::10']",
        ),
        Action::Create if !req.cluster.nodes.is_empty() => err(
            "cluster.nodes",
            "",
            "is only for join_cluster",
            "remove cluster.nodes from a create_cluster request",
        ),
        _ => {}
    }
    for (i, node) in req.cluster.nodes.iter().enumerate() {
        if let Some(problem) = peer_problem(node) {
            err(
                &format!("cluster.nodes[{i}]"),
                node,
                problem,
                "write an address, '[2001:db8::10]:9095', 'host' or 'host:9095'",
            );
        }
    }
    if req.credentials.username.trim().is_empty() || req.credentials.username.len() > 128 {
        err(
            "credentials.username",
            &req.credentials.username,
            "is empty or too long",
            "use 1–128 characters",
        );
    }
    if req.credentials.password.len() < 8 || req.credentials.password.len() > 1024 {
        err(
            "credentials.password",
            "",
            "must be 8–1024 characters",
            "choose a longer password",
        );
    }
    let identity = req.node.map(|n| n.identity).unwrap_or_default();
    let mut addr = None;
    if let Some(text) = identity.addr.as_deref().filter(|t| !t.trim().is_empty()) {
        match parse_address(text) {
            Ok(ip) => match advertised_refusal(&ip) {
                Some(why) => err(
                    "node.identity.addr",
                    text,
                    why,
                    "give a routable unicast address of this node",
                ),
                None => addr = Some(ip),
            },
            Err((problem, fix)) => err("node.identity.addr", text, problem, &fix),
        }
    }
    let mut externals = Vec::new();
    for (i, text) in identity.external_addr.iter().enumerate() {
        match parse_address(text) {
            Ok(ip) if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() => err(
                &format!("node.identity.external_addr[{i}]"),
                text,
                "cannot be reached by clients (unspecified, loopback or multicast)",
                "write a unicast address clients can reach",
            ),
            Ok(ip) => externals.push(ip),
            Err((problem, fix)) => err(
                &format!("node.identity.external_addr[{i}]"),
                text,
                problem,
                &fix,
            ),
        }
    }
    if let (Some(ip), Some(true)) = (addr, identity.use_internal_ipv6) {
        if ip.is_ipv4() {
            err(
                "node.identity.addr",
                &ip.to_string(),
                "is IPv4 but node.identity.use_internal_ipv6 is true",
                "give an IPv6 address, or set use_internal_ipv6 to false",
            );
        }
    }
    if let Some(name) = &identity.name {
        if !valid_name(name) {
            err(
                "node.identity.name",
                name,
                "is not a valid node name",
                "use 1–63 characters from A–Z, a–z, 0–9, '-', '_' and '.'",
            );
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Bootstrap {
        cluster_name: req.cluster.name,
        seeds: req.cluster.nodes,
        username: req.credentials.username,
        password: req.credentials.password,
        addr,
        external_addrs: (!identity.external_addr.is_empty()).then_some(externals),
        use_internal_ipv6: identity.use_internal_ipv6,
        name: identity.name,
    })
}

/// An address, or why the text is not one (a CIDR such as `2001:DB8::/32` is the classic mistake).
pub fn parse_address(text: &str) -> Result<IpAddr, (&'static str, String)> {
    let t = text.trim();
    if let Some((bare, _)) = t.split_once('/') {
        return Err((
            "is a network (CIDR), not an address",
            format!("write a single address without the prefix length, e.g. '{bare}'"),
        ));
    }
    t.parse::<IpAddr>().map_err(|_| {
        (
            "is not an IP address",
            "write an address such as 192.0.2.10 or 2001:db8::10".to_string(),
        )
    })
}

fn peer_problem(text: &str) -> Option<&'static str> {
    let t = text.trim();
    if t.is_empty() {
        Some("is empty")
    } else if t.contains('/') {
        Some("is a network (CIDR), not a node address")
    } else if t.contains(char::is_whitespace) {
        Some("contains whitespace")
    } else if t.parse::<IpAddr>().is_err() && t.matches(':').count() > 1 && !t.starts_with('[') {
        Some("is ambiguous: bracket an IPv6 address that has a port")
    } else {
        None
    }
}

/// Cluster and node names: what fits in a DNS label and a ring id.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// What a node remembers about its cluster (persisted in `<state_dir>/cluster.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterRecord {
    pub name: String,
    /// Fixed at create time; never changes in a running cluster.
    pub family: Family,
    pub use_internal_ipv6: bool,
    pub username: String,
    /// argon2id PHC string: the password itself is never stored or logged.
    pub password_hash: String,
    /// This node's id in the cluster.
    pub node_id: String,
    /// This node's overrides from the bootstrap request.
    #[serde(default)]
    pub node_addr: Option<IpAddr>,
    #[serde(default)]
    pub external_addrs: Option<Vec<IpAddr>>,
    /// Gossip addresses to rejoin through after a restart.
    #[serde(default)]
    pub seeds: Vec<String>,
    /// Per admin change kind (`addr`, `external_addrs`), the time (ms) of the newest one applied.
    #[serde(default)]
    pub applied: std::collections::BTreeMap<String, u64>,
}

pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

pub fn verify_password(password: &str, phc: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(phc)
        .map(|h| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// What a joiner tells the node it contacts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinerFacts {
    pub cluster_name: String,
    pub node_id: String,
    pub has_ipv4: bool,
    pub has_ipv6: bool,
    pub use_internal_ipv6: bool,
}

/// Why a join is refused: Redis Enterprise's `NodeBootstrapError` with a sub-code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JoinRefusal {
    pub error_code: &'static str,
    pub sub_code: &'static str,
    pub description: String,
}

fn refuse(sub_code: &'static str, description: String) -> JoinRefusal {
    JoinRefusal {
        error_code: "NodeBootstrapError",
        sub_code,
        description,
    }
}

/// The contacted node's checks, in the order an operator would fix them.
pub fn validate_join(
    record: &ClusterRecord,
    joiner: &JoinerFacts,
    username: &str,
    password: &str,
    live_ids: &[String],
) -> Result<(), JoinRefusal> {
    if username != record.username || !verify_password(password, &record.password_hash) {
        return Err(refuse(
            "invalid_credentials",
            "the cluster refused the credentials: check username and password".into(),
        ));
    }
    if joiner.cluster_name != record.name {
        return Err(refuse(
            "cluster_name_mismatch",
            format!(
                "this node belongs to cluster '{}', not '{}'",
                record.name, joiner.cluster_name
            ),
        ));
    }
    let host = |j: &JoinerFacts| match (j.has_ipv4, j.has_ipv6) {
        (true, true) => "dual-stack",
        (true, false) => "IPv4-only",
        (false, true) => "IPv6-only",
        (false, false) => "address-less",
    };
    match record.family {
        Family::Ipv6 if !joiner.has_ipv6 => {
            return Err(refuse(
                "ipv4_only_node_in_ipv6_cluster",
                format!(
                    "cluster '{}' uses IPv6 for internal traffic but the joining node '{}' is {} (no usable IPv6 address): give it a global IPv6 address",
                    record.name, joiner.node_id, host(joiner)
                ),
            ))
        }
        Family::Ipv4 if !joiner.has_ipv4 => {
            return Err(refuse(
                "ipv6_only_node_in_ipv4_cluster",
                format!(
                    "cluster '{}' uses IPv4 for internal traffic but the joining node '{}' is {} (no usable IPv4 address): give it an IPv4 address, or create an IPv6 cluster",
                    record.name, joiner.node_id, host(joiner)
                ),
            ))
        }
        _ => {}
    }
    if joiner.use_internal_ipv6 != record.use_internal_ipv6 {
        return Err(refuse(
            "use_internal_ipv6_mismatch",
            format!(
                "cluster '{}' has use_internal_ipv6={} (internal family {}) but the joining node set use_internal_ipv6={} (it would use {}): set the same value",
                record.name,
                record.use_internal_ipv6,
                record.family,
                joiner.use_internal_ipv6,
                if joiner.use_internal_ipv6 { Family::Ipv6 } else if joiner.has_ipv4 { Family::Ipv4 } else { Family::Ipv6 },
            ),
        ));
    }
    if live_ids.contains(&joiner.node_id) {
        return Err(refuse(
            "node_name_taken",
            format!(
                "a live node of cluster '{}' is already named '{}': choose another name",
                record.name, joiner.node_id
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> BootstrapRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn bootstrap_request_validation_table() {
        let ok_create = r#"{"action":"create_cluster","cluster":{"name":"c1"},"credentials":{"username":"admin","password":"secret-pass"}}"#;
        assert!(validate_bootstrap(request(ok_create), Action::Create).is_ok());
        let table: &[(&str, Action, &str, &str)] = &[
            (
                r#"{"action":"create_cluster","cluster":{"name":"c1"},"credentials":{"username":"a","password":"secret-pass"},"node":{"identity":{"addr":"2001:DB8::/32"}}}"#,
                Action::Create,
                "node.identity.addr",
                "CIDR",
            ),
            (
                r#"{"action":"create_cluster","cluster":{"name":"c1"},"credentials":{"username":"a","password":"secret-pass"},"node":{"identity":{"addr":"::"}}}"#,
                Action::Create,
                "node.identity.addr",
                "unspecified",
            ),
            (
                r#"{"action":"create_cluster","cluster":{"name":"c1"},"credentials":{"username":"a","password":"secret-pass"},"node":{"identity":{"external_addr":["198.51.100.0/24"]}}}"#,
                Action::Create,
                "node.identity.external_addr[0]",
                "CIDR",
            ),
            (
                r#"{"action":"create_cluster","cluster":{"name":"c1"},"credentials":{"username":"a","password":"secret-pass"},"node":{"identity":{"addr":"192.0.2.5","use_internal_ipv6":true}}}"#,
                Action::Create,
                "node.identity.addr",
                "IPv4",
            ),
            (
                r#"{"action":"join_cluster","cluster":{"name":"c1"},"credentials":{"username":"a","password":"secret-pass"}}"#,
                Action::Create,
                "action",
                "does not match",
            ),
            (
                r#"{"action":"join_cluster","cluster":{"name":"c1"},"credentials":{"username":"a","password":"secret-pass"}}"#,
                Action::Join,
                "cluster.nodes",
                "empty",
            ),
            (
                r#"{"action":"join_cluster","cluster":{"name":"c1","nodes":["2001:db8::1:95000"]},"credentials":{"username":"a","password":"secret-pass"}}"#,
                Action::Join,
                "cluster.nodes[0]",
                "ambiguous",
            ),
            (
                r#"{"action":"create_cluster","cluster":{"name":"bad name"},"credentials":{"username":"a","password":"secret-pass"}}"#,
                Action::Create,
                "cluster.name",
                "not a valid",
            ),
            (
                r#"{"action":"create_cluster","cluster":{"name":"c1"},"credentials":{"username":"a","password":"short"}}"#,
                Action::Create,
                "credentials.password",
                "8–1024",
            ),
        ];
        for (json, action, key, problem) in table {
            let errs = validate_bootstrap(request(json), *action).unwrap_err();
            assert!(
                errs.iter()
                    .any(|e| e.key == *key && e.problem.contains(problem)),
                "{json}: {errs:#?}"
            );
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let json = r#"{"action":"create_cluster","cluster":{"name":"c1","colour":"red"},"credentials":{"username":"a","password":"secret-pass"}}"#;
        let err = serde_json::from_str::<BootstrapRequest>(json)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `colour`"), "{err}");
    }

    #[test]
    fn credentials_are_hashed_and_hidden() {
        let hash = hash_password("secret-pass").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(!hash.contains("secret-pass"));
        assert!(verify_password("secret-pass", &hash));
        assert!(!verify_password("wrong-pass", &hash));
        let spec = CredentialsSpec {
            username: "admin".into(),
            password: "secret-pass".into(),
        };
        assert!(!format!("{spec:?}").contains("secret-pass"));
    }

    #[test]
    fn join_refusals_table() {
        let v6 = ClusterRecord {
            name: "c1".into(),
            family: Family::Ipv6,
            use_internal_ipv6: false,
            username: "admin".into(),
            password_hash: hash_password("secret-pass").unwrap(),
            node_id: "n1".into(),
            node_addr: None,
            external_addrs: None,
            seeds: vec![],
            applied: Default::default(),
        };
        let v4 = ClusterRecord {
            family: Family::Ipv4,
            ..v6.clone()
        };
        let dual_v6 = ClusterRecord {
            use_internal_ipv6: true,
            ..v6.clone()
        };
        let joiner = |v4: bool, v6: bool, flag: bool, id: &str| JoinerFacts {
            cluster_name: "c1".into(),
            node_id: id.into(),
            has_ipv4: v4,
            has_ipv6: v6,
            use_internal_ipv6: flag,
        };
        let live = vec!["n1".to_string()];
        let table: Vec<(&ClusterRecord, JoinerFacts, &str, Result<(), &str>)> = vec![
            (&v6, joiner(false, true, false, "n2"), "secret-pass", Ok(())),
            (
                &v6,
                joiner(false, true, false, "n2"),
                "wrong-pass",
                Err("invalid_credentials"),
            ),
            (
                &v6,
                joiner(true, false, false, "n2"),
                "secret-pass",
                Err("ipv4_only_node_in_ipv6_cluster"),
            ),
            (
                &v4,
                joiner(false, true, false, "n2"),
                "secret-pass",
                Err("ipv6_only_node_in_ipv4_cluster"),
            ),
            (&v4, joiner(true, true, false, "n2"), "secret-pass", Ok(())),
            (
                &dual_v6,
                joiner(true, true, false, "n2"),
                "secret-pass",
                Err("use_internal_ipv6_mismatch"),
            ),
            (
                &dual_v6,
                joiner(true, true, true, "n2"),
                "secret-pass",
                Ok(()),
            ),
            (
                &v4,
                joiner(true, true, true, "n2"),
                "secret-pass",
                Err("use_internal_ipv6_mismatch"),
            ),
            (
                &v6,
                joiner(false, true, false, "n1"),
                "secret-pass",
                Err("node_name_taken"),
            ),
        ];
        for (record, facts, password, want) in table {
            let got = validate_join(record, &facts, "admin", password, &live);
            match (&got, want) {
                (Ok(()), Ok(())) => {}
                (Err(r), Err(code)) => {
                    assert_eq!(r.sub_code, code, "{facts:?}");
                    assert_eq!(r.error_code, "NodeBootstrapError");
                    if code.contains("cluster") {
                        assert!(
                            r.description.contains("IPv4") && r.description.contains("IPv6"),
                            "{}",
                            r.description
                        );
                    }
                }
                _ => panic!("{facts:?}: got {got:?}, want {want:?}"),
            }
        }
    }
}
