//! `stackring serve` in a namespace, driven like systemd drives it: the test owns the
//! `NOTIFY_SOCKET` datagram socket and reads the sd_notify protocol itself.

mod common;
use common::serve::*;
use common::*;
use stackring::proto::pb;
use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[test]
fn ready_is_sent_only_after_the_ports_accept_connections() {
    let ns = Netns::new("ready");
    ns.nic("eth0").addr("2001:db8:100::5/64", "eth0");
    let mut d = Daemon::start(&ns, "", &[]);
    let ready = d.expect("READY=1", Duration::from_secs(10));
    // At the moment READY=1 arrives, both ports must already accept.
    let connected = ns.run(|| {
        ["[::1]:9095", "[::1]:3200", "[::1]:9443"]
            .iter()
            .map(|a| {
                std::net::TcpStream::connect(a)
                    .map(|_| ())
                    .map_err(|e| format!("{a}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()
    });
    connected.unwrap();
    assert!(
        ready.contains("STATUS=advertising IPv6 2001:db8:100::5 on eth0"),
        "{ready}"
    );
    let env = d.env_file();
    assert!(
        env.contains("STACKRING_READY=1\n")
            && env.contains("STACKRING_INTERNAL_ADDR=2001:db8:100::5\n"),
        "{env}"
    );
    assert_eq!(http_get(&ns, "/ready").0, 200);
    let (_, metrics) = http_get(&ns, "/metrics");
    assert!(metrics.contains("stackring_ready 1"), "{metrics}");
    // Prometheus conventions: build info, and the process collector's names with real values.
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        metrics.contains(&format!(
            "stackring_build_info{{version=\"{version}\",build=\""
        )),
        "{metrics}"
    );
    let sample = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing: {metrics}"))
    };
    let rss = sample("process_resident_memory_bytes");
    assert!(rss > 1e6 && rss < 64e6, "{rss}");
    assert!(sample("process_open_fds") >= 5.0);
    assert!(sample("process_max_fds") >= 1024.0);
    assert!(sample("process_start_time_seconds") > 1.6e9);
    assert!(sample("process_cpu_seconds_total") >= 0.0);
    // `stackring preflight` beside the running daemon: its ports are its own, not a conflict.
    let config = d.config.to_str().unwrap().to_string();
    let out = ns
        .command(STACKRING)
        .args(["--config", &config, "preflight", "--json"])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let port = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["code"] == "port.in_use")
        .unwrap()
        .clone();
    assert_eq!(port["result"], "pass", "{doc}");
    assert!(
        port["message"]
            .as_str()
            .unwrap()
            .contains("running stackring daemon"),
        "{port}"
    );
}

/// SPEC §5 (amended): waiting for an address never holds up boot. READY=1 comes at once (the
/// servers answer), `STATUS=`, `/ready` and identity.env say what the node waits for, and
/// `stackring wait` is how a unit that needs the identity waits for it.
#[test]
fn waits_with_a_reason_without_holding_up_boot() {
    let ns = Netns::new("waits");
    ns.nic("eth0");
    let mut d = Daemon::start(&ns, "", &[]);
    let ready = d.expect("READY=1", Duration::from_secs(10));
    assert!(
        ready.contains(
            "STATUS=waiting: waiting for a usable address (no IPv4 or IPv6 address is usable)"
        ),
        "{ready}"
    );
    // The servers answer while waiting, and say why the node is not ready.
    let (code, body) = http_get(&ns, "/ready");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("no IPv4 or IPv6 address is usable"), "{body}");
    assert!(ns.run(|| std::net::TcpStream::connect("[::1]:9095").is_ok()));
    let env = d.env_file();
    assert!(env.contains("STACKRING_READY=0\n"), "{env}");
    assert!(env.contains("STACKRING_REASON="), "{env}");
    // `stackring wait` times out, saying what it waits for.
    let config = d.config.to_str().unwrap().to_string();
    let waited = ns
        .command(STACKRING)
        .args(["--config", &config, "wait", "--timeout", "1s"])
        .output()
        .unwrap();
    assert_eq!(waited.status.code(), Some(1), "{waited:?}");
    let said = String::from_utf8_lossy(&waited.stderr);
    assert!(said.contains("no IPv4 or IPv6 address is usable"), "{said}");

    // A tentative address: the status names DAD; the identity comes when DAD completes.
    let waiter = {
        let mut c = ns.command(STACKRING);
        c.args(["--config", &config, "wait", "--timeout", "20s"]);
        c.stdout(std::process::Stdio::piped())
            .spawn()
            .expect("stackring wait")
    };
    ns.sysctl("net.ipv6.conf.eth0.dad_transmits=2");
    ns.sysctl("net.ipv6.neigh.eth0.retrans_time_ms=700");
    ns.ip("addr add 2001:db8:101::5/64 dev eth0");
    let status = d.expect("STATUS=waiting", Duration::from_secs(5));
    assert!(status.contains("duplicate address detection"), "{status}");
    let decided = d.expect("STATUS=advertising", Duration::from_secs(10));
    assert!(decided.contains("2001:db8:101::5"), "{decided}");
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(line.contains("ipv6 2001:db8:101::5 on eth0"), "{line}");
    assert_eq!(http_get(&ns, "/ready").0, 200);
    // READY=1 was sent once: no second start-up notification.
    d.expect_none("READY=1", Duration::from_millis(300));
}

/// SPEC §3 (amended): an empty listen address binds `[::]` with IPV6_V6ONLY off, so an
/// IPv4-internal dual-stack node answers over IPv6 too (its IPv6 external addresses, `[::1]`).
#[test]
fn dual_stack_node_with_ipv4_internal_answers_over_both_families() {
    let ns = Netns::new("dual");
    ns.nic("eth0")
        .addr("192.0.2.5/24", "eth0")
        .addr("2001:db8:102::5/64", "eth0");
    let mut d = Daemon::start(&ns, "", &[]);
    let ready = d.expect("READY=1", Duration::from_secs(10));
    assert!(ready.contains("advertising IPv4 192.0.2.5"), "{ready}");
    for host in ["127.0.0.1", "[::1]", "192.0.2.5", "[2001:db8:102::5]"] {
        let (code, body) = http_get_at(&ns, host, "/ready");
        assert_eq!(code, 200, "{host}: {body}");
    }
    let identity = identity_at(&ns, "[2001:db8:102::5]");
    assert_eq!(identity["family"], "ipv4");
    assert_eq!(identity["http"]["listen"], "[::]:3200");
    assert_eq!(identity["gossip"]["listen"], "0.0.0.0:7946");
    let externals = identity["external_addrs"].to_string();
    assert!(externals.contains("2001:db8:102::5"), "{externals}");
    // gRPC too: one socket for both families.
    for addr in ["127.0.0.1:9095", "[2001:db8:102::5]:9095"] {
        let ok = ns.run(move || std::net::TcpStream::connect(addr).is_ok());
        assert!(ok, "gRPC at {addr}");
    }
}

#[test]
fn live_renumbering_rewrites_identity_env_and_streams_over_grpc() {
    let ns = Netns::new("renum");
    ns.nic("eth0").addr("2001:db8:110::5/64", "eth0");
    let mut d = Daemon::start(&ns, "", &[]);
    d.expect("READY=1", Duration::from_secs(10));

    // A gRPC Watch stream, opened from inside the namespace, collects what it is sent.
    let (tx, replies) = mpsc::channel::<pb::IdentityReply>();
    let _watcher = ns.spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut client = pb::identity_client::IdentityClient::connect("http://[::1]:9095")
                .await
                .unwrap();
            let got = client
                .get(pb::GetIdentityRequest {})
                .await
                .unwrap()
                .into_inner();
            tx.send(got).unwrap();
            let mut stream = client
                .watch(pb::WatchIdentityRequest {})
                .await
                .unwrap()
                .into_inner();
            while let Ok(Some(reply)) = stream.message().await {
                if tx.send(reply).is_err() {
                    return;
                }
            }
        })
    });
    let first = replies.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(
        (
            first.ready,
            first.family.as_str(),
            first.internal_addr.as_str()
        ),
        (true, "ipv6", "2001:db8:110::5")
    );
    assert_eq!(first.grpc.unwrap().advertise, "[2001:db8:110::5]:9095");

    // Renumber: a new address arrives, the old one goes.
    ns.addr("2001:db8:110::9/64", "eth0");
    ns.ip("addr del 2001:db8:110::5/64 dev eth0");
    let renumbered = wait_for(
        "the Watch stream to show the new address",
        Duration::from_secs(5),
        || {
            replies
                .recv_timeout(Duration::from_millis(100))
                .ok()
                .filter(|r| r.internal_addr == "2001:db8:110::9")
        },
    );
    assert!(renumbered.ready);
    assert!(renumbered.generation > first.generation);
    let env = d.env_file();
    assert!(
        env.contains("STACKRING_INTERNAL_ADDR=2001:db8:110::9\n"),
        "{env}"
    );
    assert!(
        env.contains("STACKRING_GRPC_ADVERTISE=[2001:db8:110::9]:9095\n"),
        "{env}"
    );
    let status = d.expect(
        "STATUS=advertising IPv6 2001:db8:110::9",
        Duration::from_secs(5),
    );
    assert!(status.contains("eth0"));
    assert_eq!(identity(&ns)["internal_addr"], "2001:db8:110::9");

    // The last address goes: not ready, with the reason, old values kept and marked stale.
    ns.ip("addr del 2001:db8:110::9/64 dev eth0");
    d.expect("STATUS=not ready", Duration::from_secs(5));
    let (code, body) = http_get(&ns, "/ready");
    assert_eq!(code, 503, "{body}");
    let env = wait_for(
        "identity.env marked not ready",
        Duration::from_secs(5),
        || {
            let env = d.env_file();
            env.contains("STACKRING_READY=0\n").then_some(env)
        },
    );
    assert!(env.contains("STACKRING_REASON="), "{env}");
}

#[test]
fn watchdog_reload_and_stop_follow_the_protocol() {
    let ns = Netns::new("proto");
    ns.nic("eth0").addr("192.0.2.50/24", "eth0");
    let mut d = Daemon::start(&ns, "", &[("WATCHDOG_USEC", "200000")]);
    d.expect("READY=1", Duration::from_secs(10));
    // Pings at half the interval: several within a second.
    let start = Instant::now();
    for _ in 0..3 {
        d.expect("WATCHDOG=1", Duration::from_millis(600));
    }
    assert!(
        start.elapsed() < Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );

    // A good reload: RELOADING=1 (with MONOTONIC_USEC), READY=1, new advertised port.
    let node = format!(
        "node: {{runtime_dir: '{}', state_dir: '{}'}}\n",
        d.runtime_dir.display(),
        d.state_dir.display()
    );
    std::fs::write(&d.config, format!("lifecycler: {{port: 19095}}\n{node}")).unwrap();
    d.signal(libc::SIGHUP);
    let reloading = d.expect("RELOADING=1", Duration::from_secs(5));
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    d.expect("READY=1", Duration::from_secs(5));
    assert_eq!(
        identity_at(&ns, "127.0.0.1")["grpc"]["advertise"],
        "192.0.2.50:19095"
    );
    assert!(d
        .env_file()
        .contains("STACKRING_GRPC_ADVERTISE_PORT=19095\n"));

    // A key that needs a restart (where identity.env and admin.sock live) is refused whole: the
    // port change beside it does not apply either, and nothing moves.
    let moved = d.runtime_dir.with_file_name("run-moved");
    std::fs::write(
        &d.config,
        format!(
            "lifecycler: {{port: 29095}}\nnode: {{runtime_dir: '{}', state_dir: '{}'}}\n",
            moved.display(),
            d.state_dir.display()
        ),
    )
    .unwrap();
    d.signal(libc::SIGHUP);
    d.expect("RELOADING=1", Duration::from_secs(5));
    d.expect("READY=1", Duration::from_secs(5));
    assert_eq!(
        identity_at(&ns, "127.0.0.1")["grpc"]["advertise"],
        "192.0.2.50:19095"
    );
    assert!(!moved.join("identity.env").exists());
    let (_, metrics) = http_get_at(&ns, "127.0.0.1", "/metrics");
    assert!(
        metrics.contains("stackring_reloads_total{result=\"restart_needed\"} 1"),
        "{metrics}"
    );

    // A bad reload changes nothing and the daemon stays up.
    std::fs::write(&d.config, "lifecycler: {address: '::'}\n").unwrap();
    d.signal(libc::SIGHUP);
    d.expect("RELOADING=1", Duration::from_secs(5));
    d.expect("READY=1", Duration::from_secs(5));
    assert_eq!(
        identity_at(&ns, "127.0.0.1")["grpc"]["advertise"],
        "192.0.2.50:19095"
    );

    d.signal(libc::SIGTERM);
    d.expect("STOPPING=1", Duration::from_secs(5));
    let status = wait_for("exit", Duration::from_secs(10), || {
        d.child.try_wait().unwrap()
    });
    assert_eq!(status.code(), Some(0));
    // A stopped node's identity.env says so (outside systemd nothing removes it).
    let env = d.env_file();
    assert!(env.contains("STACKRING_READY=0\n"), "{env}");
    assert!(
        env.contains("STACKRING_REASON=\"stackring is stopped\""),
        "{env}"
    );
}

#[test]
fn invalid_config_exits_78_before_binding_anything() {
    let ns = Netns::new("badcfg");
    ns.nic("eth0").addr("2001:db8:120::5/64", "eth0");
    let cfg = ns.write_config("lifecycler: {address: '::'}\n");
    let out = ns
        .command(STACKRING)
        .arg("--config")
        .arg(&cfg)
        .arg("serve")
        .env("STACKRING_LOG", "stderr")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = text(&out.stderr);
    assert!(
        err.contains("lifecycler.address") && err.contains("'::'") && err.contains("fix:"),
        "{err}"
    );
}

#[test]
fn grpc_reflection_lists_the_identity_service() {
    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let ns = Netns::new("reflect");
    ns.nic("eth0").addr("2001:db8:130::5/64", "eth0");
    let mut d = Daemon::start(&ns, "", &[]);
    d.expect("READY=1", Duration::from_secs(10));
    let services = ns.run(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let channel = tonic::transport::Endpoint::from_static("http://[::1]:9095")
                .connect()
                .await
                .unwrap();
            let mut client = ServerReflectionClient::new(channel);
            let request = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            let mut stream = client
                .server_reflection_info(tokio_stream::iter([request]))
                .await
                .unwrap()
                .into_inner();
            match stream.message().await.unwrap().unwrap().message_response {
                Some(MessageResponse::ListServicesResponse(list)) => {
                    list.service.into_iter().map(|s| s.name).collect::<Vec<_>>()
                }
                other => panic!("unexpected reflection answer {other:?}"),
            }
        })
    });
    assert!(
        services.contains(&"stackring.v1.Identity".to_string()),
        "{services:?}"
    );
}

#[test]
fn a_netlink_overrun_is_repaired_by_reading_everything_again() {
    let ns = Netns::new("overrun");
    ns.nic("eth0").addr("2001:db8:140::1/64", "eth0");
    // A tiny receive buffer makes a burst of 3,000 address events overflow it.
    let mut d = Daemon::start(&ns, "", &[("STACKRING_NETLINK_RCVBUF", "4096")]);
    d.expect("READY=1", Duration::from_secs(10));
    let batch: String = (2..=3001)
        .map(|i| format!("addr add 2001:db8:140::{i:x}/64 dev eth0 nodad\n"))
        .collect();
    let file = ns.dir().join("batch");
    std::fs::write(&file, batch).unwrap();
    ns.ip(&format!("-batch {}", file.display()));
    let externals = wait_for(
        "all 3,000 new addresses in the identity",
        Duration::from_secs(20),
        || {
            let n = identity(&ns)["external_addrs"]
                .as_array()
                .map(Vec::len)
                .unwrap_or(0);
            (n == 3000).then_some(n)
        },
    );
    assert_eq!(externals, 3000);
    let (_, metrics) = http_get(&ns, "/metrics");
    assert!(
        metrics.contains("stackring_netlink_overruns_total"),
        "{metrics}"
    );
    let overruns: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("stackring_netlink_overruns_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        overruns > 0,
        "the test meant to force an overrun did not: {metrics}"
    );
}

#[test]
fn a_service_manager_that_does_not_read_never_stalls_the_daemon() {
    let ns = Netns::new("stall");
    ns.nic("eth0").addr("2001:db8:150::1/64", "eth0");
    let runtime_dir = ns.dir().join("run");
    let config = ns.write_config(&format!(
        "node: {{runtime_dir: '{}'}}\n",
        runtime_dir.display()
    ));
    // Bound and never read: the kernel queues ~10 datagrams, then a blocking sender would hang.
    let socket_path = ns.dir().join("deaf.sock");
    let _deaf = UnixDatagram::bind(&socket_path).unwrap();
    let mut child = ns
        .command(STACKRING)
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env("NOTIFY_SOCKET", &socket_path)
        .env("STACKRING_LOG", "stderr")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let env_path = runtime_dir.join("identity.env");
    for i in 2..=40 {
        ns.addr(&format!("2001:db8:150::{i:x}/64"), "eth0");
        let needle = format!("2001:db8:150::{i:x}");
        wait_for(
            &format!("identity.env to name {needle}"),
            Duration::from_secs(5),
            || {
                let env = std::fs::read_to_string(&env_path).unwrap_or_default();
                env.lines()
                    .any(|l| {
                        l.starts_with("STACKRING_EXTERNAL_ADDRS=")
                            && l.trim_matches('"')
                                .split(['"', ' ', '='])
                                .any(|a| a == needle)
                    })
                    .then_some(())
            },
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The appliance's firewall as `stackring-firewall.service` loads it (`stackring config firewall`
/// into `nft -f`), on a host of its own: the agent answers through it over IPv6 (neighbour
/// discovery passes, unpinned), on the port the configuration moved it to; the gossip port's TCP
/// side accepts; the default HTTP port it no longer uses, and a listener on a port the agent
/// does not serve, are dropped from the network (no answer, not even a refusal) while the
/// listener answers on loopback; the drop counter counts them; loading it twice is the same.
#[test]
fn the_generated_firewall_lets_the_agent_through_and_drops_everything_else() {
    let lan = Lan::new("fwlan");
    let node = lan.host("fwnode", &["2001:db8:2f0::1/64"]);
    let client = lan.host("fwclient", &["2001:db8:2f0::2/64"]);
    let yaml = "server: {http_listen_port: 13200}\n";
    let out = node.stackring(yaml, &["config", "firewall"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ruleset = text(&out.stdout);
    assert!(
        ruleset.contains("tcp dport 13200 accept") && !ruleset.contains("dport 3200 "),
        "{ruleset}"
    );
    node.nft(&ruleset);
    node.nft(&ruleset);
    let listed = |ns: &Netns| {
        let out = ns
            .command("nft")
            .args(["list", "table", "inet", "stackring"])
            .output()
            .unwrap();
        text(&out.stdout)
    };
    assert_eq!(
        listed(&node).matches("chain input").count(),
        1,
        "a second load must replace the table, not add to it"
    );

    let mut d = Daemon::start(&node, yaml, &[]);
    d.expect("READY=1", Duration::from_secs(15));
    let mut listener = node
        .command("socat")
        .args([
            "TCP6-LISTEN:8080,fork,reuseaddr",
            "SYSTEM:echo listener-answered",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // curl's exit code: 0 answered, 7 refused, 28 timed out (dropped).
    let curl = |ns: &Netns, url: &str| {
        let out = ns
            .command("curl")
            .args([
                "-s",
                "-g",
                "--http0.9",
                "--connect-timeout",
                "3",
                "-m",
                "5",
                url,
            ])
            .output()
            .unwrap();
        (out.status.code().unwrap_or(-1), text(&out.stdout))
    };
    let (code, body) = wait_for(
        "the agent through the firewall",
        Duration::from_secs(20),
        || {
            let (code, body) = curl(&client, "http://[2001:db8:2f0::1]:13200/ready");
            (code == 0).then_some((code, body))
        },
    );
    assert_eq!(code, 0);
    assert!(body.contains("ready"), "{body}");
    // A member binds its gossip port: create a cluster (HTTPS, on loopback), then the port's
    // TCP side (TLS discovery) must take connections from the network.
    bootstrap(&node, "create_cluster", "fw", None);
    wait_for(
        "the gossip port's TCP side",
        Duration::from_secs(20),
        || {
            client
                .command("socat")
                .args([
                    "-u",
                    "OPEN:/dev/null",
                    "TCP6:[2001:db8:2f0::1]:7946,connect-timeout=3",
                ])
                .stderr(Stdio::null())
                .status()
                .unwrap()
                .success()
                .then_some(())
        },
    );
    wait_for("the listener on loopback", Duration::from_secs(10), || {
        let (_, body) = curl(&node, "http://[::1]:8080/");
        body.contains("listener-answered").then_some(())
    });
    let (code, _) = curl(&client, "http://[2001:db8:2f0::1]:8080/");
    assert_eq!(
        code, 28,
        "port 8080 must be dropped (curl timed out), not answered or refused"
    );
    let (code, _) = curl(&client, "http://[2001:db8:2f0::1]:3200/ready");
    assert_eq!(
        code, 28,
        "the default HTTP port, moved away, must be dropped"
    );
    let table = listed(&node);
    let dropped: u64 = table
        .lines()
        .find(|l| l.contains("comment \"dropped\""))
        .and_then(|l| l.split_whitespace().skip_while(|w| *w != "packets").nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no drop counter in:\n{table}"));
    assert!(dropped >= 2, "drop counter {dropped}:\n{table}");
    let _ = listener.kill();
    let _ = listener.wait();
}

/// A configuration that does not parse prints no ruleset at all (exit 78, the key and the
/// fix on stderr): the appliance's unit then loads its closed ruleset instead of half of one.
#[test]
fn the_firewall_of_an_invalid_configuration_is_refused_with_the_key_and_nothing_printed() {
    let ns = Netns::new("fwbad");
    for (yaml, key) in [
        ("server: {grpc_listen_port: 0}\n", "server.grpc_listen_port"),
        (
            "memberlist: {bind_port: 'gossip'}\n",
            "memberlist.bind_port",
        ),
        (
            "server: {grpc_listen_port: 9095, http_listen_port: 9095}\n",
            "server.http_listen_port",
        ),
        ("nonsense: [\n", "YAML"),
    ] {
        let out = ns.stackring(yaml, &["config", "firewall"]);
        assert_eq!(out.status.code(), Some(78), "{yaml}");
        assert!(
            out.stdout.is_empty(),
            "{yaml}: printed {}",
            text(&out.stdout)
        );
        let err = text(&out.stderr);
        assert!(err.contains(key), "{yaml}: {err}");
    }
    // The ruleset needs the ports, not the secrets: a cluster section whose secret this process
    // cannot read (on the appliance, a credential only the agent's unit sees) still gets it.
    let out = ns.stackring(
        "cluster: {name: c1, create: true, credentials_file: /run/credentials/stackring.service/stackring.credentials}\n",
        &["config", "firewall"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("tcp dport 9095 accept"));
}

/// `server.bootstrap_api: local` (the appliance image's own setting, for an instance booted
/// without first-boot data): `create_cluster` and `join_cluster` over HTTPS — from the network,
/// even from the node itself — are refused with 403 naming the admin socket, and change nothing;
/// the same request on the admin socket (root on the node) creates the cluster.
#[test]
fn bootstrap_api_local_takes_create_only_on_the_admin_socket() {
    let lan = Lan::new("bslan");
    let node = lan.host("bsnode", &["2001:db8:2f1::1/64"]);
    let outsider = lan.host("bsout", &["2001:db8:2f1::2/64"]);
    let mut d = Daemon::start(&node, "server: {bootstrap_api: local}\n", &[]);
    d.expect("READY=1", Duration::from_secs(15));
    let body = serde_json::json!({
        "action": "create_cluster",
        "cluster": {"name": "taken"},
        "credentials": {"username": "admin", "password": "correct horse"},
        "node": {"identity": {}},
    })
    .to_string();
    let join = serde_json::json!({
        "action": "join_cluster",
        "cluster": {"name": "taken", "nodes": ["2001:db8:2f1::2"]},
        "credentials": {"username": "admin", "password": "correct horse"},
        "node": {"identity": {}},
    })
    .to_string();
    for (ns, host) in [(&outsider, "[2001:db8:2f1::1]"), (&node, "[::1]")] {
        for (path, body) in [
            ("/v1/bootstrap/create_cluster", &body),
            ("/v1/bootstrap/join_cluster", &join),
        ] {
            let (code, doc) = curl_json(ns, "POST", host, path, Some(body));
            assert_eq!(code, 403, "{path} from {host}: {doc}");
            let said = doc.to_string();
            assert!(
                said.contains("bootstrap_api_local") && said.contains("admin.sock"),
                "{said}"
            );
        }
    }
    let (_, status) = curl_json(&node, "GET", "[::1]", "/v1/bootstrap", None);
    assert_eq!(status["state"], "idle", "{status}");
    assert!(!d.state_dir.join("cluster.json").exists());

    let sock = d.runtime_dir.join("admin.sock");
    let out = node
        .command("curl")
        .args(["-s", "-m", "20", "--unix-socket"])
        .arg(&sock)
        .args([
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body,
            "-w",
            "\n%{http_code}",
            "http://localhost/v1/bootstrap/create_cluster",
        ])
        .output()
        .unwrap();
    let answer = text(&out.stdout);
    assert!(answer.ends_with("\n200"), "{answer}");
    let (_, status) = curl_json(&node, "GET", "[::1]", "/v1/bootstrap", None);
    assert_eq!(status["state"], "completed", "{status}");
}
