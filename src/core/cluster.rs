//! The cluster's pure rules (SPEC §6): bootstrap requests in Redis Enterprise's shape, the cluster
//! record a node keeps, credentials, and the join validation an existing node applies. No I/O.

use crate::core::config::{ConfigError, Overrides};
use crate::core::members::NodeEntry;
use crate::core::net::{
    parse_address, parse_address_on, valid_name, AddrRole, HostAddrs, NAME_RULE,
};
use crate::core::peer::PeerAddr;
use crate::core::refusal::{ErrorBody, Refusal};
use crate::core::snapshot::Family;
use crate::core::token::{JoinToken, TOKEN_FIX};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// `POST /v1/bootstrap/{create_cluster,join_cluster}` body (Redis Enterprise's shape).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BootstrapRequest {
    pub(crate) action: String,
    pub(crate) cluster: ClusterSpec,
    /// Required to create; to join, these or `cluster.join_token`.
    #[serde(default)]
    pub(crate) credentials: Option<CredentialsSpec>,
    #[serde(default)]
    pub(crate) node: Option<NodeSpec>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// Required to create; optional to join (the joiner learns it; a given one must match).
    #[serde(default)]
    pub(crate) name: Option<String>,
    /// For a join: existing nodes' addresses (their gRPC port by default) or `host:port`.
    #[serde(default)]
    pub(crate) nodes: Vec<String>,
    /// For a join: the cluster CA's SPKI pin (`sha256:<hex>` or `sha256//<base64>`, as
    /// `stackring inspect` on a member prints it). Given, the joiner refuses any other cluster
    /// before it sends the credentials; absent, it trusts the CA it meets on first use.
    #[serde(default)]
    pub(crate) ca_pin: Option<String>,
    /// For a join, instead of credentials: a token from `stackring cluster join-token` on a
    /// member (`core::token`), which names the seed and pins the CA.
    #[serde(default)]
    #[schema(format = Password)]
    pub(crate) join_token: Option<String>,
}

#[derive(Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialsSpec {
    pub(crate) username: String,
    #[schema(format = Password)]
    pub(crate) password: String,
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

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    #[serde(default)]
    pub(crate) identity: IdentitySpec,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentitySpec {
    #[serde(default)]
    pub(crate) addr: Option<String>,
    #[serde(default)]
    pub(crate) external_addr: Vec<String>,
    #[serde(default)]
    pub(crate) use_internal_ipv6: Option<bool>,
    #[serde(default)]
    pub(crate) name: Option<String>,
}

/// A bootstrap request after validation: typed values only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootstrap {
    /// `None` on a join that did not name the cluster.
    pub cluster_name: Option<String>,
    pub seeds: Seeds,
    pub(crate) auth: JoinAuth,
    pub addr: Option<IpAddr>,
    pub external_addrs: Option<Vec<IpAddr>>,
    pub use_internal_ipv6: Option<bool>,
    pub name: Option<String>,
    /// The CA a joiner accepts (see `ClusterSpec::ca_pin`).
    pub(crate) ca_pin: Option<crate::core::pin::SpkiPin>,
}

/// What a node proves itself with: the cluster's credentials, or (to join) a join token.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum JoinAuth {
    Credentials { username: String, password: String },
    Token(crate::core::token::TokenCredential),
}

impl std::fmt::Debug for JoinAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JoinAuth::Credentials { username, .. } => {
                write!(
                    f,
                    "Credentials {{ username: {username:?}, password: <hidden> }}"
                )
            }
            JoinAuth::Token(t) => write!(f, "Token {{ id: {} }}", t.id),
        }
    }
}

/// Where a joiner finds the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seeds {
    /// `cluster.nodes` of a `join_cluster` request: node addresses; the port, if any, is gRPC's.
    Nodes(Vec<PeerAddr>),
    /// `memberlist.join_members`: gossip addresses (dskit's meaning); the gRPC endpoint is asked
    /// of the member at that address.
    Gossip(Vec<PeerAddr>),
}

impl Seeds {
    /// No seed named (a create).
    pub fn is_empty(&self) -> bool {
        match self {
            Seeds::Nodes(v) | Seeds::Gossip(v) => v.is_empty(),
        }
    }

    /// The key the operator wrote them under, for error messages.
    pub(crate) fn key(&self) -> &'static str {
        match self {
            Seeds::Nodes(_) => "cluster.nodes",
            Seeds::Gossip(_) => "memberlist.join_members",
        }
    }
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
    validate_bootstrap_on(req, action, HostAddrs::Unknown)
}

/// [`validate_bootstrap`] on the node the request bootstraps: `node.identity` is about this host,
/// so a network written there gets one of `host`'s usable addresses as its fix.
pub(crate) fn validate_bootstrap_on(
    req: BootstrapRequest,
    action: Action,
    host: HostAddrs<'_>,
) -> Result<Bootstrap, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut err = |key: &str, value: &str, problem: &str, fix: &str| {
        errors.push(ConfigError {
            key: key.into(),
            value: if value.is_empty() {
                String::new()
            } else {
                format!("'{}'", crate::core::config::echo(value))
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
    match (&req.cluster.name, action) {
        (None, Action::Create) => err(
            "cluster.name",
            "",
            "is missing",
            "name the cluster, e.g. \"cluster\": {\"name\": \"cluster.fqdn\"}",
        ),
        (None, Action::Join) => {}
        (Some(name), _) if !valid_name(name) => err(
            "cluster.name",
            name,
            "is not a valid cluster name",
            NAME_RULE,
        ),
        (Some(_), _) => {}
    }
    let mut token = None;
    match (&req.cluster.join_token, action) {
        (Some(_), Action::Create) => err(
            "cluster.join_token",
            "",
            "is only for join_cluster",
            "remove cluster.join_token from a create_cluster request; a create takes credentials",
        ),
        (Some(text), Action::Join) => match text.parse::<JoinToken>() {
            // The value is a secret: never echoed.
            Ok(t) => token = Some(t),
            Err(problem) => err("cluster.join_token", "", &problem, TOKEN_FIX),
        },
        (None, _) => {}
    }
    match action {
        Action::Join if req.cluster.nodes.is_empty() && req.cluster.join_token.is_none() => err(
            "cluster.nodes",
            "",
            "is empty",
            "name at least one existing node, e.g. ['2001:db8::10'] (or join with cluster.join_token, which names one)",
        ),
        Action::Create if !req.cluster.nodes.is_empty() => err(
            "cluster.nodes",
            "",
            "is only for join_cluster",
            "remove cluster.nodes from a create_cluster request",
        ),
        _ => {}
    }
    let mut ca_pin = None;
    match (&req.cluster.ca_pin, action) {
        (Some(_), Action::Create) => err(
            "cluster.ca_pin",
            "",
            "is only for join_cluster",
            "remove cluster.ca_pin from a create_cluster request (the new cluster makes its CA)",
        ),
        (Some(text), Action::Join) => match text.parse::<crate::core::pin::SpkiPin>() {
            Ok(pin) => ca_pin = Some(pin),
            Err(_) => err(
                "cluster.ca_pin",
                text,
                "is not an SPKI pin",
                "write sha256:<64 lowercase hex digits> or sha256//<base64>, as `stackring inspect` on a member prints it",
            ),
        },
        (None, _) => {}
    }
    let mut seeds = Vec::new();
    for (i, node) in req.cluster.nodes.iter().enumerate() {
        match PeerAddr::parse(node) {
            Ok(peer) => seeds.push(peer),
            Err(p) => err(
                &format!("cluster.nodes[{i}]"),
                node,
                p.problem,
                "write a node's internal address ('2001:db8::10'), '[2001:db8::10]:9095', 'host' or 'host:9095'",
            ),
        }
    }
    if let (Some(t), Some(pin)) = (&token, &ca_pin) {
        if t.ca_pin != *pin {
            err(
                "cluster.ca_pin",
                &pin.to_string(),
                &format!("differs from the pin in cluster.join_token ({})", t.ca_pin),
                "leave cluster.ca_pin out (the token pins the CA), or use a token of that cluster",
            );
        }
    }
    match (&req.credentials, &req.cluster.join_token) {
        (Some(_), Some(_)) => err(
            "credentials",
            "",
            "is given with cluster.join_token",
            "join with one of them: the token alone, or the credentials alone",
        ),
        (None, None) => err(
            "credentials",
            "",
            "is missing",
            match action {
                Action::Create => "give the cluster's admin credentials, e.g. \"credentials\": {\"username\": \"admin\", \"password\": \"…\"}",
                Action::Join => "give the cluster's admin credentials, or a token from `stackring cluster join-token` on a member as cluster.join_token",
            },
        ),
        _ => {}
    }
    if let Some(c) = &req.credentials {
        if c.username.trim().is_empty() || c.username.len() > 128 {
            err(
                "credentials.username",
                &c.username,
                "is empty or too long",
                "use 1–128 characters",
            );
        }
        if c.password.len() < 8 || c.password.len() > 1024 {
            err(
                "credentials.password",
                "",
                "must be 8–1024 characters",
                "choose a longer password",
            );
        }
    }
    let identity = req.node.map(|n| n.identity).unwrap_or_default();
    let mut addr = None;
    if let Some(text) = identity.addr.as_deref().filter(|t| !t.trim().is_empty()) {
        match parse_address_on(text, AddrRole::Advertised, host) {
            Ok(ip) => addr = Some(ip),
            Err(p) => err("node.identity.addr", text, &p.problem, &p.fix),
        }
    }
    let mut externals = Vec::new();
    if identity.external_addr.len() > MAX_EXTERNAL_ADDRS {
        err(
            "node.identity.external_addr",
            &format!("{} addresses", identity.external_addr.len()),
            &format!("is more than the {MAX_EXTERNAL_ADDRS} a node may have"),
            &format!("give at most {MAX_EXTERNAL_ADDRS}"),
        );
    }
    for (i, text) in identity
        .external_addr
        .iter()
        .enumerate()
        .take(MAX_EXTERNAL_ADDRS + 1)
    {
        match parse_address_on(text, AddrRole::External, host) {
            Ok(ip) => externals.push(ip),
            Err(p) => err(
                &format!("node.identity.external_addr[{i}]"),
                text,
                &p.problem,
                &p.fix,
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
                NAME_RULE,
            );
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let auth = match (req.credentials, token) {
        (Some(c), _) => JoinAuth::Credentials {
            username: c.username,
            password: c.password,
        },
        (None, Some(t)) => {
            // The token names where to redeem it and which CA to accept; `cluster.nodes`, if
            // given, says how this node reaches that member (e.g. through a proxy).
            if seeds.is_empty() {
                seeds.push(t.seed.clone());
            }
            ca_pin = Some(t.ca_pin);
            JoinAuth::Token(t.credential)
        }
        (None, None) => {
            return Err(vec![ConfigError {
                key: "credentials".into(),
                value: String::new(),
                problem: "is missing".into(),
                fix: "give credentials or cluster.join_token".into(),
            }])
        }
    };
    Ok(Bootstrap {
        ca_pin,
        cluster_name: req.cluster.name,
        seeds: Seeds::Nodes(seeds),
        auth,
        addr,
        external_addrs: (!identity.external_addr.is_empty()).then_some(externals),
        use_internal_ipv6: identity.use_internal_ipv6,
        name: identity.name,
    })
}

/// The bootstrap a `cluster:` section declares, with its secret read (`DeclaredSecret::parse`):
/// a create, a join through `memberlist.join_members` with credentials (pinned when
/// `cluster.ca_pin` is given), or a join at the member a token names, pinned by the token.
pub(crate) fn declared_request(
    declared: &crate::core::config::DeclaredCluster,
    proof: crate::core::config::DeclaredProof,
    join_members: Vec<PeerAddr>,
) -> Result<Bootstrap, String> {
    use crate::core::config::DeclaredProof;
    let (auth, seeds, ca_pin) = match proof {
        DeclaredProof::Credentials { username, password } => (
            JoinAuth::Credentials { username, password },
            Seeds::Gossip(if declared.create {
                vec![]
            } else {
                join_members
            }),
            declared.ca_pin,
        ),
        DeclaredProof::Token(token) => {
            if declared.create {
                return Err("cluster.join_token_file is only for a node that joins; fix: give the creating node cluster.credentials_file".into());
            }
            if let Some(pin) = declared.ca_pin.filter(|p| *p != token.ca_pin) {
                return Err(format!("cluster.ca_pin {pin} differs from the pin in the join token ({}); fix: leave cluster.ca_pin out (the token pins the CA), or use a token of that cluster", token.ca_pin));
            }
            (
                JoinAuth::Token(token.credential),
                Seeds::Nodes(vec![token.seed]),
                Some(token.ca_pin),
            )
        }
    };
    Ok(Bootstrap {
        ca_pin,
        cluster_name: declared.name.clone(),
        seeds,
        auth,
        addr: None,
        external_addrs: None,
        use_internal_ipv6: None,
        name: None,
    })
}

/// What a node remembers about its cluster (persisted in `<state_dir>/cluster.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClusterRecord {
    pub(crate) name: String,
    /// Fixed at create time; never changes in a running cluster.
    pub(crate) family: Family,
    pub(crate) use_internal_ipv6: bool,
    pub(crate) username: String,
    /// argon2id PHC string: the password itself is never stored or logged.
    pub(crate) password_hash: String,
    /// This node's id in the cluster.
    pub(crate) node_id: String,
    /// This node's overrides from the bootstrap request.
    #[serde(default)]
    pub(crate) node_addr: Option<IpAddr>,
    #[serde(default)]
    pub(crate) external_addrs: Option<Vec<IpAddr>>,
    /// Gossip addresses to rejoin through after a restart.
    #[serde(default)]
    pub(crate) seeds: Vec<String>,
    /// Per admin change kind (`addr`, `external_addrs`), the time (ms) of the newest one applied.
    #[serde(default)]
    pub(crate) applied: std::collections::BTreeMap<String, u64>,
    /// When this node joined (or created) the cluster: dskit's "Registered At", which admin
    /// changes and restarts do not move. 0 in records written before it was kept.
    #[serde(default)]
    pub(crate) registered_unix: u64,
    /// Increases by one with every admin change applied to this node (external addresses,
    /// internal address): the answer to a change carries it, and the entry publishes it.
    #[serde(default)]
    pub(crate) admin_version: u64,
    /// The keys gossip is sealed with (`core::seal`): made by the node that created the cluster,
    /// handed to a joiner in the `Join` reply. Absent in records written before gossip was sealed.
    #[serde(default)]
    pub(crate) gossip_keys: Option<crate::core::seal::Keyring>,
}

/// `node <ID> external_addr add|set|remove`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExternalOp {
    Add,
    Set,
    Remove,
}

impl ExternalOp {
    pub fn parse(text: &str) -> Option<ExternalOp> {
        match text {
            "add" => Some(ExternalOp::Add),
            "set" => Some(ExternalOp::Set),
            "remove" => Some(ExternalOp::Remove),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExternalOp::Add => "add",
            ExternalOp::Set => "set",
            ExternalOp::Remove => "remove",
        }
    }
}

/// External addresses one node may have. Its entry, with them, travels whole in one gossip UDP
/// datagram: an entry with thousands of them never reached the other members (they kept the old
/// list for good), and no client needs more than a few.
pub(crate) const MAX_EXTERNAL_ADDRS: usize = 64;

/// Why an admin change is refused: a sub-code and words naming the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminRefusal {
    pub sub_code: &'static str,
    pub description: String,
}

/// The external addresses after `op` (Redis Enterprise's `rladmin node <ID> external_addr`).
/// Pure, so every node computes the same result from the same list.
pub fn apply_external(
    node: &str,
    current: &[IpAddr],
    op: ExternalOp,
    addrs: &[IpAddr],
) -> Result<Vec<IpAddr>, AdminRefusal> {
    let mut next = current.to_vec();
    match op {
        ExternalOp::Set => {
            next.clear();
            for a in addrs {
                if !next.contains(a) {
                    next.push(*a);
                }
            }
        }
        ExternalOp::Add => {
            for a in addrs {
                if !next.contains(a) {
                    next.push(*a);
                }
            }
        }
        ExternalOp::Remove => {
            let missing: Vec<String> = addrs
                .iter()
                .filter(|a| !current.contains(a))
                .map(|a| a.to_string())
                .collect();
            if !missing.is_empty() {
                return Err(AdminRefusal {
                    sub_code: "not_an_external_addr",
                    description: format!(
                        "node '{node}' has no external address {}",
                        missing.join(", ")
                    ),
                });
            }
            next.retain(|a| !addrs.contains(a));
            if next.is_empty() {
                return Err(AdminRefusal {
                    sub_code: "no_external_addr_left",
                    description: format!("removing these would leave node '{node}' without an external address; fix: use `set`"),
                });
            }
        }
    }
    if next.len() > MAX_EXTERNAL_ADDRS {
        return Err(AdminRefusal {
            sub_code: "too_many_external_addrs",
            description: format!(
                "node '{node}' would have {} external addresses, more than the {MAX_EXTERNAL_ADDRS} a node may have; fix: remove some first, or use `set` with fewer",
                next.len()
            ),
        });
    }
    Ok(next)
}

/// Proof that an admin change relayed from one member to another comes from a member: a keyed
/// BLAKE2b over the change, keyed with the cluster's credential hash that every member holds
/// (and nobody outside the cluster). Node certificates replace it with mutual TLS.
pub fn relay_proof<S: AsRef<str>>(key: &str, fields: &[S]) -> String {
    use blake2::digest::{Mac, Update};
    use blake2::Blake2bMac512;
    // BLAKE2b takes keys up to 64 bytes: hash the PHC string down to one.
    let key = blake2::Blake2b512::default()
        .chain(b"stackring relay key v1\0")
        .chain(key.as_bytes());
    let key = blake2::digest::FixedOutput::finalize_fixed(key);
    let mut mac = <Blake2bMac512 as blake2::digest::KeyInit>::new_from_slice(&key)
        .expect("64 bytes is a valid BLAKE2b key");
    for f in fields {
        let f = f.as_ref();
        Mac::update(&mut mac, &(f.len() as u64).to_le_bytes());
        Mac::update(&mut mac, f.as_bytes());
    }
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Constant-time comparison of two proofs.
pub fn proofs_match(a: &str, b: &str) -> bool {
    constant_time_eq(a.as_bytes(), b.as_bytes())
}

/// Byte strings compared in time that depends only on their lengths' maximum, not on where they
/// differ (the username must not be guessable by timing, any more than the password).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().max(b.len());
    let mut diff = (a.len() != b.len()) as u8;
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// What the credentials check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Valid,
    WrongUsername,
    WrongPassword,
    /// No credentials, or not in the `user:password` shape.
    Missing,
    /// A join token this member did not print (or already redeemed, or revoked).
    WrongToken,
}

pub(crate) fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

pub(crate) fn verify_password(password: &str, phc: &str) -> bool {
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
pub(crate) struct JoinerFacts {
    /// `None`: the joiner did not name the cluster (it learns the name).
    pub(crate) cluster_name: Option<String>,
    pub(crate) node_id: String,
    pub(crate) has_ipv4: bool,
    pub(crate) has_ipv6: bool,
    /// `None`: not set by the joiner, which then takes the cluster's family (Redis Enterprise:
    /// "Do not manually set use_internal_ipv6 when joining").
    pub(crate) use_internal_ipv6: Option<bool>,
}

/// Why a join is refused: Redis Enterprise's `NodeBootstrapError` with a sub-code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct JoinRefusal {
    pub(crate) error_code: &'static str,
    pub(crate) sub_code: &'static str,
    pub(crate) description: String,
}

fn refuse(sub_code: &'static str, description: String) -> JoinRefusal {
    JoinRefusal {
        error_code: "NodeBootstrapError",
        sub_code,
        description,
    }
}

/// `invalid_credentials`: the same words whether the username or the password was wrong.
pub(crate) fn invalid_credentials() -> JoinRefusal {
    refuse(
        "invalid_credentials",
        "the cluster refused the credentials: check username and password".into(),
    )
}

/// A join token refused (`core::token`), in the join's words.
pub(crate) fn token_refused(r: crate::core::token::TokenRefusal) -> JoinRefusal {
    refuse(r.sub_code(), r.description())
}

/// Checks `username`/`password` against the record in constant time: argon2 runs whether or not
/// the username matches (a wrong username costs what a wrong password costs, so timing does not
/// tell which usernames exist), and the username is compared without an early exit.
pub(crate) fn credentials(record: &ClusterRecord, username: &str, password: &str) -> Outcome {
    let user_ok = constant_time_eq(username.as_bytes(), record.username.as_bytes());
    let password_ok = verify_password(password, &record.password_hash);
    match (user_ok, password_ok) {
        (true, true) => Outcome::Valid,
        (false, _) => Outcome::WrongUsername,
        (true, false) => Outcome::WrongPassword,
    }
}

/// The joiner's facts against the cluster, once its credentials are known to be good.
pub(crate) fn validate_joiner(
    record: &ClusterRecord,
    joiner: &JoinerFacts,
    live_ids: &[String],
) -> Result<(), JoinRefusal> {
    if let Some(name) = joiner.cluster_name.as_ref().filter(|n| **n != record.name) {
        return Err(refuse(
            "cluster_name_mismatch",
            format!(
                "this node belongs to cluster '{}', not '{name}': fix the name, or leave cluster.name out to join whatever cluster the node belongs to",
                record.name
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
    if let Some(flag) = joiner
        .use_internal_ipv6
        .filter(|f| *f != record.use_internal_ipv6)
    {
        return Err(refuse(
            "use_internal_ipv6_mismatch",
            format!(
                "cluster '{}' has use_internal_ipv6={} (internal family {}) but the joining node set use_internal_ipv6={flag} (it would use {}): leave use_internal_ipv6 out when joining (the node takes the cluster's family), or set it to {}",
                record.name,
                record.use_internal_ipv6,
                record.family,
                if flag { Family::Ipv6 } else if joiner.has_ipv4 { Family::Ipv4 } else { Family::Ipv6 },
                record.use_internal_ipv6,
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

/// `GET /v1/bootstrap`'s `state`, as Redis Enterprise reports it. One bootstrap at a time: a node
/// starts one only from `idle` or after a failed one (`error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum BootstrapState {
    Idle,
    CreatingCluster,
    JoiningCluster,
    Completed,
    Error,
}

impl BootstrapState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            BootstrapState::Idle => "idle",
            BootstrapState::CreatingCluster => "creating_cluster",
            BootstrapState::JoiningCluster => "joining_cluster",
            BootstrapState::Completed => "completed",
            BootstrapState::Error => "error",
        }
    }
}

/// The state and, after a failure, why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub(crate) struct BootstrapStatus {
    pub(crate) state: BootstrapState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<ErrorBody>,
}

impl BootstrapStatus {
    /// At start: `completed` with a persisted record, `idle` without.
    pub(crate) fn at_start(member: bool) -> BootstrapStatus {
        let state = if member {
            BootstrapState::Completed
        } else {
            BootstrapState::Idle
        };
        BootstrapStatus { state, error: None }
    }

    /// The transition a create or join request asks for, or why it is refused.
    pub(crate) fn start(&self, action: Action) -> Result<BootstrapStatus, Refusal> {
        match self.state {
            BootstrapState::Idle | BootstrapState::Error => Ok(BootstrapStatus {
                state: match action {
                    Action::Create => BootstrapState::CreatingCluster,
                    Action::Join => BootstrapState::JoiningCluster,
                },
                error: None,
            }),
            current => Err(Refusal::bootstrap(
                "already_bootstrapped",
                format!("this node is already {}", current.as_str()),
            )),
        }
    }

    /// The end of a bootstrap: `completed`, or `error` with the refusal's body.
    pub(crate) fn finish(result: &Result<(), Refusal>) -> BootstrapStatus {
        match result {
            Ok(()) => BootstrapStatus {
                state: BootstrapState::Completed,
                error: None,
            },
            Err(r) => BootstrapStatus {
                state: BootstrapState::Error,
                error: Some(r.body.clone()),
            },
        }
    }
}

/// An admin change waiting in gossip for a node that is down, as the node that took it gossips it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Override {
    pub value: serde_json::Value,
    pub at_ms: u64,
}

/// The newest change made after `after_ms` among the values read out of gossip keys; values that
/// are not changes (another version's, a corrupt one, a forgery's) are skipped.
pub fn newest_override<'a>(
    values: impl IntoIterator<Item = &'a str>,
    after_ms: u64,
) -> Option<Override> {
    values
        .into_iter()
        .filter_map(|v| serde_json::from_str::<Override>(v).ok())
        .filter(|o| o.at_ms > after_ms)
        .max_by_key(|o| o.at_ms)
}

/// What a node that was down does with the admin changes gossiped for it: for each kind
/// (`addr`, `external_addrs`), the newest change made after the one it last applied, if its value
/// is of the right type (anything can arrive over gossip), applied once and counted in
/// `admin_version`. `waiting` yields `(kind, gossiped value)`. Returns the kinds applied.
pub(crate) fn apply_gossiped_changes<'a>(
    record: &mut ClusterRecord,
    waiting: impl Iterator<Item = (&'a str, &'a str)> + Clone,
) -> Vec<&'static str> {
    let mut applied = vec![];
    for what in ["addr", "external_addrs"] {
        let after = record.applied.get(what).copied().unwrap_or(0);
        let values = waiting.clone().filter(|(k, _)| *k == what).map(|(_, v)| v);
        let newest = values
            .filter_map(|v| serde_json::from_str::<Override>(v).ok())
            .filter(|o| o.at_ms > after)
            .filter(|o| match what {
                "addr" => serde_json::from_value::<IpAddr>(o.value.clone()).is_ok(),
                _ => serde_json::from_value::<Vec<IpAddr>>(o.value.clone()).is_ok(),
            })
            .max_by_key(|o| o.at_ms);
        let Some(change) = newest else { continue };
        match what {
            "addr" => record.node_addr = serde_json::from_value(change.value).ok(),
            _ => record.external_addrs = serde_json::from_value(change.value).ok(),
        }
        record.applied.insert(what.to_string(), change.at_ms);
        record.admin_version += 1;
        applied.push(what);
    }
    applied
}

/// The external addresses a change for a node that is down starts from: the newest change already
/// waiting for it (so that back-to-back changes build on each other), else what it published.
pub(crate) fn pending_external_addrs<'a>(
    waiting: impl IntoIterator<Item = &'a str>,
    published: &NodeEntry,
) -> Vec<IpAddr> {
    newest_override(waiting, published.applied_ms)
        .and_then(|o| serde_json::from_value::<Vec<IpAddr>>(o.value).ok())
        .unwrap_or_else(|| {
            published
                .external_addrs
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect()
        })
}

/// Addresses from an admin request (`addrs` of `external_addr`, relayed changes): typed, each a
/// single unicast address clients can reach; the first bad one is named with its fix.
pub(crate) fn parse_external_addrs(key: &str, texts: &[String]) -> Result<Vec<IpAddr>, String> {
    if texts.len() > MAX_EXTERNAL_ADDRS {
        return Err(format!(
            "{key}: {} addresses, more than the {MAX_EXTERNAL_ADDRS} a node may have; fix: give at most {MAX_EXTERNAL_ADDRS}",
            texts.len()
        ));
    }
    texts
        .iter()
        .map(|t| {
            parse_address(t, AddrRole::External).map_err(|p| {
                format!(
                    "{key}: '{}' {}; fix: {}",
                    crate::core::config::echo(t),
                    p.problem,
                    p.fix
                )
            })
        })
        .collect()
}

/// The fields a relay proof covers, in order: the change, when it was sent, a nonce, the sender.
pub fn relay_fields(
    node: &str,
    action: &str,
    addrs: &[String],
    sent_ms: u64,
    nonce: u64,
    from: &str,
) -> Vec<String> {
    vec![
        node.to_string(),
        action.to_string(),
        addrs.join(","),
        sent_ms.to_string(),
        nonce.to_string(),
        from.to_string(),
    ]
}

/// The answer to `external_addr add|set|remove`: the node's list and, once the node applied it,
/// its new version; `pending` when the node is down and the change waits in gossip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct ExternalAddrsReply {
    pub(crate) node: String,
    #[schema(value_type = Vec<String>)]
    pub(crate) external_addrs: Vec<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) version: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) pending: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) warnings: Vec<String>,
}

/// The answer to `addr set` (applied when the node comes back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct AddrReply {
    pub(crate) node: String,
    #[schema(value_type = String)]
    pub(crate) addr: IpAddr,
}

/// The answer to `forget`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct ForgetReply {
    pub(crate) node: String,
    pub(crate) forgotten: bool,
}

impl Bootstrap {
    /// What the request changes in this node's settings.
    pub(crate) fn overrides(&self) -> Overrides {
        Overrides {
            id: self.name.clone(),
            internal_addr: self.addr,
            external_addrs: self.external_addrs.clone(),
            use_internal_ipv6: self.use_internal_ipv6,
            use_internal_ipv6_key: self
                .use_internal_ipv6
                .map(|_| "node.identity.use_internal_ipv6".to_string()),
        }
    }
}

impl ClusterRecord {
    /// What membership fixed for this node: its id and family, and the addresses bootstrap or
    /// an admin change set.
    pub(crate) fn overrides(&self) -> Overrides {
        Overrides {
            id: Some(self.node_id.clone()),
            internal_addr: self.node_addr,
            external_addrs: self.external_addrs.clone(),
            use_internal_ipv6: Some(self.use_internal_ipv6),
            use_internal_ipv6_key: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::parse_credentials;

    /// The contacted node's checks, in the order an operator would fix them.
    fn validate_join(
        record: &ClusterRecord,
        joiner: &JoinerFacts,
        username: &str,
        password: &str,
        live_ids: &[String],
    ) -> Result<(), JoinRefusal> {
        if credentials(record, username, password) != Outcome::Valid {
            return Err(invalid_credentials());
        }
        validate_joiner(record, joiner, live_ids)
    }

    fn request(json: &str) -> BootstrapRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn bootstrap_request_validation_table() {
        let ok_create = r#"{"action":"create_cluster","cluster":{"name":"c1"},"credentials":{"username":"admin","password":"secret-pass"}}"#;
        assert!(validate_bootstrap(request(ok_create), Action::Create).is_ok());
        // rladmin's `cluster join nodes <addr> username <u> password <p>`: no cluster name.
        let ok_join = r#"{"action":"join_cluster","cluster":{"nodes":["2001:db8::1"]},"credentials":{"username":"admin","password":"secret-pass"}}"#;
        let join = validate_bootstrap(request(ok_join), Action::Join).unwrap();
        assert_eq!(join.cluster_name, None);
        assert_eq!(join.use_internal_ipv6, None);
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
                r#"{"action":"create_cluster","cluster":{},"credentials":{"username":"a","password":"secret-pass"}}"#,
                Action::Create,
                "cluster.name",
                "is missing",
            ),
            (
                r#"{"action":"join_cluster","cluster":{"nodes":["[2001:db8::1]:99999"]},"credentials":{"username":"a","password":"secret-pass"}}"#,
                Action::Join,
                "cluster.nodes[0]",
                "out of range",
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
        // cluster.ca_pin: what a joiner accepts; an outsider's text, so hostile rows too.
        let pin_hex = "ab".repeat(32);
        let with_pin = |action: &str, pin: &str| {
            format!(
                r#"{{"action":"{action}","cluster":{{"nodes":["2001:db8::1"],"ca_pin":{}}},"credentials":{{"username":"a","password":"secret-pass"}}}}"#,
                serde_json::Value::String(pin.to_string())
            )
        };
        let join = validate_bootstrap(
            request(&with_pin("join_cluster", &format!("sha256:{pin_hex}"))),
            Action::Join,
        )
        .unwrap();
        assert_eq!(
            join.ca_pin.map(|p| p.to_string()),
            Some(format!("sha256:{pin_hex}"))
        );
        let create_with_pin = format!(
            r#"{{"action":"create_cluster","cluster":{{"name":"c1","ca_pin":"sha256:{pin_hex}"}},"credentials":{{"username":"a","password":"secret-pass"}}}}"#
        );
        let errs = validate_bootstrap(request(&create_with_pin), Action::Create).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.key == "cluster.ca_pin" && e.problem.contains("only for join_cluster")),
            "{errs:#?}"
        );
        for bad in [
            String::new(),
            pin_hex.clone(),
            format!("sha256:{}", &pin_hex[..63]),
            format!("sha256:{}", pin_hex.to_uppercase()),
            format!("sha1:{pin_hex}"),
            format!(" sha256:{pin_hex}"),
            "sha256//not base64 at all, not 44 chars".into(),
            "x".repeat(10_000),
        ] {
            let errs = validate_bootstrap(request(&with_pin("join_cluster", &bad)), Action::Join)
                .unwrap_err();
            let e = errs
                .iter()
                .find(|e| e.key == "cluster.ca_pin")
                .unwrap_or_else(|| panic!("{bad:?}: {errs:#?}"));
            assert!(e.problem.contains("not an SPKI pin"), "{e:?}");
            assert!(
                e.fix.contains("sha256:") && e.fix.contains("inspect"),
                "{e:?}"
            );
            assert!(
                e.value.len() < 300,
                "the value is echoed whole: {}",
                e.value.len()
            );
        }
        for (json, action, key, problem) in table {
            let errs = validate_bootstrap(request(json), *action).unwrap_err();
            assert!(
                errs.iter()
                    .any(|e| e.key == *key && e.problem.contains(problem)),
                "{json}: {errs:#?}"
            );
        }
    }

    /// `cluster.join_token` (`stackring cluster join-token`): instead of credentials, naming the
    /// seed and pinning the CA; an outsider's text, so hostile rows too. The secret is never
    /// echoed in an error.
    #[test]
    fn a_join_token_replaces_credentials_seed_and_pin() {
        let secret = "0123456789abcdefghijklmnopqrstuv";
        let pin = format!("sha256:{}", "ab".repeat(32));
        let token = format!("k3x9qa.{secret}@[2001:db8::10]:9095/{pin}");
        let join = |cluster: serde_json::Value, credentials: bool| {
            let mut body = serde_json::json!({"action": "join_cluster", "cluster": cluster});
            if credentials {
                body["credentials"] =
                    serde_json::json!({"username": "a", "password": "secret-pass"});
            }
            validate_bootstrap(request(&body.to_string()), Action::Join)
        };
        let ok = join(serde_json::json!({ "join_token": token }), false).unwrap();
        assert_eq!(
            ok.seeds,
            Seeds::Nodes(vec![PeerAddr::parse("[2001:db8::10]:9095").unwrap()])
        );
        assert_eq!(ok.ca_pin.map(|p| p.to_string()), Some(pin.clone()));
        match &ok.auth {
            JoinAuth::Token(t) => assert_eq!(t.wire(), format!("k3x9qa.{secret}")),
            other => panic!("{other:?}"),
        }
        assert!(
            !format!("{ok:?}").contains(secret),
            "Debug shows the secret"
        );
        // cluster.nodes, given, is how this node reaches the member (a proxy): kept.
        let via = join(
            serde_json::json!({ "join_token": token, "nodes": ["[2001:db8::99]:19095"] }),
            false,
        )
        .unwrap();
        assert_eq!(
            via.seeds,
            Seeds::Nodes(vec![PeerAddr::parse("[2001:db8::99]:19095").unwrap()])
        );
        // The same pin written twice is fine; another one is refused.
        assert!(join(
            serde_json::json!({ "join_token": token, "ca_pin": pin }),
            false
        )
        .is_ok());
        let rows: Vec<(serde_json::Value, bool, Action, &str, &str)> = vec![
            (
                serde_json::json!({ "join_token": token }),
                true,
                Action::Join,
                "credentials",
                "with cluster.join_token",
            ),
            (
                serde_json::json!({ "nodes": ["2001:db8::1"] }),
                false,
                Action::Join,
                "credentials",
                "is missing",
            ),
            (
                serde_json::json!({ "name": "c1", "join_token": token }),
                true,
                Action::Create,
                "cluster.join_token",
                "only for join_cluster",
            ),
            (
                serde_json::json!({ "join_token": token, "ca_pin": format!("sha256:{}", "cd".repeat(32)) }),
                false,
                Action::Join,
                "cluster.ca_pin",
                "differs from the pin",
            ),
            (
                serde_json::json!({ "join_token": "" }),
                false,
                Action::Join,
                "cluster.join_token",
                "no '@'",
            ),
            (
                serde_json::json!({ "join_token": token.replace("k3x9qa", "K3X9QA") }),
                false,
                Action::Join,
                "cluster.join_token",
                "token id",
            ),
            (
                serde_json::json!({ "join_token": token.replace(secret, &secret[2..]) }),
                false,
                Action::Join,
                "cluster.join_token",
                "secret",
            ),
            (
                serde_json::json!({ "join_token": token.replace(":9095", "") }),
                false,
                Action::Join,
                "cluster.join_token",
                "without a port",
            ),
            (
                serde_json::json!({ "join_token": token.replace(&pin, "sha256:00") }),
                false,
                Action::Join,
                "cluster.join_token",
                "not a CA pin",
            ),
            (
                serde_json::json!({ "join_token": format!("{token}{}", "x".repeat(100_000)) }),
                false,
                Action::Join,
                "cluster.join_token",
                "characters long",
            ),
        ];
        for (cluster, credentials, action, key, problem) in rows {
            let mut body = serde_json::json!({"action": if action == Action::Join { "join_cluster" } else { "create_cluster" }, "cluster": cluster});
            if credentials {
                body["credentials"] =
                    serde_json::json!({"username": "a", "password": "secret-pass"});
            }
            let errs = validate_bootstrap(request(&body.to_string()), action).unwrap_err();
            assert!(
                errs.iter()
                    .any(|e| e.key == key && e.problem.contains(problem)),
                "{body}: {errs:#?}"
            );
            for e in &errs {
                let text = format!("{e:?}");
                assert!(
                    !text.contains(secret) && !text.contains(&secret[2..]),
                    "{text}"
                );
                assert!(text.len() < 600, "{text}");
            }
        }
    }

    /// redis-enterprise-multi-ip-ipv6.md's `create_cluster` body (its JSON, without the `...`):
    /// `"addr": "2001:DB8::/32"` names the network; the fix names the address this node has in
    /// it (from `available_addrs`), else one of its family, else that it has none; never
    /// `2001:db8::1`, which no interface of the node may hold.
    #[test]
    fn seed_cidr_in_the_bootstrap_body_gets_an_address_of_this_node() {
        let seed = r#"{
    "action": "create_cluster",
    "cluster": {
        "name": "cluster.fqdn"
    },
    "credentials": {
       "username": "admin_username",
       "password": "admin_password"
    },
    "node": {
       "identity": {
          "addr": "2001:DB8::/32",
          "external_addr": ["2001:0db8:85a3:0000:0000:8a2e:0370:7334"],
          "use_internal_ipv6": true
       }
    }
}"#;
        let ip = |t: &str| t.parse::<IpAddr>().unwrap();
        for (host, fix) in [
            (
                vec![ip("192.0.2.12"), ip("2001:db8::12")],
                "in 2001:db8::/32 alone, without the prefix length: '2001:db8::12'",
            ),
            (
                vec![ip("192.0.2.12"), ip("fd00::12")],
                "no address of this host is in 2001:db8::/32; write one it has, without the prefix length, e.g. 'fd00::12'",
            ),
            (vec![ip("192.0.2.12")], "has no usable IPv6 address"),
        ] {
            let errs = validate_bootstrap_on(request(seed), Action::Create, HostAddrs::Known(&host))
                .unwrap_err();
            assert_eq!(errs.len(), 1, "{errs:#?}");
            assert_eq!(errs[0].key, "node.identity.addr");
            assert!(errs[0].fix.contains(fix), "{host:?}: {}", errs[0]);
        }
        let unknown = validate_bootstrap(request(seed), Action::Create).unwrap_err();
        assert!(!unknown[0].fix.contains("2001:db8::1'"), "{}", unknown[0]);
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
    fn credentials_files_hold_one_user_password_line() {
        assert_eq!(
            parse_credentials("admin:correct horse\n"),
            Ok(("admin".into(), "correct horse".into()))
        );
        for (text, problem) in [
            ("", "no 'username:password' line"),
            ("just a password", "no 'username:password' line"),
            ("admin:short", "8–1024"),
            (":correct horse", "username"),
            (
                "admin:correct horse\nroot:other password",
                "more than one line",
            ),
        ] {
            let e = parse_credentials(text).unwrap_err();
            assert!(e.contains(problem), "{text:?}: {e}");
        }
    }

    #[test]
    fn a_wrong_username_is_told_apart_only_after_argon2_ran() {
        let record = ClusterRecord {
            name: "c".into(),
            family: Family::Ipv6,
            use_internal_ipv6: true,
            username: "admin".into(),
            password_hash: hash_password("correct horse").unwrap(),
            node_id: "n1".into(),
            node_addr: None,
            external_addrs: None,
            seeds: vec![],
            applied: Default::default(),
            admin_version: 0,
            registered_unix: 0,
            gossip_keys: None,
        };
        let time = |user: &str, password: &str| {
            let t = std::time::Instant::now();
            let outcome = credentials(&record, user, password);
            (outcome, t.elapsed())
        };
        let (wrong_user, t_user) = time("nobody", "wrong horse");
        let (wrong_password, t_password) = time("admin", "wrong horse");
        assert_eq!(wrong_user, Outcome::WrongUsername);
        assert_eq!(wrong_password, Outcome::WrongPassword);
        assert_eq!(time("admin", "correct horse").0, Outcome::Valid);
        // Both ran argon2 (milliseconds), not a string comparison (microseconds).
        assert!(
            t_user * 4 > t_password && t_password * 4 > t_user,
            "{t_user:?} vs {t_password:?}"
        );
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
            registered_unix: 0,
            admin_version: 0,
            gossip_keys: None,
        };
        let v4 = ClusterRecord {
            family: Family::Ipv4,
            ..v6.clone()
        };
        let dual_v6 = ClusterRecord {
            use_internal_ipv6: true,
            ..v6.clone()
        };
        let joiner = |v4: bool, v6: bool, flag: Option<bool>, id: &str| JoinerFacts {
            cluster_name: None,
            node_id: id.into(),
            has_ipv4: v4,
            has_ipv6: v6,
            use_internal_ipv6: flag,
        };
        let named = |name: &str| JoinerFacts {
            cluster_name: Some(name.into()),
            ..joiner(false, true, None, "n2")
        };
        let live = vec!["n1".to_string()];
        // Redis Enterprise, "Multi-IP and IPv6": the joiner's use_internal_ipv6 is tri-state.
        let table: Vec<(&ClusterRecord, JoinerFacts, &str, Result<(), &str>)> = vec![
            (&v6, joiner(false, true, None, "n2"), "secret-pass", Ok(())),
            (
                &v6,
                joiner(false, true, None, "n2"),
                "wrong-pass",
                Err("invalid_credentials"),
            ),
            // "Joining a node that only has IPv4 network interfaces to a master node with IPv6
            // enabled causes a NodeBootstrapError."
            (
                &v6,
                joiner(true, false, None, "n2"),
                "secret-pass",
                Err("ipv4_only_node_in_ipv6_cluster"),
            ),
            // "If you try to add a node without an IPv6 interface to a cluster that has
            // use_internal_ipv6 enabled, a NodeBootstrapError occurs."
            (
                &dual_v6,
                joiner(true, false, None, "n2"),
                "secret-pass",
                Err("ipv4_only_node_in_ipv6_cluster"),
            ),
            // "Joining a node that only has IPv6 network interfaces to a master node that does not
            // have IPv6 enabled causes a NodeBootstrapError."
            (
                &v4,
                joiner(false, true, None, "n2"),
                "secret-pass",
                Err("ipv6_only_node_in_ipv4_cluster"),
            ),
            (&v4, joiner(true, true, None, "n2"), "secret-pass", Ok(())),
            // "When other IPv6 nodes join a cluster that has use_internal_ipv6 enabled, they
            // automatically use IPv6 for internal traffic. Do not manually set use_internal_ipv6"
            (
                &dual_v6,
                joiner(true, true, None, "n2"),
                "secret-pass",
                Ok(()),
            ),
            (
                &dual_v6,
                joiner(false, true, None, "n2"),
                "secret-pass",
                Ok(()),
            ),
            // "... or a NodeBootstrapError can occur if the values do not match."
            (
                &dual_v6,
                joiner(true, true, Some(false), "n2"),
                "secret-pass",
                Err("use_internal_ipv6_mismatch"),
            ),
            (
                &dual_v6,
                joiner(true, true, Some(true), "n2"),
                "secret-pass",
                Ok(()),
            ),
            (
                &v4,
                joiner(true, true, Some(true), "n2"),
                "secret-pass",
                Err("use_internal_ipv6_mismatch"),
            ),
            (
                &v4,
                joiner(true, true, Some(false), "n2"),
                "secret-pass",
                Ok(()),
            ),
            (
                &v6,
                joiner(false, true, None, "n1"),
                "secret-pass",
                Err("node_name_taken"),
            ),
            // rladmin's `cluster join` takes no name: the joiner learns it; a given one must match.
            (&v6, named("c1"), "secret-pass", Ok(())),
            (
                &v6,
                named("c2"),
                "secret-pass",
                Err("cluster_name_mismatch"),
            ),
        ];
        for (record, facts, password, want) in table {
            let got = validate_join(record, &facts, "admin", password, &live);
            match (&got, want) {
                (Ok(()), Ok(())) => {}
                (Err(r), Err(code)) => {
                    assert_eq!(r.sub_code, code, "{facts:?}");
                    assert_eq!(r.error_code, "NodeBootstrapError");
                    if code.contains("cluster") && code != "cluster_name_mismatch" {
                        assert!(
                            r.description.contains("IPv4") && r.description.contains("IPv6"),
                            "{}",
                            r.description
                        );
                    }
                    if code == "use_internal_ipv6_mismatch" {
                        assert!(
                            r.description.contains("leave use_internal_ipv6 out"),
                            "{}",
                            r.description
                        );
                    }
                }
                _ => panic!("{facts:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    /// Redis Enterprise's `rladmin node <ID> external_addr add|set|remove`, applied in order.
    #[test]
    fn external_addr_operations_table() {
        let ip = |t: &str| t.parse::<IpAddr>().unwrap();
        let a = ip("198.51.100.31");
        let b = ip("198.51.100.32");
        let c = ip("2001:db8::33");
        use ExternalOp::*;
        let many: Vec<IpAddr> = (0..65u16)
            .map(|i| IpAddr::from([0x2001, 0xdb8, 0xee, i, 0, 0, 0, 1]))
            .collect();
        let sixty_three = many[1..64].to_vec();
        type Row = (
            Vec<IpAddr>,
            ExternalOp,
            Vec<IpAddr>,
            Result<Vec<IpAddr>, &'static str>,
        );
        let table: Vec<Row> = vec![
            (vec![a], Add, vec![b], Ok(vec![a, b])),
            (vec![a], Add, vec![a], Ok(vec![a])),
            (vec![a, b], Set, vec![c], Ok(vec![c])),
            (vec![a], Set, vec![b, b, c], Ok(vec![b, c])),
            (vec![a, b], Remove, vec![a], Ok(vec![b])),
            (vec![a], Remove, vec![b], Err("not_an_external_addr")),
            (vec![a], Remove, vec![a], Err("no_external_addr_left")),
            // At most MAX_EXTERNAL_ADDRS: the entry must fit in one gossip datagram.
            (
                sixty_three.clone(),
                Add,
                vec![a],
                Ok([sixty_three.clone(), vec![a]].concat()),
            ),
            (
                sixty_three.clone(),
                Add,
                vec![a, b],
                Err("too_many_external_addrs"),
            ),
            (vec![a], Set, many.clone(), Err("too_many_external_addrs")),
            (
                vec![a],
                Set,
                [many.clone(), many.clone()].concat()[..64].to_vec(),
                Ok(many[..64].to_vec()),
            ),
        ];
        for (current, op, addrs, want) in table {
            let got = apply_external("n2", &current, op, &addrs).map_err(|r| r.sub_code);
            assert_eq!(got, want, "{current:?} {op:?} {addrs:?}");
        }
        // The issue's sequence: set then add, back to back.
        let after_set = apply_external("n2", &[a], Set, &[a]).unwrap();
        let after_add = apply_external("n2", &after_set, Add, &[b]).unwrap();
        assert_eq!(after_add, vec![a, b]);
    }

    #[test]
    fn relay_proofs_bind_key_and_every_field() {
        let p = relay_proof("$argon2id$k1", &["n2", "set", "198.51.100.1", "17"]);
        assert_eq!(p.len(), 128);
        assert!(proofs_match(
            &p,
            &relay_proof("$argon2id$k1", &["n2", "set", "198.51.100.1", "17"])
        ));
        for other in [
            relay_proof("$argon2id$k2", &["n2", "set", "198.51.100.1", "17"]),
            relay_proof("$argon2id$k1", &["n3", "set", "198.51.100.1", "17"]),
            relay_proof("$argon2id$k1", &["n2", "add", "198.51.100.1", "17"]),
            relay_proof("$argon2id$k1", &["n2", "set", "198.51.100.1", "18"]),
            // Field boundaries count: "n2s" + "et" is not "n2" + "set".
            relay_proof("$argon2id$k1", &["n2s", "et", "198.51.100.1", "17"]),
        ] {
            assert!(!proofs_match(&p, &other));
        }
    }
}
