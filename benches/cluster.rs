//! `cargo bench --bench cluster` (as root): gossip membership figures on real daemons, one network
//! namespace per node on a bridge, IPv6 only. Prints tables; asserts nothing.
//!
//! For 3, 10 and 30 nodes: time from the first join request until every node lists every other as
//! OK (and from the last join's answer), time until every survivor sees a `kill -9`ed node DOWN,
//! CPU per node (utime + stime of `/proc/PID/stat`) from `create_cluster` until converged and over
//! an idle window after it, and the daemons' RSS.
//!
//! With `STACKRING_BENCH_BEFORE=/path/to/an/older/stackring` it measures that build beside this
//! one, on the same namespaces, interleaved (per size and repetition one system then the other,
//! the order alternating between repetitions), and prints every figure as
//! `after / before = ratio`. Builds from before the HTTPS listener take `create_cluster` and
//! `join_cluster` over plain HTTP: the bench uses HTTPS when the node listens on it.
//!
//! Settings (environment): `STACKRING_BENCH_BEFORE` (the other binary), `STACKRING_BENCH_REPS`
//! (repetitions; 2 with a before, else 1), `STACKRING_BENCH_IDLE_SECS` (idle window, 30),
//! `STACKRING_BENCH_NODES` (sizes, `3,10,30`).

#[path = "../tests/common/mod.rs"]
mod common;

use common::serve::{start_daemons, start_hosts};
use common::{Lan, Netns};
use std::time::{Duration, Instant};

/// Longest wait for convergence or for DOWN before a run is reported as failed.
const CONVERGE_LIMIT: Duration = Duration::from_secs(120);
const DOWN_LIMIT: Duration = Duration::from_secs(60);

struct System {
    label: &'static str,
    binary: String,
    version: String,
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn version(binary: &str) -> String {
    std::process::Command::new(binary)
        .arg("--version")
        .output()
        .map(|o| common::text(&o.stdout).trim().to_string())
        .unwrap_or_else(|e| format!("({binary}: {e})"))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| kib / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    format!("{cpus} CPUs ({model}), {mem_gib:.1} GiB")
}

fn main() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("the benchmark builds network namespaces: run it as root");
        std::process::exit(1);
    }
    // The daemons' own logs would drown the table.
    std::env::set_var("STACKRING_TEST_QUIET", "1");
    let after = System {
        label: "after",
        binary: common::STACKRING.to_string(),
        version: version(common::STACKRING),
    };
    let before = std::env::var("STACKRING_BENCH_BEFORE")
        .ok()
        .filter(|p| !p.is_empty())
        .map(|binary| System {
            label: "before",
            version: version(&binary),
            binary,
        });
    let reps: usize = env_or("STACKRING_BENCH_REPS", if before.is_some() { 2 } else { 1 });
    let idle = Duration::from_secs(env_or("STACKRING_BENCH_IDLE_SECS", 30));
    let sizes: Vec<usize> = std::env::var("STACKRING_BENCH_NODES")
        .unwrap_or_else(|_| "3,10,30".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();

    let started = Instant::now();
    let load_start = loadavg();
    println!("stackring cluster benchmark: IPv6-only namespaces on one bridge");
    println!("machine: {}", machine());
    println!("after:  {} ({})", after.version, after.binary);
    match &before {
        Some(b) => println!("before: {} ({})", b.version, b.binary),
        None => println!(
            "before: none (set STACKRING_BENCH_BEFORE=/path/to/an/older/stackring to measure it \
             beside this build, interleaved, with ratios)"
        ),
    }
    println!(
        "{reps} repetition(s), idle window {} s, load average at start: {load_start}",
        idle.as_secs()
    );
    println!();
    println!(
        "{:>3} {:>5} {:>6} {:>6}  {:>9} {:>9} {:>8}  {:>9} {:>9} {:>7}  {:>8} {:>8}",
        "rep",
        "nodes",
        "system",
        "load1",
        "conv/1st",
        "conv/last",
        "DOWN",
        "cpu/node",
        "cpu seed",
        "idle%",
        "RSS mean",
        "RSS max"
    );

    // results[size index] = (after runs, before runs)
    let mut results: Vec<(Vec<Figures>, Vec<Figures>)> =
        sizes.iter().map(|_| (vec![], vec![])).collect();
    for rep in 0..reps {
        for (si, &n) in sizes.iter().enumerate() {
            let lan = Lan::new(&format!("bl{n}"));
            let net = format!("{n:x}");
            let hosts = start_hosts(&lan, &net, n);
            let pairs: Vec<(&Netns, String)> = hosts
                .iter()
                .enumerate()
                .map(|(i, ns)| (ns, format!("2001:db8:{net}::{:x}", i + 1)))
                .collect();
            common::pin_neighbours(&pairs);
            let mut order: Vec<&System> = vec![&after];
            if let Some(b) = &before {
                // Alternate which system goes first, so neither always follows the other.
                if rep % 2 == 0 {
                    order.insert(0, b);
                } else {
                    order.push(b);
                }
            }
            for sys in order {
                let load1 = loadavg()
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_string();
                let f = run(&hosts, n, sys, idle);
                f.print_row(rep + 1, n, sys.label, &load1);
                if sys.label == "after" {
                    results[si].0.push(f);
                } else {
                    results[si].1.push(f);
                }
            }
        }
    }
    let load_end = loadavg();

    println!();
    println!(
        "load average at start: {load_start}; at end: {load_end}; {} CPUs; run took {:.0} s",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        started.elapsed().as_secs_f64()
    );
    println!(
        "figures are means over the repetitions that gave them; `(…)` the ratio of each repetition"
    );
    println!("CPU during convergence is from create_cluster until every node lists all OK, with every node's /v1/nodes polled each 10 ms");
    for (si, &n) in sizes.iter().enumerate() {
        let (a, b) = &results[si];
        println!();
        println!("{n} nodes");
        for m in METRICS {
            let av = mean(a.iter().filter_map(|f| (m.get)(f)));
            if before.is_none() {
                println!("  {:<44} {}", m.name, fmt_opt(av, m.unit));
                continue;
            }
            let bv = mean(b.iter().filter_map(|f| (m.get)(f)));
            let per_rep: Vec<String> = a
                .iter()
                .zip(b.iter())
                .filter_map(|(fa, fb)| Some(format!("{:.2}", (m.get)(fa)? / (m.get)(fb)?)))
                .collect();
            let ratio = match (av, bv) {
                (Some(x), Some(y)) if y > 0.0 => format!("{:.2}", x / y),
                _ => "-".into(),
            };
            println!(
                "  {:<44} {} / {} = {ratio}  ({})",
                m.name,
                fmt_opt(av, m.unit),
                fmt_opt(bv, m.unit),
                per_rep.join(", ")
            );
        }
    }
    println!();
    println!("targets: 30 nodes converged <= 3 s, DOWN <= 5 s, RSS <= 16 MiB per node; with security on, after / before <= 1.10");
}

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let v: Vec<f64> = v.collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn fmt_opt(v: Option<f64>, unit: &str) -> String {
    match v {
        Some(x) if unit == "%" => format!("{x:.3}%"),
        Some(x) if unit == "MiB" => format!("{x:.1} MiB"),
        Some(x) => format!("{x:.0} {unit}"),
        None => "failed".into(),
    }
}

struct Metric {
    name: &'static str,
    unit: &'static str,
    get: fn(&Figures) -> Option<f64>,
}

const METRICS: &[Metric] = &[
    Metric {
        name: "converged, from the first join request",
        unit: "ms",
        get: |f| f.converged_from_first_join.map(ms),
    },
    Metric {
        name: "converged, after the last join answered",
        unit: "ms",
        get: |f| f.converged_after_last_join.map(ms),
    },
    Metric {
        name: "kill -9 -> every survivor sees DOWN",
        unit: "ms",
        get: |f| f.down.map(ms),
    },
    Metric {
        name: "CPU per node, create until converged (mean)",
        unit: "ms",
        get: |f| f.cpu_converge_mean_s.map(|s| s * 1000.0),
    },
    Metric {
        name: "CPU of the seed, create until converged",
        unit: "ms",
        get: |f| f.cpu_converge_seed_s.map(|s| s * 1000.0),
    },
    Metric {
        name: "idle CPU per node (mean, % of one CPU)",
        unit: "%",
        get: |f| f.idle_cpu_pct,
    },
    Metric {
        name: "RSS per node after convergence, mean",
        unit: "MiB",
        get: |f| f.rss_mean_kib.map(|k| k / 1024.0),
    },
    Metric {
        name: "RSS per node after convergence, max",
        unit: "MiB",
        get: |f| f.rss_max_kib.map(|k| k / 1024.0),
    },
    Metric {
        name: "  of which anonymous (heap, stacks), mean",
        unit: "MiB",
        get: |f| f.rss_anon_mean_kib.map(|k| k / 1024.0),
    },
    Metric {
        name: "  of which file-backed (the binary), mean",
        unit: "MiB",
        get: |f| f.rss_file_mean_kib.map(|k| k / 1024.0),
    },
    Metric {
        name: "RSS per node after the idle window, mean",
        unit: "MiB",
        get: |f| f.rss_idle_mean_kib.map(|k| k / 1024.0),
    },
];

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[derive(Default)]
struct Figures {
    converged_from_first_join: Option<Duration>,
    converged_after_last_join: Option<Duration>,
    down: Option<Duration>,
    cpu_converge_mean_s: Option<f64>,
    cpu_converge_seed_s: Option<f64>,
    idle_cpu_pct: Option<f64>,
    rss_mean_kib: Option<f64>,
    rss_max_kib: Option<f64>,
    rss_anon_mean_kib: Option<f64>,
    rss_file_mean_kib: Option<f64>,
    rss_idle_mean_kib: Option<f64>,
}

impl Figures {
    fn print_row(&self, rep: usize, n: usize, system: &str, load1: &str) {
        let d = |v: Option<Duration>| v.map_or("-".into(), |d| format!("{:.0}ms", ms(d)));
        let c = |v: Option<f64>| v.map_or("-".into(), |s| format!("{:.0}ms", s * 1000.0));
        let m = |v: Option<f64>| v.map_or("-".into(), |k| format!("{:.1}M", k / 1024.0));
        println!(
            "{rep:>3} {n:>5} {system:>6} {load1:>6}  {:>9} {:>9} {:>8}  {:>9} {:>9} {:>7}  {:>8} {:>8}",
            d(self.converged_from_first_join),
            d(self.converged_after_last_join),
            d(self.down),
            c(self.cpu_converge_mean_s),
            c(self.cpu_converge_seed_s),
            self.idle_cpu_pct
                .map_or("-".into(), |p| format!("{p:.3}")),
            m(self.rss_mean_kib),
            m(self.rss_max_kib),
        );
    }
}

/// A request to the node's own daemon, from a thread inside its namespace; changes over HTTPS
/// when `tls`, else over plain HTTP (a build from before the HTTPS listener).
fn http(method: &str, path: &str, body: &str, tls: bool) -> Option<(u16, String)> {
    common::local_http_via(
        method,
        path,
        body,
        Duration::from_secs(30),
        tls && method != "GET",
    )
}

/// How many members this node lists with `status`.
fn count(status: &str) -> usize {
    http("GET", "/v1/nodes", "", false)
        .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
        .and_then(|doc| {
            doc["nodes"]
                .as_array()
                .map(|a| a.iter().filter(|m| m["status"] == status).count())
        })
        .unwrap_or(0)
}

fn cpu(pids: &[u32]) -> Vec<f64> {
    pids.iter()
        .map(|&p| common::cpu_seconds(p).unwrap_or(f64::NAN))
        .collect()
}

fn rss(pids: &[u32]) -> Vec<u64> {
    pids.iter().map(|&p| common::rss_kib(p)).collect()
}

/// The mean over `pids` of a `/proc/PID/status` field in kB (`RssAnon:`, `RssFile:`).
fn status_kib_mean(pids: &[u32], field: &str) -> Option<f64> {
    let v: Option<Vec<u64>> = pids
        .iter()
        .map(|p| common::proc_kib(*p, "status", field))
        .collect();
    v.map(|v| v.iter().sum::<u64>() as f64 / v.len() as f64)
}

/// One system on `hosts`: daemons started, clustered, measured, killed, their files removed.
fn run(hosts: &[Netns], n: usize, sys: &System, idle: Duration) -> Figures {
    let mut f = Figures::default();
    let mut daemons = start_daemons(hosts, &sys.binary);
    let pids: Vec<u32> = daemons.iter().map(|d| d.child.id()).collect();
    // Does this build listen on HTTPS (changes go there), or take them over plain HTTP?
    let tls = hosts[0].run(|| {
        let to = std::net::SocketAddr::new("::1".parse().unwrap(), common::HTTPS_PORT);
        std::net::TcpStream::connect_timeout(&to, Duration::from_secs(2)).is_ok()
    });

    let cpu0 = cpu(&pids);
    let create = r#"{"action":"create_cluster","cluster":{"name":"bench"},"credentials":{"username":"admin","password":"correct horse"}}"#;
    let created = hosts[0].run(move || http("POST", "/v1/bootstrap/create_cluster", create, tls));
    if !matches!(created, Some((200, _))) {
        eprintln!(
            "{} {n} nodes: create_cluster answered {created:?}",
            sys.label
        );
        cleanup(hosts, daemons);
        return f;
    }

    // Every node polls its own view in its namespace; joins go out together.
    let seed = format!("2001:db8:{n:x}::1");
    let start = Instant::now();
    let watchers: Vec<_> = hosts
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            let seed = seed.clone();
            let label = sys.label;
            ns.spawn(move || {
                let mut joined_at = Instant::now();
                if i > 0 {
                    let join = format!(r#"{{"action":"join_cluster","cluster":{{"name":"bench","nodes":["{seed}"]}},"credentials":{{"username":"admin","password":"correct horse"}}}}"#);
                    let answer = http("POST", "/v1/bootstrap/join_cluster", &join, tls);
                    if !matches!(answer, Some((200, _))) {
                        eprintln!("{label} {n} nodes: join of node{} answered {answer:?}", i + 1);
                        return None;
                    }
                    joined_at = Instant::now();
                }
                while count("OK") < n {
                    if start.elapsed() > CONVERGE_LIMIT {
                        return None;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Some((joined_at, Instant::now()))
            })
        })
        .collect();
    let times: Option<Vec<(Instant, Instant)>> =
        watchers.into_iter().map(|w| w.join().unwrap()).collect();
    let cpu1 = cpu(&pids);
    let Some(times) = times else {
        eprintln!(
            "{} {n} nodes: not converged within {CONVERGE_LIMIT:?}",
            sys.label
        );
        cleanup(hosts, daemons);
        return f;
    };
    let last_join = times.iter().map(|t| t.0).max().unwrap();
    let converged = times.iter().map(|t| t.1).max().unwrap();
    f.converged_from_first_join = Some(converged - start);
    f.converged_after_last_join = Some(converged.saturating_duration_since(last_join));
    let used: Vec<f64> = cpu1.iter().zip(&cpu0).map(|(b, a)| b - a).collect();
    f.cpu_converge_mean_s = Some(used.iter().sum::<f64>() / n as f64);
    f.cpu_converge_seed_s = Some(used[0]);
    let rss_converged = rss(&pids);
    f.rss_mean_kib = Some(rss_converged.iter().sum::<u64>() as f64 / n as f64);
    f.rss_max_kib = rss_converged.iter().max().map(|&k| k as f64);
    f.rss_anon_mean_kib = status_kib_mean(&pids, "RssAnon:");
    f.rss_file_mean_kib = status_kib_mean(&pids, "RssFile:");

    // The idle window: nobody asks the daemons anything, they only gossip.
    let idle_start = Instant::now();
    let cpu2 = cpu(&pids);
    std::thread::sleep(idle);
    let cpu3 = cpu(&pids);
    let idle_secs = idle_start.elapsed().as_secs_f64();
    let idle_used: f64 = cpu3.iter().zip(&cpu2).map(|(b, a)| b - a).sum();
    f.idle_cpu_pct = Some(idle_used / n as f64 / idle_secs * 100.0);
    let rss_idle = rss(&pids);
    f.rss_idle_mean_kib = Some(rss_idle.iter().sum::<u64>() as f64 / n as f64);

    // kill -9 the last node; every survivor must see it DOWN.
    let victim = daemons.last_mut().unwrap();
    let killed = Instant::now();
    let _ = victim.child.kill();
    let _ = victim.child.wait();
    let watchers: Vec<_> = hosts[..n - 1]
        .iter()
        .map(|ns| {
            ns.spawn(move || {
                while count("DOWN") < 1 {
                    if killed.elapsed() > DOWN_LIMIT {
                        return None;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Some(Instant::now())
            })
        })
        .collect();
    let seen: Option<Vec<Instant>> = watchers.into_iter().map(|w| w.join().unwrap()).collect();
    match seen {
        Some(seen) => f.down = seen.into_iter().max().map(|t| t - killed),
        None => eprintln!(
            "{} {n} nodes: a survivor did not see DOWN within {DOWN_LIMIT:?}",
            sys.label
        ),
    }
    cleanup(hosts, daemons);
    f
}

/// Stops the daemons and removes their state, so the next system starts on clean hosts.
fn cleanup(hosts: &[Netns], daemons: Vec<common::serve::Daemon>) {
    drop(daemons);
    for ns in hosts {
        let _ = std::fs::remove_dir_all(ns.dir());
    }
}
