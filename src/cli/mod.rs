//! The admin CLI: argument parsing and the one-shot commands (`inspect`, `preflight`, `config
//! validate`, `render`). `serve` hands over to `daemon`.

use crate::agent::netlink;
use crate::core::config::{Settings, DEFAULT_CONFIG_PATH, EXIT_CONFIG};
use crate::core::decide::{address_report, decide, Context};
use crate::core::preflight::{self, Outcome, Severity};
use crate::core::render;
use crate::core::state::IdentityView;
use crate::serve;
use clap::{Parser, Subcommand, ValueEnum};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(
    name = "stackring",
    version = env!("STACKRING_VERSION"),
    about = "Network identity and membership agent of a clustered appliance"
)]
pub(crate) struct Cli {
    /// Configuration file (YAML, Tempo/dskit key names).
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Debug logging.
    #[arg(long, short, global = true)]
    pub(crate) verbose: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Run the agent (systemd Type=notify service).
    Serve,
    /// Show this host's interfaces and the identity stackring decides from them.
    Inspect {
        #[arg(long)]
        json: bool,
    },
    /// Check that the host is prepared (/etc/hosts, IPv6, addresses, ports). Exit 1 on errors.
    Preflight {
        /// Repair what can be repaired safely (adds localhost lines to /etc/hosts).
        #[arg(long)]
        fix: bool,
        #[arg(long)]
        json: bool,
        /// The hosts file to check.
        #[arg(long, value_name = "FILE", default_value = "/etc/hosts")]
        hosts_file: PathBuf,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print the identity as an environment file or as Tempo's, Loki's or Mimir's network block.
    Render { format: RenderFormat },
    /// Check a Tempo, Loki or Mimir configuration file's network settings against this host and
    /// the identity stackring decides. Exit 0 when clean, 1 on errors, 2 when FILE is unreadable.
    Check {
        product: crate::check::Product,
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Change a node of the cluster (through the local daemon, which carries it to the cluster).
    Node {
        /// The node id (`lifecycler.id`, shown by `status nodes`).
        id: String,
        #[command(subcommand)]
        action: NodeAction,
    },
    /// Wait until the running daemon has decided this node's identity (for `ExecStartPre=` of
    /// units that need it, or `stackring-wait-online.service`). Exit 0 once decided (prints it),
    /// 1 on timeout (prints what it still waits for). Needs no root: reads identity.env.
    Wait {
        /// How long to wait: `90s`, `2min`, `5m`, `1h` or seconds; 0 waits forever.
        #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration)]
        timeout: std::time::Duration,
    },
    /// Cluster status, from the local daemon (over its root-only admin socket).
    Status {
        #[command(subcommand)]
        what: StatusCommand,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum NodeAction {
    /// External (client-facing) addresses; unbound ones (an elastic IP) are allowed.
    #[command(name = "external_addr")]
    ExternalAddr {
        op: ListOp,
        #[arg(required = true, value_name = "IP")]
        addrs: Vec<String>,
    },
    /// The internal address of a node that is down (same family as the cluster).
    Addr {
        op: SetOp,
        #[arg(value_name = "IP")]
        addr: String,
    },
    /// Remove a dead node from every member's view.
    Forget,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub(crate) enum ListOp {
    Add,
    Set,
    Remove,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub(crate) enum SetOp {
    Set,
}

#[derive(Subcommand, Debug)]
pub(crate) enum StatusCommand {
    /// Every node of the cluster: address, external addresses, family, advertised gRPC, status.
    Nodes {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum ConfigCommand {
    /// Validate a configuration file: exit 0 when valid, 78 (EX_CONFIG) with every error otherwise.
    Validate {
        /// The file to check (default: the global --config, else /etc/stackring/stackring.yaml).
        file: Option<PathBuf>,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub(crate) enum RenderFormat {
    Env,
    Tempo,
    Loki,
    Mimir,
}

/// The binary's entry: parses the command line, starts logging, runs; returns the exit code.
pub fn main() -> i32 {
    use clap::Parser;
    let cli = Cli::parse();
    crate::agent::systemd::init_logging(cli.verbose);
    run(cli)
}

/// Runs the command; returns the exit code.
fn run(cli: Cli) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stackring: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let explicit = cli.config.is_some();
    let config_path = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
    let default_id = hostname();
    if let Command::Config {
        command: ConfigCommand::Validate { file },
    } = &cli.command
    {
        // `stackring --config F config validate` checks F, as every other command reads it.
        return validate(file.as_deref().unwrap_or(&config_path), &default_id);
    }
    if let Command::Serve = cli.command {
        return runtime.block_on(serve::serve(serve::Options {
            config_path,
            config_explicit: explicit,
            default_id,
        }));
    }
    let settings = match crate::agent::files::load(&config_path, explicit, &default_id) {
        Ok(s) => s,
        Err(errors) => {
            eprintln!(
                "stackring: invalid configuration {}:\n{errors}",
                config_path.display()
            );
            return EXIT_CONFIG;
        }
    };
    if let Command::Status {
        what: StatusCommand::Nodes { json },
    } = cli.command
    {
        return status_nodes(&settings, json);
    }
    if let Command::Node { id, action } = &cli.command {
        return node_command(&settings, id, action);
    }
    if let Command::Wait { timeout } = cli.command {
        return wait_for_identity(&settings.runtime_dir, timeout);
    }
    let snapshot = match runtime.block_on(netlink::dump_once()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("stackring: cannot read the host's interfaces: {e}");
            return 1;
        }
    };
    // Decide as the daemon does: a node of a cluster has the cluster's family and its overrides.
    let record = match crate::agent::node::load_record(&settings.state_dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stackring: {e}");
            None
        }
    };
    let settings = crate::agent::node::effective_settings(&settings, record.as_ref());
    let ctx = Context {
        cluster_family: record.as_ref().map(|r| r.family),
        previous: None,
    };
    match cli.command {
        Command::Inspect { json } => inspect(&settings, &snapshot, ctx, json),
        Command::Preflight {
            fix,
            json,
            hosts_file,
        } => run_preflight(
            &settings,
            snapshot,
            &hosts_file,
            ctx.cluster_family,
            fix,
            json,
        ),
        Command::Render { format } => match decide(&snapshot, &settings, ctx) {
            Ok(id) => {
                let text = match format {
                    RenderFormat::Env => render::env_file(&id),
                    RenderFormat::Tempo => render::tempo_block(&id),
                    RenderFormat::Loki => render::loki_block(&id),
                    RenderFormat::Mimir => render::mimir_block(&id),
                };
                print!("{text}");
                0
            }
            Err(why) => {
                eprintln!("stackring: no identity yet: {why}");
                1
            }
        },
        Command::Check {
            product,
            file,
            json,
        } => crate::check::shim::run(product, &file, json, &snapshot, &settings, ctx),
        Command::Serve
        | Command::Config { .. }
        | Command::Status { .. }
        | Command::Node { .. }
        | Command::Wait { .. } => {
            unreachable!("handled above")
        }
    }
}

fn validate(file: &Path, default_id: &str) -> i32 {
    match crate::agent::files::load_checked(file, true, default_id) {
        Ok(_) => {
            println!("{}: valid", file.display());
            0
        }
        Err(errors) => {
            eprintln!("{}: invalid:", file.display());
            for e in &errors.0 {
                eprintln!("  {e}");
            }
            EXIT_CONFIG
        }
    }
}

#[derive(serde::Serialize)]
struct InspectJson<'a> {
    #[serde(flatten)]
    identity: IdentityView,
    links: Vec<&'a crate::core::snapshot::Link>,
    addresses: Vec<crate::core::decide::AddressVerdict<'a>>,
    default_routes: Vec<&'a crate::core::snapshot::DefaultRoute>,
}

fn inspect(
    settings: &Settings,
    snapshot: &crate::core::snapshot::HostSnapshot,
    ctx: Context<'_>,
    json: bool,
) -> i32 {
    let decision = decide(snapshot, settings, ctx);
    let (identity, reason) = match &decision {
        Ok(id) => (Some(id), None),
        Err(why) => (None, Some(why.to_string())),
    };
    let report = address_report(snapshot, settings);
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if json {
        let doc = InspectJson {
            identity: IdentityView::new(identity, reason, 0),
            links: snapshot.links.values().collect(),
            addresses: report,
            default_routes: snapshot.default_routes.values().collect(),
        };
        let _ = serde_json::to_writer(&mut out, &doc);
        let _ = writeln!(out);
    } else {
        match identity {
            Some(id) => {
                let _ = writeln!(
                    out,
                    "node      {}{}",
                    id.id,
                    if id.zone.is_empty() {
                        String::new()
                    } else {
                        format!(" (zone {})", id.zone)
                    }
                );
                let _ = writeln!(out, "family    {} ({})", id.family, id.family_reason);
                let _ = writeln!(
                    out,
                    "internal  {} on {}",
                    id.internal_addr, id.internal_interface
                );
                let externals: Vec<String> =
                    id.external_addrs.iter().map(|a| a.to_string()).collect();
                let _ = writeln!(out, "external  {}", externals.join(", "));
                for (name, ep) in [
                    ("grpc", &id.grpc),
                    ("http", &id.http),
                    ("gossip", &id.gossip),
                ] {
                    let _ = writeln!(
                        out,
                        "{name:<9} listen {:<24} advertise {}",
                        ep.listen.to_string(),
                        ep.advertise
                    );
                }
            }
            None => {
                let _ = writeln!(
                    out,
                    "no identity: {}",
                    reason.as_deref().unwrap_or_default()
                );
            }
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<16} {:<44} {:<28} USABLE",
            "INTERFACE", "ADDRESS", "FLAGS"
        );
        for r in &report {
            let addr = format!("{}/{}", r.address, r.prefix_len);
            let usable = match &r.reason {
                None => "yes".to_string(),
                Some(why) => format!("no: {why}"),
            };
            let _ = writeln!(
                out,
                "{:<16} {:<44} {:<28} {usable}",
                r.interface,
                addr,
                r.flags.join(",")
            );
        }
    }
    let _ = out.flush();
    if decision.is_ok() {
        0
    } else {
        1
    }
}

fn run_preflight(
    settings: &Settings,
    snapshot: crate::core::snapshot::HostSnapshot,
    hosts_file: &Path,
    cluster_family: Option<crate::core::snapshot::Family>,
    fix: bool,
    json: bool,
) -> i32 {
    // On a node where the daemon runs, its ports are taken by itself: not a finding.
    let socket = settings.runtime_dir.join(serve::ADMIN_SOCKET);
    let daemon_running = match std::os::unix::net::UnixStream::connect(&socket) {
        Ok(_) => true,
        // Not root: the socket is root-only, but only a live daemon makes it.
        Err(e) => e.kind() == std::io::ErrorKind::PermissionDenied,
    };
    let inputs = if daemon_running {
        crate::agent::files::gather_without_ports(settings, snapshot, hosts_file, cluster_family)
    } else {
        crate::agent::files::gather(settings, snapshot, hosts_file, cluster_family)
    };
    let mut checks = preflight::evaluate(settings, &inputs);
    if daemon_running {
        for c in checks.iter_mut().filter(|c| c.code == "port.in_use") {
            c.message = format!(
                "the gRPC, HTTP and gossip ports are the running stackring daemon's (it answers on {})",
                socket.display()
            );
        }
    }
    if fix {
        match crate::agent::files::fix_hosts(&inputs, &checks) {
            Ok(fixed) => {
                for c in checks.iter_mut().filter(|c| fixed.contains(&c.code)) {
                    c.result = Outcome::Fixed;
                    c.message = format!("added the missing line to {}", hosts_file.display());
                }
            }
            Err(e) => eprintln!("stackring: cannot fix {}: {e}", hosts_file.display()),
        }
    }
    let ok = !checks.iter().any(preflight::Check::is_error);
    if json {
        let doc = serde_json::json!({ "ok": ok, "checks": checks });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        for c in &checks {
            let mark = match (c.result, c.severity) {
                (Outcome::Pass, _) => "ok",
                (Outcome::Fixed, _) => "fixed",
                (Outcome::Skip, _) => "skip",
                (Outcome::Fail, Severity::Error) => "ERROR",
                (Outcome::Fail, Severity::Warning) => "warn",
            };
            println!("{mark:<6} {:<22} {}", c.code, c.message);
            if let (Outcome::Fail, Some(fix)) = (c.result, &c.fix) {
                println!("{:<6} {:<22} fix: {fix}", "", "");
            }
        }
    }
    if ok {
        0
    } else {
        1
    }
}

/// The node id default: the kernel's hostname (of this UTS namespace).
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
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
    let mut stream = std::os::unix::net::UnixStream::connect(&socket).map_err(|e| {
        format!("cannot reach the local daemon at {} ({e}); fix: start it (systemctl start stackring) and run this as root", socket.display())
    })?;
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

fn status_nodes(settings: &Settings, json: bool) -> i32 {
    let (status, body) = match admin_get(&settings.runtime_dir, "/v1/nodes") {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stackring: {e}");
            return 1;
        }
    };
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    if status != 200 {
        eprintln!(
            "stackring: {}",
            doc["description"].as_str().unwrap_or(&body)
        );
        return 1;
    }
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
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    println!(
        "CLUSTER NODES ({}):",
        doc["cluster_name"].as_str().unwrap_or_default()
    );
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
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

fn node_command(settings: &Settings, id: &str, action: &NodeAction) -> i32 {
    let id = match node_id_arg(id) {
        Ok(id) => path_segment(id),
        Err(e) => {
            eprintln!("stackring: {e}");
            return 2;
        }
    };
    let (path, body) = match action {
        NodeAction::ExternalAddr { op, addrs } => {
            let op = match op {
                ListOp::Add => "add",
                ListOp::Set => "set",
                ListOp::Remove => "remove",
            };
            (
                format!("/v1/nodes/{id}/external_addr"),
                serde_json::json!({"action": op, "addrs": addrs}),
            )
        }
        NodeAction::Addr { addr, .. } => (
            format!("/v1/nodes/{id}/addr"),
            serde_json::json!({"addr": addr}),
        ),
        NodeAction::Forget => (format!("/v1/nodes/{id}/forget"), serde_json::json!({})),
    };
    match admin_request(
        &settings.runtime_dir,
        "POST",
        &path,
        Some(&body.to_string()),
    ) {
        Ok((200, answer)) => {
            println!("{answer}");
            let doc: serde_json::Value = serde_json::from_str(&answer).unwrap_or_default();
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

/// `--timeout` values: a number with an optional unit (s, sec, m, min, h), systemd-style.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number.parse().map_err(|_| {
        format!("'{text}' is not a duration; write e.g. 90s, 2min, 5m, 1h or a number of seconds")
    })?;
    let seconds = match unit.trim() {
        "" | "s" | "sec" => n,
        "m" | "min" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        other => {
            return Err(format!(
                "'{other}' is not a unit in '{text}'; use s, min or h (e.g. 90s, 2min)"
            ))
        }
    };
    Ok(std::time::Duration::from_secs(seconds))
}

/// What `identity.env` says: decided (and the identity's line), or waiting (and why).
fn read_identity_env(path: &Path) -> Result<String, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "{} does not exist yet (is stackring.service running?)",
                path.display()
            ))
        }
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("STACKRING_{key}=")))
            .map(|v| v.trim_matches('"').replace("\\\"", "\""))
    };
    if value("READY").as_deref() == Some("1") {
        Ok(format!(
            "{} {} on {} (gRPC {})",
            value("FAMILY").unwrap_or_default(),
            value("INTERNAL_ADDR").unwrap_or_default(),
            value("INTERNAL_IFACE").unwrap_or_default(),
            value("GRPC_ADVERTISE").unwrap_or_default()
        ))
    } else {
        Err(value("REASON").unwrap_or_else(|| "the identity is not decided".into()))
    }
}

/// `stackring wait`: polls identity.env (small, world-readable, rewritten atomically).
fn wait_for_identity(runtime_dir: &Path, timeout: std::time::Duration) -> i32 {
    let path = runtime_dir.join("identity.env");
    let start = std::time::Instant::now();
    loop {
        match read_identity_env(&path) {
            Ok(line) => {
                println!("identity decided: {line}");
                return 0;
            }
            Err(why) if !timeout.is_zero() && start.elapsed() >= timeout => {
                eprintln!(
                    "stackring wait: no identity after {} s: {why}",
                    timeout.as_secs()
                );
                return 1;
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{node_id_arg, parse_duration, path_segment};

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

    #[test]
    fn wait_timeouts_read_like_systemd_durations() {
        use std::time::Duration;
        for (text, secs) in [
            ("90", 90),
            ("90s", 90),
            ("2min", 120),
            ("5m", 300),
            ("1h", 3600),
            ("0", 0),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        for bad in ["", "fast", "5 parsecs", "-1", "2d"] {
            let e = parse_duration(bad).expect_err(bad);
            assert!(e.contains("e.g."), "{bad}: {e}");
        }
    }

    /// `HTTP/1.1 0 x`, or a first line that is not HTTP at all, was read as status 0 or 65535 and
    /// reported as the daemon's answer; fuzz/ (admin_response) checks it for any input.
    #[test]
    fn admin_answers_need_an_http_status_line_and_code() {
        use super::parse_admin_response;
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
}
