//! A `stackring serve` under test, driven as systemd drives it: the test owns `NOTIFY_SOCKET`.

use super::*;
use serde_json::Value;
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running daemon and the notifications it has sent.
pub struct Daemon {
    pub child: Child,
    notes: mpsc::Receiver<(Instant, String)>,
    seen: Vec<String>,
    pub runtime_dir: std::path::PathBuf,
    pub state_dir: std::path::PathBuf,
    pub config: std::path::PathBuf,
}

impl Daemon {
    /// Starts `serve` with `yaml` plus this test's own `node.runtime_dir`/`node.state_dir`
    /// (so `yaml` must not have a `node:` section).
    pub fn start(ns: &Netns, yaml: &str, env: &[(&str, &str)]) -> Daemon {
        Daemon::start_via(ns, &[], STACKRING, yaml, env)
    }

    /// Starts `serve` again with the same files (a restart after a crash).
    pub fn restart(&self, ns: &Netns) -> Daemon {
        Daemon::launch(
            ns,
            self.config.clone(),
            self.runtime_dir.clone(),
            self.state_dir.clone(),
            &[],
        )
    }

    pub fn launch(
        ns: &Netns,
        config: std::path::PathBuf,
        runtime_dir: std::path::PathBuf,
        state_dir: std::path::PathBuf,
        env: &[(&str, &str)],
    ) -> Daemon {
        Daemon::launch_via(ns, &[], STACKRING, config, runtime_dir, state_dir, env)
    }

    /// Like `start`, with the daemon run through `wrapper` (e.g. `prlimit --nofile=1024:`, as
    /// systemd starts a unit without `LimitNOFILE=`) and from `binary` (another build, to measure
    /// a "before").
    pub fn start_via(
        ns: &Netns,
        wrapper: &[&str],
        binary: &str,
        yaml: &str,
        env: &[(&str, &str)],
    ) -> Daemon {
        Daemon::start_with_node_keys(ns, wrapper, binary, yaml, "", env)
    }

    /// `start_via` with more keys in the `node:` map (`node_keys`: e.g. `reachability_interval:
    /// 0, `, each followed by ", ").
    pub fn start_with_node_keys(
        ns: &Netns,
        wrapper: &[&str],
        binary: &str,
        yaml: &str,
        node_keys: &str,
        env: &[(&str, &str)],
    ) -> Daemon {
        let runtime_dir = ns.dir().join("run");
        let state_dir = ns.dir().join("state");
        let yaml = format!(
            "{yaml}\nnode: {{{node_keys}runtime_dir: '{}', state_dir: '{}'}}\n",
            runtime_dir.display(),
            state_dir.display()
        );
        let config = ns.write_config(&yaml);
        Daemon::launch_via(ns, wrapper, binary, config, runtime_dir, state_dir, env)
    }

    pub fn launch_via(
        ns: &Netns,
        wrapper: &[&str],
        binary: &str,
        config: std::path::PathBuf,
        runtime_dir: std::path::PathBuf,
        state_dir: std::path::PathBuf,
        env: &[(&str, &str)],
    ) -> Daemon {
        let socket_path = ns.dir().join(format!("notify-{}.sock", rand_suffix()));
        let socket = UnixDatagram::bind(&socket_path).unwrap();
        let (tx, notes) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                if tx.send((Instant::now(), text(&buf[..n]))).is_err() {
                    return;
                }
            }
        });
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = ns.command(program);
                c.args(args).arg(binary);
                c
            }
            None => ns.command(binary),
        };
        cmd.arg("--config").arg(&config).arg("serve");
        cmd.env("NOTIFY_SOCKET", &socket_path)
            .env("STACKRING_LOG", "stderr");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(if std::env::var_os("STACKRING_TEST_QUIET").is_some() {
                Stdio::null()
            } else {
                Stdio::inherit()
            })
            .spawn()
            .unwrap();
        Daemon {
            child,
            notes,
            seen: vec![],
            runtime_dir,
            state_dir,
            config,
        }
    }

    /// Waits for a notification containing `needle`; returns it.
    pub fn expect(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.notes.recv_timeout(left) {
                Ok((_, msg)) => {
                    self.seen.push(msg.clone());
                    if msg.lines().any(|l| l == needle || l.starts_with(needle)) {
                        return msg;
                    }
                }
                Err(_) => panic!(
                    "no notification {needle:?} within {timeout:?}; seen: {:#?}; the daemon {}",
                    self.seen,
                    match self.child.try_wait() {
                        Ok(Some(status)) => format!("exited ({status}): see its log above"),
                        Ok(None) => "still runs".to_string(),
                        Err(e) => format!("cannot be waited for: {e}"),
                    }
                ),
            }
        }
    }

    /// Asserts nothing containing `needle` arrives within `window`.
    pub fn expect_none(&mut self, needle: &str, window: Duration) {
        let deadline = Instant::now() + window;
        while let Ok((_, msg)) = self
            .notes
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            assert!(
                !msg.lines().any(|l| l.starts_with(needle)),
                "unexpected {needle:?}: {msg:?}"
            );
            self.seen.push(msg);
        }
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    pub fn env_file(&self) -> String {
        std::fs::read_to_string(self.runtime_dir.join("identity.env")).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` IPv6-only nodes on `2001:db8:<net>::<i>` (`net` a hex group, `i` written in hex), with
/// daemons named node1..node<n>, READY, not yet clustered.
pub fn start_nodes(lan: &Lan, net: &str, n: usize) -> (Vec<Netns>, Vec<Daemon>) {
    let hosts = start_hosts(lan, net, n);
    let daemons = start_daemons(&hosts, STACKRING);
    (hosts, daemons)
}

/// The hosts of `start_nodes`, without daemons.
pub fn start_hosts(lan: &Lan, net: &str, n: usize) -> Vec<Netns> {
    (1..=n)
        .map(|i| {
            lan.host(
                &format!("{net}n{i}"),
                &[&format!("2001:db8:{net}::{i:x}/64")],
            )
        })
        .collect()
}

/// The daemons of `start_nodes` from `binary` (this build, or another to compare with), one per
/// host, named node1..node<n>, READY, not yet clustered.
pub fn start_daemons(hosts: &[Netns], binary: &str) -> Vec<Daemon> {
    start_daemons_with(hosts, binary, "")
}

/// `start_daemons` with more keys in each node's `node:` map (see `start_with_node_keys`).
pub fn start_daemons_with(hosts: &[Netns], binary: &str, node_keys: &str) -> Vec<Daemon> {
    let mut daemons: Vec<Daemon> = hosts
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            Daemon::start_with_node_keys(
                ns,
                &[],
                binary,
                &format!("lifecycler: {{id: node{}}}", i + 1),
                node_keys,
                &[],
            )
        })
        .collect();
    // Thirty daemons starting at once on two cores take a while.
    for d in daemons.iter_mut() {
        d.expect("READY=1", Duration::from_secs(30));
    }
    daemons
}

pub fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        % 1_000_000_007
}

/// `GET path` on the daemon's HTTP port, from inside the namespace.
pub fn http_get(ns: &Netns, path: &str) -> (u16, String) {
    http_get_at(ns, "[::1]", path)
}

pub fn http_get_at(ns: &Netns, host: &str, path: &str) -> (u16, String) {
    let out = ns
        .command("curl")
        .args([
            "-s",
            "-g",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            &format!("http://{host}:3200{path}"),
        ])
        .output()
        .unwrap();
    let body = text(&out.stdout);
    let (body, code) = body.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

pub fn identity(ns: &Netns) -> Value {
    identity_at(ns, "[::1]")
}

pub fn identity_at(ns: &Netns, host: &str) -> Value {
    let (code, body) = http_get_at(ns, host, "/v1/identity");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// `stackring <args>` inside `ns` against the daemon `d` (its config, so its admin socket):
/// (exit code, stdout, stderr).
pub fn cli(ns: &Netns, d: &Daemon, args: &[&str]) -> (i32, String, String) {
    let out = ns
        .command(STACKRING)
        .arg("--config")
        .arg(&d.config)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}
