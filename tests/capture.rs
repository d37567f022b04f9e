//! The "secure cluster" issue: "A packet capture on the bridge (tcpdump or tshark from Debian)
//! during create, join, admin changes and a minute of gossip contains neither the password, nor
//! any node id, address or cluster name in clear text."
//!
//! Three nodes and an operator host on a bridge; `tcpdump -i br0 -U -s 0` runs from before the
//! daemons start until the end. On the wire, in this order:
//! - the operator creates the cluster on node1 over HTTPS (`curl -k`, as the product requires for
//!   credentials), and joins node2 over HTTPS through node1's gRPC port (`cluster.nodes`);
//! - node3 joins declaratively through `memberlist.join_members` (the TCP side of node1's gossip
//!   port tells it where node1's gRPC is: TLS now, in clear before);
//! - admin changes: `stackring node <node3> external_addr set` on node1 (relayed over mutual TLS),
//!   `stackring cluster gossip-key rotate` on node2 (relayed to every member), one change over
//!   HTTPS with the credentials from the operator, and a TLS 1.2 client refused;
//! - a minute of gossip, with the reachability prober's rounds (gRPC health, `GET /ready`, the
//!   gossip port's TCP answer) every ~10 s.
//!
//! The test reads the pcap itself (global header, records, Ethernet → IPv4/IPv6 → TCP/UDP),
//! reassembles each TCP direction by sequence number and searches every TCP stream and UDP
//! datagram payload (not headers: IP headers carry addresses by nature, and so do ARP and
//! neighbour discovery, which are not TCP/UDP) for: the password, the username, the cluster name,
//! every node id, every node address in text (IPv6 compressed, uncompressed and full forms, which
//! the `[addr]:port` forms contain; IPv4 dotted; the external address the admin change sets),
//! case-insensitively, and the strings a node certificate carries (`stackring://node/`, the CA's
//! `stackring cluster CA`), which would show a TLS 1.2 handshake or a certificate sent in clear.
//! It also searches the binary forms chitchat encodes addresses in (IPv6: the 16 bytes; IPv4:
//! version byte, 4 bytes, port little-endian): an unsealed gossip datagram would carry them; as a
//! raw 4-byte IPv4 needle it would match random ciphertext about once per 4 GiB, so the 7-byte
//! chitchat form is used. The host name is gossiped too, but this machine's is too short to
//! search for without chance matches (the ids stand for what gossip carries).
//!
//! Control arm: during the same capture the operator makes one plain-HTTP `GET /v1/nodes` on
//! node2 (a read-only query, allowed in clear) from a fixed source port; the search must find the
//! node ids and the cluster name in that flow, proving it can fail; that one flow is then left
//! out of the main assertion. The capture must also be non-trivial (sealed gossip datagrams, TLS
//! records, TLS 1.3 handshakes on every node port), and its figures are printed
//! (`-- --nocapture`).
//!
//! A second, shorter run does the same on an IPv4-only LAN.

mod common;
use common::serve::*;
use common::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Unique, searchable, never by chance in ciphertext (≥ 9 bytes each).
const CLUSTER: &str = "quokkaringzeta";
const USERNAME: &str = "quokkaadmin";
const PASSWORD: &str = "Quokka-Wire-Passw0rd-4417";
const IDS: [&str; 3] = ["quokkanodealpha", "quokkanodebravo", "quokkanodecharlie"];
/// The external address the CLI's admin change sets on node3.
const EXTERNAL: &str = "203.0.113.177";
/// The external address the operator adds to node3 over HTTPS.
const EXTERNAL_HTTPS: &str = "198.51.100.177";
/// The source port of the control arm's plain-HTTP read.
const CONTROL_PORT: u16 = 47311;
const GOSSIP_PORT: u16 = 7946;
const NODE_PORTS: [u16; 4] = [9095, 3200, HTTPS_PORT, GOSSIP_PORT];

/// The runs of this file one at a time (two shared cores).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn capture_on_the_bridge_ipv6_names_no_secret_id_or_address() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let addrs: Vec<IpAddr> = (1..=3)
        .map(|i| format!("2001:db8:c7::{i}").parse().unwrap())
        .collect();
    run(
        "c7",
        &addrs,
        "2001:db8:c7::99".parse().unwrap(),
        64,
        Duration::from_secs(60),
    );
}

#[test]
fn capture_on_the_bridge_ipv4_names_no_secret_id_or_address() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let addrs: Vec<IpAddr> = (1..=3)
        .map(|i| format!("192.0.2.{}", 70 + i).parse().unwrap())
        .collect();
    run(
        "c4",
        &addrs,
        "192.0.2.99".parse().unwrap(),
        24,
        Duration::from_secs(20),
    );
}

/// `[addr]:port` or `addr:port`.
fn host_port(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
        IpAddr::V4(v4) => format!("{v4}:{port}"),
    }
}

fn url_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// `curl` from the operator's host: (status, body).
fn operator_curl(op: &Netns, args: &[&str]) -> (u16, String) {
    let out = op
        .command("curl")
        .args(["-s", "-g", "-m", "30", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    let body = text(&out.stdout);
    let (body, code) = body.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// A bootstrap POST over HTTPS from the operator's host (`-k`: trust on first use).
fn operator_bootstrap(op: &Netns, node: IpAddr, action: &str, body: serde_json::Value) {
    let url = format!(
        "https://{}:{HTTPS_PORT}/v1/bootstrap/{action}",
        url_host(node)
    );
    let body = body.to_string();
    let (code, answer) = operator_curl(
        op,
        &[
            "-k",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body,
            &url,
        ],
    );
    assert_eq!(code, 200, "{action} on {node}: {answer}");
}

/// `/v1/nodes` as `ns` sees it (over loopback: not on the bridge): ids that are OK and ACTIVE.
fn ok_ids(ns: &Netns, v6: bool) -> Vec<String> {
    let lo = if v6 { "[::1]" } else { "127.0.0.1" };
    let (code, doc) = curl_json(ns, "GET", lo, "/v1/nodes", None);
    if code != 200 {
        return vec![];
    }
    let mut ids: Vec<String> = doc["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|n| n["status"] == "OK" && n["state"] == "ACTIVE")
        .filter_map(|n| n["id"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

fn run(tag: &str, addrs: &[IpAddr], operator: IpAddr, prefix: u8, gossip: Duration) {
    let started = Instant::now();
    let lan = Lan::new(&format!("{tag}lan"));
    let hosts: Vec<Netns> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| lan.host(&format!("{tag}n{}", i + 1), &[&format!("{a}/{prefix}")]))
        .collect();
    let op = lan.host(&format!("{tag}op"), &[&format!("{operator}/{prefix}")]);
    let mut pinned: Vec<(&Netns, String)> = hosts
        .iter()
        .zip(addrs)
        .map(|(h, a)| (h, a.to_string()))
        .collect();
    pinned.push((&op, operator.to_string()));
    let v6 = addrs[0].is_ipv6();
    if v6 {
        pin_neighbours(&pinned);
    }

    let pcap = lan.ns.dir().join("bridge.pcap");
    let mut dump = Tcpdump::start(&lan.ns, &pcap);

    // node1 and node2 wait for the operator; node3 declares its join through node1's gossip port.
    let mut daemons: Vec<Daemon> = hosts[..2]
        .iter()
        .zip(IDS)
        .map(|(ns, id)| Daemon::start(ns, &format!("lifecycler: {{id: {id}}}"), &[]))
        .collect();
    for d in daemons.iter_mut() {
        d.expect("READY=1", Duration::from_secs(30));
    }
    let identity = json!({"identity": {}});
    let credentials = json!({"username": USERNAME, "password": PASSWORD});
    operator_bootstrap(
        &op,
        addrs[0],
        "create_cluster",
        json!({"action": "create_cluster", "cluster": {"name": CLUSTER}, "credentials": credentials, "node": identity}),
    );
    operator_bootstrap(
        &op,
        addrs[1],
        "join_cluster",
        json!({"action": "join_cluster", "cluster": {"name": CLUSTER, "nodes": [addrs[0].to_string()]}, "credentials": credentials, "node": identity}),
    );
    let credentials_file = hosts[2].dir().join("credentials");
    std::fs::write(&credentials_file, format!("{USERNAME}:{PASSWORD}\n")).unwrap();
    let mut third = Daemon::start(
        &hosts[2],
        &format!(
            "lifecycler: {{id: {}}}\ncluster: {{name: {CLUSTER}, credentials_file: '{}', create: false}}\nmemberlist: {{join_members: ['{}']}}\n",
            IDS[2],
            credentials_file.display(),
            host_port(addrs[0], GOSSIP_PORT)
        ),
        &[],
    );
    third.expect("READY=1", Duration::from_secs(30));
    daemons.push(third);
    let mut all: Vec<String> = IDS.iter().map(|s| s.to_string()).collect();
    all.sort();
    for ns in &hosts {
        wait_for("the cluster to form", Duration::from_secs(40), || {
            (ok_ids(ns, v6) == all).then_some(())
        });
    }
    println!("{tag}: cluster formed after {:?}", started.elapsed());

    // Admin changes: through the CLI (admin socket, then relayed between nodes over mutual TLS)
    // and over HTTPS with the credentials from the operator.
    let (code, out, err) = cli(
        &hosts[0],
        &daemons[0],
        &["node", IDS[2], "external_addr", "set", EXTERNAL],
    );
    assert_eq!(code, 0, "external_addr set: {out}{err}");
    let (code, out, err) = cli(&hosts[1], &daemons[1], &["cluster", "gossip-key", "rotate"]);
    assert_eq!(code, 0, "gossip-key rotate: {out}{err}");
    let body = json!({"action": "add", "addrs": [EXTERNAL_HTTPS]}).to_string();
    let url = format!(
        "https://{}:{HTTPS_PORT}/v1/nodes/{}/external_addr",
        url_host(addrs[1]),
        IDS[2]
    );
    let user = format!("{USERNAME}:{PASSWORD}");
    let (code, answer) = operator_curl(
        &op,
        &[
            "-k",
            "-u",
            &user,
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body,
            &url,
        ],
    );
    assert_eq!(code, 200, "external_addr add over HTTPS: {answer}");
    // A TLS 1.2 client is refused in the handshake (its certificate would travel in clear).
    let tls12 = op
        .command("curl")
        .args([
            "-s",
            "-g",
            "-k",
            "-m",
            "10",
            "--tls-max",
            "1.2",
            "-o",
            "/dev/null",
        ])
        .arg(format!(
            "https://{}:{HTTPS_PORT}/v1/bootstrap",
            url_host(addrs[0])
        ))
        .status()
        .unwrap();
    assert!(!tls12.success(), "a TLS 1.2 client got an HTTPS answer");

    // The control arm: a read-only query in clear, from a port the search can tell apart.
    let (code, nodes) = operator_curl(
        &op,
        &[
            "--local-port",
            &CONTROL_PORT.to_string(),
            &format!("http://{}:3200/v1/nodes", url_host(addrs[1])),
        ],
    );
    assert_eq!(code, 200, "{nodes}");

    println!("{tag}: {:?} of gossip with the cluster formed", gossip);
    std::thread::sleep(gossip);
    for ns in &hosts {
        assert_eq!(
            ok_ids(ns, v6),
            all,
            "{}: every node OK after the minute",
            ns.name
        );
    }
    drop(daemons);
    dump.stop();
    let elapsed = started.elapsed();

    let raw = std::fs::read(&pcap).expect("the capture file");
    // Kept for a look with `tcpdump -A -r` or Wireshark (the namespace's folder goes with it).
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let kept = artifacts.join(format!("capture-{tag}.pcap"));
    std::fs::write(&kept, &raw).unwrap();
    println!("{tag}: the capture is in {}", kept.display());
    let capture = Capture::read(&raw);
    let needles = needles(addrs);

    // The control arm can fail the search.
    let control: Vec<&Stream> = capture
        .tcp
        .iter()
        .filter(|(k, _)| k.src_port == CONTROL_PORT || k.dst_port == CONTROL_PORT)
        .map(|(_, s)| s)
        .collect();
    let control_hits: Vec<&str> = needles
        .iter()
        .filter(|n| control.iter().any(|s| n.found_in(&s.bytes)))
        .map(|n| n.label.as_str())
        .collect();
    for id in IDS {
        assert!(
            control_hits.contains(&format!("node id {id}").as_str()),
            "the control arm's plain GET /v1/nodes shows {id}: hits {control_hits:?}"
        );
    }
    assert!(control_hits.contains(&format!("cluster name {CLUSTER}").as_str()));

    // The main assertion: nothing else names them.
    let mut leaks = Vec::new();
    for (key, stream) in &capture.tcp {
        if key.src_port == CONTROL_PORT || key.dst_port == CONTROL_PORT {
            continue;
        }
        for n in &needles {
            if let Some(at) = n.find(&stream.bytes) {
                leaks.push(format!(
                    "TCP {key}: {} at byte {at}: {:?}",
                    n.label,
                    context(&stream.bytes, at)
                ));
            }
        }
    }
    for (key, payload) in &capture.udp {
        for n in &needles {
            if let Some(at) = n.find(payload) {
                leaks.push(format!(
                    "UDP {key}: {} at byte {at}: {:?}",
                    n.label,
                    context(payload, at)
                ));
            }
        }
    }

    // What the capture holds.
    let tls = capture.tls_figures();
    // Sealed: the standard format ("SRg1", 56 bytes around the message) or the compact one ("S2",
    // 40 bytes), which members seal to one another.
    let is_sealed = |p: &[u8]| {
        (p.starts_with(b"SRg1") && p.len() >= 56) || (p.starts_with(b"S2") && p.len() >= 40)
    };
    let sealed = capture.udp.iter().filter(|(_, p)| is_sealed(p)).count();
    let compact = capture
        .udp
        .iter()
        .filter(|(_, p)| is_sealed(p) && p.starts_with(b"S2"))
        .count();
    let unsealed: Vec<String> = capture
        .udp
        .iter()
        .filter(|(k, p)| k.dst_port == GOSSIP_PORT && !is_sealed(p))
        .map(|(k, p)| format!("{k} ({} bytes)", p.len()))
        .collect();
    let plain: Vec<String> = capture
        .tcp
        .iter()
        .filter(|(k, s)| {
            !s.bytes.is_empty()
                && !s.tls
                && k.src_port != CONTROL_PORT
                && k.dst_port != CONTROL_PORT
                && !(k.dst_port == 3200 && s.bytes.starts_with(b"GET /ready "))
                && !(k.src_port == 3200 && s.bytes.ends_with(b"\r\n\r\nready\n"))
        })
        .map(|(k, s)| format!("{k}: {:?}", context(&s.bytes, 0)))
        .collect();
    println!(
        "{tag}: {:.1} s captured: {} packets, {} bytes on the bridge ({} not TCP/UDP: ARP, ND, MLD); \
         {} UDP datagrams ({} sealed gossip, {} of them compact, {} payload bytes); {} TCP flows ({} directions with \
         data, {} payload bytes): {} TLS directions, {} TLS records ({} application data), {} TLS \
         1.3 ServerHellos, {} other, {} ClientHellos with SNI; plain: {} `GET /ready` probes, 1 \
         control flow; {} needles searched",
        elapsed.as_secs_f64(),
        capture.packets,
        capture.bytes,
        capture.other,
        capture.udp.len(),
        sealed,
        compact,
        capture.udp.iter().map(|(_, p)| p.len()).sum::<usize>(),
        capture.flows(),
        capture.tcp.values().filter(|s| !s.bytes.is_empty()).count(),
        capture.tcp.values().map(|s| s.bytes.len()).sum::<usize>(),
        tls.directions,
        tls.records,
        tls.application,
        tls.tls13,
        tls.older,
        tls.sni,
        capture
            .tcp
            .iter()
            .filter(|(k, s)| k.dst_port == 3200 && s.bytes.starts_with(b"GET /ready "))
            .count(),
        needles.len(),
    );
    println!("{tag}: the control arm's plain GET /v1/nodes was found naming: {control_hits:?}");
    for port in NODE_PORTS {
        println!(
            "{tag}:   port {port}: {} TCP flows",
            capture.tcp.keys().filter(|k| k.dst_port == port).count()
        );
    }

    assert!(
        leaks.is_empty(),
        "in clear on the bridge:\n{}",
        leaks.join("\n")
    );
    assert!(
        unsealed.is_empty(),
        "unsealed datagrams to the gossip port: {unsealed:?}"
    );
    assert!(
        plain.is_empty(),
        "TCP payload neither TLS nor the plain probes: {plain:#?}"
    );
    assert!(
        sealed >= 100 * gossip.as_secs() as usize / 10,
        "too few sealed gossip datagrams: {sealed}"
    );
    assert!(tls.records >= 100, "too few TLS records: {}", tls.records);
    assert_eq!(tls.older, 0, "a TLS session below 1.3");
    assert_eq!(tls.sni, 0, "a ClientHello named a server (SNI)");
    for port in [9095, HTTPS_PORT, GOSSIP_PORT] {
        assert!(
            tls.tls13_by_port.get(&port).copied().unwrap_or(0) > 0,
            "no TLS 1.3 session on port {port}: {:?}",
            tls.tls13_by_port
        );
    }
}

/// tcpdump on the LAN's bridge, packet-buffered, whole packets.
struct Tcpdump {
    child: Child,
}

impl Tcpdump {
    fn start(lan: &Netns, file: &std::path::Path) -> Tcpdump {
        let mut child = lan
            .command("tcpdump")
            .args(["-i", "br0", "-U", "-s", "0", "-n", "-B", "8192", "-w"])
            .arg(file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump (scripts/test-deps installs it)");
        // It says "listening on br0" once it captures.
        let mut stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut seen = Vec::new();
            let mut buf = [0u8; 256];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
                if seen.windows(9).any(|w| w == b"listening") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("tcpdump to start listening on br0");
        Tcpdump { child }
    }

    /// SIGINT: tcpdump flushes and exits.
    fn stop(&mut self) {
        // Let the last packets reach the file (-U writes each one as it comes).
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Tcpdump {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What must not be on the wire.
struct Needle {
    label: String,
    bytes: Vec<u8>,
    /// Text: matched ASCII-case-insensitively.
    text: bool,
}

impl Needle {
    fn text(label: String, value: &str) -> Needle {
        Needle {
            label,
            bytes: value.to_ascii_lowercase().into_bytes(),
            text: true,
        }
    }

    fn find(&self, hay: &[u8]) -> Option<usize> {
        hay.windows(self.bytes.len()).position(|w| {
            if self.text {
                w.eq_ignore_ascii_case(&self.bytes)
            } else {
                w == self.bytes.as_slice()
            }
        })
    }

    fn found_in(&self, hay: &[u8]) -> bool {
        self.find(hay).is_some()
    }
}

fn needles(addrs: &[IpAddr]) -> Vec<Needle> {
    let mut out = vec![
        Needle::text("password".into(), PASSWORD),
        Needle::text(format!("username {USERNAME}"), USERNAME),
        Needle::text(format!("cluster name {CLUSTER}"), CLUSTER),
        Needle::text(format!("external address {EXTERNAL}"), EXTERNAL),
        Needle::text(format!("external address {EXTERNAL_HTTPS}"), EXTERNAL_HTTPS),
        Needle::text("a node certificate's URI SAN".into(), "stackring://node/"),
        Needle::text("the cluster CA's name".into(), "stackring cluster CA"),
    ];
    for id in IDS {
        out.push(Needle::text(format!("node id {id}"), id));
    }
    for ip in addrs {
        match ip {
            IpAddr::V6(v6) => {
                let s = v6.segments();
                let forms = [
                    v6.to_string(),
                    s.map(|g| format!("{g:x}")).join(":"),
                    s.map(|g| format!("{g:04x}")).join(":"),
                ];
                for form in forms {
                    out.push(Needle::text(format!("address {form}"), &form));
                }
                out.push(Needle {
                    label: format!("address {v6} (16 bytes)"),
                    bytes: v6.octets().to_vec(),
                    text: false,
                });
            }
            IpAddr::V4(v4) => {
                out.push(Needle::text(format!("address {v4}"), &v4.to_string()));
                let mut chitchat = vec![4u8];
                chitchat.extend_from_slice(&v4.octets());
                chitchat.extend_from_slice(&GOSSIP_PORT.to_le_bytes());
                out.push(Needle {
                    label: format!("address {v4}:{GOSSIP_PORT} (chitchat's binary form)"),
                    bytes: chitchat,
                    text: false,
                });
            }
        }
    }
    out
}

/// Up to 80 bytes from `at`, for the failure message.
fn context(bytes: &[u8], at: usize) -> String {
    String::from_utf8_lossy(&bytes[at..bytes.len().min(at + 80)]).into_owned()
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct FlowKey {
    src: IpAddr,
    src_port: u16,
    dst: IpAddr,
    dst_port: u16,
}

impl std::fmt::Display for FlowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} → {}",
            host_port(self.src, self.src_port),
            host_port(self.dst, self.dst_port)
        )
    }
}

/// One direction of a TCP connection, reassembled by sequence number.
#[derive(Default)]
struct Stream {
    segments: Vec<(u32, Vec<u8>)>,
    base: Option<u32>,
    bytes: Vec<u8>,
    tls: bool,
}

impl Stream {
    fn assemble(&mut self) {
        let base = self.base.unwrap_or_else(|| {
            self.segments
                .iter()
                .map(|(s, _)| *s)
                .min()
                .unwrap_or_default()
        });
        let mut segs: Vec<(u32, &Vec<u8>)> = self
            .segments
            .iter()
            .map(|(seq, data)| (seq.wrapping_sub(base), data))
            .collect();
        segs.sort_by_key(|(off, _)| *off);
        let mut out: Vec<u8> = Vec::new();
        for (off, data) in segs {
            let off = off as usize;
            let end = off + data.len();
            if end <= out.len() {
                continue; // a retransmission
            }
            // A gap (a lost capture) is kept as a gap: the bytes still get searched.
            let from = out.len().saturating_sub(off);
            out.extend_from_slice(&data[from.min(data.len())..]);
        }
        // A TLS record: handshake, alert (a refused TLS 1.2 hello's answer), application data.
        self.tls = out.len() >= 5 && (20..=23).contains(&out[0]) && out[1] == 0x03;
        self.bytes = out;
    }
}

#[derive(Default)]
struct Capture {
    packets: usize,
    bytes: usize,
    /// Not TCP or UDP (ARP, neighbour discovery, MLD).
    other: usize,
    tcp: BTreeMap<FlowKey, Stream>,
    udp: Vec<(FlowKey, Vec<u8>)>,
}

#[derive(Default, Debug)]
struct TlsFigures {
    directions: usize,
    records: usize,
    application: usize,
    tls13: usize,
    older: usize,
    sni: usize,
    tls13_by_port: BTreeMap<u16, usize>,
}

fn be16(b: &[u8]) -> usize {
    u16::from_be_bytes([b[0], b[1]]) as usize
}

impl Capture {
    /// A classic pcap file (tcpdump's `-w`), Ethernet frames.
    fn read(file: &[u8]) -> Capture {
        assert!(file.len() >= 24, "the capture has no pcap header");
        let magic = u32::from_le_bytes(file[0..4].try_into().unwrap());
        let le = match magic {
            0xa1b2c3d4 | 0xa1b23c4d => true,
            _ if u32::from_be_bytes(file[0..4].try_into().unwrap()) == 0xa1b2c3d4
                || u32::from_be_bytes(file[0..4].try_into().unwrap()) == 0xa1b23c4d =>
            {
                false
            }
            other => panic!("not a pcap file (magic {other:#x})"),
        };
        let u32_at = |b: &[u8], at: usize| {
            let w: [u8; 4] = b[at..at + 4].try_into().unwrap();
            if le {
                u32::from_le_bytes(w)
            } else {
                u32::from_be_bytes(w)
            }
        };
        assert_eq!(u32_at(file, 20), 1, "the capture is not Ethernet");
        let mut c = Capture::default();
        let mut at = 24;
        while at + 16 <= file.len() {
            let incl = u32_at(file, at + 8) as usize;
            let frame = &file[at + 16..(at + 16 + incl).min(file.len())];
            at += 16 + incl;
            c.packets += 1;
            c.bytes += frame.len();
            c.frame(frame);
        }
        for s in c.tcp.values_mut() {
            s.assemble();
        }
        c
    }

    fn frame(&mut self, f: &[u8]) {
        if f.len() < 14 {
            self.other += 1;
            return;
        }
        let mut ethertype = be16(&f[12..]);
        let mut ip = &f[14..];
        if ethertype == 0x8100 && ip.len() >= 4 {
            ethertype = be16(&ip[2..]);
            ip = &ip[4..];
        }
        let (src, dst, mut proto, mut l4) = match ethertype {
            0x0800 if ip.len() >= 20 => {
                let ihl = (ip[0] & 0x0f) as usize * 4;
                let total = be16(&ip[2..]).min(ip.len());
                let src = IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]));
                let dst = IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]));
                (src, dst, ip[9], &ip[ihl.min(total)..total])
            }
            0x86dd if ip.len() >= 40 => {
                let len = (40 + be16(&ip[4..])).min(ip.len());
                let a: [u8; 16] = ip[8..24].try_into().unwrap();
                let b: [u8; 16] = ip[24..40].try_into().unwrap();
                (
                    IpAddr::V6(Ipv6Addr::from(a)),
                    IpAddr::V6(Ipv6Addr::from(b)),
                    ip[6],
                    &ip[40..len],
                )
            }
            _ => {
                self.other += 1;
                return;
            }
        };
        // IPv6 extension headers (hop-by-hop, routing, destination options) before TCP/UDP.
        while matches!(proto, 0 | 43 | 60) && l4.len() >= 8 {
            let len = (l4[1] as usize + 1) * 8;
            proto = l4[0];
            l4 = &l4[len.min(l4.len())..];
        }
        match proto {
            6 if l4.len() >= 20 => {
                let key = FlowKey {
                    src,
                    src_port: be16(l4) as u16,
                    dst,
                    dst_port: be16(&l4[2..]) as u16,
                };
                let seq = u32::from_be_bytes(l4[4..8].try_into().unwrap());
                let off = ((l4[12] >> 4) as usize * 4).min(l4.len());
                let syn = l4[13] & 0x02 != 0;
                let stream = self.tcp.entry(key).or_default();
                if syn {
                    stream.base = Some(seq.wrapping_add(1));
                }
                if l4.len() > off {
                    stream.segments.push((seq, l4[off..].to_vec()));
                }
            }
            17 if l4.len() >= 8 => {
                let key = FlowKey {
                    src,
                    src_port: be16(l4) as u16,
                    dst,
                    dst_port: be16(&l4[2..]) as u16,
                };
                self.udp.push((key, l4[8..].to_vec()));
            }
            _ => self.other += 1,
        }
    }

    /// TCP connections (a pair of directions counts once).
    fn flows(&self) -> usize {
        self.tcp
            .keys()
            .filter(|k| {
                let back = FlowKey {
                    src: k.dst,
                    src_port: k.dst_port,
                    dst: k.src,
                    dst_port: k.src_port,
                };
                **k < back || !self.tcp.contains_key(&back)
            })
            .count()
    }

    /// Walks the TLS records of every TLS direction: counts them, reads each ServerHello's
    /// version (supported_versions) and each ClientHello's extensions (server_name).
    fn tls_figures(&self) -> TlsFigures {
        let mut t = TlsFigures::default();
        for (key, s) in self.tcp.iter().filter(|(_, s)| s.tls) {
            t.directions += 1;
            let b = &s.bytes;
            let mut at = 0;
            while at + 5 <= b.len() && (20..=23).contains(&b[at]) {
                let len = be16(&b[at + 3..]);
                let body = &b[at + 5..(at + 5 + len).min(b.len())];
                t.records += 1;
                if b[at] == 23 {
                    t.application += 1;
                }
                if b[at] == 22 && !body.is_empty() {
                    match body[0] {
                        // A ClientHello with a server_name extension.
                        1 if hello_extensions(body, true).iter().any(|(ty, _)| *ty == 0) => {
                            t.sni += 1;
                        }
                        2 => {
                            let v13 = hello_extensions(body, false)
                                .iter()
                                .any(|(ty, data)| *ty == 43 && data.as_slice() == [3, 4]);
                            if v13 {
                                t.tls13 += 1;
                                *t.tls13_by_port.entry(key.src_port).or_default() += 1;
                            } else {
                                t.older += 1;
                            }
                        }
                        _ => {}
                    }
                }
                at += 5 + len;
            }
        }
        t
    }
}

/// The extensions of a ClientHello (`client`) or ServerHello handshake message: (type, data).
fn hello_extensions(msg: &[u8], client: bool) -> Vec<(u16, Vec<u8>)> {
    let get = |from: usize, n: usize| msg.get(from..from + n);
    // type (1) · length (3) · legacy_version (2) · random (32) · session id
    let mut at = 4 + 2 + 32;
    let Some(&[sid]) = get(at, 1) else {
        return vec![];
    };
    at += 1 + sid as usize;
    if client {
        let Some(l) = get(at, 2) else { return vec![] };
        at += 2 + be16(l);
        let Some(&[c]) = get(at, 1) else {
            return vec![];
        };
        at += 1 + c as usize;
    } else {
        at += 2 + 1; // cipher suite, compression
    }
    let Some(l) = get(at, 2) else { return vec![] };
    let end = (at + 2 + be16(l)).min(msg.len());
    at += 2;
    let mut out = Vec::new();
    while at + 4 <= end {
        let ty = be16(&msg[at..]) as u16;
        let len = be16(&msg[at + 2..]);
        out.push((ty, msg[at + 4..(at + 4 + len).min(end)].to_vec()));
        at += 4 + len;
    }
    out
}
