//! The cluster node's one task: it owns gossip membership and is the only writer of the record.
//! Everything that changes either arrives as a [`Command`] and is handled to the end before the
//! next one, so admin changes take effect in the order they arrive, exactly once, and an
//! identity change can never overtake the one before it. Readers never wait for it: the record,
//! the member list and the bootstrap status are published on `watch` channels.

use super::{Announcement, Shared, RECORD_FILE};
use crate::agent::membership::Membership;
use crate::core::cluster::{self, ClusterRecord, ExternalOp};
use crate::core::decide::Identity;
use crate::core::members::{MemberView, NodeEntry, NodeState, FORGET_PREFIX, OVERRIDE_PREFIX};
use crate::core::refusal::{ErrorBody, Refusal, RefusalKind};
use crate::core::seal::{KeyId, KeyringOp};
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// How often the node refreshes its member view, applies changes gossiped for it, and checks
/// whether it has synced (also woken at once by chitchat's live-nodes watcher).
pub(super) const TICK: Duration = Duration::from_millis(100);
/// How often the member view is rebuilt without a change while some row's "last seen" ages (a
/// node down, or one only chitchat speaks of): every change (a node up or down, any state
/// gossiped) rebuilds it at once. A view of nodes all up does not age: it waits for a change
/// (rebuilding 100 nodes' entries every second was a sixth of an idle node's CPU).
const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// How often the peers' gossip addresses are persisted (for a restart to rejoin through them).
const REMEMBER_PEERS_EVERY: Duration = Duration::from_secs(1);
/// Node certificates live a year and renew at two thirds: an hourly look is plenty.
const RENEWAL_CHECK_EVERY: Duration = Duration::from_secs(3600);
/// Alone this long after a restart, a node stops waiting to hear from the cluster.
const SYNC_ALONE_AFTER: Duration = Duration::from_secs(3);
/// How far a relayed change's clock may be from ours, and how long its nonce is remembered.
pub(super) const RELAY_WINDOW_MS: u64 = 60_000;
/// Nonces remembered at most (a flood cannot grow memory without bound).
const RELAY_NONCES: usize = 10_000;

type Reply<T> = oneshot::Sender<Result<T, Refusal>>;

/// What the node can be asked to do.
pub(super) enum Command {
    /// A bootstrap succeeded: persist the record and start gossip.
    Adopt {
        record: Box<ClusterRecord>,
        identity: Box<Identity>,
        reply: Reply<()>,
    },
    /// An external-address change of this node (taken here, or relayed by a member).
    ApplyExternal {
        op: ExternalOp,
        addrs: Vec<IpAddr>,
        /// `(sent_ms, nonce)` of a relayed change: refused if stale or seen before.
        relayed: Option<(u64, u64)>,
        reply: Reply<(u64, Vec<IpAddr>)>,
    },
    /// An external-address change of a node that is down: built on the newest change already
    /// waiting for it, gossiped, applied by that node when it comes back.
    ChangeDownNode {
        member: Box<MemberView>,
        op: ExternalOp,
        addrs: Vec<IpAddr>,
        reply: Reply<Vec<IpAddr>>,
    },
    /// A new internal address for a node that is down (applied when it comes back).
    SetDownNodeAddr {
        target: String,
        addr: IpAddr,
        reply: Reply<()>,
    },
    /// Hide a dead node's generation from every view.
    Forget {
        target: String,
        generation: u64,
        reply: Reply<()>,
    },
    /// SIGTERM: remember the peers, say LEAVING for three rounds, stop gossiping.
    Leave { reply: oneshot::Sender<()> },
    /// The prober's latest findings (`core::reach` encoding), for gossip.
    PublishReach(String),
    /// A change of this node's gossip keyring: made durable, then used by the live transport.
    /// Answers with the key ids after it, the one in use first.
    ChangeKeyring {
        op: KeyringOp,
        reply: Reply<Vec<KeyId>>,
    },
    /// Every node's key ids as gossiped: `(node id, key ids, primary first)`, newest generation.
    Keyrings {
        reply: oneshot::Sender<Vec<(String, Vec<KeyId>)>>,
    },
}

pub(super) struct Actor {
    shared: Arc<Shared>,
    membership: Option<Membership>,
    /// After a restart the node says JOINING until it has heard from the cluster once and applied
    /// the admin changes made while it was down (a new address must be checked before ACTIVE).
    synced: bool,
    gossip_started: Instant,
    peers_remembered: Instant,
    /// Relayed admin changes seen lately, (sent_ms, nonce): a replay is refused.
    seen_relays: VecDeque<(u64, u64)>,
    /// When the node certificate's renewal was last considered.
    renewal_checked: Instant,
    /// When the member view was last rebuilt (`refresh_members`).
    members_refreshed: Instant,
    /// Some row of the view shows a "last seen" that ages (`REFRESH_EVERY`).
    members_age: bool,
    /// Gossip changed (or an application must be retried) since the gossiped admin changes were
    /// last looked at: they arrive only with gossip, so an idle tick does not scan every key.
    gossip_changed: bool,
}

impl Actor {
    pub(super) fn new(shared: Arc<Shared>) -> Actor {
        Actor {
            shared,
            membership: None,
            synced: false,
            gossip_started: Instant::now(),
            peers_remembered: Instant::now(),
            seen_relays: VecDeque::new(),
            renewal_checked: Instant::now(),
            members_refreshed: Instant::now(),
            members_age: true,
            gossip_changed: true,
        }
    }

    /// `announced` is subscribed before the task starts, so the first announcement is never
    /// mistaken for one already seen.
    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut announced: watch::Receiver<Announcement>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut live = None;
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.handle(command).await,
                    None => break,
                },
                Ok(()) = announced.changed() => {
                    let latest = announced.borrow_and_update().clone();
                    match latest {
                        Announcement::Ready(identity) => self.on_identity(&identity).await,
                        Announcement::NotReady(reason) => self.on_not_ready(&reason).await,
                        Announcement::Nothing => {}
                    }
                }
                _ = tick.tick() => self.on_tick().await,
                changed = live_nodes_changed(&mut live) => {
                    if changed.is_err() {
                        live = None;
                    }
                    self.gossip_changed = true;
                    self.refresh_members().await;
                }
            }
            if live.is_none() {
                if let Some(m) = &self.membership {
                    live = Some(m.changes());
                }
            }
            if self.membership.is_none() {
                live = None;
            }
        }
        if let Some(m) = self.membership.take() {
            m.shutdown().await;
        }
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Adopt {
                record,
                identity,
                reply,
            } => {
                let _ = reply.send(self.adopt(*record, &identity).await);
            }
            Command::ApplyExternal {
                op,
                addrs,
                relayed,
                reply,
            } => {
                let result = match relayed {
                    Some((sent_ms, nonce)) => self.check_relay(sent_ms, nonce),
                    None => Ok(()),
                };
                let _ = reply.send(result.and_then(|()| self.apply_external_here(op, &addrs)));
            }
            Command::ChangeDownNode {
                member,
                op,
                addrs,
                reply,
            } => {
                let _ = reply.send(self.change_down_node(&member, op, &addrs).await);
            }
            Command::SetDownNodeAddr {
                target,
                addr,
                reply,
            } => {
                let value = serde_json::json!(addr.to_string());
                let _ = reply.send(self.gossip_override(&target, "addr", value).await);
            }
            Command::Forget {
                target,
                generation,
                reply,
            } => {
                let result = match &self.membership {
                    Some(m) => {
                        m.set_own_key(&format!("{FORGET_PREFIX}{target}"), &generation.to_string())
                            .await;
                        Ok(())
                    }
                    None => Err(Refusal::admin("not_in_cluster", "gossip is not running")),
                };
                self.refresh_members().await;
                let _ = reply.send(result);
            }
            Command::Leave { reply } => {
                self.leave().await;
                let _ = reply.send(());
            }
            Command::ChangeKeyring { op, reply } => {
                let _ = reply.send(self.change_keyring(&op).await);
            }
            Command::Keyrings { reply } => {
                let _ = reply.send(self.keyrings().await);
            }
            Command::PublishReach(findings) => {
                if let Some(m) = &self.membership {
                    m.set_own_key(crate::agent::membership::REACH_KEY, &findings)
                        .await;
                }
            }
        }
    }

    /// The one way the record changes once it exists: computed from the current record, made
    /// durable before anyone sees it. A change that cannot be written is refused and changes
    /// nothing (persist first, acknowledge second).
    fn update_record<T>(
        &self,
        change: impl FnOnce(&mut ClusterRecord) -> Result<T, Refusal>,
    ) -> Result<(Arc<ClusterRecord>, T), Refusal> {
        let current = self
            .shared
            .record
            .borrow()
            .clone()
            .ok_or_else(Refusal::not_in_cluster)?;
        let mut next = (*current).clone();
        let out = change(&mut next)?;
        if next == *current {
            return Ok((current, out));
        }
        self.persist(&next).map_err(|e| {
            Refusal::new(
                RefusalKind::NotDurable,
                ErrorBody::new(
                    "StorageError",
                    Some("not_durable"),
                    format!(
                        "{e}; the change was not applied, on any node; fix: free space or repair {} (node.state_dir), then retry",
                        self.shared.state_dir.display()
                    ),
                ),
            )
        })?;
        let next = Arc::new(next);
        self.shared.record.send_replace(Some(next.clone()));
        Ok((next, out))
    }

    fn count_admin_change(&self, kind: &str) {
        self.shared
            .metrics
            .admin_changes
            .get_or_create(&vec![("kind".into(), kind.into())])
            .inc();
    }

    fn persist(&self, record: &ClusterRecord) -> Result<(), String> {
        let dir = &self.shared.state_dir;
        let json = serde_json::to_vec_pretty(record).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let path = dir.join(RECORD_FILE);
        crate::agent::fsutil::write_atomic(&path, &json, 0o600)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    fn entry(&self, identity: &Identity, state: NodeState) -> NodeEntry {
        let record = self.shared.record.borrow().clone();
        NodeEntry {
            id: identity.id.clone(),
            hostname: self.shared.hostname.clone(),
            state,
            family: identity.family.as_str().into(),
            addr: identity.internal_addr.to_string(),
            external_addrs: identity
                .external_addrs
                .iter()
                .map(|a| a.to_string())
                .collect(),
            advertised_grpc: identity.grpc.advertise.to_string(),
            advertised_http: identity.http.advertise.to_string(),
            advertised_gossip: identity.gossip.advertise.to_string(),
            listen_grpc: identity.grpc.listen.to_string(),
            zone: identity.zone.clone(),
            registered_unix: record
                .as_ref()
                .map(|r| r.registered_unix)
                .filter(|t| *t > 0)
                .unwrap_or_else(crate::agent::now_unix),
            reason: String::new(),
            admin_version: record.as_ref().map(|r| r.admin_version).unwrap_or(0),
            applied_ms: record
                .as_ref()
                .and_then(|r| r.applied.values().max().copied())
                .unwrap_or(0),
            version: env!("STACKRING_BUILD").to_string(),
            cert_expires_unix: self
                .shared
                .tls
                .node_cert_expiry()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs())
                .unwrap_or(0),
        }
    }

    fn own_state(&self) -> NodeState {
        if self.synced {
            NodeState::Active
        } else {
            NodeState::Joining
        }
    }

    async fn start_gossip(
        &mut self,
        record: &ClusterRecord,
        entry: &NodeEntry,
        identity: &Identity,
    ) -> anyhow::Result<()> {
        let keyring: crate::core::seal::Keyring = record.gossip_keys.clone().ok_or_else(|| {
            anyhow::anyhow!(
                "{} has no gossip key (written by a stackring older than sealed gossip); fix: stop the node, remove that file and join the cluster again",
                self.shared.state_dir.join(RECORD_FILE).display()
            )
        })?;
        let seal = crate::agent::gossip_seal::GossipSeal::new(
            keyring.clone(),
            self.shared.metrics.clone(),
        );
        let membership = Membership::start(
            &record.name,
            entry,
            identity.gossip.listen,
            identity.gossip.advertise,
            record.seeds.clone(),
            &self.shared.network,
            crate::agent::membership::GossipSecurity {
                seal,
                tls: Some(self.shared.tls.clone()),
            },
        )
        .await?;
        membership
            .set_own_key(
                crate::agent::membership::KEYRING_KEY,
                &crate::core::seal::encode_ids(&keyring.ids()),
            )
            .await;
        self.membership = Some(membership);
        self.gossip_started = Instant::now();
        self.gossip_changed = true;
        self.members_age = true;
        Ok(())
    }

    /// `gossip-key install|use|remove` on this node: the record with the new keyring is made
    /// durable first (refused, changing nothing, when it cannot be), then the live transport
    /// seals and opens with it, then the members learn its key ids through gossip.
    async fn change_keyring(&mut self, op: &KeyringOp) -> Result<Vec<KeyId>, Refusal> {
        let (record, ()) = self.update_record(|r| {
            let ring = r.gossip_keys.as_mut().ok_or_else(|| {
                Refusal::admin("no_gossip_key", "this node's record has no gossip keyring")
            })?;
            op.apply(ring).map_err(|why| {
                Refusal::new(
                    RefusalKind::Conflict,
                    ErrorBody::new("AdminError", Some("keyring_refused"), why),
                )
            })
        })?;
        let Some(ring) = record.gossip_keys.clone() else {
            return Err(Refusal::internal("the keyring vanished"));
        };
        let ids = ring.ids();
        if let Some(m) = &self.membership {
            m.set_keyring(ring);
            m.set_own_key(
                crate::agent::membership::KEYRING_KEY,
                &crate::core::seal::encode_ids(&ids),
            )
            .await;
        }
        self.count_admin_change("gossip_keys");
        let others: Vec<String> = ids[1..].iter().map(KeyId::to_string).collect();
        log::info!(
            "gossip keyring: {} key {}; in use {}, also installed: {}",
            op.action(),
            op.key_id(),
            ids[0],
            if others.is_empty() {
                "none".to_string()
            } else {
                others.join(", ")
            }
        );
        Ok(ids)
    }

    /// Every node's key ids as it gossips them (its newest generation), sorted by node id.
    async fn keyrings(&self) -> Vec<(String, Vec<KeyId>)> {
        let Some(m) = &self.membership else {
            return vec![];
        };
        let mut newest: std::collections::BTreeMap<String, (u64, String)> = Default::default();
        for (node, generation, value) in m
            .key_of_every_node(crate::agent::membership::KEYRING_KEY)
            .await
        {
            let slot = newest.entry(node).or_insert((generation, value.clone()));
            if generation > slot.0 {
                *slot = (generation, value);
            }
        }
        newest
            .into_iter()
            .map(|(node, (_, v))| (node, crate::core::seal::decode_ids(&v)))
            .collect()
    }

    /// Persists the record, starts gossip, and publishes the record (the daemon re-decides the
    /// identity with the cluster's family).
    async fn adopt(&mut self, record: ClusterRecord, identity: &Identity) -> Result<(), Refusal> {
        self.persist(&record).map_err(Refusal::internal)?;
        self.synced = true;
        let entry = self.entry(identity, NodeState::Active);
        self.start_gossip(&record, &entry, identity)
            .await
            .map_err(|e| {
                Refusal::internal(format!(
                    "cannot start gossip on {}: {e}",
                    identity.gossip.listen
                ))
            })?;
        log::info!(
            stackring_family = record.family.as_str();
            "member of cluster {} as {} ({} internal traffic)", record.name, record.node_id, record.family
        );
        self.shared.record.send_replace(Some(Arc::new(record)));
        self.refresh_members().await;
        Ok(())
    }

    /// Republishes the entry at once (a renumbering reaches peers within a round), or starts
    /// gossip for a persisted record after a restart.
    async fn on_identity(&mut self, identity: &Identity) {
        let Some(record) = self.shared.record.borrow().clone() else {
            return;
        };
        match &self.membership {
            Some(m) => m.publish(&self.entry(identity, self.own_state())).await,
            None => {
                self.synced = false;
                let entry = self.entry(identity, NodeState::Joining);
                match self.start_gossip(&record, &entry, identity).await {
                    Ok(()) => log::info!("rejoined cluster {} as {}", record.name, record.node_id),
                    Err(e) => log::error!("cannot start gossip on {}: {e}", identity.gossip.listen),
                }
            }
        }
        self.refresh_members().await;
    }

    async fn on_not_ready(&mut self, reason: &str) {
        let identity = self.shared.identity.borrow().identity.clone();
        let Some(identity) = identity else {
            return;
        };
        if let Some(m) = &self.membership {
            let mut entry = self.entry(&identity, NodeState::Joining);
            entry.reason = reason.to_string();
            m.publish(&entry).await;
        }
    }

    /// Publishes the member view for readers (HTTP, gRPC, the ring page, joins).
    async fn refresh_members(&mut self) {
        self.members_refreshed = Instant::now();
        let members = match &self.membership {
            Some(m) => m.members().await,
            None => vec![],
        };
        self.members_age = members.iter().any(|m| !m.local && m.last_seen_ms_ago != 0);
        let mut counts = std::collections::BTreeMap::new();
        for m in &members {
            *counts
                .entry((m.status.as_str(), m.entry.state.as_str()))
                .or_insert(0i64) += 1;
        }
        self.shared.metrics.set_members(&counts);
        self.shared.members.send_replace(Arc::new(members));
    }

    /// Renews the node certificate once two thirds of its life have passed (signed with the CA
    /// every member holds), then publishes its new expiry.
    async fn renew_certificate(&mut self) {
        let published = self.shared.identity.borrow().clone();
        let Some(identity) = published.identity.clone() else {
            return;
        };
        let ips: Vec<std::net::IpAddr> = std::iter::once(identity.internal_addr)
            .chain(identity.external_addrs.iter().copied())
            .collect();
        match self
            .shared
            .tls
            .renew_if_due(&ips, std::time::SystemTime::now())
        {
            Ok(false) => {}
            Ok(true) => {
                log::info!("renewed this node's certificate");
                if let Some(m) = &self.membership {
                    m.publish(&self.entry(&identity, self.own_state())).await;
                }
            }
            Err(e) => log::warn!("cannot renew this node's certificate: {e}"),
        }
    }

    async fn on_tick(&mut self) {
        if self.membership.is_none() {
            return;
        }
        if self.members_age && self.members_refreshed.elapsed() >= REFRESH_EVERY {
            self.refresh_members().await;
        }
        if self.renewal_checked.elapsed() >= RENEWAL_CHECK_EVERY {
            self.renewal_checked = Instant::now();
            self.renew_certificate().await;
        }
        if self.peers_remembered.elapsed() >= REMEMBER_PEERS_EVERY {
            self.peers_remembered = Instant::now();
            self.remember_peers();
        }
        let applied = std::mem::take(&mut self.gossip_changed) && {
            let applied = self.apply_gossiped_changes().await;
            // Applied (something may follow) or not durable yet: look again next tick.
            self.gossip_changed = applied;
            applied
        };
        if self.synced || applied {
            return;
        }
        // Heard from the cluster (or alone for a while) with every change applied: ACTIVE, if
        // the identity still holds.
        let heard = self.shared.members.borrow().iter().any(|m| !m.local);
        if heard || self.gossip_started.elapsed() > SYNC_ALONE_AFTER {
            self.synced = true;
            let published = self.shared.identity.borrow().clone();
            if let (true, Some(identity)) = (published.ready(), published.identity.clone()) {
                self.on_identity(&identity).await;
            }
        }
    }

    /// Persists the peers' gossip addresses so that a restart can rejoin through any of them
    /// (the creator has no seeds of its own; a peer that moved is reached at its new address).
    fn remember_peers(&self) {
        let mut peers: Vec<String> = self
            .shared
            .members
            .borrow()
            .iter()
            .filter(|m| !m.local)
            .map(|m| m.entry.advertised_gossip.clone())
            .collect();
        peers.sort();
        peers.dedup();
        let unchanged = self
            .shared
            .record
            .borrow()
            .as_ref()
            .is_none_or(|r| r.seeds == peers);
        if peers.is_empty() || unchanged {
            return;
        }
        if let Err(e) = self.update_record(|r| {
            r.seeds = peers;
            Ok(())
        }) {
            log::warn!("cannot remember the peers: {}", e.body.description);
        }
    }

    /// Applies admin changes gossiped for this node (made while it was down), the newest of each
    /// kind, once, durably. Returns whether any was applied.
    async fn apply_gossiped_changes(&mut self) -> bool {
        let (Some(m), Some(record)) = (&self.membership, self.shared.record.borrow().clone())
        else {
            return false;
        };
        let prefix = format!("{OVERRIDE_PREFIX}{}/", record.node_id);
        let changes = m.keys_with_prefix(&prefix).await;
        let applied = self.update_record(|r| {
            let waiting = changes
                .iter()
                .filter_map(|(_, k, v)| Some((k.strip_prefix(&prefix)?, v.as_str())));
            Ok(cluster::apply_gossiped_changes(r, waiting))
        });
        match applied {
            Ok((_, kinds)) if !kinds.is_empty() => {
                for what in kinds {
                    self.count_admin_change(what);
                    log::info!(
                        "applying an admin change of this node's {what}, made while it was down"
                    );
                }
                true
            }
            Ok(_) => false,
            // Not durable: applied on a later round, once it can be written.
            Err(e) => {
                log::error!("{}", e.body.description);
                true
            }
        }
    }

    /// A relayed change must be recent and new (its proof was checked by the caller).
    fn check_relay(&mut self, sent_ms: u64, nonce: u64) -> Result<(), Refusal> {
        let now = crate::agent::now_ms();
        if now.abs_diff(sent_ms) > RELAY_WINDOW_MS {
            return Err(Refusal::admin(
                "stale_request",
                format!(
                    "the change was sent {} s from this node's clock; fix: synchronise the clocks (NTP) and retry",
                    now.abs_diff(sent_ms) / 1000
                ),
            ));
        }
        let seen = &mut self.seen_relays;
        while seen
            .front()
            .is_some_and(|(at, _)| now.saturating_sub(*at) > 2 * RELAY_WINDOW_MS)
            || seen.len() >= RELAY_NONCES
        {
            seen.pop_front();
        }
        if seen.iter().any(|(_, n)| *n == nonce) {
            return Err(Refusal::admin(
                "replayed",
                "this change was already received once",
            ));
        }
        seen.push_back((sent_ms, nonce));
        Ok(())
    }

    /// Applies an external-address change to this node: the one sequencer of its own entry.
    fn apply_external_here(
        &mut self,
        op: ExternalOp,
        addrs: &[IpAddr],
    ) -> Result<(u64, Vec<IpAddr>), Refusal> {
        // Without an admin change yet, the list is what the host decided.
        let decided = self
            .shared
            .identity
            .borrow()
            .identity
            .as_ref()
            .map(|i| i.external_addrs.clone())
            .unwrap_or_default();
        let (record, list) = self.update_record(|r| {
            let base = r.external_addrs.clone().unwrap_or(decided);
            let next = cluster::apply_external(&r.node_id, &base, op, addrs)
                .map_err(|x| Refusal::admin(x.sub_code, x.description))?;
            r.external_addrs = Some(next.clone());
            r.admin_version += 1;
            r.applied
                .insert("external_addrs".into(), crate::agent::now_ms());
            Ok(next)
        })?;
        self.count_admin_change("external_addrs");
        let texts: Vec<String> = list.iter().map(|a| a.to_string()).collect();
        log::info!(
            "external addresses of this node set to {} (version {})",
            texts.join(", "),
            record.admin_version
        );
        Ok((record.admin_version, list))
    }

    async fn change_down_node(
        &mut self,
        member: &MemberView,
        op: ExternalOp,
        addrs: &[IpAddr],
    ) -> Result<Vec<IpAddr>, Refusal> {
        let target = member.entry.id.as_str();
        let Some(m) = &self.membership else {
            return Err(Refusal::admin("not_in_cluster", "gossip is not running"));
        };
        let waiting = m
            .keys_with_prefix(&format!("{OVERRIDE_PREFIX}{target}/external_addrs"))
            .await;
        let base = cluster::pending_external_addrs(
            waiting.iter().map(|(_, _, v)| v.as_str()),
            &member.entry,
        );
        let list = cluster::apply_external(target, &base, op, addrs)
            .map_err(|r| Refusal::admin(r.sub_code, r.description))?;
        let texts: Vec<String> = list.iter().map(|a| a.to_string()).collect();
        self.gossip_override(target, "external_addrs", serde_json::json!(texts))
            .await?;
        log::info!(
            "external addresses of node {target} set to {} (it is down: applied when it comes back)",
            texts.join(", ")
        );
        Ok(list)
    }

    async fn gossip_override(
        &mut self,
        target: &str,
        what: &str,
        value: serde_json::Value,
    ) -> Result<(), Refusal> {
        let change = serde_json::to_string(&cluster::Override {
            value,
            at_ms: crate::agent::now_ms(),
        })
        .map_err(Refusal::internal)?;
        let m = self
            .membership
            .as_ref()
            .ok_or_else(|| Refusal::admin("not_in_cluster", "gossip is not running"))?;
        m.set_own_key(&format!("{OVERRIDE_PREFIX}{target}/{what}"), &change)
            .await;
        Ok(())
    }

    async fn leave(&mut self) {
        self.refresh_members().await;
        self.remember_peers();
        let Some(mut m) = self.membership.take() else {
            return;
        };
        let identity = self.shared.identity.borrow().identity.clone();
        if let Some(identity) = identity {
            m.publish(&self.entry(&identity, NodeState::Leaving)).await;
            // Three gossip rounds (200 ms each) for the peers to hear it: they then show this
            // node LEFT, not merely DOWN, once it goes silent.
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        // Then the probers hear it leaves: not DOWN (as a crash), and nobody suspects it.
        m.farewell().await;
        m.shutdown().await;
        self.shared.members.send_replace(Arc::new(vec![]));
    }
}

/// Resolves when the membership's view changes (`Membership::changes`); never while there is no
/// watcher.
async fn live_nodes_changed<T>(
    live: &mut Option<tokio::sync::watch::Receiver<T>>,
) -> Result<(), tokio::sync::watch::error::RecvError> {
    match live {
        Some(rx) => rx.changed().await,
        None => std::future::pending().await,
    }
}
