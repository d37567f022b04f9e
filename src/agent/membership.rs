//! Gossip membership on chitchat (Quickwit's scuttlebutt): each node publishes its entry under the
//! key `node`, and admin changes, reachability findings and key ids travel as keys too.
//!
//! Liveness comes from the SWIM prober (`agent::swim`, memberlist's protocol) on the same port:
//! every node chitchat hears from is handed to it, and its word (probes, indirect probes,
//! suspicion that the suspect can refute) decides UP and DOWN and "last seen". chitchat's
//! phi-accrual detector, which declared live nodes down under loss at 100 nodes, only speaks for a
//! node the prober does not know (yet), or for a node whose name it cannot carry. So chitchat need
//! not gossip fast when nothing changes: the monitor stirs it when something does
//! (`GossipSeal::stir`), and it is quiet otherwise.

use crate::agent::gossip_seal::{GossipSeal, SealedUdp};
use crate::agent::swim::{self, LivenessMap, SwimHandle};
use crate::core::members::{forgotten, project, GossipRow, MemberView, NodeEntry, FORGET_PREFIX};
use crate::core::mix::{fnv1a, mix64};
use crate::core::swim::{NodeName, Params, Status};
use chitchat::transport::Transport;
use chitchat::{
    spawn_chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, Heartbeat,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
// tokio's clock, so that tests under `tokio::time::pause` see heartbeats age (chitchat's failure
// detector uses it too).
use tokio::time::Instant;

const NODE_KEY: &str = "node";
/// What this node found probing its peers (`core::reach`).
pub(crate) const REACH_KEY: &str = "reach";
/// The sealed formats this node opens beyond the standard one (`core::seal::Format`): members
/// seal to it in the compact one. Builds before it neither set nor read it.
const SEAL_FORMATS_KEY: &str = "seal";
const SEAL_COMPACT: &str = "compact";
/// The key ids of this node's gossip keyring, the one in use first (`core::seal::encode_ids`).
pub(crate) const KEYRING_KEY: &str = "gossip_keys";

/// How gossip travels: sealed UDP datagrams in the daemon, in-memory channels in tests (no root,
/// no sockets, virtual time; not sealed). In memory there is no TCP discovery listener either (nor
/// without TLS material: the fuzz target's member).
#[derive(Clone)]
pub(crate) enum GossipNetwork {
    Udp,
    #[cfg(test)]
    InMemory(MemoryNetwork),
}

/// The tests' network: chitchat's channels and the probers' hub, both routing by address.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct MemoryNetwork {
    pub(crate) chitchat: chitchat::transport::ChannelTransport,
    pub(crate) swim: swim::Hub,
}
/// chitchat's own round: its heartbeat, its detector's look at every node, and a `Syn` that goes
/// out only when one is due (`GossipSeal::syn_due`). Each round costs O(nodes) whether its `Syn`
/// goes or not: at 200 ms that was half of an idle node's CPU.
const CHITCHAT_ROUND: Duration = Duration::from_secs(1);
/// The busy pace: while `GossipSeal::busy`, the monitor starts exchanges with `BUSY_FANOUT`
/// members this often (a 100-node cluster converges in a few rounds).
const BUSY_ROUND: Duration = Duration::from_millis(200);
const BUSY_FANOUT: usize = 3;
/// A node chitchat sees live is handed to the prober only if its heartbeat moved this recently
/// here: shorter than the prober remembers a death (`Params::dead_retention`, an hour), longer
/// than quiet rounds leave between heartbeats (`QUIET_ROUND` × its scale: 4.5 min at 100 nodes).
const HANDOVER_FRESH: Duration = Duration::from_secs(30 * 60);

/// When each node's heartbeat last moved here. Ordered, not hashed: the monitor looks up every
/// node five times a second, and SipHash of a `ChitchatId` was most of its cost.
type LastSeen = BTreeMap<ChitchatId, (Heartbeat, Instant)>;

pub(crate) struct Membership {
    handle: Arc<ChitchatHandle>,
    self_id: ChitchatId,
    last_seen: Arc<Mutex<LastSeen>>,
    monitor: tokio::task::JoinHandle<()>,
    /// What the TCP side of the gossip port tells a joiner (see `serve_discovery`).
    discovery: Arc<Mutex<Discovery>>,
    discovery_task: Option<tokio::task::JoinHandle<()>>,
    /// The keyring the UDP transport seals and opens with.
    seal: Arc<GossipSeal>,
    /// The SWIM prober (none: a node id it cannot carry), and what it knows of each member.
    prober: Option<SwimHandle>,
    liveness: Option<tokio::sync::watch::Receiver<LivenessMap>>,
    /// Where the prober's clock starts (`Status::since`).
    prober_clock: Option<Instant>,
    /// Bumped whenever chitchat's live set or the prober's view changes: the node's wake-up.
    changes: tokio::sync::watch::Receiver<()>,
    forward: tokio::task::JoinHandle<()>,
}

/// How long a leaving node's farewell may take (the prober sends it to every member at once).
const FAREWELL_WITHIN: Duration = Duration::from_millis(500);

/// The answer on the TCP side of the gossip port: where this member's gRPC `Join` is. dskit's
/// memberlist listens on TCP and UDP at `bind_port`; `join_members` name that port, and a joiner
/// needs the member's gRPC endpoint (advertised, so a sidecar proxy's port is honoured).
///
/// It travels only inside TLS 1.3 (the node's certificate, ALPN `stackring-discovery`): on the
/// wire there is neither the node id nor an address, and the client checks whom it reached (a
/// joiner: the cluster CA's pin, or trust on first use as its `Join` does; the reachability
/// prober: the cluster CA and the node id in the certificate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Discovery {
    pub(crate) node: String,
    pub(crate) grpc: String,
}

/// How long a discovery exchange may take, TCP connect, TLS handshake and answer together (on
/// both ends: a client that stalls holds a server slot no longer than this).
pub(crate) const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(3);
/// Discovery connections served at once.
const DISCOVERY_SLOTS: usize = 256;
/// The most a discovery answer may be.
const DISCOVERY_MAX: u64 = 4096;

/// Why a discovery exchange with one address failed.
#[derive(Debug)]
pub(crate) enum DiscoveryError {
    /// No TCP connection (refused, unreachable, timed out).
    Connect(std::io::Error),
    /// The TLS handshake failed: our verifier's refusal (wrong CA pin, wrong node), or a peer that
    /// does not speak it (a stackring older than TLS discovery answers in clear).
    Handshake(String),
    /// Connected over TLS, but the answer is not a stackring member's.
    Answer(String),
}

impl std::fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiscoveryError::Connect(e) => write!(f, "cannot connect ({e})"),
            DiscoveryError::Handshake(why) => write!(f, "TLS handshake failed: {why}"),
            DiscoveryError::Answer(why) => f.write_str(why),
        }
    }
}

/// One discovery exchange with the member at `addr` (TCP, the gossip port), trusting whom
/// `config` trusts (a `tls::discovery_client` configuration). Not bounded in time: the caller is.
pub(crate) async fn ask_discovery(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Result<Discovery, DiscoveryError> {
    use tokio::io::AsyncReadExt;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(DiscoveryError::Connect)?;
    // Not sent (no SNI): our verifiers check the CA and the node id, not this name.
    let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| {
            DiscoveryError::Handshake(match crate::agent::pki::handshake_refusal(&e) {
                Some(why) => why.to_string(),
                None => format!(
                    "{e} (a stackring older than this version answers on its gossip port in clear, not over TLS: upgrade it, or join through its gRPC port with cluster.nodes)"
                ),
            })
        })?;
    let mut buf = Vec::with_capacity(256);
    (&mut tls)
        .take(DISCOVERY_MAX)
        .read_to_end(&mut buf)
        .await
        .map_err(|e| DiscoveryError::Answer(format!("the answer broke off ({e})")))?;
    serde_json::from_slice::<Discovery>(&buf).map_err(|_| {
        DiscoveryError::Answer("answered, but not as a stackring member's gossip port".into())
    })
}

/// Asks the member at gossip address `host_port` (TCP, TLS with `config`: a joiner's pinned or
/// trust-on-first-use configuration) where its gRPC endpoint is.
pub(crate) async fn discover_grpc(
    host_port: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<SocketAddr, String> {
    let config = crate::agent::tls::discovery_client(config);
    let addrs: Vec<SocketAddr> =
        tokio::time::timeout(DISCOVERY_TIMEOUT, tokio::net::lookup_host(host_port))
            .await
            .map_err(|_| "name lookup timed out".to_string())?
            .map_err(|e| format!("cannot resolve it ({e})"))?
            .collect();
    let mut errors = Vec::new();
    for addr in addrs {
        match tokio::time::timeout(DISCOVERY_TIMEOUT, ask_discovery(addr, config.clone())).await {
            Err(_) => errors.push(format!("{addr}: no answer within {DISCOVERY_TIMEOUT:?}")),
            Ok(Err(e)) => errors.push(format!("{addr}: {e}")),
            Ok(Ok(d)) => match d.grpc.parse::<SocketAddr>() {
                Ok(grpc) => return Ok(grpc),
                Err(_) => errors.push(format!("{addr}: bad gRPC address '{}'", d.grpc)),
            },
        }
    }
    if errors.is_empty() {
        errors.push("the name has no address".into());
    }
    Err(errors.join(", "))
}

/// Discovery connections one peer address may hold at once: a joiner or a prober needs one.
const DISCOVERY_PER_PEER: usize = 4;
/// The last slots go only to peers holding none yet (as `api::limits` keeps slots for light
/// peers): addresses that flood the port never take the one a joiner needs.
const DISCOVERY_RESERVE: usize = 32;

/// Discovery connections open, in total and by peer address.
#[derive(Default)]
struct DiscoverySlots {
    open: Mutex<(usize, HashMap<std::net::IpAddr, usize>)>,
}

/// One admitted discovery connection; dropping it frees the slot.
struct DiscoverySlot {
    slots: Arc<DiscoverySlots>,
    peer: std::net::IpAddr,
}

impl DiscoverySlots {
    /// A slot for a connection from `peer`, or None (the connection is closed at once).
    fn admit(self: &Arc<Self>, peer: std::net::IpAddr) -> Option<DiscoverySlot> {
        // `::ffff:192.0.2.1` (a `[::]` socket's view of an IPv4 peer) counts as `192.0.2.1`.
        let peer = match peer {
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
            v4 => v4,
        };
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let from_peer = open.1.get(&peer).copied().unwrap_or(0);
        let full = open.0 >= DISCOVERY_SLOTS
            || from_peer >= DISCOVERY_PER_PEER
            || (open.0 >= DISCOVERY_SLOTS - DISCOVERY_RESERVE && from_peer > 0);
        if full {
            return None;
        }
        open.0 += 1;
        *open.1.entry(peer).or_insert(0) += 1;
        Some(DiscoverySlot {
            slots: self.clone(),
            peer,
        })
    }
}

impl Drop for DiscoverySlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        open.0 = open.0.saturating_sub(1);
        if let Some(n) = open.1.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.peer);
            }
        }
    }
}

/// Answers every TCP connection on the gossip port with this node's `Discovery` inside TLS (the
/// certificate `tls` holds at that moment), then closes. Bounded: at most `DISCOVERY_SLOTS`
/// connections at once and `DISCOVERY_PER_PEER` per address (others are closed at once), each,
/// handshake included, within `DISCOVERY_TIMEOUT`: a TLS server must wait for the client's hello,
/// so a silent connection holds its slot that long, and a flood of them from a few addresses must
/// not take every slot.
async fn serve_discovery(
    listener: tokio::net::TcpListener,
    answer: Arc<Mutex<Discovery>>,
    tls: Arc<crate::agent::tls::NodeTls>,
) {
    use tokio::io::AsyncWriteExt;
    let slots = Arc::new(DiscoverySlots::default());
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            // Out of descriptors, most likely: pause rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Some(slot) = slots.admit(peer.ip()) else {
            continue;
        };
        let body = serde_json::to_vec(&*answer.lock().unwrap_or_else(|p| p.into_inner()))
            .unwrap_or_default();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.discovery_server());
        tokio::spawn(async move {
            let _ = tokio::time::timeout(DISCOVERY_TIMEOUT, async {
                let mut stream = acceptor.accept(stream).await?;
                stream.write_all(&body).await?;
                // close_notify, then FIN: the client reads the answer to its end.
                stream.shutdown().await
            })
            .await;
            drop(slot);
        });
    }
}

/// What secures the gossip port: the keyring its datagrams are sealed with, and the node's TLS
/// material for its TCP side (none: no discovery listener, as for the fuzz target's member).
pub(crate) struct GossipSecurity {
    pub(crate) seal: Arc<GossipSeal>,
    pub(crate) tls: Option<Arc<crate::agent::tls::NodeTls>>,
}

impl Membership {
    /// Binds the gossip socket on `listen` and starts gossiping with `seeds` (host:port strings).
    pub(crate) async fn start(
        cluster: &str,
        entry: &NodeEntry,
        listen: SocketAddr,
        advertise: SocketAddr,
        seeds: Vec<String>,
        network: &GossipNetwork,
        secured: GossipSecurity,
    ) -> anyhow::Result<Membership> {
        let GossipSecurity {
            seal,
            tls: discovery_tls,
        } = secured;
        // A restarted node is a new generation of the same id.
        let generation = crate::agent::now_ms();
        let self_id = ChitchatId::new(entry.id.clone(), generation, advertise);
        let config = ChitchatConfig {
            chitchat_id: self_id.clone(),
            cluster_id: cluster.to_string(),
            gossip_interval: CHITCHAT_ROUND,
            listen_addr: listen,
            seed_nodes: seeds,
            // Liveness is the prober's; chitchat's detector only picks whom chitchat's own round
            // gossips with and speaks for a node the prober does not know. Quiet rounds bring a
            // node's heartbeat every few seconds to minutes (`QUIET_ROUND`, scaled): those
            // intervals must count. 100 samples, not 1,000: 7 kB less per node known.
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: 8.0,
                sampling_window_size: 100,
                max_interval: 12 * crate::agent::gossip_seal::QUIET_ROUND,
                initial_interval: CHITCHAT_ROUND,
                dead_node_grace_period: Duration::from_secs(3600),
            },
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
        };
        let value = serde_json::to_string(entry)?;
        let sealed = SealedUdp(seal.clone());
        let transport: &dyn Transport = match network {
            GossipNetwork::Udp => &sealed,
            #[cfg(test)]
            GossipNetwork::InMemory(net) => &net.chitchat,
        };
        // The prober joins through the same seeds (their gossip port is its port): their table
        // comes back at once and every member hears of this node from it directly, instead of
        // waiting for chitchat to see each member live (`monitor`). Names are left to chitchat.
        let prober_seeds: Vec<SocketAddr> = config
            .seed_nodes
            .iter()
            .filter_map(|s| s.parse().ok())
            .filter(|a| *a != advertise)
            .collect();
        let handle = Arc::new(
            spawn_chitchat(
                config,
                vec![
                    (NODE_KEY.to_string(), value),
                    (SEAL_FORMATS_KEY.to_string(), SEAL_COMPACT.to_string()),
                ],
                transport,
            )
            .await?,
        );
        // After chitchat: the socket the prober shares is open now.
        let mut prober = start_prober(&entry.id, advertise, generation, network, &seal);
        if let (Some(prober), false) = (&prober, prober_seeds.is_empty()) {
            let _ = prober
                .commands()
                .send(swim::Command::Join(prober_seeds))
                .await;
        }
        let liveness = prober.as_ref().map(SwimHandle::liveness);
        let last_seen: Arc<Mutex<LastSeen>> = Arc::default();
        let (state_changed, state_changes) = tokio::sync::watch::channel(0u64);
        let monitor = tokio::spawn(monitor(
            Arc::downgrade(&handle),
            self_id.clone(),
            last_seen.clone(),
            Handover {
                prober: prober.as_ref().map(SwimHandle::commands),
                liveness: liveness.clone(),
                state_differs: prober.as_mut().and_then(SwimHandle::take_state_differs),
            },
            Stirring {
                seal: seal.clone(),
                state_changed,
            },
        ));
        let (changed, changes) = tokio::sync::watch::channel(());
        let forward = tokio::spawn(forward_changes(
            state_changes,
            liveness.clone(),
            handle.with_chitchat(|c| c.live_nodes_watcher()).await,
            changed,
        ));
        let discovery = Arc::new(Mutex::new(Discovery {
            node: entry.id.clone(),
            grpc: entry.advertised_grpc.clone(),
        }));
        let discovery_task = match (network, discovery_tls) {
            #[cfg(test)]
            (GossipNetwork::InMemory(_), _) => None,
            (_, None) => None,
            (GossipNetwork::Udp, Some(tls)) => match crate::agent::sockets::listen_socket(listen) {
                Ok(listener) => Some(tokio::spawn(serve_discovery(
                    listener,
                    discovery.clone(),
                    tls,
                ))),
                Err(e) => {
                    log::warn!("gossip port {listen} over TCP: {e}; nodes cannot join through this node's memberlist address");
                    None
                }
            },
        };
        Ok(Membership {
            handle,
            self_id,
            last_seen,
            monitor,
            discovery,
            discovery_task,
            seal,
            prober_clock: prober.as_ref().map(SwimHandle::clock_start),
            prober,
            liveness,
            changes,
            forward,
        })
    }

    /// Seals and opens with `keyring` from the next datagram on (key rotation).
    pub(crate) fn set_keyring(&self, keyring: crate::core::seal::Keyring) {
        self.seal.set_keyring(keyring);
    }

    /// Publishes a new version of this node's entry (an identity change, a state change).
    pub(crate) async fn publish(&self, entry: &NodeEntry) {
        let Ok(value) = serde_json::to_string(entry) else {
            return;
        };
        self.discovery
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .grpc = entry.advertised_grpc.clone();
        self.set_own_key(NODE_KEY, &value).await;
    }

    /// Every node known, one row per node id (its newest generation), sorted by id.
    pub(crate) async fn members(&self) -> Vec<MemberView> {
        let forget_keys = self.keys_with_prefix(FORGET_PREFIX).await;
        let forgotten = forgotten(forget_keys.iter().map(|(_, k, v)| (k.as_str(), v.as_str())));
        type State = (ChitchatId, Option<String>, Option<String>);
        let (states, live): (Vec<State>, Vec<ChitchatId>) = self
            .handle
            .with_chitchat(|c| {
                let states = c
                    .node_states()
                    .iter()
                    .map(|(id, s)| {
                        let get = |k: &str| s.get(k).map(str::to_string);
                        (id.clone(), get(NODE_KEY), get(REACH_KEY))
                    })
                    .collect();
                (states, c.live_nodes().cloned().collect())
            })
            .await;
        let seen = self.last_seen.lock().unwrap_or_else(|p| p.into_inner());
        let probed = self.liveness.as_ref().map(|rx| rx.borrow());
        let rows = states
            .into_iter()
            .map(|(id, value, reach)| {
                let word = probed.as_deref().and_then(|p| probed_word(p, &id));
                GossipRow {
                    node_id: id.node_id.to_string(),
                    generation: id.generation_id,
                    value,
                    reach,
                    alive: word.map_or_else(|| live.contains(&id), Status::is_up),
                    local: id == self.self_id,
                    // The prober's word: seen now when up, else when it was declared down (quiet
                    // gossip brings heartbeats only every few seconds); chitchat's otherwise.
                    last_seen_ms_ago: match (word, self.prober_clock) {
                        (Some(s), _) if s.is_up() => 0,
                        (Some(s), Some(start)) => (start + s.since).elapsed().as_millis() as u64,
                        _ => seen
                            .get(&id)
                            .map(|(_, at)| at.elapsed().as_millis() as u64)
                            .unwrap_or(u64::MAX),
                    },
                }
            })
            .collect();
        drop((probed, seen));
        project(rows, &forgotten)
    }

    /// Changes whenever a node comes up or goes down or any node's gossiped state changes (its
    /// entry, an admin change, its reachability findings): a wake-up for the node.
    pub(crate) fn changes(&self) -> tokio::sync::watch::Receiver<()> {
        self.changes.clone()
    }

    /// `(node id, generation, value)` of every node's `key`.
    pub(crate) async fn key_of_every_node(&self, key: &str) -> Vec<(String, u64, String)> {
        self.handle
            .with_chitchat(|c| {
                c.node_states()
                    .iter()
                    .filter_map(|(id, state)| {
                        let v = state.get(key)?;
                        Some((id.node_id.to_string(), id.generation_id, v.to_string()))
                    })
                    .collect()
            })
            .await
    }

    /// Sets a key of this node's own gossip state (admin requests travel this way). A change
    /// stirs gossip (`GossipSeal::stir`), but for findings whose round trips alone moved: those go
    /// out with the quiet rounds.
    pub(crate) async fn set_own_key(&self, key: &str, value: &str) {
        let news = self
            .handle
            .with_chitchat(|c| {
                let own = c.self_node_state();
                let before = own.get(key).map(str::to_string);
                own.set(key, value);
                match before {
                    Some(before) if before == value => false,
                    Some(before) if key == REACH_KEY => {
                        !crate::core::reach::same_outcomes(&before, value)
                    }
                    _ => true,
                }
            })
            .await;
        if news {
            self.seal.stir();
        }
    }

    /// `(writer id, key, value)` of every key starting with `prefix`, across all known nodes.
    pub(crate) async fn keys_with_prefix(&self, prefix: &str) -> Vec<(String, String, String)> {
        self.handle
            .with_chitchat(|c| {
                c.node_states()
                    .iter()
                    .flat_map(|(id, state)| {
                        state
                            .key_values()
                            .filter(|(k, _)| k.starts_with(prefix))
                            .map(|(k, v)| (id.node_id.to_string(), k.to_string(), v.to_string()))
                            .collect::<Vec<_>>()
                    })
                    .collect()
            })
            .await
    }

    /// Tells every member's prober this node leaves (LEFT, not DOWN), within `FAREWELL_WITHIN`;
    /// the prober then stops. A `shutdown` without it is, to the others, a crash.
    pub(crate) async fn farewell(&mut self) {
        if let Some(prober) = self.prober.take() {
            prober.leave(FAREWELL_WITHIN).await;
        }
    }

    pub(crate) async fn shutdown(self) {
        let Membership {
            handle,
            monitor,
            discovery_task,
            prober,
            forward,
            ..
        } = self;
        if let Some(prober) = prober {
            prober.abort();
        }
        forward.abort();
        monitor.abort();
        if let Some(task) = discovery_task {
            task.abort();
        }
        // The monitor may hold the handle for a moment (`Weak`): stop the server through it.
        let _ = handle.initiate_shutdown();
        let _ = handle.termination_watcher().await;
    }
}

/// What the prober knows of the node of chitchat's `id`, when it speaks of that start of the node
/// (or a later one); else chitchat's detector speaks.
fn probed_word<'a>(probed: &'a LivenessMap, id: &ChitchatId) -> Option<&'a Status> {
    probed
        .get(&*id.node_id)
        .filter(|status| status.incarnation >= id.generation_id)
}

/// The nodes chitchat holds live that go to the prober: those it does not speak of yet (at that
/// start or a later one), whose heartbeat moved here within `HANDOVER_FRESH`, and whose id is a
/// name the prober carries.
fn to_hand_over<'a>(
    live: impl Iterator<Item = &'a ChitchatId>,
    self_id: &ChitchatId,
    known: &LivenessMap,
    seen: &LastSeen,
    now: Instant,
) -> Vec<swim::Command> {
    live.filter(|id| *id != self_id && probed_word(known, id).is_none())
        .filter(|id| {
            seen.get(*id)
                .is_some_and(|(_, moved)| now.duration_since(*moved) < HANDOVER_FRESH)
        })
        .filter_map(|id| {
            Some(swim::Command::AddMember {
                id: NodeName::parse(&id.node_id)?,
                addr: id.gossip_advertise_addr,
                incarnation: id.generation_id,
            })
        })
        .collect()
}

/// The prober on the gossip port (sealed, shared with chitchat) or the tests' hub. None when the
/// node id is not a name the prober carries (`core::net::valid_name`: config validation refuses
/// such ids, so only a record from elsewhere could hold one): chitchat's detector then decides.
fn start_prober(
    id: &str,
    advertise: SocketAddr,
    generation: u64,
    network: &GossipNetwork,
    seal: &Arc<GossipSeal>,
) -> Option<SwimHandle> {
    let Some(me) = NodeName::parse(id) else {
        log::warn!("node id '{id}' is not a valid node name ({}): liveness comes from chitchat's failure detector alone", crate::core::net::NAME_RULE);
        return None;
    };
    let identity = swim::Identity {
        me,
        addr: advertise,
        incarnation: generation,
    };
    let seed = u64::from_le_bytes(
        crate::agent::gossip_seal::random_session()[..8]
            .try_into()
            .expect("8 bytes"),
    );
    match network {
        GossipNetwork::Udp => {
            let prober = swim::spawn(identity, Params::lan(), seed, seal.swim_outbox()?);
            seal.set_swim_inbox(prober.inbox());
            Some(prober)
        }
        #[cfg(test)]
        GossipNetwork::InMemory(net) => {
            let prober = swim::spawn(identity, Params::lan(), seed, net.swim.outbox(advertise));
            net.swim.attach(advertise, prober.inbox());
            Some(prober)
        }
    }
}

/// Whom the monitor tells that some node's state changed: the transport (to gossip at chitchat's
/// pace) and the node (`Membership::changes`).
struct Stirring {
    seal: Arc<GossipSeal>,
    state_changed: tokio::sync::watch::Sender<u64>,
}

/// Where the monitor hands nodes to: the prober's commands and what it knows, and the members
/// its anti-entropy found with a gossiped state other than ours.
struct Handover {
    prober: Option<tokio::sync::mpsc::Sender<swim::Command>>,
    liveness: Option<tokio::sync::watch::Receiver<LivenessMap>>,
    state_differs: Option<tokio::sync::mpsc::Receiver<SocketAddr>>,
}

/// What changes when any node's gossip state changes: the sum of every node's generation and of
/// its keys' versions (versions only grow), reachability findings apart (`.1`): those change the
/// member view but do not stir gossip (their owner spreads them; a finding whose round trips
/// alone moved waits for a quiet round).
fn state_fingerprint(states: &BTreeMap<ChitchatId, chitchat::NodeState>) -> (u64, u64) {
    states
        .iter()
        .fold((0u64, 0u64), |(sum, reach), (id, state)| {
            state.key_values_including_deleted().fold(
                (sum.wrapping_add(id.generation_id), reach),
                |(sum, reach), (k, v)| match k == REACH_KEY {
                    false => (sum.wrapping_add(v.version), reach),
                    true => (sum, reach.wrapping_add(v.version)),
                },
            )
        })
}

/// The gossiped state as members compare it (the prober's anti-entropy digest carries it): an
/// order-free sum of a hash of each node's id, generation and newest version, heartbeats left
/// out (they move every round) and reachability findings too (their round trips move every
/// round of the reachability prober, 10 s; a new outcome stirs gossip, round trips alone go with
/// the quiet rounds). Members that hold the same states compute the same, whatever their
/// process: no per-process hash keys.
fn shared_state_digest(states: &BTreeMap<ChitchatId, chitchat::NodeState>) -> u64 {
    states.iter().fold(0u64, |sum, (id, state)| {
        let newest = state
            .key_values_including_deleted()
            .filter(|(k, _)| *k != REACH_KEY)
            .map(|(_, v)| v.version)
            .max()
            .unwrap_or(0);
        let name = fnv1a(id.node_id.as_bytes());
        sum.wrapping_add(mix64(
            name ^ id.generation_id.rotate_left(17) ^ newest.rotate_left(41),
        ))
    })
}

/// The gossip addresses to seal compactly to: those whose newest start (the highest generation
/// chitchat holds for that address) says it opens the compact format. An address taken over by
/// a build that does not say so gets the standard format again at once.
fn compact_peers(states: &BTreeMap<ChitchatId, chitchat::NodeState>) -> HashSet<SocketAddr> {
    let mut newest: HashMap<SocketAddr, (u64, bool)> = HashMap::new();
    for (id, state) in states {
        let compact = state
            .get(SEAL_FORMATS_KEY)
            .is_some_and(|formats| formats.split(',').any(|f| f == SEAL_COMPACT));
        let slot = newest
            .entry(id.gossip_advertise_addr)
            .or_insert((id.generation_id, compact));
        if id.generation_id >= slot.0 {
            *slot = (id.generation_id, compact);
        }
    }
    newest
        .into_iter()
        .filter_map(|(addr, (_, compact))| compact.then_some(addr))
        .collect()
}

/// Every busy round: notes when each node's heartbeat moved ("last seen"); stirs gossip when any
/// node's state changed (a newcomer, a new entry, an admin change: each node that learns it
/// passes it on at the busy pace); while busy, starts exchanges with `BUSY_FANOUT` members up
/// (the prober's word) or, knowing none, the seeds; and hands the prober every node chitchat sees
/// live that it does not know at that start (a newcomer, a restart, or one it forgot). A node
/// chitchat only remembers (its heartbeat never moved here) is not handed over: the prober would
/// take it for alive until it failed to answer. Allocates only for what changed.
async fn monitor(
    handle: std::sync::Weak<ChitchatHandle>,
    self_id: ChitchatId,
    last_seen: Arc<Mutex<LastSeen>>,
    handover: Handover,
    stirring: Stirring,
) {
    let Handover {
        prober,
        liveness,
        mut state_differs,
    } = handover;
    let Some(chitchat) = handle.upgrade().map(|h| h.chitchat()) else {
        return;
    };
    let mut tick = tokio::time::interval(BUSY_ROUND);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut fingerprint = None;
    let mut digest_sent = None;
    let mut rng = Xorshift::new();
    loop {
        tick.tick().await;
        let now = Instant::now();
        let (new, targets, digest) = {
            let guard = chitchat.lock().await;
            let states = guard.node_states();
            let now_fingerprint = state_fingerprint(states);
            // Only when something but findings changed (versions only grow): O(nodes), not
            // every round.
            let states_changed = fingerprint.map(|f: (u64, u64)| f.0) != Some(now_fingerprint.0);
            let digest = states_changed
                .then(|| shared_state_digest(states))
                .filter(|d| digest_sent != Some(*d));
            if states_changed {
                stirring.seal.set_compact_peers(compact_peers(states));
            }
            match fingerprint.replace(now_fingerprint) {
                Some(before) if before == now_fingerprint => {}
                Some((state, _)) if state == now_fingerprint.0 => {
                    stirring
                        .state_changed
                        .send_modify(|v| *v = v.wrapping_add(1));
                }
                _ => {
                    stirring.seal.stir();
                    stirring
                        .state_changed
                        .send_modify(|v| *v = v.wrapping_add(1));
                }
            }
            stirring.seal.set_cluster_size(states.len());
            {
                let mut seen = last_seen.lock().unwrap_or_else(|p| p.into_inner());
                for (id, state) in states {
                    let beat = state.heartbeat();
                    match seen.get_mut(id) {
                        Some((old, _)) if *old == beat => {}
                        Some(moved) => *moved = (beat, now),
                        None => {
                            seen.insert(id.clone(), (beat, now));
                        }
                    }
                }
                // Nodes chitchat forgot (a restart leaves its old generation behind for an hour):
                // the map would otherwise keep every generation ever seen.
                if seen.len() > states.len() {
                    seen.retain(|id, _| states.contains_key(id));
                }
            }
            let known = liveness.as_ref().map(|l| l.borrow());
            // Until the prober speaks of that start (a handover in flight is sent again, at
            // most once a round: `AddMember` of a start it knows changes nothing). Only a node
            // heard of lately: chitchat may hold a node it no longer hears as live for longer
            // than the prober remembers a death, and must not bring it back.
            let seen = last_seen.lock().unwrap_or_else(|p| p.into_inner());
            let new: Vec<swim::Command> = match (&prober, &known) {
                (Some(_), Some(known)) => {
                    to_hand_over(guard.live_nodes(), &self_id, known, &seen, now)
                }
                _ => Vec::new(),
            };
            let targets = if stirring.seal.busy(now.into_std()) {
                let up: Vec<SocketAddr> = states
                    .keys()
                    .filter(|id| **id != self_id)
                    .filter(
                        |id| match known.as_deref().and_then(|k| probed_word(k, id)) {
                            Some(status) => status.is_up(),
                            None => guard.live_nodes().any(|live| live == *id),
                        },
                    )
                    .map(|id| id.gossip_advertise_addr)
                    .collect();
                let pool = if up.is_empty() {
                    let own = self_id.gossip_advertise_addr;
                    guard
                        .seed_nodes()
                        .into_iter()
                        .filter(|a| *a != own)
                        .collect()
                } else {
                    up
                };
                rng.pick(pool, BUSY_FANOUT)
            } else {
                Vec::new()
            };
            (new, targets, digest)
        };
        // Weak: a membership dropped without `shutdown` (a crash, in the tests) stops chitchat,
        // and this task with it.
        let Some(handle) = handle.upgrade() else {
            return;
        };
        for addr in targets {
            let _ = handle.gossip(addr);
        }
        // Members the prober found with another state: one exchange each mends both sides.
        while let Some(Ok(addr)) = state_differs.as_mut().map(|rx| rx.try_recv()) {
            stirring.seal.permit_exchange(addr);
            let _ = handle.gossip(addr);
        }
        drop(handle);
        if let Some(prober) = &prober {
            if let Some(digest) = digest {
                if prober
                    .send(swim::Command::StateDigest(digest))
                    .await
                    .is_err()
                {
                    return;
                }
                digest_sent = Some(digest);
            }
            for command in new {
                if prober.send(command).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The monitor's choice of members to gossip with: no cryptographic need, just spread.
struct Xorshift(u64);

impl Xorshift {
    fn new() -> Xorshift {
        let seed = crate::agent::gossip_seal::random_session();
        Xorshift(u64::from_le_bytes(seed[..8].try_into().expect("8 bytes")) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Up to `k` of `pool`, distinct, at random.
    fn pick<T>(&mut self, mut pool: Vec<T>, k: usize) -> Vec<T> {
        let k = k.min(pool.len());
        for i in 0..k {
            let j = i + (self.next() % (pool.len() - i) as u64) as usize;
            pool.swap(i, j);
        }
        pool.truncate(k);
        pool
    }
}

/// Resolves when `rx` changes, with `false` once its sender is gone; never without a receiver.
async fn next_change<T>(rx: &mut Option<tokio::sync::watch::Receiver<T>>) -> bool {
    match rx {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// Bumps `changed` whenever any node's gossiped state changes (the monitor's fingerprint), the
/// prober's view changes, or, without a prober, chitchat's live set. Not on chitchat's live set
/// otherwise: quiet gossip makes its detector come and go, and each wake-up rebuilds the view.
async fn forward_changes<T>(
    state: tokio::sync::watch::Receiver<u64>,
    mut prober: Option<tokio::sync::watch::Receiver<LivenessMap>>,
    chitchat_live: tokio::sync::watch::Receiver<T>,
    changed: tokio::sync::watch::Sender<()>,
) {
    let mut chitchat_live = prober.is_none().then_some(chitchat_live);
    let mut state = Some(state);
    loop {
        tokio::select! {
            open = next_change(&mut state) => if !open {
                return;
            },
            // The prober stopped (a farewell): the state's changes go on.
            open = next_change(&mut prober) => if !open {
                prober = None;
            },
            open = next_change(&mut chitchat_live) => if !open {
                chitchat_live = None;
            },
        }
        changed.send_replace(());
    }
}

/// An active node's entry with every service at `addr` (the fuzz target's member, tests).
fn bare_entry(id: &str, addr: SocketAddr) -> NodeEntry {
    NodeEntry {
        id: id.into(),
        hostname: id.into(),
        state: crate::core::members::NodeState::Active,
        family: if addr.is_ipv4() { "ipv4" } else { "ipv6" }.into(),
        addr: addr.ip().to_string(),
        external_addrs: vec![],
        advertised_grpc: addr.to_string(),
        advertised_http: addr.to_string(),
        advertised_gossip: addr.to_string(),
        listen_grpc: addr.to_string(),
        zone: String::new(),
        registered_unix: 0,
        reason: String::new(),
        admin_version: 0,
        applied_ms: 0,
        version: String::new(),
        cert_expires_unix: 0,
    }
}

/// The gossip key of the fuzz target's member.
const FUZZ_KEY: [u8; crate::core::seal::KEY_LEN] = [42; crate::core::seal::KEY_LEN];

/// For the gossip-datagram fuzz target: where its member listens, and a sealer with the member's
/// key (to reach chitchat's decoder as a key holder could).
pub struct FuzzGossip {
    pub to: SocketAddr,
    sealer: Mutex<crate::core::seal::Sealer>,
}

impl FuzzGossip {
    /// `message` sealed as a member would seal it.
    pub fn seal(&self, message: &[u8]) -> Vec<u8> {
        let key = crate::core::seal::GossipKey::from_bytes(FUZZ_KEY);
        let now = crate::agent::now_ms();
        let mut out = Vec::new();
        self.sealer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .seal(&key, now, message, &mut out);
        out
    }
}

/// For the gossip-datagram fuzz target: a member gossiping (sealed UDP) on loopback in its own
/// runtime thread, which also keeps projecting whatever state the datagrams put in.
pub fn fuzz_gossip_listener() -> &'static FuzzGossip {
    static LISTENING: std::sync::OnceLock<FuzzGossip> = std::sync::OnceLock::new();
    LISTENING.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let port = std::net::UdpSocket::bind("127.0.0.1:0")
                    .and_then(|s| s.local_addr())
                    .expect("a free port")
                    .port();
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                let entry = bare_entry("fuzz", addr);
                let keyring = crate::core::seal::Keyring::new(
                    crate::core::seal::GossipKey::from_bytes(FUZZ_KEY),
                );
                let seal =
                    GossipSeal::new(keyring, Arc::new(crate::agent::metrics::Metrics::new()));
                let member = Membership::start(
                    "fuzz",
                    &entry,
                    addr,
                    addr,
                    vec![],
                    &GossipNetwork::Udp,
                    GossipSecurity { seal, tls: None },
                )
                .await
                .expect("gossip on loopback");
                let _ = tx.send(addr);
                loop {
                    let members = member.members().await;
                    for m in &members {
                        let _ = crate::core::reach::decode(&m.reach);
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
        });
        FuzzGossip {
            to: rx.recv().expect("the gossip listener started"),
            sealer: Mutex::new(crate::core::seal::Sealer::new([0x5e; 16])),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::members::Health;
    use crate::core::swim::Liveness;
    use std::net::IpAddr;

    async fn member(net: &MemoryNetwork, i: u16) -> Membership {
        let addr = SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, i], 7946));
        let seed = SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1], 7946));
        let keyring = crate::core::seal::Keyring::new(crate::core::seal::GossipKey::from_bytes(
            [7; crate::core::seal::KEY_LEN],
        ));
        let seal = GossipSeal::new(keyring, Arc::new(crate::agent::metrics::Metrics::new()));
        Membership::start(
            "test",
            &bare_entry(&format!("node{i}"), addr),
            addr,
            addr,
            if i == 1 {
                vec![]
            } else {
                vec![seed.to_string()]
            },
            &GossipNetwork::InMemory(net.clone()),
            GossipSecurity { seal, tls: None },
        )
        .await
        .unwrap()
    }

    /// Waits (virtual time) until `m` shows `id` with `health`; how long it took.
    async fn until(m: &Membership, id: &str, health: Health, limit: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let members = m.members().await;
            if members
                .iter()
                .any(|v| v.entry.id == id && v.status == health)
            {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "{id} not {health:?} within {limit:?}: {:?}",
                members
                    .iter()
                    .map(|v| (&v.entry.id, v.status))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The prober's word decides UP and DOWN: a node whose gossip still flows but that no longer
    /// answers probes is DOWN (chitchat alone would call it alive), and once it answers again it
    /// refutes the death and is OK again. A node the prober knows wakes the node actor.
    #[tokio::test(start_paused = true)]
    async fn the_probers_word_decides_up_and_down() {
        let net = MemoryNetwork::default();
        let mut members = Vec::new();
        for i in 1..=3 {
            members.push(member(&net, i).await);
        }
        let mut changes = members[0].changes();
        for m in &members {
            for id in ["node1", "node2", "node3"] {
                until(m, id, Health::Ok, Duration::from_secs(10)).await;
            }
        }
        // Every member handed to the prober, at its start.
        let probed = members[0].liveness.as_ref().unwrap().borrow().clone();
        assert_eq!(
            probed.keys().map(NodeName::as_str).collect::<Vec<_>>(),
            ["node2", "node3"]
        );
        let node3 = SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, 3], 7946));
        let inbox = net.swim.detach(node3).unwrap();
        changes.borrow_and_update();
        for m in &members[..2] {
            let took = until(m, "node3", Health::Down, Duration::from_secs(10)).await;
            assert!(took <= Duration::from_secs(5), "{took:?}");
        }
        assert!(changes.has_changed().unwrap(), "the actor is woken");
        let chitchat_says = members[0]
            .handle
            .with_chitchat(|c| c.live_nodes().any(|id| &*id.node_id == "node3"))
            .await;
        assert!(chitchat_says, "chitchat still hears node3's heartbeat");
        // Back: it hears it was declared dead, refutes, and is OK everywhere.
        net.swim.attach(node3, inbox);
        for m in &members[..2] {
            until(m, "node3", Health::Ok, Duration::from_secs(10)).await;
        }
        for m in members {
            m.shutdown().await;
        }
    }

    /// What goes to the prober: a live node it does not speak of, heard of lately. Not itself,
    /// not a node the prober knows at that start or a later one (down included: the prober's
    /// word stands), not a node whose heartbeat last moved `HANDOVER_FRESH` ago or more (chitchat
    /// may hold it live after the prober forgot its death), not an id the prober cannot carry.
    #[tokio::test(start_paused = true)]
    async fn only_live_nodes_heard_of_lately_and_unknown_to_the_prober_are_handed_over() {
        let addr = |i: u16| SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, i], 7946));
        let id = |name: &str, generation: u64, i: u16| {
            ChitchatId::new(name.to_string(), generation, addr(i))
        };
        let me = id("node1", 10, 1);
        let fresh = id("fresh", 10, 2);
        let stale = id("stale", 10, 3);
        let edge = id("edge", 10, 4);
        let known_up = id("known", 10, 5);
        let known_dead = id("gone", 10, 6);
        let restarted = id("again", 20, 7);
        let bad_name = id("not a name", 10, 8);
        let never_seen = id("unseen", 10, 9);
        let status = |liveness, incarnation, i| Status {
            liveness,
            incarnation,
            addr: addr(i),
            since: Duration::ZERO,
        };
        let known: LivenessMap = [
            ("known", status(Liveness::Alive, 10, 5)),
            ("gone", status(Liveness::Dead, 12, 6)),
            ("again", status(Liveness::Dead, 10, 7)),
        ]
        .into_iter()
        .map(|(n, s)| (NodeName::parse(n).unwrap(), s))
        .collect();
        let start = Instant::now();
        tokio::time::advance(HANDOVER_FRESH + Duration::from_secs(60)).await;
        let now = Instant::now();
        let moved = |ago: Duration| (Heartbeat::default(), now - ago);
        let seen: LastSeen = [
            (me.clone(), moved(Duration::ZERO)),
            (fresh.clone(), moved(Duration::from_secs(5))),
            (stale.clone(), (Heartbeat::default(), start)),
            (edge.clone(), moved(HANDOVER_FRESH)),
            (known_up.clone(), moved(Duration::ZERO)),
            (known_dead.clone(), moved(Duration::ZERO)),
            (
                restarted.clone(),
                moved(HANDOVER_FRESH - Duration::from_secs(1)),
            ),
            (bad_name.clone(), moved(Duration::ZERO)),
        ]
        .into_iter()
        .collect();
        let live = [
            &me,
            &fresh,
            &stale,
            &edge,
            &known_up,
            &known_dead,
            &restarted,
            &bad_name,
            &never_seen,
        ];
        let handed: Vec<(String, SocketAddr, u64)> =
            to_hand_over(live.into_iter(), &me, &known, &seen, now)
                .into_iter()
                .map(|command| match command {
                    swim::Command::AddMember {
                        id,
                        addr,
                        incarnation,
                    } => (id.as_str().to_string(), addr, incarnation),
                    other => panic!("not a handover: {other:?}"),
                })
                .collect();
        assert_eq!(
            handed,
            [
                ("fresh".to_string(), addr(2), 10),
                ("again".to_string(), addr(7), 20),
            ]
        );
    }

    /// Compact seals go to an address whose newest start says it opens them: an upgrade there
    /// turns them on, a downgrade (a newer generation without the key) off; values it does not
    /// know are ignored, one it knows among them counts.
    #[test]
    fn compact_seals_go_where_the_newest_start_says_it_opens_them() {
        let addr = |i: u16| SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, i], 7946));
        let state = |formats: Option<&str>| {
            let mut s = chitchat::NodeState::for_test();
            s.set(NODE_KEY, "{}");
            if let Some(f) = formats {
                s.set(SEAL_FORMATS_KEY, f);
            }
            s
        };
        let cases: [(&str, u64, u16, Option<&str>); 10] = [
            ("says so", 10, 1, Some("compact")),
            ("says nothing", 10, 2, None),
            ("downgraded", 5, 3, Some("compact")),
            ("downgraded", 9, 3, None),
            ("upgraded", 5, 4, None),
            ("upgraded", 9, 4, Some("compact")),
            ("more formats", 10, 5, Some("future,compact")),
            ("unknown format", 10, 6, Some("future")),
            ("empty", 10, 7, Some("")),
            ("shouting", 10, 8, Some("COMPACT")),
        ];
        let states: BTreeMap<ChitchatId, chitchat::NodeState> = cases
            .iter()
            .map(|(name, generation, i, formats)| {
                (
                    ChitchatId::new(name.to_string(), *generation, addr(*i)),
                    state(*formats),
                )
            })
            .collect();
        let mut got: Vec<SocketAddr> = compact_peers(&states).into_iter().collect();
        got.sort();
        assert_eq!(got, [addr(1), addr(4), addr(5)]);
    }

    #[test]
    fn discovery_slots_cap_each_peer_and_keep_the_last_ones_for_new_peers() {
        let slots = Arc::new(DiscoverySlots::default());
        let peer =
            |i: u32| IpAddr::from(std::net::Ipv6Addr::from(0x2001_0db8_u128 << 96 | i as u128));
        // One address: DISCOVERY_PER_PEER, then refused; `::ffff:a.b.c.d` is `a.b.c.d`.
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        let mut held: Vec<DiscoverySlot> = (0..DISCOVERY_PER_PEER)
            .map(|i| slots.admit(if i % 2 == 0 { v4 } else { mapped }).unwrap())
            .collect();
        assert!(slots.admit(v4).is_none());
        assert!(slots.admit(mapped).is_none());
        // Many addresses, two each, up to the reserve; then only addresses holding none.
        let mut i = 0;
        while slots.open.lock().unwrap().0 < DISCOVERY_SLOTS - DISCOVERY_RESERVE {
            held.push(slots.admit(peer(i / 2)).unwrap());
            i += 1;
        }
        assert!(
            slots.admit(peer(0)).is_none(),
            "a peer holding one, in the reserve"
        );
        for j in 0..DISCOVERY_RESERVE as u32 {
            held.push(slots.admit(peer(10_000 + j)).unwrap());
        }
        assert!(slots.admit(peer(20_000)).is_none(), "full");
        // Dropping frees.
        held.clear();
        assert_eq!(*slots.open.lock().unwrap(), (0, HashMap::new()));
        assert!(slots.admit(v4).is_some());
    }
}
