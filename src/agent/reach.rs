//! The reachability prober: on a jittered interval, this node dials every peer's *advertised*
//! gRPC (the `grpc.health.v1` check), HTTP (`GET /ready`) and gossip (the gossip port's TCP
//! answer, which names the member) endpoints, and its own listen addresses locally, with bounded
//! concurrency and a timeout per probe. The findings go into gossip (`core::reach` encoding) and
//! `/metrics`; every node can then assemble the N×N matrix and its diagnosis.
//!
//! Nothing a probe sends or receives in clear names a node, an address or the cluster: the gRPC
//! and gossip probes are TLS 1.3 with this member's certificate, accepting only the expected node's
//! (cluster CA, node id in the certificate); the HTTP probe is plain (the HTTPS port is not
//! gossiped) and sends a fixed `Host`, and `/ready` answers only `ready`.
//!
//! An idle cluster must not pay TLS per peer per round (N² handshakes an interval were most of its
//! CPU): every round dials each endpoint anew (TCP: one that stopped taking connections, or a
//! firewall dropping it, is found at once), and the TLS checks — the gRPC health call as the
//! expected node, the gossip port's answer — run once a minute and every five minutes per target.
//! Their TLS clients are kept per node, so those handshakes resume the last session (no
//! certificate signed or verified again). No connection is kept open between rounds: each would
//! hold buffers on both ends (+2.4 MiB per node at 30 nodes, measured).

use crate::agent::metrics::Metrics;
use crate::agent::tls::NodeTls;
use crate::core::decide::Identity;
use crate::core::members::MemberView;
use crate::core::reach::{encode, Findings, Outcome, Probe, Service, SELF};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Probes in flight at once (a 100-node cluster is 300 probes a round).
const CONCURRENCY: usize = 16;
/// How long a gossip endpoint's verified answer (a TLS handshake with the node's certificate)
/// stands; in between, a TCP connect shows the port still accepts. A full check every round
/// would be a TLS handshake per peer per round on every node: N² an interval, most of an idle
/// cluster's CPU. Five minutes: the node behind an address rarely changes, and its gossip is
/// sealed with the cluster key anyway (only a member can speak there).
const GOSSIP_REVERIFY: Duration = Duration::from_secs(300);
/// The same for the gRPC health check as the expected node: a service that stopped answering
/// behind a listening socket shows within a minute (and in gossip, as DOWN, within seconds).
const GRPC_RECHECK: Duration = Duration::from_secs(60);

/// The node a probe expects and the address it dials.
type Target = (String, SocketAddr);

/// What one probe leaves for the next round of the same target.
enum Memo {
    None,
    /// When the endpoint last answered as the expected node over TLS.
    VerifiedAt(Instant),
}

/// The TLS clients for probing one node: built once per node and certificate generation (a
/// client configuration costs a key parse), not once per probe; each keeps the sessions its
/// handshakes made, which the next round resumes.
#[derive(Clone)]
struct Clients {
    grpc: Arc<rustls::ClientConfig>,
    discovery: Arc<rustls::ClientConfig>,
}

/// The prober's state between rounds: TLS clients and gossip verifications, forgotten when this
/// node's certificates change and for targets no longer probed.
#[derive(Default)]
pub(crate) struct Prober {
    generation: Option<u64>,
    clients: HashMap<String, Clients>,
    verified: HashMap<Target, Instant>,
}

impl Prober {
    /// One round: every peer's three services and this node's own listen addresses.
    pub(crate) async fn round(
        &mut self,
        identity: &Identity,
        members: &[MemberView],
        metrics: &Metrics,
        tls: &NodeTls,
    ) -> Findings {
        if self.generation != Some(tls.generation()) {
            *self = Prober {
                generation: Some(tls.generation()),
                ..Prober::default()
            };
        }
        let mut targets = Vec::new();
        for m in members.iter().filter(|m| !m.local) {
            let e = &m.entry;
            for (service, text) in [
                (Service::Grpc, &e.advertised_grpc),
                (Service::Http, &e.advertised_http),
                (Service::Gossip, &e.advertised_gossip),
            ] {
                targets.push((e.id.clone(), service, text.parse().ok(), e.id.clone()));
            }
        }
        for (service, listen) in [
            (Service::Grpc, identity.grpc.listen),
            (Service::Http, identity.http.listen),
            (Service::Gossip, identity.gossip.listen),
        ] {
            targets.push((
                SELF.to_string(),
                service,
                Some(local_dial(listen)),
                identity.id.clone(),
            ));
        }
        // Nodes gone from the member list take their clients with them.
        self.clients
            .retain(|id, _| targets.iter().any(|(_, _, _, expect)| expect == id));
        let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
        let mut tasks = tokio::task::JoinSet::new();
        let verified = std::mem::take(&mut self.verified);
        for (target, service, addr, expect) in targets {
            let client = self.clients(tls, &expect);
            let memo = match (service, addr) {
                (Service::Grpc | Service::Gossip, Some(addr)) => verified
                    .get(&(expect.clone(), addr))
                    .map_or(Memo::None, |at| Memo::VerifiedAt(*at)),
                _ => Memo::None,
            };
            let slots = slots.clone();
            tasks.spawn(async move {
                let _slot = slots.acquire_owned().await;
                let (probe, memo) = match (addr, client) {
                    (Some(addr), Ok(client)) => probe(service, addr, &expect, client, memo).await,
                    (_, Err(e)) => {
                        log::debug!("reachability: no TLS client for {expect}: {e}");
                        (Probe::failed(Outcome::Error), Memo::None)
                    }
                    (None, _) => (Probe::failed(Outcome::Error), Memo::None),
                };
                (
                    target,
                    service,
                    probe,
                    addr.map(|addr| (expect, addr)),
                    memo,
                )
            });
        }
        let mut findings = Findings::new();
        while let Some(done) = tasks.join_next().await {
            let Ok((target, service, probe, key, memo)) = done else {
                continue;
            };
            findings.entry(target).or_default().insert(service, probe);
            if let (Some(key), Memo::VerifiedAt(at)) = (key, memo) {
                self.verified.insert(key, at);
            }
        }
        metrics.set_reachability(&findings);
        findings
    }

    /// The TLS clients for probing `expect` (None before this node is a member: it has no peers
    /// then, only its own listeners).
    fn clients(
        &mut self,
        tls: &NodeTls,
        expect: &str,
    ) -> Result<Option<Clients>, crate::agent::pki::PkiError> {
        if let Some(clients) = self.clients.get(expect) {
            return Ok(Some(clients.clone()));
        }
        let (Some(grpc), Some(discovery)) = (
            tls.member_client(Some(expect))?,
            tls.member_discovery_client(Some(expect))?,
        ) else {
            return Ok(None);
        };
        let clients = Clients { grpc, discovery };
        self.clients.insert(expect.to_string(), clients.clone());
        Ok(Some(clients))
    }
}

impl Probe {
    fn failed(outcome: Outcome) -> Probe {
        Probe { outcome, rtt_ms: 0 }
    }
}

/// Where to dial a listen address from this host: an unspecified one answers on loopback.
fn local_dial(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V6(v6) if v6.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), listen.port())
        }
        IpAddr::V4(v4) if v4.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), listen.port())
        }
        _ => listen,
    }
}

/// One probe of `service` at `addr`, expecting node `node_id`; `memo` is what the last probe of
/// the same target left.
async fn probe(
    service: Service,
    addr: SocketAddr,
    node_id: &str,
    clients: Option<Clients>,
    memo: Memo,
) -> (Probe, Memo) {
    let started = Instant::now();
    let result = tokio::time::timeout(PROBE_TIMEOUT, async {
        match (service, clients) {
            (Service::Http, _) => (http_ready(addr).await, Memo::None),
            (Service::Grpc, Some(clients)) => {
                let verified = match memo {
                    Memo::VerifiedAt(at) => Some(at),
                    Memo::None => None,
                };
                let (outcome, at) = grpc_health(addr, clients.grpc, verified).await;
                (outcome, at.map_or(Memo::None, Memo::VerifiedAt))
            }
            (Service::Gossip, Some(clients)) => {
                let verified = match memo {
                    Memo::VerifiedAt(at) => Some(at),
                    Memo::None => None,
                };
                let (outcome, at) = gossip_answer(addr, node_id, clients.discovery, verified).await;
                (outcome, at.map_or(Memo::None, Memo::VerifiedAt))
            }
            // Not a member: no certificate to probe with.
            (Service::Grpc | Service::Gossip, None) => (Outcome::Error, Memo::None),
        }
    })
    .await;
    let (outcome, memo) = result.unwrap_or((Outcome::Timeout, Memo::None));
    let rtt_ms = if outcome == Outcome::Ok {
        started.elapsed().as_millis().min(u32::MAX as u128) as u32
    } else {
        0
    };
    (Probe { outcome, rtt_ms }, memo)
}

fn connect_error(e: &std::io::Error) -> Outcome {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => Outcome::Refused,
        std::io::ErrorKind::TimedOut => Outcome::Timeout,
        _ => Outcome::Error,
    }
}

/// A TCP connect (a refused connection is told apart from a failed call), then, unless it was
/// done within `GRPC_RECHECK` (`verified`), the `grpc.health.v1` check over TLS with `client`
/// (whose sessions the handshake resumes). Returns when it was last checked, unless it failed.
async fn grpc_health(
    addr: SocketAddr,
    client: Arc<rustls::ClientConfig>,
    verified: Option<Instant>,
) -> (Outcome, Option<Instant>) {
    if let Err(e) = tokio::net::TcpStream::connect(addr).await {
        return (connect_error(&e), None);
    }
    if let Some(at) = verified.filter(|at| at.elapsed() < GRPC_RECHECK) {
        return (Outcome::Ok, Some(at));
    }
    let outcome = health_call(addr, client).await;
    (outcome, (outcome == Outcome::Ok).then(Instant::now))
}

async fn health_call(addr: SocketAddr, client: Arc<rustls::ClientConfig>) -> Outcome {
    use tonic_health::pb::health_check_response::ServingStatus;
    // TLS (the gRPC port sniffs it): the address in the request's :authority travels encrypted.
    let Ok(channel) =
        crate::agent::node::client::tls_channel(&format!("http://{addr}"), client, PROBE_TIMEOUT)
            .await
    else {
        return Outcome::Error;
    };
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    match client
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
    {
        Ok(r) if r.get_ref().status == ServingStatus::Serving as i32 => Outcome::Ok,
        _ => Outcome::Error,
    }
}

/// `GET /ready` in plain HTTP: the HTTPS port would do, but it is not gossiped (a peer's is not
/// known), so the request names nothing: a fixed `Host` (the server does not route on it), never
/// the address dialled. The answer is `ready` (or why not), no names either.
async fn http_ready(addr: SocketAddr) -> Outcome {
    let mut stream = match tokio::net::TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => return connect_error(&e),
    };
    let request = b"GET /ready HTTP/1.1\r\nHost: stackring\r\nConnection: close\r\n\r\n";
    if stream.write_all(request).await.is_err() {
        return Outcome::Error;
    }
    let mut head = [0u8; 12];
    match stream.read_exact(&mut head).await {
        Ok(_) if head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200") => {
            Outcome::Ok
        }
        _ => Outcome::Error,
    }
}

/// Ok only when the member answering is `node_id`: its certificate names it (checked in the
/// handshake) and so does its answer. Within `GOSSIP_REVERIFY` of such an answer (`verified`),
/// a TCP connect stands for it. Returns when it was last verified, unless the probe failed.
async fn gossip_answer(
    addr: SocketAddr,
    node_id: &str,
    client: Arc<rustls::ClientConfig>,
    verified: Option<Instant>,
) -> (Outcome, Option<Instant>) {
    use crate::agent::membership::{ask_discovery, DiscoveryError};
    if let Some(at) = verified.filter(|at| at.elapsed() < GOSSIP_REVERIFY) {
        return match tokio::net::TcpStream::connect(addr).await {
            Ok(_) => (Outcome::Ok, Some(at)),
            Err(e) => (connect_error(&e), None),
        };
    }
    match ask_discovery(addr, client).await {
        Ok(d) if d.node == node_id => (Outcome::Ok, Some(Instant::now())),
        Err(DiscoveryError::Connect(e)) => (connect_error(&e), None),
        _ => (Outcome::Error, None),
    }
}

/// The prober's loop: a round every `interval` (±20 %, so nodes do not probe in step), findings
/// handed to `publish` (which says `false` once the node is gone: the loop ends). Reads the
/// interval from `settings` each round (a reload changes it).
pub(crate) async fn run(
    settings: tokio::sync::watch::Receiver<crate::core::config::Settings>,
    identity: crate::agent::StateRx,
    members: tokio::sync::watch::Receiver<Arc<Vec<MemberView>>>,
    metrics: Arc<Metrics>,
    tls: Arc<NodeTls>,
    publish: impl Fn(String) -> bool + Send + 'static,
) {
    let mut prober = Prober::default();
    loop {
        let interval = settings.borrow().reachability_interval;
        let Some(interval) = interval else {
            tokio::time::sleep(Duration::from_secs(10)).await;
            continue;
        };
        let jitter = 0.8 + 0.4 * (crate::agent::now_ms() % 1000) as f64 / 1000.0;
        tokio::time::sleep(interval.mul_f64(jitter)).await;
        let published = identity.borrow().clone();
        let Some(own) = published.identity.clone().filter(|_| published.ready()) else {
            continue;
        };
        let peers = members.borrow().clone();
        if peers.is_empty() {
            continue;
        }
        let findings = prober.round(&own, &peers, &metrics, &tls).await;
        if !publish(encode(&findings)) {
            return;
        }
    }
}
