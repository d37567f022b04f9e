//! Table tests: one fixture a finding, each in the shape of a configuration from an upstream issue
//! (cited), the seeds' own Tempo snippets as the seeds print them, and proof that what
//! `stackring render tempo|loki|mimir` prints passes the check on the same host.

use super::*;
use crate::core::config::parse_str;
use crate::core::decide::{decide, Context};
use crate::core::snapshot::{AddrFlags, HostEvent, Link, OperState, Scope};

/// A host: loopback, then each NIC (up) with its addresses (usable unless link-local).
fn host(nics: &[(&str, &[&str])]) -> HostSnapshot {
    let mut s = HostSnapshot::default();
    let lo: (&str, &[&str]) = ("lo", &["127.0.0.1", "::1"]);
    for (i, (name, ips)) in std::iter::once(&lo).chain(nics).enumerate() {
        let index = i as u32 + 1;
        s.apply(HostEvent::LinkChanged(Link {
            index,
            name: name.to_string(),
            kind: (index > 1).then(|| "veth".to_string()),
            admin_up: true,
            oper: OperState::Up,
            loopback: index == 1,
        }));
        for ip in *ips {
            let ip: IpAddr = ip.parse().unwrap();
            let scope = match ip {
                _ if ip.is_loopback() => Scope::Host,
                _ if is_link_local(&ip) => Scope::Link,
                _ => Scope::Global,
            };
            s.apply(HostEvent::AddressChanged(Address {
                link_index: index,
                ip,
                prefix_len: if ip.is_ipv4() { 24 } else { 64 },
                scope,
                flags: AddrFlags(AddrFlags::PERMANENT),
            }));
        }
    }
    s
}

/// IPv6-only: `eth0` holds 2001:db8::5 (and its link-local address).
fn v6() -> HostSnapshot {
    host(&[("eth0", &["2001:db8::5", "fe80::5"])])
}

/// IPv4-only: `eth0` holds 10.0.0.5.
fn v4() -> HostSnapshot {
    host(&[("eth0", &["10.0.0.5"])])
}

/// Names as a test DNS answers them.
fn dns(name: &str) -> Result<Vec<IpAddr>, String> {
    let ips: &[&str] = match name {
        "localhost" => &["127.0.0.1", "::1"],
        "gossip-v4.example" => &["10.0.0.5", "10.0.0.6"],
        "tempo-gossip-ring" | "loki-memberlist" => &["2001:db8::6", "10.0.0.6"],
        "ring6.example" => &["2001:db8::6", "2001:db8::7"],
        _ => return Err("Name or service not known".into()),
    };
    Ok(ips.iter().map(|ip| ip.parse().unwrap()).collect())
}

/// Checks `yaml` of `product` on `snapshot`, stackring configured with `stackring_yaml`.
fn run(
    product: Product,
    snapshot: &HostSnapshot,
    stackring_yaml: &str,
    yaml: &str,
) -> Vec<Finding> {
    let settings = parse_str(stackring_yaml, "node-a").unwrap();
    let decided = decide(snapshot, &settings, Context::default());
    let host = Host {
        snapshot,
        identity: decided.as_ref().map_err(|e| e.to_string()),
    };
    let tree = parse(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    check(product, &tree, &host, &dns)
}

fn errors(findings: &[Finding]) -> Vec<(&str, &str)> {
    findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| (f.code, f.key.as_str()))
        .collect()
}

fn find<'f>(findings: &'f [Finding], code: &str, key: &str) -> &'f Finding {
    findings
        .iter()
        .find(|f| f.code == code && f.key == key)
        .unwrap_or_else(|| panic!("no {code} at {key} in {findings:#?}"))
}

struct Case {
    /// The upstream report whose configuration shape this is.
    why: &'static str,
    product: Product,
    host: fn() -> HostSnapshot,
    stackring: &'static str,
    yaml: &'static str,
    /// Exactly the errors expected: (code, key).
    errors: &'static [(&'static str, &'static str)],
    /// Words the first error's message or fix must hold (the value, what it resolved to…).
    says: &'static [&'static str],
}

fn ens3_v6() -> HostSnapshot {
    host(&[("ens3", &["2001:db8::5"])])
}

fn link_local_nic() -> HostSnapshot {
    host(&[("eth0", &["2001:db8::5"]), ("eth1", &["fe80::7"])])
}

fn dual_stack() -> HostSnapshot {
    host(&[("eth0", &["10.0.0.5", "2001:db8::5"])])
}

fn two_nics() -> HostSnapshot {
    host(&[("eth0", &["2001:db8::5"]), ("eth1", &["10.0.0.5"])])
}

const CASES: &[Case] = &[
    // grafana/tempo#3981, #3984: Tempo's IPv6 page told users `address: '::'`, which put an
    // unreachable `::` in the ring.
    Case {
        why: "grafana/tempo#3981",
        product: Product::Tempo,
        host: v6,
        stackring: "",
        yaml: "ingester:\n  lifecycler:\n    address: '::'\n    enable_inet6: true\n",
        errors: &[("advertised.unspecified", "ingester.lifecycler.address")],
        says: &["unspecified", "2001:db8::5"],
    },
    // grafana/loki#5206: loopback in the ring (Loki's own single-node example sets
    // `common.instance_addr: 127.0.0.1`, copied into clusters).
    Case {
        why: "grafana/loki#5206",
        product: Product::Loki,
        host: v4,
        stackring: "",
        yaml: "server:\n  http_listen_port: 3100\n  grpc_listen_port: 9095\ncommon:\n  ring:\n    kvstore:\n      store: inmemory\n  replication_factor: 1\n  instance_addr: 127.0.0.1\n",
        errors: &[("advertised.loopback", "common.instance_addr")],
        says: &["loopback", "10.0.0.5"],
    },
    // grafana/loki#5206, by name: `localhost` resolves to loopback.
    Case {
        why: "grafana/loki#5206",
        product: Product::Loki,
        host: v4,
        stackring: "",
        yaml: "ingester:\n  lifecycler:\n    address: localhost\n",
        errors: &[("advertised.loopback", "ingester.lifecycler.address")],
        says: &["from 'localhost'"],
    },
    // grafana/tempo#1544 ("Add option to register IPv6 address"): the ring held the other
    // family's address.
    Case {
        why: "grafana/tempo#1544",
        product: Product::Mimir,
        host: v6,
        stackring: "",
        yaml: "ingester:\n  ring:\n    instance_addr: 10.0.0.5\n    instance_enable_ipv6: true\n",
        errors: &[("advertised.wrong_family", "ingester.ring.instance_addr")],
        says: &["IPv4", "IPv6", "2001:db8::5"],
    },
    // Link-local advertised: dskit's netutil (grafana/dskit#185) takes one only as a last resort,
    // written by hand it is always wrong (fe80::/10 needs a zone and is not routed).
    Case {
        why: "grafana/dskit#185",
        product: Product::Tempo,
        host: v6,
        stackring: "",
        yaml: "metrics_generator:\n  ring:\n    instance_addr: 'fe80::5'\n",
        errors: &[("advertised.link_local", "metrics_generator.ring.instance_addr")],
        says: &["link-local"],
    },
    // grafana/loki#13416: IPv6 needs the flag on every ring; Loki copies `common.ring`'s address
    // into the rings but not `instance_enable_ipv6`.
    Case {
        why: "grafana/loki#13416",
        product: Product::Loki,
        host: v6,
        stackring: "",
        yaml: "common:\n  ring:\n    instance_enable_ipv6: true\n    kvstore:\n      store: memberlist\nmemberlist:\n  bind_addr: ['::']\n  join_members: ['ring6.example:7946']\ningester:\n  lifecycler:\n    enable_inet6: true\ndistributor:\n  ring:\n    kvstore:\n      store: memberlist\n",
        errors: &[("ring.inet6_missing", "distributor.ring.instance_enable_ipv6")],
        says: &["(not set)", "IPv6", "common.ring.instance_enable_ipv6 is not copied"],
    },
    // The Tempo helm chart's IPv6 values (grafana/helm-charts#2953) as Tempo 2.x read them:
    // compactor and metrics-generator set, the ingester forgotten.
    Case {
        why: "grafana/tempo#3984",
        product: Product::Tempo,
        host: v6,
        stackring: "",
        yaml: "compactor:\n  ring:\n    enable_inet6: true\nmetrics_generator:\n  ring:\n    enable_inet6: true\ningester:\n  lifecycler:\n    enable_inet6: false\n",
        errors: &[("ring.inet6_missing", "ingester.lifecycler.enable_inet6")],
        says: &["false"],
    },
    // grafana/mimir#8325: the default interface names do not exist on the host.
    Case {
        why: "grafana/mimir#8325",
        product: Product::Mimir,
        host: ens3_v6,
        stackring: "",
        yaml: "ingester:\n  ring:\n    instance_interface_names: [eth0, en0]\n    instance_enable_ipv6: true\n",
        errors: &[("interface.absent", "ingester.ring.instance_interface_names")],
        says: &["'eth0' (does not exist here), 'en0' (does not exist here)", "ens3"],
    },
    // grafana/tempo#3590 ("tempo doesn't boot. Something about eth0/en0 which don't exist"):
    // nothing written, Tempo's defaults.
    Case {
        why: "grafana/tempo#3590",
        product: Product::Tempo,
        host: ens3_v6,
        stackring: "",
        yaml: "ingester:\n  lifecycler:\n    enable_inet6: true\n",
        errors: &[
            ("interface.absent", "ingester.lifecycler.interface_names"),
            ("interface.absent", "distributor.ring.instance_interface_names"),
            ("interface.absent", "compactor.ring.instance_interface_names"),
            ("interface.absent", "metrics_generator.ring.instance_interface_names"),
        ],
        says: &["not set", "'eth0'"],
    },
    // grafana/tempo#3590's fix, on a dual-stack box whose named NIC holds only IPv4.
    Case {
        why: "grafana/tempo#3590",
        product: Product::Tempo,
        host: two_nics,
        stackring: "node: {use_internal_ipv6: true}\n",
        yaml: "metrics_generator:\n  ring:\n    instance_interface_names:\n    - eth1\n    enable_inet6: true\n",
        errors: &[(
            "interface.no_address",
            "metrics_generator.ring.instance_interface_names",
        )],
        says: &["10.0.0.5 (IPv4)", "['eth0']"],
    },
    // grafana/dskit#185: netutil falls back to a link-local address when the interface has
    // nothing better; here the ring's interface has only fe80::, the node's address is on eth0.
    Case {
        why: "grafana/dskit#185",
        product: Product::Tempo,
        host: link_local_nic,
        stackring: "",
        yaml: "metrics_generator:\n  ring:\n    instance_interface_names: [eth1]\n    enable_inet6: true\n",
        errors: &[(
            "interface.no_address",
            "metrics_generator.ring.instance_interface_names",
        )],
        says: &["fe80::7 (link-local address)", "['eth0']"],
    },
    // grafana/dskit#185 (filterBestIP prefers IPv6 when the flag is on): on a dual-stack node of
    // an IPv4 cluster the flag makes the ring advertise IPv6.
    Case {
        why: "grafana/dskit#185",
        product: Product::Tempo,
        host: dual_stack,
        stackring: "",
        yaml: "ingester:\n  lifecycler:\n    enable_inet6: true\n",
        errors: &[("ring.inet6_on_ipv4", "ingester.lifecycler.enable_inet6")],
        says: &["advertise 2001:db8::5", "IPv4", "false"],
    },
    // grafana/tempo#1544 ("try using bind ::0 in the memberlist config"): gossip bound to IPv4.
    Case {
        why: "grafana/tempo#1544",
        product: Product::Tempo,
        host: v6,
        stackring: "",
        yaml: "memberlist:\n  bind_addr:\n    - 0.0.0.0\n  bind_port: 7946\n",
        errors: &[("memberlist.bind_wrong_family", "memberlist.bind_addr[0]")],
        says: &["IPv4 only", "'::'"],
    },
    Case {
        why: "grafana/tempo#1544",
        product: Product::Tempo,
        host: v6,
        stackring: "",
        yaml: "memberlist:\n  advertise_addr: 10.0.0.5\n",
        errors: &[("advertised.wrong_family", "memberlist.advertise_addr")],
        says: &["IPv4"],
    },
    // grafana/dskit#185: DNS names of the gossip ring resolve to the other family only.
    Case {
        why: "grafana/dskit#185",
        product: Product::Mimir,
        host: v6,
        stackring: "",
        yaml: "memberlist:\n  join_members:\n  - dns+gossip-v4.example:7946\n  - '[2001:db8::6]:7946'\n",
        errors: &[("memberlist.join_wrong_family", "memberlist.join_members[0]")],
        says: &["10.0.0.5 (IPv4), 10.0.0.6 (IPv4)", "AAAA"],
    },
    // cortexproject/cortex#3642: behind Istio the ring must hold the proxy's port; here the
    // node's proxy listens on 19095 and the ingester still advertises 9095.
    Case {
        why: "cortexproject/cortex#3642",
        product: Product::Tempo,
        host: v6,
        stackring: "lifecycler: {port: 19095}\n",
        yaml: "server:\n  grpc_listen_port: 9095\ningester:\n  lifecycler:\n    address: '2001:db8::5'\n",
        // (The rings the file leaves out advertise the listen port too: warnings.)
        errors: &[("port.proxy_bypassed", "ingester.lifecycler.port")],
        says: &["9095", "19095", "bypass"],
    },
    // cortexproject/cortex#3642, the other way: a proxy port with no proxy on this node.
    Case {
        why: "cortexproject/cortex#3642",
        product: Product::Mimir,
        host: v6,
        stackring: "",
        yaml: "ingester:\n  ring:\n    instance_port: 15001\n    instance_enable_ipv6: true\n",
        errors: &[("port.no_proxy", "ingester.ring.instance_port")],
        says: &["15001", "9095"],
    },
    Case {
        why: "cortexproject/cortex#3642",
        product: Product::Loki,
        host: v6,
        stackring: "lifecycler: {port: 19095}\n",
        yaml: "common:\n  ring:\n    instance_port: 15001\n    instance_addr: '2001:db8::5'\n",
        errors: &[
            ("port.advertised_mismatch", "common.ring.instance_port"),
        ],
        says: &["15001", "19095"],
    },
    // grafana/helm-charts#2953 (Tempo IPv6 values) with an IPv4-only listen address.
    Case {
        why: "grafana/tempo#3984",
        product: Product::Tempo,
        host: v6,
        stackring: "",
        yaml: "server:\n  grpc_listen_address: 0.0.0.0\n  http_listen_address: 127.0.0.1\n",
        errors: &[
            ("listen.excludes_family", "server.grpc_listen_address"),
            ("listen.loopback", "server.http_listen_address"),
        ],
        says: &["IPv4 connections only"],
    },
    // Bad values: named, with the fix.
    Case {
        why: "grafana/loki#13416",
        product: Product::Loki,
        host: v6,
        stackring: "",
        yaml: "distributor:\n  ring:\n    instance_addr: 2001:db8::5/64\n    instance_port: ninety\n    instance_enable_ipv6: yes\n",
        errors: &[
            ("value.invalid", "distributor.ring.instance_addr"),
            ("value.invalid", "distributor.ring.instance_port"),
        ],
        says: &["'2001:db8::5/64'", "CIDR", "'2001:db8::5'"],
    },
];

#[test]
fn each_finding_from_an_upstream_config_shape() {
    for case in CASES {
        let findings = run(case.product, &(case.host)(), case.stackring, case.yaml);
        let mut got = errors(&findings);
        let mut want: Vec<(&str, &str)> = case.errors.to_vec();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{}:\n{}\n{findings:#?}", case.why, case.yaml);
        let first = find(&findings, case.errors[0].0, case.errors[0].1);
        let text = format!(
            "{} {} {} fix: {}",
            first.key, first.value, first.message, first.fix
        );
        for word in case.says {
            assert!(text.contains(word), "{}: {word:?} not in {text}", case.why);
        }
    }
}

#[test]
fn bad_values_name_key_value_and_fix() {
    let findings = run(
        Product::Loki,
        &v6(),
        "",
        "distributor:\n  ring:\n    instance_addr: 2001:db8::5/64\n    instance_port: ninety\ningester:\n  lifecycler:\n    enable_inet6: 'maybe'\n",
    );
    let addr = find(&findings, "value.invalid", "distributor.ring.instance_addr");
    assert_eq!(addr.value, "'2001:db8::5/64'");
    assert!(addr.fix.contains("'2001:db8::5'"), "{addr:?}");
    let port = find(&findings, "value.invalid", "distributor.ring.instance_port");
    assert!(port.fix.contains("0–65535"), "{port:?}");
    let flag = find(
        &findings,
        "value.invalid",
        "ingester.lifecycler.enable_inet6",
    );
    assert!(flag.fix.contains("true or false"), "{flag:?}");
    // A section that is not a mapping, and an environment reference the product expands.
    let findings = run(
        Product::Mimir,
        &v6(),
        "",
        "ingester:\n  ring: 5\nmemberlist:\n  advertise_addr: ${POD_IP}\n",
    );
    find(&findings, "value.invalid", "ingester.ring");
    let env = find(&findings, "value.unchecked", "memberlist.advertise_addr");
    assert_eq!(env.severity, Severity::Warning);
}

#[test]
fn join_members_say_what_each_name_resolved_to() {
    // grafana/dskit#185: "the DNS server handing back both IPV6 and IPv4 addresses, which are
    // then used as members" — a warning, the IPv4 ones time out.
    let findings = run(
        Product::Tempo,
        &v6(),
        "",
        "memberlist:\n  join_members:\n    - tempo-gossip-ring\n    - nowhere.invalid:7946\n    - dnssrv+_gossip._tcp.tempo\n",
    );
    assert_eq!(errors(&findings), vec![], "{findings:#?}");
    let mixed = find(
        &findings,
        "memberlist.join_mixed_family",
        "memberlist.join_members[0]",
    );
    assert!(
        mixed
            .message
            .contains("2001:db8::6 (IPv6), 10.0.0.6 (IPv4)"),
        "{mixed:?}"
    );
    let gone = find(
        &findings,
        "memberlist.join_unresolved",
        "memberlist.join_members[1]",
    );
    assert!(
        gone.message.contains("Name or service not known"),
        "{gone:?}"
    );
    find(&findings, "value.unchecked", "memberlist.join_members[2]");
}

#[test]
fn ipv6_flag_in_an_ipv4_cluster_and_left_out_rings_are_warnings() {
    let findings = run(
        Product::Tempo,
        &v4(),
        "",
        "ingester:\n  lifecycler:\n    enable_inet6: true\n",
    );
    assert_eq!(errors(&findings), vec![], "{findings:#?}");
    find(
        &findings,
        "ring.inet6_on_ipv4",
        "ingester.lifecycler.enable_inet6",
    );
    let findings = run(Product::Mimir, &v6(), "", "");
    assert_eq!(errors(&findings), vec![], "{findings:#?}");
    let unset: Vec<&str> = findings
        .iter()
        .filter(|f| f.code == "ring.inet6_unset")
        .map(|f| f.key.as_str())
        .collect();
    assert_eq!(
        unset,
        [
            "ingester.ring.instance_enable_ipv6",
            "distributor.ring.instance_enable_ipv6",
            "compactor.sharding_ring.instance_enable_ipv6",
            "store_gateway.sharding_ring.instance_enable_ipv6"
        ]
    );
}

#[test]
fn without_an_identity_only_the_host_independent_checks_run() {
    let findings = run(
        Product::Tempo,
        &host(&[("eth0", &["fe80::5"])]),
        "",
        "ingester:\n  lifecycler:\n    address: '::'\nmemberlist:\n  bind_addr: ['0.0.0.0']\n",
    );
    find(&findings, "identity.undecided", "(host)");
    assert_eq!(
        errors(&findings),
        vec![("advertised.unspecified", "ingester.lifecycler.address")],
        "{findings:#?}"
    );
}

// The seeds' Tempo snippets, exactly as the seeds print them.

/// seeds/tempo-configure-ipv6.md, "Protocol configuration": the YAML block, byte for byte.
const SEED_IPV6_BLOCK: &str = include_str!("../../tests/fixtures/seed-tempo-configure-ipv6.yaml");

/// seeds/tempo-sidecar-proxies.md, the three snippets.
const SEED_GRPC_PORT: &str = "server:
  grpc_listen_port: 12345
";
const SEED_LIFECYCLER_PORT: &str = "ingester:
   lifecycler:
       port: 12345
";
const SEED_GENERATOR_PORT: &str = "metrics_generator:
  ring:
    instance_port: 12345
";

/// "This sample listen configuration will allow the gRPC and HTTP servers to listen on IPv6":
/// on an IPv6 node it would put `::` in the ring, and that is the one error.
#[test]
fn seed_configure_ipv6_block_is_flagged_for_address_unspecified() {
    let findings = run(Product::Tempo, &v6(), "", SEED_IPV6_BLOCK);
    assert_eq!(
        errors(&findings),
        vec![("advertised.unspecified", "ingester.lifecycler.address")],
        "{findings:#?}"
    );
    let f = find(
        &findings,
        "advertised.unspecified",
        "ingester.lifecycler.address",
    );
    assert_eq!(f.value, "'::'");
    assert!(f.fix.contains("2001:db8::5"), "{f:?}");
    // The distributor's ring, left out by the seed (Tempo's current page adds it): a warning.
    find(
        &findings,
        "ring.inet6_unset",
        "distributor.ring.enable_inet6",
    );
    // Without the `address` line (what Tempo's later page prints), it passes.
    let fixed = SEED_IPV6_BLOCK.replace("    address: '::'\n", "");
    assert_eq!(errors(&run(Product::Tempo, &v6(), "", &fixed)), vec![]);
}

/// "we need the ingester to _listen_ on port A but _advertise_ itself on port B".
#[test]
fn seed_sidecar_snippets_against_the_port_stackring_publishes() {
    // On an IPv4 node (the seed's cluster), so that only ports are judged. gRPC on 12345, no proxy: listen = advertised = 12345 on both sides.
    let findings = run(
        Product::Tempo,
        &v4(),
        "server: {grpc_listen_port: 12345}\n",
        SEED_GRPC_PORT,
    );
    assert_eq!(errors(&findings), vec![], "{findings:#?}");
    // The lifecycler advertises the proxy's 12345 while listening on 9095: right on a node whose
    // proxy stackring publishes at 12345, wrong on a node without one.
    let proxied = "lifecycler: {port: 12345}\n";
    let findings = run(Product::Tempo, &v4(), proxied, SEED_LIFECYCLER_PORT);
    assert!(
        !errors(&findings)
            .iter()
            .any(|(_, k)| k.starts_with("ingester")),
        "{findings:#?}"
    );
    let findings = run(Product::Tempo, &v4(), "", SEED_LIFECYCLER_PORT);
    let f = find(&findings, "port.no_proxy", "ingester.lifecycler.port");
    assert_eq!(f.value, "12345");
    // The metrics-generator snippet alone: its ring is right, the ingester (left out, so at the
    // listen port) would bypass the proxy.
    let findings = run(Product::Tempo, &v4(), proxied, SEED_GENERATOR_PORT);
    let errs = errors(&findings);
    assert!(
        !errs.iter().any(|(_, k)| k.starts_with("metrics_generator")),
        "{findings:#?}"
    );
    let f = find(&findings, "port.proxy_bypassed", "ingester.lifecycler.port");
    // Left out of this file: a warning (it is an error where the file writes the ring).
    assert_eq!(f.severity, Severity::Warning);
}

/// `stackring render tempo|loki|mimir` prints a block that passes the check on the same host:
/// no finding at all, on IPv6, IPv6 behind a proxy, and IPv4.
#[test]
fn rendered_blocks_pass_the_check() {
    let hosts: [(&str, HostSnapshot, &str); 6] = [
        ("ipv6", v6(), ""),
        ("ipv6 + proxy", v6(), "lifecycler: {port: 19095}\n"),
        ("ipv4", v4(), ""),
        ("ipv4 on ens3", host(&[("ens3", &["10.0.0.5"])]), ""),
        ("dual-stack, ipv4", dual_stack(), ""),
        (
            "dual-stack, ipv6",
            dual_stack(),
            "node: {use_internal_ipv6: true}\n",
        ),
    ];
    for (name, snapshot, stackring) in hosts {
        let settings = parse_str(stackring, "node-a").unwrap();
        let id = decide(&snapshot, &settings, Context::default()).unwrap();
        for (product, text) in [
            (Product::Tempo, crate::core::render::tempo_block(&id)),
            (Product::Loki, crate::core::render::loki_block(&id)),
            (Product::Mimir, crate::core::render::mimir_block(&id)),
        ] {
            let findings = run(product, &snapshot, stackring, &text);
            assert_eq!(findings, vec![], "{name} {product:?}:\n{text}");
        }
    }
}

#[test]
fn files_that_are_not_a_configuration_are_refused() {
    assert!(parse("server: [").unwrap_err().contains("not valid YAML"));
    assert!(parse("- a\n- b\n")
        .unwrap_err()
        .contains("not a YAML mapping"));
    assert_eq!(parse("").unwrap(), Value::Object(Default::default()));
    assert_eq!(
        parse("# only a comment\n").unwrap(),
        Value::Object(Default::default())
    );
    // YAML anchors, as in grafana/tempo#3590's `ring: &1` … `ring: *1`.
    let tree = parse("distributor:\n  ring: &1\n    instance_interface_names: [enp7s0]\nmetrics_generator:\n  ring: *1\n").unwrap();
    assert_eq!(
        lookup(&tree, "metrics_generator.ring.instance_interface_names"),
        Some(&serde_json::json!(["enp7s0"]))
    );
}

#[test]
fn the_text_report_names_code_key_value_fix_and_what_it_checked_against() {
    let snapshot = v6();
    let settings = parse_str("", "node-a").unwrap();
    let id = decide(&snapshot, &settings, Context::default()).unwrap();
    let findings = run(Product::Tempo, &snapshot, "", SEED_IPV6_BLOCK);
    let text = shim::text_report(
        Product::Tempo,
        std::path::Path::new("tempo.yaml"),
        Some(&id),
        &findings,
    );
    assert!(
        text.contains("ERROR  advertised.unspecified       ingester.lifecycler.address '::': is the unspecified address"),
        "{text}"
    );
    assert!(text.contains("fix: leave it empty"), "{text}");
    assert!(
        text.ends_with("tempo.yaml: Tempo configuration, 1 error(s), 1 warning(s), checked against IPv6 node node-a 2001:db8::5 (gRPC [2001:db8::5]:9095, gossip [2001:db8::5]:7946)\n"),
        "{text}"
    );
}
