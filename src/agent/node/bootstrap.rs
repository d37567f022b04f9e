//! Bootstrap: create a cluster, or join one through a seed (gRPC `Join`), from the HTTP API or
//! declared in the config. Runs in the caller's task (a join waits on the network); the actor is
//! asked only to adopt the result. One bootstrap at a time: the status moves by compare-and-set.

use super::client::{call_join_patiently, JoinCallError};
use super::{argon2, ClusterNode};
use crate::agent::node::actor::Command;
use crate::agent::tls::Issued;
use crate::core::cluster::{self, Action, Bootstrap, BootstrapStatus, ClusterRecord, Seeds};
use crate::core::config::{DeclaredCluster, Settings};
use crate::core::decide::{decide, usability, Context, Identity};
use crate::core::peer::PeerAddr;
use crate::core::pin::SpkiPin;
use crate::core::refusal::{ErrorBody, Refusal, RefusalKind};
use crate::core::seal::Keyring;
use crate::core::snapshot::{Family, HostSnapshot};
use crate::proto::pb;
use std::net::IpAddr;
use std::time::Duration;

impl ClusterNode {
    /// `POST /v1/bootstrap/{create_cluster,join_cluster}` and declarative bootstrap, with a
    /// validated request. Everything that can be checked locally is checked before any state
    /// changes.
    pub(crate) async fn bootstrap(
        &self,
        request: Bootstrap,
        action: Action,
    ) -> Result<BootstrapStatus, Refusal> {
        self.status().start(action)?;
        let settings = self.overridden(&request);
        let snapshot = self.shared.host.borrow().clone();
        let identity = match action {
            Action::Create => {
                let identity = decide(&snapshot, &settings, Context::default()).map_err(|why| {
                    Refusal::bootstrap(
                        "no_identity",
                        format!("this node has no identity to create a cluster with: {why}"),
                    )
                })?;
                check_hosts_file(identity.family)?;
                Some(identity)
            }
            Action::Join => None,
        };
        let mut refused = None;
        self.shared
            .status
            .send_if_modified(|s| match s.start(action) {
                Ok(next) => {
                    *s = next;
                    true
                }
                Err(r) => {
                    refused = Some(r);
                    false
                }
            });
        if let Some(r) = refused {
            return Err(r);
        }
        let result = match identity {
            Some(identity) => self.create(&request, &settings, identity).await,
            None => self.join(&request, &settings, &snapshot).await,
        };
        let status = BootstrapStatus::finish(&result);
        self.shared.status.send_replace(status.clone());
        result.map(|()| status)
    }

    fn overridden(&self, request: &Bootstrap) -> Settings {
        self.settings().with_overrides(&request.overrides())
    }

    pub(super) async fn adopt(
        &self,
        record: ClusterRecord,
        identity: Identity,
    ) -> Result<(), Refusal> {
        self.ask(|reply| Command::Adopt {
            record: Box::new(record),
            identity: Box::new(identity),
            reply,
        })
        .await
    }

    async fn create(
        &self,
        request: &Bootstrap,
        settings: &Settings,
        identity: Identity,
    ) -> Result<(), Refusal> {
        let cluster::JoinAuth::Credentials { username, password } = request.auth.clone() else {
            return Err(Refusal::internal("create without credentials"));
        };
        let password_hash = argon2(move || cluster::hash_password(&password))
            .await
            .ok_or_else(|| Refusal::internal("hashing failed"))?
            .map_err(Refusal::internal)?;
        let name = request
            .cluster_name
            .clone()
            .ok_or_else(|| Refusal::internal("create without a cluster name"))?;
        let ips = certificate_ips(&identity);
        self.shared
            .tls
            .create_cluster(&name, &settings.id, &ips)
            .map_err(|e| Refusal::internal(format!("cannot make the cluster's CA: {e}")))?;
        let record = ClusterRecord {
            name: request
                .cluster_name
                .clone()
                .ok_or_else(|| Refusal::internal("create without a cluster name"))?,
            family: identity.family,
            use_internal_ipv6: settings.use_internal_ipv6,
            username,
            password_hash,
            node_id: settings.id.clone(),
            node_addr: request.addr,
            external_addrs: request.external_addrs.clone(),
            seeds: vec![],
            applied: Default::default(),
            registered_unix: crate::agent::now_unix(),
            admin_version: 0,
            gossip_keys: Some(Keyring::new(crate::agent::gossip_seal::generate_key())),
        };
        self.adopt(record, identity).await
    }

    async fn join(
        &self,
        request: &Bootstrap,
        settings: &Settings,
        snapshot: &HostSnapshot,
    ) -> Result<(), Refusal> {
        let usable = |snapshot: &HostSnapshot, f: Family| {
            snapshot
                .addresses
                .values()
                .any(|a| a.family() == f && usability(snapshot, a).is_ok())
        };
        let (node_key, csr_pem) = self
            .shared
            .tls
            .join_request(&settings.id)
            .map_err(|e| Refusal::internal(format!("cannot make this node's key: {e}")))?;
        let (username, password, token) = match &request.auth {
            cluster::JoinAuth::Credentials { username, password } => {
                (username.clone(), password.clone(), String::new())
            }
            cluster::JoinAuth::Token(t) => (String::new(), String::new(), t.wire()),
        };
        let ask = pb::JoinRequest {
            csr_pem,
            token,
            cluster_name: request.cluster_name.clone(),
            username,
            password,
            node_id: settings.id.clone(),
            has_ipv4: usable(snapshot, Family::Ipv4),
            has_ipv6: usable(snapshot, Family::Ipv6),
            // Only what the operator wrote: unset, the node takes the cluster's family.
            use_internal_ipv6: settings.use_internal_ipv6_written.as_ref().map(|f| f.value),
        };
        let key = request.seeds.key();
        let mut unreachable = Vec::new();
        let mut wrong_ca = Vec::new();
        for (seed, found) in seed_uris(&request.seeds, settings, request.ca_pin).await {
            let (uri, discovered) = match found {
                Ok(found) => found,
                Err(e) => {
                    unreachable.push(format!("{seed}: {e}"));
                    continue;
                }
            };
            // With a pin, only that cluster's CA is accepted, before the credentials are sent;
            // without, the CA met first is trusted, and said so. A seed found through its gossip
            // port was met there first: the `Join` then accepts only the CA met there.
            let pin = request.ca_pin.or(discovered);
            let (client, seen) = match pin {
                Some(pin) => (crate::agent::pki::client_config_pinned(pin), None),
                None => {
                    let (client, seen) = crate::agent::pki::client_config_tofu()
                        .map_err(|e| Refusal::internal(e.to_string()))?;
                    (Ok(client), Some(seen))
                }
            };
            let client =
                crate::agent::tls::h2_client(client.map_err(|e| Refusal::internal(e.to_string()))?);
            // Finding the seed can take seconds (at boot, its gossip port, our address still in
            // duplicate address detection): say what this host has now, not at the start.
            let mut ask = ask.clone();
            {
                let now = self.shared.host.borrow().clone();
                ask.has_ipv4 = usable(&now, Family::Ipv4);
                ask.has_ipv6 = usable(&now, Family::Ipv6);
            }
            let reply = match call_join_patiently(&uri, client, ask).await {
                Err(JoinCallError::Unreachable(e)) => {
                    unreachable.push(format!("{seed} (gRPC {uri}): {e}"));
                    continue;
                }
                Err(JoinCallError::WrongCa(why)) => {
                    wrong_ca.push(format!("{seed} (gRPC {uri}): {why}"));
                    continue;
                }
                Err(JoinCallError::Throttled {
                    message,
                    retry_after_s,
                }) => {
                    let mut body = ErrorBody::new(
                        "TooManyRequests",
                        Some("rate_limited"),
                        format!("{seed} (gRPC {uri}) asks to wait: {message}; fix: retry after {retry_after_s} s"),
                    );
                    body.retry_after_s = Some(retry_after_s);
                    return Err(Refusal::new(RefusalKind::Throttled, body));
                }
                Ok(reply) => reply,
            };
            if let Some(r) = reply.refusal {
                let kind = if matches!(
                    r.sub_code.as_str(),
                    "invalid_credentials" | "invalid_token" | "token_expired"
                ) {
                    RefusalKind::Forbidden
                } else {
                    RefusalKind::Conflict
                };
                return Err(Refusal::new(
                    kind,
                    ErrorBody::new(&r.error_code, Some(&r.sub_code), r.description),
                ));
            }
            let family = Family::parse(&reply.family).ok_or_else(|| {
                Refusal::internal(format!(
                    "{seed} answered with an unknown family '{}'",
                    crate::core::config::echo(&reply.family)
                ))
            })?;
            let ctx = Context {
                cluster_family: Some(family),
                previous: None,
            };
            let identity = decide(snapshot, settings, ctx).map_err(|why| {
                Refusal::bootstrap(
                    "no_identity",
                    format!("the cluster uses {family}, and this node cannot: {why}"),
                )
            })?;
            check_hosts_file(family)?;
            let gossip_keys = Keyring::from_keys(&reply.gossip_keys).ok_or_else(|| {
                Refusal::bootstrap(
                    "cluster_unreachable",
                    format!("{seed} (gRPC {uri}) answered without the cluster's gossip key (a stackring older than sealed gossip?); fix: join through a member running this version"),
                )
            })?;
            let issued = Issued {
                node_cert_pem: reply.node_cert_pem,
                ca_cert_pem: reply.ca_cert_pem,
                ca_key_pem: reply.ca_key_pem,
            };
            let trusted = crate::agent::pki::CaCert::from_pem(&issued.ca_cert_pem)
                .map(|ca| ca.pin())
                .map_err(|e| {
                    Refusal::internal(format!("{seed} (gRPC {uri}) sent an unusable CA: {e}"))
                })?;
            let presented = match &seen {
                Some(seen) => seen.get(),
                None => pin,
            };
            if presented != Some(trusted) {
                return Err(Refusal::bootstrap(
                    "cluster_unreachable",
                    format!("{seed} (gRPC {uri}) presented a CA in the TLS handshake other than the one it sent; fix: check what answers at that address"),
                ));
            }
            self.shared
                .tls
                .adopt(node_key, &issued, &settings.id)
                .map_err(|e| {
                    Refusal::internal(format!(
                        "{seed} (gRPC {uri}) issued a certificate this node cannot use: {e}"
                    ))
                })?;
            if request.ca_pin.is_none() {
                log::warn!(
                    "joined through {seed} trusting the cluster CA with pin {trusted} on first use (no cluster.ca_pin was given); compare it with `stackring inspect` on a member"
                );
            }
            let mut seeds = reply.seeds;
            if let Seeds::Gossip(members) = &request.seeds {
                // Rejoin after a restart through what the operator wrote, too.
                for m in members {
                    let written = m.host_port(settings.gossip.port);
                    if !seeds.contains(&written) {
                        seeds.push(written);
                    }
                }
            }
            let record = ClusterRecord {
                name: reply.cluster_name,
                family,
                use_internal_ipv6: reply.use_internal_ipv6,
                username: reply.username,
                password_hash: reply.password_hash,
                node_id: settings.id.clone(),
                node_addr: request.addr,
                external_addrs: request.external_addrs.clone(),
                seeds,
                applied: Default::default(),
                registered_unix: crate::agent::now_unix(),
                admin_version: 0,
                gossip_keys: Some(gossip_keys),
            };
            return self.adopt(record, identity).await;
        }
        if !wrong_ca.is_empty() {
            // A seed answered with another CA: say so, not "unreachable" (the fix differs).
            let others = if unreachable.is_empty() {
                String::new()
            } else {
                format!(" (and no answer from {})", unreachable.join("; "))
            };
            return Err(Refusal::bootstrap(
                "ca_pin_mismatch",
                format!(
                    "no node in {key} presented the CA that {} names{others}: {}",
                    match (&request.auth, request.ca_pin) {
                        (cluster::JoinAuth::Token(_), _) => "the join token",
                        (_, Some(_)) => "cluster.ca_pin",
                        (_, None) => "the seed's gossip port presented at discovery",
                    },
                    wrong_ca.join("; ")
                ),
            ));
        }
        Err(Refusal::bootstrap(
            "cluster_unreachable",
            format!(
                "no node in {key} answered: {}; fix: check {key} and that those nodes are up and reachable over {}",
                unreachable.join("; "),
                match &request.seeds {
                    Seeds::Nodes(_) => "their gRPC port (server.grpc_listen_port, 9095 by default)",
                    Seeds::Gossip(_) => "their gossip port (memberlist.bind_port, TCP and UDP, 7946 by default)",
                }
            ),
        ))
    }

    /// Declarative bootstrap (`cluster:` in the config): create, or join through
    /// `memberlist.join_members`, with the same validation and errors as the HTTP API, retrying with
    /// backoff while no seed answers (or the seed has not created the cluster yet).
    pub(crate) async fn declare(&self, declared: DeclaredCluster, join_members: Vec<PeerAddr>) {
        if self.record().is_some() {
            return;
        }
        let key = declared.secret.key();
        let path = declared.secret.path().display().to_string();
        let proof = match std::fs::read_to_string(declared.secret.path()) {
            Ok(text) => declared.secret.parse(&text),
            Err(e) => Err(format!(
                "cannot be read ({e}); fix: create it (mode 0600) or correct the path"
            )),
        };
        let request =
            proof.and_then(|proof| cluster::declared_request(&declared, proof, join_members));
        let request = match request {
            Ok(r) => r,
            Err(problem) => {
                log::error!("declarative bootstrap: {key} {path} {problem}");
                return;
            }
        };
        let by_token = matches!(request.auth, cluster::JoinAuth::Token(_));
        let (action, name) = if declared.create {
            (Action::Create, "create_cluster")
        } else {
            (Action::Join, "join_cluster")
        };
        let cluster_name = declared
            .name
            .clone()
            .unwrap_or_else(|| "(named by the token)".into());
        let mut delay = Duration::from_secs(1);
        let mut told_waiting = false;
        loop {
            if self.record().is_some() {
                return;
            }
            // No identity yet (no usable address: at boot, still in duplicate address
            // detection): a creator has nothing to create with, a joiner would be refused by the
            // seed for having no address of the cluster's family. Wait for one and go on the
            // moment it comes (a creator used to retry on a doubling delay: at boot in the update
            // test the address came at 29.2 s and the cluster at 32.3 s, after the test looked).
            if !self.shared.identity.borrow().ready() {
                if !told_waiting {
                    log::info!("declarative bootstrap: {name} waits for this node's address");
                    told_waiting = true;
                }
                let mut identity = self.shared.identity.clone();
                let _ = tokio::time::timeout(
                    Duration::from_secs(30),
                    identity.wait_for(|published| published.ready()),
                )
                .await;
                continue;
            }
            // A reload may have changed memberlist.join_members: use the running value.
            let mut request = request.clone();
            if !declared.create && !by_token {
                request.seeds = Seeds::Gossip(self.settings().join_members);
            }
            match self.bootstrap(request, action).await {
                Ok(_) => {
                    log::info!("declarative bootstrap: {name} {cluster_name} done");
                    return;
                }
                Err(r)
                    if matches!(
                        r.sub_code(),
                        "cluster_unreachable"
                            | "not_in_cluster"
                            | "no_identity"
                            | "hosts_ipv6_localhost"
                            | "rate_limited"
                    ) =>
                {
                    log::warn!(
                        "declarative bootstrap: {}; retrying in {} s",
                        r.body.description,
                        delay.as_secs()
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
                Err(r) => {
                    log::error!("declarative bootstrap refused: {}", r.body.description);
                    return;
                }
            }
        }
    }
}

/// The addresses a node certificate names: the identity's internal and external addresses.
fn certificate_ips(identity: &Identity) -> Vec<std::net::IpAddr> {
    std::iter::once(identity.internal_addr)
        .chain(identity.external_addrs.iter().copied())
        .collect()
}

/// Each seed as written, with the gRPC URI to call `Join` on (or why there is none) and, for a seed
/// found through its gossip port, the pin of the CA it presented there. That exchange is TLS, with
/// the same trust as the `Join`: only the CA of `ca_pin` when given, else the one met (TOFU).
async fn seed_uris(seeds: &Seeds, settings: &Settings, ca_pin: Option<SpkiPin>) -> Vec<SeedUri> {
    match seeds {
        Seeds::Nodes(nodes) => nodes
            .iter()
            .map(|n| {
                let uri = format!("http://{}", n.host_port(settings.grpc.port));
                (n.to_string(), Ok((uri, None)))
            })
            .collect(),
        Seeds::Gossip(members) => {
            let mut out = Vec::new();
            for m in members {
                let (client, seen) = match ca_pin {
                    Some(pin) => (crate::agent::pki::client_config_pinned(pin), None),
                    None => match crate::agent::pki::client_config_tofu() {
                        Ok((client, seen)) => (Ok(client), Some(seen)),
                        Err(e) => (Err(e), None),
                    },
                };
                let found = match client {
                    Err(e) => Err(e.to_string()),
                    Ok(client) => crate::agent::membership::discover_grpc(
                        &m.host_port(settings.gossip.port),
                        client,
                    )
                    .await
                    .map(|grpc| {
                        let met = seen.and_then(|s| s.get()).or(ca_pin);
                        (format!("http://{grpc}"), met)
                    }),
                };
                out.push((m.to_string(), found));
            }
            out
        }
    }
}

/// A seed as written, and its gRPC URI with the CA pin met on its gossip port (or why not).
type SeedUri = (String, Result<(String, Option<SpkiPin>), String>);

/// Redis Enterprise: "The host file /etc/hosts on each node in the cluster must include ...
/// ::1 localhost". Checked before an IPv6 cluster is created or joined, not after.
fn check_hosts_file(family: Family) -> Result<(), Refusal> {
    if family != Family::Ipv6 {
        return Ok(());
    }
    let path = crate::core::preflight::HOSTS_PATH;
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let localhost = IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);
    if crate::core::hosts::maps(&text, localhost, "localhost") {
        return Ok(());
    }
    Err(Refusal::bootstrap(
        "hosts_ipv6_localhost",
        format!("{path} does not map ::1 to localhost, which every node of an IPv6 cluster needs; fix: run `stackring preflight --fix` (adds '::1 localhost', keeps every other line), then retry"),
    ))
}
