//! The UDP transport chitchat gossips over, sealing every datagram it sends and opening (or
//! refusing and counting) every one it receives (`core::seal`). chitchat 0.11's `Transport` and
//! message codec are public, so this is a transport, not a fork.

use crate::agent::metrics::Metrics;
use crate::agent::systemd::LogOnce;
use crate::core::mix::SplitMix64;
use crate::core::seal::{self, Format, GossipKey, Keyring, Rejected, ReplayGuard, Sealer};
use crate::core::swim;
use anyhow::Context;
use chitchat::transport::{Socket, Transport};
use chitchat::{ChitchatMessage, Deserializable, Serializable};
use prometheus_client::metrics::counter::Counter;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

/// Largest UDP payload (IPv6 jumbograms aside).
const MAX_DATAGRAM: usize = 65_535;
/// The metric label of a sealed datagram, from a key holder, that is not a chitchat message.
const MALFORMED: &str = "malformed";

/// How long chitchat gossips at the busy pace (exchanges with a few members every 200 ms, started
/// by `Membership`'s monitor) after this node saw or made a change: long enough for a change to
/// reach 100 nodes epidemically, each node that learns it stirring in turn.
pub(crate) const BUSY_WINDOW: std::time::Duration = std::time::Duration::from_secs(3);
/// When nothing changes, one chitchat exchange (to one member) this often, scaled with the
/// cluster's size as memberlist scales its push/pull (`swim::anti_entropy_scale`: × 3 at 100
/// nodes). Liveness is the prober's and a missed change is found by the prober's anti-entropy
/// digest (`permit_exchange`), so this round only carries heartbeats (chitchat forgets a node it
/// hears nothing of for an hour) and serves members without digests. Every exchange carries the
/// digest of every node (~60 bytes each): at 30 s it was a fifth of an idle node's bytes.
pub(crate) const QUIET_ROUND: std::time::Duration = std::time::Duration::from_secs(90);
/// Exchanges granted by `permit_exchange` and not yet started, at most.
const PERMITS: usize = 16;

/// The cluster's gossip keyring as the live transport sees it; changed by key rotation. It also
/// joins the SWIM prober (`agent::swim`) to the gossip port: the socket it sends on, and where
/// the datagrams for it go.
pub(crate) struct GossipSeal {
    keyring: RwLock<Keyring>,
    metrics: Arc<Metrics>,
    /// The gossip socket, once chitchat opened it.
    socket: Mutex<Option<Arc<tokio::net::UdpSocket>>>,
    /// Where opened datagrams whose first byte is `swim::wire::VERSION` go (none: dropped).
    swim_inbox: Mutex<Option<crate::agent::swim::Inbox>>,
    /// chitchat's pace (`stir`, `syn_due`).
    pace: Mutex<Pace>,
    /// Members (by gossip address) whose newest start said it opens the compact format
    /// (`set_compact_peers`): everyone else gets the standard one, which every build opens.
    compact_peers: RwLock<HashSet<SocketAddr>>,
    /// `stackring_gossip_sealed_total` by format, looked up once.
    sealed_standard: Counter,
    sealed_compact: Counter,
}

/// Until when chitchat's rounds all go out, and when the next quiet one goes.
struct Pace {
    busy_until: std::time::Instant,
    next_quiet: Option<std::time::Instant>,
    /// Spreads the quiet rounds: nodes started together would otherwise all
    /// exchange in the same second, every round.
    jitter: SplitMix64,
    /// `QUIET_ROUND` scaled to the cluster's size.
    quiet_round: std::time::Duration,
    /// Members whose state differs from ours: the next `Syn` to each goes out, quiet or not.
    permits: Vec<SocketAddr>,
}

impl GossipSeal {
    pub(crate) fn new(keyring: Keyring, metrics: Arc<Metrics>) -> Arc<GossipSeal> {
        for reason in Rejected::ALL
            .map(Rejected::as_str)
            .into_iter()
            .chain([MALFORMED])
        {
            // Present at 0 from the start, so that a rate can be computed on the first refusal.
            let _ = metrics.gossip_rejected.get_or_create(&labels(reason));
        }
        let sealed = |format: &str| {
            metrics
                .gossip_sealed
                .get_or_create(&vec![("format".into(), format.into())])
                .clone()
        };
        let (sealed_standard, sealed_compact) = (sealed("standard"), sealed("compact"));
        Arc::new(GossipSeal {
            compact_peers: RwLock::default(),
            sealed_standard,
            sealed_compact,
            keyring: RwLock::new(keyring),
            metrics,
            socket: Mutex::new(None),
            swim_inbox: Mutex::new(None),
            pace: Mutex::new(Pace {
                busy_until: std::time::Instant::now() + BUSY_WINDOW,
                next_quiet: None,
                jitter: SplitMix64(u64::from_le_bytes(
                    random_session()[..8].try_into().expect("8 bytes"),
                )),
                quiet_round: QUIET_ROUND,
                permits: Vec::new(),
            }),
        })
    }

    /// Something changed (here, or learned from a member): chitchat's rounds go out at its own
    /// pace for `BUSY_WINDOW`.
    pub(crate) fn stir(&self) {
        let mut pace = self.pace.lock().unwrap_or_else(|p| p.into_inner());
        pace.busy_until = pace.busy_until.max(std::time::Instant::now() + BUSY_WINDOW);
    }

    /// Whether the busy pace holds (`BUSY_WINDOW` since the last `stir`).
    pub(crate) fn busy(&self, now: std::time::Instant) -> bool {
        now < self
            .pace
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .busy_until
    }

    /// The cluster counts `nodes` (chitchat's view): the quiet round scales with it.
    pub(crate) fn set_cluster_size(&self, nodes: usize) {
        self.pace
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .quiet_round = QUIET_ROUND * swim::anti_entropy_scale(nodes);
    }

    /// The members that open the compact format (by gossip address: `membership::compact_peers`).
    pub(crate) fn set_compact_peers(&self, peers: HashSet<SocketAddr>) {
        *self
            .compact_peers
            .write()
            .unwrap_or_else(|p| p.into_inner()) = peers;
    }

    /// Seals `message` for `to` with the keyring's primary key, in the format `to` opens.
    fn seal_for(&self, sealer: &mut Sealer, to: SocketAddr, message: &[u8], out: &mut Vec<u8>) {
        let format = if self
            .compact_peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&to)
        {
            self.sealed_compact.inc();
            Format::Compact
        } else {
            self.sealed_standard.inc();
            Format::Standard
        };
        let keyring = self.keyring.read().unwrap_or_else(|p| p.into_inner());
        sealer.seal_as(
            format,
            keyring.primary(),
            crate::agent::now_ms(),
            message,
            out,
        );
    }

    /// The prober's anti-entropy found `to`'s gossiped state unlike ours: chitchat's next `Syn`
    /// to it goes out even when quiet (one exchange, both ways, mends both).
    pub(crate) fn permit_exchange(&self, to: SocketAddr) {
        let mut pace = self.pace.lock().unwrap_or_else(|p| p.into_inner());
        if pace.permits.len() < PERMITS && !pace.permits.contains(&to) {
            pace.permits.push(to);
            self.metrics.gossip_repairs.inc();
        }
    }

    /// Whether chitchat's next `Syn` (the start of an exchange) to `to` goes out: always while
    /// busy, once after `permit_exchange(to)`, else one per quiet round. Answers (`SynAck`,
    /// `Ack`) always go: the exchange another member started, busy or not, completes.
    fn syn_due(&self, now: std::time::Instant, to: SocketAddr) -> bool {
        let mut pace = self.pace.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = pace.permits.iter().position(|p| *p == to) {
            pace.permits.swap_remove(i);
            return true;
        }
        if now < pace.busy_until {
            return true;
        }
        match pace.next_quiet {
            // The first within a round, at random: nodes started together fall quiet together.
            None => {
                let first = pace.quiet_round.mul_f64(pace.jitter.uniform());
                pace.next_quiet = Some(now + first);
                false
            }
            Some(at) if now < at => false,
            Some(_) => {
                // Between half and one and a half rounds: a round on average.
                let next = pace.quiet_round.mul_f64(0.5 + pace.jitter.uniform());
                pace.next_quiet = Some(now + next);
                true
            }
        }
    }

    /// From now on, the prober's datagrams go to `inbox`.
    pub(crate) fn set_swim_inbox(&self, inbox: crate::agent::swim::Inbox) {
        *self.swim_inbox.lock().unwrap_or_else(|p| p.into_inner()) = Some(inbox);
    }

    /// The prober's way out: sealed datagrams on the gossip socket, once it is open.
    pub(crate) fn swim_outbox(self: &Arc<Self>) -> Option<SealedOutbox> {
        let socket = self
            .socket
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        Some(SealedOutbox {
            socket,
            seal: self.clone(),
            sealer: Sealer::new(random_session()),
            sealed: Vec::new(),
        })
    }

    pub(crate) fn set_keyring(&self, keyring: Keyring) {
        *self.keyring.write().unwrap_or_else(|p| p.into_inner()) = keyring;
    }

    fn count(&self, reason: &str) {
        self.metrics
            .gossip_rejected
            .get_or_create(&labels(reason))
            .inc();
    }
}

fn labels(reason: &str) -> Vec<(String, String)> {
    vec![("reason".to_string(), reason.to_string())]
}

/// A sender session: 128 random bits (see `core::seal`).
pub(crate) fn random_session() -> [u8; 16] {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    let mut session = [0u8; 16];
    OsRng.fill_bytes(&mut session);
    session
}

/// A new cluster gossip key, from the operating system's random source.
pub(crate) fn generate_key() -> GossipKey {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    let mut key = [0u8; crate::core::seal::KEY_LEN];
    OsRng.fill_bytes(&mut key);
    GossipKey::from_bytes(key)
}

/// chitchat's transport: UDP with sealed datagrams.
pub(crate) struct SealedUdp(pub(crate) Arc<GossipSeal>);

#[async_trait::async_trait]
impl Transport for SealedUdp {
    async fn open(&self, listen: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let socket = Arc::new(
            tokio::net::UdpSocket::bind(listen)
                .await
                .with_context(|| format!("cannot bind the gossip port {listen}/UDP"))?,
        );
        *self.0.socket.lock().unwrap_or_else(|p| p.into_inner()) = Some(socket.clone());
        Ok(Box::new(SealedSocket {
            socket,
            seal: self.0.clone(),
            sealer: Sealer::new(random_session()),
            guard: ReplayGuard::default(),
            plain: Vec::new(),
            sealed: Vec::new(),
            received: vec![0; MAX_DATAGRAM].into_boxed_slice(),
            refusals: LogOnce::new(),
        }))
    }
}

struct SealedSocket {
    socket: Arc<tokio::net::UdpSocket>,
    seal: Arc<GossipSeal>,
    sealer: Sealer,
    guard: ReplayGuard,
    /// Reused buffers: a gossip round sends a few datagrams every 200 ms.
    plain: Vec<u8>,
    sealed: Vec<u8>,
    received: Box<[u8]>,
    /// One warning per window: an outsider can send many.
    refusals: LogOnce,
}

#[async_trait::async_trait]
impl Socket for SealedSocket {
    async fn send(&mut self, to: SocketAddr, message: ChitchatMessage) -> anyhow::Result<()> {
        if matches!(message, ChitchatMessage::Syn { .. })
            && !self.seal.syn_due(std::time::Instant::now(), to)
        {
            // Quiet: this round stays home (to chitchat, as if the network lost it).
            return Ok(());
        }
        self.plain.clear();
        message.serialize(&mut self.plain);
        self.seal
            .seal_for(&mut self.sealer, to, &self.plain, &mut self.sealed);
        self.socket
            .send_to(&self.sealed, to)
            .await
            .with_context(|| format!("cannot send a gossip datagram to {to}"))?;
        Ok(())
    }

    /// Cancel-safe: the only await is `recv_from`.
    async fn recv(&mut self) -> anyhow::Result<(SocketAddr, ChitchatMessage)> {
        loop {
            let (len, from) = match self.socket.recv_from(&mut self.received).await {
                Ok(got) => got,
                // An ICMP error for an earlier send, or a momentary shortage: not fatal.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionRefused
                            | std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::OutOfMemory
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(e).context("cannot receive gossip datagrams"),
            };
            let opened = {
                let keyring = self.seal.keyring.read().unwrap_or_else(|p| p.into_inner());
                seal::open(
                    &keyring,
                    &mut self.guard,
                    crate::agent::now_ms(),
                    &self.received[..len],
                )
            };
            let reason = match opened {
                // The prober's (chitchat's messages start otherwise): handed over, never waited
                // for (a full queue drops it, as the network could).
                // Without a prober (a node name it cannot carry) it is a message nobody takes.
                Ok(plain) if plain.first() == Some(&swim::wire::VERSION) => {
                    let inbox = self
                        .seal
                        .swim_inbox
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone();
                    match inbox {
                        Some(inbox) => {
                            let _ = inbox.try_send((from, plain));
                            continue;
                        }
                        None => MALFORMED,
                    }
                }
                Ok(plain) => match ChitchatMessage::deserialize(&mut plain.as_slice()) {
                    Ok(message) => return Ok((from, message)),
                    Err(_) => MALFORMED,
                },
                Err(why) => why.as_str(),
            };
            self.seal.count(reason);
            if let Some(more) = self.refusals.admit(crate::agent::now_ms()) {
                log::warn!(
                    "gossip datagram from {from} refused ({reason}): only members holding the cluster's gossip key can gossip; counted in stackring_gossip_rejected_total{}",
                    LogOnce::suppressed(more)
                );
            }
        }
    }
}

/// The prober's datagrams, sealed with the keyring's primary key under a session of their own,
/// sent on the gossip socket without waiting (a full buffer drops one, as the network could).
pub(crate) struct SealedOutbox {
    socket: Arc<tokio::net::UdpSocket>,
    seal: Arc<GossipSeal>,
    sealer: Sealer,
    sealed: Vec<u8>,
}

impl crate::agent::swim::Outbox for SealedOutbox {
    fn send(&mut self, to: SocketAddr, datagram: &[u8]) {
        self.seal
            .seal_for(&mut self.sealer, to, datagram, &mut self.sealed);
        let _ = self.socket.try_send_to(&self.sealed, to);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::swim::Outbox;
    use std::time::Duration;

    fn key(byte: u8) -> GossipKey {
        GossipKey::from_bytes([byte; seal::KEY_LEN])
    }

    async fn open(byte: u8) -> (Arc<GossipSeal>, Box<dyn Socket>, SocketAddr) {
        let seal = GossipSeal::new(Keyring::new(key(byte)), Arc::new(Metrics::new()));
        let socket = SealedUdp(seal.clone())
            .open("127.0.0.1:0".parse().unwrap())
            .await
            .expect("a loopback socket");
        let addr = seal
            .socket
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .local_addr()
            .unwrap();
        (seal, socket, addr)
    }

    fn sealed(byte: u8, message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Sealer::new(random_session()).seal(&key(byte), crate::agent::now_ms(), message, &mut out);
        out
    }

    /// chitchat's rounds all go out while busy (a node that just started is), then one exchange
    /// a quiet round; a change makes it busy again; a member whose state differs gets one
    /// exchange at once, quiet or not.
    #[test]
    fn chitchat_gossips_at_its_pace_while_busy_and_once_a_quiet_round_after() {
        let seal = GossipSeal::new(Keyring::new(key(1)), Arc::new(Metrics::new()));
        let peer: SocketAddr = "[2001:db8::2]:7946".parse().unwrap();
        let other: SocketAddr = "[2001:db8::3]:7946".parse().unwrap();
        let due = |at| seal.syn_due(at, peer);
        let start = std::time::Instant::now();
        assert!((0..15).all(|i| due(start + Duration::from_millis(200 * i))));
        let quiet = start + BUSY_WINDOW + Duration::from_secs(1);
        // The first quiet round within a round, then each between half a round and one and a
        // half later: one a round on average.
        let next = |from: std::time::Instant| {
            (0..=300u32)
                .map(|i| from + QUIET_ROUND * i / 200)
                .find(|at| due(*at))
                .expect("a quiet round within 1.5 rounds")
        };
        let first = next(quiet);
        assert!(first - quiet <= QUIET_ROUND, "{:?}", first - quiet);
        assert!(!due(first + Duration::from_millis(1)), "one a round");
        let (mut at, mut gaps) = (first, Vec::new());
        for _ in 0..200 {
            let round = next(at);
            gaps.push(round - at);
            at = round;
        }
        assert!(gaps
            .iter()
            .all(|g| *g >= QUIET_ROUND / 2 && *g <= QUIET_ROUND * 3 / 2));
        let mean = gaps.iter().sum::<Duration>() / gaps.len() as u32;
        assert!(
            mean > QUIET_ROUND * 9 / 10 && mean < QUIET_ROUND * 11 / 10,
            "{mean:?}"
        );
        assert!(gaps.iter().any(|g| *g < QUIET_ROUND * 3 / 4), "spread");
        // The prober's digest found a difference: one exchange to that member, not to others.
        let later = at + Duration::from_millis(1);
        seal.permit_exchange(peer);
        seal.permit_exchange(peer);
        assert!(
            !seal.syn_due(later, other),
            "only to the member that differs"
        );
        assert!(due(later), "at once, although quiet");
        assert!(!due(later), "once");
        // Permits are bounded: a key holder's flood of digests grants no more.
        for i in 0..100u16 {
            seal.permit_exchange(SocketAddr::from(([192, 0, 2, 1], i)));
        }
        let granted = (0..100u16)
            .filter(|i| seal.syn_due(later, SocketAddr::from(([192, 0, 2, 1], *i))))
            .count();
        assert_eq!(granted, PERMITS);
        seal.stir();
        let now = std::time::Instant::now();
        assert!(seal.busy(now));
        assert!((0..15).all(|i| due(now + Duration::from_millis(200 * i))));
        assert!(!seal.busy(now + BUSY_WINDOW));

        // At 100 nodes the quiet round is three times as long (memberlist's push/pull scaling).
        let seal = GossipSeal::new(Keyring::new(key(1)), Arc::new(Metrics::new()));
        seal.set_cluster_size(100);
        let due = |at| seal.syn_due(at, peer);
        let quiet = std::time::Instant::now() + BUSY_WINDOW + Duration::from_secs(1);
        let first = (0..=300u32)
            .map(|i| quiet + 3 * QUIET_ROUND * i / 300)
            .find(|at| due(*at))
            .expect("the first quiet round within a round");
        assert!(!due(first + 3 * QUIET_ROUND / 2 - Duration::from_millis(1)));
        assert!(due(first + 3 * QUIET_ROUND * 3 / 2));
    }

    /// One gossip port, two protocols: the prober's sealed datagrams reach its inbox and never
    /// chitchat; chitchat's still reach chitchat; the prober's outbox seals what it sends; an
    /// outsider's datagram in the prober's format, unsealed or under another key, reaches
    /// neither and is counted.
    #[tokio::test]
    async fn the_gossip_port_hands_the_probers_datagrams_over_and_refuses_outsiders() {
        let (seal, mut socket, addr) = open(7).await;
        let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let probe = swim::wire::encode(&swim::Envelope {
            from: swim::NodeName::parse("node1").unwrap(),
            message: swim::Message::Gossip,
            updates: vec![],
        });
        let mut chitchat = Vec::new();
        ChitchatMessage::BadCluster.serialize(&mut chitchat);
        assert_ne!(chitchat.first(), Some(&swim::wire::VERSION));
        let refused = |reason: &str| {
            seal.metrics
                .gossip_rejected
                .get_or_create(&labels(reason))
                .get()
        };

        // No prober yet (as for a node id it cannot carry): a member's probe is nobody's
        // message, counted, and never chitchat's.
        peer.send_to(&sealed(7, &probe), addr).await.unwrap();
        peer.send_to(&sealed(7, &chitchat), addr).await.unwrap();
        let (_, message) = tokio::time::timeout(Duration::from_secs(5), socket.recv())
            .await
            .expect("chitchat's message")
            .unwrap();
        assert!(matches!(message, ChitchatMessage::BadCluster));
        assert_eq!(refused(MALFORMED), 1);

        let (inbox, mut probes) = tokio::sync::mpsc::channel(8);
        seal.set_swim_inbox(inbox);

        // Outsiders first: unsealed, and sealed under another key.
        peer.send_to(&probe, addr).await.unwrap();
        peer.send_to(&sealed(8, &probe), addr).await.unwrap();
        // A member's probe, then a member's chitchat message.
        peer.send_to(&sealed(7, &probe), addr).await.unwrap();
        peer.send_to(&sealed(7, &chitchat), addr).await.unwrap();

        let (from, message) = tokio::time::timeout(Duration::from_secs(5), socket.recv())
            .await
            .expect("chitchat's message")
            .unwrap();
        assert_eq!(from, peer.local_addr().unwrap());
        assert!(matches!(message, ChitchatMessage::BadCluster));
        let (from, got) = probes.try_recv().expect("the probe, handed over");
        assert_eq!((from, got), (peer.local_addr().unwrap(), probe.clone()));
        assert!(
            probes.try_recv().is_err(),
            "nothing else: outsiders refused"
        );
        assert_eq!(refused(Rejected::NotSealed.as_str()), 1);
        assert_eq!(refused(Rejected::UnknownKey.as_str()), 1);

        // The outbox: what it sends is sealed (the other end opens it and hands it over).
        let (seal2, mut socket2, addr2) = open(7).await;
        let (inbox2, mut probes2) = tokio::sync::mpsc::channel(8);
        seal2.set_swim_inbox(inbox2);
        let mut outbox = seal.swim_outbox().expect("the socket is open");
        outbox.send(addr2, &probe);
        // Receiving runs in chitchat's loop: drive it until the probe was handed over.
        let handed = tokio::time::timeout(Duration::from_secs(5), async {
            tokio::select! {
                got = probes2.recv() => got,
                _ = socket2.recv() => None,
            }
        })
        .await
        .expect("within 5 s");
        assert_eq!(handed, Some((addr, probe)));
    }
}
