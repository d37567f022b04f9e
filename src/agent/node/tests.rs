//! Cluster nodes on chitchat's in-memory transport under virtual time: no root, no sockets, and
//! seconds of gossip in milliseconds. Each node is the real actor with its real record on disk (a
//! temporary directory); only the network is in memory.

use super::*;
use crate::agent::membership::MemoryNetwork;
use crate::core::cluster::{ExternalAddrsReply, ExternalOp};
use crate::core::config::parse_str;
use crate::core::decide::{decide, Context};
use crate::core::members::{Health, NodeState};
use crate::core::refusal::RefusalKind;
use crate::core::snapshot::{AddrFlags, Address, HostEvent, Link, OperState, Scope};
use crate::core::state::Published;
use std::time::Duration;

const CLUSTER: &str = "c1";

/// One simulated host: its snapshot, its published identity and its node.
struct Host {
    id: String,
    ip: IpAddr,
    state_dir: PathBuf,
    identity: Identity,
    /// Kept so the node's inputs stay open.
    _published: watch::Sender<Arc<Published>>,
    _host: watch::Sender<Arc<HostSnapshot>>,
    node: Arc<ClusterNode>,
}

fn snapshot(ip: IpAddr) -> HostSnapshot {
    let mut s = HostSnapshot::default();
    s.apply(HostEvent::LinkChanged(Link {
        index: 2,
        name: "eth0".into(),
        kind: Some("veth".into()),
        admin_up: true,
        oper: OperState::Up,
        loopback: false,
    }));
    s.apply(HostEvent::AddressChanged(Address {
        link_index: 2,
        ip,
        prefix_len: 64,
        scope: Scope::Global,
        flags: AddrFlags(AddrFlags::PERMANENT),
    }));
    s
}

fn state_dir(tag: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "stackring-node-test-{}-{tag}-{n}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts node `id` at `ip` (gossip bound there: the in-memory transport routes by address).
fn start(net: &MemoryNetwork, id: &str, ip: &str, dir: Option<PathBuf>) -> Host {
    let ip: IpAddr = ip.parse().unwrap();
    let dir = dir.unwrap_or_else(|| state_dir(id));
    let yaml = format!(
        "node:\n  state_dir: {}\nmemberlist:\n  bind_addr: ['{ip}']\n",
        dir.display()
    );
    let settings = parse_str(&yaml, id).unwrap();
    let host = snapshot(ip);
    let identity = decide(&host, &settings, Context::default()).unwrap();
    let (host_tx, host_rx) = watch::channel(Arc::new(host));
    let (published_tx, published_rx) = watch::channel(Arc::new(Published {
        generation: 1,
        identity: Some(identity.clone()),
        not_ready: None,
    }));
    let node = ClusterNode::start(
        settings,
        host_rx,
        published_rx,
        id.to_string(),
        Arc::new(crate::agent::metrics::Metrics::new()),
        GossipNetwork::InMemory(net.clone()),
    )
    .unwrap();
    Host {
        id: id.to_string(),
        ip,
        state_dir: dir,
        identity,
        _published: published_tx,
        _host: host_tx,
        node,
    }
}

fn record(host: &Host, seeds: &[&Host]) -> ClusterRecord {
    ClusterRecord {
        name: CLUSTER.into(),
        family: host.identity.family,
        use_internal_ipv6: true,
        username: "admin".into(),
        // Not checked in these tests (no join over gRPC): any PHC-shaped text.
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
        node_id: host.id.clone(),
        node_addr: None,
        external_addrs: None,
        seeds: seeds
            .iter()
            .map(|s| s.identity.gossip.advertise.to_string())
            .collect(),
        applied: Default::default(),
        registered_unix: 1_700_000_000,
        admin_version: 0,
        gossip_keys: Some(crate::core::seal::Keyring::new(
            crate::core::seal::GossipKey::from_bytes([7; 32]),
        )),
    }
}

async fn adopt(host: &Host, seeds: &[&Host]) {
    host.node
        .adopt(record(host, seeds), host.identity.clone())
        .await
        .unwrap();
}

/// Waits (virtual time) until `done` holds for `host`'s member view; returns the time it took.
async fn until(host: &Host, limit: Duration, done: impl Fn(&[MemberView]) -> bool) -> Duration {
    let started = tokio::time::Instant::now();
    loop {
        let members = host.node.members().map(|(_, m)| m).unwrap_or_default();
        if done(&members) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{}: not within {limit:?}; members: {:#?}",
            host.id,
            members
                .iter()
                .map(|m| (&m.entry.id, &m.summary))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn status_of(members: &[MemberView], id: &str) -> Option<(Health, NodeState)> {
    members
        .iter()
        .find(|m| m.entry.id == id)
        .map(|m| (m.status, m.entry.state))
}

async fn three_nodes(net: &MemoryNetwork) -> (Host, Host, Host) {
    let a = start(net, "a", "2001:db8::a", None);
    let b = start(net, "b", "2001:db8::b", None);
    let c = start(net, "c", "2001:db8::c", None);
    adopt(&a, &[]).await;
    adopt(&b, &[&a]).await;
    adopt(&c, &[&a]).await;
    for h in [&a, &b, &c] {
        until(h, Duration::from_secs(5), |m| {
            m.len() == 3
                && m.iter()
                    .all(|m| m.status == Health::Ok && m.entry.state == NodeState::Active)
        })
        .await;
    }
    (a, b, c)
}

/// Three members converge in a few rounds; a node that stops without a word (its task gone, as
/// after `kill -9`) is DOWN on the others within seconds and stays listed as ACTIVE-but-DOWN;
/// `forget` then removes it from every view.
#[tokio::test(start_paused = true)]
async fn members_converge_a_killed_node_goes_down_and_forget_removes_it() {
    let net = MemoryNetwork::default();
    let (a, b, c) = three_nodes(&net).await;
    drop(c);
    for h in [&a, &b] {
        let took = until(h, Duration::from_secs(10), |m| {
            status_of(m, "c") == Some((Health::Down, NodeState::Active))
        })
        .await;
        assert!(
            took <= Duration::from_secs(6),
            "{}: DOWN after {took:?}",
            h.id
        );
    }
    let forgotten = a.node.forget("c").await.unwrap();
    assert!(forgotten.forgotten);
    for h in [&a, &b] {
        until(h, Duration::from_secs(5), |m| status_of(m, "c").is_none()).await;
    }
    // A live node cannot be forgotten.
    let refused = a.node.forget("b").await.unwrap_err();
    assert_eq!(refused.sub_code(), "node_is_up");
}

/// A graceful stop says LEAVING first: peers show LEFT, not DOWN.
#[tokio::test(start_paused = true)]
async fn a_node_that_leaves_is_left_not_down() {
    let net = MemoryNetwork::default();
    let (a, b, c) = three_nodes(&net).await;
    c.node.leave().await;
    drop(c);
    for h in [&a, &b] {
        until(h, Duration::from_secs(10), |m| {
            status_of(m, "c") == Some((Health::Down, NodeState::Left))
        })
        .await;
    }
}

/// Back-to-back changes build on each other, and concurrent ones are each applied exactly once:
/// the node's actor is their one sequencer, and every answer carries a new version.
#[tokio::test(start_paused = true)]
async fn admin_changes_apply_in_order_exactly_once() {
    let net = MemoryNetwork::default();
    let (a, b, _c) = three_nodes(&net).await;
    let ip = |t: &str| -> IpAddr { t.parse().unwrap() };
    let set = b
        .node
        .change_external("b", ExternalOp::Set, vec![ip("198.51.100.31")])
        .await
        .unwrap();
    let add = b
        .node
        .change_external("b", ExternalOp::Add, vec![ip("198.51.100.32")])
        .await
        .unwrap();
    assert_eq!(set.version, Some(1));
    assert_eq!(
        add,
        ExternalAddrsReply {
            node: "b".into(),
            external_addrs: vec![ip("198.51.100.31"), ip("198.51.100.32")],
            version: Some(2),
            pending: false,
            warnings: vec![],
        }
    );
    // A remove right after the set sees it.
    b.node
        .change_external("b", ExternalOp::Remove, vec![ip("198.51.100.31")])
        .await
        .unwrap();
    // 60 concurrent adds: each applied once, versions 4..=63 each given out once.
    let mut tasks = vec![];
    for i in 0..60u8 {
        let node = b.node.clone();
        tasks.push(tokio::spawn(async move {
            let addr: IpAddr = format!("203.0.113.{}", i + 1).parse().unwrap();
            node.change_external("b", ExternalOp::Add, vec![addr])
                .await
                .unwrap()
                .version
                .unwrap()
        }));
    }
    let mut versions = vec![];
    for t in tasks {
        versions.push(t.await.unwrap());
    }
    versions.sort();
    assert_eq!(versions, (4..=63).collect::<Vec<u64>>());
    let record = b.node.record().unwrap();
    assert_eq!(record.admin_version, 63);
    assert_eq!(record.external_addrs.as_ref().unwrap().len(), 61);
    // Durable: the file holds what was acknowledged.
    let on_disk = load_record(&b.state_dir).unwrap().unwrap();
    assert_eq!(on_disk, *record);
    // A bad change is refused and changes nothing.
    let refused = b
        .node
        .change_external("b", ExternalOp::Remove, vec![ip("192.0.2.99")])
        .await
        .unwrap_err();
    assert_eq!(refused.kind, RefusalKind::Conflict);
    assert_eq!(b.node.record().unwrap().admin_version, 63);
    // The others see b's published version once b republishes its entry (next identity).
    let _ = &a;
}

/// A node that is down takes changes through gossip: back-to-back changes made while it is down
/// build on each other, and it applies the result once when it comes back (from its own state
/// directory, a new generation), then says ACTIVE.
#[tokio::test(start_paused = true)]
async fn a_down_node_applies_changes_made_while_it_was_down() {
    let net = MemoryNetwork::default();
    let (a, b, c) = three_nodes(&net).await;
    let dir = c.state_dir.clone();
    drop(c);
    until(&a, Duration::from_secs(10), |m| {
        status_of(m, "c").map(|s| s.0) == Some(Health::Down)
    })
    .await;
    let ip = |t: &str| -> IpAddr { t.parse().unwrap() };
    let set = a
        .node
        .change_external("c", ExternalOp::Set, vec![ip("198.51.100.41")])
        .await
        .unwrap();
    assert!(set.pending, "{set:?}");
    let add = a
        .node
        .change_external("c", ExternalOp::Add, vec![ip("198.51.100.42")])
        .await
        .unwrap();
    assert_eq!(
        add.external_addrs,
        vec![ip("198.51.100.41"), ip("198.51.100.42")]
    );
    let moved = a.node.set_addr("c", ip("2001:db8::c2")).await.unwrap();
    assert_eq!(moved.addr, ip("2001:db8::c2"));
    // The address must be of the cluster's family.
    let wrong = a.node.set_addr("c", ip("192.0.2.7")).await.unwrap_err();
    assert_eq!(wrong.sub_code(), "family_mismatch");
    // c comes back from its own state directory (a new generation: a later start time).
    std::thread::sleep(std::time::Duration::from_millis(3));
    let c = start(&net, "c", "2001:db8::c", Some(dir));
    c.node.on_identity(c.identity.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = c.node.record().unwrap();
        if r.admin_version == 2 {
            assert_eq!(
                r.external_addrs,
                Some(vec![ip("198.51.100.41"), ip("198.51.100.42")])
            );
            assert_eq!(r.node_addr, Some(ip("2001:db8::c2")));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Applied once: later rounds do not count it again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(c.node.record().unwrap().admin_version, 2);
    let _ = (&b, c.ip);
}

/// Forged gossip values for a node (not changes, wrong types) are never applied.
#[test]
fn gossiped_changes_of_the_wrong_shape_are_skipped() {
    let mut r = bare_record();
    let waiting = [
        ("addr", "not json"),
        ("addr", r#"{"value": 42, "at_ms": 10}"#),
        (
            "external_addrs",
            r#"{"value": ["not an address"], "at_ms": 11}"#,
        ),
        (
            "external_addrs",
            r#"{"value": ["198.51.100.1"], "at_ms": 5}"#,
        ),
    ];
    let applied = cluster::apply_gossiped_changes(&mut r, waiting.iter().copied());
    assert_eq!(applied, vec!["external_addrs"]);
    assert_eq!(r.node_addr, None);
    assert_eq!(
        r.external_addrs,
        Some(vec!["198.51.100.1".parse::<IpAddr>().unwrap()])
    );
    assert_eq!(r.admin_version, 1);
    // Once applied, the same change is not applied again.
    assert!(cluster::apply_gossiped_changes(&mut r, waiting.iter().copied()).is_empty());
}

fn bare_record() -> ClusterRecord {
    {
        ClusterRecord {
            name: CLUSTER.into(),
            family: Family::Ipv6,
            use_internal_ipv6: true,
            username: "admin".into(),
            password_hash: String::new(),
            node_id: "c".into(),
            node_addr: None,
            external_addrs: None,
            seeds: vec![],
            applied: Default::default(),
            registered_unix: 0,
            admin_version: 0,
            gossip_keys: None,
        }
    }
}

/// Bootstrap is a state machine: one at a time, again only after a failure.
#[test]
fn bootstrap_states_move_as_redis_enterprise_reports_them() {
    use crate::core::cluster::{Action, BootstrapState};
    let idle = BootstrapStatus::at_start(false);
    assert_eq!(idle.state, BootstrapState::Idle);
    let creating = idle.start(Action::Create).unwrap();
    assert_eq!(creating.state, BootstrapState::CreatingCluster);
    let again = creating.start(Action::Join).unwrap_err();
    assert_eq!(again.sub_code(), "already_bootstrapped");
    assert!(again.body.description.contains("creating_cluster"));
    let failed = BootstrapStatus::finish(&Err(Refusal::bootstrap("cluster_unreachable", "x")));
    assert_eq!(failed.state, BootstrapState::Error);
    assert_eq!(
        failed.start(Action::Join).unwrap().state,
        BootstrapState::JoiningCluster
    );
    let done = BootstrapStatus::finish(&Ok(()));
    assert_eq!(done.state, BootstrapState::Completed);
    assert!(done.start(Action::Create).is_err());
    assert!(BootstrapStatus::at_start(true).start(Action::Join).is_err());
    let json = serde_json::to_value(&failed).unwrap();
    assert_eq!(json["state"], "error");
    assert_eq!(json["error"]["sub_code"], "cluster_unreachable");
}
