//! Gossip membership on chitchat (Quickwit's scuttlebutt): each node publishes its entry under the
//! key `node`; liveness comes from chitchat's phi-accrual failure detector; "last seen" from the
//! moments each node's heartbeat was seen to move.

use chitchat::transport::UdpTransport;
use chitchat::{
    spawn_chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, Heartbeat,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const NODE_KEY: &str = "node";
/// `forget/<id>` = the newest generation of `<id>` to hide (set by whichever node forgot it).
pub(crate) const FORGET_PREFIX: &str = "forget/";
/// `override/<id>/<what>` = an admin change for node `<id>`, carried by the node that took it.
pub(crate) const OVERRIDE_PREFIX: &str = "override/";
/// Short rounds: a 30-node cluster converges in a few of them, a dead node is seen within seconds.
const GOSSIP_INTERVAL: Duration = Duration::from_millis(200);

/// A node's place in the cluster's life cycle, as it publishes it (LEFT is derived, see
/// `MemberView`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum NodeState {
    Joining,
    Active,
    Leaving,
    Left,
}

impl NodeState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            NodeState::Joining => "JOINING",
            NodeState::Active => "ACTIVE",
            NodeState::Leaving => "LEAVING",
            NodeState::Left => "LEFT",
        }
    }
}

/// Whether the failure detector hears the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub(crate) enum Health {
    Ok,
    Down,
}

/// What a node publishes about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEntry {
    pub(crate) id: String,
    pub(crate) hostname: String,
    /// JOINING, ACTIVE, LEAVING as published; LEFT in a view when a node that said LEAVING
    /// has gone silent (a graceful stop, unlike a crash, which stays ACTIVE and DOWN).
    pub(crate) state: NodeState,
    pub(crate) family: String,
    pub(crate) addr: String,
    pub(crate) external_addrs: Vec<String>,
    pub(crate) advertised_grpc: String,
    pub(crate) advertised_http: String,
    pub(crate) advertised_gossip: String,
    pub(crate) listen_grpc: String,
    pub(crate) zone: String,
    pub(crate) registered_unix: u64,
    /// Why the node is not ACTIVE (e.g. its new address is not bound), empty otherwise.
    #[serde(default)]
    pub(crate) reason: String,
    /// How many admin changes this node has applied to itself.
    #[serde(default)]
    pub(crate) admin_version: u64,
    /// When (ms) the newest admin change it applied was made: gossiped changes older than this
    /// are already in its entry.
    #[serde(default)]
    pub(crate) applied_ms: u64,
    /// The stackring build the node runs (rladmin's VERSION column).
    #[serde(default)]
    pub(crate) version: String,
}

/// A member as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct MemberView {
    #[serde(flatten)]
    pub(crate) entry: NodeEntry,
    /// OK, or DOWN when the failure detector considers the node dead.
    pub(crate) status: Health,
    pub(crate) last_seen_ms_ago: u64,
    pub(crate) local: bool,
    /// Chitchat generation (start time, ms) of the row shown: `forget` hides this one.
    pub(crate) generation: u64,
    /// The one wording of state and health that the CLI, `/ring` and the JSON all show.
    pub(crate) summary: String,
}

impl MemberView {
    pub(crate) fn healthy(&self) -> bool {
        self.status == Health::Ok
    }
}

/// "OK" for a healthy active node; otherwise the health and whatever else an operator should
/// know: `OK, JOINING: <why>`, `OK, LEAVING`, `LEFT, last seen 2.5s ago`, `DOWN, last seen 33s ago`.
pub(crate) fn summary(
    status: Health,
    state: NodeState,
    reason: &str,
    last_seen_ms_ago: u64,
) -> String {
    let seen = match last_seen_ms_ago {
        u64::MAX => "never seen".to_string(),
        ms if ms < 10_000 => format!("last seen {:.1}s ago", ms as f64 / 1000.0),
        ms => format!("last seen {}s ago", ms / 1000),
    };
    let because = if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    };
    match (status, state) {
        (Health::Ok, NodeState::Active) => "OK".into(),
        (Health::Ok, state) => format!("OK, {}{because}", state.as_str()),
        (Health::Down, NodeState::Left) => format!("LEFT, {seen}"),
        (Health::Down, _) => format!("DOWN, {seen}"),
    }
}

pub(crate) struct Membership {
    handle: ChitchatHandle,
    self_id: ChitchatId,
    last_seen: Arc<Mutex<HashMap<ChitchatId, (Heartbeat, Instant)>>>,
    monitor: tokio::task::JoinHandle<()>,
    /// What the TCP side of the gossip port tells a joiner (see `serve_discovery`).
    discovery: Arc<Mutex<Discovery>>,
    discovery_task: Option<tokio::task::JoinHandle<()>>,
}

/// The answer on the TCP side of the gossip port: where this member's gRPC `Join` is. dskit's
/// memberlist listens on TCP and UDP at `bind_port`; `join_members` name that port, and a joiner
/// needs the member's gRPC endpoint (advertised, so a sidecar proxy's port is honoured).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Discovery {
    pub(crate) node: String,
    pub(crate) grpc: String,
}

/// How long a joiner waits for a member's discovery answer.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(3);

/// Asks the member at gossip address `host_port` (TCP) where its gRPC endpoint is.
pub(crate) async fn discover_grpc(host_port: &str) -> Result<SocketAddr, String> {
    use tokio::io::AsyncReadExt;
    let addrs: Vec<SocketAddr> =
        tokio::time::timeout(DISCOVERY_TIMEOUT, tokio::net::lookup_host(host_port))
            .await
            .map_err(|_| "name lookup timed out".to_string())?
            .map_err(|e| format!("cannot resolve it ({e})"))?
            .collect();
    let mut errors = Vec::new();
    for addr in addrs {
        let answer = tokio::time::timeout(DISCOVERY_TIMEOUT, async {
            let mut stream = tokio::net::TcpStream::connect(addr).await?;
            let mut buf = Vec::with_capacity(256);
            (&mut stream).take(4096).read_to_end(&mut buf).await?;
            Ok::<_, std::io::Error>(buf)
        })
        .await;
        match answer {
            Err(_) => errors.push(format!("{addr}: no answer within {DISCOVERY_TIMEOUT:?}")),
            Ok(Err(e)) => errors.push(format!("{addr}: cannot connect ({e})")),
            Ok(Ok(bytes)) => match serde_json::from_slice::<Discovery>(&bytes) {
                Ok(d) => match d.grpc.parse::<SocketAddr>() {
                    Ok(grpc) => return Ok(grpc),
                    Err(_) => errors.push(format!("{addr}: bad gRPC address '{}'", d.grpc)),
                },
                Err(_) => errors.push(format!(
                    "{addr}: answered, but not as a stackring member's gossip port"
                )),
            },
        }
    }
    if errors.is_empty() {
        errors.push("the name has no address".into());
    }
    Err(errors.join(", "))
}

/// Answers every TCP connection on the gossip port with this node's `Discovery`, then closes.
async fn serve_discovery(listener: tokio::net::TcpListener, answer: Arc<Mutex<Discovery>>) {
    use tokio::io::AsyncWriteExt;
    // Bounded: a flood of connections waits in the kernel's backlog, not in our memory.
    let slots = Arc::new(tokio::sync::Semaphore::new(64));
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let body = serde_json::to_vec(&*answer.lock().unwrap_or_else(|p| p.into_inner()))
            .unwrap_or_default();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(DISCOVERY_TIMEOUT, async {
                let _ = stream.write_all(&body).await;
                let _ = stream.shutdown().await;
            })
            .await;
            drop(slot);
        });
    }
}

pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Membership {
    /// Binds the gossip socket on `listen` and starts gossiping with `seeds` (host:port strings).
    pub(crate) async fn start(
        cluster: &str,
        entry: &NodeEntry,
        listen: SocketAddr,
        advertise: SocketAddr,
        seeds: Vec<String>,
    ) -> anyhow::Result<Membership> {
        // A restarted node is a new generation of the same id.
        let generation = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let self_id = ChitchatId::new(entry.id.clone(), generation, advertise);
        let config = ChitchatConfig {
            chitchat_id: self_id.clone(),
            cluster_id: cluster.to_string(),
            gossip_interval: GOSSIP_INTERVAL,
            listen_addr: listen,
            seed_nodes: seeds,
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: 8.0,
                sampling_window_size: 1000,
                max_interval: Duration::from_secs(2),
                initial_interval: GOSSIP_INTERVAL,
                dead_node_grace_period: Duration::from_secs(3600),
            },
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: chitchat::ProtocolVersion::V0,
        };
        let value = serde_json::to_string(entry)?;
        let handle =
            spawn_chitchat(config, vec![(NODE_KEY.to_string(), value)], &UdpTransport).await?;
        let last_seen: Arc<Mutex<HashMap<ChitchatId, (Heartbeat, Instant)>>> = Arc::default();
        let chitchat = handle.chitchat();
        let seen = last_seen.clone();
        let monitor = tokio::spawn(async move {
            let mut tick = tokio::time::interval(GOSSIP_INTERVAL / 2);
            loop {
                tick.tick().await;
                let beats: Vec<(ChitchatId, Heartbeat)> = {
                    let guard = chitchat.lock().await;
                    guard
                        .node_states()
                        .iter()
                        .map(|(id, s)| (id.clone(), s.heartbeat()))
                        .collect()
                };
                let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                for (id, beat) in beats {
                    match seen.get(&id) {
                        Some((old, _)) if *old == beat => {}
                        _ => {
                            seen.insert(id, (beat, now));
                        }
                    }
                }
            }
        });
        let discovery = Arc::new(Mutex::new(Discovery {
            node: entry.id.clone(),
            grpc: entry.advertised_grpc.clone(),
        }));
        let discovery_task = match crate::serve::listen_socket(listen) {
            Ok(listener) => Some(tokio::spawn(serve_discovery(listener, discovery.clone()))),
            Err(e) => {
                log::warn!("gossip port {listen} over TCP: {e}; nodes cannot join through this node's memberlist address");
                None
            }
        };
        Ok(Membership {
            handle,
            self_id,
            last_seen,
            monitor,
            discovery,
            discovery_task,
        })
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
        self.handle
            .with_chitchat(|c| {
                let own = c.self_node_state();
                if own.get(NODE_KEY) != Some(value.as_str()) {
                    own.set(NODE_KEY, value.clone());
                }
            })
            .await;
    }

    /// Every node known, one row per node id (its newest generation), sorted by id.
    pub(crate) async fn members(&self) -> Vec<MemberView> {
        let forgotten = self.forgotten().await;
        let (states, live): (Vec<(ChitchatId, Option<String>)>, Vec<ChitchatId>) = self
            .handle
            .with_chitchat(|c| {
                let states = c
                    .node_states()
                    .iter()
                    .map(|(id, s)| (id.clone(), s.get(NODE_KEY).map(str::to_string)))
                    .collect();
                (states, c.live_nodes().cloned().collect())
            })
            .await;
        let seen = self
            .last_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut newest: HashMap<String, MemberView> = HashMap::new();
        let mut generation: HashMap<String, u64> = HashMap::new();
        for (id, value) in states {
            let Some(entry) = value.and_then(|v| serde_json::from_str::<NodeEntry>(&v).ok()) else {
                continue;
            };
            let local = id == self.self_id;
            let alive = local || live.contains(&id);
            let last_seen_ms_ago = if local {
                0
            } else {
                seen.get(&id)
                    .map(|(_, at)| at.elapsed().as_millis() as u64)
                    .unwrap_or(u64::MAX)
            };
            let node_id = id.node_id.to_string();
            if generation
                .get(&node_id)
                .is_some_and(|g| *g > id.generation_id)
                || forgotten
                    .get(&node_id)
                    .is_some_and(|cutoff| id.generation_id <= *cutoff)
            {
                continue;
            }
            generation.insert(node_id.clone(), id.generation_id);
            let mut entry = entry;
            if !alive && entry.state == NodeState::Leaving {
                entry.state = NodeState::Left;
            }
            let status = if alive { Health::Ok } else { Health::Down };
            let summary = summary(status, entry.state, &entry.reason, last_seen_ms_ago);
            newest.insert(
                node_id,
                MemberView {
                    entry,
                    status,
                    last_seen_ms_ago,
                    local,
                    generation: id.generation_id,
                    summary,
                },
            );
        }
        let mut members: Vec<MemberView> = newest.into_values().collect();
        members.sort_by(|a, b| a.entry.id.cmp(&b.entry.id));
        members
    }

    /// Gossip addresses of the other members, for rejoining after a restart.
    pub(crate) async fn peer_gossip_addrs(&self) -> Vec<String> {
        let mut addrs: Vec<String> = self
            .members()
            .await
            .into_iter()
            .filter(|m| !m.local)
            .map(|m| m.entry.advertised_gossip)
            .collect();
        addrs.sort();
        addrs.dedup();
        addrs
    }

    /// Sets a key of this node's own gossip state (admin requests travel this way).
    pub(crate) async fn set_own_key(&self, key: &str, value: &str) {
        self.handle
            .with_chitchat(|c| c.self_node_state().set(key, value))
            .await;
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

    /// node id → newest generation that some node asked to forget.
    async fn forgotten(&self) -> HashMap<String, u64> {
        let mut out: HashMap<String, u64> = HashMap::new();
        for (_, key, value) in self.keys_with_prefix(FORGET_PREFIX).await {
            let (Some(id), Ok(cutoff)) = (key.strip_prefix(FORGET_PREFIX), value.parse::<u64>())
            else {
                continue;
            };
            let e = out.entry(id.to_string()).or_default();
            *e = (*e).max(cutoff);
        }
        out
    }

    pub(crate) async fn shutdown(self) {
        let Membership {
            handle,
            monitor,
            discovery_task,
            ..
        } = self;
        monitor.abort();
        if let Some(task) = discovery_task {
            task.abort();
        }
        let _ = handle.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One wording of state and health for every view; a node that is joining or was stopped
    /// never reads as plain "OK", and a recent death does not read "0s ago".
    #[test]
    fn summary_shows_health_and_any_state_but_active() {
        let never = u64::MAX;
        use Health::*;
        use NodeState::*;
        for (status, state, reason, ago, want) in [
            (Ok, Active, "", 0, "OK"),
            (Ok, Joining, "", 0, "OK, JOINING"),
            (
                Ok,
                Joining,
                "fd00::9 is not bound",
                0,
                "OK, JOINING: fd00::9 is not bound",
            ),
            (Ok, Leaving, "", 0, "OK, LEAVING"),
            (Down, Left, "", 3_400, "LEFT, last seen 3.4s ago"),
            (Down, Active, "", 850, "DOWN, last seen 0.8s ago"),
            (Down, Active, "", 33_999, "DOWN, last seen 33s ago"),
            (Down, Active, "", never, "DOWN, never seen"),
        ] {
            assert_eq!(
                summary(status, state, reason, ago),
                want,
                "{status:?} {state:?}"
            );
        }
    }
}
