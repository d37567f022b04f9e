//! The `/ring` page: dskit's ring-status columns plus family, internal/external addresses and
//! listen versus advertised endpoints. Pure rendering; the handler lives in `http`.

use crate::core::members::MemberView;

/// Escapes text for HTML element content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn ago(ms: u64) -> String {
    if ms == u64::MAX {
        "never".into()
    } else if ms < 1000 {
        format!("{ms} ms ago")
    } else {
        format!("{} s ago", ms / 1000)
    }
}

fn timestamp(unix: u64) -> String {
    // UTC, without a date crate: days since the epoch to a civil date (Howard Hinnant's algorithm).
    let (days, secs) = ((unix / 86400) as i64, unix % 86400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// `now_unix`: the time the page says it was generated (seconds since the epoch).
pub(crate) fn page(cluster: &str, members: &[MemberView], now_unix: u64) -> String {
    let mut rows = String::new();
    for m in members {
        let e = &m.entry;
        let healthy = m.healthy();
        // dskit's words: OK or UNHEALTHY; the same summary as `status nodes` beside it.
        let health = if healthy {
            "OK".to_string()
        } else {
            format!("UNHEALTHY <small>({})</small>", esc(&m.summary))
        };
        let state = if e.reason.is_empty() {
            esc(e.state.as_str())
        } else {
            format!(
                "{} <small>({})</small>",
                esc(e.state.as_str()),
                esc(&e.reason)
            )
        };
        let action = if healthy {
            String::new()
        } else {
            format!(
                "<form method=\"post\" action=\"/ring/forget\"><input type=\"hidden\" name=\"id\" value=\"{}\"><button type=\"submit\">Forget</button></form>",
                esc(&e.id)
            )
        };
        rows.push_str(&format!(
            "<tr class=\"{cls}\"><td>{marker}{id}</td><td>{zone}</td><td>{state}</td><td>{health}</td><td>{grpc}</td><td>{registered}</td><td>{heartbeat}</td><td>–</td><td>–</td><td>{family}</td><td>{addr}</td><td>{ext}</td><td>{listen}</td><td>{gossip}</td><td>{action}</td></tr>\n",
            cls = if healthy { "ok" } else { "down" },
            marker = if m.local { "* " } else { "" },
            id = esc(&e.id),
            zone = esc(&e.zone),
            grpc = esc(&e.advertised_grpc),
            registered = timestamp(e.registered_unix),
            heartbeat = ago(m.last_seen_ms_ago),
            family = esc(&e.family),
            addr = esc(&e.addr),
            ext = esc(&e.external_addrs.join(", ")),
            listen = esc(&e.listen_grpc),
            gossip = esc(&e.advertised_gossip),
        ));
    }
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>stackring ring: {cluster}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; font-size: 14px; }}
th, td {{ border: 1px solid #bbb; padding: 4px 8px; text-align: left; white-space: nowrap; }}
th {{ background: #eee; }}
tr.down td {{ background: #fdd; }}
</style></head>
<body>
<h1>Ring status: {cluster}</h1>
<p>Generated {now}. {count} nodes. Addresses are advertised values (what peers dial); "Listen" is where this node's gRPC server binds.</p>
<table>
<thead><tr><th>Instance ID</th><th>Availability Zone</th><th>State</th><th>Health</th><th>Address</th><th>Registered At</th><th>Last Heartbeat</th><th>Tokens</th><th>Ownership</th><th>Family</th><th>Internal Address</th><th>External Addresses</th><th>Listen (gRPC)</th><th>Advertised Gossip</th><th>Actions</th></tr></thead>
<tbody>
{rows}</tbody></table>
</body></html>
"#,
        cluster = esc(cluster),
        now = timestamp(now_unix),
        count = members.len(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::members::{summary, Health, NodeEntry, NodeState};

    fn member(id: &str, status: Health) -> MemberView {
        MemberView {
            entry: NodeEntry {
                id: id.into(),
                hostname: "h".into(),
                state: NodeState::Active,
                family: "ipv6".into(),
                addr: "2001:db8::1".into(),
                external_addrs: vec!["203.0.113.1".into()],
                advertised_grpc: "[2001:db8::1]:19095".into(),
                advertised_http: "[2001:db8::1]:3200".into(),
                advertised_gossip: "[2001:db8::1]:7946".into(),
                listen_grpc: "[::]:9095".into(),
                zone: "z<1>".into(),
                registered_unix: 1_700_000_000,
                reason: String::new(),
                admin_version: 0,
                applied_ms: 0,
                version: "0.1.0+abcdef0".into(),
            },
            status,
            last_seen_ms_ago: 33_000,
            local: false,
            generation: 1,
            summary: summary(status, NodeState::Active, "", 33_000),
            reach: String::new(),
        }
    }

    #[test]
    fn page_shows_columns_escapes_and_offers_forget_only_for_unhealthy() {
        let html = page(
            "c1",
            &[member("a", Health::Ok), member("b", Health::Down)],
            1_700_000_000,
        );
        for col in [
            "Instance ID",
            "Availability Zone",
            "State",
            "Address",
            "Registered At",
            "Last Heartbeat",
            "Tokens",
            "Ownership",
            "Family",
            "External Addresses",
            "Listen (gRPC)",
        ] {
            assert!(html.contains(&format!("<th>{col}</th>")), "{col}");
        }
        assert!(html.contains("[2001:db8::1]:19095"));
        assert!(html.contains("z&lt;1&gt;") && !html.contains("z<1>"));
        assert_eq!(html.matches("<button").count(), 1);
        assert!(html.contains("value=\"b\""));
        assert!(html.contains("2023-11-14 22:13:20 UTC"));
        // dskit's Health words, with the same summary `status nodes` prints; the state in its
        // own column (a crashed node stays ACTIVE there, as in dskit).
        assert!(html.contains("<td>ACTIVE</td><td>OK</td>"), "{html}");
        assert!(
            html.contains(
                "<td>ACTIVE</td><td>UNHEALTHY <small>(DOWN, last seen 33s ago)</small></td>"
            ),
            "{html}"
        );
    }
}
