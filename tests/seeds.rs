//! The conformance suite: one test per operator-visible statement of the three seed documents
//! (`../shared/seeds/`), each quoting the sentence it checks and feeding the seed's own snippet,
//! literally, to real daemons in network namespaces made here (root, as CI runs it).
//!
//! The documents are the oracle: a test asserts what the sentence says, not what the code does.
//! Where stackring deliberately differs (SPEC.md wins over a seed), the test asserts the clear
//! error instead and says so in its comment.
//!
//! Addresses: documentation ranges only (2001:db8::/32, 192.0.2.0/24, 198.51.100.0/24,
//! 203.0.113.0/24); every LAN is a bridge in a namespace of its own, so nothing leaves the test.

mod common;
use common::serve::*;
use common::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// The seeds' snippets, copied literally (checked against the seed files by
// `snippets_are_the_seeds_own_text` when `../shared/seeds` is there).
// ---------------------------------------------------------------------------------------------

/// Redis Enterprise "Multi-IP and IPv6", the `POST /v1/bootstrap/create_cluster` body as printed
/// (trailing spaces, the trailing comma and the `...` included).
const REDIS_CREATE_CLUSTER: &str = concat!(
    "{\n",
    r#"    "action": "create_cluster","#,
    "\n",
    r#"    "cluster": { "#,
    "\n",
    r#"        "name": "cluster.fqdn" "#,
    "\n",
    r#"    },"#,
    "\n",
    r#"    "credentials": {"#,
    "\n",
    r#"       "username": "admin_username","#,
    "\n",
    r#"       "password": "admin_password""#,
    "\n",
    r#"    },"#,
    "\n",
    r#"    "node": {"#,
    "\n",
    r#"       "identity": {"#,
    "\n",
    r#"          "addr": "2001:DB8::/32","#,
    "\n",
    r#"          "external_addr": ["2001:0db8:85a3:0000:0000:8a2e:0370:7334"],"#,
    "\n",
    r#"          "use_internal_ipv6": true"#,
    "\n",
    r#"       },"#,
    "\n",
    r#"    },"#,
    "\n",
    r#"    ..."#,
    "\n",
    "}\n",
);

/// Tempo "Configure IPv6", "Protocol configuration", the YAML block as printed.
const TEMPO_IPV6_BLOCK: &str = r#"memberlist:
  bind_addr:
    - '::'
  bind_port: 7946

compactor:
  ring:
    kvstore:
      store: memberlist
    enable_inet6: true

metrics_generator:
  ring:
    enable_inet6: true

ingester:
  lifecycler:
    address: '::'
    enable_inet6: true

server:
  grpc_listen_address: '::0'
  grpc_listen_port: 9095
  http_listen_address: '::0'
  http_listen_port: 3200
"#;

/// Tempo "sidecar proxies": the `grpc_listen_port` example.
const TEMPO_GRPC_LISTEN_PORT: &str = "server:\n  grpc_listen_port: 12345\n";
/// Tempo "sidecar proxies": the ingester's lifecycler port (the seed's odd indentation kept).
const TEMPO_LIFECYCLER_PORT: &str = "ingester:\n   lifecycler:\n       port: 12345\n";
/// Tempo "sidecar proxies": the metrics-generator's instance port.
const TEMPO_INSTANCE_PORT: &str = "metrics_generator:\n  ring:\n    instance_port: 12345\n";

const T: Duration = Duration::from_secs(15);
const PASSWORD: &str = "correct horse";
const HOSTS_OK: &str = "127.0.0.1 localhost\n::1 localhost\n";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A node on `lan`, prepared as the Redis seed asks (`::1 localhost` in its `/etc/hosts`).
fn node(lan: &Lan, tag: &str, cidrs: &[&str]) -> Netns {
    let ns = lan.host(tag, cidrs);
    ns.set_hosts(HOSTS_OK);
    ns
}

/// `stackring serve` with `yaml` (no `node:` section), READY, its identity decided (`/ready`).
fn serve(ns: &Netns, yaml: &str) -> Daemon {
    let mut d = Daemon::start(ns, yaml, &[]);
    d.expect("READY=1", T);
    wait_for(&format!("{} to answer /ready with 200", ns.name), T, || {
        (api(ns, "GET", "/ready", None).0 == 200).then_some(())
    });
    d
}

/// `curl` inside `ns`; (status, JSON body or the text as a string); status 0 when nothing answered.
fn curl(ns: &Netns, method: &str, url: &str, body: Option<&str>, accept: &str) -> (u16, Value) {
    let mut cmd = ns.command("curl");
    cmd.args([
        "-s",
        "-g",
        "--connect-timeout",
        "3",
        "--max-time",
        "40",
        "-X",
        method,
        "-w",
        "\n%{http_code}",
        "-H",
        "Content-Type: application/json",
        "-H",
        &format!("Accept: {accept}"),
    ]);
    if let Some(b) = body {
        cmd.args(["--data-binary", b]);
    }
    if url.starts_with("https://") {
        // The node's own certificate, trusted on first use (the test has no pin to give).
        cmd.arg("-k");
    }
    cmd.arg(url);
    let out = cmd.output().unwrap();
    let all = text(&out.stdout);
    let (body, code) = all.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::String(body.to_string())),
    )
}

/// The node's own HTTP API from inside its namespace: `[::1]`, or `127.0.0.1` when nothing
/// answers there (the listen rule itself is checked strictly in its own test). Reads over plain
/// HTTP; changes over HTTPS on 9443, as Redis Enterprise's REST API (the seeds' requests) is.
fn api(ns: &Netns, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let base = |host: &str| {
        if method == "GET" {
            format!("http://{host}:3200{path}")
        } else {
            format!("https://{host}:{HTTPS_PORT}{path}")
        }
    };
    let (code, doc) = curl(ns, method, &base("[::1]"), body, "application/json");
    if code != 0 {
        return (code, doc);
    }
    curl(ns, method, &base("127.0.0.1"), body, "application/json")
}

fn post(ns: &Netns, path: &str, body: &str) -> (u16, Value) {
    api(ns, "POST", path, Some(body))
}

fn create(ns: &Netns, name: &str, identity: Value) -> (u16, Value) {
    let body = json!({
        "action": "create_cluster",
        "cluster": {"name": name},
        "credentials": {"username": "admin", "password": PASSWORD},
        "node": {"identity": identity},
    });
    post(ns, "/v1/bootstrap/create_cluster", &body.to_string())
}

/// A join with the cluster's name (the shape every stackring version took).
fn join(ns: &Netns, name: &str, seed: &str, identity: Value) -> (u16, Value) {
    let body = json!({
        "action": "join_cluster",
        "cluster": {"name": name, "nodes": [seed]},
        "credentials": {"username": "admin", "password": PASSWORD},
        "node": {"identity": identity},
    });
    post(ns, "/v1/bootstrap/join_cluster", &body.to_string())
}

fn ok(what: &str, (code, doc): (u16, Value)) -> Value {
    assert_eq!(code, 200, "{what}: {doc}");
    doc
}

fn identity_of(ns: &Netns) -> Value {
    let (code, doc) = api(ns, "GET", "/v1/identity", None);
    assert_eq!(code, 200, "{doc}");
    doc
}

fn bootstrap_of(ns: &Netns) -> Value {
    api(ns, "GET", "/v1/bootstrap", None).1
}

fn members(ns: &Netns) -> Vec<Value> {
    let (code, doc) = api(ns, "GET", "/v1/nodes", None);
    if code != 200 {
        return vec![];
    }
    doc["nodes"].as_array().cloned().unwrap_or_default()
}

fn member(ns: &Netns, id: &str) -> Option<Value> {
    members(ns).into_iter().find(|m| m["id"] == id)
}

/// Waits until `ns` lists `n` members, all OK and ACTIVE.
fn converged(ns: &Netns, n: usize) -> Vec<Value> {
    wait_for(
        &format!("{} to list {n} OK ACTIVE members", ns.name),
        T,
        || {
            let all = members(ns);
            (all.len() == n
                && all
                    .iter()
                    .all(|m| m["status"] == "OK" && m["state"] == "ACTIVE"))
            .then_some(all)
        },
    )
}

/// Waits until `ns`'s bootstrap has completed; panics with its last state and error.
fn completed(ns: &Netns) {
    let deadline = Instant::now() + T;
    loop {
        let boot = bootstrap_of(ns);
        if boot["state"] == "completed" {
            return;
        }
        if Instant::now() > deadline {
            panic!("{}: bootstrap not completed within {T:?}: {boot}", ns.name);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `stackring config validate` on `yaml`: (exit, stderr + stdout).
fn validate(yaml: &str) -> (i32, String) {
    let dir = std::env::temp_dir().join(format!("stackring-seeds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("c{}.yaml", rand_suffix()));
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(STACKRING)
        .args(["config", "validate"])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    (
        out.status.code().unwrap_or(-1),
        text(&out.stderr) + &text(&out.stdout),
    )
}

/// Local addresses of `ss -H <args>` inside `ns` (e.g. `*:9095`, `[::]:7946`, `0.0.0.0:7946`).
fn listening(ns: &Netns, args: &[&str]) -> Vec<String> {
    let out = ns.command("ss").arg("-H").args(args).output().unwrap();
    text(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
        .collect()
}

/// A TCP connection to `addr` from inside `ns` (enough to know a gRPC server listens there).
fn tcp_connects(ns: &Netns, addr: &str) -> bool {
    let addr: SocketAddr = addr.parse().unwrap();
    ns.run(move || std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok())
}

fn family_of(addr: &str) -> &'static str {
    let host = addr
        .rsplit_once(':')
        .map(|(h, _)| h)
        .filter(|_| addr.starts_with('[') || addr.matches(':').count() == 1)
        .unwrap_or(addr)
        .trim_start_matches('[')
        .trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => "ipv4",
        Ok(std::net::IpAddr::V6(_)) => "ipv6",
        Err(_) => "not an address",
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Stops a daemon as `systemctl stop` does and waits for it.
fn stop(d: &mut Daemon) {
    d.signal(libc::SIGTERM);
    let deadline = Instant::now() + T;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = d.child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = d.child.kill();
    let _ = d.child.wait();
    panic!("the daemon did not stop within {T:?} of SIGTERM");
}

/// The next `STATUS=` that is not "advertising …" and mentions `needle`: why it is not ready.
fn not_ready_status(d: &mut Daemon, needle: &str) -> String {
    let deadline = Instant::now() + T;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let status = d.expect("STATUS=", left);
        if !status.contains("STATUS=advertising") && status.contains(needle) {
            return status;
        }
    }
}

/// A `serve` whose log (stderr) goes to a file the test reads.
struct Logged {
    child: Child,
    log: PathBuf,
}

impl Logged {
    fn start(ns: &Netns, yaml: &str) -> Logged {
        let dir = ns.dir().join(format!("logged-{}", rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let yaml = format!(
            "{yaml}\nnode: {{runtime_dir: '{}', state_dir: '{}'}}\n",
            dir.join("run").display(),
            dir.join("state").display()
        );
        let config = ns.write_config(&yaml);
        let log = dir.join("serve.log");
        let child = ns
            .command(STACKRING)
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .env("STACKRING_LOG", "stderr")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Logged { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) for the process to exit; its exit code.
    fn exit_code(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `cluster:` section for declarative bootstrap, with its credentials file.
fn declared(ns: &Netns, name: &str, create: bool) -> String {
    let credentials = ns.dir().join("credentials");
    std::fs::write(&credentials, format!("admin:{PASSWORD}\n")).unwrap();
    format!(
        "cluster: {{name: {name}, credentials_file: '{}', create: {create}}}",
        credentials.display()
    )
}

/// Three nodes on a dual-stack LAN: `seed` (dual-stack) has created an IPv6 cluster with
/// `use_internal_ipv6: true`, exactly as the Redis seed's request does (after its cleanup).
struct Ipv6Cluster {
    lan: Lan,
    seed: Netns,
    _seed_daemon: Daemon,
}

fn use_internal_ipv6_cluster(tag: &str, net: &str) -> Ipv6Cluster {
    let lan = Lan::new(tag);
    let seed = node(
        &lan,
        &format!("{tag}s"),
        &["192.0.2.1/24", &format!("2001:db8:{net}::1/64")],
    );
    let seed_daemon = serve(&seed, "lifecycler: {id: seed}");
    ok(
        "create with use_internal_ipv6",
        create(&seed, "c6", json!({"use_internal_ipv6": true})),
    );
    Ipv6Cluster {
        lan,
        seed,
        _seed_daemon: seed_daemon,
    }
}

fn assert_node_bootstrap_error(what: &str, (code, doc): (u16, Value), sub_code: &str) -> String {
    assert_eq!(
        (code, doc["error_code"].as_str(), doc["sub_code"].as_str()),
        (409, Some("NodeBootstrapError"), Some(sub_code)),
        "{what}: {doc}"
    );
    doc["description"].as_str().unwrap_or_default().to_string()
}

// ---------------------------------------------------------------------------------------------
// The snippets are the seeds' own text
// ---------------------------------------------------------------------------------------------

/// Not a seed sentence: guards "each using the seed's snippets literally" against drift.
#[test]
fn snippets_are_the_seeds_own_text() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/seeds");
    let Ok(redis) = std::fs::read_to_string(dir.join("redis-enterprise-multi-ip-ipv6.md")) else {
        println!("{} is not here: nothing to compare", dir.display());
        return;
    };
    let tempo = std::fs::read_to_string(dir.join("tempo-configure-ipv6.md")).unwrap();
    let sidecar = std::fs::read_to_string(dir.join("tempo-sidecar-proxies.md")).unwrap();
    assert!(redis.contains(REDIS_CREATE_CLUSTER));
    assert!(tempo.contains(TEMPO_IPV6_BLOCK));
    for snippet in [
        TEMPO_GRPC_LISTEN_PORT,
        TEMPO_LIFECYCLER_PORT,
        TEMPO_INSTANCE_PORT,
    ] {
        assert!(sidecar.contains(snippet), "{snippet}");
    }
}

// ---------------------------------------------------------------------------------------------
// Redis Enterprise: "Multi-IP and IPv6"
// ---------------------------------------------------------------------------------------------

/// redis-enterprise-multi-ip-ipv6.md: "If the server has only IPv6 interfaces, IPv6 is
/// automatically used for internal and external traffic."
#[test]
fn redis_only_ipv6_interfaces_use_ipv6_for_internal_and_external_traffic() {
    let lan = Lan::new("r6only");
    let host = node(&lan, "r6h", &["2001:db8:601::1/64", "2001:db8:601::2/64"]);
    let client = node(&lan, "r6c", &["2001:db8:601::99/64"]);
    let _d = serve(&host, "lifecycler: {id: only6}");

    let id = identity_of(&host);
    assert_eq!(id["family"], "ipv6", "{id}");
    let internal = id["internal_addr"].as_str().unwrap().to_string();
    assert_eq!(family_of(&internal), "ipv6", "{id}");
    let externals = strings(&id["external_addrs"]);
    assert!(
        !externals.is_empty(),
        "external traffic needs an address: {id}"
    );
    assert!(
        externals.iter().all(|a| family_of(a) == "ipv6"),
        "external traffic is IPv6: {id}"
    );
    // External traffic reaches it over IPv6, at each external address.
    for a in &externals {
        let (code, _) = curl(
            &client,
            "GET",
            &format!("http://[{a}]:3200/ready"),
            None,
            "*/*",
        );
        assert_eq!(code, 200, "a client at [{a}]:3200");
    }
    // And the cluster it creates, with nothing said about families, is IPv6.
    ok("create", create(&host, "only6", json!({})));
    assert_eq!(bootstrap_of(&host)["cluster"]["family"], "ipv6");
    let me = wait_for("the node in its ring", T, || member(&host, "only6"));
    assert_eq!(family_of(me["advertised_grpc"].as_str().unwrap()), "ipv6");
}

/// redis-enterprise-multi-ip-ipv6.md: "\"External traffic\" refers to communications between
/// clients and databases and connections to the Cluster Manager UI." — in an IPv6 cluster, a
/// dual-stack node's UI (`/ring`) and API answer clients at every external address, IPv4 included.
#[test]
fn redis_external_traffic_reaches_the_ui_at_every_external_address() {
    let lan = Lan::new("rui");
    let host = node(&lan, "ruh", &["192.0.2.16/24", "2001:db8:623::16/64"]);
    let client = node(&lan, "ruc", &["192.0.2.17/24", "2001:db8:623::17/64"]);
    let _d = serve(&host, "lifecycler: {id: ui}");
    ok(
        "create with use_internal_ipv6",
        create(&host, "ui6", json!({"use_internal_ipv6": true})),
    );
    let me = wait_for("the node in its ring as IPv6", T, || {
        member(&host, "ui").filter(|m| m["family"] == "ipv6")
    });
    let externals = strings(&me["external_addrs"]);
    assert_eq!(externals, ["192.0.2.16"], "{me}");
    for a in externals.iter().chain([&"2001:db8:623::16".to_string()]) {
        let url = if a.contains(':') {
            format!("http://[{a}]:3200/ring")
        } else {
            format!("http://{a}:3200/ring")
        };
        let (code, page) = curl(&client, "GET", &url, None, "text/html");
        assert_eq!(code, 200, "a client at {url}: {page}");
    }
}

/// redis-enterprise-multi-ip-ipv6.md: "Otherwise, internal traffic uses IPv4 by default."
#[test]
fn redis_dual_stack_uses_ipv4_for_internal_traffic_by_default() {
    let lan = Lan::new("rdual");
    let host = node(&lan, "rdh", &["192.0.2.10/24", "2001:db8:602::10/64"]);
    let _d = serve(&host, "lifecycler: {id: dual}");
    let id = identity_of(&host);
    assert_eq!(
        (id["family"].as_str(), id["internal_addr"].as_str()),
        (Some("ipv4"), Some("192.0.2.10")),
        "{id}"
    );
    ok("create", create(&host, "dual", json!({})));
    assert_eq!(bootstrap_of(&host)["cluster"]["family"], "ipv4");
    let me = wait_for("the node in its ring", T, || member(&host, "dual"));
    assert_eq!(me["addr"], "192.0.2.10", "{me}");
    assert_eq!(me["advertised_grpc"], "192.0.2.10:9095", "{me}");
}

/// redis-enterprise-multi-ip-ipv6.md: "To use IPv6 for internal traffic on a machine with both
/// IPv4 and IPv6 interfaces, set `use_internal_ipv6` to `true` when you create a cluster using
/// the bootstrap REST API request"
#[test]
fn redis_use_internal_ipv6_at_create_makes_a_dual_stack_node_use_ipv6() {
    let lan = Lan::new("rflag");
    let host = node(&lan, "rfh", &["192.0.2.11/24", "2001:db8:603::11/64"]);
    let _d = serve(&host, "lifecycler: {id: flag}");
    ok(
        "create with use_internal_ipv6",
        create(&host, "flag6", json!({"use_internal_ipv6": true})),
    );
    assert_eq!(bootstrap_of(&host)["cluster"]["family"], "ipv6");
    let id = wait_for("the identity to move to IPv6", T, || {
        let id = identity_of(&host);
        (id["family"] == "ipv6").then_some(id)
    });
    assert_eq!(id["internal_addr"], "2001:db8:603::11", "{id}");
    assert_eq!(id["grpc"]["advertise"], "[2001:db8:603::11]:9095", "{id}");
    assert_eq!(id["gossip"]["advertise"], "[2001:db8:603::11]:7946", "{id}");

    // SPEC §2: "use_internal_ipv6: true ... → IPv6; error if the host has no usable IPv6."
    let only4 = node(&lan, "rf4", &["192.0.2.15/24"]);
    let _d4 = serve(&only4, "lifecycler: {id: only4}");
    let (code, doc) = create(&only4, "flag4", json!({"use_internal_ipv6": true}));
    assert_eq!(
        (code, doc["error_code"].as_str()),
        (409, Some("NodeBootstrapError")),
        "{doc}"
    );
    assert!(
        doc["description"]
            .as_str()
            .unwrap_or_default()
            .contains("IPv6"),
        "{doc}"
    );
    assert!(bootstrap_of(&only4)["cluster"].is_null());
}

/// redis-enterprise-multi-ip-ipv6.md, the `create_cluster` request as printed:
/// `"addr": "2001:DB8::/32"` is a network, not an address, and the body (with `...` and a
/// trailing comma) is not JSON. Each is a clear 400 saying where and how to fix it; the node
/// stays idle; the minimal cleanup creates the IPv6 cluster the seed means.
#[test]
fn redis_create_cluster_snippet_literal_then_minimal_cleanup() {
    let lan = Lan::new("rsnip");
    // The seed's external address is not bound here: an external address need not be.
    let host = node(&lan, "rsh", &["192.0.2.12/24", "2001:db8::12/64"]);
    let _d = serve(&host, "lifecycler: {id: snip}");

    // 1. The literal text: not JSON. The 400 says where (line 16, the trailing comma).
    // Its findings are collected so that the later steps still run and report.
    let mut failures = vec![];
    let (code, doc) = post(&host, "/v1/bootstrap/create_cluster", REDIS_CREATE_CLUSTER);
    let description = doc["description"].as_str().unwrap_or_default();
    if code != 400 || !(description.contains("line 16") && description.contains("comma")) {
        failures.push(format!(
            "the literal text: a 400 that says where the body stops being JSON and why: {code} {doc}"
        ));
    }
    if !description.contains("fix") {
        failures.push(format!(
            "the literal text: the 400 must say how to fix it: {doc}"
        ));
    }
    assert_eq!(bootstrap_of(&host)["state"], "idle");

    // 2. The minimal cleanup of the JSON (no trailing comma, no `...`): the CIDR is named, and
    // the fix names this node's own address in that network (not one made up from it).
    let json_only =
        REDIS_CREATE_CLUSTER.replace("       },\n    },\n    ...\n}", "       }\n    }\n}");
    assert_ne!(json_only, REDIS_CREATE_CLUSTER);
    serde_json::from_str::<Value>(&json_only).expect("the cleanup is JSON");
    let (code, doc) = post(&host, "/v1/bootstrap/create_cluster", &json_only);
    let description = doc["description"].as_str().unwrap_or_default();
    for needle in [
        "node.identity.addr",
        "2001:DB8::/32",
        "CIDR",
        "fix",
        "in 2001:db8::/32",
        "'2001:db8::12'",
    ] {
        if code != 400 || !description.contains(needle) {
            failures.push(format!(
                "the cleaned JSON: a 400 naming {needle:?}: {code} {doc}"
            ));
        }
    }
    assert_eq!(bootstrap_of(&host)["state"], "idle");

    // 3. An address of this node where the seed has its network: the cluster of the seed.
    let fixed = json_only.replace("2001:DB8::/32", "2001:DB8::12");
    ok(
        "the cleaned-up request",
        post(&host, "/v1/bootstrap/create_cluster", &fixed),
    );
    let boot = bootstrap_of(&host);
    assert_eq!(
        (
            boot["cluster"]["name"].as_str(),
            boot["cluster"]["family"].as_str()
        ),
        (Some("cluster.fqdn"), Some("ipv6")),
        "{boot}"
    );
    let me = wait_for("the node in its own ring", T, || member(&host, "snip"));
    assert_eq!(me["addr"], "2001:db8::12", "{me}");
    assert_eq!(
        strings(&me["external_addrs"]),
        ["2001:db8:85a3::8a2e:370:7334"],
        "{me}"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// redis-enterprise-multi-ip-ipv6.md: "When other IPv6 nodes join a cluster that has
/// `use_internal_ipv6` enabled, they automatically use IPv6 for internal traffic."
#[test]
fn redis_ipv6_nodes_joining_a_use_internal_ipv6_cluster_use_ipv6_automatically() {
    let c = use_internal_ipv6_cluster("rauto", "604");
    let only6 = node(&c.lan, "ra6", &["2001:db8:604::2/64"]);
    let dual = node(&c.lan, "rad", &["192.0.2.3/24", "2001:db8:604::3/64"]);
    let _d6 = serve(&only6, "lifecycler: {id: only6}");
    let _dd = serve(&dual, "lifecycler: {id: dual}");
    // Neither joiner sets use_internal_ipv6, as the seed tells operators.
    ok(
        "IPv6-only joiner without the flag",
        join(&only6, "c6", "2001:db8:604::1", json!({})),
    );
    ok(
        "dual-stack joiner without the flag",
        join(&dual, "c6", "2001:db8:604::1", json!({})),
    );
    let all = converged(&c.seed, 3);
    for m in &all {
        assert_eq!(m["family"], "ipv6", "{m}");
        assert_eq!(
            family_of(m["advertised_grpc"].as_str().unwrap()),
            "ipv6",
            "{m}"
        );
    }
    let d = all.iter().find(|m| m["id"] == "dual").unwrap();
    assert_eq!(d["addr"], "2001:db8:604::3", "{d}");
    assert_eq!(identity_of(&dual)["family"], "ipv6");
}

/// redis-enterprise-multi-ip-ipv6.md: "Do not manually set `use_internal_ipv6` when joining a
/// node to an existing IPv6 cluster, or a `NodeBootstrapError` can occur if the values do not
/// match."
#[test]
fn redis_use_internal_ipv6_set_differently_at_join_is_a_node_bootstrap_error() {
    let c = use_internal_ipv6_cluster("rmis", "605");
    let dual = node(&c.lan, "rmd", &["192.0.2.5/24", "2001:db8:605::5/64"]);
    let _d = serve(&dual, "lifecycler: {id: dual}");
    let description = assert_node_bootstrap_error(
        "use_internal_ipv6: false into a use_internal_ipv6 cluster",
        join(
            &dual,
            "c6",
            "2001:db8:605::1",
            json!({"use_internal_ipv6": false}),
        ),
        "use_internal_ipv6_mismatch",
    );
    assert!(
        description.contains("IPv6") && description.contains("IPv4"),
        "the error names both families: {description}"
    );
    // Values that match are fine.
    ok(
        "use_internal_ipv6: true, matching",
        join(
            &dual,
            "c6",
            "2001:db8:605::1",
            json!({"use_internal_ipv6": true}),
        ),
    );
    assert_eq!(converged(&c.seed, 2).len(), 2);

    // SPEC §6, the mirror image: `true` into an IPv4 cluster is refused the same way.
    let seed4 = node(&c.lan, "rm4s", &["198.51.100.1/24", "2001:db8:605::41/64"]);
    let _s4 = serve(&seed4, "lifecycler: {id: seed4}");
    ok("create (IPv4)", create(&seed4, "c4", json!({})));
    let dual4 = node(&c.lan, "rm4d", &["198.51.100.2/24", "2001:db8:605::42/64"]);
    let _d4 = serve(&dual4, "lifecycler: {id: dual4}");
    let description = assert_node_bootstrap_error(
        "use_internal_ipv6: true into an IPv4 cluster",
        join(
            &dual4,
            "c4",
            "198.51.100.1",
            json!({"use_internal_ipv6": true}),
        ),
        "use_internal_ipv6_mismatch",
    );
    assert!(
        description.contains("IPv6") && description.contains("IPv4"),
        "{description}"
    );
}

/// redis-enterprise-multi-ip-ipv6.md: "If you try to add a node without an IPv6 interface to a
/// cluster that has `use_internal_ipv6` enabled, a `NodeBootstrapError` occurs."
#[test]
fn redis_node_without_ipv6_into_a_use_internal_ipv6_cluster_is_a_node_bootstrap_error() {
    let c = use_internal_ipv6_cluster("rno6", "606");
    let only4 = node(&c.lan, "rn4", &["192.0.2.6/24"]);
    let _d = serve(&only4, "lifecycler: {id: only4}");
    let description = assert_node_bootstrap_error(
        "an IPv4-only node",
        join(&only4, "c6", "192.0.2.1", json!({})),
        "ipv4_only_node_in_ipv6_cluster",
    );
    assert!(
        description.contains("IPv6") && description.contains("IPv4"),
        "{description}"
    );
    assert_eq!(converged(&c.seed, 1).len(), 1, "nothing joined");
}

/// redis-enterprise-multi-ip-ipv6.md: "Joining a node that only has IPv4 network interfaces to a
/// master node with IPv6 enabled causes a `NodeBootstrapError`."
///
/// The joiner names the master's internal (IPv6) address, as the seed's join note says, and
/// cannot reach it: a `NodeBootstrapError` that names the address it tried and a fix.
#[test]
fn redis_ipv4_only_node_to_an_ipv6_master_is_a_node_bootstrap_error() {
    // The master: IPv6 only, so its cluster is IPv6 without any flag.
    let lan = Lan::new("r4to6");
    let master = node(&lan, "r46m", &["2001:db8:607::1/64"]);
    let _m = serve(&master, "lifecycler: {id: master}");
    ok("create", create(&master, "c6", json!({})));
    let only4 = node(&lan, "r46j", &["198.51.100.7/24"]);
    let _j = serve(&only4, "lifecycler: {id: only4}");
    // It cannot reach the master's IPv6 address at all; it can name it, and must be told why.
    let (code, doc) = join(&only4, "c6", "2001:db8:607::1", json!({}));
    assert_eq!(
        (code, doc["error_code"].as_str()),
        (409, Some("NodeBootstrapError")),
        "{doc}"
    );
    let description = doc["description"].as_str().unwrap_or_default();
    assert!(
        description.contains("2001:db8:607::1") && description.contains("fix"),
        "the error names the master's address and a fix: {doc}"
    );
    assert_eq!(converged(&master, 1).len(), 1, "nothing joined");
}

/// redis-enterprise-multi-ip-ipv6.md: "Joining a node that only has IPv6 network interfaces to a
/// master node that does not have IPv6 enabled causes a `NodeBootstrapError`."
#[test]
fn redis_ipv6_only_node_to_a_non_ipv6_master_is_a_node_bootstrap_error() {
    let lan = Lan::new("r6to4");
    let master = node(&lan, "r64m", &["198.51.100.1/24", "2001:db8:608::1/64"]);
    let _m = serve(&master, "lifecycler: {id: master}");
    ok(
        "create (IPv4, the default)",
        create(&master, "c4", json!({})),
    );
    assert_eq!(bootstrap_of(&master)["cluster"]["family"], "ipv4");
    let only6 = node(&lan, "r64j", &["2001:db8:608::2/64"]);
    let _j = serve(&only6, "lifecycler: {id: only6}");
    let description = assert_node_bootstrap_error(
        "an IPv6-only node into an IPv4 cluster",
        join(&only6, "c4", "2001:db8:608::1", json!({})),
        "ipv6_only_node_in_ipv4_cluster",
    );
    assert!(
        description.contains("IPv6") && description.contains("IPv4"),
        "{description}"
    );
    assert_eq!(converged(&master, 1).len(), 1, "nothing joined");
}

/// redis-enterprise-multi-ip-ipv6.md: "The host file `/etc/hosts` on each node in the cluster
/// must include the following entry: `::1 localhost`"
///
/// stackring (SPEC §4, §6) checks it where IPv6 is the internal family: create and join of an
/// IPv6 cluster are refused without it; an IPv4 cluster only warns (a deliberate difference).
#[test]
fn redis_hosts_file_must_include_ipv6_localhost() {
    let lan = Lan::new("rhosts");
    let host = lan.host("rhh", &["2001:db8:609::1/64"]);
    let original = "127.0.0.1 localhost\n# kept as is\n192.0.2.99 printer\n";
    host.set_hosts(original);
    let d = serve(&host, "lifecycler: {id: h1}");

    let description = assert_node_bootstrap_error(
        "create of an IPv6 cluster without ::1 localhost",
        create(&host, "h6", json!({})),
        "hosts_ipv6_localhost",
    );
    assert!(
        description.contains("stackring preflight --fix"),
        "the refusal names the fix: {description}"
    );
    assert!(bootstrap_of(&host)["cluster"].is_null());

    let (_, out, err) = cli(&host, &d, &["preflight", "--fix"]);
    let fixed = std::fs::read_to_string(host.hosts_path()).unwrap();
    assert!(
        fixed.starts_with(original)
            && fixed[original.len()..].lines().any(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                fields.first() == Some(&"::1") && fields.contains(&"localhost")
            }),
        "preflight --fix adds ::1 localhost and keeps every byte: {fixed:?}\n{out}{err}"
    );
    ok("create after the fix", create(&host, "h6", json!({})));

    // Join of an IPv6 cluster is checked the same way.
    let joiner = lan.host("rhj", &["2001:db8:609::2/64"]);
    joiner.set_hosts("127.0.0.1 localhost\n");
    let _j = serve(&joiner, "lifecycler: {id: h2}");
    let description = assert_node_bootstrap_error(
        "join of an IPv6 cluster without ::1 localhost",
        join(&joiner, "h6", "2001:db8:609::1", json!({})),
        "hosts_ipv6_localhost",
    );
    assert!(
        description.contains("stackring preflight --fix"),
        "{description}"
    );

    // Difference (SPEC §4): an IPv4 cluster does not need it.
    let v4 = lan.host("rh4", &["192.0.2.9/24"]);
    v4.set_hosts("127.0.0.1 localhost\n");
    let _v = serve(&v4, "lifecycler: {id: h4}");
    ok("create of an IPv4 cluster", create(&v4, "h4", json!({})));
}

/// redis-enterprise-multi-ip-ipv6.md: "During node configuration on a machine with multiple IP
/// addresses, you must assign one address for internal traffic and one or more other addresses
/// for external traffic."
#[test]
fn redis_multiple_addresses_one_internal_the_others_external() {
    let lan = Lan::new("rmulti");
    let cidrs = [
        "2001:db8:610::1/64",
        "2001:db8:610::2/64",
        "2001:db8:610::3/64",
    ];
    // Assigned by nobody: one is internal, every other one external.
    let auto = node(&lan, "rma", &cidrs);
    let _a = serve(&auto, "lifecycler: {id: auto}");
    let id = identity_of(&auto);
    let internal = id["internal_addr"].as_str().unwrap().to_string();
    let mut all: Vec<String> = strings(&id["external_addrs"]);
    assert!(!all.contains(&internal), "internal is not external: {id}");
    all.push(internal);
    all.sort();
    assert_eq!(
        all,
        ["2001:db8:610::1", "2001:db8:610::2", "2001:db8:610::3"],
        "{id}"
    );

    // Assigned at node configuration (the bootstrap request): exactly what was assigned.
    let assigned = node(
        &lan,
        "rmx",
        &["2001:db8:611::1/64", "2001:db8:611::2/64", "192.0.2.13/24"],
    );
    let _x = serve(&assigned, "lifecycler: {id: assigned}");
    ok(
        "create with one internal and two external addresses",
        create(
            &assigned,
            "multi",
            json!({"addr": "2001:db8:611::2", "use_internal_ipv6": true,
                   "external_addr": ["2001:db8:611::1", "192.0.2.13"]}),
        ),
    );
    let me = wait_for("the node in its ring", T, || member(&assigned, "assigned"));
    assert_eq!(me["addr"], "2001:db8:611::2", "{me}");
    assert_eq!(
        strings(&me["external_addrs"]),
        ["2001:db8:611::1", "192.0.2.13"],
        "{me}"
    );
}

/// redis-enterprise-multi-ip-ipv6.md: "When only one IP address exists on a machine that serves
/// as a Redis Enterprise node, it is used for both internal and external traffic."
#[test]
fn redis_a_single_address_is_used_for_internal_and_external_traffic() {
    let lan = Lan::new("rsingle");
    for (tag, cidr, addr) in [
        ("rs6", "2001:db8:612::1/64", "2001:db8:612::1"),
        ("rs4", "192.0.2.14/24", "192.0.2.14"),
    ] {
        let host = node(&lan, tag, &[cidr]);
        let _d = serve(&host, &format!("lifecycler: {{id: {tag}}}"));
        let id = identity_of(&host);
        assert_eq!(id["internal_addr"], addr, "{id}");
        assert_eq!(strings(&id["external_addrs"]), [addr], "{id}");
        ok("create", create(&host, tag, json!({})));
        let me = wait_for("the node in its ring", T, || member(&host, tag));
        assert_eq!(
            (me["addr"].as_str(), strings(&me["external_addrs"])),
            (Some(addr), vec![addr.to_string()]),
            "{me}"
        );
    }
}

/// redis-enterprise-multi-ip-ipv6.md: "If the cluster uses IPv4 for internal traffic, all
/// communication between cluster nodes uses IPv4 addresses. If the cluster uses IPv6 for internal
/// traffic, all communication between cluster nodes uses IPv6 addresses."
#[test]
fn redis_all_node_to_node_communication_uses_the_cluster_family() {
    // `*:7946` is `[::]` with IPV6_V6ONLY off, as the Tempo seed's `ss` shows gossip.
    let ipv4_gossip: &[&str] = &["0.0.0.0:7946"];
    let ipv6_gossip: &[&str] = &["[::]:7946", "*:7946"];
    for (tag, flag, family, unspecified) in [
        ("rall4", false, "ipv4", ipv4_gossip),
        ("rall6", true, "ipv6", ipv6_gossip),
    ] {
        let lan = Lan::new(tag);
        let a = node(
            &lan,
            &format!("{tag}a"),
            &["192.0.2.21/24", "2001:db8:613::21/64"],
        );
        let b = node(
            &lan,
            &format!("{tag}b"),
            &["192.0.2.22/24", "2001:db8:613::22/64"],
        );
        let _da = serve(&a, "lifecycler: {id: a}");
        let _db = serve(&b, "lifecycler: {id: b}");
        ok(
            "create",
            create(&a, tag, json!({"use_internal_ipv6": flag})),
        );
        let seed = if flag {
            "2001:db8:613::21"
        } else {
            "192.0.2.21"
        };
        // The matching flag, given explicitly: the join rules have tests of their own.
        ok(
            "join",
            join(&b, tag, seed, json!({"use_internal_ipv6": flag})),
        );
        for m in converged(&a, 2) {
            assert_eq!(m["family"], family, "{m}");
            for key in ["addr", "advertised_grpc", "advertised_gossip"] {
                assert_eq!(
                    family_of(m[key].as_str().unwrap()),
                    family,
                    "{tag}: {key} of {m}"
                );
            }
        }
        // Gossip, the node-to-node protocol, binds the cluster family only (SPEC §3).
        for ns in [&a, &b] {
            let gossip: Vec<String> = listening(ns, &["-lnt"])
                .into_iter()
                .chain(listening(ns, &["-lnu"]))
                .filter(|l| l.ends_with(":7946"))
                .collect();
            assert!(
                !gossip.is_empty() && gossip.iter().all(|l| unspecified.contains(&l.as_str())),
                "{tag}: gossip sockets {gossip:?}, want only {unspecified:?}"
            );
        }
    }
}

/// redis-enterprise-multi-ip-ipv6.md, "Change internal IP address", the procedure end to end:
/// stop the node (its daemon, as `systemctl disable`/restart do), change the address in the OS,
/// "From a different cluster node, use `rladmin node addr set` to update the first node's IP
/// address: `rladmin node <ID> addr set <IP address>`", start it, and "Verify the node rejoined
/// the cluster: `rladmin status nodes`".
#[test]
fn redis_change_internal_ip_address_procedure() {
    let lan = Lan::new("rchg");
    let n1 = node(&lan, "rc1", &["2001:db8:614::1/64"]);
    let n2 = node(&lan, "rc2", &["2001:db8:614::2/64"]);
    let d1 = serve(&n1, "lifecycler: {id: node1}");
    let mut d2 = serve(&n2, "lifecycler: {id: node2}");
    ok("create", create(&n1, "chg", json!({})));
    ok("join", join(&n2, "chg", "2001:db8:614::1", json!({})));
    converged(&n1, 2);

    stop(&mut d2);
    wait_for("node1 to see node2 down", T, || {
        member(&n1, "node2").filter(|m| m["status"] != "OK")
    });
    // The operating system's change.
    n2.addr("2001:db8:614::22/64", "eth0");
    n2.ip("addr del 2001:db8:614::2/64 dev eth0");
    // From a different cluster node.
    let (code, out, err) = cli(
        &n1,
        &d1,
        &["node", "node2", "addr", "set", "2001:db8:614::22"],
    );
    assert_eq!(code, 0, "addr set: {out}{err}");
    let mut back = d2.restart(&n2);
    back.expect("READY=1", T);
    let table = wait_for(
        "status nodes to show node2 back at its new address",
        T,
        || {
            let (code, out, _) = cli(&n1, &d1, &["status", "nodes"]);
            (code == 0
                && out.lines().any(|l| {
                    l.starts_with("node:node2")
                        && l.contains("2001:db8:614::22")
                        && l.trim_end().ends_with("OK")
                }))
            .then_some(out)
        },
    );
    assert!(!table.contains("2001:db8:614::2 "), "{table}");
    let (_, out, _) = cli(&n2, &back, &["status", "nodes", "--json"]);
    let listed: Value = serde_json::from_str(&out).unwrap();
    let me = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "node2")
        .cloned()
        .unwrap();
    assert_eq!(
        (
            me["addr"].as_str(),
            me["state"].as_str(),
            me["status"].as_str()
        ),
        (Some("2001:db8:614::22"), Some("ACTIVE"), Some("OK")),
        "{me}"
    );

    // "Repeat this procedure for other cluster nodes to change their internal IP addresses."
    // node1 created the cluster: its peers knew it only at its old address.
    let mut d1 = d1;
    stop(&mut d1);
    wait_for("node2 to see node1 down", T, || {
        member(&n2, "node1").filter(|m| m["status"] != "OK")
    });
    n1.addr("2001:db8:614::11/64", "eth0");
    n1.ip("addr del 2001:db8:614::1/64 dev eth0");
    let (code, out, err) = cli(
        &n2,
        &back,
        &["node", "node1", "addr", "set", "2001:db8:614::11"],
    );
    assert_eq!(code, 0, "addr set: {out}{err}");
    let mut d1 = d1.restart(&n1);
    d1.expect("READY=1", T);
    for (ns, d) in [(&n1, &d1), (&n2, &back)] {
        let deadline = Instant::now() + T;
        loop {
            let (code, out, err) = cli(ns, d, &["status", "nodes", "--json"]);
            let listed: Value = serde_json::from_str(&out).unwrap_or_default();
            let all = listed.as_array().cloned().unwrap_or_default();
            let at = |id: &str, addr: &str| {
                all.iter().any(|m| {
                    m["id"] == id
                        && m["addr"] == addr
                        && m["status"] == "OK"
                        && m["state"] == "ACTIVE"
                })
            };
            if code == 0
                && all.len() == 2
                && at("node1", "2001:db8:614::11")
                && at("node2", "2001:db8:614::22")
            {
                break;
            }
            if Instant::now() > deadline {
                let (_, table, _) = cli(ns, d, &["status", "nodes"]);
                let (_, on1, _) = cli(&n1, &d1, &["status", "nodes"]);
                let (_, on2, _) = cli(&n2, &back, &["status", "nodes"]);
                panic!(
                    "status nodes on {} does not show node1 at 2001:db8:614::11 and node2 at \
                     2001:db8:614::22, both OK, within {T:?}:\n{table}{err}\n\
                     on node1:\n{on1}\non node2:\n{on2}\nGET /v1/nodes on node2: {:#?}",
                    ns.name,
                    api(&n2, "GET", "/v1/nodes", None)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// redis-enterprise-multi-ip-ipv6.md: "Verify the address is valid and bound to an active
/// interface on the node. Failure to do so prevents the node from coming back online and
/// rejoining the cluster."
#[test]
fn redis_changed_address_not_on_an_active_interface_keeps_the_node_offline() {
    let lan = Lan::new("rbind");
    let n1 = node(&lan, "rb1", &["2001:db8:615::1/64"]);
    let n2 = node(&lan, "rb2", &["2001:db8:615::2/64"]);
    let d1 = serve(&n1, "lifecycler: {id: node1}");
    let mut d2 = serve(&n2, "lifecycler: {id: node2}");
    ok("create", create(&n1, "bind", json!({})));
    ok("join", join(&n2, "bind", "2001:db8:615::1", json!({})));
    converged(&n1, 2);

    stop(&mut d2);
    wait_for("node1 to see node2 down", T, || {
        member(&n1, "node2").filter(|m| m["status"] != "OK")
    });
    // The new address is on an interface that is down: bound, but not to an active interface.
    n2.ip("link add eth1 type veth peer name eth1p");
    n2.ip("link set eth1p up");
    n2.addr("2001:db8:615::22/64", "eth1");
    let (code, out, err) = cli(
        &n1,
        &d1,
        &["node", "node2", "addr", "set", "2001:db8:615::22"],
    );
    assert_eq!(code, 0, "addr set: {out}{err}");
    let mut back = d2.restart(&n2);
    back.expect("READY=1", T);
    let status = not_ready_status(&mut back, "2001:db8:615::22");
    assert!(
        status.contains("2001:db8:615::22"),
        "STATUS= says which address and why: {status}"
    );
    // Not online: node1 shows why, and node2 is not an ACTIVE OK member at the new address.
    let seen = wait_for("node1 to show why node2 is not online", T, || {
        member(&n1, "node2")
            .filter(|m| m["state"] == "JOINING" && !m["reason"].as_str().unwrap_or("").is_empty())
    });
    let reason = seen["reason"].as_str().unwrap();
    assert!(
        reason.contains("2001:db8:615::22")
            && (reason.contains("not bound")
                || reason.contains("not active")
                || reason.contains("down")),
        "{seen}"
    );
    let (code, _) = api(&n2, "GET", "/ready", None);
    assert_eq!(code, 503);
    // The interface comes up: the node comes online with its new address.
    n2.ip("link set eth1 up");
    wait_for("node2 ACTIVE at its new address on node1", T, || {
        member(&n1, "node2").filter(|m| {
            m["state"] == "ACTIVE" && m["status"] == "OK" && m["addr"] == "2001:db8:615::22"
        })
    });
}

/// redis-enterprise-multi-ip-ipv6.md: "You cannot change the internal address from IPv4 to IPv6
/// or IPv6 to IPv4 in a running cluster. You can only change the internal address within the
/// same protocol as the cluster."
#[test]
fn redis_addr_set_only_within_the_cluster_protocol() {
    for (tag, flag, other, same) in [
        ("rproto6", true, "192.0.2.32", "2001:db8:616::32"),
        ("rproto4", false, "2001:db8:616::32", "192.0.2.32"),
    ] {
        let lan = Lan::new(tag);
        let n1 = node(
            &lan,
            &format!("{tag}1"),
            &["192.0.2.31/24", "2001:db8:616::31/64"],
        );
        let n2 = node(
            &lan,
            &format!("{tag}2"),
            &["192.0.2.30/24", "2001:db8:616::30/64"],
        );
        let d1 = serve(&n1, "lifecycler: {id: node1}");
        let mut d2 = serve(&n2, "lifecycler: {id: node2}");
        ok(
            "create",
            create(&n1, tag, json!({"use_internal_ipv6": flag})),
        );
        let seed = if flag {
            "2001:db8:616::31"
        } else {
            "192.0.2.31"
        };
        // The matching flag, given explicitly: this test is about addr set, not the join.
        ok(
            "join",
            join(&n2, tag, seed, json!({"use_internal_ipv6": flag})),
        );
        converged(&n1, 2);
        stop(&mut d2);
        wait_for("node1 to see node2 down", T, || {
            member(&n1, "node2").filter(|m| m["status"] != "OK")
        });
        let (code, out, err) = cli(&n1, &d1, &["node", "node2", "addr", "set", other]);
        assert_ne!(code, 0, "{tag}: addr set {other}: {out}");
        assert!(
            err.contains("IPv4") && err.contains("IPv6") && err.contains(other),
            "{tag}: the refusal names both protocols and the address: {err}"
        );
        let (code, out, err) = cli(&n1, &d1, &["node", "node2", "addr", "set", same]);
        assert_eq!(code, 0, "{tag}: addr set {same}: {out}{err}");
    }
}

/// redis-enterprise-multi-ip-ipv6.md, "Known limitations": "Changing an existing cluster's
/// internal traffic from IPv4 to IPv6 is not supported." and "All nodes must use the same protocol
/// for internal traffic."
#[test]
fn redis_known_limitations_no_ipv4_to_ipv6_change_and_one_protocol() {
    let lan = Lan::new("rlimit");
    let n1 = node(&lan, "rl1", &["192.0.2.41/24", "2001:db8:617::41/64"]);
    let n2 = node(&lan, "rl2", &["192.0.2.42/24", "2001:db8:617::42/64"]);
    let _d1 = serve(&n1, "lifecycler: {id: node1}");
    let mut d2 = serve(&n2, "lifecycler: {id: node2}");
    ok("create (IPv4)", create(&n1, "lim", json!({})));
    ok("join", join(&n2, "lim", "192.0.2.41", json!({})));
    converged(&n1, 2);

    // node2 restarted asking for IPv6 in its config: the cluster stays IPv4, and so does node2.
    stop(&mut d2);
    wait_for("node1 to see node2 down", T, || {
        member(&n1, "node2").filter(|m| m["status"] != "OK")
    });
    let yaml = format!(
        "lifecycler: {{id: node2, enable_inet6: true}}\nnode: {{runtime_dir: '{}', state_dir: '{}'}}\n",
        d2.runtime_dir.display(),
        d2.state_dir.display()
    );
    let config = n2.write_config(&yaml);
    let mut again = Daemon::launch(
        &n2,
        config,
        d2.runtime_dir.clone(),
        d2.state_dir.clone(),
        &[],
    );
    // It may refuse to start (exit 78) or start in the cluster's family; it must never be IPv6.
    let mut started = false;
    let mut exited = false;
    let deadline = Instant::now() + T;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = again.child.try_wait() {
            exited = true;
            break;
        }
        if member(&n1, "node2").is_some_and(|m| m["status"] == "OK") {
            started = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if started {
        std::thread::sleep(Duration::from_millis(500));
        for m in members(&n1) {
            assert_eq!(m["family"], "ipv4", "{m}");
            assert_eq!(
                family_of(m["advertised_grpc"].as_str().unwrap()),
                "ipv4",
                "{m}"
            );
        }
        assert_eq!(bootstrap_of(&n2)["cluster"]["family"], "ipv4");
    }
    if !exited {
        stop(&mut again);
    }
    let mut d2 = d2.restart(&n2);
    d2.expect("READY=1", T);
    converged(&n1, 2);

    // node2 loses IPv4: it does not move to IPv6 (it waits for an IPv4 address, saying so).
    n2.ip("addr del 192.0.2.42/24 dev eth0");
    let status = not_ready_status(&mut d2, "IPv4");
    assert!(status.contains("IPv4"), "{status}");
    std::thread::sleep(Duration::from_millis(500));
    for m in members(&n1) {
        assert_eq!(m["family"], "ipv4", "{m}");
        assert!(m["addr"] != "2001:db8:617::42", "{m}");
    }
    // All nodes one protocol: an IPv6-only node cannot join it.
    let only6 = node(&lan, "rl6", &["2001:db8:617::43/64"]);
    let _d6 = serve(&only6, "lifecycler: {id: node3}");
    assert_node_bootstrap_error(
        "an IPv6-only node into the IPv4 cluster",
        join(&only6, "lim", "2001:db8:617::41", json!({})),
        "ipv6_only_node_in_ipv4_cluster",
    );
}

/// redis-enterprise-multi-ip-ipv6.md, "Known limitations": "If a Redis Enterprise node's host
/// machine has both IPv4 and IPv6 addresses, internal communication within the node initially
/// uses IPv4 until the bootstrap process finishes."
#[test]
fn redis_dual_stack_node_uses_ipv4_until_bootstrap_finishes() {
    let lan = Lan::new("rinit");
    let host = node(&lan, "rih", &["192.0.2.51/24", "2001:db8:618::51/64"]);
    let mut d = serve(&host, "lifecycler: {id: init}");
    let before = identity_of(&host);
    assert_eq!(before["family"], "ipv4", "{before}");
    assert_eq!(before["grpc"]["advertise"], "192.0.2.51:9095", "{before}");
    ok(
        "create with use_internal_ipv6",
        create(&host, "init", json!({"use_internal_ipv6": true})),
    );
    d.expect("STATUS=advertising IPv6 2001:db8:618::51", T);
    let after = identity_of(&host);
    assert_eq!(after["family"], "ipv6", "{after}");
    assert_eq!(after["grpc"]["advertise"], "[2001:db8:618::51]:9095");
}

/// redis-enterprise-multi-ip-ipv6.md, "Configure external IP addresses": "You can configure
/// external addresses that are not bound to an active interface, but are otherwise mapped or
/// configured to route traffic to the node (such as AWS Elastic IPs or a load balancer VIP)."
/// with `rladmin node <ID> external_addr add <IP address>`, `... set <IP address 1> <IP address
/// N>` and `... remove <IP address>` → `stackring node <ID> external_addr add|set|remove`.
#[test]
fn redis_external_addr_add_set_remove_including_unbound_addresses() {
    let lan = Lan::new("rext");
    let n1 = node(&lan, "re1", &["2001:db8:619::1/64"]);
    let n2 = node(&lan, "re2", &["2001:db8:619::2/64"]);
    let d1 = serve(&n1, "lifecycler: {id: node1}");
    let _d2 = serve(&n2, "lifecycler: {id: node2}");
    ok("create", create(&n1, "ext", json!({})));
    ok("join", join(&n2, "ext", "2001:db8:619::1", json!({})));
    converged(&n1, 2);
    let externals = |ns: &Netns| {
        member(ns, "node2")
            .map(|m| strings(&m["external_addrs"]))
            .unwrap_or_default()
    };
    // 203.0.113.20 is bound nowhere: an elastic IP.
    let steps: &[(&[&str], &[&str])] = &[
        (
            &["add", "203.0.113.20"],
            &["2001:db8:619::2", "203.0.113.20"],
        ),
        (
            &["set", "198.51.100.21", "2001:db8:ff::21"],
            &["198.51.100.21", "2001:db8:ff::21"],
        ),
        (&["remove", "198.51.100.21"], &["2001:db8:ff::21"]),
    ];
    for (args, want) in steps {
        let mut full = vec!["node", "node2", "external_addr"];
        full.extend_from_slice(args);
        let (code, out, err) = cli(&n1, &d1, &full);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        for ns in [&n1, &n2] {
            wait_for(&format!("{want:?} on {}", ns.name), T, || {
                (externals(ns) == *want).then_some(())
            });
        }
    }
    let (_, table, _) = cli(&n1, &d1, &["status", "nodes"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("node:node2") && l.contains("2001:db8:ff::21")),
        "{table}"
    );
}

/// redis-enterprise-multi-ip-ipv6.md: "While joining a new node to a cluster during the node
/// bootstrap process, when prompted to provide an IP of an existing node in the cluster, if you
/// use the node's IP, provide the node's internal IP address."
#[test]
fn redis_join_through_the_existing_nodes_internal_address() {
    // A dual-stack master of an IPv4 cluster: internal 192.0.2.61, external 2001:db8:620::61.
    let lan = Lan::new("rjoin");
    let master = node(&lan, "rjm", &["192.0.2.61/24", "2001:db8:620::61/64"]);
    let d = serve(&master, "lifecycler: {id: master}");
    ok("create", create(&master, "ci", json!({})));
    // The operator reads the internal address where stackring shows it.
    let table = wait_for("status nodes to list the master", T, || {
        let (code, table, _) = cli(&master, &d, &["status", "nodes"]);
        (code == 0 && table.contains("*node:master")).then_some(table)
    });
    let row = table
        .lines()
        .find(|l| l.starts_with("*node:master"))
        .unwrap();
    let internal = row.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(internal, "192.0.2.61", "{table}");
    let joiner = node(&lan, "rjj", &["192.0.2.62/24", "2001:db8:620::62/64"]);
    let _j = serve(&joiner, "lifecycler: {id: joiner}");
    ok(
        "join through the internal address",
        join(&joiner, "ci", &internal, json!({})),
    );
    for m in converged(&master, 2) {
        assert_eq!(m["family"], "ipv4", "{m}");
    }
}

/// redis-enterprise-multi-ip-ipv6.md, the join as `rladmin` does it (`cluster join nodes <addr>
/// username <u> password <p>`): no cluster name; the joiner learns it. SPEC §6: "`join_cluster`
/// needs no cluster name (the joiner learns it); a name that is given must match."
#[test]
fn redis_join_cluster_without_a_name_learns_it_and_a_wrong_name_is_refused() {
    let lan = Lan::new("rname");
    let seed = node(&lan, "rns", &["2001:db8:621::1/64"]);
    let _s = serve(&seed, "lifecycler: {id: seed}");
    ok("create", create(&seed, "learned", json!({})));

    let wrong = node(&lan, "rnw", &["2001:db8:621::3/64"]);
    let _w = serve(&wrong, "lifecycler: {id: wrong}");
    let description = assert_node_bootstrap_error(
        "a different cluster name",
        join(&wrong, "other", "2001:db8:621::1", json!({})),
        "cluster_name_mismatch",
    );
    assert!(
        description.contains("learned") && description.contains("other"),
        "{description}"
    );

    let joiner = node(&lan, "rnj", &["2001:db8:621::2/64"]);
    let _j = serve(&joiner, "lifecycler: {id: joiner}");
    let body = format!(
        r#"{{"action":"join_cluster","cluster":{{"nodes":["2001:db8:621::1"]}},"credentials":{{"username":"admin","password":"{PASSWORD}"}}}}"#
    );
    ok(
        "join_cluster with no cluster name",
        post(&joiner, "/v1/bootstrap/join_cluster", &body),
    );
    let boot = bootstrap_of(&joiner);
    assert_eq!(
        (boot["state"].as_str(), boot["cluster"]["name"].as_str()),
        (Some("completed"), Some("learned")),
        "{boot}"
    );
    assert_eq!(converged(&seed, 2).len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Bootstrap API input errors (SPEC §7; issue 9 item 7)
// ---------------------------------------------------------------------------------------------

/// SPEC §7: "Bad input anywhere (malformed JSON, a CIDR where an address belongs, a v4 address
/// for a v6 cluster, unknown fields, oversized bodies) gets a clear error and changes nothing."
/// Every 400 of the bootstrap API names the JSON path, the value and a fix.
#[test]
fn bootstrap_api_400s_name_the_path_the_value_and_a_fix() {
    let lan = Lan::new("r400");
    let host = node(&lan, "r4h", &["2001:db8:622::1/64"]);
    let _d = serve(&host, "lifecycler: {id: bad}");
    let credentials = format!(r#""credentials":{{"username":"admin","password":"{PASSWORD}"}}"#);
    let cases: Vec<(&str, String, &str, Vec<&str>)> = vec![
        (
            "create_cluster",
            r#"{"action":"create_cluster","cluster":{"name":"c1"},"credentials":{"username":"admin"}}"#.to_string(),
            "a missing credentials.password",
            vec!["credentials.password"],
        ),
        (
            "create_cluster",
            format!(r#"{{"action":"create_cluster","cluster":{{"name":"c1"}},{credentials},"node":{{"identity":{{"adress":"2001:db8:622::1"}}}}}}"#),
            "an unknown field",
            vec!["node.identity.adress", "addr"],
        ),
        (
            "create_cluster",
            format!(r#"{{"action":"create_cluster","cluster":{{"name":"c1"}},{credentials},"node":{{"identity":{{"use_internal_ipv6":"yes"}}}}}}"#),
            "a string where a boolean belongs",
            vec!["node.identity.use_internal_ipv6", "yes", "true"],
        ),
        (
            "create_cluster",
            format!(r#"{{"action":"create_cluster","cluster":{{"name":"c1"}},{credentials},"node":{{"identity":{{"external_addr":"2001:db8:ff::1"}}}}}}"#),
            "a string where a list belongs",
            vec!["node.identity.external_addr", "2001:db8:ff::1"],
        ),
        (
            "join_cluster",
            format!(r#"{{"action":"join_cluster","cluster":{{"name":"c1","nodes":"2001:db8:622::9"}},{credentials}}}"#),
            "a string where a list of nodes belongs",
            vec!["cluster.nodes", "2001:db8:622::9"],
        ),
        (
            "create_cluster",
            format!(r#"{{"action":"create_cluster","cluster":{{"name":"c1"}},{credentials},"colour":"red"}}"#),
            "an unknown top-level field",
            vec!["colour"],
        ),
        (
            "create_cluster",
            format!(r#"{{"action":"create_cluster","cluster":{{"name":"c1"}},{credentials},"node":{{"identity":{{"addr":"2001:DB8::/32"}}}}}}"#),
            "a CIDR where an address belongs",
            vec!["node.identity.addr", "2001:DB8::/32"],
        ),
    ];
    let mut failures = vec![];
    for (endpoint, body, what, needles) in &cases {
        let (code, doc) = post(&host, &format!("/v1/bootstrap/{endpoint}"), body);
        let description = doc["description"].as_str().unwrap_or_default();
        let missing: Vec<&&str> = needles
            .iter()
            .filter(|n| !description.contains(**n))
            .collect();
        if code != 400 || !missing.is_empty() || !description.contains("fix") {
            failures.push(format!(
                "{what}: status {code}, missing {missing:?} or 'fix' in {doc}"
            ));
        }
        // No parser position standing in for a path.
        if description.contains(" at line 1 column ") {
            failures.push(format!(
                "{what}: parser wording instead of a path: {description}"
            ));
        }
        assert_eq!(bootstrap_of(&host)["state"], "idle", "{what}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Tempo: "Configure IPv6"
// ---------------------------------------------------------------------------------------------

/// tempo-configure-ipv6.md, "Protocol configuration", the block as printed: stackring accepts
/// Tempo's sections; its only refusal is `ingester.lifecycler.address: '::'` (an unspecified
/// address cannot be advertised: exit 78 naming the key, the value and the fix), for
/// `config validate` and for the daemon alike, before anything binds.
#[test]
fn tempo_ipv6_block_as_printed_is_refused_only_for_the_unspecified_advertise_address() {
    let (code, out) = validate(TEMPO_IPV6_BLOCK);
    assert_eq!(code, 78, "{out}");
    let errors: Vec<&str> = out.lines().filter(|l| l.contains("fix")).collect();
    assert_eq!(errors.len(), 1, "exactly one refusal: {out}");
    for needle in ["ingester.lifecycler.address", "'::'", "fix"] {
        assert!(errors[0].contains(needle), "{needle:?} in {out}");
    }

    let lan = Lan::new("tblk");
    let host = node(&lan, "tbh", &["2001:db8:701::1/64"]);
    let mut d = Logged::start(&host, TEMPO_IPV6_BLOCK);
    let code = d.exit_code(T);
    let log = d.log();
    assert_eq!(code, Some(78), "{log}");
    assert!(log.contains("ingester.lifecycler.address"), "{log}");
    assert!(listening(&host, &["-ltn"]).is_empty(), "nothing bound");
}

/// tempo-configure-ipv6.md: "This sample listen configuration will allow the gRPC and HTTP servers
/// to listen on IPv6, and configure the various memberlist components to enable IPv6." — with the
/// one refused line removed, on an IPv6-only host, the servers listen as the seed's
/// `ss -ltn -f inet6` shows (`*:7946`, `*:9095`, `*:3200`) and `ss -ltn -f inet` shows nothing.
#[test]
fn tempo_ipv6_block_without_the_address_line_listens_as_the_seed_shows() {
    let block = TEMPO_IPV6_BLOCK.replace("    address: '::'\n", "");
    assert_ne!(block, TEMPO_IPV6_BLOCK);
    let (code, out) = validate(&block);
    assert_eq!(code, 0, "{out}");

    let lan = Lan::new("tlis");
    let host = node(&lan, "tlh", &["2001:db8:702::1/64"]);
    let _d = serve(&host, &block);
    let id = identity_of(&host);
    assert_eq!(id["family"], "ipv6", "{id}");
    assert_eq!(id["grpc"]["advertise"], "[2001:db8:702::1]:9095", "{id}");
    ok("create", create(&host, "tempo", json!({})));
    let want = ["*:7946", "*:9095", "*:3200"];
    let v6 = wait_for("gossip to listen after create_cluster", T, || {
        let v6 = listening(&host, &["-ltn", "-f", "inet6"]);
        want.iter().all(|w| v6.iter().any(|l| l == w)).then_some(v6)
    });
    assert!(want.iter().all(|w| v6.contains(&w.to_string())), "{v6:?}");
    let v4 = listening(&host, &["-ltn", "-f", "inet"]);
    assert!(v4.is_empty(), "`ss -ltn -f inet` lists nothing: {v4:?}");

    // On a dual-stack host the same block makes the node IPv6 ("enable IPv6").
    let dual = node(&lan, "tld", &["192.0.2.71/24", "2001:db8:702::2/64"]);
    let (code, id) = dual.inspect(&block);
    assert_eq!(code, 0, "{id}");
    assert_eq!(
        (id["family"].as_str(), id["internal_addr"].as_str()),
        (Some("ipv6"), Some("2001:db8:702::2")),
        "{id}"
    );
}

/// tempo-configure-ipv6.md: "This sample listen configuration will allow the gRPC and HTTP servers
/// to listen on IPv6, and configure the various memberlist components to enable IPv6." — the block
/// `stackring render tempo` prints on an IPv6-only host is the seed's block made right: the same
/// sections with `enable_inet6: true`, a routable advertised address instead of `'::'`, and a file
/// stackring itself accepts (operators keep one Tempo-shaped file).
#[test]
fn tempo_rendered_block_is_the_seeds_block_made_right() {
    let lan = Lan::new("trender");
    let host = node(&lan, "trh", &["2001:db8:705::1/64"]);
    let out = host.stackring("", &["render", "tempo"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rendered = text(&out.stdout);
    let tree: Value = serde_saphyr::from_str(&rendered).unwrap();
    for path in [
        "/ingester/lifecycler/enable_inet6",
        "/compactor/ring/enable_inet6",
        "/metrics_generator/ring/enable_inet6",
    ] {
        assert_eq!(tree.pointer(path), Some(&json!(true)), "{path}: {rendered}");
    }
    assert_eq!(
        tree.pointer("/ingester/lifecycler/address"),
        Some(&json!("2001:db8:705::1")),
        "{rendered}"
    );
    assert_eq!(tree.pointer("/memberlist/bind_addr/0"), Some(&json!("::")));
    let (code, out) = validate(&rendered);
    assert_eq!(code, 0, "stackring reads what it renders: {out}");
}

/// tempo-configure-ipv6.md: `grpc_listen_address: '::0'` / `http_listen_address: '::0'` — `::0`
/// is the unspecified address, accepted as a listen address, listening as `*` (both families)
/// like Tempo's Go servers.
#[test]
fn tempo_unspecified_listen_address_written_as_colon_colon_zero_is_accepted() {
    let yaml = "server:\n  grpc_listen_address: '::0'\n  http_listen_address: '::0'\n";
    let (code, out) = validate(yaml);
    assert_eq!(code, 0, "{out}");
    let lan = Lan::new("tzero");
    let host = node(&lan, "tzh", &["192.0.2.72/24", "2001:db8:703::1/64"]);
    let _d = serve(&host, yaml);
    let id = identity_of(&host);
    assert_eq!(id["grpc"]["listen"], "[::]:9095", "{id}");
    assert_eq!(id["http"]["listen"], "[::]:3200", "{id}");
    let v6 = listening(&host, &["-ltn", "-f", "inet6"]);
    assert!(
        v6.contains(&"*:9095".to_string()) && v6.contains(&"*:3200".to_string()),
        "{v6:?}"
    );
    for url in ["http://[::1]:3200/ready", "http://127.0.0.1:3200/ready"] {
        assert_eq!(curl(&host, "GET", url, None, "*/*").0, 200, "{url}");
    }
}

/// tempo-configure-ipv6.md: "In a dual-stack scenario, only one address family may be configured
/// at a time, and all components must be configured for that address family." — a mix is a
/// config error naming both values (exit 78).
#[test]
fn tempo_only_one_address_family_at_a_time() {
    let cases: &[(&str, &[&str])] = &[
        (
            "server:\n  grpc_listen_address: '2001:db8::10'\n  http_listen_address: '192.0.2.10'\n",
            &["2001:db8::10", "192.0.2.10"],
        ),
        (
            "memberlist:\n  bind_addr:\n    - '192.0.2.10'\nserver:\n  grpc_listen_address: '2001:db8::10'\n",
            &["2001:db8::10", "192.0.2.10"],
        ),
        (
            "ingester:\n  lifecycler:\n    address: '192.0.2.10'\n    enable_inet6: true\n",
            &["192.0.2.10", "enable_inet6"],
        ),
        (
            "memberlist:\n  advertise_addr: '2001:db8::10'\ningester:\n  lifecycler:\n    address: '192.0.2.10'\n",
            &["2001:db8::10", "192.0.2.10"],
        ),
        // Components configured for different families.
        (
            "ingester:\n  lifecycler:\n    enable_inet6: true\nmetrics_generator:\n  ring:\n    enable_inet6: false\n",
            &["ingester.lifecycler.enable_inet6", "metrics_generator.ring.enable_inet6"],
        ),
    ];
    let mut failures = vec![];
    for (yaml, needles) in cases {
        let (code, out) = validate(yaml);
        let missing: Vec<&&str> = needles.iter().filter(|n| !out.contains(**n)).collect();
        if code != 78 || !missing.is_empty() || !out.contains("fix") {
            failures.push(format!("{yaml}→ exit {code}, missing {missing:?}: {out}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// SPEC §3 (amended): "Empty listen address → `[::]` with `IPV6_V6ONLY` off (both families) when
/// the kernel has IPv6 enabled ... for HTTP and gRPC: the HTTP API is external traffic and must be
/// reachable at every external address, IPv6 ones included". With Redis's "Otherwise, internal
/// traffic uses IPv4 by default", a dual-stack node is reachable on both families.
#[test]
fn spec_dual_stack_node_with_ipv4_internal_listens_on_both_families() {
    let lan = Lan::new("slisten");
    let host = node(&lan, "slh", &["192.0.2.81/24", "2001:db8:704::81/64"]);
    let client = node(&lan, "slc", &["192.0.2.82/24", "2001:db8:704::82/64"]);
    let _d = serve(&host, "lifecycler: {id: dual}");
    let id = identity_of(&host);
    assert_eq!(id["family"], "ipv4", "{id}");
    assert!(
        strings(&id["external_addrs"]).contains(&"2001:db8:704::81".to_string()),
        "{id}"
    );
    let mut failures = vec![];
    for (from, host_part) in [
        (&host, "[::1]"),
        (&host, "127.0.0.1"),
        (&host, "[2001:db8:704::81]"),
        (&host, "192.0.2.81"),
        (&client, "[2001:db8:704::81]"),
        (&client, "192.0.2.81"),
    ] {
        let (code, _) = curl(
            from,
            "GET",
            &format!("http://{host_part}:3200/ready"),
            None,
            "*/*",
        );
        if code != 200 {
            failures.push(format!("HTTP {host_part}:3200 from {}: {code}", from.name));
        }
        if !tcp_connects(from, &format!("{host_part}:9095")) {
            failures.push(format!("gRPC {host_part}:9095 from {}", from.name));
        }
    }
    let v6 = listening(&host, &["-ltn", "-f", "inet6"]);
    for want in ["*:3200", "*:9095"] {
        if !v6.contains(&want.to_string()) {
            failures.push(format!("ss -ltn -f inet6 lacks {want}: {v6:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The bootstrap API answers over IPv6: where an operator opts into IPv6.
    let (code, doc) = curl(
        &host,
        "GET",
        "http://[2001:db8:704::81]:3200/v1/bootstrap",
        None,
        "application/json",
    );
    assert_eq!((code, doc["state"].as_str()), (200, Some("idle")), "{doc}");
}

// ---------------------------------------------------------------------------------------------
// Tempo: "Run Tempo distributed with sidecar proxies"
// ---------------------------------------------------------------------------------------------

/// The ring as `/ring` gives it to programs.
fn ring_entry(ns: &Netns, id: &str) -> Option<Value> {
    let (code, doc) = curl(
        ns,
        "GET",
        "http://[::1]:3200/ring",
        None,
        "application/json",
    );
    let doc = if code == 0 {
        curl(
            ns,
            "GET",
            "http://127.0.0.1:3200/ring",
            None,
            "application/json",
        )
        .1
    } else {
        doc
    };
    doc["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["id"] == id)
        .cloned()
}

/// tempo-sidecar-proxies.md: "Pods advertise their address and listening port into the ring when
/// they start, and deregister themselves when they exit." — a graceful stop (SIGTERM, as
/// `systemctl stop`) takes the node out of the ring's live members: it shows LEFT, not ACTIVE.
#[test]
fn tempo_nodes_advertise_on_start_and_deregister_on_exit() {
    let lan = Lan::new("sdereg");
    let a = node(&lan, "sda", &["2001:db8:804::1/64"]);
    let b = node(&lan, "sdb", &["2001:db8:804::2/64"]);
    let _da = serve(&a, "lifecycler: {id: a}");
    let mut db = serve(&b, "lifecycler: {id: b}");
    ok("create", create(&a, "dereg", json!({})));
    ok("join", join(&b, "dereg", "2001:db8:804::1", json!({})));
    converged(&a, 2);
    let entry = wait_for("b in a's ring", T, || ring_entry(&a, "b"));
    assert_eq!(
        entry["advertised_grpc"], "[2001:db8:804::2]:9095",
        "{entry}"
    );
    stop(&mut db);
    wait_for("b deregistered from a's ring", T, || {
        match ring_entry(&a, "b") {
            None => Some(()),
            Some(e) => (e["state"] == "LEFT").then_some(()),
        }
    });
}

/// A single-node cluster (node `px`) on an IPv6-only host with `yaml`: its ring entry and the
/// local addresses it listens on (TCP).
fn sidecar_ring(tag: &str, net: &str, yaml: &str) -> (Value, Vec<String>) {
    let lan = Lan::new(tag);
    let host = node(
        &lan,
        &format!("{tag}h"),
        &[&format!("2001:db8:{net}::1/64")],
    );
    let _d = serve(&host, yaml);
    ok("create", create(&host, tag, json!({"name": "px"})));
    let me = wait_for("px in its own ring", T, || ring_entry(&host, "px"));
    // The page people browse (Tempo's `/ingester/ring`) shows the same advertised endpoint.
    let (_, html) = curl(&host, "GET", "http://[::1]:3200/ring", None, "text/html");
    let advertised = me["advertised_grpc"].as_str().unwrap_or_default();
    assert!(
        html.as_str().unwrap_or_default().contains(advertised),
        "the ring page shows {advertised}: {html}"
    );
    (me, listening(&host, &["-ltn"]))
}

/// tempo-sidecar-proxies.md: "By default, gRPC traffic uses port 9095, but this can be changed by
/// customizing the `grpc_listen_port` for each pod that needs it." ... "The ring contents reflect
/// the new port".
#[test]
fn tempo_grpc_listen_port_changes_the_port_in_the_ring() {
    let (me, listens) = sidecar_ring("sgrpc", "801", TEMPO_GRPC_LISTEN_PORT);
    assert_eq!(me["advertised_grpc"], "[2001:db8:801::1]:12345", "{me}");
    assert!(
        listens.iter().any(|l| l.ends_with(":12345")),
        "listens on 12345: {listens:?}"
    );
    assert!(
        !listens.iter().any(|l| l.ends_with(":9095")),
        "no longer on 9095: {listens:?}"
    );
}

/// tempo-sidecar-proxies.md: "This is done by customizing the ingester's lifecycler port:" ...
/// "Now, the ingester is listening for regular traffic on port 9095, but the distributor will
/// route traffic to it on port 12345."
#[test]
fn tempo_lifecycler_port_listens_on_9095_and_advertises_12345() {
    let (me, listens) = sidecar_ring("slc", "802", TEMPO_LIFECYCLER_PORT);
    assert_eq!(me["advertised_grpc"], "[2001:db8:802::1]:12345", "{me}");
    assert!(
        listens.iter().any(|l| l.ends_with(":9095")),
        "listens on 9095: {listens:?}"
    );
    assert!(
        !listens.iter().any(|l| l.ends_with(":12345")),
        "12345 is the proxy's: {listens:?}"
    );
}

/// A sidecar proxy: a TCP relay inside `ns` from `listen` to `to`, for as long as the value lives.
/// Counts the connections it relayed.
struct Proxy {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    relayed: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Proxy {
    fn start(ns: &Netns, listen: &str, to: &str) -> Proxy {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let stop = Arc::new(AtomicBool::new(false));
        let relayed = Arc::new(AtomicUsize::new(0));
        let (listen, to): (SocketAddr, SocketAddr) = (listen.parse().unwrap(), to.parse().unwrap());
        let listener = ns.run(move || std::net::TcpListener::bind(listen).unwrap());
        listener.set_nonblocking(true).unwrap();
        let (flag, count) = (stop.clone(), relayed.clone());
        ns.spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let Ok(server) = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(2))
                else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                client.set_nonblocking(false).unwrap();
                for (mut from, mut into) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut into);
                        let _ = into.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy { stop, relayed }
    }

    fn relayed(&self) -> usize {
        self.relayed.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// tempo-sidecar-proxies.md: "Additionally, the ring contents must reflect the proxy's port so that
/// traffic from other pods goes through the proxy." — with the seed's `ingester: lifecycler: port:
/// 12345` and a sidecar on 12345, a peer reaches the node through the proxy and its ring says so.
#[test]
fn tempo_traffic_from_other_nodes_goes_through_the_proxy_port() {
    let lan = Lan::new("sproxy");
    let host = node(&lan, "sph", &["2001:db8:805::1/64"]);
    let peer = node(&lan, "spp", &["2001:db8:805::2/64"]);
    // gRPC on loopback only: the proxy is the one way in from other nodes.
    let _d = serve(
        &host,
        &format!("{TEMPO_LIFECYCLER_PORT}server:\n  grpc_listen_address: '::1'\n"),
    );
    let proxy = Proxy::start(&host, "[2001:db8:805::1]:12345", "[::1]:9095");
    let _p = serve(&peer, "lifecycler: {id: peer}");
    ok("create", create(&host, "proxied", json!({"name": "px"})));
    // The operator names the node as the ring advertises it.
    let advertised = wait_for("px in its own ring", T, || ring_entry(&host, "px"))
        ["advertised_grpc"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(advertised, "[2001:db8:805::1]:12345");
    ok(
        "join through the proxy",
        join(&peer, "proxied", &advertised, json!({})),
    );
    assert!(proxy.relayed() >= 1, "the join went through the proxy");
    let seen = wait_for("px in the peer's ring", T, || {
        ring_entry(&peer, "px").filter(|e| e["status"] == "OK")
    });
    assert_eq!(seen["advertised_grpc"], "[2001:db8:805::1]:12345", "{seen}");
    assert!(
        !tcp_connects(&peer, "[2001:db8:805::1]:9095"),
        "the listen port is not reachable from other nodes: only the proxy is"
    );
}

/// tempo-sidecar-proxies.md: "To set an instance port for the metrics-generator, use this
/// configuration: `metrics_generator: ring: instance_port: 12345`". stackring has one advertised
/// gRPC port: `instance_port` sets it; given with a different `lifecycler.port` it is a config
/// error naming both.
#[test]
fn tempo_metrics_generator_instance_port_is_the_advertised_port() {
    let (me, listens) = sidecar_ring("sinst", "803", TEMPO_INSTANCE_PORT);
    assert_eq!(me["advertised_grpc"], "[2001:db8:803::1]:12345", "{me}");
    assert!(
        listens.iter().any(|l| l.ends_with(":9095")),
        "listens on 9095: {listens:?}"
    );

    let same = format!("{TEMPO_LIFECYCLER_PORT}{TEMPO_INSTANCE_PORT}");
    let (code, out) = validate(&same);
    assert_eq!(code, 0, "the same port twice is fine: {out}");
    let different = format!(
        "{TEMPO_LIFECYCLER_PORT}{}",
        TEMPO_INSTANCE_PORT.replace("12345", "23456")
    );
    let (code, out) = validate(&different);
    assert_eq!(code, 78, "{out}");
    for needle in [
        "metrics_generator.ring.instance_port",
        "23456",
        "lifecycler.port",
        "12345",
        "fix",
    ] {
        assert!(out.contains(needle), "{needle:?} in {out}");
    }
}

// ---------------------------------------------------------------------------------------------
// memberlist.join_members as Tempo/dskit write it (SPEC §6, declarative bootstrap)
// ---------------------------------------------------------------------------------------------

/// Declarative bootstrap: `node1` creates, `node2` joins through `join_members` (YAML list text).
fn declarative_pair(tag: &str, net: &str, join_members: &str, joiner_hosts: Option<&str>) {
    declarative_pair_with(tag, net, join_members, joiner_hosts, "");
}

/// `declarative_pair` with `memberlist` keys (YAML lines, indented by two) for both nodes.
fn declarative_pair_with(
    tag: &str,
    net: &str,
    join_members: &str,
    joiner_hosts: Option<&str>,
    memberlist: &str,
) {
    let lan = Lan::new(tag);
    let n1 = node(
        &lan,
        &format!("{tag}1"),
        &[&format!("2001:db8:{net}::1/64")],
    );
    let n2 = node(
        &lan,
        &format!("{tag}2"),
        &[&format!("2001:db8:{net}::2/64")],
    );
    if let Some(extra) = joiner_hosts {
        n2.set_hosts(&format!("{HOSTS_OK}{extra}\n"));
    }
    let _d1 = serve(
        &n1,
        &format!(
            "lifecycler: {{id: node1}}\n{}\nmemberlist:\n{memberlist}  join_members: []\n",
            declared(&n1, "decl", true)
        ),
    );
    wait_for("node1 to create the cluster", T, || {
        (bootstrap_of(&n1)["state"] == "completed").then_some(())
    });
    let _d2 = serve(
        &n2,
        &format!(
            "lifecycler: {{id: node2}}\n{}\nmemberlist:\n{memberlist}  join_members: {join_members}\n",
            declared(&n2, "decl", false)
        ),
    );
    completed(&n2);
    for ns in [&n1, &n2] {
        let all = converged(ns, 2);
        assert!(all.iter().all(|m| m["family"] == "ipv6"), "{all:?}");
    }
}

/// SPEC §6: "`memberlist.join_members` holds gossip addresses as in dskit (host, host:port with the
/// gossip port, `dns+` names ...)" — the Tempo form `['[2001:db8::1]:7946']`.
#[test]
fn join_members_host_and_gossip_port_forms_a_cluster() {
    declarative_pair("jmport", "901", "['[2001:db8:901::1]:7946']", None);
}

/// SPEC §6: `memberlist.join_members` with a bare host: the gossip port is `memberlist.bind_port`.
#[test]
fn join_members_bare_host_forms_a_cluster() {
    declarative_pair("jmbare", "902", "['2001:db8:902::1']", None);
}

/// SPEC §6: `memberlist.join_members` with a `dns+` name (resolved in the cluster's family; the
/// name is in the joiner's /etc/hosts).
#[test]
fn join_members_dns_name_forms_a_cluster() {
    declarative_pair(
        "jmdns",
        "903",
        "['dns+seed1.example:7946']",
        Some("2001:db8:903::1 seed1.example"),
    );
}

/// redis-enterprise-multi-ip-ipv6.md: "When other IPv6 nodes join a cluster that has
/// `use_internal_ipv6` enabled, they automatically use IPv6 for internal traffic." — the same
/// through declarative bootstrap: a joiner whose config says nothing about IPv6 joins.
#[test]
fn join_members_joiner_without_the_flag_joins_a_use_internal_ipv6_cluster() {
    let lan = Lan::new("jmflag");
    let n1 = node(&lan, "jmf1", &["192.0.2.91/24", "2001:db8:905::1/64"]);
    let n2 = node(&lan, "jmf2", &["2001:db8:905::2/64"]);
    let _d1 = serve(
        &n1,
        &format!(
            "lifecycler: {{id: node1, enable_inet6: true}}\n{}",
            declared(&n1, "decl", true)
        ),
    );
    wait_for("node1 to create the cluster", T, || {
        (bootstrap_of(&n1)["state"] == "completed").then_some(())
    });
    assert_eq!(bootstrap_of(&n1)["cluster"]["family"], "ipv6");
    let _d2 = serve(
        &n2,
        &format!(
            "lifecycler: {{id: node2}}\n{}\nmemberlist:\n  join_members: ['2001:db8:905::1']\n",
            declared(&n2, "decl", false)
        ),
    );
    completed(&n2);
    for m in converged(&n1, 2) {
        assert_eq!(m["family"], "ipv6", "{m}");
    }
}

/// SPEC §6: `memberlist.join_members` with a bare host: the port is the operator's own
/// `memberlist.bind_port` (dskit's default), here not 7946.
#[test]
fn join_members_bare_host_takes_the_configured_bind_port() {
    declarative_pair_with(
        "jmbind",
        "906",
        "['2001:db8:906::1']",
        None,
        "  bind_port: 7947\n",
    );
}

/// SPEC §6: `memberlist.join_members` with a host name (no `dns+`), as dskit resolves it.
#[test]
fn join_members_host_name_and_port_forms_a_cluster() {
    declarative_pair(
        "jmname",
        "907",
        "['seed1.example:7946']",
        Some("2001:db8:907::1 seed1.example"),
    );
}

/// SPEC §6: "retry with backoff while its seeds are unreachable" — and its log names the key the
/// operator wrote, `memberlist.join_members`, never `cluster.nodes`.
#[test]
fn join_members_unreachable_retries_naming_the_key_the_operator_wrote() {
    let lan = Lan::new("jmlost");
    let host = node(&lan, "jml", &["2001:db8:904::2/64"]);
    let d = Logged::start(
        &host,
        &format!(
            "lifecycler: {{id: lost}}\n{}\nmemberlist:\n  join_members: ['[2001:db8:904::99]:7946']\n",
            declared(&host, "decl", false)
        ),
    );
    let log = wait_for("two attempts in the log", Duration::from_secs(20), || {
        let log = d.log();
        (log.to_lowercase().matches("retry").count() >= 2).then_some(log)
    });
    let attempts: Vec<&str> = log
        .lines()
        .filter(|l| l.to_lowercase().contains("retry"))
        .collect();
    assert!(
        attempts
            .iter()
            .all(|l| l.contains("memberlist.join_members")),
        "each attempt names memberlist.join_members: {log}"
    );
    assert!(!log.contains("cluster.nodes"), "{log}");
    assert_ne!(bootstrap_of(&host)["state"], "completed");
}
