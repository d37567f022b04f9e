//! The `/ring` page: dskit's ring-status columns (Instance ID, Availability Zone, State, Address,
//! Registered At, Last Heartbeat, Tokens, Ownership, Actions) plus Health, family and every
//! address of a node (internal, external, listen versus advertised), laid out to fit a 1280 px
//! window; and the guard of its Forget form (a CSRF token and a same-origin check). Pure: the
//! time, the key and the request headers come in as values; the handlers live in `api::http`.

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

/// dskit's Tokens and Ownership for one node. stackring nodes own no tokens, so `/ring` passes
/// none and the two columns are not shown; a ring whose nodes do own some shows them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NodeTokens {
    pub(crate) id: String,
    pub(crate) tokens: usize,
    /// Share of the token space, in percent.
    pub(crate) ownership_percent: f64,
}

/// One labelled entry of the Addresses cell, one address a line. Only addresses (and node ids)
/// may break inside a word, so short words (ACTIVE, Forget) never do.
fn address_line(out: &mut String, label: &str, values: &[String]) {
    if values.is_empty() {
        return;
    }
    let values: Vec<String> = values
        .iter()
        .map(|v| format!("<span class=\"a\">{}</span>", esc(v)))
        .collect();
    out.push_str(&format!(
        "<dt>{}</dt><dd>{}</dd>",
        esc(label),
        values.join("<br>")
    ));
}

/// The Addresses cell: dskit's Address (the advertised gRPC endpoint, what peers dial) first,
/// then where this node's gRPC server binds, the internal and external addresses and gossip.
fn addresses(m: &MemberView) -> String {
    let e = &m.entry;
    let mut out = String::from("<dl>");
    address_line(&mut out, "gRPC", std::slice::from_ref(&e.advertised_grpc));
    address_line(&mut out, "listen", std::slice::from_ref(&e.listen_grpc));
    address_line(&mut out, "internal", std::slice::from_ref(&e.addr));
    address_line(&mut out, "external", &e.external_addrs);
    address_line(
        &mut out,
        "gossip",
        std::slice::from_ref(&e.advertised_gossip),
    );
    out.push_str("</dl>");
    out
}

/// Per service, the members that failed to reach `target`'s advertised endpoint on their last probe:
/// `unreachable gRPC from node1, node3`.
fn unreachable_from(matrix: &crate::core::reach::Matrix, target: &str) -> Vec<String> {
    use crate::core::reach::{Outcome, Service};
    Service::ALL
        .into_iter()
        .filter_map(|service| {
            let sources: Vec<&str> = matrix
                .nodes
                .iter()
                .filter(|s| s.as_str() != target)
                .filter(|s| {
                    matrix
                        .get(s, target, service)
                        .is_some_and(|p| p.outcome != Outcome::Ok)
                })
                .map(String::as_str)
                .collect();
            (!sources.is_empty())
                .then(|| format!("unreachable {service} from {}", sources.join(", ")))
        })
        .collect()
}

/// Whether the page carries the Forget form.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Forget<'a> {
    /// The form, with its token (see [`form_token`]): over HTTPS and on the admin socket.
    Form { csrf_token: &'a str },
    /// Read-only (plain HTTP, where no change is accepted): a line names the HTTPS page instead.
    ElsewhereAt { https_url: &'a str },
}

/// The HTML page. `forget`: the Forget form, or where it is; `now_unix`: the time the page says
/// it was generated (seconds since the epoch).
pub(crate) fn page(
    cluster: &str,
    members: &[MemberView],
    tokens: &[NodeTokens],
    forget: Forget<'_>,
    now_unix: u64,
) -> String {
    let with_form = matches!(forget, Forget::Form { .. });
    // dskit shows Tokens and Ownership always; here they appear only when they say something.
    let show_tokens = tokens.iter().any(|t| t.tokens > 0);
    // Who cannot reach this node's advertised endpoints (the reachability matrix, by column).
    let matrix = crate::core::reach::Matrix::new(members);
    let mut rows = String::new();
    for m in members {
        let e = &m.entry;
        let healthy = m.healthy();
        // dskit's words: OK or UNHEALTHY; the same summary as `status nodes` beside it.
        let mut health = if healthy {
            "OK".to_string()
        } else {
            format!("UNHEALTHY <small>({})</small>", esc(&m.summary))
        };
        for line in unreachable_from(&matrix, &e.id) {
            health.push_str(&format!(
                "<br><small class=\"unreachable\">{}</small>",
                esc(&line)
            ));
        }
        let state = if e.reason.is_empty() {
            esc(e.state.as_str())
        } else {
            format!(
                "{} <small>({})</small>",
                esc(e.state.as_str()),
                esc(&e.reason)
            )
        };
        let token_cells = if show_tokens {
            match tokens.iter().find(|t| t.id == e.id) {
                Some(t) => format!(
                    "<td class=\"n\">{}</td><td class=\"n\">{:.4}%</td>",
                    t.tokens, t.ownership_percent
                ),
                None => "<td class=\"n\">0</td><td class=\"n\">0%</td>".to_string(),
            }
        } else {
            String::new()
        };
        // dskit's button: `forget=<id>` in the page's one form. Only for a node that is down:
        // a live one is refused anyway.
        let action = if healthy || !with_form {
            String::new()
        } else {
            format!(
                "<button type=\"submit\" name=\"forget\" value=\"{}\">Forget</button>",
                esc(&e.id)
            )
        };
        rows.push_str(&format!(
            "<tr class=\"{cls}\"><td class=\"id\">{marker}{id}</td><td>{zone}</td><td>{state}</td><td>{health}</td><td class=\"addrs\">{addrs}</td><td>{family}</td><td>{registered}</td><td>{heartbeat}</td>{token_cells}<td>{action}</td></tr>\n",
            cls = if healthy { "ok" } else { "down" },
            marker = if m.local { "* " } else { "" },
            id = esc(&e.id),
            zone = esc(&e.zone),
            addrs = addresses(m),
            family = esc(&e.family),
            registered = timestamp(e.registered_unix),
            heartbeat = ago(m.last_seen_ms_ago),
        ));
    }
    let (form_open, form_close) = match forget {
        Forget::Form { csrf_token } => (
            format!(
                "<form method=\"post\" action=\"/ring/forget\">\n<input type=\"hidden\" name=\"csrf_token\" value=\"{}\">\n",
                esc(csrf_token)
            ),
            "</form>\n",
        ),
        Forget::ElsewhereAt { https_url } => (
            format!(
                "<p class=\"readonly\">Read-only over plain HTTP. Forget is on the HTTPS page: <a href=\"{url}\">{url}</a></p>\n",
                url = esc(https_url)
            ),
            "",
        ),
    };
    let token_headers = if show_tokens {
        "<th>Tokens</th><th>Ownership</th>"
    } else {
        ""
    };
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>stackring ring: {cluster}</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }}
table {{ border-collapse: collapse; font-size: 14px; width: 100%; }}
th, td {{ border: 1px solid #bbb; padding: 4px 6px; text-align: left; vertical-align: top; }}
td.id, .a {{ overflow-wrap: anywhere; }}
td.addrs {{ width: 32%; }}
td > small {{ display: block; }}
th {{ background: #eee; }}
td.n {{ text-align: right; }}
tr.down td {{ background: #fdd; }}
small, dt {{ color: #555; font-size: 11px; }}
dl {{ display: grid; grid-template-columns: max-content auto; gap: 1px 6px; margin: 0; }}
dt {{ line-height: 17px; }}
dd {{ margin: 0; }}
.a {{ font-family: monospace; font-size: 13px; }}
</style></head>
<body>
<h1>Ring status: {cluster}</h1>
<p>Generated {now}. {count} nodes. gRPC is the advertised endpoint peers dial (dskit's Address); listen is where that node's gRPC server binds. Forget removes a DOWN node from every member's view until it starts again.</p>
{form_open}<table>
<thead><tr><th>Instance ID</th><th>Availability Zone</th><th>State</th><th>Health</th><th>Addresses</th><th>Family</th><th>Registered At</th><th>Last Heartbeat</th>{token_headers}<th>Actions</th></tr></thead>
<tbody>
{rows}</tbody></table>
{form_close}</body></html>
"#,
        cluster = esc(cluster),
        now = timestamp(now_unix),
        count = members.len(),
    )
}

/// How long a Forget form stays valid after its page was rendered.
pub(crate) const FORM_TTL_SECS: u64 = 300;
/// A token may be this far "in the future" (the clock stepped back a little since the render).
const FORM_SKEW_SECS: u64 = 30;

/// The secret behind the Forget form's tokens: random per process (see `api::http`), never sent
/// anywhere. A restart invalidates the pages rendered before it; another node cannot mint ours.
pub(crate) struct FormKey([u8; 32]);

impl FormKey {
    pub(crate) fn new(bytes: [u8; 32]) -> FormKey {
        FormKey(bytes)
    }

    /// Keyed BLAKE2b over (node id, issued-at), each field length-prefixed.
    fn mac(
        &self,
        node_id: &str,
        issued_unix: u64,
    ) -> blake2::Blake2bMac<blake2::digest::consts::U32> {
        use blake2::digest::{KeyInit, Mac};
        let mut mac =
            <blake2::Blake2bMac<blake2::digest::consts::U32> as KeyInit>::new_from_slice(&self.0)
                .expect("32 bytes is a valid BLAKE2b key");
        Mac::update(&mut mac, b"stackring ring form v1\0");
        Mac::update(&mut mac, &(node_id.len() as u64).to_le_bytes());
        Mac::update(&mut mac, node_id.as_bytes());
        Mac::update(&mut mac, &issued_unix.to_le_bytes());
        mac
    }
}

/// The token a rendered page embeds: `<issued-at>.<hex MAC>`.
pub(crate) fn form_token(key: &FormKey, node_id: &str, issued_unix: u64) -> String {
    use blake2::digest::Mac;
    let tag = key.mac(node_id, issued_unix).finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("{issued_unix}.{hex}")
}

/// Why a Forget form post was refused (403; nothing changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FormRefusal {
    #[error("the request says neither Origin nor Referer, so it cannot be told apart from a cross-site one; fix: press Forget on this node's /ring page in a browser, or use `stackring node <ID> forget` (admin socket) or POST /v1/nodes/<ID>/forget with the cluster credentials")]
    NoOrigin,
    #[error("the request comes from {origin}, not from this node's page (Host {host}); fix: open /ring on this node and press Forget there")]
    CrossOrigin { origin: String, host: String },
    #[error("the form has no csrf_token; fix: reload /ring on this node and press Forget there")]
    MissingToken,
    #[error("the csrf_token was not issued by this node's /ring page (forged, from another node's page, or from before a restart); fix: reload /ring on this node and press Forget again")]
    BadToken,
    #[error("the csrf_token is {age_s}s old; a page's Forget form is valid for {FORM_TTL_SECS}s; fix: reload /ring and press Forget again")]
    Expired { age_s: u64 },
    #[error("the csrf_token was issued {ahead_s}s in the future (this node's clock went back); fix: reload /ring and press Forget again")]
    FromTheFuture { ahead_s: u64 },
}

impl FormRefusal {
    /// The JSON `sub_code`.
    pub(crate) fn sub_code(&self) -> &'static str {
        match self {
            FormRefusal::NoOrigin => "no_origin",
            FormRefusal::CrossOrigin { .. } => "cross_origin",
            FormRefusal::MissingToken => "csrf_missing",
            FormRefusal::BadToken => "csrf_invalid",
            FormRefusal::Expired { .. } => "csrf_expired",
            FormRefusal::FromTheFuture { .. } => "csrf_from_the_future",
        }
    }
}

/// What the guard looks at in a Forget form post.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FormPost<'a> {
    pub(crate) origin: Option<&'a str>,
    pub(crate) referer: Option<&'a str>,
    pub(crate) host: Option<&'a str>,
    pub(crate) csrf_token: Option<&'a str>,
}

/// `http://[::1]:3200/ring` → `[::1]:3200`, lowercased, without the scheme's default port.
fn origin_authority(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?.to_ascii_lowercase();
    let authority = authority.rsplit('@').next()?.to_string();
    Some(without_default_port(
        &scheme.to_ascii_lowercase(),
        &authority,
    ))
}

fn without_default_port(scheme: &str, authority: &str) -> String {
    let default = match scheme {
        "https" => ":443",
        _ => ":80",
    };
    authority
        .strip_suffix(default)
        .unwrap_or(authority)
        .to_string()
}

/// The browser's Origin (or, without it, the Referer) names the host the request was sent to:
/// the page that posted the form is one this node served. Behind a reverse proxy the Host header
/// must be passed through (nginx: `proxy_set_header Host $host`), or every post looks cross-site.
fn check_same_origin(post: &FormPost<'_>) -> Result<(), FormRefusal> {
    let host = post.host.unwrap_or_default().trim().to_ascii_lowercase();
    let (claimed, scheme_source) = match (post.origin, post.referer) {
        (Some(origin), _) => (origin.trim(), origin),
        (None, Some(referer)) => (referer.trim(), referer),
        (None, None) => return Err(FormRefusal::NoOrigin),
    };
    let cross = || FormRefusal::CrossOrigin {
        origin: claimed.to_string(),
        host: host.clone(),
    };
    // `Origin: null` (sandboxed frames, data: URLs, some redirects) is never same-origin.
    let authority = origin_authority(claimed).ok_or_else(cross)?;
    let scheme = scheme_source
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default();
    if host.is_empty() || authority != without_default_port(&scheme, &host) {
        return Err(cross());
    }
    Ok(())
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// A Forget form post from a page this node rendered for `node_id` within [`FORM_TTL_SECS`], sent
/// by a browser from that page's origin. The token is not single-use: within its window a page
/// can forget several nodes (each post redirects to a fresh page with a fresh token anyway).
pub(crate) fn check_form(
    key: &FormKey,
    node_id: &str,
    post: &FormPost<'_>,
    now_unix: u64,
) -> Result<(), FormRefusal> {
    use blake2::digest::Mac;
    check_same_origin(post)?;
    let token = post
        .csrf_token
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(FormRefusal::MissingToken)?;
    let (issued, tag) = token.split_once('.').ok_or(FormRefusal::BadToken)?;
    let issued: u64 = issued.parse().map_err(|_| FormRefusal::BadToken)?;
    let tag = hex_decode(tag).ok_or(FormRefusal::BadToken)?;
    // Constant-time comparison of the MAC.
    key.mac(node_id, issued)
        .verify_slice(&tag)
        .map_err(|_| FormRefusal::BadToken)?;
    if issued > now_unix + FORM_SKEW_SECS {
        return Err(FormRefusal::FromTheFuture {
            ahead_s: issued - now_unix,
        });
    }
    let age_s = now_unix.saturating_sub(issued);
    if age_s > FORM_TTL_SECS {
        return Err(FormRefusal::Expired { age_s });
    }
    Ok(())
}

/// `application/x-www-form-urlencoded` pairs (`+` is a space, `%XX` a byte), in order.
pub(crate) fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
                .then(|| Some(hex(bytes[i + 1])? * 16 + hex(bytes[i + 2])?))
                .flatten();
            match (bytes[i], escaped) {
                (_, Some(b)) => {
                    out.push(b);
                    i += 3;
                }
                (b'+', None) => {
                    out.push(b' ');
                    i += 1;
                }
                (b, None) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
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
                external_addrs: vec!["203.0.113.1".into(), "2001:db8:ffff::1".into()],
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
                cert_expires_unix: 0,
            },
            status,
            last_seen_ms_ago: 33_000,
            local: false,
            generation: 1,
            summary: summary(status, NodeState::Active, "", 33_000),
            reach: String::new(),
        }
    }

    fn html(members: &[MemberView], tokens: &[NodeTokens]) -> String {
        page(
            "c1",
            members,
            tokens,
            Forget::Form {
                csrf_token: "1700000000.ab<cd>",
            },
            1_700_000_000,
        )
    }

    #[test]
    fn page_shows_dskit_columns_health_state_and_grouped_addresses() {
        let html = html(&[member("a", Health::Ok), member("b", Health::Down)], &[]);
        let headers: Vec<&str> = html
            .split("<th>")
            .skip(1)
            .map(|h| h.split("</th>").next().unwrap())
            .collect();
        assert_eq!(
            headers,
            [
                "Instance ID",
                "Availability Zone",
                "State",
                "Health",
                "Addresses",
                "Family",
                "Registered At",
                "Last Heartbeat",
                "Actions"
            ]
        );
        // Every address of a node in one cell, each with its label, dskit's Address first.
        let cell = "<td class=\"addrs\"><dl><dt>gRPC</dt><dd><span class=\"a\">[2001:db8::1]:19095</span></dd><dt>listen</dt><dd><span class=\"a\">[::]:9095</span></dd><dt>internal</dt><dd><span class=\"a\">2001:db8::1</span></dd><dt>external</dt><dd><span class=\"a\">203.0.113.1</span><br><span class=\"a\">2001:db8:ffff::1</span></dd><dt>gossip</dt><dd><span class=\"a\">[2001:db8::1]:7946</span></dd></dl></td>";
        assert_eq!(html.matches(cell).count(), 2, "{html}");
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
        // Nothing is kept on one line: long addresses wrap instead of widening the table.
        assert!(!html.contains("nowrap"), "{html}");
        assert!(html.contains("overflow-wrap: anywhere"), "{html}");
    }

    #[test]
    fn unreachable_cells_are_marked_on_the_target_row() {
        let mut a = member("a", Health::Ok);
        let b = member("b", Health::Ok);
        a.reach = "b:g=r0,h=o1,m=o1".into();
        let html = page(
            "c1",
            &[a, b],
            &[],
            Forget::Form { csrf_token: "t" },
            1_700_000_000,
        );
        assert_eq!(html.matches("class=\"unreachable\"").count(), 1, "{html}");
        assert!(html.contains("unreachable gRPC from a"), "{html}");
    }

    #[test]
    fn page_escapes_every_value() {
        let mut m = member("<b>", Health::Down);
        m.entry.external_addrs = vec!["\"x\"".into()];
        m.entry.reason = "a&b".into();
        let html = page(
            "<c>",
            &[m],
            &[],
            Forget::Form { csrf_token: "t\"t" },
            1_700_000_000,
        );
        for raw in ["z<1>", "<b>", "\"x\"", "<c>", "t\"t", "a&b"] {
            assert!(!html.contains(raw), "{raw} unescaped: {html}");
        }
        for escaped in [
            "z&lt;1&gt;",
            "value=\"&lt;b&gt;\"",
            "&quot;x&quot;",
            "Ring status: &lt;c&gt;",
            "value=\"t&quot;t\"",
            "a&amp;b",
        ] {
            assert!(html.contains(escaped), "{escaped}: {html}");
        }
    }

    #[test]
    fn forget_form_is_one_csrf_protected_post_with_buttons_only_for_unhealthy_nodes() {
        let html = html(&[member("a", Health::Ok), member("b", Health::Down)], &[]);
        assert_eq!(html.matches("<form ").count(), 1);
        assert!(html.contains("<form method=\"post\" action=\"/ring/forget\">"));
        assert!(html.contains(
            "<input type=\"hidden\" name=\"csrf_token\" value=\"1700000000.ab&lt;cd&gt;\">"
        ));
        assert_eq!(html.matches("<button").count(), 1);
        assert!(html.contains("name=\"forget\" value=\"b\">Forget</button>"));
    }

    /// Plain HTTP: the same table, no form, no button, and where the page with the form is.
    #[test]
    fn read_only_page_has_no_form_and_names_the_https_page() {
        let html = page(
            "c1",
            &[member("a", Health::Ok), member("b", Health::Down)],
            &[],
            Forget::ElsewhereAt {
                https_url: "https://[2001:db8::1]:9443/ring",
            },
            1_700_000_000,
        );
        assert!(!html.contains("<form"), "{html}");
        assert!(!html.contains("csrf_token"), "{html}");
        assert!(!html.contains("<button"), "{html}");
        assert!(html.contains("UNHEALTHY"), "{html}");
        assert!(
            html.contains(
                "Forget is on the HTTPS page: <a href=\"https://[2001:db8::1]:9443/ring\">"
            ),
            "{html}"
        );
    }

    #[test]
    fn tokens_and_ownership_appear_only_when_a_node_owns_tokens() {
        let members = [member("a", Health::Ok), member("b", Health::Ok)];
        let cases: [(&str, Vec<NodeTokens>, bool); 3] = [
            ("stackring: no tokens", vec![], false),
            (
                "rows with zero tokens",
                vec![NodeTokens {
                    id: "a".into(),
                    tokens: 0,
                    ownership_percent: 0.0,
                }],
                false,
            ),
            (
                "a node owns tokens",
                vec![NodeTokens {
                    id: "a".into(),
                    tokens: 128,
                    ownership_percent: 50.0,
                }],
                true,
            ),
        ];
        for (what, tokens, shown) in cases {
            let html = html(&members, &tokens);
            assert_eq!(
                html.contains("<th>Tokens</th><th>Ownership</th>"),
                shown,
                "{what}"
            );
            assert_eq!(
                html.contains("<td class=\"n\">128</td><td class=\"n\">50.0000%</td>"),
                shown,
                "{what}"
            );
            assert_eq!(
                html.contains("<td class=\"n\">0</td><td class=\"n\">0%</td>"),
                shown,
                "{what}: b has none"
            );
            assert!(!html.contains("–"), "{what}: no placeholder dashes");
        }
    }

    const NOW: u64 = 1_800_000_000;
    const HOST: &str = "[2001:db8::1]:3200";
    const ORIGIN: &str = "http://[2001:db8::1]:3200";

    fn key(b: u8) -> FormKey {
        FormKey::new([b; 32])
    }

    fn post<'a>(origin: Option<&'a str>, token: Option<&'a str>) -> FormPost<'a> {
        FormPost {
            origin,
            referer: None,
            host: Some(HOST),
            csrf_token: token,
        }
    }

    #[test]
    fn form_tokens_are_bound_to_the_key_the_node_and_a_time_window() {
        let good = form_token(&key(1), "node1", NOW - 10);
        let other_node = form_token(&key(1), "node2", NOW - 10);
        let other_process = form_token(&key(2), "node1", NOW - 10);
        let (issued, tag) = good.split_once('.').unwrap();
        let moved_in_time = format!("{}.{tag}", issued.parse::<u64>().unwrap() + 5);
        let mut flipped = good.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        let at = |t: u64| form_token(&key(1), "node1", t);
        let just_valid = at(NOW - FORM_TTL_SECS);
        let just_expired = at(NOW - FORM_TTL_SECS - 1);
        let clock_skew = at(NOW + FORM_SKEW_SECS);
        let future = at(NOW + 3600);
        let cases: Vec<(&str, Option<&str>, Result<(), FormRefusal>)> = vec![
            ("the page's own token", Some(&good), Ok(())),
            ("missing", None, Err(FormRefusal::MissingToken)),
            ("empty", Some(""), Err(FormRefusal::MissingToken)),
            ("no dot", Some("1234"), Err(FormRefusal::BadToken)),
            ("not a time", Some("x.00"), Err(FormRefusal::BadToken)),
            ("not hex", Some("1799999990.zz"), Err(FormRefusal::BadToken)),
            ("forged MAC", Some(&flipped), Err(FormRefusal::BadToken)),
            (
                "issued-at changed",
                Some(&moved_in_time),
                Err(FormRefusal::BadToken),
            ),
            (
                "replayed from another node's page",
                Some(&other_node),
                Err(FormRefusal::BadToken),
            ),
            (
                "from before a restart (another key)",
                Some(&other_process),
                Err(FormRefusal::BadToken),
            ),
            ("last second of the window", Some(&just_valid), Ok(())),
            (
                "one second past the window",
                Some(&just_expired),
                Err(FormRefusal::Expired {
                    age_s: FORM_TTL_SECS + 1,
                }),
            ),
            ("clock stepped back a little", Some(&clock_skew), Ok(())),
            (
                "issued an hour ahead",
                Some(&future),
                Err(FormRefusal::FromTheFuture { ahead_s: 3600 }),
            ),
        ];
        for (what, token, want) in cases {
            assert_eq!(
                check_form(&key(1), "node1", &post(Some(ORIGIN), token), NOW),
                want,
                "{what}"
            );
        }
        // Within the window the same token works again (one page, several Forget presses).
        for _ in 0..3 {
            assert_eq!(
                check_form(&key(1), "node1", &post(Some(ORIGIN), Some(&good)), NOW),
                Ok(())
            );
        }
    }

    #[test]
    fn form_posts_must_come_from_this_nodes_origin() {
        let token = form_token(&key(1), "node1", NOW);
        let cross = |origin: &str| {
            Err(FormRefusal::CrossOrigin {
                origin: origin.into(),
                host: HOST.into(),
            })
        };
        // (what, Origin, Referer, Host, verdict)
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
            Result<(), FormRefusal>,
        );
        let cases: Vec<Case<'_>> = vec![
            ("same origin", Some(ORIGIN), None, Some(HOST), Ok(())),
            (
                "same origin, upper case",
                Some("HTTP://[2001:DB8::1]:3200"),
                None,
                Some(HOST),
                Ok(()),
            ),
            (
                "behind TLS on the same host",
                Some("https://[2001:db8::1]:3200"),
                None,
                Some(HOST),
                Ok(()),
            ),
            (
                "default port omitted in Origin",
                Some("http://ring.example"),
                None,
                Some("ring.example:80"),
                Ok(()),
            ),
            (
                "Referer when there is no Origin",
                None,
                Some("http://[2001:db8::1]:3200/ring"),
                Some(HOST),
                Ok(()),
            ),
            (
                "another site",
                Some("http://evil.example"),
                None,
                Some(HOST),
                cross("http://evil.example"),
            ),
            (
                "another port",
                Some("http://[2001:db8::1]:8080"),
                None,
                Some(HOST),
                cross("http://[2001:db8::1]:8080"),
            ),
            (
                "another node",
                Some("http://[2001:db8::2]:3200"),
                None,
                Some(HOST),
                cross("http://[2001:db8::2]:3200"),
            ),
            (
                "Origin: null",
                Some("null"),
                None,
                Some(HOST),
                cross("null"),
            ),
            (
                "Origin beats a same-origin Referer",
                Some("http://evil.example"),
                Some("http://[2001:db8::1]:3200/ring"),
                Some(HOST),
                cross("http://evil.example"),
            ),
            (
                "Referer from elsewhere",
                None,
                Some("http://evil.example/ring"),
                Some(HOST),
                cross("http://evil.example/ring"),
            ),
            (
                "neither header",
                None,
                None,
                Some(HOST),
                Err(FormRefusal::NoOrigin),
            ),
        ];
        for (what, origin, referer, host, want) in cases {
            let post = FormPost {
                origin,
                referer,
                host,
                csrf_token: Some(&token),
            };
            let want = want.map_err(|e| match e {
                FormRefusal::CrossOrigin { origin, .. } => FormRefusal::CrossOrigin {
                    origin,
                    host: host.unwrap_or_default().to_ascii_lowercase(),
                },
                e => e,
            });
            assert_eq!(check_form(&key(1), "node1", &post, NOW), want, "{what}");
        }
        // No Host header: nothing to be the same origin as.
        let no_host = FormPost {
            host: None,
            ..post(Some(ORIGIN), Some(&token))
        };
        assert!(matches!(
            check_form(&key(1), "node1", &no_host, NOW),
            Err(FormRefusal::CrossOrigin { .. })
        ));
    }

    #[test]
    fn form_bodies_decode_as_browsers_send_them() {
        type Case<'a> = (&'a [u8], Vec<(&'a str, &'a str)>);
        let cases: [Case<'_>; 5] = [
            (
                b"csrf_token=1.ab&forget=node3",
                vec![("csrf_token", "1.ab"), ("forget", "node3")],
            ),
            (b"forget=a%2Fb+c", vec![("forget", "a/b c")]),
            (b"forget=%zz%4", vec![("forget", "%zz%4")]),
            (b"&&forget=&x", vec![("forget", ""), ("x", "")]),
            ("forget=n%C3%A9".as_bytes(), vec![("forget", "né")]),
        ];
        for (body, want) in cases {
            let got = parse_form(body);
            let got: Vec<(&str, &str)> =
                got.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            assert_eq!(got, want, "{}", String::from_utf8_lossy(body));
        }
    }
}
