//! `stackring inspect` and `preflight` on real kernels: each test builds its own host in a network
//! namespace (veth NICs, documentation-range addresses) and reads the decision back as JSON.

mod common;
use common::*;
use serde_json::Value;
use std::time::Duration;

fn family(doc: &Value) -> &str {
    doc["family"].as_str().unwrap_or("none")
}

fn internal(doc: &Value) -> &str {
    doc["internal_addr"].as_str().unwrap_or("none")
}

fn flags_of<'a>(doc: &'a Value, addr: &str) -> Vec<&'a str> {
    doc["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["address"] == addr)
        .unwrap_or_else(|| panic!("{addr} not in {doc:#}"))["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect()
}

#[test]
fn ipv6_only_host_chooses_ipv6_with_zero_configuration() {
    let ns = Netns::new("v6only");
    ns.nic("eth0").addr("2001:db8:10::5/64", "eth0");
    let (code, doc) = ns.inspect("");
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(family(&doc), "ipv6");
    assert_eq!(internal(&doc), "2001:db8:10::5");
    assert_eq!(doc["grpc"]["listen"], "[::]:9095");
    assert_eq!(doc["grpc"]["advertise"], "[2001:db8:10::5]:9095");
    assert_eq!(doc["http"]["advertise"], "[2001:db8:10::5]:3200");
    assert_eq!(doc["gossip"]["advertise"], "[2001:db8:10::5]:7946");
    assert_eq!(doc["external_addrs"], serde_json::json!(["2001:db8:10::5"]));
    assert_eq!(doc["internal_interface"], "eth0");
}

#[test]
fn ipv4_only_host_chooses_ipv4() {
    let ns = Netns::new("v4only");
    ns.nic("eth0").addr("198.51.100.7/24", "eth0");
    let (code, doc) = ns.inspect("");
    assert_eq!(code, 0);
    assert_eq!((family(&doc), internal(&doc)), ("ipv4", "198.51.100.7"));
    // SPEC §3 (amended): IPv6 is on in the kernel, so servers listen dual-stack; gossip on IPv4.
    assert_eq!(doc["grpc"]["listen"], "[::]:9095");
    assert_eq!(doc["gossip"]["listen"], "0.0.0.0:7946");
    // With IPv6 off in the kernel, `0.0.0.0`.
    ns.sysctl("net.ipv6.conf.all.disable_ipv6=1");
    let (_, doc) = ns.inspect("");
    assert_eq!(doc["grpc"]["listen"], "0.0.0.0:9095");
    assert_eq!(doc["http"]["listen"], "0.0.0.0:3200");
}

#[test]
fn dual_stack_is_ipv4_unless_use_internal_ipv6() {
    let ns = Netns::new("dual");
    ns.nic("eth0")
        .addr("192.0.2.10/24", "eth0")
        .addr("2001:db8:20::10/64", "eth0");
    let (_, doc) = ns.inspect("");
    assert_eq!((family(&doc), internal(&doc)), ("ipv4", "192.0.2.10"));
    assert_eq!(
        doc["external_addrs"],
        serde_json::json!(["2001:db8:20::10"])
    );

    for yaml in [
        "node: {use_internal_ipv6: true}",
        "lifecycler: {enable_inet6: true}",
    ] {
        let (_, doc) = ns.inspect(yaml);
        assert_eq!(
            (family(&doc), internal(&doc)),
            ("ipv6", "2001:db8:20::10"),
            "{yaml}"
        );
        assert_eq!(doc["grpc"]["listen"], "[::]:9095");
    }
}

#[test]
fn an_address_containing_1_is_not_loopback() {
    let ns = Netns::new("colon1");
    ns.nic("eth0").addr("2001:db8::1/64", "eth0");
    let (code, doc) = ns.inspect("");
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!((family(&doc), internal(&doc)), ("ipv6", "2001:db8::1"));
}

#[test]
fn preferred_beats_deprecated() {
    let ns = Netns::new("deprec");
    // The deprecated one sorts first by address, so only the flag can make it lose.
    ns.nic("eth0")
        .addr("2001:db8:30::1/64", "eth0")
        .addr("2001:db8:30::9/64", "eth0");
    ns.ip("addr change 2001:db8:30::1/64 dev eth0 preferred_lft 0");
    let (_, doc) = ns.inspect("");
    assert!(
        flags_of(&doc, "2001:db8:30::1").contains(&"deprecated"),
        "{doc:#}"
    );
    assert_eq!(internal(&doc), "2001:db8:30::9");
}

#[test]
fn stable_beats_temporary() {
    let ns = Netns::new("tempaddr");
    ns.nic("eth0");
    ns.sysctl("net.ipv6.conf.eth0.use_tempaddr=2");
    ns.sysctl("net.ipv6.conf.eth0.accept_dad=0");
    // The stable address sorts last by value, so only "temporary" can make the kernel's RFC 4941
    // address lose.
    ns.ip("addr add 2001:db8:40:0:ffff:ffff:ffff:fff0/64 dev eth0 mngtmpaddr valid_lft 600 preferred_lft 300");
    let doc = wait_for("a temporary address", Duration::from_secs(5), || {
        let (_, doc) = ns.inspect("");
        let has_temp = doc["addresses"].as_array().unwrap().iter().any(|a| {
            a["flags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f == "temporary")
        });
        has_temp.then_some(doc)
    });
    assert_eq!(
        internal(&doc),
        "2001:db8:40:0:ffff:ffff:ffff:fff0",
        "{doc:#}"
    );
    // And the temporary address is not offered as an external address either.
    assert_eq!(
        doc["external_addrs"],
        serde_json::json!(["2001:db8:40:0:ffff:ffff:ffff:fff0"])
    );
}

#[test]
fn tentative_address_waits_for_dad() {
    let ns = Netns::new("tentative");
    ns.nic("eth0");
    ns.sysctl("net.ipv6.conf.eth0.dad_transmits=3");
    ns.sysctl("net.ipv6.neigh.eth0.retrans_time_ms=1000");
    ns.ip("addr add 2001:db8:50::5/64 dev eth0");
    let (code, doc) = ns.inspect("");
    assert_eq!(code, 1, "no identity while DAD runs: {doc:#}");
    assert_eq!(doc["ready"], false);
    assert!(flags_of(&doc, "2001:db8:50::5").contains(&"tentative"));
    let reason = doc["reason"].as_str().unwrap();
    assert!(reason.contains("duplicate address detection"), "{reason}");

    let out = ns.stackring("", &["preflight", "--json"]);
    let pf: Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = pf["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["code"] == "addr.tentative")
        .unwrap();
    assert_eq!(check["result"], "fail");
    assert!(check["message"]
        .as_str()
        .unwrap()
        .contains("2001:db8:50::5"));

    // DAD completes after ~3 s; then the same address is chosen.
    let doc = wait_for("DAD to finish", Duration::from_secs(8), || {
        let (code, doc) = ns.inspect("");
        (code == 0).then_some(doc)
    });
    assert_eq!(internal(&doc), "2001:db8:50::5");
}

#[test]
fn dad_failed_address_is_skipped() {
    // Two hosts on one link: B already holds the address, A's DAD for it fails.
    let a = Netns::new("dadA");
    let b = Netns::new("dadB");
    a.ip(&format!(
        "link add eth0 type veth peer name eth0 netns {}",
        b.name
    ));
    a.ip("link set eth0 up");
    b.ip("link set eth0 up");
    b.addr("2001:db8:60::1/64", "eth0");
    a.addr("2001:db8:60::9/64", "eth0");
    wait_for("B's link to be up", Duration::from_secs(5), || {
        let (_, doc) = b.inspect("");
        (doc["ready"] == true).then_some(())
    });
    a.ip("addr add 2001:db8:60::1/64 dev eth0");
    let doc = wait_for("dadfailed", Duration::from_secs(10), || {
        let (_, doc) = a.inspect("");
        flags_of(&doc, "2001:db8:60::1")
            .contains(&"dadfailed")
            .then_some(doc)
    });
    assert_eq!(internal(&doc), "2001:db8:60::9", "{doc:#}");
    let out = a.stackring("", &["preflight", "--json"]);
    let pf: Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = pf["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["code"] == "addr.dadfailed")
        .unwrap();
    assert_eq!(check["result"], "fail", "{pf:#}");
}

#[test]
fn link_down_addresses_are_not_used() {
    let ns = Netns::new("linkdown");
    ns.nic("eth0").addr("192.0.2.20/24", "eth0");
    ns.nic("eth1").addr("2001:db8:70::20/64", "eth1");
    ns.ip("link set eth0 down");
    let (_, doc) = ns.inspect("");
    assert_eq!(
        (family(&doc), internal(&doc)),
        ("ipv6", "2001:db8:70::20"),
        "{doc:#}"
    );
    // Carrier loss (peer down) counts as down too.
    ns.ip("link set eth0 up");
    ns.ip("link set eth1p down");
    let (_, doc) = ns.inspect("");
    assert_eq!(
        (family(&doc), internal(&doc)),
        ("ipv4", "192.0.2.20"),
        "{doc:#}"
    );
}

#[test]
fn interface_names_filter_and_order() {
    let ns = Netns::new("ifnames");
    ns.nic("eth0").addr("2001:db8:80::1/64", "eth0");
    ns.nic("eth1").addr("2001:db8:81::1/64", "eth1");
    ns.nic("eth2").addr("192.0.2.30/24", "eth2");
    let (_, doc) = ns.inspect("");
    assert_eq!(family(&doc), "ipv4");
    let (_, doc) = ns.inspect("lifecycler: {interface_names: [eth1, eth0]}");
    assert_eq!(
        (family(&doc), internal(&doc)),
        ("ipv6", "2001:db8:81::1"),
        "{doc:#}"
    );
    let (code, doc) = ns.inspect("lifecycler: {interface_names: [nosuch0]}");
    assert_eq!(code, 1);
    assert_eq!(doc["ready"], false);
}

#[test]
fn default_route_link_is_preferred() {
    let ns = Netns::new("defroute");
    ns.nic("eth0").addr("2001:db8:90::1/64", "eth0");
    ns.nic("eth1").addr("2001:db8:91::1/64", "eth1");
    let (_, doc) = ns.inspect("");
    assert_eq!(internal(&doc), "2001:db8:90::1");
    ns.ip("-6 route add default via 2001:db8:91::ff dev eth1");
    let (_, doc) = ns.inspect("");
    assert_eq!(internal(&doc), "2001:db8:91::1", "{doc:#}");
    assert_eq!(doc["default_routes"][0]["family"], "ipv6");
}

#[test]
fn pinned_address_must_be_bound() {
    let ns = Netns::new("pinned");
    ns.nic("eth0")
        .addr("2001:db8:a0::1/64", "eth0")
        .addr("2001:db8:a0::2/64", "eth0");
    let (_, doc) = ns.inspect("node: {addr: '2001:db8:a0::2'}");
    assert_eq!(internal(&doc), "2001:db8:a0::2");
    let (code, doc) = ns.inspect("node: {addr: '2001:db8:a0::7'}");
    assert_eq!(code, 1);
    assert!(
        doc["reason"].as_str().unwrap().contains("not bound"),
        "{doc:#}"
    );
    let out = ns.stackring("node: {addr: '2001:db8:a0::7'}", &["preflight", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let pf: Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = pf["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["code"] == "addr.not_bound")
        .unwrap();
    assert_eq!(
        (check["result"].as_str(), check["severity"].as_str()),
        (Some("fail"), Some("error"))
    );
}

#[test]
fn hosts_without_ipv6_localhost_fails_preflight_and_fix_repairs_it() {
    let ns = Netns::new("hosts");
    ns.nic("eth0").addr("2001:db8:b0::1/64", "eth0");
    let original = "127.0.0.1\tlocalhost\n# keep me\n192.0.2.99 db.example   # no newline";
    ns.set_hosts(original);

    let out = ns.stackring("", &["preflight", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let pf: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pf["ok"], false);
    let check = pf["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["code"] == "hosts.ipv6_localhost")
        .unwrap();
    assert_eq!(
        (check["severity"].as_str(), check["result"].as_str()),
        (Some("error"), Some("fail"))
    );

    let out = ns.stackring("", &["preflight", "--fix", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let fixed = std::fs::read_to_string(ns.hosts_path()).unwrap();
    assert!(fixed.starts_with(original), "{fixed:?}");
    assert_eq!(
        &fixed[original.len()..],
        "\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    );
    let out = ns.stackring("", &["preflight"]);
    assert_eq!(out.status.code(), Some(0));

    // On an IPv4 host the same gap is only a warning.
    let v4 = Netns::new("hosts4");
    v4.nic("eth0").addr("192.0.2.40/24", "eth0");
    v4.set_hosts("127.0.0.1 localhost\n");
    assert_eq!(v4.stackring("", &["preflight"]).status.code(), Some(0));
}

#[test]
fn port_in_use_is_reported() {
    let ns = Netns::new("port");
    ns.nic("eth0").addr("2001:db8:c0::1/64", "eth0");
    ns.set_hosts("127.0.0.1 localhost\n::1 localhost\n");
    // A socket made on a thread inside the namespace stays there, held by this test.
    let _holder = ns.run(|| std::net::TcpListener::bind("[::]:3200").unwrap());
    let out = ns.stackring("", &["preflight", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let pf: Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = pf["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["code"] == "port.in_use")
        .unwrap();
    assert!(
        check["message"].as_str().unwrap().contains("[::]:3200"),
        "{pf:#}"
    );
}

#[test]
fn render_tempo_and_env_for_this_host() {
    let ns = Netns::new("render");
    ns.nic("eth0").addr("2001:db8:d0::5/64", "eth0");
    let out = ns.stackring("lifecycler: {port: 19095}", &["render", "tempo"]);
    assert!(out.status.success());
    let tempo = text(&out.stdout);
    assert!(
        tempo.contains("    address: '2001:db8:d0::5'\n    port: 19095\n    enable_inet6: true"),
        "{tempo}"
    );
    assert!(tempo.contains("grpc_listen_address: '::'"), "{tempo}");
    let out = ns.stackring("", &["render", "env"]);
    let env = text(&out.stdout);
    assert!(
        env.contains("STACKRING_GRPC_ADVERTISE=[2001:db8:d0::5]:9095\n"),
        "{env}"
    );
}

#[test]
fn thousands_of_addresses_are_read_whole() {
    let ns = Netns::new("many");
    ns.nic("eth0");
    let batch: String = (1..=3000)
        .map(|i| format!("addr add 2001:db8:e0::{i:x}/64 dev eth0 nodad\n"))
        .collect();
    let file = ns.dir().join("batch");
    std::fs::write(&file, batch).unwrap();
    ns.ip(&format!("-batch {}", file.display()));
    let (code, doc) = ns.inspect("");
    assert_eq!(code, 0);
    assert_eq!(internal(&doc), "2001:db8:e0::1");
    assert_eq!(doc["external_addrs"].as_array().unwrap().len(), 2999);
}
