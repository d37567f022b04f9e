//! `cargo bench --bench agent` (as root): figures for the host identity agent, each compared with a
//! peer in the same run where there is one. Prints a table; it asserts nothing (machines are noisy).
//!
//! 1. `stackring inspect --json` against `ip -j addr show` on a namespace with 5,000 addresses,
//!    interleaved, ratio of medians.
//! 2. start → `READY=1` (sd_notify datagram) median.
//! 3. address change (netlink request sent) → `identity.env` rewritten: p50 / p99.
//! 4. RSS of the daemon after `READY=1`.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Netns, STACKRING};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ADDRESSES: usize = 5000;
const INSPECT_ROUNDS: usize = 21;
const READY_ROUNDS: usize = 15;
const CHANGE_ROUNDS: usize = 200;

fn main() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("the benchmark builds network namespaces: run it as root");
        std::process::exit(1);
    }
    let (inspect_ms, ip_ms, instructions) = inspect_vs_ip();
    let ready = start_to_ready();
    let (tmpfs_p50, tmpfs_p99, rss_kib) = change_to_env(true);
    let (disk_p50, disk_p99, _) = change_to_env(false);

    println!();
    println!(
        "stackring agent benchmark ({} CPUs)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!("{:<62} {:>12} {:>10}", "figure", "value", "target");
    let row =
        |name: String, value: String, target: &str| println!("{name:<62} {value:>12} {target:>10}");
    row(
        format!("inspect --json, {ADDRESSES} addresses (median of {INSPECT_ROUNDS})"),
        format!("{inspect_ms:.2} ms"),
        "",
    );
    row(
        format!("ip -j addr show, same namespace (median of {INSPECT_ROUNDS})"),
        format!("{ip_ms:.2} ms"),
        "",
    );
    row(
        "ratio of medians, inspect / ip".into(),
        format!("{:.2}", inspect_ms / ip_ms),
        "<= 1.0",
    );
    if let Some((ours, theirs)) = instructions {
        row(
            "instructions (callgrind), inspect / ip".into(),
            format!("{:.1}M / {:.1}M", ours as f64 / 1e6, theirs as f64 / 1e6),
            "",
        );
        row(
            "ratio of instructions, inspect / ip".into(),
            format!("{:.2}", ours as f64 / theirs as f64),
            "<= 1.0",
        );
    }
    row(
        format!("start -> READY=1 (median of {READY_ROUNDS})"),
        format!("{ready:.2} ms"),
        "<= 100 ms",
    );
    row(
        "address change -> identity.env on tmpfs (like /run), p50".to_string(),
        format!("{tmpfs_p50:.2} ms"),
        "",
    );
    row(
        "address change -> identity.env on tmpfs (like /run), p99".to_string(),
        format!("{tmpfs_p99:.2} ms"),
        "<= 20 ms",
    );
    row(
        "address change -> identity.env on ext4, p50".to_string(),
        format!("{disk_p50:.2} ms"),
        "",
    );
    row(
        "address change -> identity.env on ext4, p99".to_string(),
        format!("{disk_p99:.2} ms"),
        "<= 20 ms",
    );
    row(
        "daemon RSS after READY=1".into(),
        format!("{:.1} MiB", rss_kib as f64 / 1024.0),
        "<= 16 MiB",
    );
}

/// Instructions retired by a command under callgrind (repeatable on a noisy machine), if valgrind is here.
fn instructions(program: &str, args: &[&str]) -> Option<u64> {
    let out = Command::new("valgrind")
        .args([
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            program,
        ])
        .args(args)
        .stdout(Stdio::null())
        .output()
        .ok()?;
    let err = String::from_utf8_lossy(&out.stderr);
    err.lines()
        .find_map(|l| l.split("Collected :").nth(1))
        .and_then(|n| n.trim().parse().ok())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Both commands run from a thread inside the namespace (children inherit it), so neither pays for
/// `ip netns exec`. Output goes to /dev/null: both are measured producing all of it.
fn inspect_vs_ip() -> (f64, f64, Option<(u64, u64)>) {
    let ns = Netns::new("bench5k");
    ns.nic("eth0");
    let batch: String = (1..=ADDRESSES)
        .map(|i| format!("addr add 2001:db8:1:0:1::{i:x}/64 dev eth0 nodad\n"))
        .collect();
    let file = ns.dir().join("batch");
    std::fs::write(&file, batch).unwrap();
    ns.ip(&format!("-batch {}", file.display()));
    let config = ns.write_config("");
    ns.run(move || {
        let run = |program: &str, args: &[&str]| {
            let start = Instant::now();
            let status = Command::new(program)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "{program} {args:?} failed");
            ms(start.elapsed())
        };
        let config = config.to_str().unwrap().to_string();
        let (mut ours, mut theirs) = (vec![], vec![]);
        for round in 0..INSPECT_ROUNDS + 1 {
            let a = run(STACKRING, &["--config", &config, "inspect", "--json"]);
            let b = run("ip", &["-j", "addr", "show"]);
            if round > 0 {
                // the first round warms the page cache for both binaries
                ours.push(a);
                theirs.push(b);
            }
        }
        let counted = instructions(STACKRING, &["--config", &config, "inspect", "--json"])
            .zip(instructions("ip", &["-j", "addr", "show"]));
        (median(ours), median(theirs), counted)
    })
}

/// A daemon started as systemd would, with a reader on its notify socket (as systemd reads it).
struct Served {
    child: std::process::Child,
    notes: std::sync::mpsc::Receiver<String>,
}

impl Served {
    fn start(ns: &Netns, config: &std::path::Path, tag: usize) -> (Served, Instant) {
        let path = ns.dir().join(format!("notify-{tag}.sock"));
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).unwrap();
        let (tx, notes) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                if tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .is_err()
                {
                    return;
                }
            }
        });
        let mut cmd = Command::new(STACKRING);
        cmd.arg("--config")
            .arg(config)
            .arg("serve")
            .env("NOTIFY_SOCKET", &path)
            .env("STACKRING_LOG", "stderr");
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let started = Instant::now();
        let child = ns.run(move || cmd.spawn().unwrap());
        (Served { child, notes }, started)
    }

    fn wait_ready(&self) -> Instant {
        loop {
            let note = self
                .notes
                .recv_timeout(Duration::from_secs(10))
                .expect("READY=1 within 10 s");
            if note.lines().any(|l| l == "READY=1") {
                return Instant::now();
            }
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_to_ready() -> f64 {
    let ns = Netns::new("benchready");
    ns.nic("eth0").addr("2001:db8:2::5/64", "eth0");
    let run_dir = ns.dir().join("run");
    let config = ns.write_config(&format!("node: {{runtime_dir: '{}'}}\n", run_dir.display()));
    let mut times = vec![];
    for round in 0..READY_ROUNDS {
        let (served, started) = Served::start(&ns, &config, round);
        let ready = served.wait_ready();
        times.push(ms(ready - started));
        drop(served);
    }
    median(times)
}

/// Adds an address (changing the external address list) with a netlink request from inside the
/// namespace, and times until identity.env names it. Returns p50, p99 (ms) and RSS (KiB).
fn change_to_env(tmpfs: bool) -> (f64, f64, u64) {
    let ns = Netns::new("benchchange");
    ns.nic("eth0").addr("2001:db8:3::5/64", "eth0");
    let run_dir = if tmpfs {
        std::path::PathBuf::from(format!("/dev/shm/stackring-bench-{}", std::process::id()))
    } else {
        ns.dir().join("run")
    };
    let env_path = run_dir.join("identity.env");
    let config = ns.write_config(&format!("node: {{runtime_dir: '{}'}}\n", run_dir.display()));
    let (served, _) = Served::start(&ns, &config, 0);
    served.wait_ready();
    std::thread::sleep(Duration::from_millis(200));
    let rss_kib = common::rss_kib(served.child.id());
    let times = ns.run(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (conn, handle, _) = rtnetlink::new_connection().unwrap();
            tokio::spawn(conn);
            let index = {
                use futures::TryStreamExt;
                let mut links = handle.link().get().match_name("eth0".to_string()).execute();
                links.try_next().await.unwrap().unwrap().header.index
            };
            let mut times = vec![];
            for i in 1..=CHANGE_ROUNDS {
                let ip: std::net::IpAddr = format!("2001:db8:3::1:{i:x}").parse().unwrap();
                let needle = format!("{ip}");
                let mut req = handle.address().add(index, ip, 64);
                req.message_mut().header.flags =
                    rtnetlink::packet_route::address::AddressHeaderFlags::Nodad;
                let start = Instant::now();
                req.execute().await.unwrap();
                loop {
                    let text = std::fs::read_to_string(&env_path).unwrap_or_default();
                    let named = text.lines().any(|l| {
                        l.strip_prefix("STACKRING_EXTERNAL_ADDRS=")
                            .is_some_and(|v| v.trim_matches('"').split(' ').any(|a| a == needle))
                    });
                    if named {
                        break;
                    }
                    if start.elapsed() > Duration::from_secs(5) {
                        panic!("identity.env never named {needle}:\n{text}");
                    }
                    tokio::time::sleep(Duration::from_micros(100)).await;
                }
                times.push(ms(start.elapsed()));
            }
            times
        })
    });
    drop(served);
    (
        percentile(times.clone(), 0.5),
        percentile(times, 0.99),
        rss_kib,
    )
}
