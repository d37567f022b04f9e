//! Certificates between real daemons on a bridge (the "secure cluster" issue): "A node presenting
//! a certificate from another cluster's CA, or an expired one, is refused with a clear error; a
//! join with a wrong pin is refused before any credentials are sent."
//!
//! 1. Another cluster's CA: cluster B's node certificate and key, presented to cluster A's gRPC
//!    relayed calls (`ApplyChange`, `ChangeGossipKeys`), are refused in the handshake (A answers
//!    with the `UnknownCA` alert and logs why); the HTTPS port takes no certificate as a
//!    credential; A's state is unchanged. And the reverse: a member relaying to an address where a server with
//!    another CA's certificate answers refuses it before it sends the change.
//! 2. An expired certificate signed by A's own CA, naming a real member: refused in the
//!    handshake (the `CertificateExpired` alert; A's log names the expiry); the same certificate
//!    made valid is taken (the control).
//!
//! In TLS 1.3 a client's handshake is over before the server checks the client's certificate,
//! so the refusal reaches the client as the first record after it, a fatal alert: the tests read
//! it on the wire. A gRPC client over HTTP/2 reports it as the alert or as a closed connection,
//! depending on whether its request was already under way (both are printed).
//! 3. A join with a wrong `cluster.ca_pin`: against a real cluster, refused naming both pins,
//!    nothing changes on either node; against a fake TLS server that records what it is sent,
//!    not one byte of application data arrives, while without a pin (the control arm) the
//!    same server receives the `Join` request, password included.
//!
//! A certificate valid for one member but naming another in `from` is refused with
//! PERMISSION_DENIED in `tests/adversary.rs` (`apply_change_from_outside_the_cluster…`).
//! Figures are printed (`cargo test --test certs -- --nocapture`).

mod common;
use common::serve::*;
use common::*;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::{json, Value};
use stackring::proto::pb;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One scenario at a time: clusters gossiping side by side on two shared cores would test the
/// scheduler.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// The password `common::bootstrap` (and `join` here) uses.
const PASSWORD: &str = "correct horse";
const GRPC_PORT: u16 = 9095;

/// A host on the LAN with a READY daemon whose stderr (its log) goes to a file. Fields drop in
/// order: the daemon before its namespace.
struct Node {
    d: Daemon,
    ns: Netns,
    ip: IpAddr,
    log: PathBuf,
}

impl Node {
    fn start(lan: &Lan, tag: &str, ip: &str, id: &str) -> Node {
        let ns = lan.host(tag, &[&format!("{ip}/64")]);
        let log = ns.dir().join("daemon-stderr.log");
        let keep_stderr = format!("exec \"$0\" \"$@\" 2>>'{}'", log.display());
        let mut d = Daemon::start_via(
            &ns,
            &["sh", "-c", &keep_stderr],
            STACKRING,
            &format!("lifecycler: {{id: {id}}}"),
            &[],
        );
        d.expect("READY=1", Duration::from_secs(30));
        Node {
            d,
            ns,
            ip: ip.parse().unwrap(),
            log,
        }
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.d.state_dir.join(name))
            .unwrap_or_else(|e| panic!("{name} in {}: {e}", self.ns.name))
    }

    /// `cluster.json`, byte for byte ("" when there is none).
    fn record(&self) -> String {
        std::fs::read_to_string(self.d.state_dir.join("cluster.json")).unwrap_or_default()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn grpc(&self) -> SocketAddr {
        SocketAddr::new(self.ip, GRPC_PORT)
    }

    /// `GET /v1/nodes`, each row's id, status, addresses and admin version (what a change moves).
    fn view(&self) -> Vec<Value> {
        let (code, body) = http_get(&self.ns, "/v1/nodes");
        if code != 200 {
            return vec![];
        }
        let doc: Value = serde_json::from_str(&body).unwrap_or_default();
        doc["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| {
                json!({
                    "id": n["id"], "status": n["status"], "addr": n["addr"],
                    "external_addrs": n["external_addrs"], "admin_version": n["admin_version"],
                })
            })
            .collect()
    }

    /// `GET /v1/bootstrap`.
    fn bootstrap_doc(&self) -> Value {
        let (code, body) = http_get(&self.ns, "/v1/bootstrap");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

/// What a refused call must not change: every node's `cluster.json` and `GET /v1/nodes`.
fn state(nodes: &[&Node]) -> Vec<(String, Vec<Value>)> {
    nodes.iter().map(|n| (n.record(), n.view())).collect()
}

fn all_ok(nodes: &[&Node]) -> bool {
    nodes.iter().all(|n| {
        let rows = n.view();
        rows.len() == nodes.len() && rows.iter().all(|r| r["status"] == "OK")
    })
}

/// `POST /v1/bootstrap/join_cluster` on `n`'s own daemon through `seed`, with `ca_pin` when given:
/// the status, the body, and how long the answer took.
fn join(n: &Node, name: &str, seed: &str, ca_pin: Option<&str>) -> (u16, Value, Duration) {
    let mut cluster = json!({"name": name, "nodes": [seed]});
    if let Some(pin) = ca_pin {
        cluster["ca_pin"] = json!(pin);
    }
    let body = json!({
        "action": "join_cluster",
        "cluster": cluster,
        "credentials": {"username": "admin", "password": PASSWORD},
        "node": {"identity": {}},
    });
    let started = Instant::now();
    let (code, doc) = curl_json(
        &n.ns,
        "POST",
        "[::1]",
        "/v1/bootstrap/join_cluster",
        Some(&body.to_string()),
    );
    (code, doc, started.elapsed())
}

/// A cluster `name` made of `nodes`: the first creates it, the others join through it (retrying
/// while its gRPC is not serving yet); every member lists all of them OK.
fn form(name: &str, nodes: &[&Node]) {
    let started = Instant::now();
    bootstrap(&nodes[0].ns, "create_cluster", name, None);
    let seed = nodes[0].ip.to_string();
    for n in &nodes[1..] {
        let (code, doc, _) = wait_for("the join", Duration::from_secs(40), || {
            let (code, doc, took) = join(n, name, &seed, None);
            (code != 409 || !doc.to_string().contains("cluster_unreachable"))
                .then_some((code, doc, took))
        });
        assert_eq!(code, 200, "join {name} on {}: {doc}", n.ns.name);
    }
    wait_for(
        &format!("cluster {name} to list its nodes OK"),
        Duration::from_secs(40),
        || all_ok(nodes).then_some(()),
    );
    // Each member writes the others into its record's seeds once it has met them: settled
    // before a test compares records.
    if nodes.len() > 1 {
        for n in nodes {
            wait_for(
                &format!("{} to keep its peers in cluster.json", n.ns.name),
                Duration::from_secs(20),
                || {
                    let record: Value = serde_json::from_str(&n.record()).ok()?;
                    (record["seeds"].as_array()?.len() == nodes.len() - 1).then_some(())
                },
            );
        }
    }
    println!(
        "cluster {name}: {} node(s) formed in {:?}",
        nodes.len(),
        started.elapsed()
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn pem_chain(pem: &str) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("PEM certificates")
}

fn pem_key(pem: &str) -> PrivateKeyDer<'static> {
    use rustls::pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).expect("a PEM private key")
}

/// What a caller presents over mutual TLS.
enum Creds {
    /// Through the product's own client (`grpc_tls_channel_as`): `node.pem`, `node.key` and the
    /// CA it sends along with the certificate (and trusts the server to).
    Product {
        cert: String,
        key: String,
        ca: String,
    },
    /// A plain rustls client that trusts any server and presents `chain` (leaf first).
    Chain {
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    },
}

/// A gRPC channel to `to` presenting `creds`.
async fn channel(to: SocketAddr, creds: &Creds) -> Result<tonic::transport::Channel, String> {
    match creds {
        Creds::Product { cert, key, ca } => {
            stackring::fuzzing::grpc_tls_channel_as(&format!("http://{to}"), cert, key, ca).await
        }
        Creds::Chain { chain, key } => {
            let config = common::tls::client_config(b"h2", Some((chain.clone(), key.clone_key())));
            let tcp = tokio::net::TcpStream::connect(to)
                .await
                .map_err(|e| e.to_string())?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(ServerName::IpAddress(to.ip().into()), tcp)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            let once = std::sync::Mutex::new(Some(tls));
            let once = Arc::new(once);
            tonic::transport::Endpoint::from_static("http://node")
                .timeout(Duration::from_secs(20))
                .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                    let stream = once.lock().unwrap_or_else(|p| p.into_inner()).take();
                    async move {
                        stream
                            .map(hyper_util::rt::TokioIo::new)
                            .ok_or_else(|| std::io::Error::other("one connection only"))
                    }
                }))
                .await
                .map_err(|e| error_chain(&e))
        }
    }
}

/// An error with its causes (tonic's own text is often only "transport error").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

fn status_text(s: &tonic::Status) -> String {
    let mut text = format!("{:?}: {}", s.code(), s.message());
    if let Some(cause) = std::error::Error::source(s) {
        text.push_str(" (");
        text.push_str(&error_chain(cause));
        text.push(')');
    }
    text
}

/// A relayed call, as a member sends it.
#[derive(Clone)]
enum Relayed {
    ApplyChange(pb::ApplyChangeRequest),
    GossipKeys(pb::GossipKeysRequest),
}

/// `call` at `to` from inside `ns`, presenting `creds`: the reply (debug text) or what the
/// caller reads of the refusal (connect error, or the status with its causes); how long it took.
fn call(
    ns: &Netns,
    to: SocketAddr,
    creds: Creds,
    call: Relayed,
) -> (Result<String, String>, Duration) {
    ns.run(move || {
        runtime().block_on(async move {
            let started = Instant::now();
            let answer = async {
                let mut client = pb::cluster_client::ClusterClient::new(
                    channel(to, &creds)
                        .await
                        .map_err(|e| format!("connect: {e}"))?,
                );
                match call {
                    Relayed::ApplyChange(r) => client
                        .apply_change(r)
                        .await
                        .map(|r| format!("{:?}", r.into_inner())),
                    Relayed::GossipKeys(r) => client
                        .change_gossip_keys(r)
                        .await
                        .map(|r| format!("{:?}", r.into_inner())),
                }
                .map_err(|s| status_text(&s))
            }
            .await;
            (answer, started.elapsed())
        })
    })
}

/// What a server says on the wire to a client presenting `chain`: TLS 1.3 ends the client's
/// handshake before the server has checked the client's certificate, so a refusal arrives as the
/// first record after it, a fatal alert. The handshake, the HTTP/2 preface, one read: the alert
/// (or how many bytes came instead).
fn wire_answer(
    ns: &Netns,
    to: SocketAddr,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> String {
    ns.run(move || {
        let config = common::tls::client_config(b"h2", Some((chain, key)));
        let tcp = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(3)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let conn =
            rustls::ClientConnection::new(config, ServerName::IpAddress(to.ip().into())).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
                return format!("handshake: {e}");
            }
        }
        if let Err(e) = tls
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .and_then(|()| tls.flush())
        {
            return format!("write: {e}");
        }
        let mut buf = [0u8; 4096];
        match tls.read(&mut buf) {
            Ok(n) => format!("answered {n} bytes"),
            Err(e) => e.to_string(),
        }
    })
}

/// An `ApplyChange` from `from` for `node` (the proof is not checked before the certificate is).
fn apply_change(node: &str, from: &str) -> Relayed {
    Relayed::ApplyChange(pb::ApplyChangeRequest {
        node_id: node.into(),
        action: "add".into(),
        addrs: vec!["198.51.100.66".into()],
        sent_ms: now_ms(),
        nonce: now_ms(),
        proof: "0".repeat(128),
        from: from.into(),
    })
}

fn install_key(node: &str, from: &str) -> Relayed {
    Relayed::GossipKeys(pb::GossipKeysRequest {
        node_id: node.into(),
        action: "install".into(),
        key: "66".repeat(32),
        key_id: String::new(),
        from: from.into(),
    })
}

/// A node certificate for `id` signed with the CA in `ca_pem`/`ca_key_pem` (as the product makes
/// them: CN and URI SAN `stackring://node/<id>`, both TLS uses), valid from `not_before` to
/// `not_after` (unix seconds), with a new key: (certificate PEM, key PEM).
fn sign_node(
    ca_pem: &str,
    ca_key_pem: &str,
    id: &str,
    not_before: i64,
    not_after: i64,
) -> (String, String) {
    use rcgen::{
        CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        SanType,
    };
    let ca_key = KeyPair::from_pem(ca_key_pem).expect("the CA key");
    let issuer = Issuer::from_ca_cert_pem(ca_pem, ca_key).expect("the CA certificate");
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, id);
    params.subject_alt_names = vec![SanType::URI(
        format!("stackring://node/{id}").try_into().unwrap(),
    )];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.not_before = time::OffsetDateTime::from_unix_timestamp(not_before).unwrap();
    params.not_after = time::OffsetDateTime::from_unix_timestamp(not_after).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Waits (bounded) for a line of `n`'s log containing every one of `words`; returns it.
fn logged(n: &Node, words: &[&str], timeout: Duration) -> String {
    wait_for(&format!("{} to log {words:?}", n.ns.name), timeout, || {
        n.log()
            .lines()
            .find(|l| words.iter().all(|w| l.contains(w)))
            .map(str::to_string)
    })
}

// ---------------------------------------------------------------------------------------------
// A fake TLS server: completes handshakes with any certificate it is given, then records every
// byte of application data it is sent.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Heard {
    connections: usize,
    /// Handshakes that completed.
    handshakes: usize,
    /// Why the others did not.
    failed: Vec<String>,
    /// Every application-data byte received after a handshake, all connections together.
    bytes: Vec<u8>,
}

struct FakeServer {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Heard>,
}

impl FakeServer {
    /// Listens on `at` inside `ns`, presenting `chain` with `key` (ALPN h2); returns once it is
    /// listening. Each connection: the handshake, an HTTP/2 SETTINGS frame (so an HTTP/2 client
    /// goes on), then everything it reads until the client is silent for 2 s.
    fn start(
        ns: &Netns,
        at: SocketAddr,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> FakeServer {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let config = Arc::new(config);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (listening, ready) = std::sync::mpsc::channel();
        let thread = ns.spawn(move || {
            let listener = std::net::TcpListener::bind(at).unwrap();
            listener.set_nonblocking(true).unwrap();
            listening.send(()).unwrap();
            let mut heard = Heard::default();
            let started = Instant::now();
            // Bounded: two minutes at most, whatever happens to the test.
            while !flag.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(120) {
                let tcp = match listener.accept() {
                    Ok((tcp, _)) => tcp,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                    Err(e) => panic!("accept: {e}"),
                };
                heard.connections += 1;
                tcp.set_nonblocking(false).unwrap();
                tcp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                tcp.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
                let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut failed = None;
                while tls.conn.is_handshaking() {
                    if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
                        failed = Some(e.to_string());
                        break;
                    }
                }
                if let Some(why) = failed {
                    heard.failed.push(why);
                    continue;
                }
                heard.handshakes += 1;
                // The server's HTTP/2 preface: an empty SETTINGS frame.
                let _ = tls.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
                let _ = tls.flush();
                let mut buf = [0u8; 16 * 1024];
                while heard.bytes.len() < 1 << 20 {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => heard.bytes.extend_from_slice(&buf[..n]),
                    }
                }
            }
            heard
        });
        ready
            .recv_timeout(Duration::from_secs(10))
            .expect("the fake server listens");
        FakeServer { stop, thread }
    }

    fn stop(self) -> Heard {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("the fake server")
    }
}

/// A self-signed certificate for the fake server (like a node not yet in a cluster): chain, key,
/// and its pin in curl's form.
fn self_signed() -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>, String) {
    let made = rcgen::generate_simple_self_signed(vec!["impostor".to_string()]).unwrap();
    let der = made.cert.der().clone();
    let pin = common::tls::spki_pin(&der);
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
    (vec![der], key, pin)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// 1. Another cluster's CA.
// ---------------------------------------------------------------------------------------------

/// Cluster B's node1 holds a certificate signed by B's CA, naming `node1`, an id that is also a
/// member of cluster A. Presented to A's relayed gRPC calls it is refused in the handshake: A
/// answers with the `UnknownCA` alert, logs that it refused a client certificate and why, and
/// nothing changes in A. A's HTTPS port asks no client certificate, so holding one gets a
/// change nowhere (401). And a member of A relaying a change to an address where a server with
/// B's certificate answers refuses that server before it sends anything.
#[test]
fn a_certificate_from_another_clusters_ca_is_refused() {
    let _serial = serial();
    let lan = Lan::new("crt1");
    let a1 = Node::start(&lan, "c1a1", "2001:db8:c1::1", "node1");
    let a2 = Node::start(&lan, "c1a2", "2001:db8:c1::2", "node2");
    let b1 = Node::start(&lan, "c1b1", "2001:db8:c1::b1", "node1");
    pin_neighbours(&[
        (&a1.ns, a1.ip.to_string()),
        (&a2.ns, a2.ip.to_string()),
        (&b1.ns, b1.ip.to_string()),
    ]);
    form("ringa", &[&a1, &a2]);
    form("ringb", &[&b1]);
    let (a_pin, b_pin) = (
        a1.bootstrap_doc()["tls"]["pin"].clone(),
        b1.bootstrap_doc()["tls"]["pin"].clone(),
    );
    assert_ne!(a_pin, b_pin, "two clusters, two CAs");
    println!("CA pins: A {a_pin}, B {b_pin}");
    let (b_cert, b_key, b_ca, a_ca) = (
        b1.file("node.pem"),
        b1.file("node.key"),
        b1.file("ca.pem"),
        a1.file("ca.pem"),
    );
    assert!(
        common::tls::uri_sans(&pem_chain(&b_cert)[0]).contains(&"stackring://node/node1".into()),
        "B's certificate names node1, a member of A too"
    );
    let before = state(&[&a1, &a2]);

    // (a) B's certificate, sent with B's CA (what a member of B sends), and through the product's
    // own client with A's CA certificate in the chain (a public certificate: it signs nothing of B).
    let attempts: Vec<(&str, Creds, Relayed)> = vec![
        (
            "ApplyChange, B's chain",
            Creds::Chain {
                chain: [pem_chain(&b_cert), pem_chain(&b_ca)].concat(),
                key: pem_key(&b_key),
            },
            apply_change("node2", "node1"),
        ),
        (
            "ChangeGossipKeys, B's chain",
            Creds::Chain {
                chain: [pem_chain(&b_cert), pem_chain(&b_ca)].concat(),
                key: pem_key(&b_key),
            },
            install_key("node2", "node1"),
        ),
        (
            "ApplyChange, product client, B's certificate with A's CA",
            Creds::Product {
                cert: b_cert.clone(),
                key: b_key.clone(),
                ca: a_ca.clone(),
            },
            apply_change("node2", "node1"),
        ),
    ];
    for (what, creds, relayed) in attempts {
        let (answer, took) = call(&b1.ns, a2.grpc(), creds, relayed);
        println!("(a) {what}: refused in {took:?}: {answer:?}");
        answer.expect_err("a certificate of another cluster's CA is refused");
        assert!(
            took < Duration::from_secs(5),
            "{what}: refused at once, took {took:?}"
        );
    }
    // What A says on the wire (the HTTP/2 stacks above report only a closed connection).
    let started = Instant::now();
    let wire = wire_answer(
        &b1.ns,
        a2.grpc(),
        [pem_chain(&b_cert), pem_chain(&b_ca)].concat(),
        pem_key(&b_key),
    );
    println!("(a) on the wire, in {:?}: {wire}", started.elapsed());
    assert!(
        wire.contains("UnknownCA"),
        "A answers B's certificate with the 'unknown CA' alert: {wire}"
    );
    let line = logged(
        &a2,
        &["refused", "client certificate", "UnknownIssuer"],
        Duration::from_secs(5),
    );
    println!("(a) node2 of A logged: {line}");
    assert!(
        line.contains(&b1.ip.to_string()),
        "the log names the caller: {line}"
    );

    // (b) HTTPS asks for no client certificate: holding B's gets an admin change nowhere.
    let https = SocketAddr::new(a2.ip, HTTPS_PORT);
    let chain = [pem_chain(&b_cert), pem_chain(&b_ca)].concat();
    let key = pem_key(&b_key);
    let (status, answer) = b1.ns.run(move || {
        let config = common::tls::client_config(b"http/1.1", Some((chain, key)));
        let tcp = std::net::TcpStream::connect_timeout(&https, Duration::from_secs(3)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let conn =
            rustls::ClientConnection::new(config, ServerName::IpAddress(https.ip().into()))
                .unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let body = r#"{"action":"add","addrs":["198.51.100.66"]}"#;
        let request = format!("POST /v1/nodes/node2/external_addr HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        tls.write_all(request.as_bytes()).unwrap();
        tls.flush().unwrap();
        let raw = String::from_utf8_lossy(&common::tls::read_all(&mut tls).unwrap()).into_owned();
        let status: u16 = raw.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, raw)
    });
    println!("(b) HTTPS POST with B's certificate and no password: {status}");
    assert_eq!(
        status, 401,
        "a certificate is no credential on HTTPS: {answer}"
    );
    assert_eq!(state(&[&a1, &a2]), before, "the refused calls changed A");

    // (c) The reverse: node1 of A relays a change for node2, and what answers at node2's gRPC
    // address (a redirect in node2's namespace, for node1's packets only) is a server with B's
    // certificate. node2 keeps gossiping, so node1 relays rather than gossips the change.
    let fake_at = SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), GRPC_PORT + 1);
    let fake = FakeServer::start(
        &a2.ns,
        fake_at,
        [pem_chain(&b_cert), pem_chain(&b_ca)].concat(),
        pem_key(&b_key),
    );
    let rules = format!(
        "table ip6 certs {{ chain pre {{ type nat hook prerouting priority -100; ip6 saddr {} tcp dport {GRPC_PORT} redirect to :{}; }}; }}",
        a1.ip,
        GRPC_PORT + 1
    );
    a2.ns.nft(&rules);
    let started = Instant::now();
    let (code, doc) = curl_json_auth(
        &a1.ns,
        "/v1/nodes/node2/external_addr",
        r#"{"action":"add","addrs":["198.51.100.67"]}"#,
    );
    let took = started.elapsed();
    let heard = fake.stop();
    println!(
        "(c) node1 relaying to a server with B's certificate: {code} in {took:?}: {doc}; the impostor heard {heard:?}"
    );
    assert_eq!(
        heard.handshakes, 0,
        "node1 completed no handshake: {heard:?}"
    );
    assert!(
        heard.connections >= 1,
        "node1 did reach the impostor: {heard:?}"
    );
    assert!(
        heard.bytes.is_empty(),
        "not one byte of the change was sent"
    );
    assert_eq!(code, 503, "{doc}");
    let said = doc.to_string();
    assert!(
        said.contains("untrusted_peer")
            && said.contains("not signed by this cluster's CA")
            && said.contains("the change was not sent"),
        "the operator reads why: {said}"
    );
    a2.ns
        .command("nft")
        .args(["delete", "table", "ip6", "certs"])
        .status()
        .unwrap();
    assert_eq!(state(&[&a1, &a2]), before, "the refused relay changed A");
}

/// `POST path` over HTTPS on `ns`'s own daemon with the tests' credentials (Basic auth).
fn curl_json_auth(ns: &Netns, path: &str, body: &str) -> (u16, Value) {
    let out = ns
        .command("curl")
        .args([
            "-s",
            "-g",
            "-k",
            "-m",
            "30",
            "-X",
            "POST",
            "-w",
            "\n%{http_code}",
        ])
        .args(["-u", &format!("admin:{PASSWORD}")])
        .args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ])
        .arg(format!("https://[::1]:{HTTPS_PORT}{path}"))
        .output()
        .unwrap();
    let text = text(&out.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::String(body.to_string())),
    )
}

// ---------------------------------------------------------------------------------------------
// 2. An expired certificate from the right CA.
// ---------------------------------------------------------------------------------------------

/// A certificate signed with cluster A's own CA key for `node1` (a member), expired a day ago:
/// refused in the handshake, node2 answers `CertificateExpired` and logs the expiry.
/// One not valid until tomorrow is refused the same way. The control: the same kind of
/// certificate, valid now, passes the handshake and reaches the call's own checks (a forged
/// proof answers `not_a_member`), so it is the dates alone that are refused.
#[test]
fn an_expired_certificate_from_the_clusters_own_ca_is_refused() {
    let _serial = serial();
    let lan = Lan::new("crt2");
    let a1 = Node::start(&lan, "c2a1", "2001:db8:c2::1", "node1");
    let a2 = Node::start(&lan, "c2a2", "2001:db8:c2::2", "node2");
    let outsider = lan.host("c2x", &["2001:db8:c2::66/64"]);
    pin_neighbours(&[
        (&a1.ns, a1.ip.to_string()),
        (&a2.ns, a2.ip.to_string()),
        (&outsider, "2001:db8:c2::66".into()),
    ]);
    form("ringx", &[&a1, &a2]);
    let (ca, ca_key) = (a1.file("ca.pem"), a1.file("ca.key"));
    let now = unix_now();
    let day = 24 * 3600;
    let before = state(&[&a1, &a2]);

    let cases = [
        (
            "expired a day ago",
            now - 30 * day,
            now - day,
            "CertificateExpired",
        ),
        (
            "valid from tomorrow",
            now + day,
            now + 30 * day,
            "CertificateExpired",
        ),
    ];
    for (what, from, until, alert) in cases {
        let (cert, key) = sign_node(&ca, &ca_key, "node1", from, until);
        let wire = wire_answer(&outsider, a2.grpc(), pem_chain(&cert), pem_key(&key));
        println!("node1's certificate {what}: on the wire: {wire}");
        assert!(
            wire.contains(alert),
            "{what}: node2 answers {alert}: {wire}"
        );
        let creds = Creds::Product {
            cert,
            key,
            ca: ca.clone(),
        };
        let (answer, took) = call(&outsider, a2.grpc(), creds, apply_change("node2", "node1"));
        println!("node1's certificate {what}: refused in {took:?}: {answer:?}");
        answer.expect_err("a certificate outside its dates is refused");
        assert!(
            took < Duration::from_secs(5),
            "{what}: refused at once, took {took:?}"
        );
    }
    let line = logged(
        &a2,
        &["refused", "client certificate", "expired"],
        Duration::from_secs(5),
    );
    println!("node2 logged: {line}");
    assert!(
        line.contains("2001:db8:c2::66"),
        "the log names the caller: {line}"
    );
    assert_eq!(state(&[&a1, &a2]), before, "the refused calls changed A");

    // The control: the same certificate, valid now, is taken by the handshake; the call's own
    // checks answer (the proof is forged).
    let (cert, key) = sign_node(&ca, &ca_key, "node1", now - day, now + day);
    let creds = Creds::Product {
        cert,
        key,
        ca: ca.clone(),
    };
    let (answer, took) = call(&outsider, a2.grpc(), creds, apply_change("node2", "node1"));
    println!("control, node1's certificate valid now: answered in {took:?}: {answer:?}");
    let reply = answer.expect("a valid certificate of the cluster's CA passes the handshake");
    assert!(
        reply.contains("not_a_member"),
        "the forged proof is refused: {reply}"
    );
    assert_eq!(state(&[&a1, &a2]), before, "the control changed A");
}

// ---------------------------------------------------------------------------------------------
// 3. A wrong pin.
// ---------------------------------------------------------------------------------------------

/// node2 joins cluster A with `cluster.ca_pin` set to cluster B's CA pin, then to a made-up one:
/// refused at once, the answer naming the pin expected and the pin met; node2 stays out of any
/// cluster and node1's view is unchanged. With A's own pin the same join succeeds.
#[test]
fn a_join_with_a_wrong_pin_is_refused_naming_both_pins() {
    let _serial = serial();
    let lan = Lan::new("crt3");
    let a1 = Node::start(&lan, "c3a1", "2001:db8:c3::1", "node1");
    let a2 = Node::start(&lan, "c3a2", "2001:db8:c3::2", "node2");
    let b1 = Node::start(&lan, "c3b1", "2001:db8:c3::b1", "node1");
    pin_neighbours(&[
        (&a1.ns, a1.ip.to_string()),
        (&a2.ns, a2.ip.to_string()),
        (&b1.ns, b1.ip.to_string()),
    ]);
    form("ringa", &[&a1]);
    form("ringb", &[&b1]);
    let a_pin = a1.bootstrap_doc()["tls"]["pin"]
        .as_str()
        .unwrap()
        .to_string();
    let b_pin = b1.bootstrap_doc()["tls"]["pin"]
        .as_str()
        .unwrap()
        .to_string();
    let made_up = format!("sha256:{}", "5a".repeat(32));
    let before = state(&[&a1]);
    let seed = a1.ip.to_string();
    for (what, pin) in [("cluster B's pin", &b_pin), ("a made-up pin", &made_up)] {
        let (code, doc, took) = join(&a2, "ringa", &seed, Some(pin));
        println!("join with {what}: {code} in {took:?}: {doc}");
        assert_eq!(code, 409, "{what}: {doc}");
        let said = doc["description"].as_str().unwrap_or_default().to_string();
        assert!(
            said.contains(pin.as_str()),
            "{what}: names the pin expected: {doc}"
        );
        assert!(
            said.contains(&a_pin),
            "{what}: names the pin met (A's): {doc}"
        );
        assert!(
            said.contains("cluster.ca_pin"),
            "{what}: names the key to fix: {doc}"
        );
        assert!(
            took < Duration::from_secs(10),
            "{what}: refused at once, took {took:?}"
        );
        let status = a2.bootstrap_doc();
        assert!(
            status["cluster"].is_null(),
            "{what}: node2 joined nothing: {status}"
        );
        assert_eq!(a2.record(), "", "{what}: node2 wrote no cluster.json");
        assert_eq!(state(&[&a1]), before, "{what}: node1's view changed");
    }
    // With A's pin the same join goes through.
    let (code, doc, took) = join(&a2, "ringa", &seed, Some(&a_pin));
    println!("join with A's own pin: {code} in {took:?}");
    assert_eq!(code, 200, "{doc}");
    assert_eq!(a2.bootstrap_doc()["tls"]["pin"], a_pin.as_str());
}

/// The proof that a wrong pin stops the credentials on the joiner: its seed is a fake TLS server
/// (self-signed, on the gRPC port) that records every byte of application data. With a wrong pin
/// it records none: the joiner aborted the handshake. The control arms show the recording works:
/// without a pin (trust on first use), and with the fake server's own pin, the same server
/// receives the `Join` request with the password in it.
#[test]
fn a_wrong_pin_sends_no_credentials() {
    let _serial = serial();
    let lan = Lan::new("crt4");
    let joiner = Node::start(&lan, "c4j", "2001:db8:c4::2", "node2");
    let seed_ip: IpAddr = "2001:db8:c4::1".parse().unwrap();
    let seed = lan.host("c4s", &["2001:db8:c4::1/64"]);
    pin_neighbours(&[
        (&joiner.ns, joiner.ip.to_string()),
        (&seed, seed_ip.to_string()),
    ]);
    let (chain, key, fake_pin) = self_signed();
    let wrong = format!("sha256:{}", "5a".repeat(32));
    let arms: [(&str, Option<&str>); 3] = [
        ("a wrong pin", Some(&wrong)),
        ("no pin (trust on first use)", None),
        ("the fake server's own pin", Some(&fake_pin)),
    ];
    for (what, pin) in arms {
        let fake = FakeServer::start(
            &seed,
            SocketAddr::new(seed_ip, GRPC_PORT),
            chain.clone(),
            key.clone_key(),
        );
        let (code, doc, took) = join(&joiner, "ringa", &seed_ip.to_string(), pin);
        let heard = fake.stop();
        println!(
            "{what}: join answered {code} in {took:?}; the fake seed: {} connection(s), {} handshake(s), {} byte(s) of application data, failed handshakes {:?}",
            heard.connections,
            heard.handshakes,
            heard.bytes.len(),
            heard.failed
        );
        println!("  answer: {doc}");
        assert_ne!(code, 200, "{what}: {doc}");
        assert_eq!(
            joiner.record(),
            "",
            "{what}: the joiner wrote no cluster.json"
        );
        assert!(
            heard.connections >= 1,
            "{what}: the joiner reached the fake seed"
        );
        if what == "a wrong pin" {
            assert_eq!(
                heard.handshakes, 0,
                "{what}: the joiner completed no handshake"
            );
            assert!(
                heard.bytes.is_empty(),
                "{what}: not one byte of application data"
            );
            let said = doc.to_string();
            assert!(
                said.contains(&wrong) && said.contains(&fake_pin_hex(&chain[0])),
                "{what}: the answer names both pins: {said}"
            );
        } else {
            assert!(heard.handshakes >= 1, "{what}: {heard:?}");
            assert!(
                contains(&heard.bytes, PASSWORD.as_bytes()),
                "{what}: the fake seed received the Join request with the password ({} bytes)",
                heard.bytes.len()
            );
        }
    }
}

/// The pin of the certificate `der` in kubeadm's form, as the product writes it in messages.
fn fake_pin_hex(der: &CertificateDer<'_>) -> String {
    use sha2::Digest;
    let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    let digest = sha2::Sha256::digest(parsed.tbs_certificate.subject_pki.raw);
    format!(
        "sha256:{}",
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}
