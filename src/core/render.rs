//! Pure renderings of an identity: the `identity.env` file and Tempo's, Loki's and Mimir's network
//! config blocks.

use crate::core::decide::Identity;
use crate::core::snapshot::Family;
use std::fmt::Write;
use std::net::IpAddr;

/// The first line of the daemon's `identity.env`.
pub(crate) const ENV_FILE_HEADER: &str =
    "# Written by stackring; rewritten on every identity change.";

/// The first line of `stackring render env`: a snapshot, which nothing rewrites.
pub(crate) const ENV_RENDER_HEADER: &str =
    "# stackring render env: this host's identity now (the daemon keeps /run/stackring/identity.env current).";

/// `KEY=value` lines for systemd's `EnvironmentFile=` (and `source` in a shell). IPv6 in
/// `host:port` values is bracketed; lists are space-separated and double-quoted.
pub(crate) fn env_file(id: &Identity) -> String {
    env_lines(id, ENV_FILE_HEADER)
}

/// The same lines under `header`.
pub(crate) fn env_lines(id: &Identity, header: &str) -> String {
    let externals: Vec<String> = id.external_addrs.iter().map(IpAddr::to_string).collect();
    let mut out = format!("{header}\n");
    let mut line = |k: &str, v: &str| {
        let _ = writeln!(out, "STACKRING_{k}={v}");
    };
    line("READY", "1");
    line("ID", &quote(&id.id));
    line("FAMILY", id.family.as_str());
    line("INTERNAL_ADDR", &id.internal_addr.to_string());
    line("INTERNAL_IFACE", &quote(&id.internal_interface));
    line("EXTERNAL_ADDRS", &quote(&externals.join(" ")));
    for (name, ep) in [
        ("GRPC", &id.grpc),
        ("HTTP", &id.http),
        ("HTTPS", &id.https),
        ("GOSSIP", &id.gossip),
    ] {
        line(&format!("{name}_LISTEN"), &ep.listen.to_string());
        line(&format!("{name}_ADVERTISE"), &ep.advertise.to_string());
        line(
            &format!("{name}_ADVERTISE_ADDR"),
            &ep.advertise.ip().to_string(),
        );
        line(
            &format!("{name}_ADVERTISE_PORT"),
            &ep.advertise.port().to_string(),
        );
    }
    out
}

/// `identity.env` before any identity was decided: consumers see `STACKRING_READY=0` and why.
pub(crate) fn env_file_waiting(reason: &str) -> String {
    format!(
        "{ENV_FILE_HEADER}\nSTACKRING_READY=0\nSTACKRING_REASON={}\n",
        quote(reason)
    )
}

/// Double-quotes a value when it holds anything a shell or systemd would split or expand.
pub(crate) fn quote(v: &str) -> String {
    if !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:[]".contains(c))
    {
        v.to_string()
    } else {
        let escaped = v
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('$', "\\$")
            .replace('`', "\\`");
        format!("\"{escaped}\"")
    }
}

/// The network part of a Tempo configuration for this node: listen addresses, memberlist bind and
/// advertise, and each ring's `enable_inet6`/`instance_addr`/`instance_port` (the advertised
/// gRPC endpoint: a sidecar proxy's port when `lifecycler.port` is set).
pub(crate) fn tempo_block(id: &Identity) -> String {
    let inet6 = id.family == Family::Ipv6;
    let addr = id.grpc.advertise.ip();
    let port = id.grpc.advertise.port();
    let mut out = servers_block("Tempo", id);
    let _ = writeln!(out, "ingester:");
    let _ = writeln!(out, "  lifecycler:");
    let _ = writeln!(out, "    address: '{addr}'");
    let _ = writeln!(out, "    port: {port}");
    let _ = writeln!(out, "    enable_inet6: {inet6}");
    if !id.zone.is_empty() {
        let _ = writeln!(out, "    availability_zone: '{}'", id.zone);
    }
    for section in ["distributor", "compactor", "metrics_generator"] {
        let _ = writeln!(out, "{section}:");
        let _ = writeln!(out, "  ring:");
        let _ = writeln!(out, "    enable_inet6: {inet6}");
        let _ = writeln!(out, "    instance_addr: '{addr}'");
        let _ = writeln!(out, "    instance_port: {port}");
    }
    out
}

/// Loki's network block: `server`, `memberlist`, and every ring of `core::products::LOKI` with this
/// node's advertised gRPC address and port and the IPv6 flag (Loki copies addresses from `common`
/// but not the flag, grafana/loki#13416, so each ring gets all three).
pub(crate) fn loki_block(id: &Identity) -> String {
    dskit_block(id, &crate::core::products::LOKI)
}

/// Mimir's network block, as [`loki_block`] for the rings of `core::products::MIMIR`.
pub(crate) fn mimir_block(id: &Identity) -> String {
    dskit_block(id, &crate::core::products::MIMIR)
}

fn dskit_block(id: &Identity, spec: &crate::core::products::Spec) -> String {
    let inet6 = id.family == Family::Ipv6;
    let mut out = servers_block(spec.product.name(), id);
    // Rings grouped under their top-level section, in the schema's order.
    let mut sections: Vec<(&str, Vec<&crate::core::products::Ring>)> = Vec::new();
    for ring in spec.rings {
        let top = ring.path.split('.').next().unwrap_or(ring.path);
        match sections.iter_mut().find(|(t, _)| *t == top) {
            Some((_, rings)) => rings.push(ring),
            None => sections.push((top, vec![ring])),
        }
    }
    for (top, rings) in sections {
        let _ = writeln!(out, "{top}:");
        for ring in rings {
            let indent = match ring.path.split_once('.') {
                Some((_, sub)) => {
                    let _ = writeln!(out, "  {sub}:");
                    "    "
                }
                None => "  ",
            };
            let _ = writeln!(out, "{indent}{}: '{}'", ring.addr, id.grpc.advertise.ip());
            let _ = writeln!(out, "{indent}{}: {}", ring.port, id.grpc.advertise.port());
            let _ = writeln!(out, "{indent}{}: {inet6}", ring.inet6);
        }
    }
    out
}

/// The block's heading, `server` (listen) and `memberlist` (bind and advertise), the same for
/// every dskit product.
fn servers_block(product: &str, id: &Identity) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# {product} network settings rendered by stackring for node {}: {} ({}).",
        id.id, id.family, id.family_reason
    );
    let _ = writeln!(out, "server:");
    let _ = writeln!(out, "  grpc_listen_address: '{}'", id.grpc.listen.ip());
    let _ = writeln!(out, "  grpc_listen_port: {}", id.grpc.listen.port());
    let _ = writeln!(out, "  http_listen_address: '{}'", id.http.listen.ip());
    let _ = writeln!(out, "  http_listen_port: {}", id.http.listen.port());
    let _ = writeln!(out, "memberlist:");
    let _ = writeln!(out, "  bind_addr: ['{}']", id.gossip.listen.ip());
    let _ = writeln!(out, "  bind_port: {}", id.gossip.listen.port());
    let _ = writeln!(out, "  advertise_addr: '{}'", id.gossip.advertise.ip());
    let _ = writeln!(out, "  advertise_port: {}", id.gossip.advertise.port());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::decide::Endpoint;

    fn identity() -> Identity {
        Identity {
            id: "node-a".into(),
            zone: String::new(),
            family: Family::Ipv6,
            family_reason: "only IPv6 is usable".into(),
            internal_addr: "2001:db8::5".parse().unwrap(),
            internal_interface: "eth0".into(),
            external_addrs: vec![
                "2001:db8::5".parse().unwrap(),
                "203.0.113.9".parse().unwrap(),
            ],
            grpc: Endpoint {
                listen: "[::]:9095".parse().unwrap(),
                advertise: "[2001:db8::5]:19095".parse().unwrap(),
            },
            http: Endpoint {
                listen: "[::]:3200".parse().unwrap(),
                advertise: "[2001:db8::5]:3200".parse().unwrap(),
            },
            https: Endpoint {
                listen: "[::]:9443".parse().unwrap(),
                advertise: "[2001:db8::5]:9443".parse().unwrap(),
            },
            gossip: Endpoint {
                listen: "[::]:7946".parse().unwrap(),
                advertise: "[2001:db8::5]:7946".parse().unwrap(),
            },
        }
    }

    #[test]
    fn env_file_golden() {
        let want = "\
# Written by stackring; rewritten on every identity change.
STACKRING_READY=1
STACKRING_ID=node-a
STACKRING_FAMILY=ipv6
STACKRING_INTERNAL_ADDR=2001:db8::5
STACKRING_INTERNAL_IFACE=eth0
STACKRING_EXTERNAL_ADDRS=\"2001:db8::5 203.0.113.9\"
STACKRING_GRPC_LISTEN=[::]:9095
STACKRING_GRPC_ADVERTISE=[2001:db8::5]:19095
STACKRING_GRPC_ADVERTISE_ADDR=2001:db8::5
STACKRING_GRPC_ADVERTISE_PORT=19095
STACKRING_HTTP_LISTEN=[::]:3200
STACKRING_HTTP_ADVERTISE=[2001:db8::5]:3200
STACKRING_HTTP_ADVERTISE_ADDR=2001:db8::5
STACKRING_HTTP_ADVERTISE_PORT=3200
STACKRING_HTTPS_LISTEN=[::]:9443
STACKRING_HTTPS_ADVERTISE=[2001:db8::5]:9443
STACKRING_HTTPS_ADVERTISE_ADDR=2001:db8::5
STACKRING_HTTPS_ADVERTISE_PORT=9443
STACKRING_GOSSIP_LISTEN=[::]:7946
STACKRING_GOSSIP_ADVERTISE=[2001:db8::5]:7946
STACKRING_GOSSIP_ADVERTISE_ADDR=2001:db8::5
STACKRING_GOSSIP_ADVERTISE_PORT=7946
";
        assert_eq!(env_file(&identity()), want);
    }

    #[test]
    fn quoting_defuses_shell_characters() {
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(quote("x$y\"`"), "\"x\\$y\\\"\\`\"");
        assert_eq!(quote(""), "\"\"");
    }

    #[test]
    fn tempo_block_advertises_the_proxy_port_and_inet6() {
        let text = tempo_block(&identity());
        assert!(
            text.contains("    address: '2001:db8::5'\n    port: 19095\n    enable_inet6: true"),
            "{text}"
        );
        assert!(
            text.contains("  grpc_listen_address: '::'\n  grpc_listen_port: 9095"),
            "{text}"
        );
        assert!(text.contains("  bind_addr: ['::']"), "{text}");
        assert!(!text.contains("address: '::'\n    port"), "{text}");
        // It is YAML that parses, and stackring reads what it renders.
        let _: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        let read =
            crate::core::config::parse_str(&text, "n").unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(read.advertise_port, Some(19095));
        assert!(read.use_internal_ipv6);
    }
}
