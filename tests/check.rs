//! `stackring check tempo|loki|mimir FILE` as the real binary, on IPv6-only namespaces: exit codes,
//! the codes in `--json`, names resolved through the namespace's own /etc/hosts, and
//! `render` output passing `check` on the same host.

mod common;
use common::*;
use serde_json::Value;

/// seeds/tempo-configure-ipv6.md, "Protocol configuration", as the seed prints it.
const SEED_IPV6_BLOCK: &str = include_str!("fixtures/seed-tempo-configure-ipv6.yaml");

fn ipv6_only(tag: &str) -> Netns {
    let ns = Netns::new(tag);
    ns.nic("eth0").addr("2001:db8:c4::5/64", "eth0");
    ns
}

/// `check PRODUCT FILE --json` in `ns`: exit code and the parsed report.
fn check_json(ns: &Netns, stackring: &str, product: &str, yaml: &str) -> (i32, Value) {
    let file = ns.write_config(yaml);
    let out = ns.stackring(
        stackring,
        &["check", product, file.to_str().unwrap(), "--json"],
    );
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), doc)
}

fn codes(doc: &Value) -> Vec<(String, String, String)> {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["code"].as_str().unwrap().to_string(),
                f["key"].as_str().unwrap().to_string(),
                f["severity"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn check_tempo_flags_the_seed_ipv6_block_on_an_ipv6_only_host() {
    let ns = ipv6_only("chk6");
    let (code, doc) = check_json(&ns, "", "tempo", SEED_IPV6_BLOCK);
    assert_eq!(code, 1, "{doc:#}");
    assert_eq!(doc["family"], "ipv6");
    assert_eq!(doc["ok"], false);
    let errors: Vec<_> = codes(&doc)
        .into_iter()
        .filter(|(_, _, s)| s == "error")
        .collect();
    assert_eq!(
        errors,
        [(
            "advertised.unspecified".to_string(),
            "ingester.lifecycler.address".to_string(),
            "error".to_string()
        )],
        "{doc:#}"
    );
    let f = &doc["findings"][0];
    assert_eq!(f["value"], "'::'");
    assert!(
        f["fix"].as_str().unwrap().contains("2001:db8:c4::5"),
        "{f:#}"
    );

    // Without the address line, and with the distributor's ring, it is clean: exit 0.
    let fixed = SEED_IPV6_BLOCK.replace("    address: '::'\n", "")
        + "distributor:\n  ring:\n    enable_inet6: true\n";
    let (code, doc) = check_json(&ns, "", "tempo", &fixed);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(doc["findings"], serde_json::json!([]));
}

#[test]
fn check_resolves_join_members_with_the_hosts_own_resolver() {
    let ns = ipv6_only("chkdns");
    ns.set_hosts(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         192.0.2.7\tgossip-v4\n2001:db8:c4::6\tgossip-v6\n",
    );
    let yaml = "memberlist:\n  join_members:\n    - gossip-v4:7946\n    - dns+gossip-v6:7946\n\
                ingester:\n  lifecycler:\n    enable_inet6: true\n    interface_names: [eth0]\n";
    let (code, doc) = check_json(&ns, "", "loki", yaml);
    assert_eq!(code, 1, "{doc:#}");
    let f = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "memberlist.join_wrong_family")
        .unwrap_or_else(|| panic!("{doc:#}"));
    assert_eq!(f["key"], "memberlist.join_members[0]");
    assert!(
        f["message"].as_str().unwrap().contains("192.0.2.7 (IPv4)"),
        "{f:#}"
    );
    assert!(
        !codes(&doc)
            .iter()
            .any(|(_, k, _)| k == "memberlist.join_members[1]"),
        "{doc:#}"
    );
}

#[test]
fn render_output_passes_check_for_every_product_behind_a_proxy() {
    let ns = ipv6_only("chkrnd");
    let stackring = "lifecycler: {port: 19095}";
    for product in ["tempo", "loki", "mimir"] {
        let out = ns.stackring(stackring, &["render", product]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let block = text(&out.stdout);
        assert!(block.contains("19095"), "{block}");
        let (code, doc) = check_json(&ns, stackring, product, &block);
        assert_eq!(code, 0, "{product}:\n{block}\n{doc:#}");
        assert_eq!(doc["findings"], serde_json::json!([]), "{product}");
        // The same block on a node without the proxy: the ports are wrong now.
        let (code, doc) = check_json(&ns, "", product, &block);
        assert_eq!(code, 1, "{product}: {doc:#}");
        assert!(
            codes(&doc).iter().all(|(c, _, _)| c == "port.no_proxy"),
            "{product}: {doc:#}"
        );
    }
}

#[test]
fn check_exits_2_naming_a_file_it_cannot_read_or_parse() {
    let ns = ipv6_only("chkbad");
    let out = ns.stackring("", &["check", "mimir", "/nonexistent/mimir.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("/nonexistent/mimir.yaml") && err.contains("fix:"),
        "{err}"
    );
    let file = ns.write_config("server:\n  grpc_listen_port: [\n");
    let out = ns.stackring("", &["check", "loki", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains(file.to_str().unwrap()) && err.contains("not valid YAML"),
        "{err}"
    );
}
