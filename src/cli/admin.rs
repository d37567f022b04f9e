//! The CLI as a client of the local daemon: its root-only admin socket (HTTP/1.1 over a unix
//! socket), `status`, `status nodes [--watch]` and `node …`, with sentences for people and
//! `--json` for programs.

use super::{ListOp, NodeAction};
use crate::core::config::Settings;
use crate::serve;
use std::io::Write;
use std::path::Path;

/// Why the admin socket did not answer, and what to do.
fn unreachable_daemon(socket: &Path, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "the stackring daemon is not running here ({} does not exist); fix: systemctl start stackring",
            socket.display()
        ),
        std::io::ErrorKind::ConnectionRefused => format!(
            "the stackring daemon is not running ({} is left from a daemon that stopped); fix: systemctl start stackring",
            socket.display()
        ),
        std::io::ErrorKind::PermissionDenied => format!(
            "{} is only for root; fix: run this as root (sudo)",
            socket.display()
        ),
        _ => format!(
            "cannot reach the local daemon at {} ({e}); fix: systemctl status stackring",
            socket.display()
        ),
    }
}

/// `GET path` on the local daemon's admin socket; returns (status, body).
pub(crate) fn admin_get(runtime_dir: &Path, path: &str) -> Result<(u16, String), String> {
    admin_request(runtime_dir, "GET", path, None)
}

/// A request to the local daemon's admin socket; returns (status, body).
pub(crate) fn admin_request(
    runtime_dir: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String), String> {
    use std::io::Read;
    let socket = runtime_dir.join(serve::ADMIN_SOCKET);
    let mut stream = std::os::unix::net::UnixStream::connect(&socket)
        .map_err(|e| unreachable_daemon(&socket, &e))?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let body = body.unwrap_or_default();
    // One write: the daemon may answer (and close) as soon as it has the headers of a call that
    // ignores its body, and a second write would then fail with EPIPE.
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if let Err(e) = stream.write_all(request.as_bytes()) {
        // Answered early: the answer is still there to read.
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e.to_string());
        }
    }
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| e.to_string())?;
    parse_admin_response(&response)
}

/// The daemon's answer on the admin socket (`Connection: close`, so the whole stream): its status
/// (an HTTP status code, 100–599) and its body, the bytes after the first blank line.
pub fn parse_admin_response(response: &[u8]) -> Result<(u16, String), String> {
    let text = String::from_utf8_lossy(response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("the daemon sent a malformed answer")?;
    let mut status_line = head.lines().next().unwrap_or_default().split(' ');
    if !status_line
        .next()
        .is_some_and(|version| version.starts_with("HTTP/1."))
    {
        return Err("the daemon sent a malformed answer".into());
    }
    let status = status_line
        .next()
        .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|c| c.parse().ok())
        .filter(|c| (100..=599).contains(c))
        .ok_or("the daemon sent no status")?;
    Ok((status, body.to_string()))
}

/// `GET path` from the local daemon as JSON; on failure the daemon's description (or why it
/// could not be asked) is printed and the exit code returned.
fn fetch(settings: &Settings, path: &str) -> Result<serde_json::Value, i32> {
    let (status, body) = admin_get(&settings.runtime_dir, path).map_err(|e| {
        eprintln!("stackring: {e}");
        1
    })?;
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    if status != 200 {
        eprintln!(
            "stackring: {}",
            doc["description"].as_str().unwrap_or(&body)
        );
        return Err(1);
    }
    Ok(doc)
}

pub(super) fn status_nodes(settings: &Settings, json: bool) -> i32 {
    let doc = match fetch(settings, "/v1/nodes") {
        Ok(doc) => doc,
        Err(code) => return code,
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&doc["nodes"]).unwrap_or_default()
        );
        return 0;
    }
    let rows: Vec<[String; 9]> = doc["nodes"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .map(|n| {
                    let text = |k: &str| n[k].as_str().unwrap_or_default().to_string();
                    let externals: Vec<&str> = n["external_addrs"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                        .unwrap_or_default();
                    // The daemon's own wording (`MemberView::summary`), as `/ring` shows it.
                    let status = text("summary");
                    let marker = if n["local"].as_bool() == Some(true) {
                        "*"
                    } else {
                        ""
                    };
                    [
                        format!("{marker}node:{}", text("id")),
                        text("addr"),
                        externals.join(","),
                        text("hostname"),
                        text("zone"),
                        text("version"),
                        text("family"),
                        text("advertised_grpc"),
                        status,
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    let header = [
        "NODE:ID",
        "ADDRESS",
        "EXTERNAL_ADDRESS",
        "HOSTNAME",
        "ZONE",
        "VERSION",
        "FAMILY",
        "ADVERTISED",
        "STATUS",
    ];
    println!(
        "CLUSTER NODES ({}):",
        doc["cluster_name"].as_str().unwrap_or_default()
    );
    let rows: Vec<Vec<String>> = rows.into_iter().map(Vec::from).collect();
    print!("{}", table(&header, &rows));
    0
}

/// A node id as the operator typed it, checked as the server checks it (`cluster::valid_name`):
/// `node:node1` (as `status nodes` prints it, `*` marking the local node) is `node1`.
pub(crate) fn node_id_arg(text: &str) -> Result<&str, String> {
    let id = text.strip_prefix('*').unwrap_or(text);
    let id = id.strip_prefix("node:").unwrap_or(id);
    if crate::core::net::valid_name(id) {
        Ok(id)
    } else {
        Err(format!(
            "'{}' is not a node id; fix: {} (as `stackring status nodes` shows it, with or without 'node:')",
            crate::core::config::echo(&text.escape_debug().to_string()),
            crate::core::net::NAME_RULE
        ))
    }
}

/// A path segment, percent-encoded (RFC 3986: everything but unreserved characters), so that no
/// value can end the request line or add a path component.
pub(crate) fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(super) fn node_command(settings: &Settings, id: &str, action: &NodeAction, json: bool) -> i32 {
    let id = match node_id_arg(id) {
        Ok(id) => id.to_string(),
        Err(e) => {
            eprintln!("stackring: {e}");
            return 2;
        }
    };
    let segment = path_segment(&id);
    let (path, body) = match action {
        NodeAction::ExternalAddr { op, addrs } => {
            let op = match op {
                ListOp::Add => "add",
                ListOp::Set => "set",
                ListOp::Remove => "remove",
            };
            (
                format!("/v1/nodes/{segment}/external_addr"),
                serde_json::json!({"action": op, "addrs": addrs}),
            )
        }
        NodeAction::Addr { addr, .. } => (
            format!("/v1/nodes/{segment}/addr"),
            serde_json::json!({"addr": addr}),
        ),
        NodeAction::Forget => (format!("/v1/nodes/{segment}/forget"), serde_json::json!({})),
    };
    match admin_request(
        &settings.runtime_dir,
        "POST",
        &path,
        Some(&body.to_string()),
    ) {
        Ok((200, answer)) => {
            let doc: serde_json::Value = serde_json::from_str(&answer).unwrap_or_default();
            if json {
                println!("{answer}");
            } else {
                println!("{}", node_sentence(&id, action, &doc));
            }
            for w in doc["warnings"].as_array().into_iter().flatten() {
                eprintln!("stackring: warning: {}", w.as_str().unwrap_or_default());
            }
            0
        }
        Ok((_, answer)) => {
            let doc: serde_json::Value = serde_json::from_str(&answer).unwrap_or_default();
            eprintln!(
                "stackring: {}",
                doc["description"].as_str().unwrap_or(&answer)
            );
            1
        }
        Err(e) => {
            eprintln!("stackring: {e}");
            1
        }
    }
}

/// What a successful node command did, in a sentence (the JSON stays for `--json`).
fn node_sentence(id: &str, action: &NodeAction, doc: &serde_json::Value) -> String {
    let list = |v: &serde_json::Value| {
        let items: Vec<&str> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str())
            .collect();
        if items.is_empty() {
            "none".to_string()
        } else {
            items.join(", ")
        }
    };
    match action {
        NodeAction::ExternalAddr { .. } if doc["pending"].as_bool() == Some(true) => format!(
            "node {id} is down: its external addresses will be {} when it comes back",
            list(&doc["external_addrs"])
        ),
        NodeAction::ExternalAddr { .. } => format!(
            "node {id}: external addresses are now {} (version {})",
            list(&doc["external_addrs"]),
            doc["version"]
        ),
        NodeAction::Addr { .. } => format!(
            "node {id} is down: its internal address will be {} when it comes back",
            doc["addr"].as_str().unwrap_or_default()
        ),
        NodeAction::Forget => format!("node {id} forgotten: no member lists it any more"),
    }
}

/// `stackring status`: this node, as its daemon sees it (identity, cluster, members).
pub(super) fn status_local(settings: &Settings, json: bool) -> i32 {
    let get = |path: &str| -> Result<serde_json::Value, String> {
        let (_, body) = admin_get(&settings.runtime_dir, path)?;
        serde_json::from_str(&body).map_err(|e| format!("{path}: {e}"))
    };
    let (identity, bootstrap) = match (get("/v1/identity"), get("/v1/bootstrap")) {
        (Ok(i), Ok(b)) => (i, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("stackring: {e}");
            return 1;
        }
    };
    let nodes = get("/v1/nodes").ok().filter(|n| n["nodes"].is_array());
    if json {
        let doc = serde_json::json!({
            "identity": identity,
            "bootstrap": bootstrap,
            "cluster": nodes,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return 0;
    }
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
    let endpoint = |e: &serde_json::Value| {
        if e.is_null() {
            "-".to_string()
        } else if e["listen"] == e["advertise"] {
            text(&e["listen"])
        } else {
            format!(
                "{} (advertised {})",
                text(&e["listen"]),
                text(&e["advertise"])
            )
        }
    };
    let ready = identity["ready"].as_bool() == Some(true);
    let row = |k: &str, v: String| println!("{k:<12} {v}");
    row(
        "node",
        format!("{} ({})", text(&identity["id"]), super::hostname()),
    );
    row(
        "state",
        if ready {
            "ready".into()
        } else {
            format!("waiting: {}", text(&identity["reason"]))
        },
    );
    row(
        "family",
        format!(
            "{} — {}",
            text(&identity["family"]),
            text(&identity["family_reason"])
        ),
    );
    row(
        "internal",
        format!(
            "{} on {}",
            text(&identity["internal_addr"]),
            text(&identity["internal_interface"])
        ),
    );
    let externals: Vec<String> = identity["external_addrs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    row(
        "external",
        if externals.is_empty() {
            "-".into()
        } else {
            externals.join(", ")
        },
    );
    row("grpc", endpoint(&identity["grpc"]));
    row("http", endpoint(&identity["http"]));
    row("https", endpoint(&identity["https"]));
    row("gossip", endpoint(&identity["gossip"]));
    match &nodes {
        Some(doc) => {
            let members = doc["nodes"].as_array().cloned().unwrap_or_default();
            let ok = members.iter().filter(|m| m["status"] == "OK").count();
            row(
                "cluster",
                format!(
                    "{} ({} internal traffic): {} member(s), {ok} OK, {} DOWN",
                    text(&doc["cluster_name"]),
                    text(&bootstrap["cluster"]["family"]),
                    members.len(),
                    members.len() - ok
                ),
            );
            if let Some(me) = members.iter().find(|m| m["local"].as_bool() == Some(true)) {
                row("membership", text(&me["summary"]));
            }
        }
        None => row(
            "cluster",
            format!(
                "none (bootstrap: {}); fix: POST /v1/bootstrap/create_cluster or join_cluster, or a cluster: section",
                text(&bootstrap["state"])
            ),
        ),
    }
    0
}

/// `status nodes --watch SECONDS`: the table again every interval, until interrupted.
pub(super) fn watch_nodes(settings: &Settings, json: bool, every: std::time::Duration) -> i32 {
    loop {
        // Clear the screen and go home, as `watch` does.
        print!("\x1b[2J\x1b[H");
        let code = status_nodes(settings, json);
        let _ = std::io::stdout().flush();
        if code != 0 {
            return code;
        }
        std::thread::sleep(every.max(std::time::Duration::from_millis(200)));
    }
}

/// `stackring status reachability`: the N×N matrix (rows: who probed; columns: whom), each cell
/// gRPC, HTTP and gossip in that order, then the diagnosis.
pub(super) fn status_reachability(settings: &Settings, json: bool) -> i32 {
    let doc = match fetch(settings, "/v1/reachability") {
        Ok(doc) => doc,
        Err(code) => return code,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return 0;
    }
    print!("{}", reachability_table(&doc));
    0
}

/// The matrix as text: `✓` reached, `R` refused, `T` timeout, `E` error, `·` not probed yet.
fn reachability_table(doc: &serde_json::Value) -> String {
    let nodes: Vec<&str> = doc["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str())
        .collect();
    let mark = |v: &serde_json::Value| match v["outcome"].as_str() {
        Some("ok") => '✓',
        Some("refused") => 'R',
        Some("timeout") => 'T',
        Some("error") => 'E',
        _ => '·',
    };
    let cell = |from: &str, to: &str| -> String {
        if from == to {
            return "*".into();
        }
        let probes = &doc["rows"][from][to];
        ["grpc", "http", "gossip"]
            .iter()
            .map(|s| mark(&probes[*s]))
            .collect()
    };
    let width = nodes.iter().map(|n| n.len()).max().unwrap_or(4).max(9);
    let mut out = format!(
        "REACHABILITY ({}): row = from, column = to; each cell gRPC, HTTP, gossip: ✓ reached, R refused, T timeout, E error, · not probed yet\n",
        doc["cluster_name"].as_str().unwrap_or_default()
    );
    out.push_str(&format!("{:<width$}", "FROM \\ TO"));
    for n in &nodes {
        out.push_str(&format!("  {n:<width$}"));
    }
    out.push('\n');
    for from in &nodes {
        out.push_str(&format!("{from:<width$}"));
        for to in &nodes {
            out.push_str(&format!("  {:<width$}", cell(from, to)));
        }
        out.push('\n');
    }
    let diagnosis: Vec<&str> = doc["diagnosis"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d.as_str())
        .collect();
    if diagnosis.is_empty() {
        out.push_str(
            "every node reaches every other's advertised gRPC, HTTP and gossip endpoints\n",
        );
    } else {
        for d in diagnosis {
            out.push_str(&format!("- {d}\n"));
        }
    }
    out
}

/// Rows as an aligned table (two spaces between columns).
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// `gossip-key list` as a table: each member's key ids, the one in use marked `*`.
pub(crate) fn gossip_keys_table(doc: &serde_json::Value) -> String {
    let rows: Vec<Vec<String>> = doc["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            let primary = n["primary"].as_str().unwrap_or_default();
            let ids: Vec<String> = n["key_ids"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str())
                .map(|id| {
                    if id == primary {
                        format!("{id}*")
                    } else {
                        id.to_string()
                    }
                })
                .collect();
            let marker = if n["local"].as_bool() == Some(true) {
                "*"
            } else {
                ""
            };
            vec![
                format!("{marker}node:{}", n["node"].as_str().unwrap_or_default()),
                n["status"].as_str().unwrap_or_default().to_string(),
                if ids.is_empty() {
                    "(not told)".to_string()
                } else {
                    ids.join(" ")
                },
            ]
        })
        .collect();
    format!(
        "GOSSIP KEYS ({}; * = in use):\n{}",
        doc["cluster_name"].as_str().unwrap_or_default(),
        table(&["NODE:ID", "STATUS", "KEY IDS"], &rows)
    )
}

/// A keyring change's report as a table, and a closing sentence.
pub(crate) fn gossip_report_table(doc: &serde_json::Value) -> String {
    let rows: Vec<Vec<String>> = doc["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            let ids: Vec<&str> = n["key_ids"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str())
                .collect();
            let detail = n["detail"].as_str().unwrap_or_default();
            vec![
                format!("node:{}", n["node"].as_str().unwrap_or_default()),
                n["outcome"].as_str().unwrap_or_default().replace('_', " "),
                if ids.is_empty() {
                    detail.to_string()
                } else {
                    format!("keys now {}", ids.join(" "))
                },
            ]
        })
        .collect();
    let action = doc["action"].as_str().unwrap_or_default();
    let id = doc["key_id"].as_str().unwrap_or_default();
    let closing = if doc["complete"].as_bool() == Some(true) {
        format!("gossip key {id}: {action} applied on every live member")
    } else if action == "install" {
        format!("gossip key {id}: {action} NOT applied on every live member (see above); install is idempotent: fix what is named and run it again")
    } else {
        format!("gossip key {id}: {action} NOT applied on every live member (see above); nothing further was changed")
    };
    format!(
        "{}{closing}\n",
        table(&["NODE:ID", "OUTCOME", "DETAIL"], &rows)
    )
}

/// POST a keyring change; (whether every live member applied it, the report), or the exit code
/// after printing why it was refused as a whole.
fn post_gossip_keys(
    settings: &Settings,
    body: serde_json::Value,
) -> Result<serde_json::Value, i32> {
    admin_call(
        settings,
        "POST",
        "/v1/cluster/gossip_keys",
        Some(&body.to_string()),
    )
}

/// A call on the admin socket: the answer's JSON, or the exit code (2 for a request the daemon
/// found bad, 1 otherwise) after printing why.
fn admin_call(
    settings: &Settings,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<serde_json::Value, i32> {
    match admin_request(&settings.runtime_dir, method, path, body) {
        Ok((200, answer)) => Ok(serde_json::from_str(&answer).unwrap_or_default()),
        Ok((status, answer)) => {
            let doc: serde_json::Value = serde_json::from_str(&answer).unwrap_or_default();
            eprintln!(
                "stackring: {}",
                doc["description"].as_str().unwrap_or(&answer)
            );
            Err(if status == 400 { 2 } else { 1 })
        }
        Err(e) => {
            eprintln!("stackring: {e}");
            Err(1)
        }
    }
}

/// Runs one keyring step and prints its report; Ok when every live member applied it.
fn gossip_step(settings: &Settings, body: serde_json::Value, json: bool) -> Result<(), i32> {
    let doc = post_gossip_keys(settings, body)?;
    if json {
        println!("{doc}");
    } else {
        print!("{}", gossip_report_table(&doc));
    }
    if doc["complete"].as_bool() == Some(true) {
        Ok(())
    } else {
        Err(1)
    }
}

/// `stackring cluster gossip-key list|install|use|remove|rotate`. Arguments are checked here
/// with the daemon's own validators (exit 2, nothing sent), and again by the daemon.
pub(super) fn gossip_key_command(
    settings: &Settings,
    action: &super::GossipKeyAction,
    json: bool,
) -> i32 {
    use super::GossipKeyAction as A;
    use crate::core::seal::{GossipKey, KeyId};
    let bad = |e: String| {
        eprintln!("stackring: {e}");
        2
    };
    let result = match action {
        A::List => fetch(settings, "/v1/cluster/gossip_keys").map(|doc| {
            if json {
                println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
            } else {
                print!("{}", gossip_keys_table(&doc));
            }
        }),
        A::Install { key } => {
            let key = match key {
                Some(text) => match GossipKey::parse(text) {
                    Ok(k) => k,
                    Err(e) => return bad(e),
                },
                None => {
                    let k = crate::agent::gossip_seal::generate_key();
                    // Printed once, here: the daemon never shows a key.
                    eprintln!(
                        "stackring: generated gossip key {} (id {}); it is shown only this once",
                        k.to_hex(),
                        k.id()
                    );
                    k
                }
            };
            gossip_step(
                settings,
                serde_json::json!({"action": "install", "key": key.to_hex()}),
                json,
            )
        }
        A::Use { key_id } | A::Remove { key_id } => {
            let id = match KeyId::parse(key_id) {
                Ok(id) => id,
                Err(e) => return bad(e),
            };
            let verb = if matches!(action, A::Use { .. }) {
                "use"
            } else {
                "remove"
            };
            gossip_step(
                settings,
                serde_json::json!({"action": verb, "key_id": id.to_string()}),
                json,
            )
        }
        A::Rotate => rotate(settings, json),
    };
    match result {
        Ok(()) => 0,
        Err(code) => code,
    }
}

/// `stackring cluster join-token [--ttl D] | list | revoke ID`. Arguments are checked here with
/// the daemon's own validators (exit 2, nothing sent), and again by the daemon.
pub(super) fn join_token_command(
    settings: &Settings,
    ttl: &str,
    action: Option<&super::JoinTokenAction>,
    json: bool,
) -> i32 {
    use super::JoinTokenAction as A;
    let bad = |e: String| {
        eprintln!("stackring: {e}");
        2
    };
    let now = crate::agent::now_unix();
    let result = match action {
        None => {
            if let Err(e) = crate::core::token::parse_ttl(ttl) {
                return bad(format!("--ttl {e}"));
            }
            let body = serde_json::json!({ "ttl": ttl }).to_string();
            admin_call(settings, "POST", "/v1/cluster/join_tokens", Some(&body)).map(|doc| {
                if json {
                    println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
                    return;
                }
                // The token alone on stdout (TOKEN=$(stackring cluster join-token) works); the
                // words on stderr.
                println!("{}", doc["token"].as_str().unwrap_or_default());
                eprintln!(
                    "stackring: join token {} for cluster {}: usable once, for {} (until {} UTC), at {}; it pins the cluster CA {}. It is shown only this once.\n  join with: {{\"action\": \"join_cluster\", \"cluster\": {{\"join_token\": \"<token>\"}}}} (no credentials), or cluster.join_token_file in the config",
                    doc["id"].as_str().unwrap_or_default(),
                    doc["cluster"].as_str().unwrap_or_default(),
                    span(doc["ttl_s"].as_u64().unwrap_or_default()),
                    utc(doc["expires_unix"].as_u64().unwrap_or_default()),
                    doc["seed"].as_str().unwrap_or_default(),
                    doc["ca_pin"].as_str().unwrap_or_default(),
                );
            })
        }
        Some(A::List) => admin_call(settings, "GET", "/v1/cluster/join_tokens", None).map(|doc| {
            if json {
                println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
                return;
            }
            print!("{}", join_tokens_table(&doc, now));
        }),
        Some(A::Revoke { id }) => {
            let id = match id.parse::<crate::core::token::TokenId>() {
                Ok(id) => id,
                Err(e) => return bad(e),
            };
            let path = format!("/v1/cluster/join_tokens/{id}");
            match admin_call(settings, "DELETE", &path, None) {
                Ok(doc) if json => {
                    println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
                    if doc["revoked"].as_bool() == Some(true) {
                        Ok(())
                    } else {
                        Err(1)
                    }
                }
                Ok(doc) if doc["revoked"].as_bool() == Some(true) => {
                    println!("join token {id} revoked");
                    Ok(())
                }
                Ok(_) => {
                    eprintln!("stackring: this member holds no usable join token {id} (already used, expired, revoked, or printed by another member)");
                    Err(1)
                }
                Err(code) => Err(code),
            }
        }
    };
    match result {
        Ok(()) => 0,
        Err(code) => code,
    }
}

/// `join-token list` as a table: id, expiry, time left.
pub(crate) fn join_tokens_table(doc: &serde_json::Value, now_unix: u64) -> String {
    let rows: Vec<Vec<String>> = doc
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|t| {
            let expires = t["expires_unix"].as_u64().unwrap_or_default();
            vec![
                t["id"].as_str().unwrap_or_default().to_string(),
                format!("{} UTC", utc(expires)),
                span(expires.saturating_sub(now_unix)),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no usable join tokens on this member\n".into();
    }
    table(&["ID", "EXPIRES", "LEFT"], &rows)
}

/// A span of seconds as operators read it: `23h59m`, `6d23h`, `45s`.
fn span(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s:02}s"),
        (0, _, _) => format!("{h}h{m:02}m"),
        _ => format!("{d}d{h:02}h"),
    }
}

/// A unix time as `2026-11-29 18:55:00`.
fn utc(unix: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix.min(i64::MAX as u64) as i64)
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        })
        .unwrap_or_else(|_| unix.to_string())
}

/// `gossip-key rotate`: the key in use on this node is replaced by a new one everywhere.
fn rotate(settings: &Settings, json: bool) -> Result<(), i32> {
    let doc = fetch(settings, "/v1/cluster/gossip_keys")?;
    let old = doc["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["local"].as_bool() == Some(true))
        .and_then(|n| n["primary"].as_str())
        .and_then(|t| crate::core::seal::KeyId::parse(t).ok())
        .ok_or_else(|| {
            eprintln!(
                "stackring: this node has not told its key in use yet; fix: retry in a few seconds"
            );
            1
        })?;
    let new = crate::agent::gossip_seal::generate_key();
    eprintln!(
        "stackring: rotating gossip key {old} to {} (id {}); the new key is shown only this once",
        new.to_hex(),
        new.id()
    );
    let steps = [
        serde_json::json!({"action": "install", "key": new.to_hex()}),
        serde_json::json!({"action": "use", "key_id": new.id().to_string()}),
        serde_json::json!({"action": "remove", "key_id": old.to_string()}),
    ];
    let new_id = new.id().to_string();
    for (n, step) in steps.into_iter().enumerate() {
        if let Err(code) = gossip_step(settings, step, json) {
            eprintln!(
                "stackring: rotation stopped at step {} of 3; the steps before it are in place",
                n + 1
            );
            return Err(code);
        }
        // The next step is checked against the keyrings as gossiped: wait for them to tell
        // this one (a gossip round or two).
        if n < 2 {
            let in_use = n == 1;
            wait_gossiped(settings, |ids| {
                if in_use {
                    ids.first() == Some(&new_id)
                } else {
                    ids.contains(&new_id)
                }
            });
        }
    }
    Ok(())
}

/// Polls `gossip-key list` until every live member's key ids satisfy `done` (10 s at most;
/// the daemon's own check then says what is missing).
fn wait_gossiped(settings: &Settings, done: impl Fn(&[String]) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let Ok((200, body)) = admin_get(&settings.runtime_dir, "/v1/cluster/gossip_keys") else {
            return;
        };
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let all = doc["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["status"] == "OK")
            .all(|n| {
                let ids: Vec<String> = n["key_ids"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect();
                done(&ids)
            });
        if all {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gossip_key_tables_mark_the_key_in_use_and_say_who_did_not_apply() {
        let list = serde_json::json!({"cluster_name": "ring", "nodes": [
            {"node": "node1", "status": "OK", "local": true, "primary": "aaaa0001", "key_ids": ["aaaa0001", "bbbb0002"]},
            {"node": "node2", "status": "DOWN", "local": false, "primary": "", "key_ids": []},
        ]});
        assert_eq!(
            gossip_keys_table(&list),
            "GOSSIP KEYS (ring; * = in use):\n\
             NODE:ID      STATUS  KEY IDS\n\
             *node:node1  OK      aaaa0001* bbbb0002\n\
             node:node2   DOWN    (not told)\n"
        );
        let report = serde_json::json!({"action": "use", "key_id": "bbbb0002", "complete": false, "nodes": [
            {"node": "node1", "outcome": "applied", "key_ids": ["bbbb0002", "aaaa0001"]},
            {"node": "node2", "outcome": "refused", "detail": "gossip key bbbb0002 is not installed on this node"},
            {"node": "node3", "outcome": "not_asked", "detail": "not asked: an earlier node did not apply it"},
        ]});
        let text = gossip_report_table(&report);
        assert!(
            text.contains("node:node1  applied    keys now bbbb0002 aaaa0001"),
            "{text}"
        );
        assert!(
            text.contains("node:node2  refused    gossip key bbbb0002 is not installed"),
            "{text}"
        );
        assert!(text.contains("node:node3  not asked  not asked"), "{text}");
        assert!(
            text.ends_with(
                "use NOT applied on every live member (see above); nothing further was changed\n"
            ),
            "{text}"
        );
        let mut done = report.clone();
        done["complete"] = serde_json::json!(true);
        assert!(gossip_report_table(&done)
            .ends_with("gossip key bbbb0002: use applied on every live member\n"));
    }

    #[test]
    fn node_ids_are_checked_as_the_server_checks_them_and_encoded() {
        assert_eq!(node_id_arg("node1"), Ok("node1"));
        assert_eq!(node_id_arg("node:node1"), Ok("node1"));
        assert_eq!(node_id_arg("*node:node2"), Ok("node2"));
        for bad in [
            "../../etc/passwd",
            "node1\r\nPOST /v1/nodes/node2/forget HTTP/1.1",
            "",
            "node:",
            "a b",
            "x/y",
        ] {
            let e = node_id_arg(bad).expect_err(bad);
            assert!(e.contains("fix: use 1–63 characters"), "{bad}: {e}");
            assert!(!e.contains('\r') && !e.contains('\n'), "{bad}: {e}");
        }
        assert_eq!(path_segment("node-1_a.b~"), "node-1_a.b~");
        assert_eq!(path_segment("a/b\r\n c"), "a%2Fb%0D%0A%20c");
    }

    /// `HTTP/1.1 0 x`, or a first line that is not HTTP at all, was read as status 0 or 65535 and
    /// reported as the daemon's answer; fuzz/ (admin_response) checks it for any input.
    #[test]
    fn admin_answers_need_an_http_status_line_and_code() {
        assert_eq!(
            parse_admin_response(b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}"),
            Ok((404, "{}".to_string()))
        );
        assert_eq!(
            parse_admin_response(b"HTTP/1.0 200 OK\r\n\r\n"),
            Ok((200, String::new()))
        );
        for bad in [
            &b"HTTP/1.1 0 x\r\n\r\n"[..],
            b"HTTP/1.1 65535 x\r\n\r\n",
            b"HTTP/1.1 +200 OK\r\n\r\n",
            b"\r\n200 200\r\n\r\n",
            b"SSH-2.0 200\r\n\r\n",
            b"HTTP/1.1 200 OK",
            b"",
        ] {
            assert!(
                parse_admin_response(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// People read what happened, in the daemon's terms: applied with its version, or waiting for
    /// a node that is down.
    #[test]
    fn node_commands_answer_in_sentences() {
        let external = NodeAction::ExternalAddr {
            op: ListOp::Add,
            addrs: vec![],
        };
        let applied = serde_json::json!({"node": "node2", "external_addrs": ["198.51.100.31", "198.51.100.32"], "version": 2});
        assert_eq!(
            node_sentence("node2", &external, &applied),
            "node node2: external addresses are now 198.51.100.31, 198.51.100.32 (version 2)"
        );
        let pending = serde_json::json!({"node": "node3", "external_addrs": ["198.51.100.41"], "pending": true});
        assert_eq!(
            node_sentence("node3", &external, &pending),
            "node node3 is down: its external addresses will be 198.51.100.41 when it comes back"
        );
        let addr = NodeAction::Addr {
            op: super::super::SetOp::Set,
            addr: String::new(),
        };
        assert_eq!(
            node_sentence("node3", &addr, &serde_json::json!({"addr": "2001:db8::c2"})),
            "node node3 is down: its internal address will be 2001:db8::c2 when it comes back"
        );
        assert_eq!(
            node_sentence("node3", &NodeAction::Forget, &serde_json::json!({})),
            "node node3 forgotten: no member lists it any more"
        );
    }

    #[test]
    fn the_reachability_matrix_reads_row_from_column_to() {
        let doc = serde_json::json!({
            "cluster_name": "c1",
            "nodes": ["node1", "node2"],
            "rows": {
                "node1": {"node2": {"grpc": {"outcome": "refused", "rtt_ms": 0}, "http": {"outcome": "ok", "rtt_ms": 1}}},
                "node2": {"node1": {"grpc": {"outcome": "ok"}, "http": {"outcome": "ok"}, "gossip": {"outcome": "timeout"}}}
            },
            "diagnosis": ["node1 cannot reach node2's gRPC (refused), though others can: a firewall or route between node1 and node2"]
        });
        let table = reachability_table(&doc);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[1].starts_with("FROM \\ TO")
                && lines[1].contains("node1")
                && lines[1].contains("node2"),
            "{table}"
        );
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            ["node1", "*", "R✓·"],
            "{table}"
        );
        assert_eq!(
            lines[3].split_whitespace().collect::<Vec<_>>(),
            ["node2", "✓✓T", "*"],
            "{table}"
        );
        assert!(
            lines[4].starts_with("- node1 cannot reach node2's gRPC"),
            "{table}"
        );
    }

    #[test]
    fn an_unreachable_daemon_is_named_with_the_fix() {
        let socket = Path::new("/run/stackring/admin.sock");
        let e = |kind| unreachable_daemon(socket, &std::io::Error::from(kind));
        assert!(e(std::io::ErrorKind::ConnectionRefused).contains("not running"));
        assert!(e(std::io::ErrorKind::NotFound).contains("not running"));
        assert!(e(std::io::ErrorKind::PermissionDenied).contains("root"));
    }
}
