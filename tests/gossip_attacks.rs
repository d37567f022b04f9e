//! The gossip attacks of issue 12, each a test against a real 3-node cluster (node1 creates over
//! HTTP, node2 and node3 join) on a bridge, with an attacker namespace on the same bridge that
//! knows only what the unauthenticated `GET /v1/nodes` tells (cluster name, node ids, generations,
//! gossip addresses):
//! 1. one forged SynAck whose digest gives node2 a heartbeat of 2^62;
//! 2. 25 forged datagrams that add a ghost node and move node3's address to the attacker's;
//! 3. real gossip datagrams captured on the bridge, replayed exactly and mutated (1,200 bit-flips
//!    and truncations);
//! 4. a rogue stackring that created its own cluster under the same name and gossips at the
//!    members, with its own id and with `lifecycler.id: node1`.
//!
//! And one about key holders of another build: the compact seal goes only to members that say
//! they open it (`members_seal_compactly_only_to_those_that_say_they_open_it`).
//!
//! Each asserts that every member's view (ids, addresses, status, generations) stays as it was for
//! 10 s (the failure detector marks a node DOWN within 2–5 s), and that the members counted the
//! attacker's datagrams in `stackring_gossip_rejected_total` under the expected reasons. Attacks 1,
//! 2 and 4 end with a control arm: the same forgery sealed with the cluster's real gossip key (read
//! from a member's `cluster.json`) is taken (attacks 2 and 4: the views change), so the seal is
//! the only thing that stopped the outsider. Attack 1's control arm shows what even a key holder
//! can no longer do: its SynAck is taken, and node2 stays OK, since liveness is the SWIM prober's
//! word, not the heartbeat's. Figures are printed (`-- --nocapture`).
//!
//! The chitchat 0.11 messages are encoded by hand, following its `message.rs`, `digest.rs`,
//! `delta.rs` and `serialize.rs` (`Digest` and `Delta` have no public constructor), and checked
//! with chitchat's own decoder.

mod common;
use common::serve::*;
use common::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::net::{Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// How long every view must stay unchanged after an attack: the prober marks a silent node DOWN
/// within 2–5 s at 3 nodes.
const WATCH: Duration = Duration::from_secs(10);

/// The tests of this file run one at a time: four clusters gossiping at once on two shared cores
/// would test the scheduler, not the seal.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A formed 3-node cluster and an attacker on its bridge. Fields drop in order: daemons first.
struct Cluster {
    daemons: Vec<Daemon>,
    hosts: Vec<Netns>,
    attacker: Netns,
    lan: Lan,
    net: String,
    name: String,
}

impl Cluster {
    fn addr(&self, i: u32) -> String {
        format!("2001:db8:{}::{i:x}", self.net)
    }

    fn attacker_addr(&self) -> String {
        self.addr(0x66)
    }

    /// The cluster's gossip keyring as node1 keeps it (the test has the state dir; an attacker
    /// does not).
    fn keyring(&self) -> Value {
        let path = self.daemons[0].state_dir.join("cluster.json");
        let record: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        record["gossip_keys"].clone()
    }

    fn real_key(&self) -> String {
        self.keyring()["primary"].as_str().unwrap().to_string()
    }
}

/// node1 creates, node2 and node3 join; an attacker host (`::66`, and `::67` when `rogues` is 2)
/// on the same bridge.
fn cluster(net: &str, rogues: u32) -> (Cluster, Vec<Netns>) {
    let lan = Lan::new(&format!("{net}lan"));
    let (hosts, daemons) = start_nodes(&lan, net, 3);
    let addr = |i: u32| format!("2001:db8:{net}::{i:x}");
    let attacker = lan.host(&format!("{net}x"), &[&format!("{}/64", addr(0x66))]);
    let extra: Vec<Netns> = (1..rogues)
        .map(|r| lan.host(&format!("{net}x{r}"), &[&format!("{}/64", addr(0x66 + r))]))
        .collect();
    let mut pinned: Vec<(&Netns, String)> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (h, addr(i as u32 + 1)))
        .collect();
    pinned.push((&attacker, addr(0x66)));
    for (r, h) in extra.iter().enumerate() {
        pinned.push((h, addr(0x67 + r as u32)));
    }
    pin_neighbours(&pinned);
    let name = format!("ring{net}");
    let started = Instant::now();
    bootstrap(&hosts[0], "create_cluster", &name, None);
    for ns in &hosts[1..] {
        bootstrap(ns, "join_cluster", &name, Some(&addr(1)));
    }
    for ns in &hosts {
        wait_for("the cluster to form", Duration::from_secs(30), || {
            let v = view(ns);
            (v.len() == 3 && v.iter().all(|r| r.contains(" OK ACTIVE "))).then_some(())
        });
    }
    println!("{name}: formed in {:?}", started.elapsed());
    let c = Cluster {
        daemons,
        hosts,
        attacker,
        lan,
        net: net.to_string(),
        name,
    };
    (c, extra)
}

/// A member's view, one line per row: what an attack would change (ids, addresses, status, state,
/// generation), not what moves by itself (last seen).
fn view(ns: &Netns) -> Vec<String> {
    let (code, doc) = curl_json(ns, "GET", "[::1]", "/v1/nodes", None);
    if code != 200 {
        return vec![format!("HTTP {code}: {doc}")];
    }
    doc["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|n| {
            format!(
                "{} addr={} gossip={} grpc={} ext={} {} {} gen={}",
                n["id"].as_str().unwrap_or("?"),
                n["addr"].as_str().unwrap_or("?"),
                n["advertised_gossip"].as_str().unwrap_or("?"),
                n["advertised_grpc"].as_str().unwrap_or("?"),
                n["external_addrs"],
                n["status"].as_str().unwrap_or("?"),
                n["state"].as_str().unwrap_or("?"),
                n["generation"]
            )
        })
        .collect()
}

fn views(c: &Cluster) -> Vec<Vec<String>> {
    c.hosts.iter().map(view).collect()
}

/// Every member's view stays `baseline` for `window` (polled, bounded in count and time).
fn hold_steady(c: &Cluster, baseline: &[Vec<String>], window: Duration, what: &str) {
    let start = Instant::now();
    let mut polls = 0;
    while start.elapsed() < window && polls < 200 {
        for (i, ns) in c.hosts.iter().enumerate() {
            let now = view(ns);
            assert_eq!(
                now,
                baseline[i],
                "{what}: node{}'s view changed after {:?}\nbefore: {:#?}\nnow: {:#?}",
                i + 1,
                start.elapsed(),
                baseline[i],
                now
            );
        }
        polls += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
    println!("{what}: every view unchanged for {window:?} ({polls} polls of 3 views)");
}

/// The views once they agree twice in a row, all OK.
fn settled_views(c: &Cluster) -> Vec<Vec<String>> {
    wait_for("the views to settle", Duration::from_secs(15), || {
        let a = views(c);
        std::thread::sleep(Duration::from_millis(500));
        let ok = a
            .iter()
            .all(|v| v.len() == 3 && v.iter().all(|r| r.contains(" OK ")));
        (ok && views(c) == a).then_some(a)
    })
}

/// A counter of one member's `/metrics` by its one label: `metric{label="value"} n` rows.
fn counter_by_label(ns: &Netns, metric: &str, label: &str) -> BTreeMap<String, u64> {
    let (code, body) = http_get(ns, "/metrics");
    assert_eq!(code, 200, "{body}");
    let prefix = format!("{metric}{{{label}=\"");
    body.lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .filter_map(|rest| {
            let (value, count) = rest.split_once("\"} ")?;
            Some((value.to_string(), count.trim().parse::<f64>().ok()? as u64))
        })
        .collect()
}

/// `stackring_gossip_rejected_total` by reason, on one member.
fn rejected(ns: &Netns) -> BTreeMap<String, u64> {
    counter_by_label(ns, "stackring_gossip_rejected_total", "reason")
}

fn all_rejected(c: &Cluster) -> Vec<BTreeMap<String, u64>> {
    c.hosts.iter().map(rejected).collect()
}

/// Per member and reason: how many more refusals than in `before`.
fn rejected_since(c: &Cluster, before: &[BTreeMap<String, u64>]) -> Vec<BTreeMap<String, u64>> {
    all_rejected(c)
        .iter()
        .zip(before)
        .map(|(now, then)| {
            now.iter()
                .map(|(r, n)| (r.clone(), n - then.get(r).copied().unwrap_or(0)))
                .filter(|(_, n)| *n > 0)
                .collect()
        })
        .collect()
}

/// Datagrams a namespace's kernel dropped because a UDP socket's buffer was full.
fn rcvbuf_drops(ns: &Netns) -> u64 {
    let out = ns.command("cat").arg("/proc/net/snmp6").output().unwrap();
    text(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Udp6RcvbufErrors"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

// ---- What the attacker knows, and chitchat 0.11's wire format ----

/// A member as `GET /v1/nodes` shows it to anyone.
#[derive(Clone, Debug)]
struct Member {
    id: String,
    generation: u64,
    gossip: SocketAddr,
    /// Its published entry (the `node` key's JSON), rebuilt from the listed fields.
    entry: Value,
}

/// What the attacker learns from node1's plain-HTTP `/v1/nodes`, over the bridge.
fn learn(c: &Cluster) -> (String, Vec<Member>) {
    let (code, doc) = curl_json(
        &c.attacker,
        "GET",
        &format!("[{}]", c.addr(1)),
        "/v1/nodes",
        None,
    );
    assert_eq!(code, 200, "the attacker reads /v1/nodes: {doc}");
    let members = doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let mut entry = n.clone();
            for view_only in [
                "status",
                "last_seen_ms_ago",
                "local",
                "generation",
                "summary",
            ] {
                entry.as_object_mut().unwrap().remove(view_only);
            }
            Member {
                id: n["id"].as_str().unwrap().to_string(),
                generation: n["generation"].as_u64().unwrap(),
                gossip: n["advertised_gossip"].as_str().unwrap().parse().unwrap(),
                entry,
            }
        })
        .collect();
    (doc["cluster_name"].as_str().unwrap().to_string(), members)
}

/// chitchat's `MAGIC_NUMBER` (45139, little-endian), protocol version 0.
const CHITCHAT_HEADER: [u8; 3] = [0x53, 0xb0, 0x00];
const SYN_ACK: u8 = 1;

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u16).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// A `ChitchatId`: node id, generation, gossip address (IP version byte, octets, port).
fn put_id(buf: &mut Vec<u8>, node: &str, generation: u64, gossip: SocketAddr) {
    put_str(buf, node);
    buf.extend_from_slice(&generation.to_le_bytes());
    match gossip {
        SocketAddr::V4(a) => {
            buf.push(4);
            buf.extend_from_slice(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            buf.push(6);
            buf.extend_from_slice(&a.ip().octets());
        }
    }
    buf.extend_from_slice(&gossip.port().to_le_bytes());
}

/// A digest row: node → (heartbeat, last_gc_version, max_version).
struct DigestRow<'a> {
    node: &'a str,
    generation: u64,
    gossip: SocketAddr,
    heartbeat: u64,
    max_version: u64,
}

/// A node's part of a delta: `Node` op (last_gc_version 0, from_version_excluded 0), then its
/// key-values (`KeyValue` ops, status Set), versions increasing.
struct DeltaNode<'a> {
    node: &'a str,
    generation: u64,
    gossip: SocketAddr,
    kvs: Vec<(&'a str, String, u64)>,
}

/// A SynAck, as chitchat 0.11 encodes one: header, type, digest, then the delta as a block stream
/// (one uncompressed block, then the end tag).
fn syn_ack(digest: &[DigestRow<'_>], delta: &[DeltaNode<'_>]) -> Vec<u8> {
    let mut buf = CHITCHAT_HEADER.to_vec();
    buf.push(SYN_ACK);
    buf.extend_from_slice(&(digest.len() as u16).to_le_bytes());
    for row in digest {
        put_id(&mut buf, row.node, row.generation, row.gossip);
        buf.extend_from_slice(&row.heartbeat.to_le_bytes());
        buf.extend_from_slice(&0u64.to_le_bytes());
        buf.extend_from_slice(&row.max_version.to_le_bytes());
    }
    let mut ops = Vec::new();
    for node in delta {
        ops.push(0u8);
        put_id(&mut ops, node.node, node.generation, node.gossip);
        ops.extend_from_slice(&0u64.to_le_bytes());
        ops.extend_from_slice(&0u64.to_le_bytes());
        for (key, value, version) in &node.kvs {
            ops.push(1u8);
            put_str(&mut ops, key);
            put_str(&mut ops, value);
            ops.extend_from_slice(&version.to_le_bytes());
            ops.push(0u8);
        }
    }
    if !ops.is_empty() {
        buf.push(2u8); // BlockType::Uncompressed
        buf.extend_from_slice(&(ops.len() as u16).to_le_bytes());
        buf.extend_from_slice(&ops);
    }
    buf.push(0u8); // BlockType::NoMoreBlocks
    buf
}

/// Asserts chitchat's own decoder reads `bytes` as a SynAck naming `needles`.
fn assert_chitchat_decodes(bytes: &[u8], needles: &[&str]) {
    use chitchat::Deserializable;
    let mut cursor = bytes;
    let message = chitchat::ChitchatMessage::deserialize(&mut cursor)
        .unwrap_or_else(|e| panic!("the forged message does not decode: {e:#}"));
    assert!(cursor.is_empty(), "{} bytes left over", cursor.len());
    let shown = format!("{message:?}");
    assert!(shown.starts_with("SynAck"), "{shown}");
    for needle in needles {
        assert!(shown.contains(needle), "{needle} not in {shown}");
    }
}

/// What an outsider can put around a chitchat message.
#[derive(Clone, Copy, Debug)]
enum Wrap {
    /// The message as chitchat sent it before sealing.
    Plain,
    /// Sealed under a key of the attacker's own.
    OwnKey,
    /// Sealed under the attacker's key, labelled with the cluster's key id (it travels in clear).
    ClusterKeyId,
}

impl Wrap {
    const ALL: [Wrap; 3] = [Wrap::Plain, Wrap::OwnKey, Wrap::ClusterKeyId];

    fn reason(self) -> &'static str {
        match self {
            Wrap::Plain => "not_sealed",
            Wrap::OwnKey => "unknown_key",
            Wrap::ClusterKeyId => "forged",
        }
    }

    fn apply(self, message: &[u8], cluster_key_id: &[u8]) -> Vec<u8> {
        const ATTACKER_KEY: &str =
            "a77ac4e2a77ac4e2a77ac4e2a77ac4e2a77ac4e2a77ac4e2a77ac4e2a77ac4e2";
        match self {
            Wrap::Plain => message.to_vec(),
            Wrap::OwnKey => stackring::fuzzing::seal_gossip(ATTACKER_KEY, message),
            Wrap::ClusterKeyId => {
                let mut d = stackring::fuzzing::seal_gossip(ATTACKER_KEY, message);
                d[4..8].copy_from_slice(cluster_key_id);
                d
            }
        }
    }
}

/// The cluster's key id as every sealed datagram carries it in clear (bytes 4..8).
fn key_id(key_hex: &str) -> Vec<u8> {
    stackring::fuzzing::seal_gossip(key_hex, b"")[4..8].to_vec()
}

/// Sends `datagrams` from the attacker's namespace, `pace` between them; how many were sent.
fn send_from(ns: &Netns, datagrams: Vec<(SocketAddr, Vec<u8>)>, pace: Duration) -> usize {
    ns.run(move || {
        let socket = UdpSocket::bind("[::]:0").unwrap();
        let mut sent = 0;
        for (to, bytes) in &datagrams {
            socket
                .send_to(bytes, to)
                .unwrap_or_else(|e| panic!("send to {to}: {e}"));
            sent += 1;
            std::thread::sleep(pace);
        }
        sent
    })
}

/// Asserts, per member, at least `want[(member, reason)]` more refusals than `before`.
fn assert_counted(
    c: &Cluster,
    before: &[BTreeMap<String, u64>],
    want: &BTreeMap<(usize, &'static str), u64>,
    what: &str,
) -> Vec<BTreeMap<String, u64>> {
    // The members read their sockets within milliseconds; give a loaded machine a moment.
    wait_for(
        &format!("{what}: the members to count every refused datagram"),
        Duration::from_secs(10),
        || {
            let got = rejected_since(c, before);
            want.iter()
                .all(|((i, reason), n)| got[*i].get(*reason).copied().unwrap_or(0) >= *n)
                .then_some(())
        },
    );
    let got = rejected_since(c, before);
    for (i, g) in got.iter().enumerate() {
        println!("{what}: node{} refused {g:?}", i + 1);
    }
    got
}

/// Attack 1 (issue 12): "one 65-byte forged SynAck whose digest gives node2 a heartbeat of 2^62
/// made node2 `DOWN` on the other members within 5 s, for good". Sent to node1 and node3 in every
/// form an outsider can make, it is refused and node2 stays OK; sealed with the real key (the
/// control arm), the same SynAck makes node2 DOWN on both.
#[test]
fn forged_syn_ack_with_a_2_pow_62_heartbeat_does_not_make_node2_down() {
    let _serial = serial();
    let started = Instant::now();
    let (c, _) = cluster("a01", 1);
    let (name, members) = learn(&c);
    assert_eq!(name, c.name);
    let node2 = members.iter().find(|m| m.id == "node2").unwrap();
    let forged = syn_ack(
        &[DigestRow {
            node: &node2.id,
            generation: node2.generation,
            gossip: node2.gossip,
            heartbeat: 1 << 62,
            max_version: 0,
        }],
        &[],
    );
    assert_eq!(forged.len(), 65, "the issue's 65-byte SynAck");
    assert_chitchat_decodes(&forged, &["node2", "Heartbeat(4611686018427387904)"]);
    let targets = [members[0].gossip, members[2].gossip];

    let baseline = settled_views(&c);
    let before = all_rejected(&c);
    let cluster_key_id = key_id(&c.real_key());
    let mut datagrams = Vec::new();
    let mut want = BTreeMap::new();
    for (i, to) in [(0usize, targets[0]), (2, targets[1])] {
        for wrap in Wrap::ALL {
            datagrams.push((to, wrap.apply(&forged, &cluster_key_id)));
            *want.entry((i, wrap.reason())).or_insert(0) += 1;
        }
    }
    let sent = send_from(&c.attacker, datagrams, Duration::from_millis(20));
    hold_steady(&c, &baseline, WATCH, "forged SynAck (outsider)");
    assert_counted(&c, &before, &want, "forged SynAck (outsider)");
    println!("forged SynAck: {sent} datagrams sent, all refused");

    // Control arm: the same SynAck sealed with the cluster's key is opened and goes to chitchat
    // (nothing is refused): node2's heartbeat is then 2^62 in node1's and node3's state, and
    // every real one is older. With chitchat's detector deciding, that made node2 DOWN within
    // 2–5 s for good (the attack). The SWIM prober asks node2 itself, and node2 answers:
    // it stays OK. What the seal still guards is in the outsider arm above.
    let key = c.real_key();
    let sealed: Vec<(SocketAddr, Vec<u8>)> = targets
        .iter()
        .map(|to| (*to, stackring::fuzzing::seal_gossip(&key, &forged)))
        .collect();
    let before = all_rejected(&c);
    send_from(&c.attacker, sealed, Duration::from_millis(20));
    let watch_from = Instant::now();
    while watch_from.elapsed() < WATCH {
        for i in [0, 2] {
            let rows = view(&c.hosts[i]);
            assert!(
                rows.iter()
                    .any(|r| r.starts_with("node2 ") && r.contains(" OK ACTIVE ")),
                "control arm: node2 not OK on node{} {:?} after the sealed SynAck: {rows:?}",
                i + 1,
                watch_from.elapsed()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let refused = assert_counted(&c, &before, &BTreeMap::new(), "sealed SynAck (key holder)");
    assert!(
        refused.iter().all(|r| r.values().all(|n| *n == 0)),
        "the sealed SynAck was refused: {refused:?}"
    );
    println!(
        "control arm: the sealed SynAck was taken, and node2 stayed OK on node1 and node3 for {WATCH:?}: {:?}",
        view(&c.hosts[0])
    );
    println!("test took {:?}", started.elapsed());
}

/// Attack 2 (issue 12): "25 forged datagrams added a ghost node on every member and moved node3's
/// address to an address of the attacker's choosing in every view". Refused, no view changes;
/// sealed with the real key (control arm), the ghost appears and node3 moves.
#[test]
fn forged_deltas_add_no_ghost_and_move_no_address() {
    let _serial = serial();
    let started = Instant::now();
    let (c, _) = cluster("a02", 1);
    let (_, members) = learn(&c);
    let node3 = members.iter().find(|m| m.id == "node3").unwrap().clone();
    let evil = c.attacker_addr();
    let evil_gossip: SocketAddr = format!("[{evil}]:7946").parse().unwrap();
    let ghost_generation = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut ghost = node3.entry.clone();
    let mut moved = node3.entry.clone();
    for (entry, id) in [(&mut ghost, "ghost"), (&mut moved, "node3")] {
        entry["id"] = json!(id);
        entry["hostname"] = json!(id);
        entry["addr"] = json!(evil);
        entry["advertised_grpc"] = json!(format!("[{evil}]:9095"));
        entry["advertised_http"] = json!(format!("[{evil}]:3200"));
        entry["advertised_gossip"] = json!(format!("[{evil}]:7946"));
    }
    let forgery = |i: u64| {
        syn_ack(
            &[DigestRow {
                node: "ghost",
                generation: ghost_generation,
                gossip: evil_gossip,
                heartbeat: 1_000 + i,
                max_version: 1,
            }],
            &[
                DeltaNode {
                    node: "ghost",
                    generation: ghost_generation,
                    gossip: evil_gossip,
                    kvs: vec![("node", ghost.to_string(), 1)],
                },
                DeltaNode {
                    node: "node3",
                    generation: node3.generation,
                    gossip: node3.gossip,
                    kvs: vec![("node", moved.to_string(), 1 << 40)],
                },
            ],
        )
    };
    assert_chitchat_decodes(&forgery(0), &["ghost", "node3", &evil]);
    let targets: Vec<SocketAddr> = members.iter().map(|m| m.gossip).collect();

    let baseline = settled_views(&c);
    let before = all_rejected(&c);
    let cluster_key_id = key_id(&c.real_key());
    let mut datagrams = Vec::new();
    let mut want = BTreeMap::new();
    for i in 0..25u64 {
        let member = (i % 3) as usize;
        let wrap = Wrap::ALL[((i / 3) % 3) as usize];
        datagrams.push((targets[member], wrap.apply(&forgery(i), &cluster_key_id)));
        *want.entry((member, wrap.reason())).or_insert(0) += 1;
    }
    let sent = send_from(&c.attacker, datagrams, Duration::from_millis(200));
    hold_steady(&c, &baseline, WATCH, "ghost and address move (outsider)");
    assert_counted(&c, &before, &want, "ghost and address move (outsider)");
    println!("ghost/address forgeries: {sent} datagrams sent, all refused");

    // Control arm: the same 25 forgeries sealed with the cluster's key.
    let key = c.real_key();
    let sealed: Vec<(SocketAddr, Vec<u8>)> = (0..25u64)
        .map(|i| {
            (
                targets[(i % 3) as usize],
                stackring::fuzzing::seal_gossip(&key, &forgery(i)),
            )
        })
        .collect();
    let sent_at = Instant::now();
    send_from(&c.attacker, sealed, Duration::from_millis(100));
    for (i, ns) in c.hosts.iter().enumerate() {
        wait_for(
            &format!("control arm: the ghost listed by node{}", i + 1),
            Duration::from_secs(15),
            || {
                view(ns)
                    .iter()
                    .any(|r| r.starts_with("ghost "))
                    .then_some(())
            },
        );
    }
    let moved_row = format!("node3 addr={evil} ");
    wait_for(
        "control arm: node3 at the attacker's address on node1",
        Duration::from_secs(15),
        || {
            view(&c.hosts[0])
                .iter()
                .any(|r| r.starts_with(&moved_row))
                .then_some(())
        },
    );
    println!(
        "control arm: after {:?} node1 lists {:#?}",
        sent_at.elapsed(),
        view(&c.hosts[0])
    );
    println!("test took {:?}", started.elapsed());
}

/// Gossip datagrams (UDP to `port`) seen on the bridge's ports, deduplicated (each is seen
/// entering one port and leaving another), with their destination; at most `want`, within `time`.
/// A raw packet socket in the LAN namespace: the vantage point of a host with a mirror port.
fn capture_gossip(lan: &Lan, port: u16, want: usize, time: Duration) -> Vec<(SocketAddr, Vec<u8>)> {
    lan.ns.run(move || {
        let protocol = (libc::ETH_P_ALL as u16).to_be() as libc::c_int;
        // SAFETY: socket(2) with constant arguments; the descriptor is closed below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM, protocol) };
        assert!(
            fd >= 0,
            "packet socket: {}",
            std::io::Error::last_os_error()
        );
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        // SAFETY: setsockopt on our descriptor with a timeval of the size given.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_RCVTIMEO: {}", std::io::Error::last_os_error());
        let mut buf = vec![0u8; 65_536];
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let start = Instant::now();
        while out.len() < want && start.elapsed() < time {
            // SAFETY: recv(2) into a buffer of the length given.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
                continue;
            }
            let p = &buf[..n as usize];
            // IPv6, next header UDP (no extension headers, so no fragments), to `port`.
            if p.len() < 48 || p[0] >> 4 != 6 || p[6] != 17 {
                continue;
            }
            let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&p[24..40]).unwrap());
            let dport = u16::from_be_bytes([p[42], p[43]]);
            let len = u16::from_be_bytes([p[44], p[45]]) as usize;
            if dport != port || len < 8 || 40 + len > p.len() {
                continue;
            }
            let payload = p[48..40 + len].to_vec();
            if seen.insert(payload.clone()) {
                out.push((SocketAddr::new(dst.into(), dport), payload));
            }
        }
        // SAFETY: closing the descriptor opened above.
        unsafe { libc::close(fd) };
        out
    })
}

/// What a sealed datagram carries around its message, in the standard format
/// (`core::seal::OVERHEAD`: magic "SRg1", key id, nonce, sender clock, tag) and the compact one
/// (`COMPACT_OVERHEAD`: magic "S2", key id, session, counter, sender clock, tag).
const OVERHEAD: usize = 4 + 4 + 24 + 8 + 16;
const COMPACT_OVERHEAD: usize = 2 + 4 + 8 + 6 + 4 + 16;

/// The key id a sealed datagram names in clear, in either format; None when it is not one.
fn sealed_key_id(d: &[u8]) -> Option<&[u8]> {
    if d.len() >= OVERHEAD && d.starts_with(b"SRg1") {
        Some(&d[4..8])
    } else if d.len() >= COMPACT_OVERHEAD && d.starts_with(b"S2") {
        Some(&d[2..6])
    } else {
        None
    }
}

/// The refusal reason a member gives a changed copy `d` of a sealed datagram (`core::seal::open`'s
/// order: length and magic, key id, tag). A flipped bit can turn one format's magic into the
/// other's ("SR" and "S2" differ in one bit): the reason follows the bytes, not the flip.
fn mutated_reason(d: &[u8], cluster_key_id: &[u8]) -> &'static str {
    match sealed_key_id(d) {
        None => "not_sealed",
        Some(id) if id != cluster_key_id => "unknown_key",
        Some(_) => "forged",
    }
}

/// Attack 3 (issue 12): "1,970 mutated replays of captured datagrams left every node seeing the
/// others DOWN for over a minute". Real datagrams captured on the bridge, replayed exactly to the
/// member they were sent to, then 1,200 mutations of them (1–3 bit flips, or a truncation): every
/// one is refused with the reason `core::seal` gives it, and no view changes.
#[test]
fn captured_datagrams_replayed_exactly_and_mutated_are_refused() {
    let _serial = serial();
    let started = Instant::now();
    let (c, _) = cluster("a03", 1);
    let baseline = settled_views(&c);
    let captured = capture_gossip(&c.lan, 7946, 60, Duration::from_secs(10));
    println!(
        "captured {} gossip datagrams on the bridge ({}–{} bytes)",
        captured.len(),
        captured.iter().map(|(_, d)| d.len()).min().unwrap_or(0),
        captured.iter().map(|(_, d)| d.len()).max().unwrap_or(0)
    );
    assert!(captured.len() >= 30, "only {} captured", captured.len());
    // The members seal compactly to one another (each says it opens that format): the replays
    // and mutations below cover both formats.
    let compact = captured
        .iter()
        .filter(|(_, d)| d.starts_with(b"S2"))
        .count();
    println!("{compact} of them compact, the rest standard");
    assert!(compact > 0, "no compact datagram among the captured ones");
    let members: Vec<SocketAddr> = (1..=3)
        .map(|i| format!("[{}]:7946", c.addr(i)).parse().unwrap())
        .collect();
    let cluster_key_id = key_id(&c.real_key());
    for (to, d) in &captured {
        assert!(members.contains(to), "captured gossip to a non-member {to}");
        let id = sealed_key_id(d).unwrap_or_else(|| {
            panic!(
                "a datagram on the bridge is not sealed: {:?}",
                &d[..4.min(d.len())]
            )
        });
        assert_eq!(id, &cluster_key_id[..], "sealed under another key");
        for clear in [c.name.as_str(), "node1", "node2", "node3", "ACTIVE"] {
            assert!(
                !d.windows(clear.len()).any(|w| w == clear.as_bytes()),
                "{clear:?} in clear in a gossip datagram"
            );
        }
    }
    let member_of = |to: &SocketAddr| members.iter().position(|m| m == to).unwrap();

    let before = all_rejected(&c);
    let drops_before: Vec<u64> = c.hosts.iter().map(rcvbuf_drops).collect();
    let mut want: BTreeMap<(usize, &'static str), u64> = BTreeMap::new();
    // Exact replays, each to the member that already accepted it.
    let mut datagrams: Vec<(SocketAddr, Vec<u8>)> = captured.clone();
    for (to, _) in &captured {
        *want.entry((member_of(to), "replayed")).or_insert(0) += 1;
    }
    // Mutations: a fixed xorshift, so a failure replays the same way.
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    const MUTATIONS: usize = 1_200;
    for k in 0..MUTATIONS {
        let (to, original) = &captured[k % captured.len()];
        let mut d = original.clone();
        if k % 4 == 3 {
            d.truncate(next() as usize % d.len());
        } else {
            for _ in 0..1 + next() % 3 {
                let bit = next() as usize % (d.len() * 8);
                d[bit / 8] ^= 1 << (bit % 8);
            }
            if d == *original {
                continue; // the same bit flipped twice
            }
        }
        *want
            .entry((member_of(to), mutated_reason(&d, &cluster_key_id)))
            .or_insert(0) += 1;
        datagrams.push((*to, d));
    }
    let attack_started = Instant::now();
    let sent = send_from(&c.attacker, datagrams, Duration::from_micros(800));
    let attack_took = attack_started.elapsed();
    assert!(attack_took < Duration::from_secs(20), "{attack_took:?}");
    println!(
        "{} exact replays and {} mutations sent in {attack_took:?}; expected refusals {want:?}",
        captured.len(),
        sent - captured.len()
    );
    hold_steady(&c, &baseline, WATCH, "exact and mutated replays");
    let drops: Vec<u64> = c
        .hosts
        .iter()
        .zip(&drops_before)
        .map(|(ns, b)| rcvbuf_drops(ns) - b)
        .collect();
    if drops.iter().all(|d| *d == 0) {
        assert_counted(&c, &before, &want, "exact and mutated replays");
    } else {
        // A full socket buffer on a loaded machine: what did not reach a member cannot be
        // counted by it; every datagram that reached it must be.
        println!("receive-buffer drops per member: {drops:?}");
        let got = rejected_since(&c, &before);
        for (i, drops) in drops.iter().enumerate() {
            let sent_to: u64 = want
                .iter()
                .filter(|((m, _), _)| *m == i)
                .map(|(_, n)| n)
                .sum();
            let counted: u64 = got[i].values().sum();
            assert!(
                counted + drops >= sent_to,
                "node{}: {counted} refused + {drops} dropped < {sent_to} sent",
                i + 1
            );
        }
    }
    println!("test took {:?}", started.elapsed());
}

/// A rogue stackring on `ns`: it creates its own cluster `name` (with `join_members` at node1, as
/// an attacker would write it), then is restarted with chitchat seeds at every member's gossip
/// address (written into its own `cluster.json`), and, when `keyring` is given, with that keyring.
fn rogue(
    ns: &Netns,
    id: &str,
    name: &str,
    node1: &str,
    seeds: &[String],
    keyring: Option<&Value>,
) -> Daemon {
    let mut d = Daemon::start(
        ns,
        &format!("lifecycler: {{id: {id}}}\nmemberlist: {{join_members: ['[{node1}]:7946']}}"),
        &[],
    );
    d.expect("READY=1", Duration::from_secs(20));
    bootstrap(ns, "create_cluster", name, None);
    rogue_restart(ns, d, seeds, keyring)
}

fn rogue_restart(ns: &Netns, mut d: Daemon, seeds: &[String], keyring: Option<&Value>) -> Daemon {
    let _ = d.child.kill();
    let _ = d.child.wait();
    let path = d.state_dir.join("cluster.json");
    let mut record: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    record["seeds"] = json!(seeds);
    if let Some(keyring) = keyring {
        record["gossip_keys"] = keyring.clone();
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&record).unwrap()).unwrap();
    let mut again = d.restart(ns);
    again.expect("READY=1", Duration::from_secs(20));
    again
}

/// Attack 4 (issue 12): "a rogue daemon that created its own cluster under the same name and
/// pointed its seeds at a member was listed OK everywhere ... a rogue using lifecycler.id: node1
/// replaced node1's entry". Two rogues, one with its own id and one calling itself node1, gossip
/// at every member: neither is listed anywhere, no entry changes, and every member counts their
/// datagrams as `unknown_key`. Control arm: given the cluster's keyring, the first rogue is listed.
#[test]
fn rogue_daemons_with_the_cluster_name_and_a_members_id_are_never_listed() {
    let _serial = serial();
    let started = Instant::now();
    let (c, extra) = cluster("a04", 2);
    let (name, members) = learn(&c);
    let seeds: Vec<String> = members.iter().map(|m| m.gossip.to_string()).collect();
    let baseline = settled_views(&c);
    let before = all_rejected(&c);
    let rogues = [(&c.attacker, "rogue"), (&extra[0], "node1")];
    let mut daemons: Vec<Daemon> = rogues
        .iter()
        .map(|(ns, id)| rogue(ns, id, &name, &c.addr(1), &seeds, None))
        .collect();
    for (ns, id) in rogues {
        let own = view(ns);
        assert!(
            own.len() == 1 && own[0].starts_with(&format!("{id} ")),
            "the rogue {id} runs its own one-node cluster {name}: {own:?}"
        );
    }
    hold_steady(&c, &baseline, WATCH, "rogue daemons (outsiders)");
    let want: BTreeMap<(usize, &'static str), u64> =
        (0..3).map(|i| ((i, "unknown_key"), 1)).collect();
    let got = assert_counted(&c, &before, &want, "rogue daemons (outsiders)");
    for (i, g) in got.iter().enumerate() {
        assert_eq!(
            g.keys().collect::<Vec<_>>(),
            ["unknown_key"],
            "node{}: refused for another reason",
            i + 1
        );
    }
    let rogue_addrs = [c.attacker_addr(), c.addr(0x67)];
    for (ns, d) in c.hosts.iter().zip(&c.daemons) {
        let (code, table, err) = cli(ns, d, &["status", "nodes"]);
        assert_eq!(code, 0, "{err}");
        assert!(
            !table.contains("rogue") && !rogue_addrs.iter().any(|a| table.contains(a)),
            "{table}"
        );
    }
    for (ns, id) in rogues {
        assert_eq!(view(ns).len(), 1, "the members told the rogue {id} nothing");
    }

    // Control arm: the first rogue, given the cluster's keyring, is listed by the members.
    let keyring = c.keyring();
    let first = daemons.remove(0);
    let _keyed = rogue_restart(&c.attacker, first, &seeds, Some(&keyring));
    let keyed_at = Instant::now();
    wait_for(
        "control arm: the rogue holding the key listed by node1",
        Duration::from_secs(15),
        || {
            view(&c.hosts[0])
                .iter()
                .any(|r| r.starts_with("rogue "))
                .then_some(())
        },
    );
    println!(
        "control arm: the rogue with the cluster's key was listed by node1 after {:?}",
        keyed_at.elapsed()
    );
    println!("test took {:?}", started.elapsed());
}

// ---- Key holders of another build: the compact seal (issue 16) ----

/// `stackring_gossip_sealed_total` by format, on one member.
fn sealed_by_format(ns: &Netns) -> BTreeMap<String, u64> {
    counter_by_label(ns, "stackring_gossip_sealed_total", "format")
}

/// Mixed versions: two key holders on the attacker's host introduce themselves to node1 with the
/// real key, one as a build before the compact seal (its gossiped state says nothing of it), one
/// as a build that opens it (`seal: compact`). Every member takes both (their standard datagrams
/// open), seals to the older one in the standard format only (which every build opens) and to
/// the newer one compactly, 16 bytes shorter, once it has read its state; among themselves the
/// members seal compactly.
#[test]
fn members_seal_compactly_only_to_those_that_say_they_open_it() {
    let _serial = serial();
    let (c, _) = cluster("a05", 1);
    let (_, members) = learn(&c);
    let node1 = members.iter().find(|m| m.id == "node1").unwrap().clone();
    let evil = c.attacker_addr();
    let key = c.real_key();
    let generation = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let holders = [("older", 7946u16, false), ("newer", 7947u16, true)];
    let hellos: Vec<(u16, Vec<Vec<u8>>)> = holders
        .iter()
        .map(|(name, port, compact)| {
            let gossip: SocketAddr = format!("[{evil}]:{port}").parse().unwrap();
            let mut entry = node1.entry.clone();
            entry["id"] = json!(name);
            entry["hostname"] = json!(name);
            entry["addr"] = json!(evil);
            entry["advertised_gossip"] = json!(gossip.to_string());
            let mut kvs = vec![("node", entry.to_string(), 1)];
            if *compact {
                kvs.push(("seal", "compact".to_string(), 2));
            }
            let max_version = kvs.len() as u64;
            let datagrams = (0..5u64)
                .map(|i| {
                    let message = syn_ack(
                        &[DigestRow {
                            node: name,
                            generation,
                            gossip,
                            heartbeat: 10 + i,
                            max_version,
                        }],
                        &[DeltaNode {
                            node: name,
                            generation,
                            gossip,
                            kvs: kvs.clone(),
                        }],
                    );
                    assert_chitchat_decodes(&message, &[name]);
                    stackring::fuzzing::seal_gossip(&key, &message)
                })
                .collect();
            (*port, datagrams)
        })
        .collect();
    let to = node1.gossip;
    // (holder's port, sender, milliseconds since the first hello, magic, length)
    let received: Vec<(u16, SocketAddr, u128, String, usize)> = c.attacker.run(move || {
        let sockets: Vec<(u16, UdpSocket)> = hellos
            .iter()
            .map(|(port, _)| {
                let s = UdpSocket::bind(format!("[::]:{port}")).unwrap();
                s.set_nonblocking(true).unwrap();
                (*port, s)
            })
            .collect();
        let start = Instant::now();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65_536];
        let mut next_hello = 0;
        while start.elapsed() < Duration::from_secs(10) {
            if next_hello < 5 && start.elapsed() >= Duration::from_millis(300 * next_hello as u64) {
                for ((_, socket), (_, datagrams)) in sockets.iter().zip(&hellos) {
                    socket.send_to(&datagrams[next_hello], to).unwrap();
                }
                next_hello += 1;
            }
            let mut idle = true;
            for (port, socket) in &sockets {
                while let Ok((len, from)) = socket.recv_from(&mut buf) {
                    idle = false;
                    let magic = match &buf[..len.min(4)] {
                        [b'S', b'R', b'g', b'1'] => "standard",
                        [b'S', b'2', ..] => "compact",
                        _ => "other",
                    };
                    got.push((
                        *port,
                        from,
                        start.elapsed().as_millis(),
                        magic.to_string(),
                        len,
                    ));
                }
            }
            if idle {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        got
    });
    for (port, name) in [(7946, "older"), (7947, "newer")] {
        let mine: Vec<_> = received.iter().filter(|r| r.0 == port).collect();
        let count = |magic: &str| mine.iter().filter(|r| r.3 == magic).count();
        println!(
            "{name}: {} datagrams from the members: {} standard, {} compact, {} other",
            mine.len(),
            count("standard"),
            count("compact"),
            count("other")
        );
        assert_eq!(count("other"), 0, "{name}: {mine:?}");
        if name == "older" {
            assert!(!mine.is_empty(), "older: the members never spoke to it");
            assert_eq!(count("compact"), 0, "older got compact datagrams: {mine:?}");
        } else {
            assert!(
                count("compact") > 0,
                "newer got no compact datagram: {mine:?}"
            );
            // Per sender: once it sealed compactly to the newer holder, it went on so.
            for (i, first) in mine.iter().enumerate().filter(|(_, r)| r.3 == "compact") {
                let later_standard = mine[i..]
                    .iter()
                    .filter(|r| r.1 == first.1 && r.3 == "standard")
                    .count();
                assert_eq!(
                    later_standard, 0,
                    "{} went back to standard: {mine:?}",
                    first.1
                );
            }
        }
    }
    // Both holders' standard datagrams were taken: node1 lists them.
    wait_for(
        "node1 to list both holders",
        Duration::from_secs(10),
        || {
            let v = view(&c.hosts[0]);
            (v.iter().any(|r| r.starts_with("older ")) && v.iter().any(|r| r.starts_with("newer ")))
                .then_some(())
        },
    );
    for (i, ns) in c.hosts.iter().enumerate() {
        let by = sealed_by_format(ns);
        println!("node{}: sealed {by:?}", i + 1);
        let (compact, standard) = (by["compact"], by["standard"]);
        assert!(
            compact > standard,
            "node{}: members seal compactly to one another: {by:?}",
            i + 1
        );
    }
}
