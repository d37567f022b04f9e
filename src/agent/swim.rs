//! The SWIM prober (`core::swim`) as a task: it owns the `Swim` state, gives it tokio's clock,
//! the datagrams addressed to it and the commands of the node, sends what it answers through an
//! `Outbox`, and publishes every member's liveness on a watch channel.
//!
//! The datagrams come opened (in the daemon, the sealed gossip socket hands over those whose first
//! byte is `wire::VERSION`; chitchat's never start with it) and leave as plain `wire` bytes for
//! the outbox to seal. Tests use an in-memory outbox under `tokio::time::pause`.
//!

use crate::core::swim::{wire, NodeName, Params, Status, Swim};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// Where the prober's datagrams go: sealed UDP in the daemon, channels in tests. Must not block
/// (a full socket buffer drops the datagram: the protocol tolerates loss).
pub(crate) trait Outbox: Send + 'static {
    fn send(&mut self, to: SocketAddr, datagram: &[u8]);
}

/// What the node asks of its prober.
#[derive(Debug)]
pub(crate) enum Command {
    /// Announce ourselves to these addresses until one answers (a joiner's seeds, the same as
    /// chitchat's); members chitchat sees live are handed over too (`agent::membership`).
    Join(Vec<SocketAddr>),
    /// A member learned elsewhere (the cluster record, gossip), alive at `incarnation`.
    AddMember {
        id: NodeName,
        addr: SocketAddr,
        incarnation: u64,
    },
    /// The digest of the node's gossiped state (`Swim::set_state_digest`), sent with every
    /// anti-entropy digest.
    StateDigest(u64),
    /// Tell every member we leave; answered once the farewells are sent. The task then ends.
    Leave(oneshot::Sender<()>),
}

/// Where opened datagrams for the prober go, with their sender's address.
pub(crate) type Inbox = mpsc::Sender<(SocketAddr, Vec<u8>)>;

/// What the prober knows of every member (this node not included), by name.
pub(crate) type LivenessMap = BTreeMap<NodeName, Status>;

/// Datagrams waiting for the prober at most; more are dropped (a flood from a key holder must
/// not grow memory: the protocol tolerates loss).
const INBOX: usize = 1024;
/// Commands waiting at most.
const COMMANDS: usize = 64;
/// Members whose state differs, waiting for the node at most (more are dropped: the next
/// anti-entropy round finds them again).
const STATE_DIFFERS: usize = 16;

/// The node's side of a running prober.
pub(crate) struct SwimHandle {
    /// The prober's clock starts here (`Status::since` counts from it).
    start: Instant,
    commands: mpsc::Sender<Command>,
    inbox: Inbox,
    liveness: watch::Receiver<LivenessMap>,
    /// Members whose gossiped state differs from ours (taken once, by the membership monitor).
    state_differs: Option<mpsc::Receiver<SocketAddr>>,
    task: tokio::task::JoinHandle<()>,
}

/// Who this node is to the prober.
pub(crate) struct Identity {
    pub(crate) me: NodeName,
    /// The advertised gossip address (what members probe).
    pub(crate) addr: SocketAddr,
    /// The node's start in ms since the epoch (chitchat's generation): a restarted node is newer.
    pub(crate) incarnation: u64,
}

/// Starts the prober. `seed`: its random choices (probe order, helpers, gossip targets).
pub(crate) fn spawn(
    identity: Identity,
    params: Params,
    seed: u64,
    outbox: impl Outbox,
) -> SwimHandle {
    let (commands, command_rx) = mpsc::channel(COMMANDS);
    let (inbox, inbox_rx) = mpsc::channel(INBOX);
    let (liveness_tx, liveness) = watch::channel(LivenessMap::new());
    let (differs_tx, state_differs) = mpsc::channel(STATE_DIFFERS);
    let start = Instant::now();
    let swim = Swim::new(
        identity.me,
        identity.addr,
        identity.incarnation,
        params,
        seed,
        Duration::ZERO,
    );
    let task = tokio::spawn(run(
        swim,
        start,
        command_rx,
        inbox_rx,
        Published {
            liveness: liveness_tx,
            state_differs: differs_tx,
        },
        outbox,
    ));
    SwimHandle {
        start,
        commands,
        inbox,
        liveness,
        state_differs: Some(state_differs),
        task,
    }
}

impl SwimHandle {
    /// A datagram for the prober (already opened). Never waits: when the prober is behind, the
    /// datagram is dropped and `false` returned. (The daemon's socket holds an `inbox`.)
    #[cfg(test)]
    pub(crate) fn deliver(&self, from: SocketAddr, datagram: Vec<u8>) -> bool {
        self.inbox.try_send((from, datagram)).is_ok()
    }

    /// A sender for `deliver` that outlives borrows (the socket's receive loop holds one).
    pub(crate) fn inbox(&self) -> Inbox {
        self.inbox.clone()
    }

    /// A sender for `command` that outlives borrows (the membership monitor holds one).
    pub(crate) fn commands(&self) -> mpsc::Sender<Command> {
        self.commands.clone()
    }

    #[cfg(test)]
    pub(crate) async fn command(&self, command: Command) {
        let _ = self.commands.send(command).await;
    }

    /// Where the prober's clock starts: `Status::since` counts from it.
    pub(crate) fn clock_start(&self) -> Instant {
        self.start
    }

    /// Every member's liveness, changing as the prober learns.
    pub(crate) fn liveness(&self) -> watch::Receiver<LivenessMap> {
        self.liveness.clone()
    }

    /// The addresses of members whose anti-entropy digest showed a gossiped state other than
    /// ours (the node exchanges its state with them); once.
    pub(crate) fn take_state_differs(&mut self) -> Option<mpsc::Receiver<SocketAddr>> {
        self.state_differs.take()
    }

    /// Says goodbye to every member (bounded by `within`), then stops the task.
    pub(crate) async fn leave(self, within: Duration) {
        let (done, sent) = oneshot::channel();
        if self.commands.send(Command::Leave(done)).await.is_ok() {
            let _ = tokio::time::timeout(within, sent).await;
        }
        self.task.abort();
    }

    /// Stops at once, without a word (as a crash would).
    pub(crate) fn abort(self) {
        self.task.abort();
    }
}

/// What the task tells the node.
struct Published {
    liveness: watch::Sender<LivenessMap>,
    state_differs: mpsc::Sender<SocketAddr>,
}

async fn run(
    mut swim: Swim,
    start: Instant,
    mut commands: mpsc::Receiver<Command>,
    mut inbox: mpsc::Receiver<(SocketAddr, Vec<u8>)>,
    published: Published,
    mut outbox: impl Outbox,
) {
    loop {
        let wake = swim.next_wakeup();
        // `Duration::MAX` (nothing to do until a datagram or a command) must not overflow.
        let deadline = start
            .checked_add(wake)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let mut leaving = None;
        let out = tokio::select! {
            _ = tokio::time::sleep_until(deadline) => swim.tick(start.elapsed()),
            Some((from, datagram)) = inbox.recv() => match wire::decode(&datagram) {
                Ok(envelope) => swim.receive(from, envelope, start.elapsed()),
                // A key holder's malformed datagram: nothing to do with it.
                Err(_) => Vec::new(),
            },
            command = commands.recv() => match command {
                Some(Command::Join(seeds)) => swim.join(seeds, start.elapsed()),
                Some(Command::AddMember { id, addr, incarnation }) => {
                    swim.add_member(id, addr, incarnation, start.elapsed());
                    Vec::new()
                }
                Some(Command::StateDigest(digest)) => {
                    swim.set_state_digest(digest);
                    Vec::new()
                }
                Some(Command::Leave(done)) => {
                    leaving = Some(done);
                    swim.leave()
                }
                // The node dropped its handle: it stopped.
                None => return,
            },
        };
        for o in out {
            outbox.send(o.to, &wire::encode(&o.envelope));
        }
        // Every change of liveness is an event (a refuted suspicion included).
        if !swim.take_events().is_empty() {
            let now: LivenessMap = swim.members().map(|(id, s)| (id.clone(), s)).collect();
            published.liveness.send_replace(now);
        }
        for member in swim.take_state_differs() {
            let _ = published.state_differs.try_send(member);
        }
        if let Some(done) = leaving {
            let _ = done.send(());
            return;
        }
    }
}

/// Datagrams between in-memory probers, by address (tests: no sockets, virtual time); an
/// address not attached is unreachable.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct Hub(
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<SocketAddr, Inbox>>>,
);

#[cfg(test)]
impl Hub {
    /// Datagrams to `addr` go to `inbox` from now on.
    pub(crate) fn attach(&self, addr: SocketAddr, inbox: Inbox) {
        self.0.lock().unwrap().insert(addr, inbox);
    }

    /// `addr` becomes unreachable (a crash, a cut cable); its inbox, to attach again.
    pub(crate) fn detach(&self, addr: SocketAddr) -> Option<Inbox> {
        self.0.lock().unwrap().remove(&addr)
    }

    /// What a prober at `from` sends through.
    pub(crate) fn outbox(&self, from: SocketAddr) -> HubOutbox {
        HubOutbox {
            hub: self.clone(),
            from,
        }
    }
}

#[cfg(test)]
pub(crate) struct HubOutbox {
    hub: Hub,
    from: SocketAddr,
}

#[cfg(test)]
impl Outbox for HubOutbox {
    fn send(&mut self, to: SocketAddr, datagram: &[u8]) {
        assert!(datagram.len() <= wire::MAX_DATAGRAM);
        if let Some(inbox) = self.hub.0.lock().unwrap().get(&to) {
            let _ = inbox.try_send((self.from, datagram.to_vec()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::swim::Liveness;

    fn addr(i: usize) -> SocketAddr {
        SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16 + 1], 7946))
    }

    fn name(i: usize) -> NodeName {
        NodeName::parse(&format!("node{i}")).unwrap()
    }

    fn node(hub: &Hub, i: usize) -> SwimHandle {
        let handle = spawn(
            Identity {
                me: name(i),
                addr: addr(i),
                incarnation: 1_800_000_000_000 + i as u64,
            },
            Params::lan(),
            i as u64,
            hub.outbox(addr(i)),
        );
        hub.attach(addr(i), handle.inbox());
        handle
    }

    /// Waits (virtual time) until `node` sees every one of `ids` as `want`; how long it took.
    async fn until(
        node: &SwimHandle,
        ids: &[usize],
        want: Liveness,
        limit: Duration,
    ) -> Option<Duration> {
        let start = Instant::now();
        let mut rx = node.liveness();
        loop {
            let done = {
                let map = rx.borrow_and_update();
                ids.iter()
                    .all(|i| map.get(&name(*i)).map(|s| s.liveness) == Some(want))
            };
            if done {
                return Some(start.elapsed());
            }
            if tokio::time::timeout_at(start + limit, rx.changed())
                .await
                .is_err()
            {
                return None;
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn probers_join_see_a_crash_down_and_a_farewell_left() {
        let hub = Hub::default();
        let nodes: Vec<SwimHandle> = (0..5).map(|i| node(&hub, i)).collect();
        for n in &nodes[1..] {
            n.command(Command::Join(vec![addr(0)])).await;
        }
        for (i, n) in nodes.iter().enumerate() {
            let others: Vec<usize> = (0..5).filter(|j| *j != i).collect();
            until(n, &others, Liveness::Alive, Duration::from_secs(5))
                .await
                .unwrap_or_else(|| panic!("node{i} did not see every member alive"));
        }

        // node4 crashes: unreachable and silent.
        let mut nodes = nodes;
        let _ = hub.detach(addr(4));
        nodes.pop().unwrap().abort();
        for (i, n) in nodes.iter().enumerate() {
            let took = until(n, &[4], Liveness::Dead, Duration::from_secs(10))
                .await
                .unwrap_or_else(|| panic!("node{i} did not see node4 DOWN"));
            assert!(took <= Duration::from_secs(5), "node{i}: {took:?}");
        }

        // node3 leaves: LEFT everywhere, not DOWN.
        nodes.pop().unwrap().leave(Duration::from_secs(1)).await;
        let _ = hub.detach(addr(3));
        for (i, n) in nodes.iter().enumerate() {
            until(n, &[3], Liveness::Left, Duration::from_secs(2))
                .await
                .unwrap_or_else(|| panic!("node{i} did not see node3 LEFT"));
            let map = n.liveness().borrow().clone();
            for j in (0..3).filter(|j| *j != i) {
                assert_eq!(
                    map.get(&name(j)).map(|s| s.liveness),
                    Some(Liveness::Alive),
                    "node{i} on node{j}"
                );
            }
        }
    }

    /// What a key holder can put on the prober's queue: garbage, truncated or oversized
    /// datagrams and a flood beyond the queue; none stops it or costs memory beyond the queue.
    #[tokio::test(start_paused = true)]
    async fn hostile_datagrams_are_dropped_and_the_prober_goes_on() {
        let hub = Hub::default();
        let a = node(&hub, 0);
        let b = node(&hub, 1);
        // Each learned of the other elsewhere (the cluster record), not by a join.
        for (n, other) in [(&a, 1), (&b, 0)] {
            n.command(Command::AddMember {
                id: name(other),
                addr: addr(other),
                incarnation: 1_800_000_000_000 + other as u64,
            })
            .await;
        }
        until(&a, &[1], Liveness::Alive, Duration::from_secs(5))
            .await
            .expect("joined");
        let evil = addr(66);
        let mut dropped = 0;
        for i in 0..5_000usize {
            let datagram = match i % 4 {
                0 => vec![],
                1 => vec![wire::VERSION; 3],
                2 => vec![0xff; 70_000],
                _ => {
                    let mut ok = wire::encode(&crate::core::swim::Envelope {
                        from: name(66),
                        message: crate::core::swim::Message::Gossip,
                        updates: vec![],
                    });
                    ok.truncate(ok.len() - 1);
                    ok
                }
            };
            if !a.deliver(evil, datagram) {
                dropped += 1;
            }
        }
        assert!(dropped > 0, "the queue is bounded");
        // Still probing: b stays alive in a's view and a crash of b is still seen.
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(
            a.liveness().borrow().get(&name(1)).map(|s| s.liveness),
            Some(Liveness::Alive)
        );
        let _ = hub.detach(addr(1));
        b.abort();
        until(&a, &[1], Liveness::Dead, Duration::from_secs(10))
            .await
            .expect("a crash still seen");
    }
}
