//! SPEC §8 / issue 12, "TLS where credentials or cluster state travel": the bootstrap and admin API
//! over HTTPS (`server.https_listen_port`, 9443), and plain HTTP that answers reads only. Real
//! daemons in network namespaces; a client host on the same bridge; every attack loop bounded.

mod common;
use common::serve::*;
use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct horse";

/// A node on `2001:db8:<net>::1` and a client host on `::c`; the node's address.
fn node_and_client(tag: &str, net: &str) -> (Lan, Netns, Daemon, Netns, IpAddr) {
    let lan = Lan::new(tag);
    let ns = lan.host(&format!("{tag}n"), &[&format!("2001:db8:{net}::1/64")]);
    let mut d = Daemon::start(&ns, "lifecycler: {id: node1}", &[]);
    d.expect("READY=1", Duration::from_secs(20));
    let client = lan.host(&format!("{tag}c"), &[&format!("2001:db8:{net}::c/64")]);
    let ip = format!("2001:db8:{net}::1").parse().unwrap();
    (lan, ns, d, client, ip)
}

/// `curl` from `ns` with `args` (before the URL); (status, JSON body or the text as a string,
/// curl's exit code).
fn curl(ns: &Netns, args: &[&str], url: &str) -> (u16, Value, i32) {
    let out = ns
        .command("curl")
        .args(["-s", "-g", "-m", "20", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    let all = text(&out.stdout);
    let (body, code) = all.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::String(body.to_string())),
        out.status.code().unwrap_or(-1),
    )
}

fn create_body(name: &str) -> String {
    json!({
        "action": "create_cluster",
        "cluster": {"name": name},
        "credentials": {"username": "admin", "password": PASSWORD},
    })
    .to_string()
}

/// The certificate chain the HTTPS port presents to `to` right now (leaf first), from inside `ns`.
fn presented_chain(ns: &Netns, to: SocketAddr) -> Vec<Vec<u8>> {
    ns.run(move || {
        let (raw, chain) = common::tls::exchange(
            to,
            "GET /ready HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .expect("an HTTPS answer");
        assert!(raw.starts_with(b"HTTP/1.1 "), "{}", text(&raw));
        chain.into_iter().map(|c| c.as_ref().to_vec()).collect()
    })
}

fn is_self_signed(der: &[u8]) -> bool {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.issuer() == cert.subject()
}

fn pin_of(der: &[u8]) -> String {
    common::tls::spki_pin(&rustls::pki_types::CertificateDer::from(der.to_vec()))
}

/// Over plain HTTP a create is refused with 403 TlsRequired naming the HTTPS URL, and nothing
/// is created; Basic credentials on a plain GET are refused too and never echoed; a plain
/// `/ring` has no Forget form but says where it is; the same requests over HTTPS work (curl
/// pinned to the key the node presents); the admin CLI on the unix socket is unchanged.
#[test]
fn plain_http_refuses_changes_and_credentials_and_names_the_https_url() {
    let (_lan, ns, d, client, ip) = node_and_client("tlsreq", "5a0");
    let plain = format!("http://[{ip}]:3200");
    let https = format!("https://[{ip}]:{HTTPS_PORT}");

    // A create over plain HTTP: 403 with the documented error shape and the HTTPS URL.
    let body = create_body("plain");
    let (code, doc, _) = curl(
        &client,
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body,
        ],
        &format!("{plain}/v1/bootstrap/create_cluster"),
    );
    assert_eq!(
        (code, doc["error_code"].as_str()),
        (403, Some("TlsRequired")),
        "{doc}"
    );
    let description = doc["description"].as_str().unwrap_or_default();
    assert!(
        description.contains(&format!("{https}/v1/bootstrap/create_cluster")),
        "{doc}"
    );
    assert!(description.contains("fix:"), "{doc}");
    // Nothing was created: the node is still idle, no record on disk.
    let (code, boot, _) = curl(&client, &[], &format!("{plain}/v1/bootstrap"));
    assert_eq!(
        (code, boot["state"].as_str()),
        (200, Some("idle")),
        "{boot}"
    );
    assert!(!d.state_dir.join("cluster.json").exists());

    // The Host the client used names the URL (a name, with the HTTPS port in place of 3200).
    let (code, doc, _) = curl(
        &client,
        &["-X", "POST", "-H", "Host: node1.example:3200", "-d", "{}"],
        &format!("{plain}/v1/nodes/node1/forget"),
    );
    assert_eq!(code, 403, "{doc}");
    assert!(
        doc["description"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!(
                "https://node1.example:{HTTPS_PORT}/v1/nodes/node1/forget"
            )),
        "{doc}"
    );

    // The same create over HTTPS, pinned to the key the node presents (read first, on first use).
    let chain = presented_chain(&client, SocketAddr::new(ip, HTTPS_PORT));
    let pin = pin_of(&chain[0]);
    let wrong = format!("sha256//{}", "A".repeat(43) + "=");
    let (code, _, exit) = curl(
        &client,
        &["-k", "--pinnedpubkey", &wrong],
        &format!("{https}/ready"),
    );
    assert_eq!(
        (code, exit),
        (0, 90),
        "curl refuses a key that is not pinned"
    );
    let (code, doc, _) = curl(
        &client,
        &[
            "-k",
            "--pinnedpubkey",
            &pin,
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &create_body("tls"),
        ],
        &format!("{https}/v1/bootstrap/create_cluster"),
    );
    assert_eq!(code, 200, "{doc}");
    assert!(d.state_dir.join("cluster.json").exists());

    // Basic credentials on a plain GET: 403, and neither the password nor its base64 comes back.
    let (code, doc, _) = curl(
        &client,
        &["-u", &format!("admin:{PASSWORD}")],
        &format!("{plain}/v1/nodes"),
    );
    assert_eq!(
        (code, doc["error_code"].as_str()),
        (403, Some("TlsRequired")),
        "{doc}"
    );
    let echoed = doc.to_string();
    assert!(
        !echoed.contains("correct") && !echoed.contains("YWRtaW4"),
        "credentials echoed: {echoed}"
    );
    assert!(echoed.contains(&format!("{https}/v1/nodes")), "{echoed}");
    // Reads without credentials still work over plain HTTP.
    for path in [
        "/ready",
        "/metrics",
        "/openapi.json",
        "/v1/identity",
        "/v1/nodes",
    ] {
        let (code, doc, _) = curl(&client, &[], &format!("{plain}{path}"));
        assert_eq!(code, 200, "{path}: {doc}");
    }
    // The same GET with the credentials over HTTPS: 200. A change with them reaches the logic
    // (node9 is unknown), not a TLS refusal.
    let (code, doc, _) = curl(
        &client,
        &["-k", "-u", &format!("admin:{PASSWORD}")],
        &format!("{https}/v1/nodes"),
    );
    assert_eq!(code, 200, "{doc}");
    let (code, doc, _) = curl(
        &client,
        &["-k", "-u", &format!("admin:{PASSWORD}"), "-X", "POST"],
        &format!("{https}/v1/nodes/node9/forget"),
    );
    assert!(code != 403 && (400..500).contains(&code), "{code}: {doc}");

    // /ring: read-only over plain HTTP (no form, where the form is), the form over HTTPS; the
    // form's post over plain HTTP is refused like any change.
    let (code, page, _) = curl(&client, &[], &format!("{plain}/ring"));
    let page = page.as_str().unwrap_or_default().to_string();
    assert_eq!(code, 200, "{page}");
    assert!(
        !page.contains("<form") && !page.contains("csrf_token"),
        "{page}"
    );
    assert!(page.contains(&format!("{https}/ring")), "{page}");
    let (code, page, _) = curl(&client, &["-k"], &format!("{https}/ring"));
    let page = page.as_str().unwrap_or_default().to_string();
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("<form method=\"post\" action=\"/ring/forget\">"));
    let (code, doc, _) = curl(
        &client,
        &["-H", &format!("Origin: {plain}"), "-d", "forget=node2"],
        &format!("{plain}/ring/forget"),
    );
    assert_eq!(
        (code, doc["error_code"].as_str()),
        (403, Some("TlsRequired")),
        "{doc}"
    );

    // The admin CLI (unix socket, root only) is unchanged.
    let (code, out, err) = cli(&ns, &d, &["status", "nodes"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("node1"), "{out}");

    // Where operators see endpoints: /v1/identity and identity.env carry HTTPS.
    let (_, id, _) = curl(&client, &[], &format!("{plain}/v1/identity"));
    assert_eq!(id["https"]["listen"], "[::]:9443", "{id}");
    assert!(
        d.env_file()
            .contains(&format!("STACKRING_HTTPS_ADVERTISE=[{ip}]:9443")),
        "{}",
        d.env_file()
    );
}

/// The HTTPS certificate follows the node's state without a restart: before bootstrap the
/// node's self-signed certificate (one certificate), after `create_cluster` its node certificate
/// with the cluster CA (two, the leaf naming `stackring://node/<id>`).
#[test]
fn https_presents_the_self_signed_certificate_then_the_node_certificate_without_restart() {
    let (_lan, _ns, mut d, client, ip) = node_and_client("tlscert", "5a1");
    let to = SocketAddr::new(ip, HTTPS_PORT);
    let before = presented_chain(&client, to);
    assert_eq!(before.len(), 1);
    assert!(is_self_signed(&before[0]));

    let body = create_body("certs");
    let (code, doc, _) = curl(
        &client,
        &[
            "-k",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body,
        ],
        &format!("https://[{ip}]:{HTTPS_PORT}/v1/bootstrap/create_cluster"),
    );
    assert_eq!(code, 200, "{doc}");

    let after = presented_chain(&client, to);
    assert_eq!(after.len(), 2, "leaf and CA");
    assert!(!is_self_signed(&after[0]));
    assert!(is_self_signed(&after[1]), "the cluster CA is the root");
    let sans = common::tls::uri_sans(&rustls::pki_types::CertificateDer::from(after[0].clone()));
    assert!(
        sans.contains(&"stackring://node/node1".to_string()),
        "{sans:?}"
    );
    assert_ne!(pin_of(&before[0]), pin_of(&after[0]));
    assert!(d.child.try_wait().unwrap().is_none(), "no restart");
}

/// A connection from `ns` to `to` that sends `first` and then nothing; how long until the node
/// closes it (`None`: still open after `wait`).
fn held_for(to: SocketAddr, first: &[u8], wait: Duration) -> Option<f64> {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3)).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    let t = Instant::now();
    if !first.is_empty() {
        let _ = s.write_all(first);
    }
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            // An alert, then the close.
            Ok(n) if n > 0 => continue,
            Ok(_) => return Some(t.elapsed().as_secs_f64()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None
            }
            Err(_) => return Some(t.elapsed().as_secs_f64()),
        }
    }
}

/// A legitimate HTTPS `/ready`: its status and milliseconds.
fn ready_over_https(to: SocketAddr) -> (u16, f64) {
    let t = Instant::now();
    let status = common::tls::exchange(
        to,
        "GET /ready HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .ok()
    .and_then(|(raw, _)| {
        text(&raw)
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
    })
    .unwrap_or(0);
    (status, t.elapsed().as_secs_f64() * 1000.0)
}

/// Slow and garbage TLS handshakes: 30 silent connections and 30 that send half a ClientHello are
/// each dropped within the handshake deadline (5 s) while a legitimate client is served at once;
/// then 200 handshakes of garbage bytes are each dropped, and a legitimate client still gets in.
#[test]
fn slow_and_garbage_tls_handshakes_are_dropped_and_do_not_block_others() {
    let (_lan, _ns, d, client, ip) = node_and_client("tlsslow", "5a2");
    let to = SocketAddr::new(ip, HTTPS_PORT);
    // The first bytes of a real ClientHello record: the record header promises 512 bytes,
    // the handshake header 508, and a few arrive.
    let half_hello: &[u8] = &[
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0x11, 0x22, 0x33,
    ];
    let (held, legit) = client.run(move || {
        let held: Vec<std::thread::JoinHandle<(&str, Option<f64>)>> = (0..60)
            .map(|i| {
                std::thread::spawn(move || {
                    if i % 2 == 0 {
                        ("silent", held_for(to, &[], Duration::from_secs(15)))
                    } else {
                        (
                            "half ClientHello",
                            held_for(to, half_hello, Duration::from_secs(15)),
                        )
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        // Meanwhile: legitimate handshakes are served at once.
        let legit: Vec<(u16, f64)> = (0..10)
            .map(|_| {
                let r = ready_over_https(to);
                std::thread::sleep(Duration::from_millis(100));
                r
            })
            .collect();
        let held: Vec<(&str, Option<f64>)> = held.into_iter().map(|h| h.join().unwrap()).collect();
        (held, legit)
    });
    for kind in ["silent", "half ClientHello"] {
        let times: Vec<Option<f64>> = held.iter().filter(|h| h.0 == kind).map(|h| h.1).collect();
        let worst = times
            .iter()
            .map(|t| t.unwrap_or(f64::INFINITY))
            .fold(0.0, f64::max);
        println!(
            "{kind}: {} connections, dropped after at most {worst:.1} s",
            times.len()
        );
        assert!(worst < 7.0, "{kind}: held {worst:.1} s ({times:?})");
    }
    let worst_legit = legit.iter().map(|l| l.1).fold(0.0, f64::max);
    println!("legitimate HTTPS /ready meanwhile: {legit:?}");
    assert!(legit.iter().all(|l| l.0 == 200), "{legit:?}");
    assert!(
        worst_legit < 1_000.0,
        "a legitimate client waited {worst_legit:.0} ms"
    );

    // 200 handshakes of garbage bytes (8 at a time), each dropped; bounded in time.
    let (dropped, took) = client.run(move || {
        let started = Instant::now();
        let mut dropped = 0usize;
        for round in 0..25u8 {
            let batch: Vec<std::thread::JoinHandle<Option<f64>>> = (0..8u8)
                .map(|i| {
                    std::thread::spawn(move || {
                        let garbage: Vec<u8> = (0..600u32)
                            .map(|k| (k as u8).wrapping_mul(31).wrapping_add(round ^ i))
                            .collect();
                        held_for(to, &garbage, Duration::from_secs(10))
                    })
                })
                .collect();
            dropped += batch
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|t| t.is_some())
                .count();
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "200 garbage handshakes take over 90 s"
            );
        }
        (dropped, started.elapsed())
    });
    println!("200 garbage handshakes: {dropped} dropped in {took:?}");
    assert_eq!(dropped, 200);
    let (status, ms) = client.run(move || ready_over_https(to));
    assert_eq!(status, 200, "a legitimate client after the garbage");
    println!("legitimate HTTPS /ready after: {ms:.1} ms");
    // Plain HTTP on the HTTPS port is not served either (it is garbage to TLS).
    let plain = client.run(move || {
        held_for(
            to,
            b"GET /ready HTTP/1.1\r\nHost: t\r\n\r\n",
            Duration::from_secs(10),
        )
    });
    assert!(plain.is_some(), "plain HTTP on the HTTPS port is dropped");
    drop(d);
}
