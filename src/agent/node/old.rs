//! The cluster at the edge: bootstrap state machine (create / join), the persisted cluster record,
//! the gRPC Cluster service, and the gossip membership it starts. The rules live in `cluster`.

use crate::agent::membership::{
    now_unix, Health, MemberView, Membership, NodeEntry, NodeState, FORGET_PREFIX, OVERRIDE_PREFIX,
};
use crate::core::cluster::{
    self, Action, Bootstrap, BootstrapRequest, ClusterRecord, ExternalOp, JoinerFacts, Seeds,
};
use crate::core::config::{ConfigError, Settings};
use crate::core::decide::{decide, usability, Context, Identity};
use crate::core::peer::PeerAddr;
use crate::core::snapshot::{Family, HostSnapshot};
use crate::core::state::StateRx;
use crate::proto::pb;
use serde::Serialize;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{watch, Mutex};

pub(crate) const RECORD_FILE: &str = "cluster.json";

/// argon2 takes ~19 MiB per hash: one at a time, so thirty simultaneous joins cost 19 MiB, not 570.
static ARGON2: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Runs an argon2 computation off the async workers, one at a time.
async fn argon2<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let _slot = ARGON2.acquire().await.ok()?;
    tokio::task::spawn_blocking(work).await.ok()
}

/// `GET /v1/bootstrap`'s `state` and error, as Redis Enterprise reports them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct BootstrapStatus {
    pub(crate) state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<ErrorBody>,
}

/// The JSON body of every 4xx: `{error_code, sub_code, description}`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct ErrorBody {
    pub(crate) error_code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sub_code: Option<String>,
    pub(crate) description: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) errors: Vec<ConfigError>,
    /// With a 429: seconds to wait before trying again (also sent as `Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) retry_after_s: Option<u64>,
}

impl ErrorBody {
    pub(crate) fn new(
        code: &str,
        sub_code: Option<&str>,
        description: impl Into<String>,
    ) -> ErrorBody {
        ErrorBody {
            error_code: code.into(),
            sub_code: sub_code.map(str::to_string),
            description: description.into(),
            errors: vec![],
            retry_after_s: None,
        }
    }

    pub(crate) fn invalid(errors: Vec<ConfigError>) -> ErrorBody {
        let description = errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        ErrorBody {
            error_code: "InvalidRequest".into(),
            sub_code: None,
            description,
            errors,
            retry_after_s: None,
        }
    }
}

/// An HTTP-mappable failure of a bootstrap action.
#[derive(Debug, Clone)]
pub(crate) struct Refused {
    pub(crate) http_status: u16,
    pub(crate) body: ErrorBody,
}

struct Inner {
    membership: Option<Membership>,
    /// After a restart the node says JOINING until it has heard from the cluster once and applied
    /// the admin changes made while it was down (a new address must be checked before ACTIVE).
    synced: bool,
}

pub(crate) struct ClusterNode {
    inner: Mutex<Inner>,
    /// Readable while a bootstrap runs (`GET /v1/bootstrap` shows `joining_cluster`).
    status: std::sync::Mutex<BootstrapStatus>,
    /// One bootstrap at a time.
    bootstrapping: Mutex<()>,
    record_tx: watch::Sender<Option<Arc<ClusterRecord>>>,
    state_dir: PathBuf,
    host: watch::Receiver<Arc<HostSnapshot>>,
    identity: StateRx,
    settings: RwLock<Settings>,
    hostname: String,
    /// Every credential check goes through it (per-source backoff, bounded queue).
    auth: crate::api::authguard::AuthGuard,
    /// Every change of the record goes through `update_record`, one at a time.
    record_write: std::sync::Mutex<()>,
    /// Relayed admin changes seen lately, (sent_ms, nonce): a replay is refused.
    seen_relays: std::sync::Mutex<std::collections::VecDeque<(u64, u64)>>,
}

/// How far a relayed change's clock may be from ours, and how long its nonce is remembered.
const RELAY_WINDOW_MS: u64 = 60_000;
/// Nonces remembered at most (a flood cannot grow memory without bound).
const RELAY_NONCES: usize = 10_000;

/// `<state_dir>/cluster.json`, if this node belongs to a cluster.
pub(crate) fn load_record(state_dir: &std::path::Path) -> anyhow::Result<Option<ClusterRecord>> {
    let path = state_dir.join(RECORD_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            anyhow::anyhow!(
                "{} is damaged ({e}); fix: restore it from a backup, or remove it to leave the cluster",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    }
}

/// The config as amended by the cluster record (the node's bootstrap-time overrides).
pub(crate) fn effective_settings(base: &Settings, record: Option<&ClusterRecord>) -> Settings {
    let mut s = base.clone();
    if let Some(r) = record {
        s.id = r.node_id.clone();
        s.use_internal_ipv6 = r.use_internal_ipv6;
        if r.node_addr.is_some() {
            s.internal_addr = r.node_addr;
        }
        if r.external_addrs.is_some() {
            s.external_addrs = r.external_addrs.clone();
        }
    }
    s
}

impl ClusterNode {
    /// Loads `<state_dir>/cluster.json` if there is one.
    pub(crate) fn new(
        settings: Settings,
        host: watch::Receiver<Arc<HostSnapshot>>,
        identity: StateRx,
        hostname: String,
        metrics: Arc<crate::agent::metrics::Metrics>,
    ) -> anyhow::Result<Arc<ClusterNode>> {
        let state_dir = settings.state_dir.clone();
        let stale = crate::agent::fsutil::remove_stale_temporaries(&state_dir.join(RECORD_FILE));
        if stale > 0 {
            log::warn!(
                "removed {stale} unfinished {} write(s) left by a killed process in {}",
                RECORD_FILE,
                state_dir.display()
            );
        }
        let record = load_record(&state_dir)?;
        let status = BootstrapStatus {
            state: if record.is_some() {
                "completed"
            } else {
                "idle"
            },
            error: None,
        };
        let (record_tx, _) = watch::channel(record.map(Arc::new));
        Ok(Arc::new(ClusterNode {
            inner: Mutex::new(Inner {
                membership: None,
                synced: false,
            }),
            status: std::sync::Mutex::new(status),
            bootstrapping: Mutex::new(()),
            record_write: std::sync::Mutex::new(()),
            seen_relays: std::sync::Mutex::new(Default::default()),
            record_tx,
            state_dir,
            host,
            identity,
            settings: RwLock::new(settings),
            hostname,
            auth: crate::api::authguard::AuthGuard::new(metrics),
        }))
    }

    pub(crate) fn record(&self) -> Option<Arc<ClusterRecord>> {
        self.record_tx.borrow().clone()
    }

    pub(crate) fn records(&self) -> watch::Receiver<Option<Arc<ClusterRecord>>> {
        self.record_tx.subscribe()
    }

    pub(crate) fn set_settings(&self, settings: Settings) {
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = settings;
    }

    fn settings(&self) -> Settings {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) async fn status(&self) -> BootstrapStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_status(&self, state: &'static str, error: Option<ErrorBody>) -> BootstrapStatus {
        let status = BootstrapStatus { state, error };
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = status.clone();
        status
    }

    /// The host's usable addresses, for `GET /v1/bootstrap`.
    pub(crate) fn available_addrs(&self) -> Vec<AvailableAddr> {
        let snapshot = self.host.borrow().clone();
        snapshot
            .addresses
            .values()
            .filter(|a| usability(&snapshot, a).is_ok())
            .map(|a| AvailableAddr {
                address: a.ip,
                family: a.family(),
                interface: snapshot
                    .link(a.link_index)
                    .map(|l| l.name.clone())
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// `POST /v1/bootstrap/{create_cluster,join_cluster}`: the body parsed and validated, every
    /// problem named with its JSON path, value and fix (nothing changes on a 400).
    pub(crate) async fn bootstrap(
        self: &Arc<Self>,
        body: &[u8],
        action: Action,
    ) -> Result<BootstrapStatus, Refused> {
        let invalid = |errors| Refused {
            http_status: 400,
            body: ErrorBody::invalid(errors),
        };
        let request: BootstrapRequest =
            crate::api::jsonbody::parse(body).map_err(|e| invalid(vec![e]))?;
        let request = cluster::validate_bootstrap(request, action).map_err(invalid)?;
        self.bootstrap_with(request, action).await
    }

    /// Create or join with a validated request (the HTTP API and declarative bootstrap).
    pub(crate) async fn bootstrap_with(
        self: &Arc<Self>,
        request: Bootstrap,
        action: Action,
    ) -> Result<BootstrapStatus, Refused> {
        let _one_at_a_time = self.bootstrapping.lock().await;
        let current = self.status().await.state;
        if current != "idle" && current != "error" {
            return Err(Refused {
                http_status: 409,
                body: ErrorBody::new(
                    "NodeBootstrapError",
                    Some("already_bootstrapped"),
                    format!("this node is already {current}"),
                ),
            });
        }
        // Everything that can be checked locally is checked before any state changes.
        let settings = self.overridden(&request);
        let snapshot = self.host.borrow().clone();
        if action == Action::Create {
            let identity =
                decide(&snapshot, &settings, Context::default()).map_err(|why| Refused {
                    http_status: 409,
                    body: ErrorBody::new(
                        "NodeBootstrapError",
                        Some("no_identity"),
                        format!("this node has no identity to create a cluster with: {why}"),
                    ),
                })?;
            check_hosts_file(identity.family)?;
            self.set_status("creating_cluster", None);
            let result = self.create(&request, &settings, &identity).await;
            return self.finish(result);
        }
        self.set_status("joining_cluster", None);
        let result = self.join(&request, &settings, &snapshot).await;
        self.finish(result)
    }

    fn finish(&self, result: Result<(), Refused>) -> Result<BootstrapStatus, Refused> {
        match result {
            Ok(()) => Ok(self.set_status("completed", None)),
            Err(refused) => {
                self.set_status("error", Some(refused.body.clone()));
                Err(refused)
            }
        }
    }

    fn overridden(&self, request: &Bootstrap) -> Settings {
        let mut s = self.settings();
        if let Some(name) = &request.name {
            s.id = name.clone();
        }
        if request.addr.is_some() {
            s.internal_addr = request.addr;
        }
        if request.external_addrs.is_some() {
            s.external_addrs = request.external_addrs.clone();
        }
        if let Some(flag) = request.use_internal_ipv6 {
            s.use_internal_ipv6 = flag;
            s.use_internal_ipv6_written = Some(crate::core::config::WrittenFlag {
                value: flag,
                key: "node.identity.use_internal_ipv6".into(),
            });
        }
        s
    }

    async fn create(
        self: &Arc<Self>,
        request: &Bootstrap,
        settings: &Settings,
        identity: &Identity,
    ) -> Result<(), Refused> {
        let password = request.password.clone();
        let password_hash = argon2(move || cluster::hash_password(&password))
            .await
            .ok_or_else(|| internal("hashing failed"))?
            .map_err(internal)?;
        let record = ClusterRecord {
            name: request
                .cluster_name
                .clone()
                .ok_or_else(|| internal("create without a cluster name"))?,
            family: identity.family,
            use_internal_ipv6: settings.use_internal_ipv6,
            username: request.username.clone(),
            password_hash,
            node_id: settings.id.clone(),
            node_addr: request.addr,
            external_addrs: request.external_addrs.clone(),
            seeds: vec![],
            applied: Default::default(),
            registered_unix: now_unix(),
            admin_version: 0,
        };
        self.adopt(record, identity).await
    }

    async fn join(
        self: &Arc<Self>,
        request: &Bootstrap,
        settings: &Settings,
        snapshot: &HostSnapshot,
    ) -> Result<(), Refused> {
        let usable = |f: Family| {
            snapshot
                .addresses
                .values()
                .any(|a| a.family() == f && usability(snapshot, a).is_ok())
        };
        let ask = pb::JoinRequest {
            cluster_name: request.cluster_name.clone(),
            username: request.username.clone(),
            password: request.password.clone(),
            node_id: settings.id.clone(),
            has_ipv4: usable(Family::Ipv4),
            has_ipv6: usable(Family::Ipv6),
            // Only what the operator wrote: unset, the node takes the cluster's family.
            use_internal_ipv6: settings.use_internal_ipv6_written.as_ref().map(|f| f.value),
        };
        let key = request.seeds.key();
        let mut unreachable = Vec::new();
        for (seed, uri) in self.seed_uris(&request.seeds, settings).await {
            let uri = match uri {
                Ok(uri) => uri,
                Err(e) => {
                    unreachable.push(format!("{seed}: {e}"));
                    continue;
                }
            };
            match call_join_patiently(&uri, ask.clone()).await {
                Err(JoinCallError::Unreachable(e)) => {
                    unreachable.push(format!("{seed} (gRPC {uri}): {e}"))
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
                    return Err(Refused {
                        http_status: 429,
                        body,
                    });
                }
                Ok(reply) => {
                    if let Some(r) = reply.refusal {
                        let status = if r.sub_code == "invalid_credentials" {
                            403
                        } else {
                            409
                        };
                        return Err(Refused {
                            http_status: status,
                            body: ErrorBody::new(&r.error_code, Some(&r.sub_code), r.description),
                        });
                    }
                    let family = match reply.family.as_str() {
                        "ipv6" => Family::Ipv6,
                        "ipv4" => Family::Ipv4,
                        other => {
                            return Err(internal(format!(
                                "{seed} answered with an unknown family '{other}'"
                            )))
                        }
                    };
                    let ctx = Context {
                        cluster_family: Some(family),
                        previous: None,
                    };
                    let identity = decide(snapshot, settings, ctx).map_err(|why| Refused {
                        http_status: 409,
                        body: ErrorBody::new(
                            "NodeBootstrapError",
                            Some("no_identity"),
                            format!("the cluster uses {family}, and this node cannot: {why}"),
                        ),
                    })?;
                    check_hosts_file(family)?;
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
                        registered_unix: now_unix(),
                        admin_version: 0,
                    };
                    return self.adopt(record, &identity).await;
                }
            }
        }
        Err(Refused {
            http_status: 409,
            body: ErrorBody::new(
                "NodeBootstrapError",
                Some("cluster_unreachable"),
                format!(
                    "no node in {key} answered: {}; fix: check {key} and that those nodes are up and reachable over {}",
                    unreachable.join("; "),
                    match &request.seeds {
                        Seeds::Nodes(_) => "their gRPC port (server.grpc_listen_port, 9095 by default)",
                        Seeds::Gossip(_) => "their gossip port (memberlist.bind_port, TCP and UDP, 7946 by default)",
                    }
                ),
            ),
        })
    }

    /// Each seed as written, with the gRPC URI to call `Join` on (or why there is none).
    async fn seed_uris(
        &self,
        seeds: &Seeds,
        settings: &Settings,
    ) -> Vec<(String, Result<String, String>)> {
        match seeds {
            Seeds::Nodes(nodes) => nodes
                .iter()
                .map(|n| {
                    let uri = format!("http://{}", n.host_port(settings.grpc.port));
                    (n.to_string(), Ok(uri))
                })
                .collect(),
            Seeds::Gossip(members) => {
                let mut out = Vec::new();
                for m in members {
                    out.push((
                        m.to_string(),
                        crate::agent::membership::discover_grpc(&m.host_port(settings.gossip.port))
                            .await
                            .map(|grpc| format!("http://{grpc}")),
                    ));
                }
                out
            }
        }
    }

    /// Persists the record, starts gossip, and tells the daemon (which re-decides the identity).
    async fn adopt(
        self: &Arc<Self>,
        record: ClusterRecord,
        identity: &Identity,
    ) -> Result<(), Refused> {
        self.persist(&record).map_err(internal)?;
        let entry = self.entry(identity, NodeState::Active);
        let membership = Membership::start(
            &record.name,
            &entry,
            identity.gossip.listen,
            identity.gossip.advertise,
            record.seeds.clone(),
        )
        .await
        .map_err(|e| {
            internal(format!(
                "cannot start gossip on {}: {e}",
                identity.gossip.listen
            ))
        })?;
        log::info!(
            stackring_family = record.family.as_str();
            "member of cluster {} as {} ({} internal traffic)", record.name, record.node_id, record.family
        );
        {
            let mut inner = self.inner.lock().await;
            inner.membership = Some(membership);
            inner.synced = true;
        }
        self.record_tx.send_replace(Some(Arc::new(record)));
        self.spawn_override_applier();
        Ok(())
    }

    /// The one way the record changes once it exists: one change at a time, computed from the
    /// current record, made durable before anyone sees it. A change that cannot be written is
    /// refused and changes nothing (persist first, acknowledge second).
    fn update_record<T>(
        &self,
        change: impl FnOnce(&mut ClusterRecord) -> Result<T, Refused>,
    ) -> Result<(Arc<ClusterRecord>, T), Refused> {
        let _one_at_a_time = self.record_write.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.record().ok_or_else(|| {
            conflict(
                "not_in_cluster",
                "this node does not belong to a cluster yet".into(),
            )
        })?;
        let mut next = (*current).clone();
        let out = change(&mut next)?;
        if next == *current {
            return Ok((current, out));
        }
        self.persist(&next).map_err(|e| Refused {
            http_status: 507,
            body: ErrorBody::new(
                "StorageError",
                Some("not_durable"),
                format!(
                    "{e}; the change was not applied, on any node; fix: free space or repair {} (node.state_dir), then retry",
                    self.state_dir.display()
                ),
            ),
        })?;
        let next = Arc::new(next);
        self.record_tx.send_replace(Some(next.clone()));
        Ok((next, out))
    }

    fn persist(&self, record: &ClusterRecord) -> Result<(), String> {
        let json = serde_json::to_vec_pretty(record).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&self.state_dir)
            .map_err(|e| format!("cannot create {}: {e}", self.state_dir.display()))?;
        let path = self.state_dir.join(RECORD_FILE);
        crate::agent::fsutil::write_atomic(&path, &json, 0o600)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    fn entry(&self, identity: &Identity, state: NodeState) -> NodeEntry {
        NodeEntry {
            id: identity.id.clone(),
            hostname: self.hostname.clone(),
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
            registered_unix: self
                .record()
                .map(|r| r.registered_unix)
                .filter(|t| *t > 0)
                .unwrap_or_else(now_unix),
            reason: String::new(),
            admin_version: self.record().map(|r| r.admin_version).unwrap_or(0),
            applied_ms: self
                .record()
                .and_then(|r| r.applied.values().max().copied())
                .unwrap_or(0),
            version: env!("STACKRING_BUILD").to_string(),
        }
    }

    /// Called by the daemon on every identity change: (re)starts gossip for a persisted record after
    /// a restart, and republishes the entry at once (a renumbering reaches peers within a round).
    pub(crate) async fn on_identity(self: &Arc<Self>, identity: &Identity) {
        let Some(record) = self.record() else { return };
        let mut inner = self.inner.lock().await;
        match &inner.membership {
            Some(m) => {
                let state = if inner.synced {
                    NodeState::Active
                } else {
                    NodeState::Joining
                };
                m.publish(&self.entry(identity, state)).await
            }
            None => {
                inner.synced = false;
                let entry = self.entry(identity, NodeState::Joining);
                match Membership::start(
                    &record.name,
                    &entry,
                    identity.gossip.listen,
                    identity.gossip.advertise,
                    record.seeds.clone(),
                )
                .await
                {
                    Ok(m) => {
                        log::info!("rejoined cluster {} as {}", record.name, record.node_id);
                        inner.membership = Some(m);
                        self.spawn_override_applier();
                    }
                    Err(e) => log::error!("cannot start gossip on {}: {e}", identity.gossip.listen),
                }
            }
        }
        drop(inner);
        self.remember_peers().await;
    }

    /// Persists the peers' gossip addresses so that a restart can rejoin through any of them.
    async fn remember_peers(&self) {
        let peers = {
            let inner = self.inner.lock().await;
            match &inner.membership {
                Some(m) => m.peer_gossip_addrs().await,
                None => return,
            }
        };
        if peers.is_empty() || self.record().is_some_and(|r| r.seeds == peers) {
            return;
        }
        let remembered = self.update_record(|r| {
            r.seeds = peers;
            Ok(())
        });
        if let Err(e) = remembered {
            log::warn!("cannot remember the peers: {}", e.body.description);
        }
    }

    /// Every member as this node sees it; `None` before the node belongs to a cluster.
    pub(crate) async fn members(&self) -> Option<(String, Vec<MemberView>)> {
        let record = self.record()?;
        let inner = self.inner.lock().await;
        let members = match &inner.membership {
            Some(m) => m.members().await,
            None => vec![],
        };
        Some((record.name.clone(), members))
    }

    /// SIGTERM: remember the peers, say LEAVING, then stop gossiping.
    pub(crate) async fn leave(&self) {
        self.remember_peers().await;
        let membership = self.inner.lock().await.membership.take();
        if let Some(m) = membership {
            if let Some(identity) = self.identity.borrow().identity.clone() {
                m.publish(&self.entry(&identity, NodeState::Leaving)).await;
                // Three gossip rounds (200 ms each) for the peers to hear it: they then show
                // this node LEFT, not merely DOWN, once it goes silent.
                tokio::time::sleep(Duration::from_millis(600)).await;
            }
            m.shutdown().await;
        }
    }

    /// The contacted node's side of `Cluster.Join`; `source` is the caller's address (backoff).
    pub(crate) async fn handle_join(
        &self,
        source: Option<IpAddr>,
        req: pb::JoinRequest,
    ) -> Result<pb::JoinReply, tonic::Status> {
        let refused = |r: cluster::JoinRefusal| pb::JoinReply {
            refusal: Some(pb::JoinRefusal {
                error_code: r.error_code.into(),
                sub_code: r.sub_code.into(),
                description: r.description,
            }),
            ..Default::default()
        };
        let Some(record) = self.record() else {
            return Ok(refused(cluster::JoinRefusal {
                error_code: "NodeBootstrapError",
                sub_code: "not_in_cluster",
                description: "the contacted node does not belong to a cluster yet".into(),
            }));
        };
        let members = self.members().await.map(|(_, m)| m).unwrap_or_default();
        let live: Vec<String> = members
            .iter()
            .filter(|m| m.healthy())
            .map(|m| m.entry.id.clone())
            .collect();
        let facts = JoinerFacts {
            cluster_name: req.cluster_name.clone(),
            node_id: req.node_id.clone(),
            has_ipv4: req.has_ipv4,
            has_ipv6: req.has_ipv6,
            use_internal_ipv6: req.use_internal_ipv6,
        };
        // Credentials first, through the guard (backoff, bounded queue); argon2 off the workers.
        let verified = {
            let record = record.clone();
            let (username, password) = (req.username.clone(), req.password.clone());
            self.auth
                .check(source, async move {
                    argon2(move || cluster::credentials(&record, &username, &password))
                        .await
                        .unwrap_or(crate::api::authguard::Outcome::Missing)
                })
                .await
        };
        let check = match verified {
            Ok(()) => Some(cluster::validate_joiner(&record, &facts, &live)),
            Err(crate::api::authguard::Denied::Invalid) => {
                Some(Err(cluster::invalid_credentials()))
            }
            Err(throttled) => {
                log::warn!(
                    "join of node {}: {}",
                    req.node_id,
                    throttled.message(source)
                );
                return Err(throttled.status(source));
            }
        };
        match check {
            Some(Ok(())) => {
                log::info!("node {} joins cluster {}", req.node_id, record.name);
                let mut seeds: Vec<String> = members
                    .iter()
                    .filter(|m| m.healthy())
                    .map(|m| m.entry.advertised_gossip.clone())
                    .collect();
                seeds.sort();
                Ok(pb::JoinReply {
                    refusal: None,
                    cluster_name: record.name.clone(),
                    family: record.family.as_str().into(),
                    use_internal_ipv6: record.use_internal_ipv6,
                    username: record.username.clone(),
                    password_hash: record.password_hash.clone(),
                    seeds,
                })
            }
            Some(Err(refusal)) => {
                log::warn!(
                    "join of node {} refused: {} ({})",
                    req.node_id,
                    refusal.sub_code,
                    refusal.description
                );
                Ok(refused(refusal))
            }
            None => Ok(refused(cluster::JoinRefusal {
                error_code: "InternalError",
                sub_code: "internal",
                description: "the credential check did not complete".into(),
            })),
        }
    }
}

/// `POST /v1/nodes/{id}/external_addr` body.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalChange {
    pub(crate) action: String,
    pub(crate) addrs: Vec<String>,
}

/// `POST /v1/nodes/{id}/addr` body.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddrChange {
    pub(crate) addr: String,
}

/// An admin change in flight, as gossiped by the node that took it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Override {
    pub(crate) value: serde_json::Value,
    pub(crate) at_ms: u64,
}

/// The newest change made after `after_ms` among the values read out of gossip keys; values that
/// are not changes (another version's, a corrupt one) are skipped.
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

/// The fields a relay proof covers, in order.
fn relay_fields<'a>(
    node: &'a str,
    action: &'a str,
    addrs: &[String],
    sent_ms: u64,
    nonce: u64,
    from: &'a str,
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

fn random_u64() -> u64 {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    OsRng.next_u64()
}

/// The answer to an external-address change: the list, and the node's new version once applied.
fn external_reply(node: &str, list: &[IpAddr], version: Option<u64>) -> serde_json::Value {
    let texts: Vec<String> = list.iter().map(|a| a.to_string()).collect();
    let mut reply = serde_json::json!({"node": node, "external_addrs": texts});
    if let Some(v) = version {
        reply["version"] = serde_json::json!(v);
    }
    reply
}

async fn call_apply_change(
    uri: &str,
    request: pb::ApplyChangeRequest,
) -> Result<pb::ApplyChangeReply, String> {
    let endpoint = tonic::transport::Endpoint::from_shared(uri.to_string())
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(10));
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    pb::cluster_client::ClusterClient::new(channel)
        .apply_change(request)
        .await
        .map(|r| r.into_inner())
        .map_err(|s| s.message().to_string())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn bad_request(description: String) -> Refused {
    Refused {
        http_status: 400,
        body: ErrorBody::new("InvalidRequest", None, description),
    }
}

fn conflict(sub_code: &str, description: String) -> Refused {
    Refused {
        http_status: 409,
        body: ErrorBody::new("AdminError", Some(sub_code), description),
    }
}

/// Addresses from an admin request: typed, no CIDR, reachable kinds only.
fn parse_addrs(key: &str, texts: &[String]) -> Result<Vec<IpAddr>, Refused> {
    texts
        .iter()
        .map(|t| match cluster::parse_address(t) {
            Ok(ip) => match crate::core::config::external_refusal(&ip) {
                Some(why) => Err(bad_request(format!(
                    "{key}: '{ip}' {why}; fix: give a unicast address clients can reach"
                ))),
                None => Ok(ip),
            },
            Err((problem, fix)) => Err(bad_request(format!(
                "{key}: '{}' {problem}; fix: {fix}",
                crate::api::jsonbody::echo(t)
            ))),
        })
        .collect()
}

impl ClusterNode {
    async fn member(&self, id: &str) -> Result<(ClusterRecord, MemberView), Refused> {
        if !cluster::valid_name(id) {
            return Err(bad_request(format!(
                "node id '{}' is not a valid node id; fix: {} (as `status nodes` shows it)",
                crate::api::jsonbody::echo(&id.escape_debug().to_string()),
                cluster::NAME_RULE
            )));
        }
        let record = self.record().ok_or_else(|| {
            conflict(
                "not_in_cluster",
                "this node does not belong to a cluster yet".into(),
            )
        })?;
        let (_, members) = self.members().await.unwrap_or_default();
        let known: Vec<String> = members.iter().map(|m| m.entry.id.clone()).collect();
        let member = members
            .into_iter()
            .find(|m| m.entry.id == id)
            .ok_or_else(|| Refused {
                http_status: 404,
                body: ErrorBody::new(
                    "UnknownNode",
                    None,
                    format!(
                        "no node '{id}' in cluster '{}'; known: {}",
                        record.name,
                        known.join(", ")
                    ),
                ),
            })?;
        Ok(((*record).clone(), member))
    }

    async fn gossip_override(
        &self,
        target: &str,
        what: &str,
        value: serde_json::Value,
    ) -> Result<(), Refused> {
        let change = serde_json::to_string(&Override {
            value,
            at_ms: now_ms(),
        })
        .map_err(internal)?;
        let inner = self.inner.lock().await;
        let m = inner
            .membership
            .as_ref()
            .ok_or_else(|| conflict("not_in_cluster", "gossip is not running".into()))?;
        m.set_own_key(&format!("{OVERRIDE_PREFIX}{target}/{what}"), &change)
            .await;
        Ok(())
    }

    /// `node <ID> external_addr add|set|remove <IP…>`: unbound addresses are allowed (an elastic IP).
    /// A live node applies changes to itself, one at a time in the order they reach it, durably,
    /// and answers with its new version; the member that took the change relays it there. Only a
    /// node that is down gets the change through gossip, applied when it comes back.
    pub(crate) async fn change_external(
        &self,
        target: &str,
        body: &[u8],
    ) -> Result<serde_json::Value, Refused> {
        let mut reply = self.change_external_unchecked(target, body).await?;
        // Allowed (an operator may mean it), but said: clients of an address that is another
        // node's internal address reach that node.
        let (_, members) = self.members().await.unwrap_or_default();
        let warnings: Vec<String> = reply["external_addrs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str())
            .filter_map(|a| {
                let owner = members
                    .iter()
                    .find(|m| m.entry.id != target && m.entry.addr == a)?;
                Some(format!(
                    "{a} is the internal address of node '{}': clients of {a} would reach that node, not '{target}'",
                    owner.entry.id
                ))
            })
            .collect();
        for w in &warnings {
            log::warn!("external_addr of node {target}: {w}");
        }
        if !warnings.is_empty() {
            reply["warnings"] = serde_json::json!(warnings);
        }
        Ok(reply)
    }

    async fn change_external_unchecked(
        &self,
        target: &str,
        body: &[u8],
    ) -> Result<serde_json::Value, Refused> {
        let change: ExternalChange =
            crate::api::jsonbody::parse(body).map_err(|e| bad_request(e.to_string()))?;
        let op = ExternalOp::parse(&change.action).ok_or_else(|| {
            bad_request(format!(
                "action: '{}' is not add, set or remove; fix: use one of them",
                crate::api::jsonbody::echo(&change.action)
            ))
        })?;
        let addrs = parse_addrs("addrs", &change.addrs)?;
        if addrs.is_empty() {
            return Err(bad_request(
                "addrs: empty; fix: name at least one address".into(),
            ));
        }
        let record = self.record().ok_or_else(|| {
            conflict(
                "not_in_cluster",
                "this node does not belong to a cluster yet".into(),
            )
        })?;
        if target == record.node_id {
            let (version, list) = self.apply_external_here(op, &addrs)?;
            return Ok(external_reply(target, &list, Some(version)));
        }
        let (_, member) = self.member(target).await?;
        if member.healthy() {
            return self.relay_external(&record, &member, op, &addrs).await;
        }
        // Down: the change waits in gossip. Start from the newest change already waiting for it,
        // so that back-to-back changes build on each other.
        let prefix = format!("{OVERRIDE_PREFIX}{target}/external_addrs");
        let waiting = {
            let inner = self.inner.lock().await;
            match &inner.membership {
                Some(m) => m.keys_with_prefix(&prefix).await,
                None => vec![],
            }
        };
        let pending = newest_override(
            waiting.iter().map(|(_, _, v)| v.as_str()),
            member.entry.applied_ms,
        )
        .and_then(|o| serde_json::from_value::<Vec<IpAddr>>(o.value).ok());
        let base = pending.unwrap_or_else(|| {
            member
                .entry
                .external_addrs
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect()
        });
        let list = cluster::apply_external(target, &base, op, &addrs)
            .map_err(|r| conflict(r.sub_code, r.description))?;
        let texts: Vec<String> = list.iter().map(|a| a.to_string()).collect();
        self.gossip_override(target, "external_addrs", serde_json::json!(texts))
            .await?;
        log::info!(
            "external addresses of node {target} set to {} (it is down: applied when it comes back)",
            texts.join(", ")
        );
        let mut reply = external_reply(target, &list, None);
        reply["pending"] = serde_json::json!(true);
        Ok(reply)
    }

    /// Applies an external-address change to this node: the one sequencer of its own entry.
    fn apply_external_here(
        &self,
        op: ExternalOp,
        addrs: &[IpAddr],
    ) -> Result<(u64, Vec<IpAddr>), Refused> {
        // Without an admin change yet, the list is what the host decided.
        let decided = self
            .identity
            .borrow()
            .identity
            .as_ref()
            .map(|i| i.external_addrs.clone())
            .unwrap_or_default();
        let (record, list) = self.update_record(|r| {
            let base = r.external_addrs.clone().unwrap_or(decided);
            let next = cluster::apply_external(&r.node_id, &base, op, addrs)
                .map_err(|x| conflict(x.sub_code, x.description))?;
            r.external_addrs = Some(next.clone());
            r.admin_version += 1;
            r.applied.insert("external_addrs".into(), now_ms());
            Ok(next)
        })?;
        let texts: Vec<String> = list.iter().map(|a| a.to_string()).collect();
        log::info!(
            "external addresses of this node set to {} (version {})",
            texts.join(", "),
            record.admin_version
        );
        Ok((record.admin_version, list))
    }

    /// Sends a change to the live node it is for, and waits for its answer.
    async fn relay_external(
        &self,
        record: &ClusterRecord,
        member: &MemberView,
        op: ExternalOp,
        addrs: &[IpAddr],
    ) -> Result<serde_json::Value, Refused> {
        let target = member.entry.id.as_str();
        let texts: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
        let sent_ms = now_ms();
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
        let unreachable = |e: String| {
            Refused {
            http_status: 503,
            body: ErrorBody::new(
                "AdminError",
                Some("node_unreachable"),
                format!("node '{target}' did not answer at {uri} ({e}); the change was not applied; fix: retry (a node that is DOWN takes changes through gossip)"),
            ),
        }
        };
        let reply = call_apply_change(&uri, request)
            .await
            .map_err(unreachable)?;
        if let Some(r) = reply.refusal {
            let status = if r.error_code == "StorageError" {
                507
            } else {
                409
            };
            return Err(Refused {
                http_status: status,
                body: ErrorBody::new(&r.error_code, Some(&r.sub_code), r.description),
            });
        }
        let list: Vec<IpAddr> = reply
            .external_addrs
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        Ok(external_reply(target, &list, Some(reply.version)))
    }

    /// The called node's side of `Cluster.ApplyChange`.
    pub(crate) async fn handle_apply_change(
        &self,
        req: pb::ApplyChangeRequest,
    ) -> pb::ApplyChangeReply {
        let refuse = |error_code: &str, sub_code: &str, description: String| pb::ApplyChangeReply {
            refusal: Some(pb::JoinRefusal {
                error_code: error_code.into(),
                sub_code: sub_code.into(),
                description,
            }),
            ..Default::default()
        };
        let Some(record) = self.record() else {
            return refuse(
                "AdminError",
                "not_in_cluster",
                "the called node does not belong to a cluster".into(),
            );
        };
        if req.node_id != record.node_id {
            return refuse(
                "AdminError",
                "wrong_node",
                format!(
                    "this is node '{}', not '{}'",
                    record.node_id,
                    crate::api::jsonbody::echo(&req.node_id)
                ),
            );
        }
        let expected = cluster::relay_proof(
            &record.password_hash,
            &relay_fields(
                &req.node_id,
                &req.action,
                &req.addrs,
                req.sent_ms,
                req.nonce,
                &req.from,
            ),
        );
        if !cluster::proofs_match(&expected, &req.proof) {
            log::warn!(
                "refused a relayed admin change without a member's proof (from '{}')",
                crate::api::jsonbody::echo(&req.from)
            );
            return refuse(
                "AdminError",
                "not_a_member",
                "the change does not carry a member's proof".into(),
            );
        }
        let now = now_ms();
        if now.abs_diff(req.sent_ms) > RELAY_WINDOW_MS {
            return refuse(
                "AdminError",
                "stale_request",
                format!(
                    "the change was sent {} s from this node's clock; fix: synchronise the clocks (NTP) and retry",
                    now.abs_diff(req.sent_ms) / 1000
                ),
            );
        }
        {
            let mut seen = self.seen_relays.lock().unwrap_or_else(|p| p.into_inner());
            while seen
                .front()
                .is_some_and(|(at, _)| now.saturating_sub(*at) > 2 * RELAY_WINDOW_MS)
                || seen.len() >= RELAY_NONCES
            {
                seen.pop_front();
            }
            if seen.iter().any(|(_, n)| *n == req.nonce) {
                return refuse(
                    "AdminError",
                    "replayed",
                    "this change was already received once".into(),
                );
            }
            seen.push_back((req.sent_ms, req.nonce));
        }
        let Some(op) = ExternalOp::parse(&req.action) else {
            return refuse(
                "InvalidRequest",
                "bad_action",
                "action is not add, set or remove".into(),
            );
        };
        let addrs = match parse_addrs("addrs", &req.addrs) {
            Ok(a) if !a.is_empty() => a,
            Ok(_) => return refuse("InvalidRequest", "bad_addrs", "addrs: empty".into()),
            Err(r) => return refuse("InvalidRequest", "bad_addrs", r.body.description),
        };
        match self.apply_external_here(op, &addrs) {
            Ok((version, list)) => pb::ApplyChangeReply {
                refusal: None,
                version,
                external_addrs: list.iter().map(|a| a.to_string()).collect(),
            },
            Err(r) => refuse(
                &r.body.error_code,
                r.body.sub_code.as_deref().unwrap_or("refused"),
                r.body.description,
            ),
        }
    }

    /// `node <ID> addr set <IP>`: only for a node that is down, only within the cluster's family.
    pub(crate) async fn set_addr(
        &self,
        target: &str,
        body: &[u8],
    ) -> Result<serde_json::Value, Refused> {
        let change: AddrChange =
            crate::api::jsonbody::parse(body).map_err(|e| bad_request(e.to_string()))?;
        let ip = parse_addrs("addr", std::slice::from_ref(&change.addr))?[0];
        if let Some(why) = crate::core::config::advertised_refusal(&ip) {
            return Err(bad_request(format!("addr: '{ip}' {why}")));
        }
        let (record, member) = self.member(target).await?;
        if Family::of(&ip) != record.family {
            return Err(conflict(
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
            return Err(conflict(
                "node_is_up",
                format!("node '{target}' is up; its internal address can only change while it is down; fix: stop it first"),
            ));
        }
        self.gossip_override(target, "addr", serde_json::json!(ip.to_string()))
            .await?;
        log::info!("internal address of node {target} set to {ip} (applies when it comes back)");
        Ok(serde_json::json!({"node": target, "addr": ip}))
    }

    /// `node <ID> forget`: removes a dead node from every member's view.
    pub(crate) async fn forget(&self, target: &str) -> Result<serde_json::Value, Refused> {
        let (_, member) = self.member(target).await?;
        if member.healthy() {
            return Err(conflict(
                "node_is_up",
                format!("node '{target}' is alive; only a DOWN node can be forgotten"),
            ));
        }
        let inner = self.inner.lock().await;
        let m = inner
            .membership
            .as_ref()
            .ok_or_else(|| conflict("not_in_cluster", "gossip is not running".into()))?;
        m.set_own_key(
            &format!("{FORGET_PREFIX}{target}"),
            &member.generation.to_string(),
        )
        .await;
        log::info!("forgot node {target}");
        Ok(serde_json::json!({"node": target, "forgotten": true}))
    }

    /// Applies admin changes gossiped for this node, the newest of each kind, once; persists them.
    fn spawn_override_applier(self: &Arc<Self>) {
        let node = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            let started = std::time::Instant::now();
            let mut peers_checked = started;
            loop {
                tick.tick().await;
                let Some(node) = node.upgrade() else { return };
                // Remember where the peers are, for a restart (the creator has no seeds of its
                // own; a peer that moved is reached at its new address).
                if peers_checked.elapsed() >= Duration::from_secs(1) {
                    peers_checked = std::time::Instant::now();
                    node.remember_peers().await;
                }
                let Some(record) = node.record() else {
                    continue;
                };
                let prefix = format!("{OVERRIDE_PREFIX}{}/", record.node_id);
                drop(record);
                let (changes, heard_from_peers, synced) = {
                    let inner = node.inner.lock().await;
                    let Some(m) = &inner.membership else { return };
                    let peers = m.members().await.iter().any(|p| !p.local);
                    (m.keys_with_prefix(&prefix).await, peers, inner.synced)
                };
                let applied = node.update_record(|updated| {
                    let mut any = false;
                    for what in ["addr", "external_addrs"] {
                        let newest = newest_override(
                            changes
                                .iter()
                                .filter(|(_, k, _)| k.strip_prefix(&prefix) == Some(what))
                                .map(|(_, _, v)| v.as_str()),
                            updated.applied.get(what).copied().unwrap_or(0),
                        );
                        let Some(change) = newest else { continue };
                        match what {
                            "addr" => updated.node_addr = serde_json::from_value(change.value).ok(),
                            _ => {
                                updated.external_addrs = serde_json::from_value(change.value).ok()
                            }
                        }
                        updated.applied.insert(what.to_string(), change.at_ms);
                        updated.admin_version += 1;
                        any = true;
                        log::info!("applying an admin change of this node's {what}, made while it was down");
                    }
                    Ok(any)
                });
                match applied {
                    Ok((_, true)) => continue,
                    Ok((_, false)) => {}
                    // Not durable: applied on a later round, once it can be written.
                    Err(e) => {
                        log::error!("{}", e.body.description);
                        continue;
                    }
                }
                // Heard from the cluster (or alone for 3 s) with every change applied: ACTIVE,
                // if the identity still holds.
                if !synced && (heard_from_peers || started.elapsed() > Duration::from_secs(3)) {
                    node.inner.lock().await.synced = true;
                    let published = node.identity.borrow().clone();
                    if let (true, Some(identity)) = (published.ready(), published.identity.clone())
                    {
                        node.on_identity(&identity).await;
                    }
                }
            }
        });
    }

    /// The daemon lost its identity (e.g. a new internal address is not bound): tell the cluster
    /// why, keeping the last advertised values.
    pub(crate) async fn on_not_ready(&self, reason: &str) {
        let Some(identity) = self.identity.borrow().identity.clone() else {
            return;
        };
        let inner = self.inner.lock().await;
        if let Some(m) = &inner.membership {
            let mut entry = self.entry(&identity, NodeState::Joining);
            entry.reason = reason.to_string();
            m.publish(&entry).await;
        }
    }
}

impl ClusterNode {
    /// Whether `username`/`password` are the cluster's, through the guard: a source that keeps
    /// failing waits, a full queue answers busy at once (argon2 runs off the async workers).
    /// `None` credentials: missing or malformed (counted as a failure too).
    pub(crate) async fn check_credentials(
        &self,
        source: Option<IpAddr>,
        credentials: Option<(&str, &str)>,
    ) -> Result<(), crate::api::authguard::Denied> {
        use crate::api::authguard::Outcome;
        let Some(record) = self.record() else {
            return Err(crate::api::authguard::Denied::Invalid);
        };
        let given = credentials.map(|(u, p)| (u.to_string(), p.to_string()));
        self.auth
            .check(source, async move {
                match given {
                    Some((username, password)) => {
                        argon2(move || cluster::credentials(&record, &username, &password))
                            .await
                            .unwrap_or(Outcome::Missing)
                    }
                    None => Outcome::Missing,
                }
            })
            .await
    }
}

impl ClusterNode {
    /// Declarative bootstrap (`cluster:` in the config): create, or join through
    /// `memberlist.join_members`, with the same validation and errors as the HTTP API, retrying with
    /// backoff while no seed answers (or the seed has not created the cluster yet).
    pub(crate) async fn declare(
        self: &Arc<Self>,
        declared: crate::core::config::DeclaredCluster,
        join_members: Vec<PeerAddr>,
    ) {
        if self.record().is_some() {
            return;
        }
        let path = declared.credentials_file.display().to_string();
        let credentials = match std::fs::read_to_string(&declared.credentials_file) {
            Ok(text) => cluster::parse_credentials(&text),
            Err(e) => {
                log::error!("cluster.credentials_file {path}: {e}; fix: create it with one line 'username:password'");
                return;
            }
        };
        let (username, password) = match credentials {
            Ok(c) => c,
            Err(problem) => {
                log::error!("cluster.credentials_file {path} {problem}; fix: write one line 'username:password' (password 8–1024 characters)");
                return;
            }
        };
        let (action, name) = if declared.create {
            (Action::Create, "create_cluster")
        } else {
            (Action::Join, "join_cluster")
        };
        let request = Bootstrap {
            cluster_name: Some(declared.name.clone()),
            seeds: Seeds::Gossip(if declared.create {
                vec![]
            } else {
                join_members
            }),
            username,
            password,
            addr: None,
            external_addrs: None,
            use_internal_ipv6: None,
            name: None,
        };
        let mut delay = Duration::from_secs(1);
        loop {
            if self.record().is_some() {
                return;
            }
            // A reload may have changed memberlist.join_members: use the running value.
            let mut request = request.clone();
            if !declared.create {
                request.seeds = Seeds::Gossip(self.settings().join_members);
            }
            match self.bootstrap_with(request, action).await {
                Ok(_) => {
                    log::info!("declarative bootstrap: {name} {} done", declared.name);
                    return;
                }
                Err(r)
                    if matches!(
                        r.body.sub_code.as_deref(),
                        Some(
                            "cluster_unreachable"
                                | "not_in_cluster"
                                | "no_identity"
                                | "hosts_ipv6_localhost"
                                | "rate_limited"
                        )
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

/// Redis Enterprise: "The host file /etc/hosts on each node in the cluster must include ...
/// ::1 localhost". Checked before an IPv6 cluster is created or joined, not after.
fn check_hosts_file(family: Family) -> Result<(), Refused> {
    if family != Family::Ipv6 {
        return Ok(());
    }
    let path = crate::core::preflight::HOSTS_PATH;
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let localhost = IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);
    if crate::core::hosts::maps(&text, localhost, "localhost") {
        return Ok(());
    }
    Err(Refused {
        http_status: 409,
        body: ErrorBody::new(
            "NodeBootstrapError",
            Some("hosts_ipv6_localhost"),
            format!("{path} does not map ::1 to localhost, which every node of an IPv6 cluster needs; fix: run `stackring preflight --fix` (adds '::1 localhost', keeps every other line), then retry"),
        ),
    })
}

/// The gRPC Admin service: the HTTP admin calls, for programs.
pub(crate) struct AdminService {
    pub(crate) node: Arc<ClusterNode>,
}

impl AdminService {
    async fn authorize(
        &self,
        source: Option<IpAddr>,
        credentials: Option<&pb::AdminCredentials>,
    ) -> Result<(), tonic::Status> {
        let given = credentials.map(|c| (c.username.as_str(), c.password.as_str()));
        match self.node.check_credentials(source, given).await {
            Ok(()) => Ok(()),
            Err(crate::api::authguard::Denied::Invalid) => Err(tonic::Status::unauthenticated(
                "this call changes the cluster: send the cluster credentials",
            )),
            Err(throttled) => Err(throttled.status(source)),
        }
    }
}

fn admin_reply(
    result: Result<serde_json::Value, Refused>,
) -> Result<tonic::Response<pb::AdminReply>, tonic::Status> {
    match result {
        Ok(v) => Ok(tonic::Response::new(pb::AdminReply {
            json: v.to_string(),
        })),
        Err(r) => {
            let code = match r.http_status {
                400 => tonic::Code::InvalidArgument,
                401 | 403 => tonic::Code::Unauthenticated,
                404 => tonic::Code::NotFound,
                409 => tonic::Code::FailedPrecondition,
                _ => tonic::Code::Internal,
            };
            Err(tonic::Status::new(code, r.body.description))
        }
    }
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn change_external_addrs(
        &self,
        request: tonic::Request<pb::ExternalAddrsRequest>,
    ) -> Result<tonic::Response<pb::AdminReply>, tonic::Status> {
        let source = request
            .remote_addr()
            .map(|a| crate::api::limits::canonical(a.ip()));
        let r = request.into_inner();
        self.authorize(source, r.credentials.as_ref()).await?;
        let body = serde_json::json!({"action": r.action, "addrs": r.addrs}).to_string();
        admin_reply(self.node.change_external(&r.node_id, body.as_bytes()).await)
    }

    async fn set_addr(
        &self,
        request: tonic::Request<pb::SetAddrRequest>,
    ) -> Result<tonic::Response<pb::AdminReply>, tonic::Status> {
        let source = request
            .remote_addr()
            .map(|a| crate::api::limits::canonical(a.ip()));
        let r = request.into_inner();
        self.authorize(source, r.credentials.as_ref()).await?;
        let body = serde_json::json!({"addr": r.addr}).to_string();
        admin_reply(self.node.set_addr(&r.node_id, body.as_bytes()).await)
    }

    async fn forget(
        &self,
        request: tonic::Request<pb::ForgetRequest>,
    ) -> Result<tonic::Response<pb::AdminReply>, tonic::Status> {
        let source = request
            .remote_addr()
            .map(|a| crate::api::limits::canonical(a.ip()));
        let r = request.into_inner();
        self.authorize(source, r.credentials.as_ref()).await?;
        admin_reply(self.node.forget(&r.node_id).await)
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct AvailableAddr {
    pub(crate) address: IpAddr,
    pub(crate) family: Family,
    pub(crate) interface: String,
}

fn internal(e: impl std::fmt::Display) -> Refused {
    Refused {
        http_status: 500,
        body: ErrorBody::new("InternalError", None, e.to_string()),
    }
}

enum JoinCallError {
    Unreachable(String),
    /// `RESOURCE_EXHAUSTED`: the seed sheds load or makes this node wait.
    Throttled {
        message: String,
        retry_after_s: u64,
    },
}

/// How long a join keeps retrying a seed that answers "busy" before telling its caller to wait.
const JOIN_BUSY_PATIENCE: Duration = Duration::from_secs(10);

/// `call_join`, retrying while the seed sheds load and its `retry-after` fits in
/// [`JOIN_BUSY_PATIENCE`]: a legitimate join during a flood of guesses waits its turn in seconds.
async fn call_join_patiently(
    uri: &str,
    request: pb::JoinRequest,
) -> Result<pb::JoinReply, JoinCallError> {
    let started = std::time::Instant::now();
    loop {
        match call_join(uri, request.clone()).await {
            Err(JoinCallError::Throttled { retry_after_s, .. })
                if started.elapsed() + Duration::from_secs(retry_after_s) < JOIN_BUSY_PATIENCE =>
            {
                tokio::time::sleep(Duration::from_secs(retry_after_s)).await;
            }
            other => return other,
        }
    }
}

async fn call_join(uri: &str, request: pb::JoinRequest) -> Result<pb::JoinReply, JoinCallError> {
    let endpoint = tonic::transport::Endpoint::from_shared(uri.to_string())
        .map_err(|e| JoinCallError::Unreachable(e.to_string()))?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(15));
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| JoinCallError::Unreachable(format!("cannot connect ({e})")))?;
    let mut client = pb::cluster_client::ClusterClient::new(channel);
    match client.join(request).await {
        Ok(r) => Ok(r.into_inner()),
        Err(s) if s.code() == tonic::Code::ResourceExhausted => {
            let retry_after_s = s
                .metadata()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(1u64);
            Err(JoinCallError::Throttled {
                message: s.message().to_string(),
                retry_after_s,
            })
        }
        Err(s) => Err(JoinCallError::Unreachable(s.message().to_string())),
    }
}

/// The gRPC Cluster service.
pub(crate) struct ClusterService {
    pub(crate) node: Arc<ClusterNode>,
}

fn member_pb(m: &MemberView) -> pb::Member {
    pb::Member {
        id: m.entry.id.clone(),
        status: match m.status {
            Health::Ok => "OK".into(),
            Health::Down => "DOWN".into(),
        },
        state: m.entry.state.as_str().into(),
        addr: m.entry.addr.clone(),
        external_addrs: m.entry.external_addrs.clone(),
        family: m.entry.family.clone(),
        advertised_grpc: m.entry.advertised_grpc.clone(),
        advertised_http: m.entry.advertised_http.clone(),
        advertised_gossip: m.entry.advertised_gossip.clone(),
        listen_grpc: m.entry.listen_grpc.clone(),
        zone: m.entry.zone.clone(),
        hostname: m.entry.hostname.clone(),
        last_seen_ms_ago: m.last_seen_ms_ago,
        local: m.local,
        registered_unix: m.entry.registered_unix,
    }
}

impl ClusterService {
    async fn members_reply(node: &ClusterNode) -> pb::MembersReply {
        match node.members().await {
            Some((name, members)) => pb::MembersReply {
                cluster_name: name,
                members: members.iter().map(member_pb).collect(),
            },
            None => pb::MembersReply::default(),
        }
    }
}

type MembersStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::MembersReply, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClusterService {
    async fn join(
        &self,
        request: tonic::Request<pb::JoinRequest>,
    ) -> Result<tonic::Response<pb::JoinReply>, tonic::Status> {
        let source = request
            .remote_addr()
            .map(|a| crate::api::limits::canonical(a.ip()));
        self.node
            .handle_join(source, request.into_inner())
            .await
            .map(tonic::Response::new)
    }

    async fn apply_change(
        &self,
        request: tonic::Request<pb::ApplyChangeRequest>,
    ) -> Result<tonic::Response<pb::ApplyChangeReply>, tonic::Status> {
        Ok(tonic::Response::new(
            self.node.handle_apply_change(request.into_inner()).await,
        ))
    }

    async fn members(
        &self,
        _: tonic::Request<pb::MembersRequest>,
    ) -> Result<tonic::Response<pb::MembersReply>, tonic::Status> {
        Ok(tonic::Response::new(Self::members_reply(&self.node).await))
    }

    type WatchStream = MembersStream;

    async fn watch(
        &self,
        _: tonic::Request<pb::MembersRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        let node = self.node.clone();
        // Membership has no change feed of its own that covers heartbeats; poll it each gossip
        // round and send only changes (status and entries, not the last-seen clock).
        let stream = async_stream(node);
        Ok(tonic::Response::new(Box::pin(stream)))
    }
}

fn async_stream(
    node: Arc<ClusterNode>,
) -> impl futures::Stream<Item = Result<pb::MembersReply, tonic::Status>> + Send {
    futures::stream::unfold(
        (node, None::<pb::MembersReply>),
        |(node, last)| async move {
            loop {
                let mut reply = ClusterService::members_reply(&node).await;
                let comparable = |r: &pb::MembersReply| {
                    let mut r = r.clone();
                    r.members.iter_mut().for_each(|m| m.last_seen_ms_ago = 0);
                    r
                };
                if last.as_ref().map(comparable) != Some(comparable(&reply)) {
                    reply.members.sort_by(|a, b| a.id.cmp(&b.id));
                    return Some((Ok(reply.clone()), (node, Some(reply))));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        },
    )
}
