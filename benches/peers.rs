//! `cargo bench --bench peers` (as root): stackring side by side with hashicorp/memberlist, the
//! gossip library under Consul, Serf, Nomad and dskit's ring (Tempo, Loki, Mimir). Same network
//! namespaces (one per node on one bridge, IPv6 only), same run, one system after the other.
//!
//! For each node count: convergence after the last join; `kill -9` of a node until every survivor
//! sees it DOWN (median, p95); false DOWNs during a window of random UDP loss on every node
//! (nftables `numgen random`) and the detection time of a real failure under that loss; per-node
//! idle CPU (`/proc/PID/stat`), gossip bytes sent per second (nftables counter on eth0), and RSS
//! with its anonymous part and PSS (RSS counts the executable's pages, shared on the host).
//!
//! memberlist runs in each mode asked: with its LAN defaults (`lan`: probe 1 s, gossip 200 ms,
//! suspicion ×4), tuned to stackring's prober (`tuned`: probe 500 ms, probe timeout 250 ms,
//! gossip 200 ms, suspicion ×3: the same protocol with the same knobs), and tuned with its own
//! encryption on (`sealed`: a `SecretKey`, AES-256-GCM on every message; stackring seals every
//! datagram and cannot turn it off). stackring has no interval knob: it runs once per node count
//! and the same figures stand in every table.
//!
//! The memberlist peer (`benches/peers/main.go`) is built here, offline, from Debian's packages
//! (`golang-go`, `golang-github-hashicorp-memberlist-dev`) into `target/peers/`.
//!
//! Settings (environment): PEERS_NODES=10,30,100 node counts; PEERS_LOAD_NODES=30,100 the counts
//! with an idle window; PEERS_LOSS_NODES=30,100 the counts with loss windows; PEERS_LOSS=10,20
//! loss percentages; PEERS_LOSS_SECS=300; PEERS_IDLE_SECS=60; PEERS_KILLS=5;
//! PEERS_MODES=lan,tuned,sealed; PEERS_SYSTEMS=stackring,memberlist; PEERS_POLL_MS (stackring's
//! `/v1/nodes` poll period; default 100/200/400 ms for ≤10/≤30/more nodes); PEERS_REACH=1
//! stackring's reachability prober on (off by default: memberlist has none); PEERS_QUICK=1 a
//! smoke run (6 nodes, 20% loss for 15 s, 5 s idle, 2 kills); PEERS_DAEMON_LOG=1 the daemons' logs.

#[path = "../tests/common/mod.rs"]
mod common;

use common::local_http as http;
use common::serve::{start_daemons_with, start_hosts, Daemon};
use common::{Lan, Netns};
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ML_PORT: u16 = 7947;
/// stackring's gossip port (dskit's `memberlist.bind_port` default).
const GOSSIP_PORT: u16 = 7946;

struct Settings {
    nodes: Vec<usize>,
    load_nodes: Vec<usize>,
    loss_nodes: Vec<usize>,
    loss: Vec<u32>,
    loss_secs: u64,
    idle_secs: u64,
    kills: usize,
    modes: Vec<String>,
    systems: Vec<String>,
    poll_ms: Option<u64>,
}

fn list<T: std::str::FromStr>(var: &str, default: &str) -> Vec<T> {
    std::env::var(var)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{var}: cannot read '{s}'"))
        })
        .collect()
}

fn num(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{var}: not a number")))
        .unwrap_or(default)
}

impl Settings {
    fn from_env() -> Settings {
        let quick = std::env::var_os("PEERS_QUICK").is_some_and(|v| v != "0");
        let (nodes, load, lossn, loss, loss_secs, idle, kills) = if quick {
            ("6", "6", "6", "20", 15, 5, 2)
        } else {
            ("10,30,100", "30,100", "30,100", "10,20", 300, 60, 5)
        };
        Settings {
            nodes: list("PEERS_NODES", nodes),
            load_nodes: list("PEERS_LOAD_NODES", load),
            loss_nodes: list("PEERS_LOSS_NODES", lossn),
            loss: list("PEERS_LOSS", loss),
            loss_secs: num("PEERS_LOSS_SECS", loss_secs),
            idle_secs: num("PEERS_IDLE_SECS", idle),
            kills: num("PEERS_KILLS", kills) as usize,
            modes: list("PEERS_MODES", "lan,tuned,sealed"),
            systems: list("PEERS_SYSTEMS", "stackring,memberlist"),
            poll_ms: std::env::var("PEERS_POLL_MS")
                .ok()
                .map(|v| v.parse().expect("PEERS_POLL_MS")),
        }
    }
}

/// What each observer (node) lists as alive, and every change it reported, timestamped.
struct Watch {
    views: Vec<Mutex<HashSet<String>>>,
    log: Mutex<Vec<Ev>>,
}

#[derive(Clone)]
struct Ev {
    t: Instant,
    obs: usize,
    up: bool,
    who: String,
}

impl Watch {
    fn new(n: usize) -> Arc<Watch> {
        Arc::new(Watch {
            views: (0..n).map(|_| Mutex::new(HashSet::new())).collect(),
            log: Mutex::new(vec![]),
        })
    }

    fn event(&self, obs: usize, up: bool, who: &str, t: Instant) {
        let mut v = self.views[obs].lock().unwrap();
        let changed = if up {
            v.insert(who.to_string())
        } else {
            v.remove(who)
        };
        if changed {
            self.log.lock().unwrap().push(Ev {
                t,
                obs,
                up,
                who: who.to_string(),
            });
        }
    }

    /// A whole snapshot (stackring's `/v1/nodes`): logs the differences.
    fn snapshot(&self, obs: usize, alive: HashSet<String>, t: Instant) {
        let old = self.views[obs].lock().unwrap().clone();
        for who in alive.difference(&old) {
            self.event(obs, true, who, t);
        }
        for who in old.difference(&alive) {
            self.event(obs, false, who, t);
        }
    }

    fn alive(&self, obs: usize) -> usize {
        self.views[obs].lock().unwrap().len()
    }

    fn lists(&self, obs: usize, who: &str) -> bool {
        self.views[obs].lock().unwrap().contains(who)
    }

    /// When `obs` last changed its view.
    fn last_change(&self, obs: usize) -> Option<Instant> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.obs == obs)
            .map(|e| e.t)
            .max()
    }

    /// When `obs` first reported `who` DOWN at or after `since`.
    fn down_at(&self, obs: usize, who: &str, since: Instant) -> Option<Instant> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .find(|e| e.obs == obs && !e.up && e.who == who && e.t >= since)
            .map(|e| e.t)
    }

    /// DOWN reports in [from, to] by live observers about members that were never killed.
    fn false_downs(&self, from: Instant, to: Instant, killed: &HashSet<usize>) -> (usize, usize) {
        let log = self.log.lock().unwrap();
        let bad: Vec<&Ev> = log
            .iter()
            .filter(|e| {
                !e.up
                    && e.t >= from
                    && e.t <= to
                    && !killed.contains(&e.obs)
                    && !killed.contains(&(node_index(&e.who)))
            })
            .collect();
        for e in &bad {
            eprintln!(
                "false DOWN: node{} reported {} DOWN, {:.1} s into the window",
                e.obs + 1,
                e.who,
                e.t.duration_since(from).as_secs_f64()
            );
        }
        let subjects: HashSet<&str> = bad.iter().map(|e| e.who.as_str()).collect();
        (bad.len(), subjects.len())
    }
}

/// "node7" → 6 (observer index).
fn node_index(name: &str) -> usize {
    name.trim_start_matches("node")
        .parse::<usize>()
        .map(|i| i - 1)
        .unwrap_or(usize::MAX)
}

/// The nodes of one system, running in the LAN's namespaces.
enum Nodes {
    Stackring {
        daemons: Vec<Daemon>,
        polling: Arc<AtomicBool>,
        stop: Arc<AtomicBool>,
    },
    Memberlist {
        peers: Vec<(Child, ChildStdin)>,
    },
}

impl Nodes {
    fn pid(&self, i: usize) -> u32 {
        match self {
            Nodes::Stackring { daemons, .. } => daemons[i].child.id(),
            Nodes::Memberlist { peers } => peers[i].0.id(),
        }
    }

    fn kill(&mut self, i: usize) {
        let child = match self {
            Nodes::Stackring { daemons, .. } => &mut daemons[i].child,
            Nodes::Memberlist { peers } => &mut peers[i].0,
        };
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
    }

    fn polling(&self, on: bool) {
        if let Nodes::Stackring { polling, .. } = self {
            polling.store(on, Ordering::SeqCst);
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        match self {
            Nodes::Stackring { stop, .. } => stop.store(true, Ordering::SeqCst),
            Nodes::Memberlist { peers } => {
                for (child, _) in peers.iter_mut() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
    }
}

/// The members this node lists OK.
fn stackring_alive() -> Option<HashSet<String>> {
    let (code, body) = http("GET", "/v1/nodes", "", Duration::from_secs(5))?;
    if code != 200 {
        return None;
    }
    let doc: serde_json::Value = serde_json::from_str(&body).ok()?;
    Some(
        doc["nodes"]
            .as_array()?
            .iter()
            .filter(|m| m["status"] == "OK")
            .filter_map(|m| m["id"].as_str().map(str::to_string))
            .collect(),
    )
}

fn seed_addr(net: &str) -> String {
    format!("2001:db8:{net}::1")
}

fn start_stackring(
    lan: &Lan,
    net: &str,
    n: usize,
    poll: Duration,
) -> (Vec<Netns>, Nodes, Arc<Watch>) {
    let hosts = start_hosts(lan, net, n);
    // The reachability prober (every peer's gRPC, HTTP and gossip ports dialled every 10 s, TLS
    // checks every minute) is not membership and memberlist has nothing like it: off unless
    // PEERS_REACH=1, so that both sides do the same work.
    let reach = std::env::var_os("PEERS_REACH").is_some_and(|v| v != "0");
    let daemons = start_daemons_with(
        &hosts,
        common::STACKRING,
        if reach {
            ""
        } else {
            "reachability_interval: 0, "
        },
    );
    let watch = Watch::new(n);
    let polling = Arc::new(AtomicBool::new(true));
    let stop = Arc::new(AtomicBool::new(false));
    for (i, ns) in hosts.iter().enumerate() {
        let (watch, polling, stop) = (watch.clone(), polling.clone(), stop.clone());
        // Staggered, so the polls do not arrive in bursts.
        let offset = poll * i as u32 / n as u32;
        ns.spawn(move || {
            std::thread::sleep(offset);
            while !stop.load(Ordering::SeqCst) {
                if polling.load(Ordering::SeqCst) {
                    if let Some(alive) = stackring_alive() {
                        watch.snapshot(i, alive, Instant::now());
                    }
                }
                std::thread::sleep(poll);
            }
        });
    }
    (
        hosts,
        Nodes::Stackring {
            daemons,
            polling,
            stop,
        },
        watch,
    )
}

/// Joins every node but the first (which creates the cluster), all at once; returns when the
/// last join was answered.
fn join_stackring(hosts: &[Netns], net: &str) -> Instant {
    let create = r#"{"action":"create_cluster","cluster":{"name":"bench"},"credentials":{"username":"admin","password":"correct horse"}}"#;
    let (code, body) = hosts[0]
        .run(move || {
            http(
                "POST",
                "/v1/bootstrap/create_cluster",
                create,
                Duration::from_secs(30),
            )
        })
        .expect("create_cluster: no answer");
    assert_eq!(code, 200, "{body}");
    let seed = seed_addr(net);
    let joins: Vec<_> = hosts[1..]
        .iter()
        .map(|ns| {
            let seed = seed.clone();
            ns.spawn(move || {
                let join = format!(r#"{{"action":"join_cluster","cluster":{{"name":"bench","nodes":["{seed}"]}},"credentials":{{"username":"admin","password":"correct horse"}}}}"#);
                let (code, body) = http(
                    "POST",
                    "/v1/bootstrap/join_cluster",
                    &join,
                    Duration::from_secs(120),
                )
                .expect("join_cluster: no answer");
                assert_eq!(code, 200, "{body}");
                Instant::now()
            })
        })
        .collect();
    joins
        .into_iter()
        .map(|j| j.join().expect("join thread"))
        .max()
        .unwrap_or_else(Instant::now)
}

fn peer_binary() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("peers").join("peer")
}

/// Builds the Go peer offline from Debian's packages.
fn build_peer() -> std::path::PathBuf {
    let bin = peer_binary();
    let dir = bin.parent().unwrap().to_path_buf();
    std::fs::create_dir_all(&dir).unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers/main.go");
    let out = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(&src)
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .env("GOFLAGS", "")
        .env("GOCACHE", dir.join("gocache"))
        .output()
        .unwrap_or_else(|e| {
            panic!("go: {e}; install it: apt-get install -y golang-go golang-github-hashicorp-memberlist-dev")
        });
    assert!(
        out.status.success(),
        "building the memberlist peer failed (apt-get install -y golang-go golang-github-hashicorp-memberlist-dev):\n{}",
        common::text(&out.stderr)
    );
    bin
}

fn mode_flags(mode: &str) -> Vec<&'static str> {
    match mode {
        "lan" => vec![],
        "tuned" => vec![
            "-probe-interval",
            "500ms",
            "-probe-timeout",
            "250ms",
            "-gossip-interval",
            "200ms",
            "-suspicion-mult",
            "3",
        ],
        // Tuned, and every message encrypted with memberlist's own keyring (AES-256-GCM, as
        // Consul's gossip encryption): stackring always seals, this is the same footing.
        "sealed" => {
            let mut flags = mode_flags("tuned");
            flags.extend([
                "-key",
                "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
            ]);
            flags
        }
        other => panic!("PEERS_MODES: unknown mode {other} (lan, tuned, sealed)"),
    }
}

fn start_memberlist(
    hosts: &[Netns],
    net: &str,
    mode: &str,
    bin: &std::path::Path,
) -> (Nodes, Arc<Watch>, Reports) {
    let n = hosts.len();
    let watch = Watch::new(n);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<(usize, &'static str, Instant)>();
    let mut peers = vec![];
    for (i, ns) in hosts.iter().enumerate() {
        let mut child = ns
            .command(bin.to_str().unwrap())
            .args(["-name", &format!("node{}", i + 1)])
            .args(["-bind", &format!("2001:db8:{net}::{:x}", i + 1)])
            .args(["-port", &ML_PORT.to_string()])
            .args(mode_flags(mode))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the memberlist peer");
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take().unwrap();
        let (watch, ready_tx) = (watch.clone(), ready_tx.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let t = Instant::now();
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                let who = v["node"].as_str().unwrap_or("");
                match v["ev"].as_str().unwrap_or("") {
                    "join" => watch.event(i, true, who, t),
                    "leave" => watch.event(i, false, who, t),
                    "ready" => {
                        let _ = ready_tx.send((i, "ready", t));
                    }
                    "joined" => {
                        let err = v["err"].as_str().unwrap_or("");
                        if !err.is_empty() {
                            eprintln!("node{} join failed: {err}", i + 1);
                        } else if v["attempts"] != 1 {
                            eprintln!("node{} joined at attempt {}", i + 1, v["attempts"]);
                        }
                        let _ = ready_tx.send((i, "joined", t));
                    }
                    _ => {}
                }
            }
        });
        peers.push((child, stdin));
    }
    let mut ready = 0;
    while ready < n {
        let (_, what, _) = ready_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("memberlist peers did not all start within 60 s");
        if what == "ready" {
            ready += 1;
        }
    }
    (Nodes::Memberlist { peers }, watch, ready_rx)
}

type Reports = std::sync::mpsc::Receiver<(usize, &'static str, Instant)>;

fn join_memberlist(nodes: &mut Nodes, net: &str, rx: Reports) -> Instant {
    let Nodes::Memberlist { peers } = nodes else {
        unreachable!()
    };
    let cmd = format!("join [{}]:{ML_PORT}\n", seed_addr(net));
    for (_, stdin) in peers.iter_mut().skip(1) {
        stdin.write_all(cmd.as_bytes()).expect("peer stdin");
        stdin.flush().unwrap();
    }
    let mut last = Instant::now();
    for _ in 1..peers.len() {
        let (_, what, t) = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("memberlist joins did not all return within 120 s");
        assert_eq!(what, "joined");
        last = last.max(t);
    }
    last
}

/// Polls `f` every 20 ms until it is true; false after `timeout`.
fn wait(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

fn nft(ns: &Netns, script: &str) {
    let mut c = ns
        .command("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nft (apt-get install nftables)");
    c.stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nft: {}\n{script}",
        common::text(&out.stderr)
    );
}

/// A table per node: output counters on eth0 for gossip and an input chain for loss. Gossip is
/// UDP on either gossip port, and memberlist's TCP (its push/pull every 30 s, fallback probes);
/// a packet from one gossip port to another is counted once. Not counted: stackring's TCP on its
/// gossip port (the TLS discovery answer a joiner or the reachability prober asks for) and its
/// reachability probes of the gRPC and HTTP ports, a feature memberlist has not.
fn nft_setup(ns: &Netns) {
    let udp = format!("{{ {GOSSIP_PORT}, {ML_PORT} }}");
    nft(
        ns,
        &format!("table inet peers {{\n chain tx {{\n  type filter hook output priority 0; policy accept;\n  oifname \"eth0\" udp sport {udp} counter accept\n  oifname \"eth0\" udp dport {udp} counter accept\n  oifname \"eth0\" tcp sport {ML_PORT} counter accept\n  oifname \"eth0\" tcp dport {ML_PORT} counter accept\n }}\n chain rx {{\n  type filter hook input priority 0; policy accept;\n }}\n}}\n"),
    );
}

fn set_loss(hosts: &[Netns], percent: u32) {
    for ns in hosts {
        let rule = if percent == 0 {
            "flush chain inet peers rx\n".to_string()
        } else {
            format!("flush chain inet peers rx\nadd rule inet peers rx iifname \"eth0\" meta l4proto udp numgen random mod 100 < {percent} drop\n")
        };
        nft(ns, &rule);
    }
}

fn bytes_sent(ns: &Netns) -> u64 {
    let out = ns
        .command("nft")
        .args(["list", "chain", "inet", "peers", "tx"])
        .output()
        .unwrap();
    let text = common::text(&out.stdout);
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[0] == "bytes")
        .filter_map(|w| w[1].parse::<u64>().ok())
        .sum()
}

/// utime + stime, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let f = |i: usize| rest.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    f(11) + f(12)
}

#[derive(Default, Clone)]
struct Figures {
    converged: Option<Duration>,
    down: Vec<Duration>,
    down_missed: usize,
    /// Per loss percentage: (false DOWN reports, distinct members reported, detection time).
    loss: BTreeMap<u32, (usize, usize, Option<Duration>)>,
    cpu_percent: Option<f64>,
    bytes_per_s: Option<f64>,
    rss_mib: Option<f64>,
    /// Anonymous RSS (`RssAnon:`): the process's own memory. RSS also counts the pages of its
    /// executable, shared by every instance on the host (12.9 of stackring's 14.2 MiB at 30 nodes).
    anon_mib: Option<f64>,
    /// Proportional set size (`smaps_rollup`): shared pages split between the processes sharing
    /// them, what one more node costs the host.
    pss_mib: Option<f64>,
}

/// The mean over `n` nodes of a `kB` field, in MiB; None when a process lacks it.
fn mean_mib(nodes: &Nodes, n: usize, file: &str, field: &str) -> Option<f64> {
    let kib: Option<Vec<u64>> = (0..n)
        .map(|i| common::proc_kib(nodes.pid(i), file, field))
        .collect();
    kib.map(|v| v.iter().sum::<u64>() as f64 / n as f64 / 1024.0)
}

/// The same script for both systems, on nodes already started and watched.
fn scenario(
    s: &Settings,
    n: usize,
    hosts: &[Netns],
    nodes: &mut Nodes,
    watch: &Watch,
    last_join: Instant,
    label: &str,
) -> Figures {
    let mut f = Figures::default();
    let mut killed: HashSet<usize> = HashSet::new();
    let live = |killed: &HashSet<usize>| (0..n).filter(|i| !killed.contains(i)).collect::<Vec<_>>();

    // Convergence: every node lists every node alive.
    let limit = Duration::from_secs(60 + n as u64);
    if wait(limit, || (0..n).all(|i| watch.alive(i) == n)) {
        let at = (0..n).filter_map(|i| watch.last_change(i)).max().unwrap();
        f.converged = Some(at.saturating_duration_since(last_join));
        eprintln!(
            "[{label}] {n} nodes converged {:?} after the last join",
            f.converged.unwrap()
        );
    } else {
        let worst = (0..n).map(|i| watch.alive(i)).min().unwrap_or(0);
        eprintln!("[{label}] {n} nodes NOT converged within {limit:?} (a node lists only {worst})");
    }
    std::thread::sleep(Duration::from_secs(5));

    // Idle: CPU, bytes sent, RSS, with nothing polling, once the joins' aftermath is over (the
    // first reachability rounds, the last gossip of the joins): 15 s after convergence.
    if s.load_nodes.contains(&n) && s.idle_secs > 0 {
        nodes.polling(false);
        std::thread::sleep(Duration::from_secs(10));
        let t0 = Instant::now();
        let cpu0: Vec<u64> = (0..n).map(|i| cpu_ticks(nodes.pid(i))).collect();
        let b0: Vec<u64> = hosts.iter().map(bytes_sent).collect();
        std::thread::sleep(Duration::from_secs(s.idle_secs));
        let cpu1: Vec<u64> = (0..n).map(|i| cpu_ticks(nodes.pid(i))).collect();
        let b1: Vec<u64> = hosts.iter().map(bytes_sent).collect();
        let secs = t0.elapsed().as_secs_f64();
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let ticks: u64 = cpu1.iter().zip(&cpu0).map(|(a, b)| a - b).sum();
        let bytes: u64 = b1.iter().zip(&b0).map(|(a, b)| a - b).sum();
        f.cpu_percent = Some(ticks as f64 / hz / secs / n as f64 * 100.0);
        f.bytes_per_s = Some(bytes as f64 / secs / n as f64);
        let rss: u64 = (0..n).map(|i| common::rss_kib(nodes.pid(i))).sum();
        f.rss_mib = Some(rss as f64 / n as f64 / 1024.0);
        f.anon_mib = mean_mib(nodes, n, "status", "RssAnon:");
        f.pss_mib = mean_mib(nodes, n, "smaps_rollup", "Pss:");
        eprintln!(
            "[{label}] idle {secs:.0} s: CPU {:.2}% per node, {:.0} B/s sent per node, RSS {:.1} MiB (anonymous {:.1} MiB, PSS {:.1} MiB)",
            f.cpu_percent.unwrap(),
            f.bytes_per_s.unwrap(),
            f.rss_mib.unwrap(),
            f.anon_mib.unwrap_or(f64::NAN),
            f.pss_mib.unwrap_or(f64::NAN)
        );
        nodes.polling(true);
        std::thread::sleep(Duration::from_secs(2));
    }

    // Kill and see DOWN; victims from the last node backwards, never the seed.
    let loss_levels = if s.loss_nodes.contains(&n) {
        s.loss.len()
    } else {
        0
    };
    let kills = s.kills.min(n.saturating_sub(3 + loss_levels));
    let mut next_victim = n - 1;
    let mut kill_and_wait =
        |nodes: &mut Nodes, killed: &mut HashSet<usize>, timeout: Duration| -> Option<Duration> {
            let victim = next_victim;
            next_victim -= 1;
            let name = format!("node{}", victim + 1);
            let t0 = Instant::now();
            let listed_by = (0..n)
                .filter(|o| !killed.contains(o) && *o != victim && watch.lists(*o, &name))
                .count();
            nodes.kill(victim);
            killed.insert(victim);
            let survivors = live(killed);
            // A survivor that never listed the victim OK (its view never converged) counts as
            // seeing it DOWN at once; the others at their first DOWN report after the kill.
            let ok = wait(timeout, || {
                survivors.iter().all(|&o| !watch.lists(o, &name))
            });
            let result = if listed_by == 0 {
                eprintln!("[{label}] {name} was listed OK by no survivor before the kill");
                None
            } else if ok {
                survivors
                    .iter()
                    .map(|&o| watch.down_at(o, &name, t0).unwrap_or(t0))
                    .max()
                    .map(|t| t - t0)
            } else {
                let still = survivors.iter().filter(|&&o| watch.lists(o, &name)).count();
                eprintln!("[{label}] {name} still listed by {still} survivors after {timeout:?}");
                None
            };
            eprintln!("[{label}] kill -9 {name}: DOWN everywhere after {result:?}");
            result
        };
    for _ in 0..kills {
        match kill_and_wait(nodes, &mut killed, Duration::from_secs(60)) {
            Some(d) => f.down.push(d),
            None => f.down_missed += 1,
        }
        std::thread::sleep(Duration::from_secs(1));
    }

    // Loss windows: false DOWNs, then a real failure under the same loss.
    if s.loss_nodes.contains(&n) {
        for &p in &s.loss {
            set_loss(hosts, p);
            let from = Instant::now();
            let end = from + Duration::from_secs(s.loss_secs);
            while Instant::now() < end {
                std::thread::sleep(Duration::from_secs(1).min(end - Instant::now()));
            }
            let (reports, members) = watch.false_downs(from, Instant::now(), &killed);
            eprintln!("[{label}] {p}% UDP loss for {} s: {reports} false DOWN reports about {members} members", s.loss_secs);
            let detected = kill_and_wait(nodes, &mut killed, Duration::from_secs(90));
            // False DOWNs during the detection too.
            let (reports, members) = watch.false_downs(from, Instant::now(), &killed);
            f.loss.insert(p, (reports, members, detected));
            set_loss(hosts, 0);
            // Let refuted members come back before the next window.
            let alive_now = live(&killed);
            let want = alive_now.len();
            wait(Duration::from_secs(30), || {
                alive_now.iter().all(|&o| watch.alive(o) == want)
            });
        }
    }
    f
}

fn median_p95(v: &[Duration]) -> Option<(Duration, Duration)> {
    if v.is_empty() {
        return None;
    }
    let mut v = v.to_vec();
    v.sort();
    let med = v[v.len() / 2];
    let p95 = v[((v.len() as f64 * 0.95).ceil() as usize)
        .saturating_sub(1)
        .min(v.len() - 1)];
    Some((med, p95))
}

fn version_info() -> (String, String, String) {
    let ml = Command::new("dpkg-query")
        .args([
            "-W",
            "-f=${Version}",
            "golang-github-hashicorp-memberlist-dev",
        ])
        .output()
        .map(|o| common::text(&o.stdout))
        .unwrap_or_default();
    let go = Command::new("go")
        .arg("version")
        .output()
        .map(|o| common::text(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let commit = Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "describe",
            "--always",
            "--dirty",
        ])
        .output()
        .map(|o| common::text(&o.stdout).trim().to_string())
        .unwrap_or_default();
    (ml, go, commit)
}

fn ms(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.0} ms", d.as_secs_f64() * 1000.0))
        .unwrap_or_else(|| "-".into())
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    }
}

fn rows(
    s: &Settings,
    n: usize,
    sr: &Figures,
    ml: &Figures,
) -> Vec<(String, String, String, String)> {
    let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
    let mut r = vec![];
    r.push((
        format!("{n} nodes: converged after last join"),
        ms(sr.converged),
        ms(ml.converged),
        ratio(secs(sr.converged), secs(ml.converged)),
    ));
    let (sm, sp) = median_p95(&sr.down).unzip();
    let (mm, mp) = median_p95(&ml.down).unzip();
    let missed = |f: &Figures| {
        if f.down_missed > 0 {
            format!(" ({} missed)", f.down_missed)
        } else {
            String::new()
        }
    };
    r.push((
        format!(
            "{n} nodes: kill -9 → DOWN everywhere, median of {}",
            sr.down.len().max(ml.down.len())
        ),
        format!("{}{}", ms(sm), missed(sr)),
        format!("{}{}", ms(mm), missed(ml)),
        ratio(secs(sm), secs(mm)),
    ));
    r.push((
        format!("{n} nodes: kill -9 → DOWN everywhere, p95"),
        ms(sp),
        ms(mp),
        ratio(secs(sp), secs(mp)),
    ));
    for &p in &s.loss {
        if let (Some(a), Some(b)) = (sr.loss.get(&p), ml.loss.get(&p)) {
            r.push((
                format!(
                    "{n} nodes: false DOWNs, {p}% UDP loss, {} s (reports / members)",
                    s.loss_secs
                ),
                format!("{} / {}", a.0, a.1),
                format!("{} / {}", b.0, b.1),
                ratio(Some(a.0 as f64), Some(b.0 as f64)),
            ));
            r.push((
                format!("{n} nodes: kill -9 → DOWN everywhere at {p}% loss"),
                ms(a.2),
                ms(b.2),
                ratio(secs(a.2), secs(b.2)),
            ));
        }
    }
    if sr.cpu_percent.is_some() || ml.cpu_percent.is_some() {
        let pct = |v: Option<f64>| v.map(|v| format!("{v:.2}%")).unwrap_or("-".into());
        let bps = |v: Option<f64>| v.map(|v| format!("{v:.0} B/s")).unwrap_or("-".into());
        let mib = |v: Option<f64>| v.map(|v| format!("{v:.1} MiB")).unwrap_or("-".into());
        r.push((
            format!("{n} nodes: idle CPU per node ({} s)", s.idle_secs),
            pct(sr.cpu_percent),
            pct(ml.cpu_percent),
            ratio(sr.cpu_percent, ml.cpu_percent),
        ));
        r.push((
            format!("{n} nodes: gossip bytes sent per node"),
            bps(sr.bytes_per_s),
            bps(ml.bytes_per_s),
            ratio(sr.bytes_per_s, ml.bytes_per_s),
        ));
        for (what, a, b) in [
            ("RSS per node", sr.rss_mib, ml.rss_mib),
            (
                "anonymous RSS per node (its own memory)",
                sr.anon_mib,
                ml.anon_mib,
            ),
            ("PSS per node (shared pages split)", sr.pss_mib, ml.pss_mib),
        ] {
            r.push((format!("{n} nodes: {what}"), mib(a), mib(b), ratio(a, b)));
        }
    }
    r
}

fn main() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("the benchmark builds network namespaces: run it as root");
        std::process::exit(1);
    }
    // PEERS_DAEMON_LOG=1 lets the daemons' logs through to stderr (to find why a view is wrong).
    if std::env::var_os("PEERS_DAEMON_LOG").is_none() {
        std::env::set_var("STACKRING_TEST_QUIET", "1");
    }
    // Daemons as systemd starts them: RUST_BACKTRACE (set in some shells) makes every anyhow
    // error capture and, once formatted, symbolize a backtrace; at 30 nodes that alone tripled
    // stackring's RSS (46 MiB, 4 MiB of mapped debug info and a 22 MiB heap).
    std::env::remove_var("RUST_BACKTRACE");
    // The kernel's IPv6 neighbour table is shared by every namespace; with the default limits
    // (gc_thresh 128/512/1024) 100 full-mesh namespaces overflow it ("neighbor table overflow!")
    // and every namespace on the machine, tests included, loses its neighbours.
    for (key, at_least) in [
        ("gc_thresh1", 8192u64),
        ("gc_thresh2", 32768),
        ("gc_thresh3", 65536),
    ] {
        let path = format!("/proc/sys/net/ipv6/neigh/default/{key}");
        let now: u64 = std::fs::read_to_string(&path)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if now < at_least {
            let _ = std::fs::write(&path, at_least.to_string());
        }
    }
    std::env::remove_var("RUST_LIB_BACKTRACE");
    let s = Settings::from_env();
    let bin = build_peer();
    let (ml_version, go_version, commit) = version_info();
    let run_sr = s.systems.iter().any(|x| x == "stackring");
    let run_ml = s.systems.iter().any(|x| x == "memberlist");

    // Per node count: stackring's figures, and memberlist's per mode.
    let mut results: Vec<(usize, Figures, BTreeMap<String, Figures>)> = vec![];
    for &n in &s.nodes {
        assert!(
            (3..=250).contains(&n),
            "PEERS_NODES: between 3 and 250 nodes"
        );
        let net = format!("{:x}", 0xb00 + n);
        let lan = Lan::new(&format!("pl{n}"));
        // No MLD querier on this LAN: without snooping, neighbour discovery never depends on
        // multicast group entries that age out during a long run.
        lan.ns.ip("link set br0 type bridge mcast_snooping 0");
        let poll = Duration::from_millis(s.poll_ms.unwrap_or(match n {
            0..=10 => 100,
            11..=30 => 200,
            _ => 400,
        }));
        let hosts: Vec<Netns>;
        let mut sr = Figures::default();
        if run_sr {
            let (h, mut nodes, watch) = start_stackring(&lan, &net, n, poll);
            for ns in &h {
                nft_setup(ns);
            }
            let last_join = join_stackring(&h, &net);
            sr = scenario(
                &s,
                n,
                &h,
                &mut nodes,
                &watch,
                last_join,
                &format!("stackring {n}"),
            );
            drop(nodes);
            hosts = h;
        } else {
            hosts = (1..=n)
                .map(|i| {
                    lan.host(
                        &format!("{net}n{i}"),
                        &[&format!("2001:db8:{net}::{i:x}/64")],
                    )
                })
                .collect();
            for ns in &hosts {
                nft_setup(ns);
            }
        }
        let mut ml = BTreeMap::new();
        if run_ml {
            for mode in &s.modes {
                set_loss(&hosts, 0);
                let (mut nodes, watch, reports) = start_memberlist(&hosts, &net, mode, &bin);
                let last_join = join_memberlist(&mut nodes, &net, reports);
                let f = scenario(
                    &s,
                    n,
                    &hosts,
                    &mut nodes,
                    &watch,
                    last_join,
                    &format!("memberlist-{mode} {n}"),
                );
                drop(nodes);
                ml.insert(mode.clone(), f);
            }
        }
        results.push((n, sr, ml));
        drop(hosts);
        drop(lan);
        // After each node count, so a later failure keeps what was measured.
        report(&s, &results, &ml_version, &go_version, &commit);
    }
}

fn report(
    s: &Settings,
    results: &[(usize, Figures, BTreeMap<String, Figures>)],
    ml_version: &str,
    go_version: &str,
    commit: &str,
) {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!();
    println!(
        "stackring / memberlist ({cpus} CPUs, one IPv6-only namespace per node on one bridge)"
    );
    println!("stackring {commit} (SWIM prober: probe 500 ms, probe timeout 250 ms, gossip 200 ms, suspicion ×3; chitchat 0.11 for state: exchanges every 200 ms for 3 s after a change, one at once with a member whose anti-entropy digest (every 30 s) shows another state, otherwise one every 90 s on average; both × the cluster's size scale, 3 at 100 nodes); memberlist {ml_version} (Debian golang-github-hashicorp-memberlist-dev), {go_version}");
    println!(
        "settings: nodes {:?}, idle {} s at {:?}, loss {:?}% for {} s at {:?}, {} kills",
        s.nodes, s.idle_secs, s.load_nodes, s.loss, s.loss_secs, s.loss_nodes, s.kills
    );
    for mode in &s.modes {
        println!();
        match mode.as_str() {
            "lan" => println!("## stackring defaults vs memberlist LAN defaults (probe 1 s, probe timeout 500 ms, gossip 200 ms, suspicion mult 4)"),
            "sealed" => println!("## stackring defaults vs memberlist tuned to stackring's prober and encrypted (its SecretKey: AES-256-GCM on every message, as stackring seals every datagram)"),
            _ => println!("## stackring defaults vs memberlist tuned to stackring's prober (probe 500 ms, probe timeout 250 ms, gossip 200 ms, suspicion ×3)"),
        }
        println!("| figure | stackring | memberlist | ratio |");
        println!("|---|---:|---:|---:|");
        for (n, sr, ml) in results {
            let Some(m) = ml.get(mode) else { continue };
            for (what, a, b, r) in rows(s, *n, sr, m) {
                println!("| {what} | {a} | {b} | {r} |");
            }
        }
    }
    println!();
    println!("targets at 100 nodes: converged <= 3 s after the last join, DOWN <= 5 s, 0 false DOWNs at 20% loss, idle CPU and bytes/s per node <= memberlist's");
    println!("stackring times are sampled by polling /v1/nodes (every {} ms at <=10/<=30/more nodes); memberlist's come from its event callbacks", s.poll_ms.map(|p| format!("{p}")).unwrap_or("100/200/400".into()));
}
