//! The UDP transport chitchat gossips over, sealing every datagram it sends and opening (or
//! refusing and counting) every one it receives (`core::seal`). chitchat 0.11's `Transport` and
//! message codec are public, so this is a transport, not a fork.

use crate::agent::metrics::Metrics;
use crate::agent::systemd::LogOnce;
use crate::core::seal::{self, GossipKey, Keyring, Rejected, ReplayGuard, Sealer};
use anyhow::Context;
use chitchat::transport::{Socket, Transport};
use chitchat::{ChitchatMessage, Deserializable, Serializable};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

/// Largest UDP payload (IPv6 jumbograms aside).
const MAX_DATAGRAM: usize = 65_535;
/// The metric label of a sealed datagram, from a key holder, that is not a chitchat message.
const MALFORMED: &str = "malformed";

/// The cluster's gossip keyring as the live transport sees it; changed by key rotation.
pub(crate) struct GossipSeal {
    keyring: RwLock<Keyring>,
    metrics: Arc<Metrics>,
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
        Arc::new(GossipSeal {
            keyring: RwLock::new(keyring),
            metrics,
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
        let socket = tokio::net::UdpSocket::bind(listen)
            .await
            .with_context(|| format!("cannot bind the gossip port {listen}/UDP"))?;
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
    socket: tokio::net::UdpSocket,
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
        self.plain.clear();
        message.serialize(&mut self.plain);
        {
            let keyring = self.seal.keyring.read().unwrap_or_else(|p| p.into_inner());
            self.sealer.seal(
                keyring.primary(),
                crate::agent::now_ms(),
                &self.plain,
                &mut self.sealed,
            );
        }
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
