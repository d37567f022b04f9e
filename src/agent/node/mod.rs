//! The cluster node: bootstrap (create / join), the persisted cluster record, admin changes, the
//! gossip membership it runs. One actor task ([`actor`]) owns membership and writes the record;
//! [`ClusterNode`] is the handle the servers and the daemon hold: typed methods that read the
//! published state or send the actor a command. The rules live in [`crate::core::cluster`].

mod actor;
mod admin;
mod bootstrap;
pub(crate) mod client;
#[cfg(test)]
mod tests;
pub(crate) mod tokens;

use crate::agent::authguard::{AuthGuard, Denied};
use crate::agent::membership::GossipNetwork;
use crate::agent::StateRx;
use crate::core::cluster::{self, BootstrapStatus, ClusterRecord, Outcome};
use crate::core::config::Settings;
use crate::core::decide::{usable_addrs, Identity};
use crate::core::members::MemberView;
use crate::core::reach::{diagnose, Matrix};
use crate::core::refusal::Refusal;
use crate::core::snapshot::{Family, HostSnapshot};
use actor::{Actor, Command};
use serde::Serialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};

pub(crate) use admin::{Admission, JoinDenied, RelayedChange};

pub(crate) const RECORD_FILE: &str = "cluster.json";

/// argon2 takes ~19 MiB per hash: one at a time, so thirty simultaneous joins cost 19 MiB, not 570.
static ARGON2: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Runs an argon2 computation off the async workers, one at a time.
async fn argon2<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let _slot = ARGON2.acquire().await.ok()?;
    tokio::task::spawn_blocking(work).await.ok()
}

/// What the handle and the actor share: fixed facts, the inputs the daemon feeds, and the state
/// the actor publishes.
struct Shared {
    state_dir: PathBuf,
    hostname: String,
    network: GossipNetwork,
    host: watch::Receiver<Arc<HostSnapshot>>,
    identity: StateRx,
    settings: watch::Sender<Settings>,
    /// Every credential check goes through it (per-source backoff, bounded queue).
    auth: AuthGuard,
    metrics: Arc<crate::agent::metrics::Metrics>,
    /// Written by the actor only.
    record: watch::Sender<Option<Arc<ClusterRecord>>>,
    /// Refreshed by the actor every tick and on every liveness change.
    members: watch::Sender<Arc<Vec<MemberView>>>,
    /// Moved forward by a bootstrap (compare-and-set: one bootstrap at a time).
    status: watch::Sender<BootstrapStatus>,
    /// The daemon's latest word on the identity; the actor follows it in order (latest wins).
    announced: watch::Sender<Announcement>,
    /// This node's certificates (self-signed, then the cluster's), for every TLS connection.
    tls: Arc<crate::agent::tls::NodeTls>,
    /// The join tokens this member printed (`tokens`).
    tokens: tokio::sync::Mutex<tokens::JoinTokens>,
}

/// What the daemon last told the node about its identity.
#[derive(Debug, Clone)]
enum Announcement {
    Nothing,
    /// A (new) identity: publish it, or (re)start gossip after a restart.
    Ready(Box<Identity>),
    /// The identity is lost (e.g. a new internal address is not bound): say why in the entry,
    /// keeping the last advertised values.
    NotReady(String),
}

/// The handle on the cluster node.
pub(crate) struct ClusterNode {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
}

/// `<state_dir>/cluster.json`, if this node belongs to a cluster.
pub(crate) fn load_record(state_dir: &Path) -> anyhow::Result<Option<ClusterRecord>> {
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
    match record {
        Some(r) => base.with_overrides(&r.overrides()),
        None => base.clone(),
    }
}

/// A usable address of the host, for `GET /v1/bootstrap`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct AvailableAddr {
    #[schema(value_type = String)]
    pub(crate) address: IpAddr,
    pub(crate) family: Family,
    pub(crate) interface: String,
}

impl ClusterNode {
    /// Loads `<state_dir>/cluster.json` if there is one and starts the node's task.
    pub(crate) fn new(
        settings: Settings,
        host: watch::Receiver<Arc<HostSnapshot>>,
        identity: StateRx,
        hostname: String,
        metrics: Arc<crate::agent::metrics::Metrics>,
    ) -> anyhow::Result<Arc<ClusterNode>> {
        ClusterNode::start(
            settings,
            host,
            identity,
            hostname,
            metrics,
            GossipNetwork::Udp,
        )
    }

    pub(crate) fn start(
        settings: Settings,
        host: watch::Receiver<Arc<HostSnapshot>>,
        identity: StateRx,
        hostname: String,
        metrics: Arc<crate::agent::metrics::Metrics>,
        network: GossipNetwork,
    ) -> anyhow::Result<Arc<ClusterNode>> {
        let state_dir = settings.state_dir.clone();
        let written = [
            state_dir.join(RECORD_FILE),
            state_dir.join(tokens::TOKENS_FILE),
        ]
        .into_iter()
        .chain(crate::agent::pki::PkiFiles::new(&state_dir).paths());
        let stale: usize = written
            .map(|path| crate::agent::fsutil::remove_stale_temporaries(&path))
            .sum();
        if stale > 0 {
            log::warn!(
                "removed {stale} unfinished file write(s) left by a killed process in {}",
                state_dir.display()
            );
        }
        let record = load_record(&state_dir)?;
        let tls =
            crate::agent::tls::NodeTls::load(&state_dir, &settings.id, &[], record.is_some())?;
        let shared = Arc::new(Shared {
            tls,
            tokens: tokio::sync::Mutex::new(tokens::JoinTokens::load(&state_dir)),
            state_dir,
            hostname,
            network,
            host,
            identity,
            settings: watch::Sender::new(settings),
            auth: AuthGuard::new(metrics.clone()),
            metrics,
            status: watch::Sender::new(BootstrapStatus::at_start(record.is_some())),
            record: watch::Sender::new(record.map(Arc::new)),
            members: watch::Sender::new(Arc::new(vec![])),
            announced: watch::Sender::new(Announcement::Nothing),
        });
        let (commands, rx) = mpsc::channel(64);
        let announced = shared.announced.subscribe();
        tokio::spawn(Actor::new(shared.clone()).run(rx, announced));
        if matches!(shared.network, GossipNetwork::Udp) {
            // Findings are dropped, not queued, when the actor is busy: the next round has newer.
            let to_actor = commands.downgrade();
            tokio::spawn(crate::agent::reach::run(
                shared.settings.subscribe(),
                shared.identity.clone(),
                shared.members.subscribe(),
                shared.metrics.clone(),
                shared.tls.clone(),
                move |findings| match to_actor.upgrade() {
                    Some(actor) => {
                        let _ = actor.try_send(Command::PublishReach(findings));
                        true
                    }
                    None => false,
                },
            ));
        }
        Ok(Arc::new(ClusterNode { shared, commands }))
    }

    /// This node's TLS material (the servers' configurations, the pin).
    pub(crate) fn tls(&self) -> Arc<crate::agent::tls::NodeTls> {
        self.shared.tls.clone()
    }

    /// Sends the actor a command and waits for its answer.
    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, Refusal>>) -> Command,
    ) -> Result<T, Refusal> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| Refusal::internal("the cluster node has stopped"))?;
        answer
            .await
            .map_err(|_| Refusal::internal("the cluster node has stopped"))?
    }

    pub(crate) fn record(&self) -> Option<Arc<ClusterRecord>> {
        self.shared.record.borrow().clone()
    }

    pub(crate) fn records(&self) -> watch::Receiver<Option<Arc<ClusterRecord>>> {
        self.shared.record.subscribe()
    }

    pub(crate) fn set_settings(&self, settings: Settings) {
        self.shared.settings.send_replace(settings);
    }

    pub(crate) fn settings(&self) -> Settings {
        self.shared.settings.borrow().clone()
    }

    pub(crate) fn status(&self) -> BootstrapStatus {
        self.shared.status.borrow().clone()
    }

    /// The host's usable addresses, for `GET /v1/bootstrap`.
    pub(crate) fn available_addrs(&self) -> Vec<AvailableAddr> {
        let snapshot = self.shared.host.borrow().clone();
        usable_addrs(&snapshot)
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

    /// The daemon decided a (new) identity. Never blocks; the node follows the latest one, in
    /// order (no task per change that could overtake the one before).
    pub(crate) fn on_identity(&self, identity: Identity) {
        self.shared
            .announced
            .send_replace(Announcement::Ready(Box::new(identity)));
    }

    /// The daemon lost its identity: the cluster is told why, the last advertised values kept.
    pub(crate) fn on_not_ready(&self, reason: String) {
        self.shared
            .announced
            .send_replace(Announcement::NotReady(reason));
    }

    /// Every member as this node sees it; `None` before the node belongs to a cluster.
    pub(crate) fn members(&self) -> Option<(String, Vec<MemberView>)> {
        let record = self.record()?;
        let members = self.shared.members.borrow().clone();
        Some((record.name.clone(), (*members).clone()))
    }

    /// Every member's findings as a matrix, and what they mean in words.
    pub(crate) fn reachability(&self) -> Option<(String, Matrix, Vec<String>)> {
        let (name, members) = self.members()?;
        let matrix = Matrix::new(&members);
        let diagnosis = diagnose(&matrix, &members);
        Some((name, matrix, diagnosis))
    }

    /// Changes with every refresh of the member view (gRPC `Watch` sends only real changes).
    pub(crate) fn member_updates(&self) -> watch::Receiver<Arc<Vec<MemberView>>> {
        self.shared.members.subscribe()
    }

    /// SIGTERM: remember the peers, say LEAVING, then stop gossiping.
    pub(crate) async fn leave(&self) {
        let (reply, done) = oneshot::channel();
        if self.commands.send(Command::Leave { reply }).await.is_ok() {
            let _ = done.await;
        }
    }

    /// Whether `username`/`password` are the cluster's, through the guard: a source that keeps
    /// failing waits, a full queue answers busy at once (argon2 runs off the async workers).
    /// `None` credentials: missing or malformed (counted as a failure too).
    pub(crate) async fn check_credentials(
        &self,
        source: Option<IpAddr>,
        credentials: Option<(&str, &str)>,
    ) -> Result<(), Denied> {
        let Some(record) = self.record() else {
            return Err(Denied::Invalid);
        };
        let given = credentials.map(|(u, p)| (u.to_string(), p.to_string()));
        self.shared
            .auth
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
