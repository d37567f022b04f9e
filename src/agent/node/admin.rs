//! Admin changes and the contacted node's side of joins, as typed methods of the handle. A live
//! node applies changes to itself, in its actor, one at a time, durably, and answers with its new
//! version; the member that took a change relays it there (`Cluster.ApplyChange`, proven with the
//! cluster key). Only a node that is down gets a change through gossip, applied when it returns.

use super::actor::Command;
use super::client::{call_apply_change, call_change_gossip_keys, ChannelError};
use super::{argon2, ClusterNode};
use crate::agent::authguard::{Denied, Outcome};
use crate::agent::systemd::LogOnce;
use crate::core::cluster::{
    self, relay_fields, AddrReply, ClusterRecord, ExternalAddrsReply, ExternalOp, ForgetReply,
    JoinAuth, JoinRefusal, JoinerFacts,
};
use crate::core::config::echo;
use crate::core::members::MemberView;
use crate::core::net::{valid_name, NAME_RULE};
use crate::core::refusal::{ErrorBody, Refusal, RefusalKind};
use crate::core::seal::{KeyId, KeyringOp};
use crate::core::snapshot::Family;
use crate::core::token::TokenRefusal;
use crate::proto::pb;
use std::net::IpAddr;

/// What a joiner is given once admitted.
#[derive(Debug, Clone)]
pub(crate) struct Admission {
    pub(crate) record: std::sync::Arc<ClusterRecord>,
    /// Advertised gossip addresses of the healthy members, sorted.
    pub(crate) seeds: Vec<String>,
}

/// Why a join was not admitted.
#[derive(Debug)]
pub(crate) enum JoinDenied {
    /// Answered in the reply (`NodeBootstrapError` with a sub-code).
    Refused(JoinRefusal),
    /// The guard makes the source wait (a gRPC status, not a reply).
    Throttled(Denied),
}

/// A change relayed by a member, as it arrived (the proof covers these texts).
#[derive(Debug, Clone)]
pub(crate) struct RelayedChange {
    pub(crate) node_id: String,
    pub(crate) action: String,
    pub(crate) addrs: Vec<String>,
    pub(crate) sent_ms: u64,
    pub(crate) nonce: u64,
    pub(crate) proof: String,
    pub(crate) from: String,
}

fn random_u64() -> u64 {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    OsRng.next_u64()
}

impl ClusterNode {
    /// The member `id`, as this node sees it.
    fn member(&self, id: &str) -> Result<(std::sync::Arc<ClusterRecord>, MemberView), Refusal> {
        if !valid_name(id) {
            return Err(Refusal::invalid(format!(
                "node id '{}' is not a valid node id; fix: {NAME_RULE} (as `status nodes` shows it)",
                echo(&id.escape_debug().to_string()),
            )));
        }
        let (_, members) = self.members().ok_or_else(Refusal::not_in_cluster)?;
        let record = self.record().ok_or_else(Refusal::not_in_cluster)?;
        let known: Vec<&str> = members.iter().map(|m| m.entry.id.as_str()).collect();
        let found = members.iter().find(|m| m.entry.id == id).cloned();
        let member = found.ok_or_else(|| {
            Refusal::new(
                RefusalKind::NotFound,
                ErrorBody::new(
                    "UnknownNode",
                    None,
                    format!(
                        "no node '{id}' in cluster '{}'; known: {}",
                        record.name,
                        known.join(", ")
                    ),
                ),
            )
        })?;
        Ok((record, member))
    }

    /// `node <ID> external_addr add|set|remove <IP…>` (addresses already validated as external):
    /// unbound addresses are allowed (an elastic IP). Warns when an address is another node's
    /// internal address (allowed: an operator may mean it, but its clients reach that node).
    pub(crate) async fn change_external(
        &self,
        target: &str,
        op: ExternalOp,
        addrs: Vec<IpAddr>,
    ) -> Result<ExternalAddrsReply, Refusal> {
        if addrs.is_empty() {
            return Err(Refusal::invalid(
                "addrs: empty; fix: name at least one address",
            ));
        }
        let record = self.record().ok_or_else(Refusal::not_in_cluster)?;
        let mut reply = if target == record.node_id {
            let (version, list) = self
                .ask(|reply| Command::ApplyExternal {
                    op,
                    addrs,
                    relayed: None,
                    reply,
                })
                .await?;
            external_reply(target, list, Some(version))
        } else {
            let (_, member) = self.member(target)?;
            if member.healthy() {
                self.relay_external(&record, &member, op, &addrs).await?
            } else {
                let list = self
                    .ask(|reply| Command::ChangeDownNode {
                        member: Box::new(member),
                        op,
                        addrs,
                        reply,
                    })
                    .await?;
                let mut reply = external_reply(target, list, None);
                reply.pending = true;
                reply
            }
        };
        let (_, members) = self.members().unwrap_or_default();
        reply.warnings = reply
            .external_addrs
            .iter()
            .filter_map(|a| {
                let owner = members
                    .iter()
                    .find(|m| m.entry.id != target && m.entry.addr == a.to_string())?;
                Some(format!(
                    "{a} is the internal address of node '{}': clients of {a} would reach that node, not '{target}'",
                    owner.entry.id
                ))
            })
            .collect();
        for w in &reply.warnings {
            log::warn!("external_addr of node {target}: {w}");
        }
        Ok(reply)
    }

    /// Sends a change to the live node it is for, and waits for its answer.
    async fn relay_external(
        &self,
        record: &ClusterRecord,
        member: &MemberView,
        op: ExternalOp,
        addrs: &[IpAddr],
    ) -> Result<ExternalAddrsReply, Refusal> {
        let target = member.entry.id.as_str();
        let texts: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
        let sent_ms = crate::agent::now_ms();
        let nonce = random_u64();
        let proof = cluster::relay_proof(
            &record.password_hash,
            &relay_fields(target, op.as_str(), &texts, sent_ms, nonce, &record.node_id),
        );
        let request = pb::ApplyChangeRequest {
            node_id: target.to_string(),
            action: op.as_str().to_string(),
            addrs: texts,
            sent_ms,
            nonce,
            proof,
            from: record.node_id.clone(),
        };
        let uri = format!("http://{}", member.entry.advertised_grpc);
        // Mutual TLS: the target checks that this node is a member; this node checks that the
        // target is the node the change is for.
        let tls = self
            .shared
            .tls
            .member_client(Some(target))
            .map_err(|e| Refusal::internal(e.to_string()))?
            .ok_or_else(|| Refusal::internal("this node holds no cluster certificate"))?;
        let reply = call_apply_change(&uri, tls, request).await.map_err(|e| match e {
            ChannelError::Refused(why) => Refusal::new(
                RefusalKind::Unavailable,
                ErrorBody::new(
                    "AdminError",
                    Some("untrusted_peer"),
                    format!("what answers at {uri} for node '{target}' was refused in the TLS handshake, and the change was not sent: {why}"),
                ),
            ),
            ChannelError::Failed(e) => Refusal::new(
                RefusalKind::Unavailable,
                ErrorBody::new(
                    "AdminError",
                    Some("node_unreachable"),
                    format!("node '{target}' did not answer at {uri} ({e}); the change was not applied; fix: retry (a node that is DOWN takes changes through gossip)"),
                ),
            ),
        })?;
        if let Some(r) = reply.refusal {
            let kind = if r.error_code == "StorageError" {
                RefusalKind::NotDurable
            } else {
                RefusalKind::Conflict
            };
            return Err(Refusal::new(
                kind,
                ErrorBody::new(&r.error_code, Some(&r.sub_code), r.description),
            ));
        }
        let list = reply
            .external_addrs
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        Ok(external_reply(target, list, Some(reply.version)))
    }

    /// The called node's side of `Cluster.ApplyChange`: the change must be for this node, carry a
    /// member's proof, be recent and new; then it is applied like a local one.
    pub(crate) async fn apply_relayed(
        &self,
        change: RelayedChange,
    ) -> Result<(u64, Vec<IpAddr>), Refusal> {
        let record = self.record().ok_or_else(|| {
            Refusal::admin(
                "not_in_cluster",
                "the called node does not belong to a cluster",
            )
        })?;
        if change.node_id != record.node_id {
            return Err(Refusal::admin(
                "wrong_node",
                format!(
                    "this is node '{}', not '{}'",
                    record.node_id,
                    echo(&change.node_id)
                ),
            ));
        }
        let expected = cluster::relay_proof(
            &record.password_hash,
            &relay_fields(
                &change.node_id,
                &change.action,
                &change.addrs,
                change.sent_ms,
                change.nonce,
                &change.from,
            ),
        );
        if !cluster::proofs_match(&expected, &change.proof) {
            if let Some(more) = FORGED_LOG.admit(crate::agent::now_ms()) {
                log::warn!(
                    "refused a relayed admin change without a member's proof (from '{}'){}",
                    echo(&change.from),
                    LogOnce::suppressed(more)
                );
            }
            return Err(Refusal::admin(
                "not_a_member",
                "the change does not carry a member's proof",
            ));
        }
        let op = ExternalOp::parse(&change.action).ok_or_else(|| {
            Refusal::new(
                RefusalKind::Invalid,
                ErrorBody::new(
                    "InvalidRequest",
                    Some("bad_action"),
                    "action is not add, set or remove",
                ),
            )
        })?;
        let addrs = crate::core::cluster::parse_external_addrs("addrs", &change.addrs)
            .and_then(|a| {
                if a.is_empty() {
                    Err("addrs: empty".to_string())
                } else {
                    Ok(a)
                }
            })
            .map_err(|description| {
                Refusal::new(
                    RefusalKind::Invalid,
                    ErrorBody::new("InvalidRequest", Some("bad_addrs"), description),
                )
            })?;
        self.ask(|reply| Command::ApplyExternal {
            op,
            addrs,
            relayed: Some((change.sent_ms, change.nonce)),
            reply,
        })
        .await
    }

    /// `node <ID> addr set <IP>` (an address already validated as advertisable): only for a node
    /// that is down, only within the cluster's family.
    pub(crate) async fn set_addr(&self, target: &str, ip: IpAddr) -> Result<AddrReply, Refusal> {
        let (record, member) = self.member(target)?;
        if Family::of(&ip) != record.family {
            return Err(Refusal::admin(
                "family_mismatch",
                format!(
                    "cluster '{}' uses {} but {ip} is {}: the internal address must be of the cluster's family",
                    record.name,
                    record.family,
                    Family::of(&ip)
                ),
            ));
        }
        if member.healthy() {
            return Err(Refusal::admin(
                "node_is_up",
                format!("node '{target}' is up; its internal address can only change while it is down; fix: stop it first"),
            ));
        }
        let target = target.to_string();
        self.ask(|reply| Command::SetDownNodeAddr {
            target: target.clone(),
            addr: ip,
            reply,
        })
        .await?;
        log::info!("internal address of node {target} set to {ip} (applies when it comes back)");
        Ok(AddrReply {
            node: target,
            addr: ip,
        })
    }

    /// `node <ID> forget`: removes a dead node from every member's view.
    pub(crate) async fn forget(&self, target: &str) -> Result<ForgetReply, Refusal> {
        let (_, member) = self.member(target)?;
        if member.healthy() {
            return Err(Refusal::admin(
                "node_is_up",
                format!("node '{target}' is alive; only a DOWN node can be forgotten"),
            ));
        }
        let target = target.to_string();
        self.ask(|reply| Command::Forget {
            target: target.clone(),
            generation: member.generation,
            reply,
        })
        .await?;
        log::info!("forgot node {target}");
        Ok(ForgetReply {
            node: target,
            forgotten: true,
        })
    }

    /// The contacted node's side of `Cluster.Join`; `source` is the caller's address (backoff).
    pub(crate) async fn admit(
        &self,
        source: Option<IpAddr>,
        facts: JoinerFacts,
        auth: JoinAuth,
    ) -> Result<Admission, JoinDenied> {
        let Some(record) = self.record() else {
            self.shared.metrics.count_join("refused", "not_in_cluster");
            return Err(JoinDenied::Refused(JoinRefusal {
                error_code: "NodeBootstrapError",
                sub_code: "not_in_cluster",
                description: "the contacted node does not belong to a cluster yet".into(),
            }));
        };
        let (_, members) = self.members().unwrap_or_default();
        let live: Vec<String> = members
            .iter()
            .filter(|m| m.healthy())
            .map(|m| m.entry.id.clone())
            .collect();
        // Credentials (or the token) first, through the guard (backoff, bounded queue); argon2
        // off the workers. An expired token whose secret is right passes the guard (no backoff
        // for its holder) and is refused as expired below.
        let verified = match &auth {
            JoinAuth::Credentials { username, password } => {
                let (record, username, password) =
                    (record.clone(), username.clone(), password.clone());
                self.shared
                    .auth
                    .check(source, async move {
                        argon2(move || cluster::credentials(&record, &username, &password))
                            .await
                            .unwrap_or(Outcome::Missing)
                    })
                    .await
            }
            JoinAuth::Token(credential) => {
                self.shared
                    .auth
                    .check(source, async {
                        match self.check_token(credential).await {
                            Ok(()) | Err(TokenRefusal::Expired) => Outcome::Valid,
                            Err(_) => Outcome::WrongToken,
                        }
                    })
                    .await
            }
        };
        let check = match (verified, &auth) {
            (Ok(()), JoinAuth::Token(credential)) => match self.check_token(credential).await {
                Ok(()) => cluster::validate_joiner(&record, &facts, &live),
                Err(r) => Err(cluster::token_refused(r)),
            },
            (Ok(()), _) => cluster::validate_joiner(&record, &facts, &live),
            (Err(Denied::Invalid), JoinAuth::Token(_)) => {
                Err(cluster::token_refused(TokenRefusal::Invalid))
            }
            (Err(Denied::Invalid), _) => Err(cluster::invalid_credentials()),
            (Err(throttled), _) => {
                self.shared.metrics.count_join("throttled", "rate_limited");
                log::warn!(
                    "join of node {}: {}",
                    facts.node_id,
                    throttled.message(source)
                );
                return Err(JoinDenied::Throttled(throttled));
            }
        };
        // A token is used up, durably, before the joiner gets anything.
        let check = match (check, &auth) {
            (Ok(()), JoinAuth::Token(credential)) => self.redeem_token(credential).await,
            (check, _) => check,
        };
        match check {
            Ok(()) => {
                self.shared.metrics.count_join("admitted", "");
                if let JoinAuth::Token(t) = &auth {
                    log::info!("join token {} redeemed by node {}", t.id, facts.node_id);
                }
                log::info!("node {} joins cluster {}", facts.node_id, record.name);
                let mut seeds: Vec<String> = members
                    .iter()
                    .filter(|m| m.healthy())
                    .map(|m| m.entry.advertised_gossip.clone())
                    .collect();
                seeds.sort();
                Ok(Admission { record, seeds })
            }
            Err(refusal) => {
                self.shared.metrics.count_join("refused", refusal.sub_code);
                log::warn!(
                    "join of node {} refused: {} ({})",
                    facts.node_id,
                    refusal.sub_code,
                    refusal.description
                );
                Err(JoinDenied::Refused(refusal))
            }
        }
    }
}

fn external_reply(node: &str, list: Vec<IpAddr>, version: Option<u64>) -> ExternalAddrsReply {
    ExternalAddrsReply {
        node: node.to_string(),
        external_addrs: list,
        version,
        pending: false,
        warnings: vec![],
    }
}

/// Forged relayed changes are logged at most once per [`LogOnce`] window, with the count
/// refused meanwhile: 2,000 forged requests wrote 2,000 warnings (any host that reaches the gRPC
/// port could fill the journal at thousands of lines a second).
static FORGED_LOG: LogOnce = LogOnce::new();

/// What one member did with a keyring change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum KeyOutcome {
    /// Durable there, and its transport uses it.
    Applied,
    /// The member refused it (its words in `detail`); nothing changed there.
    Refused,
    /// No answer; whether it applied the change is unknown.
    Unreachable,
    /// Not asked: an earlier member did not apply it (`use`, `remove`).
    NotAsked,
    /// DOWN, so not asked (not a live member).
    Down,
}

/// One member's row of a keyring change.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct NodeKeyResult {
    pub(crate) node: String,
    pub(crate) outcome: KeyOutcome,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) detail: String,
    /// Its key ids after the change, the one in use first (when it answered).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) key_ids: Vec<String>,
}

/// `gossip-key install|use|remove`: what each member did. `complete` when every live member
/// applied it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct GossipKeysReport {
    pub(crate) action: &'static str,
    pub(crate) key_id: String,
    pub(crate) complete: bool,
    pub(crate) nodes: Vec<NodeKeyResult>,
}

/// `gossip-key list`: each member's key ids as this node learns them through gossip.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct GossipKeysList {
    pub(crate) cluster_name: String,
    pub(crate) nodes: Vec<NodeKeys>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct NodeKeys {
    pub(crate) node: String,
    /// "OK" or "DOWN".
    pub(crate) status: String,
    pub(crate) local: bool,
    /// The key in use (empty when the member has not told).
    pub(crate) primary: String,
    /// Every installed key id, the one in use first.
    pub(crate) key_ids: Vec<String>,
}

fn id_texts(ids: &[KeyId]) -> Vec<String> {
    ids.iter().map(KeyId::to_string).collect()
}

impl ClusterNode {
    /// Every member's key ids as gossiped.
    pub(crate) async fn gossip_keys(&self) -> Result<GossipKeysList, Refusal> {
        let (cluster_name, members) = self.members().ok_or_else(Refusal::not_in_cluster)?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.commands
            .send(Command::Keyrings { reply })
            .await
            .map_err(|_| Refusal::internal("the cluster node has stopped"))?;
        let rings = answer
            .await
            .map_err(|_| Refusal::internal("the cluster node has stopped"))?;
        let nodes = members
            .iter()
            .map(|m| {
                let ids = rings
                    .iter()
                    .find(|(id, _)| *id == m.entry.id)
                    .map(|(_, ids)| id_texts(ids))
                    .unwrap_or_default();
                NodeKeys {
                    node: m.entry.id.clone(),
                    status: m.status.as_str().to_string(),
                    local: m.local,
                    primary: ids.first().cloned().unwrap_or_default(),
                    key_ids: ids,
                }
            })
            .collect();
        Ok(GossipKeysList {
            cluster_name,
            nodes,
        })
    }

    /// `gossip-key install|use|remove` on every live member: this node first, then each other
    /// live member in id order, over mutual TLS. `use` and `remove` are first checked against
    /// every live member's keyring as gossiped, and stop at the first member that does not apply
    /// them (nothing further changes); `install` is asked of every live member.
    pub(crate) async fn change_gossip_keys(
        &self,
        op: KeyringOp,
    ) -> Result<GossipKeysReport, Refusal> {
        let record = self.record().ok_or_else(Refusal::not_in_cluster)?;
        let (_, members) = self.members().ok_or_else(Refusal::not_in_cluster)?;
        let stop_early = !matches!(op, KeyringOp::Install(_));
        let mut report = GossipKeysReport {
            action: op.action(),
            key_id: op.key_id().to_string(),
            complete: false,
            nodes: vec![],
        };
        let mut others: Vec<&MemberView> = members
            .iter()
            .filter(|m| !m.local && m.entry.id != record.node_id)
            .collect();
        others.sort_by(|a, b| a.entry.id.cmp(&b.entry.id));
        // Before changing anything: would every live member take it?
        if stop_early {
            let rings = self.gossip_keys().await?;
            let blocked = rings.nodes.iter().find_map(|n| {
                let live = n.status == "OK" || n.local;
                let ids: Vec<KeyId> = n
                    .key_ids
                    .iter()
                    .filter_map(|t| KeyId::parse(t).ok())
                    .collect();
                let why = op.precheck(&ids)?;
                live.then(|| (n.node.clone(), why))
            });
            if let Some((node, why)) = blocked {
                report.nodes = std::iter::once(&record.node_id)
                    .chain(others.iter().map(|m| &m.entry.id))
                    .map(|id| NodeKeyResult {
                        node: id.clone(),
                        outcome: if *id == node {
                            KeyOutcome::Refused
                        } else {
                            KeyOutcome::NotAsked
                        },
                        detail: if *id == node {
                            format!("{why} (as it gossips its keyring)")
                        } else {
                            String::new()
                        },
                        key_ids: vec![],
                    })
                    .collect();
                return Ok(report);
            }
        }
        let mut stopped = false;
        let here = self.apply_keyring_here(op.clone()).await;
        report.nodes.push(match here {
            Ok(ids) => NodeKeyResult {
                node: record.node_id.clone(),
                outcome: KeyOutcome::Applied,
                detail: String::new(),
                key_ids: id_texts(&ids),
            },
            Err(r) => {
                stopped = true;
                NodeKeyResult {
                    node: record.node_id.clone(),
                    outcome: KeyOutcome::Refused,
                    detail: r.body.description,
                    key_ids: vec![],
                }
            }
        });
        for member in others {
            let id = member.entry.id.clone();
            let row = if !member.healthy() {
                NodeKeyResult {
                    node: id,
                    outcome: KeyOutcome::Down,
                    detail:
                        "not changed; when it comes back it needs a key in use here (or join again)"
                            .into(),
                    key_ids: vec![],
                }
            } else if stopped {
                NodeKeyResult {
                    node: id,
                    outcome: KeyOutcome::NotAsked,
                    detail: "not asked: an earlier node did not apply it".into(),
                    key_ids: vec![],
                }
            } else {
                let row = self.relay_keyring(&record, member, &op).await;
                stopped = stop_early && row.outcome != KeyOutcome::Applied;
                row
            };
            report.nodes.push(row);
        }
        report.complete = report
            .nodes
            .iter()
            .all(|n| matches!(n.outcome, KeyOutcome::Applied | KeyOutcome::Down));
        Ok(report)
    }

    /// This node's side: durable, then live (the actor orders it with every other change).
    pub(crate) async fn apply_keyring_here(&self, op: KeyringOp) -> Result<Vec<KeyId>, Refusal> {
        self.ask(|reply| Command::ChangeKeyring { op, reply }).await
    }

    async fn relay_keyring(
        &self,
        record: &ClusterRecord,
        member: &MemberView,
        op: &KeyringOp,
    ) -> NodeKeyResult {
        let target = member.entry.id.clone();
        let (key, key_id) = match op {
            KeyringOp::Install(k) => (k.to_hex(), String::new()),
            other => (String::new(), other.key_id().to_string()),
        };
        let request = pb::GossipKeysRequest {
            node_id: target.clone(),
            action: op.action().to_string(),
            key,
            key_id,
            from: record.node_id.clone(),
        };
        let uri = format!("http://{}", member.entry.advertised_grpc);
        let tls = match self.shared.tls.member_client(Some(&target)) {
            Ok(Some(tls)) => tls,
            Ok(None) => {
                return NodeKeyResult {
                    node: target,
                    outcome: KeyOutcome::Unreachable,
                    detail: "this node holds no cluster certificate".into(),
                    key_ids: vec![],
                }
            }
            Err(e) => {
                return NodeKeyResult {
                    node: target,
                    outcome: KeyOutcome::Unreachable,
                    detail: e.to_string(),
                    key_ids: vec![],
                }
            }
        };
        match call_change_gossip_keys(&uri, tls, request).await {
            Ok(reply) => match reply.refusal {
                Some(r) => NodeKeyResult {
                    node: target,
                    outcome: KeyOutcome::Refused,
                    detail: r.description,
                    key_ids: vec![],
                },
                None => NodeKeyResult {
                    node: target,
                    outcome: KeyOutcome::Applied,
                    detail: String::new(),
                    key_ids: reply.key_ids,
                },
            },
            Err(e) => NodeKeyResult {
                node: target,
                outcome: KeyOutcome::Unreachable,
                detail: format!("no answer at {uri} ({e}): it may or may not have applied it"),
                key_ids: vec![],
            },
        }
    }

    /// The called node's side of `Cluster.ChangeGossipKeys` (the caller's member certificate was
    /// checked by the server): the change must be for this node.
    pub(crate) async fn apply_relayed_keyring(
        &self,
        node_id: &str,
        op: KeyringOp,
        from: &str,
    ) -> Result<Vec<KeyId>, Refusal> {
        let record = self.record().ok_or_else(|| {
            Refusal::admin(
                "not_in_cluster",
                "the called node does not belong to a cluster",
            )
        })?;
        if node_id != record.node_id {
            return Err(Refusal::admin(
                "wrong_node",
                format!("this is node '{}', not '{}'", record.node_id, echo(node_id)),
            ));
        }
        log::info!(
            "gossip keyring change '{} {}' relayed by node {}",
            op.action(),
            op.key_id(),
            echo(from)
        );
        self.apply_keyring_here(op).await
    }
}
