//! The files and host facts the pure rules are about, read and written here: the config file and
//! the credentials file it names, the host readings preflight judges (ports probed by binding,
//! `/etc/hosts`), and the byte-preserving `/etc/hosts` fix.

use crate::core::cluster;
use crate::core::config::DeclaredSecret;
use crate::core::config::{parse_str, parse_str_on, ConfigError, ConfigErrors, Settings};
use crate::core::decide::{decide, server_listen, Context};
use crate::core::net::HostAddrs;
use crate::core::preflight::{hosts_fix, wanted_family, Check, Inputs};
use crate::core::snapshot::{Family, HostSnapshot};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::Path;

/// Reads and validates a config file. A missing file at the default path means "all defaults";
/// a missing file named explicitly is an error. An invalid file is judged again with the host's
/// usable addresses read (only then), so that a fix can suggest one the host has.
pub(crate) fn load(
    path: &Path,
    explicit: bool,
    default_id: &str,
) -> Result<Settings, ConfigErrors> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_str(&text, default_id).map_err(|errors| {
            match crate::agent::netlink::usable_addrs_now() {
                Some(addrs) => parse_str_on(&text, default_id, HostAddrs::Known(&addrs))
                    .err()
                    .unwrap_or(errors),
                None => errors,
            }
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            parse_str("", default_id)
        }
        Err(e) => Err(ConfigErrors(vec![ConfigError {
            key: "--config".into(),
            value: path.display().to_string(),
            problem: format!("cannot be read ({e})"),
            fix: "point --config at a readable YAML file".into(),
        }])),
    }
}

/// [`load`], then the files the configuration names (what `config validate` and `serve` check
/// alike; the pure parser reads no files): `cluster.credentials_file` must exist, be readable and
/// hold one `username:password` line. Commands that only talk to the daemon (`status`, `node`,
/// `wait`) use [`load`]: they run without root and need no credentials.
pub(crate) fn load_checked(
    path: &Path,
    explicit: bool,
    default_id: &str,
) -> Result<Settings, ConfigErrors> {
    let settings = load(path, explicit, default_id)?;
    let errors = check_files(&settings);
    if errors.is_empty() {
        Ok(settings)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// The file checks of [`load_checked`].
pub(crate) fn check_files(settings: &Settings) -> Vec<ConfigError> {
    let Some(declared) = &settings.cluster else {
        return vec![];
    };
    let path = declared.secret.path();
    let error = |problem: String, fix: &str| ConfigError {
        key: declared.secret.key().into(),
        value: format!(
            "'{}'",
            crate::core::config::echo(&path.display().to_string())
        ),
        problem,
        fix: fix.into(),
    };
    let what = match declared.secret {
        DeclaredSecret::CredentialsFile(_) => "one line 'username:password'",
        DeclaredSecret::JoinTokenFile(_) => "the token `stackring cluster join-token` printed",
    };
    match std::fs::read_to_string(path) {
        Ok(text) => match declared.secret.parse(&text) {
            Ok(proof) => match cluster::declared_request(declared, proof, vec![]) {
                Ok(_) => vec![],
                Err(problem) => vec![error(problem, "see the problem")],
            },
            Err(problem) => {
                let (problem, fix) = problem.split_once("; fix: ").unwrap_or((&problem, ""));
                vec![error(problem.into(), fix)]
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![error(
            "does not exist".into(),
            &format!("create it with {what} (mode 0600), or correct the path"),
        )],
        Err(e) => vec![error(
            format!("cannot be read ({e})"),
            "make it a regular file readable by the service (root), mode 0600",
        )],
    }
}

/// Reads the host for preflight, without probing ports (what the running daemon checks at start:
/// its own ports are taken by itself).
pub(crate) fn gather_without_ports(
    settings: &Settings,
    snapshot: HostSnapshot,
    hosts_path: &Path,
    cluster_family: Option<Family>,
) -> Inputs {
    let mut inputs = gather_inner(settings, snapshot, hosts_path, cluster_family, false);
    inputs.ports_in_use.clear();
    inputs
}

/// Reads the host for preflight. Ports are probed by binding them briefly.
pub(crate) fn gather(
    settings: &Settings,
    snapshot: HostSnapshot,
    hosts_path: &Path,
    cluster_family: Option<Family>,
) -> Inputs {
    gather_inner(settings, snapshot, hosts_path, cluster_family, true)
}

fn gather_inner(
    settings: &Settings,
    snapshot: HostSnapshot,
    hosts_path: &Path,
    cluster_family: Option<Family>,
    probe_ports: bool,
) -> Inputs {
    let ipv6_disabled = snapshot.ipv6_disabled;
    let decision = decide(
        &snapshot,
        settings,
        Context {
            cluster_family,
            previous: None,
        },
    );
    let family = match &decision {
        Ok(id) => id.family,
        Err(_) => wanted_family(settings, &decision).unwrap_or(Family::Ipv6),
    };
    let mut ports_in_use = Vec::new();
    for (name, addr, udp_too) in [
        (
            "grpc",
            server_listen(&snapshot, settings.grpc.address, settings.grpc.port),
            false,
        ),
        (
            "http",
            server_listen(&snapshot, settings.http.address, settings.http.port),
            false,
        ),
        (
            "https",
            server_listen(&snapshot, settings.http.address, settings.https_port),
            false,
        ),
        (
            "gossip",
            SocketAddr::new(
                settings.gossip.address.unwrap_or(family.unspecified()),
                settings.gossip.port,
            ),
            true,
        ),
    ]
    .into_iter()
    .filter(|_| probe_ports)
    {
        let taken = |e: std::io::Error| e.kind() == std::io::ErrorKind::AddrInUse;
        let tcp = std::net::TcpListener::bind(addr).err().is_some_and(taken);
        let udp = udp_too && std::net::UdpSocket::bind(addr).err().is_some_and(taken);
        if tcp || udp {
            ports_in_use.push((name, addr));
        }
    }
    Inputs {
        clock: read_clock(),
        hosts_path: hosts_path.display().to_string(),
        hosts_text: std::fs::read_to_string(hosts_path).ok(),
        ipv6_disabled,
        snapshot,
        ports_in_use,
        cluster_family,
    }
}

/// `--fix`: adds the missing localhost lines to the hosts file. Returns the codes it fixed.
pub(crate) fn fix_hosts(inputs: &Inputs, checks: &[Check]) -> io::Result<Vec<&'static str>> {
    let Some(original) = inputs.hosts_text.as_deref() else {
        return Ok(vec![]);
    };
    match hosts_fix(inputs, checks) {
        Some((fixed, codes)) => {
            write_fixed(Path::new(&inputs.hosts_path), original, &fixed)?;
            Ok(codes)
        }
        None => Ok(vec![]),
    }
}

/// Writes the fixed file. Atomically (temp + rename) where possible; when `path` is a mount point
/// (containers and `ip netns exec` bind-mount a hosts file over it, so rename fails with EBUSY), the
/// missing lines are appended in one `write` instead, which readers see whole or not at all.
pub(crate) fn write_fixed(path: &Path, original: &str, fixed: &str) -> io::Result<()> {
    let mode = std::fs::metadata(path)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
        .unwrap_or(0o644);
    match crate::agent::fsutil::write_atomic(path, fixed.as_bytes(), mode) {
        Err(e)
            if e.raw_os_error() == Some(libc::EBUSY) || e.raw_os_error() == Some(libc::EXDEV) =>
        {
            let addition = &fixed.as_bytes()[original.len()..];
            let mut file = std::fs::OpenOptions::new().append(true).open(path)?;
            file.write_all(addition)?;
            file.sync_all()
        }
        other => other,
    }
}

/// The system clock's synchronisation, from the kernel (`adjtimex` with no change: a read).
/// Created by systemd-timesyncd once it has synchronised the clock (systemd 239 and later).
const TIMESYNCD_SYNCHRONIZED: &str = "/run/systemd/timesync/synchronized";

pub(crate) fn read_clock() -> crate::core::preflight::Clock {
    use crate::core::preflight::{Clock, MAX_SYNCED_ERROR_US};
    // SAFETY: `timex` is plain data; modes = 0 asks adjtimex to read only.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 {
        let error = io::Error::last_os_error();
        // Under systemd's ProtectClock= (the agent's unit) adjtimex is filtered even to read;
        // systemd-timesyncd then still says it: it creates this file once it has synchronised.
        if error.raw_os_error() == Some(libc::EPERM) && Path::new(TIMESYNCD_SYNCHRONIZED).exists() {
            return Clock::Synchronized;
        }
        return Clock::Unknown(format!(
            "adjtimex: {error}; and no {TIMESYNCD_SYNCHRONIZED} (systemd-timesyncd writes it once synchronised)"
        ));
    }
    // systemd's rule (`ntp_synced()`): the maximum error alone; STA_UNSYNC may be set only to
    // keep the kernel from writing the RTC.
    if tx.maxerror >= MAX_SYNCED_ERROR_US {
        Clock::Unsynchronized {
            maxerror_us: tx.maxerror,
        }
    } else {
        Clock::Synchronized
    }
}
