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

use crate::agent::metrics::Metrics;
use crate::agent::tls::NodeTls;
use crate::core::decide::Identity;
use crate::core::members::MemberView;
use crate::core::reach::{encode, Findings, Outcome, Probe, Service, SELF};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Probes in flight at once (a 100-node cluster is 300 probes a round).
const CONCURRENCY: usize = 16;

/// One round: every peer's three services and this node's own listen addresses.
pub(crate) async fn probe_round(
    identity: &Identity,
    members: &[MemberView],
    metrics: &Metrics,
    tls: &NodeTls,
) -> Findings {
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    let mut spawn = |target: String, service: Service, addr: Option<SocketAddr>, expect: String| {
        let slots = slots.clone();
        let client = client_for(tls, service, &expect);
        tasks.spawn(async move {
            let _slot = slots.acquire_owned().await;
            let probe = match (addr, client) {
                (Some(addr), Ok(client)) => probe(service, addr, &expect, client).await,
                (_, Err(e)) => {
                    log::debug!("reachability: no TLS client for {expect}: {e}");
                    Probe {
                        outcome: Outcome::Error,
                        rtt_ms: 0,
                    }
                }
                (None, _) => Probe {
                    outcome: Outcome::Error,
                    rtt_ms: 0,
                },
            };
            (target, service, probe)
        });
    };
    for m in members.iter().filter(|m| !m.local) {
        let e = &m.entry;
        for (service, text) in [
            (Service::Grpc, &e.advertised_grpc),
            (Service::Http, &e.advertised_http),
            (Service::Gossip, &e.advertised_gossip),
        ] {
            spawn(e.id.clone(), service, text.parse().ok(), e.id.clone());
        }
    }
    for (service, listen) in [
        (Service::Grpc, identity.grpc.listen),
        (Service::Http, identity.http.listen),
        (Service::Gossip, identity.gossip.listen),
    ] {
        spawn(
            SELF.to_string(),
            service,
            Some(local_dial(listen)),
            identity.id.clone(),
        );
    }
    let mut findings = Findings::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok((target, service, probe)) = done {
            findings.entry(target).or_default().insert(service, probe);
        }
    }
    metrics.set_reachability(&findings);
    findings
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

/// The TLS client a probe of `service` on node `expect` uses: this member's certificate, accepting
/// only `expect`'s (signed by the cluster CA, naming that node). Before this node is a member
/// (it has no peers then, only its own listeners) or for plain HTTP, none.
fn client_for(
    tls: &NodeTls,
    service: Service,
    expect: &str,
) -> Result<Option<Arc<rustls::ClientConfig>>, crate::agent::pki::PkiError> {
    match service {
        Service::Grpc => tls.member_client(Some(expect)),
        Service::Gossip => tls.member_discovery_client(Some(expect)),
        Service::Http => Ok(None),
    }
}

async fn probe(
    service: Service,
    addr: SocketAddr,
    node_id: &str,
    client: Option<Arc<rustls::ClientConfig>>,
) -> Probe {
    let started = Instant::now();
    let result = tokio::time::timeout(PROBE_TIMEOUT, async {
        match (service, client) {
            (Service::Http, _) => http_ready(addr).await,
            (Service::Grpc, Some(client)) => grpc_health(addr, client).await,
            (Service::Gossip, Some(client)) => gossip_answer(addr, node_id, client).await,
            // Not a member: no certificate to probe with.
            (Service::Grpc | Service::Gossip, None) => Outcome::Error,
        }
    })
    .await;
    let outcome = match result {
        Err(_) => Outcome::Timeout,
        Ok(outcome) => outcome,
    };
    Probe {
        outcome,
        rtt_ms: if outcome == Outcome::Ok {
            started.elapsed().as_millis().min(u32::MAX as u128) as u32
        } else {
            0
        },
    }
}

fn connect_error(e: &std::io::Error) -> Outcome {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => Outcome::Refused,
        std::io::ErrorKind::TimedOut => Outcome::Timeout,
        _ => Outcome::Error,
    }
}

async fn grpc_health(addr: SocketAddr, client: Arc<rustls::ClientConfig>) -> Outcome {
    use tonic_health::pb::health_check_response::ServingStatus;
    // A plain connect first: a refused connection is told apart from a failed call.
    if let Err(e) = tokio::net::TcpStream::connect(addr).await {
        return connect_error(&e);
    }
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
/// handshake) and so does its answer.
async fn gossip_answer(
    addr: SocketAddr,
    node_id: &str,
    client: Arc<rustls::ClientConfig>,
) -> Outcome {
    use crate::agent::membership::{ask_discovery, DiscoveryError};
    match ask_discovery(addr, client).await {
        Ok(d) if d.node == node_id => Outcome::Ok,
        Err(DiscoveryError::Connect(e)) => connect_error(&e),
        _ => Outcome::Error,
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
        let findings = probe_round(&own, &peers, &metrics, &tls).await;
        if !publish(encode(&findings)) {
            return;
        }
    }
}
