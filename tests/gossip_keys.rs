//! `stackring cluster gossip-key install|use|remove|list|rotate` on a running 3-node cluster
//! (node1 creates over HTTP, node2 and node3 join) on a bridge, issue 12: "Key rotation on a
//! running 3-node cluster: no node goes DOWN, old-key datagrams are refused after `remove`".
//!
//! 1. Rotation by hand (install, use, remove) and with `rotate`, while a watcher polls
//!    `GET /v1/nodes` on every member every 300 ms: no row is ever anything but OK. The new
//!    keyring is in every member's `cluster.json`, survives a restart of node3 (which gossips
//!    again with the new key), and a datagram sealed with the removed key is refused and counted
//!    as `unknown_key`.
//! 2. Hostile CLI input (bad hex, 63/65 digits, a 10 kB argument, an unknown key id, remove the
//!    key in use, use a key not installed) is refused with a clear error and changes no
//!    member's `cluster.json`.
//! 3. `Cluster.ChangeGossipKeys` without a member certificate (plaintext, TLS without a client
//!    certificate) is refused and changes nothing.

mod common;
use common::serve::*;
use common::*;
use serde_json::{json, Value};
use stackring::proto::pb;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One cluster at a time: three clusters gossiping on two shared cores would test the scheduler.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A formed 3-node cluster. Fields drop in order: daemons first.
struct Cluster {
    daemons: Vec<Daemon>,
    hosts: Vec<Netns>,
    _lan: Lan,
    net: String,
}

impl Cluster {
    fn addr(&self, i: u32) -> String {
        format!("2001:db8:{}::{i:x}", self.net)
    }

    fn record(&self, i: usize) -> Value {
        let path = self.daemons[i].state_dir.join("cluster.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn keyrings(&self) -> Vec<Value> {
        (0..3)
            .map(|i| self.record(i)["gossip_keys"].clone())
            .collect()
    }

    /// Every member's `cluster.json` without `seeds`: the members refresh that list from the
    /// live ones by themselves (a member briefly unreachable on a loaded machine drops out of
    /// it), so it is not what a refused command could have changed.
    fn records(&self) -> Vec<Value> {
        (0..3)
            .map(|i| {
                let text = std::fs::read_to_string(self.daemons[i].state_dir.join("cluster.json"))
                    .unwrap();
                let mut record: Value = serde_json::from_str(&text).unwrap();
                record.as_object_mut().unwrap().remove("seeds");
                record
            })
            .collect()
    }

    fn cli(&self, i: usize, args: &[&str]) -> (i32, String, String) {
        let (code, out, err) = cli(&self.hosts[i], &self.daemons[i], args);
        println!(
            "$ stackring {} (node{}) -> {code}\n{out}{err}",
            args.join(" ").chars().take(120).collect::<String>(),
            i + 1
        );
        (code, out, err)
    }
}

/// `(id, status)` of every row of a member's `GET /v1/nodes`.
fn statuses(ns_name: &str) -> Result<Vec<(String, String)>, String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns_name, "curl", "-s", "-g", "-m", "5"])
        .arg("http://[::1]:3200/v1/nodes")
        .output()
        .map_err(|e| e.to_string())?;
    let doc: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    Ok(doc["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            (
                n["id"].as_str().unwrap_or("?").to_string(),
                n["status"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect())
}

fn all_ok(c: &Cluster) -> bool {
    c.hosts.iter().all(|ns| {
        statuses(&ns.name).is_ok_and(|rows| rows.len() == 3 && rows.iter().all(|(_, s)| s == "OK"))
    })
}

fn cluster(net: &str) -> Cluster {
    let lan = Lan::new(&format!("{net}lan"));
    let (hosts, daemons) = start_nodes(&lan, net, 3);
    let name = format!("ring{net}");
    let c = Cluster {
        daemons,
        hosts,
        _lan: lan,
        net: net.to_string(),
    };
    let started = Instant::now();
    bootstrap(&c.hosts[0], "create_cluster", &name, None);
    for ns in &c.hosts[1..] {
        bootstrap(ns, "join_cluster", &name, Some(&c.addr(1)));
    }
    wait_for("the cluster to form", Duration::from_secs(40), || {
        all_ok(&c).then_some(())
    });
    println!("{name}: formed in {:?}", started.elapsed());
    c
}

/// Polls every member's `GET /v1/nodes` every 300 ms until stopped: every row that was not OK
/// (or a member that did not list three nodes), with when.
struct DownWatch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(usize, Vec<String>)>,
}

impl DownWatch {
    fn start(c: &Cluster) -> DownWatch {
        let names: Vec<String> = c.hosts.iter().map(|h| h.name.clone()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let (mut polls, mut bad) = (0, vec![]);
            // Bounded: ten minutes at most, whatever happens to the test.
            while !flag.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(600) {
                for (i, name) in names.iter().enumerate() {
                    match statuses(name) {
                        Ok(rows) if rows.len() == 3 && rows.iter().all(|(_, s)| s == "OK") => {}
                        other => bad.push(format!(
                            "{:?}: node{} saw {other:?}",
                            started.elapsed(),
                            i + 1
                        )),
                    }
                }
                polls += 1;
                std::thread::sleep(Duration::from_millis(300));
            }
            (polls, bad)
        });
        DownWatch { stop, thread }
    }

    /// Stops and asserts that no member ever saw a node not OK.
    fn assert_never_down(self, what: &str) {
        self.stop.store(true, Ordering::SeqCst);
        let (polls, bad) = self.thread.join().unwrap();
        assert!(polls >= 3, "{what}: the watcher polled only {polls} times");
        assert!(
            bad.is_empty(),
            "{what}: a node was not OK:\n{}",
            bad.join("\n")
        );
        println!("{what}: every node OK in every view, {polls} polls of 3 views");
    }
}

/// `stackring_gossip_rejected_total{reason}` on one member.
fn rejected(ns: &Netns, reason: &str) -> u64 {
    let (code, body) = http_get(ns, "/metrics");
    assert_eq!(code, 200, "{body}");
    let prefix = format!("stackring_gossip_rejected_total{{reason=\"{reason}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

/// The key ids of each member's keyring as `gossip-key list --json` on `from` shows them.
fn listed(c: &Cluster, from: usize) -> Vec<(String, Vec<String>)> {
    let (code, out, err) = c.cli(from, &["cluster", "gossip-key", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let ids = n["key_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            (n["node"].as_str().unwrap().to_string(), ids)
        })
        .collect()
}

/// Waits until every member lists `want` (key ids, in use first) for every member.
fn wait_listed(c: &Cluster, want: &[String]) {
    for i in 0..3 {
        wait_for(
            &format!("node{} to list keys {want:?} everywhere", i + 1),
            Duration::from_secs(15),
            || {
                let got = listed(c, i);
                (got.len() == 3 && got.iter().all(|(_, ids)| ids == want)).then_some(())
            },
        );
    }
}

/// The key id (as `list` shows it) of a key in hex: bytes 4..8 of a datagram sealed with it.
fn key_id(key_hex: &str) -> String {
    stackring::fuzzing::seal_gossip(key_hex, b"")[4..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn ring_ids(ring: &Value) -> Vec<String> {
    std::iter::once(&ring["primary"])
        .chain(ring["others"].as_array().into_iter().flatten())
        .map(|k| key_id(k.as_str().unwrap()))
        .collect()
}

/// Rotation on a running cluster, by hand and with `rotate`: no node is ever anything but OK, the
/// keyring is durable on every member and survives a restart, and a datagram sealed with the
/// removed key is refused as `unknown_key`.
#[test]
fn rotating_the_gossip_key_keeps_every_node_ok_and_refuses_the_old_key() {
    let _serial = serial();
    let mut c = cluster("e1");
    let old_key = c.keyrings()[0]["primary"].as_str().unwrap().to_string();
    let old = key_id(&old_key);
    assert!(c
        .keyrings()
        .iter()
        .all(|r| r["primary"] == old_key.as_str()));
    wait_listed(&c, std::slice::from_ref(&old));

    let watch = DownWatch::start(&c);
    // 1. install (a key given), on node2: every member has it, still sealing with the old one.
    let new_key = "5eed".repeat(16);
    let new = key_id(&new_key);
    let (code, out, err) = c.cli(1, &["cluster", "gossip-key", "install", &new_key]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("applied on every live member"), "{out}");
    assert!(
        !out.contains(&new_key) && !err.contains(&new_key),
        "the key is never echoed"
    );
    for ring in c.keyrings() {
        assert_eq!(ring_ids(&ring), vec![old.clone(), new.clone()], "{ring}");
    }
    wait_listed(&c, &[old.clone(), new.clone()]);
    // 2. use it (on node3).
    let (code, out, err) = c.cli(2, &["cluster", "gossip-key", "use", &new]);
    assert_eq!(code, 0, "{out}{err}");
    for ring in c.keyrings() {
        assert_eq!(ring_ids(&ring), vec![new.clone(), old.clone()], "{ring}");
    }
    std::thread::sleep(Duration::from_secs(3));
    // 3. remove the old one (on node1).
    let (code, out, err) = c.cli(0, &["cluster", "gossip-key", "remove", &old]);
    assert_eq!(code, 0, "{out}{err}");
    for ring in c.keyrings() {
        assert_eq!(ring_ids(&ring), vec![new.clone()], "{ring}");
    }
    wait_listed(&c, std::slice::from_ref(&new));
    // Gossip flows under the new key alone for a while.
    std::thread::sleep(Duration::from_secs(6));
    watch.assert_never_down("install, use, remove");

    // A datagram sealed with the removed key (what a holder of the old key sends) is refused.
    let before: Vec<u64> = c.hosts.iter().map(|h| rejected(h, "unknown_key")).collect();
    let targets: Vec<SocketAddr> = (1..=3)
        .map(|i| format!("[{}]:7946", c.addr(i)).parse().unwrap())
        .collect();
    let datagram = stackring::fuzzing::seal_gossip(&old_key, b"\x00 not even chitchat");
    c.hosts[0].run(move || {
        let socket = UdpSocket::bind("[::]:0").unwrap();
        for t in &targets {
            socket.send_to(&datagram, t).unwrap();
        }
    });
    wait_for(
        "every member to count the old-key datagram as unknown_key",
        Duration::from_secs(10),
        || {
            c.hosts
                .iter()
                .zip(&before)
                .all(|(h, b)| rejected(h, "unknown_key") > *b)
                .then_some(())
        },
    );

    // 4. `rotate` (on node2): install, use, remove, every node OK throughout.
    let watch = DownWatch::start(&c);
    let (code, out, err) = c.cli(1, &["cluster", "gossip-key", "rotate"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out.matches("applied on every live member").count(),
        3,
        "{out}"
    );
    let rings = c.keyrings();
    let rotated = ring_ids(&rings[0]);
    assert_eq!(rotated.len(), 1, "{rotated:?}");
    assert_ne!(rotated[0], new, "a new key is in use");
    assert!(err.contains(&rotated[0]), "the new id is said: {err}");
    assert!(rings.iter().all(|r| *r == rings[0]), "{rings:?}");
    wait_listed(&c, &rotated);
    std::thread::sleep(Duration::from_secs(6));
    watch.assert_never_down("rotate");

    // 5. The keyring survives a restart: node3 comes back and gossips with the new key only.
    let mut d = c.daemons.remove(2);
    d.signal(libc::SIGTERM);
    let _ = d.child.wait();
    let restarted = d.restart(&c.hosts[2]);
    drop(d);
    c.daemons.push(restarted);
    c.daemons[2].expect("READY=1", Duration::from_secs(30));
    assert_eq!(ring_ids(&c.keyrings()[2]), rotated);
    wait_for(
        "node3 to be OK again everywhere",
        Duration::from_secs(40),
        || all_ok(&c).then_some(()),
    );
    wait_listed(&c, &rotated);
}

/// Hostile input is refused, with the value (or its length) and the fix named, before anything
/// changes: every member's `cluster.json` is what it was (but the seeds the members refresh).
#[test]
fn hostile_gossip_key_input_is_refused_and_changes_nothing() {
    let _serial = serial();
    let c = cluster("e2");
    let primary = key_id(c.keyrings()[0]["primary"].as_str().unwrap());
    wait_listed(&c, std::slice::from_ref(&primary));
    let before = c.records();
    let good = "ab".repeat(32);
    let long = "f".repeat(10_000);
    let bad_hex = format!("{}zz", &good[..62]);
    let too_long = format!("{good}a");
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["install", &bad_hex], 2, "some not hex digits"),
        (vec!["install", &good[..63]], 2, "63 characters"),
        (vec!["install", &too_long], 2, "65 characters"),
        (vec!["install", &long], 2, "10000 characters"),
        (vec!["use", &long], 2, "is not a gossip key id"),
        (
            vec!["use", "0123456"],
            2,
            "'0123456' is not a gossip key id",
        ),
        (vec!["use", "0badc0de"], 1, "0badc0de is not installed"),
        (vec!["remove", "0badc0de"], 1, "0badc0de is not installed"),
        (vec!["remove", &primary], 1, "is the one in use"),
        (
            vec!["use", "zzzzzzzz"],
            2,
            "'zzzzzzzz' is not a gossip key id",
        ),
    ];
    for (args, want_code, want) in cases {
        let mut argv = vec!["cluster", "gossip-key"];
        argv.extend(&args);
        let (code, out, err) = c.cli(0, &argv);
        assert_eq!(code, want_code, "{args:?}: {out}{err}");
        let said = format!("{out}{err}");
        assert!(said.contains(want), "{:?}: {said}", args[0]);
        assert!(said.contains("fix") || want_code == 1, "{said}");
        assert!(
            said.len() < 2_000,
            "the refusal is short: {} bytes",
            said.len()
        );
        assert_eq!(c.records(), before, "{args:?} changed a cluster.json");
    }
    // The daemon checks too (what a program posting to the admin socket gets).
    let (code, doc) = curl_json(
        &c.hosts[0],
        "POST",
        "[::1]",
        "/v1/cluster/gossip_keys",
        Some(&json!({"action": "install", "key": &good[..63]}).to_string()),
    );
    assert_eq!(code, 403, "not over TCP, HTTPS included: {doc}");
    assert!(doc.to_string().contains("admin socket only"), "{doc}");
    assert_eq!(c.records(), before);
}

/// `ChangeGossipKeys` at `to` from inside `ns`, over plaintext or TLS without a client
/// certificate.
fn change_gossip_keys(
    ns: &Netns,
    to: SocketAddr,
    tls: bool,
    request: pb::GossipKeysRequest,
) -> Result<pb::GossipKeysReply, tonic::Status> {
    ns.run(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let uri = format!("http://{to}");
            let channel = if tls {
                // The product's own TLS client, trusting on first use, no client certificate.
                stackring::fuzzing::grpc_tls_channel(&uri).await
            } else {
                tonic::transport::Endpoint::from_shared(uri)
                    .unwrap()
                    .timeout(Duration::from_secs(20))
                    .connect()
                    .await
                    .map_err(|e| e.to_string())
            }
            .unwrap_or_else(|e| panic!("connect to {to}: {e:?}"));
            pb::cluster_client::ClusterClient::new(channel)
                .change_gossip_keys(request)
                .await
                .map(|r| r.into_inner())
        })
    })
}

/// `Cluster.ChangeGossipKeys` is for members only: without a member certificate (plaintext, or
/// TLS without a client certificate) it is refused, whatever `from` claims, and nothing changes.
#[test]
fn change_gossip_keys_without_a_member_certificate_is_refused() {
    let _serial = serial();
    let c = cluster("e3");
    let outsider = c._lan.host("e3x", &[&format!("{}/64", c.addr(0x66))]);
    let before = c.records();
    let target: SocketAddr = format!("[{}]:9095", c.addr(2)).parse().unwrap();
    let requests = [
        pb::GossipKeysRequest {
            node_id: "node2".into(),
            action: "install".into(),
            key: "66".repeat(32),
            key_id: String::new(),
            from: "node1".into(),
        },
        pb::GossipKeysRequest {
            node_id: "node2".into(),
            action: "use".into(),
            key: String::new(),
            key_id: key_id(&"66".repeat(32)),
            from: "node1".into(),
        },
    ];
    for (tls, want, words) in [
        (
            false,
            tonic::Code::FailedPrecondition,
            "only served over TLS",
        ),
        (
            true,
            tonic::Code::PermissionDenied,
            "no cluster certificate",
        ),
    ] {
        for r in requests.clone() {
            for ns in [&outsider, &c.hosts[0]] {
                let answer = change_gossip_keys(ns, target, tls, r.clone());
                let status = answer.expect_err("refused");
                println!("tls={tls} {} from {}: {status:?}", r.action, ns.name);
                assert_eq!(status.code(), want, "{status:?}");
                assert!(status.message().contains(words), "{status:?}");
            }
        }
    }
    assert_eq!(c.records(), before, "nothing changed");
}
