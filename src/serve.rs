//! `stackring serve`: the daemon's phases (SPEC §5).
//!
//! config (no sockets) → inspect host → wait for an identity (saying why in `STATUS=`) → bind gRPC,
//! HTTP and HTTPS → write `identity.env` → `READY=1`. Then follow the host: re-decide on every change,
//! rewrite `identity.env`, re-publish; reload on SIGHUP; leave on SIGTERM.

use crate::agent::metrics::Metrics;
use crate::agent::netlink::HostWatch;
use crate::agent::node::{effective_settings, ClusterNode};
use crate::agent::StateTx;
use crate::agent::{fsutil, systemd};
use crate::api::limits::{self, Guarded, Limits};
use crate::api::{grpc, http};
use crate::core::config::{self, Settings, EXIT_CONFIG};
use crate::core::decide::{decide, server_listen, Context, Identity};
use crate::core::snapshot::HostSnapshot;
use crate::core::state::Published;
use crate::core::{preflight, render};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

pub(crate) struct Options {
    pub(crate) config_path: PathBuf,
    /// Whether `--config` was given (a missing explicit file is an error, a missing default is not).
    pub(crate) config_explicit: bool,
    pub(crate) default_id: String,
}

/// Runs the daemon; returns the process exit code.
pub(crate) async fn serve(opts: Options) -> i32 {
    limit_malloc_retention();
    let settings = match crate::agent::files::load_checked(
        &opts.config_path,
        opts.config_explicit,
        &opts.default_id,
    ) {
        Ok(s) => s,
        Err(errors) => {
            for e in &errors.0 {
                log::error!(key = e.key.as_str(); "invalid configuration {}: {e}", opts.config_path.display());
            }
            systemd::status(&format!("invalid configuration: {}", errors.0[0]));
            return EXIT_CONFIG;
        }
    };
    match run(opts, settings).await {
        Ok(()) => 0,
        Err(e) => {
            log::error!("{e:#}");
            systemd::status(&format!("failed: {e:#}"));
            1
        }
    }
}

struct Daemon {
    opts: Options,
    settings: Settings,
    state: StateTx,
    metrics: Arc<Metrics>,
    /// The last decided identity; the sticky choice is made against it.
    identity: Option<Identity>,
    not_ready: Option<String>,
    bound: Option<(std::net::SocketAddr, std::net::SocketAddr)>,
    /// Where HTTPS listens (bound with the others).
    bound_https: Option<std::net::SocketAddr>,
    cluster: Arc<ClusterNode>,
}

async fn run(opts: Options, settings: Settings) -> anyhow::Result<()> {
    systemd::status("reading network interfaces");
    // Descriptors first: systemd's default soft limit (1,024) is for select() users; raise it to
    // the hard limit and size the listeners' connection caps to what is left.
    let (nofile, per_listener) = limits::raise_nofile(3);
    log::info!(
        "descriptors: soft limit {nofile}; up to {per_listener} connections per listener, {} per peer address",
        limits::PER_PEER.min(per_listener)
    );
    let metrics = Arc::new(Metrics::new());
    let overruns = metrics.netlink_overruns.clone();
    let host = HostWatch::start(move || {
        overruns.inc();
    })
    .await?;
    let mut snapshots = host.snapshots.clone();
    let (state, state_rx) = watch::channel(Arc::new(Published::default()));
    let cluster = ClusterNode::new(
        settings.clone(),
        snapshots.clone(),
        state_rx.clone(),
        opts.default_id.clone(),
        metrics.clone(),
    )?;
    {
        let tls = cluster.tls();
        let pin = tls.pin();
        log::info!(
            "TLS: clients pin {} ({pin}; curl --pinnedpubkey {})",
            tls.pin_of(),
            pin.curl_form()
        );
    }
    let mut records = cluster.records();
    let mut daemon = Daemon {
        opts,
        settings,
        state,
        metrics,
        identity: None,
        not_ready: None,
        bound: None,
        bound_https: None,
        cluster: cluster.clone(),
    };
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut watchdog = systemd::watchdog_interval().map(tokio::time::interval);

    // Decide once, then bind: the servers answer (`/ready` says what the node waits for) and
    // READY=1 goes out whether or not an identity exists yet. Waiting for an address must never
    // hold up boot; units that need the identity wait for it with `stackring wait`.
    let snapshot = snapshots.borrow_and_update().clone();
    daemon.update(&snapshot);
    let (grpc_listen, http_listen) = daemon.listen_addrs(&snapshot);
    let serving = Serving {
        state: state_rx.clone(),
        metrics: daemon.metrics.clone(),
        cluster: cluster.clone(),
        grpc_limits: Limits::new(
            "grpc",
            per_listener,
            limits::PER_PEER,
            daemon.metrics.clone(),
        ),
        http_limits: Limits::new(
            "http",
            per_listener,
            limits::PER_PEER,
            daemon.metrics.clone(),
        ),
        https_limits: Limits::new(
            "https",
            per_listener,
            limits::PER_PEER,
            daemon.metrics.clone(),
        ),
    };
    let https_listen = daemon.https_listen(&snapshot);
    let mut servers = serving
        .start(grpc_listen, http_listen, https_listen)
        .await?;
    daemon.bound = Some((grpc_listen, http_listen));
    daemon.bound_https = Some(https_listen);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let admin_task = match bind_admin(&daemon.settings.runtime_dir) {
        Ok(listener) => {
            let router = http::router(http::HttpState {
                state: state_rx.clone(),
                metrics: daemon.metrics.clone(),
                cluster: cluster.clone(),
                listener: http::Listener::AdminSocket,
            });
            let stop = shutdown_signal(shutdown_rx.clone());
            // Root only, yet bounded like the others: a stuck script cannot pile up connections.
            let admin_limits = Limits::new("admin", 64, 64, daemon.metrics.clone());
            let listener = Arc::new(listener);
            let next = move || {
                let (listener, admin_limits) = (listener.clone(), admin_limits.clone());
                async move {
                    loop {
                        match listener.accept().await {
                            Ok((stream, _)) => match admin_limits.admit(limits::UNIX_PEER.ip()) {
                                Ok(slot) => {
                                    let io =
                                        Guarded::new(stream, Some(slot), limits::STALL_TIMEOUT);
                                    return (io, limits::UNIX_PEER);
                                }
                                Err(_) => continue,
                            },
                            Err(e) => limits::accept_error(&e).await,
                        }
                    }
                }
            };
            Some(tokio::spawn(limits::serve_http(router, next, stop)))
        }
        Err(e) => {
            log::warn!("no admin socket, the local CLI cannot reach this daemon: {e}");
            None
        }
    };
    fsutil::remove_stale_temporaries(&daemon.settings.runtime_dir.join("identity.env"));
    daemon.write_env();
    daemon.log_preflight(&snapshot);
    log::info!("serving: gRPC on {grpc_listen}, HTTP on {http_listen}, HTTPS on {https_listen}");
    match (&daemon.identity, &daemon.not_ready) {
        (Some(identity), None) => {
            log::info!(
                stackring_family = identity.family.as_str(),
                stackring_addr = identity.internal_addr.to_string().as_str(),
                stackring_iface = identity.internal_interface.as_str();
                "ready: {} ({})", identity.summary(), identity.family_reason
            );
            systemd::ready(&identity.summary());
            daemon.announce(identity);
        }
        (_, why) => {
            let why = why.clone().unwrap_or_else(|| "starting".into());
            log::info!("serving while waiting: {why}");
            systemd::ready(&format!("waiting: {why}"));
        }
    }
    if let Some(declared) = daemon.settings.cluster.clone() {
        let (cluster, seeds) = (cluster.clone(), daemon.settings.join_members.clone());
        tokio::spawn(async move { cluster.declare(declared, seeds).await });
    }

    loop {
        tokio::select! {
            r = snapshots.changed() => {
                r?;
                let snapshot = snapshots.borrow_and_update().clone();
                daemon.metrics.host_snapshots.inc();
                daemon.update(&snapshot);
                servers = serving.follow(&mut daemon, &snapshots.borrow().clone(), servers).await;
            }
            r = records.changed() => {
                r?;
                // Created or joined a cluster: the family is fixed now and overrides apply.
                daemon.update(&snapshots.borrow().clone());
                servers = serving.follow(&mut daemon, &snapshots.borrow().clone(), servers).await;
            }
            _ = hup.recv() => {
                daemon.reload(&snapshots.borrow().clone());
                servers = serving.follow(&mut daemon, &snapshots.borrow().clone(), servers).await;
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = tick(&mut watchdog) => systemd::watchdog_ping(),
        }
    }
    daemon.stop();
    cluster.leave().await;
    let _ = shutdown_tx.send(true);
    let drain = async {
        servers.stop().await;
        if let Some(task) = admin_task {
            let _ = task.await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .is_err()
    {
        log::warn!("servers did not drain within 5 s; exiting anyway");
    }
    Ok(())
}

impl Daemon {
    /// Re-decides from `snapshot`; publishes, logs and rewrites `identity.env` on any change.
    fn update(&mut self, snapshot: &HostSnapshot) {
        let record = self.cluster.record();
        let settings = effective_settings(&self.settings, record.as_deref());
        let ctx = Context {
            cluster_family: record.map(|r| r.family),
            previous: self.identity.as_ref(),
        };
        match decide(snapshot, &settings, ctx) {
            Ok(identity) => {
                let was_ready = self.not_ready.is_none() && self.identity.is_some();
                if was_ready && self.identity.as_ref() == Some(&identity) {
                    return;
                }
                if self.bound.is_some() {
                    self.announce(&identity);
                }
                let (family, addr, iface) = (
                    identity.family.as_str(),
                    identity.internal_addr.to_string(),
                    identity.internal_interface.clone(),
                );
                match &self.identity {
                    Some(old) if old.internal_addr != identity.internal_addr => {
                        self.metrics.renumberings.inc();
                        log::warn!(
                            stackring_family = family,
                            stackring_addr = addr.as_str(),
                            stackring_iface = iface.as_str();
                            "renumbered: internal address {} → {} on {}",
                            old.internal_addr, identity.internal_addr, identity.internal_interface
                        );
                    }
                    _ => {}
                }
                self.metrics.set_identity(family, &addr, &iface);
                self.metrics.ready.set(1);
                self.metrics.identity_changes.inc();
                if self.bound.is_some() {
                    systemd::status(&format!(
                        "{}; TLS pin {}",
                        identity.summary(),
                        self.cluster.tls().pin()
                    ));
                    let first = !was_ready;
                    log::info!(
                        stackring_family = family,
                        stackring_addr = addr.as_str(),
                        stackring_iface = iface.as_str();
                        "{}: {} ({})",
                        if first { "ready" } else { "identity" },
                        identity.summary(),
                        identity.family_reason
                    );
                }
                self.identity = Some(identity);
                self.not_ready = None;
            }
            Err(why) => {
                let why = why.to_string();
                if self.not_ready.as_deref() == Some(why.as_str()) {
                    return;
                }
                self.metrics.ready.set(0);
                if self.identity.is_some() {
                    log::warn!("not ready: {why}");
                    systemd::status(&format!("not ready: {why}"));
                    self.cluster.on_not_ready(why.clone());
                } else if self.bound.is_some() {
                    log::info!("waiting: {why}");
                    systemd::status(&format!("waiting: {why}"));
                }
                self.not_ready = Some(why);
            }
        }
        self.publish();
        if self.bound.is_some() {
            self.write_env();
        }
    }

    /// Where gRPC and HTTP listen: from the config and the kernel, not from the identity, so the
    /// servers answer while the node still waits for an address.
    fn listen_addrs(
        &self,
        snapshot: &HostSnapshot,
    ) -> (std::net::SocketAddr, std::net::SocketAddr) {
        let s = &self.settings;
        (
            server_listen(snapshot, s.grpc.address, s.grpc.port),
            server_listen(snapshot, s.http.address, s.http.port),
        )
    }

    /// Where HTTPS listens: HTTP's address, `server.https_listen_port`.
    fn https_listen(&self, snapshot: &HostSnapshot) -> std::net::SocketAddr {
        let s = &self.settings;
        server_listen(snapshot, s.http.address, s.https_port)
    }

    /// SPEC §4 "also run at start": every failed check goes to the journal with its code. They
    /// do not stop the daemon (a start gate turns waiting conditions into restart loops).
    fn log_preflight(&self, snapshot: &HostSnapshot) {
        let record = self.cluster.record();
        let settings = effective_settings(&self.settings, record.as_deref());
        let inputs = crate::agent::files::gather_without_ports(
            &settings,
            snapshot.clone(),
            std::path::Path::new(preflight::HOSTS_PATH),
            record.map(|r| r.family),
        );
        for check in preflight::evaluate(&settings, &inputs) {
            if check.result != preflight::Outcome::Fail {
                continue;
            }
            let fix = check.fix.as_deref().unwrap_or("");
            match check.severity {
                preflight::Severity::Error => {
                    log::error!(stackring_check = check.code; "preflight {}: {}; fix: {fix}", check.code, check.message)
                }
                preflight::Severity::Warning => {
                    log::warn!(stackring_check = check.code; "preflight {}: {}; fix: {fix}", check.code, check.message)
                }
            }
        }
    }

    /// Hands the identity to the cluster side (gossip entry, rejoin after restart); never waits.
    fn announce(&self, identity: &Identity) {
        self.cluster.on_identity(identity.clone());
    }

    fn publish(&self) {
        let generation = self.state.borrow().generation + 1;
        self.state.send_replace(Arc::new(Published {
            generation,
            identity: self.identity.clone(),
            not_ready: self.not_ready.clone(),
        }));
    }

    /// `<runtime_dir>/identity.env`, atomically. While not ready it keeps the last values with
    /// `STACKRING_READY=0` and the reason, so consumers can tell stale from current.
    fn write_env(&self) {
        let Some(identity) = &self.identity else {
            let why = self.not_ready.as_deref().unwrap_or("starting");
            self.write_env_text(&render::env_file_waiting(why));
            return;
        };
        let mut text = render::env_file(identity);
        if let Some(why) = &self.not_ready {
            text = text.replace("STACKRING_READY=1", "STACKRING_READY=0");
            text.push_str(&format!("STACKRING_REASON={}\n", render::quote(why)));
        }
        self.write_env_text(&text);
    }

    fn write_env_text(&self, text: &str) {
        let dir = &self.settings.runtime_dir;
        let path = dir.join("identity.env");
        let result = std::fs::create_dir_all(dir)
            .and_then(|()| fsutil::write_atomic(&path, text.as_bytes(), 0o644));
        if let Err(e) = result {
            log::error!("cannot write {}: {e}; fix: make node.runtime_dir writable (RuntimeDirectory= in the unit)", path.display());
        }
    }

    /// SIGHUP: a new configuration applies whole, or not at all.
    fn reload(&mut self, snapshot: &HostSnapshot) {
        systemd::reloading();
        let path = self.opts.config_path.clone();
        let loaded = crate::agent::files::load_checked(
            &path,
            self.opts.config_explicit,
            &self.opts.default_id,
        );
        let restart = match &loaded {
            Ok(new) => config::restart_needed(&self.settings, new),
            Err(_) => vec![],
        };
        match loaded {
            Ok(_) if !restart.is_empty() => {
                self.metrics
                    .reloads
                    .get_or_create(&vec![("result".into(), "restart_needed".into())])
                    .inc();
                for (key, why) in &restart {
                    log::error!(key = *key; "reload refused, keeping the running configuration: {key} changed, and {why}; fix: `systemctl restart stackring` to apply it");
                }
            }
            Ok(settings) => {
                self.cluster.set_settings(settings.clone());
                self.settings = settings;
                self.metrics
                    .reloads
                    .get_or_create(&vec![("result".into(), "ok".into())])
                    .inc();
                log::info!("configuration reloaded from {}", path.display());
                // Re-decide from scratch against the new settings, keeping the sticky address.
                self.not_ready = Some("reloading".into());
                self.update(snapshot);
            }
            Err(errors) => {
                self.metrics
                    .reloads
                    .get_or_create(&vec![("result".into(), "invalid".into())])
                    .inc();
                for e in &errors.0 {
                    log::error!(key = e.key.as_str(); "reload refused, keeping the running configuration: {e}");
                }
            }
        }
        let status = match (&self.identity, &self.not_ready) {
            (Some(id), None) => id.summary(),
            (_, Some(why)) => format!("waiting: {why}"),
            (None, None) => "waiting".into(),
        };
        systemd::ready(&status);
    }

    /// SIGTERM: consumers of identity.env must not take a stopped node's values as current.
    fn stop(&mut self) {
        systemd::stopping("stopping");
        log::info!("stopping");
        self.not_ready = Some("stackring is stopped".into());
        self.write_env();
    }
}

/// glibc keeps freed large blocks (argon2's 19 MiB) in per-thread arenas and raises its mmap
/// threshold after each one: fix the threshold so big blocks go back to the kernel when freed, and
/// cap the arenas. A long-running agent should not hold on to a burst's memory.
fn limit_malloc_retention() {
    // SAFETY: mallopt only tunes the allocator; called before the daemon spawns threads.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

async fn bind(key: &str, addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    crate::agent::sockets::listen_socket(addr).map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {addr} ({key}): {e}; fix: free the port (`ss -ltnp` shows who holds it) or change {key}"
        )
    })
}

/// What the TCP servers serve, to start them again on new listen addresses.
struct Serving {
    state: crate::agent::StateRx,
    metrics: Arc<Metrics>,
    cluster: Arc<ClusterNode>,
    /// Connection caps, kept across moves of the listen addresses.
    grpc_limits: Arc<Limits>,
    http_limits: Arc<Limits>,
    https_limits: Arc<Limits>,
}

/// The gRPC and HTTP servers on their TCP listeners.
struct TcpServers {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl TcpServers {
    async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

impl Serving {
    async fn start(
        &self,
        grpc_addr: std::net::SocketAddr,
        http_addr: std::net::SocketAddr,
        https_addr: std::net::SocketAddr,
    ) -> anyhow::Result<TcpServers> {
        let grpc_listener = bind("server.grpc_listen_port", grpc_addr).await?;
        let http_listener = bind("server.http_listen_port", http_addr).await?;
        let https_listener = bind("server.https_listen_port", https_addr).await?;
        let (stop, stopped) = watch::channel(false);
        let grpc = grpc::router(self.state.clone(), self.cluster.clone())?
            .serve_with_incoming_shutdown(
                crate::api::tls::grpc_incoming(
                    grpc_listener,
                    self.grpc_limits.clone(),
                    self.cluster.tls(),
                ),
                shutdown_signal(stopped.clone()),
            );
        let state = |listener| http::HttpState {
            state: self.state.clone(),
            metrics: self.metrics.clone(),
            cluster: self.cluster.clone(),
            listener,
        };
        let router = http::router(state(http::Listener::Plain {
            https_port: https_addr.port(),
        }));
        let https = limits::serve_http(
            http::router(state(http::Listener::Https)),
            crate::api::tls::https_incoming(
                https_listener,
                self.https_limits.clone(),
                self.cluster.tls(),
            ),
            shutdown_signal(stopped.clone()),
        );
        let (listener, http_limits) = (Arc::new(http_listener), self.http_limits.clone());
        let next = move || {
            let (listener, http_limits) = (listener.clone(), http_limits.clone());
            async move {
                let (stream, peer, slot) = limits::accept(&listener, &http_limits, true).await;
                (
                    Guarded::new(stream, Some(slot), limits::STALL_TIMEOUT),
                    peer,
                )
            }
        };
        let http = limits::serve_http(router, next, shutdown_signal(stopped));
        let tasks = vec![
            tokio::spawn(async move {
                if let Err(e) = grpc.await {
                    log::error!("gRPC server: {e}");
                }
            }),
            tokio::spawn(http),
            tokio::spawn(https),
        ];
        Ok(TcpServers { stop, tasks })
    }

    /// Moves the servers when the decided listen addresses change (a dual-stack node that joins an
    /// IPv6 cluster moves from 0.0.0.0 to ::). The old ones stop first: `::` and `0.0.0.0` on one
    /// port collide.
    async fn follow(
        &self,
        daemon: &mut Daemon,
        snapshot: &HostSnapshot,
        servers: TcpServers,
    ) -> TcpServers {
        let Some(bound) = daemon.bound else {
            return servers;
        };
        let wanted = daemon.listen_addrs(snapshot);
        let https = daemon.https_listen(snapshot);
        if wanted == bound && Some(https) == daemon.bound_https {
            return servers;
        }
        servers.stop().await;
        match self.start(wanted.0, wanted.1, https).await {
            Ok(moved) => {
                log::info!(
                    "now listening on gRPC {}, HTTP {} and HTTPS {https}",
                    wanted.0,
                    wanted.1
                );
                daemon.bound = Some(wanted);
                daemon.bound_https = Some(https);
                moved
            }
            Err(e) => {
                let bound_https = daemon.bound_https.unwrap_or(https);
                log::error!(
                    "{e:#}; staying on gRPC {}, HTTP {} and HTTPS {bound_https}",
                    bound.0,
                    bound.1
                );
                match self.start(bound.0, bound.1, bound_https).await {
                    Ok(old) => old,
                    Err(e) => {
                        log::error!("cannot listen again on the previous addresses: {e:#}");
                        // Without its servers the daemon is useless: exit, systemd restarts it.
                        std::process::exit(1);
                    }
                }
            }
        }
    }
}

/// `<runtime_dir>/admin.sock`, root only: the local CLI's way in, no credentials needed.
fn bind_admin(runtime_dir: &std::path::Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(runtime_dir)?;
    let path = runtime_dir.join(ADMIN_SOCKET);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = tokio::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

pub(crate) const ADMIN_SOCKET: &str = "admin.sock";

async fn shutdown_signal(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// The next watchdog tick, or never when the watchdog is off.
async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}
