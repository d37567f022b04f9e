//! Preflight: is the host prepared for the identity stackring would decide? (SPEC §4)
//!
//! `gather` reads the host (hosts file, sysctl, sockets); `evaluate` is pure and turns what was
//! read into checks with stable codes, so scripts and the unit's `ExecStartPre=` can rely on them.

use crate::core::config::Settings;
use crate::core::decide::{
    decide, is_site_local, usability, Context, Identity, NotReady, Unusable,
};
use crate::core::hosts;
use crate::core::snapshot::{Family, HostSnapshot};
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Outcome {
    Pass,
    Fail,
    /// Failed, then repaired by `--fix`.
    Fixed,
    /// Does not apply to this configuration.
    Skip,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Check {
    pub(crate) code: &'static str,
    pub(crate) severity: Severity,
    pub(crate) result: Outcome,
    pub(crate) message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) fix: Option<String>,
}

impl Check {
    pub(crate) fn is_error(&self) -> bool {
        self.severity == Severity::Error && self.result == Outcome::Fail
    }
}

/// Everything preflight looks at, read from the host by `gather`.
#[derive(Debug, Clone)]
pub(crate) struct Inputs {
    pub(crate) hosts_path: String,
    /// `None` when the file cannot be read.
    pub(crate) hosts_text: Option<String>,
    /// `net.ipv6.conf.all.disable_ipv6`, or IPv6 absent from the kernel.
    pub(crate) ipv6_disabled: bool,
    pub(crate) snapshot: HostSnapshot,
    /// Listen sockets that could not be bound because the port is taken.
    pub(crate) ports_in_use: Vec<(&'static str, SocketAddr)>,
    /// The family of the cluster this node belongs to, if it does.
    pub(crate) cluster_family: Option<Family>,
    /// What the kernel says of the system clock's synchronisation.
    pub(crate) clock: Clock,
}

/// The kernel's view of the system clock (`adjtimex`), as `timedatectl`'s `NTPSynchronized` reads
/// it: synchronised while a time daemon keeps the kernel's maximum error under 16 s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Clock {
    Synchronized,
    /// `maxerror_us`: the kernel's estimate of the maximum error, in microseconds.
    Unsynchronized {
        maxerror_us: i64,
    },
    /// The kernel could not be asked (the error).
    Unknown(String),
}

/// The kernel's limit for a synchronised clock (NTP's `MAXPHASE`-based 16 s, as systemd uses).
pub(crate) const MAX_SYNCED_ERROR_US: i64 = 16_000_000;

/// The family preflight judges against: the decided one, else what the config asks for.
pub(crate) fn wanted_family(
    settings: &Settings,
    decision: &Result<Identity, NotReady>,
) -> Option<Family> {
    match decision {
        Ok(id) => Some(id.family),
        Err(_) if settings.use_internal_ipv6 => Some(Family::Ipv6),
        Err(_) => settings.explicit_family().map(|f| f.0),
    }
}

pub(crate) fn evaluate(settings: &Settings, inputs: &Inputs) -> Vec<Check> {
    let ctx = Context {
        cluster_family: inputs.cluster_family,
        previous: None,
    };
    let decision = decide(&inputs.snapshot, settings, ctx);
    let family = wanted_family(settings, &decision);
    let mut checks = Vec::new();

    let hosts = inputs.hosts_text.as_deref();
    for (code, ip, line, error_when) in [
        (
            "hosts.ipv6_localhost",
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            hosts::IPV6_LOCALHOST_LINE,
            Some(Family::Ipv6),
        ),
        (
            "hosts.ipv4_localhost",
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            hosts::IPV4_LOCALHOST_LINE,
            None,
        ),
    ] {
        let severity = if error_when.is_some() && error_when == family {
            Severity::Error
        } else {
            Severity::Warning
        };
        let ok = hosts.is_some_and(|text| hosts::maps(text, ip, "localhost"));
        checks.push(Check {
            code,
            severity,
            result: if ok { Outcome::Pass } else { Outcome::Fail },
            message: if ok {
                format!("{} maps {ip} to localhost", inputs.hosts_path)
            } else if hosts.is_none() {
                format!("{} cannot be read", inputs.hosts_path)
            } else {
                format!("{} does not map {ip} to localhost: services resolving 'localhost' may not reach {ip}", inputs.hosts_path)
            },
            fix: (!ok).then(|| format!("run `stackring preflight --fix`, or add the line '{}'", line.replace('\t', " "))),
        });
    }

    let ipv6_wanted = family == Some(Family::Ipv6);
    checks.push(Check {
        code: "ipv6.disabled",
        severity: if ipv6_wanted { Severity::Error } else { Severity::Warning },
        result: if inputs.ipv6_disabled { Outcome::Fail } else { Outcome::Pass },
        message: if inputs.ipv6_disabled {
            "IPv6 is disabled in the kernel (net.ipv6.conf.all.disable_ipv6=1 or ipv6.disable=1)".into()
        } else {
            "IPv6 is enabled in the kernel".into()
        },
        fix: inputs.ipv6_disabled.then(|| "set net.ipv6.conf.all.disable_ipv6=0 (sysctl) and remove ipv6.disable=1 from the kernel command line".into()),
    });

    checks.push(match settings.internal_addr {
        None => Check {
            code: "addr.not_bound",
            severity: Severity::Error,
            result: Outcome::Skip,
            message: "no internal address is pinned (node.addr): it is chosen from the host".into(),
            fix: None,
        },
        Some(pinned) => {
            let found: Vec<_> = inputs
                .snapshot
                .addresses
                .values()
                .filter(|a| a.ip == pinned)
                .collect();
            let bound = found.iter().any(|a| {
                matches!(
                    usability(&inputs.snapshot, a),
                    Ok(()) | Err(Unusable::Tentative)
                )
            });
            Check {
                code: "addr.not_bound",
                severity: Severity::Error,
                result: if bound { Outcome::Pass } else { Outcome::Fail },
                message: if bound {
                    format!("node.addr {pinned} is bound to an active interface")
                } else if found.is_empty() {
                    format!("node.addr {pinned} is not bound to any interface of this host")
                } else {
                    format!("node.addr {pinned} is bound, but its interface is not active")
                },
                fix: (!bound).then(|| {
                    format!("add {pinned} to an interface that is up, or change node.addr")
                }),
            }
        }
    });

    let tentative: Vec<String> = inputs
        .snapshot
        .addresses
        .values()
        .filter(|a| {
            // Link-local addresses are never internal: their DAD is not worth a warning.
            a.tentative()
                && !a.dad_failed()
                && !crate::core::net::is_link_local(&a.ip)
                && Some(a.family()) == family.or(Some(Family::Ipv6))
        })
        .map(|a| a.ip.to_string())
        .collect();
    checks.push(Check {
        code: "addr.tentative",
        severity: Severity::Warning,
        result: if tentative.is_empty() {
            Outcome::Pass
        } else {
            Outcome::Fail
        },
        message: if tentative.is_empty() {
            "no address is waiting for duplicate address detection".into()
        } else {
            format!(
                "duplicate address detection has not finished for {} (the daemon waits for it)",
                tentative.join(", ")
            )
        },
        fix: (!tentative.is_empty())
            .then(|| "wait a few seconds; DAD takes about dad_transmits × retrans_time".into()),
    });

    let dad_failed: Vec<String> = inputs
        .snapshot
        .addresses
        .values()
        .filter(|a| a.dad_failed())
        .map(|a| a.ip.to_string())
        .collect();
    let pinned_failed = settings
        .internal_addr
        .is_some_and(|p| dad_failed.contains(&p.to_string()));
    checks.push(Check {
        code: "addr.dadfailed",
        severity: if pinned_failed {
            Severity::Error
        } else {
            Severity::Warning
        },
        result: if dad_failed.is_empty() {
            Outcome::Pass
        } else {
            Outcome::Fail
        },
        message: if dad_failed.is_empty() {
            "no address failed duplicate address detection".into()
        } else {
            format!(
                "another host on the link already uses {} (duplicate address detection failed)",
                dad_failed.join(", ")
            )
        },
        fix: (!dad_failed.is_empty()).then(|| {
            "give this host another address, then remove the failed one (ip addr del)".into()
        }),
    });

    checks.push(Check {
        code: "port.in_use",
        severity: Severity::Error,
        result: if inputs.ports_in_use.is_empty() { Outcome::Pass } else { Outcome::Fail },
        message: if inputs.ports_in_use.is_empty() {
            "the gRPC, HTTP, HTTPS and gossip ports are free".into()
        } else {
            let taken: Vec<String> = inputs.ports_in_use.iter().map(|(k, a)| format!("{k} {a}")).collect();
            format!("already taken: {}", taken.join(", "))
        },
        fix: (!inputs.ports_in_use.is_empty())
            .then(|| "stop what holds the port (ss -ltnup shows it; a running stackring holds its own), or change the port in the config".into()),
    });

    let site_local = decision
        .as_ref()
        .ok()
        .map(|id| id.internal_addr)
        .filter(is_site_local);
    checks.push(Check {
        code: "addr.site_local",
        severity: Severity::Warning,
        result: if site_local.is_some() { Outcome::Fail } else { Outcome::Pass },
        message: match site_local {
            Some(ip) => format!("the internal address {ip} is site-local (fec0::/10), deprecated by RFC 3879: used as a last resort because no global or ULA IPv6 address is usable"),
            None => "the internal address is not site-local".into(),
        },
        fix: site_local.map(|_| "give the host a global or ULA (fd00::/8) address, e.g. QEMU: -netdev user,ipv6-prefix=fd00:5a::,ipv6-prefixlen=64; stackring moves to it as soon as it is usable".into()),
    });

    // Node certificates (validity periods, renewal) and sealed gossip (datagrams more than ten
    // minutes off are refused as stale) depend on the clock.
    checks.push(Check {
        code: "clock.unsynchronized",
        severity: Severity::Warning,
        result: match inputs.clock {
            Clock::Synchronized => Outcome::Pass,
            _ => Outcome::Fail,
        },
        message: match &inputs.clock {
            Clock::Synchronized => "the system clock is synchronised".into(),
            Clock::Unsynchronized { maxerror_us } => format!(
                "the system clock is not synchronised (the kernel's maximum error is {} s; timedatectl shows 'System clock synchronized: no'): certificates and sealed gossip depend on time, and a node more than 10 minutes off cannot gossip with the others",
                maxerror_us / 1_000_000
            ),
            Clock::Unknown(why) => format!("cannot tell whether the system clock is synchronised ({why})"),
        },
        fix: (inputs.clock != Clock::Synchronized).then(|| {
            "enable time synchronisation: systemctl enable --now systemd-timesyncd (or chrony), and check `timedatectl` says 'System clock synchronized: yes'".into()
        }),
    });

    checks.push(match &decision {
        Ok(id) => Check {
            code: "identity.undecided",
            severity: Severity::Warning,
            result: Outcome::Pass,
            message: id.summary(),
            fix: None,
        },
        Err(why) => Check {
            code: "identity.undecided",
            severity: Severity::Warning,
            result: Outcome::Fail,
            message: why.to_string(),
            fix: Some("bring up an interface with a global address of the wanted family; the daemon waits for one".into()),
        },
    });
    checks
}

/// Where the hosts file is, unless `--hosts-file` says otherwise.
pub(crate) const HOSTS_PATH: &str = "/etc/hosts";

/// `--fix`: the hosts file with the missing localhost lines added, and the codes that fixes;
/// `None` when nothing is missing (or the file could not be read).
pub(crate) fn hosts_fix(inputs: &Inputs, checks: &[Check]) -> Option<(String, Vec<&'static str>)> {
    let original = inputs.hosts_text.as_deref()?;
    let mut fixed = original.to_string();
    let mut codes = Vec::new();
    for (code, line) in [
        ("hosts.ipv4_localhost", hosts::IPV4_LOCALHOST_LINE),
        ("hosts.ipv6_localhost", hosts::IPV6_LOCALHOST_LINE),
    ] {
        if checks
            .iter()
            .any(|c| c.code == code && c.result == Outcome::Fail)
        {
            fixed = hosts::with_line(&fixed, line);
            codes.push(code);
        }
    }
    (!codes.is_empty()).then_some((fixed, codes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::parse_str;
    use crate::core::snapshot::{AddrFlags, Address, HostEvent, Link, OperState, Scope};

    fn host(addrs: &[(&str, u32)]) -> HostSnapshot {
        let mut s = HostSnapshot::default();
        s.apply(HostEvent::LinkChanged(Link {
            index: 2,
            name: "eth0".into(),
            kind: None,
            admin_up: true,
            oper: OperState::Up,
            loopback: false,
        }));
        for (ip, flags) in addrs {
            let ip: IpAddr = ip.parse().unwrap();
            s.apply(HostEvent::AddressChanged(Address {
                link_index: 2,
                ip,
                prefix_len: 64,
                scope: Scope::Global,
                flags: AddrFlags(*flags),
            }));
        }
        s
    }

    fn inputs(hosts_text: &str, snapshot: HostSnapshot) -> Inputs {
        Inputs {
            hosts_path: "/etc/hosts".into(),
            hosts_text: Some(hosts_text.into()),
            ipv6_disabled: false,
            snapshot,
            ports_in_use: vec![],
            cluster_family: None,
            clock: Clock::Synchronized,
        }
    }

    /// The clock's three states, as the kernel reports them: only a synchronised one passes, and
    /// the check is a warning (a node still starts: it is the operator's to fix).
    #[test]
    fn an_unsynchronised_clock_is_a_warning_that_names_time_sync() {
        let s = parse_str("", "n").unwrap();
        for (clock, result, words) in [
            (Clock::Synchronized, Outcome::Pass, "is synchronised"),
            (
                Clock::Unsynchronized {
                    maxerror_us: 16_000_000,
                },
                Outcome::Fail,
                "maximum error is 16 s",
            ),
            (
                Clock::Unknown("adjtimex: Operation not permitted".into()),
                Outcome::Fail,
                "Operation not permitted",
            ),
        ] {
            let mut i = inputs(
                "::1 localhost\n127.0.0.1 localhost\n",
                host(&[("2001:db8::5", 0)]),
            );
            i.clock = clock.clone();
            let c = check(&evaluate(&s, &i), "clock.unsynchronized").clone();
            assert_eq!(
                (c.result, c.severity),
                (result, Severity::Warning),
                "{clock:?}"
            );
            assert!(c.message.contains(words), "{clock:?}: {}", c.message);
            assert!(!c.is_error());
            assert_eq!(c.fix.is_some(), result == Outcome::Fail, "{c:?}");
            if let Some(fix) = c.fix {
                assert!(
                    fix.contains("timesyncd") && fix.contains("timedatectl"),
                    "{fix}"
                );
            }
        }
    }

    fn check<'a>(checks: &'a [Check], code: &str) -> &'a Check {
        checks.iter().find(|c| c.code == code).unwrap()
    }

    #[test]
    fn missing_ipv6_localhost_is_an_error_only_for_ipv6() {
        let s = parse_str("", "n").unwrap();
        let v6 = evaluate(
            &s,
            &inputs("127.0.0.1 localhost\n", host(&[("2001:db8::5", 0)])),
        );
        let c = check(&v6, "hosts.ipv6_localhost");
        assert!(c.is_error(), "{c:?}");
        assert!(c.fix.as_deref().unwrap().contains("--fix"));

        let v4 = evaluate(
            &s,
            &inputs("127.0.0.1 localhost\n", host(&[("192.0.2.5", 0)])),
        );
        let c = check(&v4, "hosts.ipv6_localhost");
        assert_eq!((c.severity, c.result), (Severity::Warning, Outcome::Fail));
        assert!(!v4.iter().any(Check::is_error), "{v4:#?}");
    }

    #[test]
    fn each_code_reports() {
        let s = parse_str("node: {addr: '2001:db8::77'}", "n").unwrap();
        let mut i = inputs(
            "::1 localhost\n127.0.0.1 localhost\n",
            host(&[
                ("2001:db8::5", AddrFlags::TENTATIVE),
                ("2001:db8::6", AddrFlags::DADFAILED | AddrFlags::TENTATIVE),
            ]),
        );
        i.ipv6_disabled = true;
        i.ports_in_use = vec![("grpc", "[::]:9095".parse().unwrap())];
        i.clock = Clock::Unsynchronized {
            maxerror_us: 16_000_000,
        };
        let checks = evaluate(&s, &i);
        let codes: Vec<(&str, Outcome)> = checks.iter().map(|c| (c.code, c.result)).collect();
        assert_eq!(
            codes,
            vec![
                ("hosts.ipv6_localhost", Outcome::Pass),
                ("hosts.ipv4_localhost", Outcome::Pass),
                ("ipv6.disabled", Outcome::Fail),
                ("addr.not_bound", Outcome::Fail),
                ("addr.tentative", Outcome::Fail),
                ("addr.dadfailed", Outcome::Fail),
                ("port.in_use", Outcome::Fail),
                ("addr.site_local", Outcome::Pass),
                ("clock.unsynchronized", Outcome::Fail),
                ("identity.undecided", Outcome::Fail),
            ]
        );
        assert!(check(&checks, "ipv6.disabled").is_error());
        assert!(check(&checks, "port.in_use").message.contains("[::]:9095"));
        assert!(check(&checks, "addr.tentative")
            .message
            .contains("2001:db8::5"));
        assert!(!check(&checks, "addr.tentative")
            .message
            .contains("2001:db8::6"));
    }
}
