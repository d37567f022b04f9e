//! `cargo bench --bench cluster` (as root): gossip membership figures on real daemons, one network
//! namespace per node on a bridge, IPv6 only. Prints a table; asserts nothing.
//!
//! For 3, 10 and 30 nodes: time from the first join request until every node lists every other as
//! OK (and from the last join's answer), time until every survivor sees a `kill -9`ed node DOWN,
//! and the daemons' RSS.

#[path = "../tests/common/mod.rs"]
mod common;

use common::serve::start_nodes;
use common::Lan;
use std::time::{Duration, Instant};

fn main() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("the benchmark builds network namespaces: run it as root");
        std::process::exit(1);
    }
    // The daemons' own logs would drown the table.
    std::env::set_var("STACKRING_TEST_QUIET", "1");
    let mut rows = vec![];
    for n in [3usize, 10, 30] {
        rows.push((n, run(n)));
    }
    println!();
    println!(
        "stackring cluster benchmark ({} CPUs, IPv6-only namespaces on one bridge)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!(
        "{:>5}  {:>22}  {:>24}  {:>16}  {:>14}  {:>14}",
        "nodes",
        "converged (from join)",
        "converged (after joins)",
        "killed -> DOWN",
        "RSS mean",
        "RSS max"
    );
    for (n, f) in rows {
        println!(
            "{n:>5}  {:>19.0} ms  {:>21.0} ms  {:>13.0} ms  {:>10.1} MiB  {:>10.1} MiB",
            f.converged_from_first_join.as_secs_f64() * 1000.0,
            f.converged_after_last_join.as_secs_f64() * 1000.0,
            f.down.as_secs_f64() * 1000.0,
            f.rss_mean_kib / 1024.0,
            f.rss_max_kib as f64 / 1024.0,
        );
    }
    println!("targets: 30 nodes converged <= 3 s, DOWN <= 5 s, RSS <= 16 MiB per node");
}

struct Figures {
    converged_from_first_join: Duration,
    converged_after_last_join: Duration,
    down: Duration,
    rss_mean_kib: f64,
    rss_max_kib: u64,
}

/// A request to the node's own daemon, from a thread inside its namespace.
fn http(method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    common::local_http(method, path, body, Duration::from_secs(30))
}

/// How many members this node lists with `status`.
fn count(status: &str) -> usize {
    http("GET", "/v1/nodes", "")
        .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
        .and_then(|doc| {
            doc["nodes"]
                .as_array()
                .map(|a| a.iter().filter(|m| m["status"] == status).count())
        })
        .unwrap_or(0)
}

fn run(n: usize) -> Figures {
    let lan = Lan::new(&format!("bl{n}"));
    let (hosts, mut daemons) = start_nodes(&lan, &format!("{n:x}"), n);
    let create = r#"{"action":"create_cluster","cluster":{"name":"bench"},"credentials":{"username":"admin","password":"correct horse"}}"#;
    let (code, body) = hosts[0]
        .run(move || http("POST", "/v1/bootstrap/create_cluster", create))
        .unwrap();
    assert_eq!(code, 200, "{body}");

    // Every node polls its own view in its namespace; joins go out together.
    let seed = format!("2001:db8:{n:x}::1");
    let start = Instant::now();
    let watchers: Vec<_> = hosts
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            let seed = seed.clone();
            ns.spawn(move || {
                let mut joined_at = Instant::now();
                if i > 0 {
                    let join = format!(r#"{{"action":"join_cluster","cluster":{{"name":"bench","nodes":["{seed}"]}},"credentials":{{"username":"admin","password":"correct horse"}}}}"#);
                    let (code, body) = http("POST", "/v1/bootstrap/join_cluster", &join).unwrap();
                    assert_eq!(code, 200, "{body}");
                    joined_at = Instant::now();
                }
                while count("OK") < n {
                    std::thread::sleep(Duration::from_millis(10));
                }
                (joined_at, Instant::now())
            })
        })
        .collect();
    let times: Vec<(Instant, Instant)> = watchers.into_iter().map(|w| w.join().unwrap()).collect();
    let last_join = times.iter().map(|t| t.0).max().unwrap();
    let converged = times.iter().map(|t| t.1).max().unwrap();

    let rss: Vec<u64> = daemons
        .iter()
        .map(|d| common::rss_kib(d.child.id()))
        .collect();

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
                    std::thread::sleep(Duration::from_millis(10));
                }
                Instant::now()
            })
        })
        .collect();
    let down = watchers
        .into_iter()
        .map(|w| w.join().unwrap())
        .max()
        .unwrap()
        - killed;
    drop(daemons);
    Figures {
        converged_from_first_join: converged - start,
        converged_after_last_join: converged.saturating_duration_since(last_join),
        down,
        rss_mean_kib: rss.iter().sum::<u64>() as f64 / rss.len() as f64,
        rss_max_kib: *rss.iter().max().unwrap(),
    }
}
