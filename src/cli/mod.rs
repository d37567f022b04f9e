//! The admin CLI: argument parsing and the one-shot commands (`inspect`, `preflight`, `config
//! validate`, `render`). `serve` hands over to `daemon`.

use crate::agent::netlink;
use crate::core::config::{Settings, DEFAULT_CONFIG_PATH, EXIT_CONFIG};
use crate::core::decide::{address_report, decide, Context};
use crate::core::preflight::{self, Outcome, Severity};
use crate::core::render;
use crate::core::state::IdentityView;
use crate::serve;

pub(crate) mod admin;
use clap::{Parser, Subcommand, ValueEnum};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(
    name = "stackring",
    version = env!("STACKRING_VERSION"),
    about = "Network identity and membership agent of a clustered appliance",
    after_help = EXIT_CODES
)]
pub(crate) struct Cli {
    /// Configuration file (YAML, Tempo/dskit key names) [default: /etc/stackring/stackring.yaml].
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Debug logging.
    #[arg(long, short, global = true)]
    pub(crate) verbose: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// What `--help` says about exit codes (also in the man page).
const EXIT_CODES: &str = "Exit codes: 0 success; 1 failure (preflight or check errors, a refused \
or failed cluster command, no identity yet, `wait` timed out, the daemon unreachable); 2 bad \
arguments (`check`: the file cannot be read); 78 invalid configuration (EX_CONFIG, also from \
`serve`, which systemd does not restart for it).";

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Run the agent (systemd Type=notify service). Exit 78 on an invalid configuration.
    Serve,
    /// An appliance's first boot (stackring-firstboot.service): take the host name
    /// (system.hostname) and /etc/stackring/stackring.yaml (stackring.yaml) from the systemd
    /// system credentials the platform passed (SMBIOS type 11, kernel command line), else from
    /// a NoCloud seed (a file system labelled cidata: meta-data local-hostname, a #cloud-config
    /// user-data's hostname and write_files), all or nothing, once. Exit 78, changing nothing,
    /// when one is invalid.
    Firstboot {
        /// The system credentials directory.
        #[arg(long, value_name = "DIR", default_value = "/run/credentials/@system")]
        credentials: PathBuf,
    },
    /// Show this host's interfaces and the identity stackring decides from them.
    Inspect {
        /// Print JSON (the identity, every link, address verdict and default route).
        #[arg(long)]
        json: bool,
    },
    /// Check that the host is prepared (/etc/hosts, IPv6, addresses, ports). Exit 1 on errors.
    Preflight {
        /// Repair what can be repaired safely (adds localhost lines to /etc/hosts).
        #[arg(long)]
        fix: bool,
        /// Print JSON (every check with its code, result, message and fix).
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
        /// The product's configuration file (its own YAML; unknown keys are ignored).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Print JSON (every finding with its code, severity, key, value and fix).
        #[arg(long)]
        json: bool,
    },
    /// Change a node of the cluster (through the local daemon, which carries it to the cluster).
    /// Exit 0 once applied (or, for a node that is down, waiting in gossip), 1 when refused.
    Node {
        /// The node id (`lifecycler.id`), as `status nodes` shows it (`node:` optional).
        id: String,
        #[command(subcommand)]
        action: NodeAction,
        /// Print the daemon's JSON answer instead of a sentence.
        #[arg(long, global = true)]
        json: bool,
    },
    /// Cluster-wide commands (through the local daemon, which carries them to every live member).
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
        /// Print the daemon's JSON answer instead of a table.
        #[arg(long, global = true)]
        json: bool,
    },
    /// Wait until the running daemon has decided this node's identity (for `ExecStartPre=` of
    /// units that need it, or `stackring-wait-online.service`). Exit 0 once decided (prints it),
    /// 1 on timeout (prints what it still waits for). Needs no root: reads identity.env.
    Wait {
        /// How long to wait: `90s`, `2min`, `5m`, `1h` or seconds; 0 waits forever.
        #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration)]
        timeout: std::time::Duration,
    },
    /// This node (identity, cluster, membership), or with `nodes` every node of the cluster,
    /// from the local daemon over its root-only admin socket. Exit 1 when the daemon is not
    /// running.
    Status {
        #[command(subcommand)]
        what: Option<StatusCommand>,
        /// Print JSON.
        #[arg(long, global = true)]
        json: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff), e.g. `stackring man | man -l -`.
    Man,
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

#[derive(Subcommand, Debug)]
pub(crate) enum ClusterCommand {
    /// The gossip keyring (Consul's): every gossip datagram is sealed with the key in use and
    /// opened with any installed key. Rotate with install, use, remove (or `rotate`). Exit 0 when
    /// every live member applied the change, 1 otherwise (the table says which did), 2 on a bad
    /// argument.
    #[command(name = "gossip-key")]
    GossipKey {
        #[command(subcommand)]
        action: GossipKeyAction,
    },
    /// Print a one-time join token (kubeadm's shape): this member's gRPC address, a secret and the
    /// cluster CA's pin in one string. A new node joins with it instead of the cluster
    /// credentials (`"cluster": {"join_token": "…"}`, or `cluster.join_token_file`), and refuses
    /// any other cluster before it sends the secret. The token is printed alone on stdout, once;
    /// this member keeps only a hash of its secret. `list` and `revoke ID` manage the ones printed.
    #[command(name = "join-token", args_conflicts_with_subcommands = true)]
    JoinToken {
        /// How long the token can be used: 30m, 24h, 7d … (10s to 30d).
        #[arg(long, value_name = "DURATION", default_value = "24h")]
        ttl: String,
        #[command(subcommand)]
        action: Option<JoinTokenAction>,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum JoinTokenAction {
    /// The tokens this member printed that can still be used (ids and expiry, never secrets).
    List,
    /// Make a token unusable.
    Revoke {
        #[arg(value_name = "ID")]
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum GossipKeyAction {
    /// Every member's key ids, the one in use marked `*`.
    List,
    /// Install a key on every live member (to open datagrams with; idempotent). Without KEY, a new
    /// one is generated and printed once.
    Install {
        /// 64 hex digits (256 bits).
        #[arg(value_name = "KEY")]
        key: Option<String>,
    },
    /// Seal with the installed key KEYID on every live member (stops at the first that cannot).
    Use {
        #[arg(value_name = "KEYID")]
        key_id: String,
    },
    /// Stop opening datagrams sealed with KEYID on every live member (not the key in use).
    Remove {
        #[arg(value_name = "KEYID")]
        key_id: String,
    },
    /// Install a new key, use it, remove the old one, stopping at the first step not applied by
    /// every live member.
    Rotate,
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
    /// Every node of the cluster: address, external addresses, zone, version, family, advertised
    /// gRPC, status.
    Nodes {
        /// Show the table again every SECONDS (default 2) until interrupted, like `watch`.
        #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2")]
        watch: Option<u64>,
    },
    /// Who reaches whom: each node's probes of every peer's advertised gRPC, HTTP and gossip
    /// endpoints (node.reachability_interval, 10 s by default), and a diagnosis in words.
    Reachability,
}

#[derive(Subcommand, Debug)]
pub(crate) enum ConfigCommand {
    /// Validate a configuration file: exit 0 when valid, 78 (EX_CONFIG) with every error otherwise.
    Validate {
        /// The file to check (default: the global --config, else /etc/stackring/stackring.yaml).
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Print the nftables ruleset that opens only this configuration's ports (gRPC, HTTP,
    /// HTTPS, gossip, sidecar proxies' ports) and drops the rest: `| nft -f -` loads it. Exit 78
    /// on an invalid configuration, printing nothing.
    Firewall {
        /// The configuration (default: the global --config, else /etc/stackring/stackring.yaml).
        #[arg(value_name = "FILE")]
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

/// Runs the command; returns the exit code. One dispatch: each command says what it needs (the
/// settings, the host's interfaces) and gets it.
fn run(cli: Cli) -> i32 {
    let explicit = cli.config.is_some();
    let config_path = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
    let default_id = hostname();
    let settings = || {
        crate::agent::files::load(&config_path, explicit, &default_id).map_err(|errors| {
            eprintln!(
                "stackring: invalid configuration {}:\n{errors}",
                config_path.display()
            );
            EXIT_CONFIG
        })
    };
    let result = match cli.command {
        // `stackring --config F config validate` checks F, as every other command reads it.
        Command::Config {
            command: ConfigCommand::Validate { file },
        } => Ok(validate(
            file.as_deref().unwrap_or(&config_path),
            &default_id,
        )),
        Command::Config {
            command: ConfigCommand::Firewall { file },
        } => Ok(firewall(
            file.as_deref().unwrap_or(&config_path),
            &default_id,
        )),
        Command::Serve => runtime().map(|rt| {
            rt.block_on(serve::serve(serve::Options {
                config_path: config_path.clone(),
                config_explicit: explicit,
                default_id: default_id.clone(),
            }))
        }),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "stackring", &mut std::io::stdout());
            Ok(0)
        }
        Command::Man => Ok(man_page()),
        Command::Firstboot { credentials } => Ok(firstboot(credentials, &default_id)),
        Command::Status { what, json } => settings().map(|s| match what {
            None => admin::status_local(&s, json),
            Some(StatusCommand::Nodes { watch: None }) => admin::status_nodes(&s, json),
            Some(StatusCommand::Nodes { watch: Some(secs) }) => {
                admin::watch_nodes(&s, json, std::time::Duration::from_secs(secs))
            }
            Some(StatusCommand::Reachability) => admin::status_reachability(&s, json),
        }),
        Command::Node { id, action, json } => {
            settings().map(|s| admin::node_command(&s, &id, &action, json))
        }
        Command::Cluster {
            command: ClusterCommand::GossipKey { action },
            json,
        } => settings().map(|s| admin::gossip_key_command(&s, &action, json)),
        Command::Cluster {
            command: ClusterCommand::JoinToken { ttl, action },
            json,
        } => settings().map(|s| admin::join_token_command(&s, &ttl, action.as_ref(), json)),
        Command::Wait { timeout } => settings().map(|s| wait_for_identity(&s.runtime_dir, timeout)),
        Command::Inspect { json } => on_host(settings, |s, snapshot, ctx| {
            inspect(s, &snapshot, ctx, json)
        }),
        Command::Preflight {
            fix,
            json,
            hosts_file,
        } => on_host(settings, |s, snapshot, ctx| {
            run_preflight(s, snapshot, &hosts_file, ctx.cluster_family, fix, json)
        }),
        Command::Render { format } => on_host(settings, |s, snapshot, ctx| {
            match decide(&snapshot, s, ctx) {
                Ok(id) => {
                    let text = match format {
                        RenderFormat::Env => render::env_lines(&id, render::ENV_RENDER_HEADER),
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
            }
        }),
        Command::Check {
            product,
            file,
            json,
        } => on_host(settings, |s, snapshot, ctx| {
            crate::check::shim::run(product, &file, json, &snapshot, s, ctx)
        }),
    };
    result.unwrap_or_else(|code| code)
}

fn runtime() -> Result<tokio::runtime::Runtime, i32> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("stackring: cannot start the async runtime: {e}");
            1
        })
}

/// Runs `command` on this host as the daemon would see it: the settings as amended by the
/// cluster record (a node of a cluster has the cluster's family and its overrides) and the
/// interfaces read once over netlink.
fn on_host(
    settings: impl FnOnce() -> Result<Settings, i32>,
    command: impl FnOnce(&Settings, crate::core::snapshot::HostSnapshot, Context<'_>) -> i32,
) -> Result<i32, i32> {
    let settings = settings()?;
    let snapshot = runtime()?.block_on(netlink::dump_once()).map_err(|e| {
        eprintln!("stackring: cannot read the host's interfaces: {e}");
        1
    })?;
    let record = crate::agent::node::load_record(&settings.state_dir).unwrap_or_else(|e| {
        eprintln!("stackring: {e}");
        None
    });
    let settings = crate::agent::node::effective_settings(&settings, record.as_ref());
    let ctx = Context {
        cluster_family: record.as_ref().map(|r| r.family),
        previous: None,
    };
    Ok(command(&settings, snapshot, ctx))
}

/// `stackring man`: the man page, from the same definitions as `--help`.
fn man_page() -> i32 {
    let command = <Cli as clap::CommandFactory>::command();
    let mut out = Vec::new();
    match clap_mangen::Man::new(command).render(&mut out) {
        Ok(()) => {
            let _ = std::io::stdout().write_all(&out);
            0
        }
        Err(e) => {
            eprintln!("stackring: cannot render the man page: {e}");
            1
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

fn firstboot(credentials: PathBuf, current_id: &str) -> i32 {
    use crate::agent::firstboot::{apply, apply_seed, publish_secrets, Outcome, Places, SeedMount};
    let places = Places::host(credentials);
    let say_named = |named: Option<String>| {
        if let Some(name) = named {
            println!("stackring firstboot: named the host {name} (from /etc/hostname)");
        }
    };
    let mut outcome = apply(&places, current_id);
    // No credential of ours: the portable fallback, a NoCloud seed (cloud-init's cidata).
    if let Ok(Outcome::NothingGiven { .. }) = outcome {
        outcome = match SeedMount::find() {
            Ok(None) => outcome,
            Ok(Some(seed)) => {
                println!(
                    "stackring firstboot: read the NoCloud seed {}",
                    seed.device.display()
                );
                apply_seed(&places, seed.dir(), current_id).map(|(outcome, ignored)| {
                    for what in ignored {
                        println!("stackring firstboot: the NoCloud seed's {what}: not stackring's, left alone");
                    }
                    outcome
                })
            }
            Err(problem) => Err(vec![problem]),
        };
    }
    let code = match outcome {
        Ok(Outcome::AlreadyApplied { done, named }) => {
            println!("stackring firstboot: applied at an earlier first boot, nothing to do:");
            print!("{done}");
            say_named(named);
            0
        }
        Ok(Outcome::NothingGiven { named }) => {
            println!(
                "stackring firstboot: no system.hostname or stackring.yaml credential in {} and no NoCloud seed with either (a file system labelled cidata): the image's configuration stays",
                places.credentials.display()
            );
            say_named(named);
            0
        }
        Ok(Outcome::Applied(lines)) => {
            for line in lines {
                println!("stackring firstboot: applied {line}");
            }
            0
        }
        Err(problems) => {
            eprintln!("stackring firstboot: nothing applied:");
            for p in problems {
                eprintln!("  {p}");
            }
            return EXIT_CONFIG;
        }
    };
    // Every boot: a seed's secrets where the agent's unit loads them.
    match publish_secrets(&places) {
        Ok(names) if names.is_empty() => code,
        Ok(names) => {
            println!(
                "stackring firstboot: {} for stackring.service in /run/credstore",
                names.join(", ")
            );
            code
        }
        Err(problem) => {
            eprintln!("stackring firstboot: {problem}");
            EXIT_CONFIG
        }
    }
}

/// The ruleset needs the ports, not the secrets: the files a `cluster:` section names are not
/// read (on the appliance they are credentials only the agent's own unit sees).
fn firewall(file: &Path, default_id: &str) -> i32 {
    match crate::agent::files::load(file, true, default_id) {
        Ok(settings) => {
            print!(
                "{}",
                crate::core::firewall::ruleset(&settings, &file.display().to_string())
            );
            0
        }
        Err(errors) => {
            eprintln!("{}: invalid, no firewall printed:", file.display());
            for e in &errors.0 {
                eprintln!("  {e}");
            }
            EXIT_CONFIG
        }
    }
}

/// The pin a client checks, from the files the daemon keeps.
fn tls_pin(settings: &Settings) -> Option<(crate::core::pin::SpkiPin, &'static str)> {
    let member = settings
        .state_dir
        .join(crate::agent::node::RECORD_FILE)
        .exists();
    crate::agent::tls::pin_on_disk(&settings.state_dir, member)
}

#[derive(serde::Serialize)]
struct InspectJson<'a> {
    #[serde(flatten)]
    identity: IdentityView,
    /// `sha256:<hex>` of the key clients pin (cluster CA, or self-signed before a join).
    tls_pin: Option<String>,
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
            tls_pin: tls_pin(settings).map(|(pin, _)| pin.to_string()),
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
                    ("https", &id.https),
                    ("gossip", &id.gossip),
                ] {
                    let _ = writeln!(
                        out,
                        "{name:<9} listen {:<24} advertise {}",
                        ep.listen.to_string(),
                        ep.advertise
                    );
                }
                match tls_pin(settings) {
                    Some((pin, of)) => {
                        let _ = writeln!(out, "tls pin   {pin} ({of})");
                    }
                    None => {
                        let _ = writeln!(
                            out,
                            "tls pin   none yet (the daemon makes its certificate at first start)"
                        );
                    }
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
                "the gRPC, HTTP, HTTPS and gossip ports are the running stackring daemon's (it answers on {})",
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
    use super::parse_duration;

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
}
