//! The prober under virtual time: nodes on a simulated network with latency, random loss,
//! partitions and kills. Every datagram goes through `wire` (encoded, size-checked, decoded), so
//! the figures count real bytes. Deterministic from a seed: a failure replays.

use super::*;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};

/// IPv6 + UDP headers and the seal (`core::seal::OVERHEAD`) around each datagram.
const PACKET_OVERHEAD: u64 = 48 + crate::core::seal::OVERHEAD as u64;

pub(super) struct Net {
    pub(super) now: Duration,
    nodes: Vec<Option<Swim>>,
    addrs: Vec<SocketAddr>,
    by_addr: HashMap<SocketAddr, usize>,
    queue: BinaryHeap<Reverse<(Duration, u64, usize, usize)>>,
    in_flight: HashMap<u64, Envelope>,
    next_id: u64,
    rng: Rng,
    /// Probability that a datagram is lost, on each send.
    pub(super) loss: f64,
    latency: Duration,
    /// Nodes that cannot reach each other: (a, b) both ways.
    cut: HashSet<(usize, usize)>,
    pub(super) bytes_sent: Vec<u64>,
    /// Every event, with when and who saw it.
    pub(super) events: Vec<(Duration, usize, Event)>,
    params: Params,
    /// Every delivered update about this node.
    pub(super) trace: Option<(NodeName, Vec<Delivered>)>,
}

/// An update delivered: when, from which node, to which node.
pub(super) type Delivered = (Duration, usize, usize, Update);

pub(super) fn name(i: usize) -> NodeName {
    NodeName::parse(&format!("node{i}")).unwrap()
}

impl Net {
    /// Seconds from `start` to the first `event` any node reported (−1: none).
    pub(super) fn first_after(&self, start: Duration, event: &super::Event) -> f64 {
        self.events
            .iter()
            .find(|(at, _, e)| *at >= start && e == event)
            .map_or(-1.0, |x| (x.0 - start).as_secs_f64())
    }

    pub(super) fn new(params: Params, seed: u64) -> Net {
        Net {
            now: Duration::ZERO,
            nodes: Vec::new(),
            addrs: Vec::new(),
            by_addr: HashMap::new(),
            queue: BinaryHeap::new(),
            in_flight: HashMap::new(),
            next_id: 0,
            rng: Rng(seed),
            loss: 0.0,
            latency: Duration::from_micros(300),
            cut: HashSet::new(),
            bytes_sent: Vec::new(),
            events: Vec::new(),
            params,
            trace: None,
        }
    }

    /// A node's wall clock (ms since the epoch) now: NTP keeps real clocks a few ms apart, here
    /// each node's is up to 50 ms off (the probe ring's slots, `Swim::next_to_probe`, lean on it).
    fn wall_clock_ms(&mut self) -> u64 {
        1_800_000_000_000 + self.now.as_millis() as u64 + self.rng.next() % 50
    }

    /// A new node; it joins through node 0 unless it is node 0.
    pub(super) fn add_node(&mut self) -> usize {
        let i = self.nodes.len();
        let addr: SocketAddr = format!("[2001:db8::{:x}]:7946", i + 1).parse().unwrap();
        let incarnation = self.wall_clock_ms();
        let mut swim = Swim::new(
            name(i),
            addr,
            incarnation,
            self.params.clone(),
            self.rng.next(),
            self.now,
        );
        let out = if i == 0 {
            Vec::new()
        } else {
            swim.join(vec![self.addrs[0]], self.now)
        };
        self.nodes.push(Some(swim));
        self.addrs.push(addr);
        self.by_addr.insert(addr, i);
        self.bytes_sent.push(0);
        self.send(i, out);
        i
    }

    /// A node that stops at once, without a word (kill -9).
    pub(super) fn kill(&mut self, i: usize) {
        self.nodes[i] = None;
    }

    /// Starts node `i` again, as a new process (a new incarnation), joining through node `seed`.
    pub(super) fn restart(&mut self, i: usize, seed: usize) {
        let incarnation = self.wall_clock_ms();
        let mut swim = Swim::new(
            name(i),
            self.addrs[i],
            incarnation,
            self.params.clone(),
            self.rng.next(),
            self.now,
        );
        let out = swim.join(vec![self.addrs[seed]], self.now);
        self.nodes[i] = Some(swim);
        self.send(i, out);
    }

    pub(super) fn leave(&mut self, i: usize) {
        let out = self.nodes[i].as_mut().unwrap().leave();
        self.send(i, out);
    }

    /// No datagram between the two groups until `heal`.
    pub(super) fn partition(&mut self, a: &[usize], b: &[usize]) {
        for &x in a {
            for &y in b {
                self.cut.insert((x, y));
                self.cut.insert((y, x));
            }
        }
    }

    pub(super) fn heal(&mut self) {
        self.cut.clear();
    }

    pub(super) fn swim(&self, i: usize) -> &Swim {
        self.nodes[i].as_ref().expect("a running node")
    }

    /// Inject a datagram as if `from` had sent it (a forged or stale message, from a member).
    pub(super) fn inject(&mut self, from: usize, to: usize, envelope: Envelope) {
        let to = self.addrs[to];
        self.send(from, vec![Outgoing { to, envelope }]);
    }

    fn send(&mut self, from: usize, out: Vec<Outgoing>) {
        for o in out {
            let bytes = wire::encode(&o.envelope);
            assert!(
                bytes.len() <= wire::MAX_DATAGRAM,
                "{} bytes from node{from}: {:?}",
                bytes.len(),
                o.envelope.message
            );
            self.bytes_sent[from] += bytes.len() as u64 + PACKET_OVERHEAD;
            let Some(&to) = self.by_addr.get(&o.to) else {
                continue;
            };
            if self.cut.contains(&(from, to)) || self.random() < self.loss {
                continue;
            }
            let decoded = wire::decode(&bytes).expect("what we encode decodes");
            assert_eq!(decoded, o.envelope);
            self.next_id += 1;
            self.in_flight.insert(self.next_id, decoded);
            // A little jitter: datagrams between two nodes may overtake each other.
            let jitter = Duration::from_micros(self.rng.next() % 200);
            self.queue.push(Reverse((
                self.now + self.latency + jitter,
                self.next_id,
                from,
                to,
            )));
        }
    }

    fn random(&mut self) -> f64 {
        self.rng.uniform()
    }

    /// Runs the network until `until`.
    pub(super) fn run_until(&mut self, until: Duration) {
        loop {
            let next_delivery = self.queue.peek().map(|Reverse((at, ..))| *at);
            let next_tick = self
                .nodes
                .iter()
                .enumerate()
                .filter_map(|(i, n)| n.as_ref().map(|n| (n.next_wakeup(), i)))
                .min();
            let tick_first = match (next_delivery, next_tick) {
                (None, None) => break,
                (Some(d), Some((t, _))) => t <= d,
                (None, Some(_)) => true,
                (Some(_), None) => false,
            };
            if tick_first {
                let (at, i) = next_tick.unwrap();
                if at > until {
                    break;
                }
                self.now = self.now.max(at);
                let out = self.nodes[i].as_mut().unwrap().tick(self.now);
                self.collect(i);
                self.send(i, out);
            } else {
                let Reverse((at, id, from, to)) = self.queue.pop().unwrap();
                if at > until {
                    self.queue.push(Reverse((at, id, from, to)));
                    break;
                }
                self.now = self.now.max(at);
                let envelope = self.in_flight.remove(&id).unwrap();
                if let Some((who, log)) = &mut self.trace {
                    for u in envelope.updates.iter().filter(|u| u.id() == who) {
                        log.push((at, from, to, u.clone()));
                    }
                }
                let from_addr = self.addrs[from];
                if let Some(node) = self.nodes[to].as_mut() {
                    let out = node.receive(from_addr, envelope, self.now);
                    self.collect(to);
                    self.send(to, out);
                }
            }
        }
        self.now = until;
    }

    pub(super) fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    fn collect(&mut self, i: usize) {
        let now = self.now;
        for e in self.nodes[i].as_mut().unwrap().take_events() {
            self.events.push((now, i, e));
        }
    }

    pub(super) fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].is_some())
    }

    /// Whether every running node sees every other running node up, and `gone` nodes not up.
    pub(super) fn converged(&self, gone: &[usize]) -> bool {
        self.running().all(|i| {
            self.running().filter(|&j| j != i).all(|j| {
                matches!(
                    self.swim(i).liveness(&name(j)),
                    Some(Liveness::Alive | Liveness::Suspect)
                )
            }) && gone.iter().all(|&g| {
                !matches!(
                    self.swim(i).liveness(&name(g)),
                    Some(Liveness::Alive | Liveness::Suspect)
                )
            })
        })
    }

    /// (observer, member, what the observer holds) for every running member some running node
    /// does not hold up: what `converged(&[])` waits for.
    pub(super) fn not_converged(&self) -> Vec<(usize, usize, Option<Liveness>)> {
        let mut out = Vec::new();
        for i in self.running() {
            for j in self.running().filter(|&j| j != i) {
                let held = self.swim(i).liveness(&name(j));
                if !matches!(held, Some(Liveness::Alive | Liveness::Suspect)) {
                    out.push((i, j, held));
                }
            }
        }
        out
    }

    /// Runs in steps of 10 ms until `converged(gone)` or `limit`; the time it took.
    pub(super) fn time_to_converge(&mut self, gone: &[usize], limit: Duration) -> Option<Duration> {
        let start = self.now;
        while self.now - start < limit {
            if self.converged(gone) {
                return Some(self.now - start);
            }
            self.run_for(Duration::from_millis(10));
        }
        None
    }

    /// Down or Left events about a node that was running at the time (false DOWNs), since `from`.
    pub(super) fn false_downs(
        &self,
        from: Duration,
        alive: &[usize],
    ) -> Vec<(Duration, usize, Event)> {
        self.events
            .iter()
            .filter(|(at, _, e)| {
                *at >= from && matches!(e, Event::Down(id) if alive.iter().any(|&a| name(a) == *id))
            })
            .cloned()
            .collect()
    }
}
