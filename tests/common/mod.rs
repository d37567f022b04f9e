//! Test hosts made of network namespaces: an RAII guard per namespace, veth "NICs", and ways to run
//! stackring (or any code) inside one. Needs root, as CI runs it.
#![allow(dead_code)]

pub mod serve;
pub mod tls;

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const STACKRING: &str = env!("CARGO_BIN_EXE_stackring");

/// The HTTPS port of the bootstrap and admin API (SPEC §8): every change and every credential
/// goes there; plain HTTP (3200) answers reads only.
pub const HTTPS_PORT: u16 = 9443;

/// The `curl` arguments that reach `path` on `host` for `method`: a change over HTTPS (`-k`: the
/// test trusts the node's certificate on first use, as an operator without its pin would), a
/// read over plain HTTP.
pub fn curl_target(method: &str, host: &str, path: &str) -> Vec<String> {
    if matches!(method, "GET" | "HEAD") {
        vec![format!("http://{host}:3200{path}")]
    } else {
        vec!["-k".into(), format!("https://{host}:{HTTPS_PORT}{path}")]
    }
}

/// `curl` inside `ns` (`curl_target`: changes over HTTPS, reads over HTTP); the status and the body
/// as JSON (a string when it is not JSON; status 0 when curl got no answer).
pub fn curl_json(
    ns: &Netns,
    method: &str,
    host: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut cmd = ns.command("curl");
    cmd.args(["-s", "-g", "-m", "20", "-X", method, "-w", "\n%{http_code}"])
        .args(["-H", "Content-Type: application/json"]);
    if let Some(b) = body {
        cmd.args(["--data-binary", b]);
    }
    cmd.args(curl_target(method, host, path));
    let out = cmd.output().unwrap();
    let text = text(&out.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(serde_json::Value::String(body.to_string())),
    )
}

/// `create_cluster` (no `seed`) or `join_cluster` through `seed` on the node in `ns`, with the
/// tests' credentials; panics unless it is answered 200.
pub fn bootstrap(ns: &Netns, action: &str, name: &str, seed: Option<&str>) {
    let mut cluster = serde_json::json!({ "name": name });
    if let Some(seed) = seed {
        cluster["nodes"] = serde_json::json!([seed]);
    }
    let body = serde_json::json!({
        "action": action,
        "cluster": cluster,
        "credentials": {"username": "admin", "password": "correct horse"},
        "node": {"identity": {}},
    });
    let (code, doc) = curl_json(
        ns,
        "POST",
        "[::1]",
        &format!("/v1/bootstrap/{action}"),
        Some(&body.to_string()),
    );
    assert_eq!(code, 200, "{action} on {}: {doc}", ns.name);
}

/// Permanent neighbour entries between every pair of `(host, its address)`. The kernel's IPv6
/// neighbour table is one for every namespace on the machine, and a busy machine (another run
/// with a hundred namespaces) fills it: new entries then fail ("ndisc_cache: neighbor table
/// overflow!"), connects count as `Ip6OutNoRoutes` and joins time out. Permanent entries do not
/// count against that limit (`gc_thresh3`).
pub fn pin_neighbours(hosts: &[(&Netns, String)]) {
    let mac = |ns: &Netns| {
        let out = Command::new("ip")
            .args(["-n", &ns.name, "-br", "link", "show", "eth0"])
            .output()
            .unwrap();
        text(&out.stdout)
            .split_whitespace()
            .nth(2)
            .expect("eth0 has a MAC address")
            .to_string()
    };
    let macs: Vec<(String, &str)> = hosts.iter().map(|(ns, a)| (mac(ns), a.as_str())).collect();
    for (ns, _) in hosts {
        for (lladdr, addr) in &macs {
            ns.ip(&format!(
                "neigh replace {addr} lladdr {lladdr} dev eth0 nud permanent"
            ));
        }
    }
}

/// A raw HTTP/1.1 request to the daemon of the namespace the calling thread is in: reads over
/// plain HTTP (answer within `timeout`), changes over HTTPS (plain HTTP refuses them). The status
/// and the body; None when there is no answer.
pub fn local_http(
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Option<(u16, String)> {
    local_http_via(method, path, body, timeout, method != "GET")
}

/// `local_http` with the transport chosen by the caller: `tls` sends the request to the HTTPS
/// port, otherwise to plain HTTP (builds from before the HTTPS listener take changes there).
pub fn local_http_via(
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
    tls: bool,
) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let request = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let out = if !tls {
        let addr = "[::1]:3200".parse().unwrap();
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(timeout)).ok()?;
        s.write_all(request.as_bytes()).ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        out
    } else {
        let to = std::net::SocketAddr::new("::1".parse().unwrap(), HTTPS_PORT);
        String::from_utf8(tls::exchange(to, &request).ok()?.0).ok()?
    };
    let (head, body) = out.split_once("\r\n\r\n")?;
    Some((
        head.split_whitespace().nth(1)?.parse().ok()?,
        body.to_string(),
    ))
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A network namespace that exists for the life of the value (and its `/etc/netns/NAME` folder).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let name = format!("sr{}-{}-{tag}", std::process::id() % 100000, n);
        assert!(name.len() < 32, "netns name too long: {name}");
        sh(&format!("ip netns add {name}"));
        let ns = Netns { name };
        ns.ip("link set lo up");
        // A prepared host, as Debian installs it: both localhost lines (Redis Enterprise:
        // "/etc/hosts on each node in the cluster must include ... ::1 localhost"). Tests of
        // an unprepared host replace it with `set_hosts`.
        ns.set_hosts("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
        ns
    }

    /// `ip -n NAME <args>`, panicking with its stderr on failure.
    pub fn ip(&self, args: &str) {
        sh(&format!("ip -n {} {args}", self.name));
    }

    pub fn sysctl(&self, setting: &str) {
        sh(&format!("ip netns exec {} sysctl -qw {setting}", self.name));
    }

    /// Another handle on this namespace, for a thread; dropping it does not delete the namespace.
    pub fn alias(&self) -> std::mem::ManuallyDrop<Netns> {
        std::mem::ManuallyDrop::new(Netns {
            name: self.name.clone(),
        })
    }

    /// A veth pair inside this namespace, both ends up: `name` is the test NIC, `name`p its peer.
    pub fn nic(&self, name: &str) -> &Netns {
        self.ip(&format!("link add {name} type veth peer name {name}p"));
        self.ip(&format!("link set {name}p up"));
        self.ip(&format!("link set {name} up"));
        self
    }

    /// Adds an address without DAD (so it is usable at once).
    pub fn addr(&self, cidr: &str, dev: &str) -> &Netns {
        self.ip(&format!("addr add {cidr} dev {dev} nodad"));
        self
    }

    /// Loads an nftables ruleset (`nft -f -`) in the namespace; panics, showing it, when nft
    /// refuses it.
    pub fn nft(&self, ruleset: &str) {
        use std::io::Write;
        let mut nft = self
            .command("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("nft");
        nft.stdin
            .take()
            .unwrap()
            .write_all(ruleset.as_bytes())
            .unwrap();
        assert!(nft.wait().unwrap().success(), "nft refused:\n{ruleset}");
    }

    /// A command run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// `stackring <args>` inside the namespace, with a config (YAML text) in a temp file.
    pub fn stackring(&self, config: &str, args: &[&str]) -> Output {
        let cfg = self.write_config(config);
        let mut c = self.command(STACKRING);
        c.arg("--config").arg(&cfg).args(args);
        c.env("STACKRING_LOG", "stderr");
        c.output().expect("run stackring")
    }

    /// `inspect --json` parsed, with the exit code.
    pub fn inspect(&self, config: &str) -> (i32, serde_json::Value) {
        let out = self.stackring(config, &["inspect", "--json"]);
        let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "inspect output is not JSON ({e}): {}\n{}",
                text(&out.stdout),
                text(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), doc)
    }

    pub fn dir(&self) -> PathBuf {
        let d = std::env::temp_dir().join(format!("stackring-test-{}", self.name));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    pub fn write_config(&self, yaml: &str) -> PathBuf {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let path = self.dir().join(format!("config-{n}.yaml"));
        std::fs::write(&path, yaml).unwrap();
        path
    }

    /// The hosts file `ip netns exec` shows this namespace as `/etc/hosts`.
    pub fn hosts_path(&self) -> PathBuf {
        PathBuf::from(format!("/etc/netns/{}/hosts", self.name))
    }

    pub fn set_hosts(&self, text: &str) {
        let path = self.hosts_path();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// Runs `f` on a thread that has entered this namespace (setns affects only the calling thread).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.spawn(f).join().expect("thread in namespace panicked")
    }

    /// Like `run`, without waiting for the thread.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open netns");
            // SAFETY: setns on a valid namespace fd; affects only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.name));
        let _ = std::fs::remove_dir_all(
            std::env::temp_dir().join(format!("stackring-test-{}", self.name)),
        );
    }
}

/// A LAN: a namespace holding a bridge; nodes are namespaces with `eth0` plugged into it.
pub struct Lan {
    pub ns: Netns,
    ports: std::cell::Cell<u32>,
}

impl Lan {
    pub fn new(tag: &str) -> Lan {
        let ns = Netns::new(tag);
        ns.ip("link add br0 type bridge");
        ns.ip("link set br0 up");
        Lan {
            ns,
            ports: std::cell::Cell::new(0),
        }
    }

    /// A node namespace on this LAN with the given addresses (no DAD: usable at once).
    pub fn host(&self, tag: &str, cidrs: &[&str]) -> Netns {
        let node = Netns::new(tag);
        let n = self.ports.get();
        self.ports.set(n + 1);
        let port = format!("p{n}");
        node.ip(&format!(
            "link add eth0 type veth peer name {port} netns {}",
            self.ns.name
        ));
        self.ns.ip(&format!("link set {port} master br0"));
        self.ns.ip(&format!("link set {port} up"));
        node.ip("link set eth0 up");
        for cidr in cidrs {
            node.addr(cidr, "eth0");
        }
        node
    }
}

/// Resident set size of a process, in KiB (VmRSS).
pub fn rss_kib(pid: u32) -> u64 {
    proc_kib(pid, "status", "VmRSS:").unwrap()
}

/// A `kB` field of a `/proc/PID/` file (`status`'s `VmRSS:` or `RssAnon:`, `smaps_rollup`'s
/// `Pss:`); None when the process or the field is gone.
pub fn proc_kib(pid: u32, file: &str, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// CPU time a process has used (utime + stime of `/proc/PID/stat`, every thread, living or
/// exited), in seconds; None once it is gone.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: count fields after the last `)`, whose
    // first is field 3 (state); utime and stime are fields 14 and 15.
    let f: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks as f64 / hz)
}

pub fn sh(cmd: &str) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
