//! The I/O side of `stackring check`: read the file, resolve names with the system resolver, decide
//! the identity as `inspect` does, print the findings. Exit 0 when no finding is an error, 1
//! otherwise, 2 when the file cannot be read or parsed.

use super::{check, has_errors, parse, Finding, Host, Product, Resolver, Severity};
use crate::core::config::Settings;
use crate::core::decide::{decide, Context, Identity};
use crate::core::snapshot::HostSnapshot;
use std::fmt::Write;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::Path;

/// Exit code for a file that cannot be read or parsed.
pub(crate) const EXIT_UNREADABLE: i32 = 2;

/// getaddrinfo (A and AAAA, /etc/hosts included), as the products resolve `join_members`.
pub(crate) struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        let mut ips: Vec<IpAddr> = (name, 0)
            .to_socket_addrs()
            .map_err(|e| e.to_string())?
            .map(|sa| sa.ip())
            .collect();
        ips.sort();
        ips.dedup();
        Ok(ips)
    }
}

/// `stackring check PRODUCT FILE [--json]` on the host snapshot and settings the CLI gathered.
pub(crate) fn run(
    product: Product,
    file: &Path,
    json: bool,
    snapshot: &HostSnapshot,
    settings: &Settings,
    ctx: Context<'_>,
) -> i32 {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "stackring: cannot read {} ({e}); fix: name the {} configuration file (e.g. /etc/{}/config.yaml) readable by this user",
                file.display(),
                product.name(),
                product.name().to_lowercase()
            );
            return EXIT_UNREADABLE;
        }
    };
    let tree = match parse(&text) {
        Ok(tree) => tree,
        Err(why) => {
            eprintln!(
                "stackring: {} {why}\nfix: give the {} configuration file itself (YAML)",
                file.display(),
                product.name()
            );
            return EXIT_UNREADABLE;
        }
    };
    let decision = decide(snapshot, settings, ctx);
    let host = Host {
        snapshot,
        identity: decision.as_ref().map_err(|e| e.to_string()),
    };
    let findings = check(product, &tree, &host, &SystemResolver);
    let out = if json {
        let doc = serde_json::json!({
            "product": product,
            "file": file.display().to_string(),
            "family": decision.as_ref().ok().map(|id| id.family),
            "ok": !has_errors(&findings),
            "findings": findings,
        });
        serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
    } else {
        text_report(product, file, decision.as_ref().ok(), &findings)
    };
    print!("{out}");
    if has_errors(&findings) {
        1
    } else {
        0
    }
}

/// The human report: one block a finding, then a summary naming what it was checked against.
pub(crate) fn text_report(
    product: Product,
    file: &Path,
    identity: Option<&Identity>,
    findings: &[Finding],
) -> String {
    let mut out = String::new();
    for f in findings {
        let mark = match f.severity {
            Severity::Error => "ERROR",
            Severity::Warning => "warn",
        };
        let value = if f.value.is_empty() {
            String::new()
        } else {
            format!(" {}", f.value)
        };
        let _ = writeln!(
            out,
            "{mark:<6} {:<28} {}{value}: {}",
            f.code, f.key, f.message
        );
        let _ = writeln!(out, "{:<6} {:<28} fix: {}", "", "", f.fix);
    }
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let warnings = findings.len() - errors;
    let against = match identity {
        Some(id) => format!(
            "{} node {} {} (gRPC {}, gossip {})",
            id.family, id.id, id.internal_addr, id.grpc.advertise, id.gossip.advertise
        ),
        None => "this host (no identity decided yet)".to_string(),
    };
    let _ = writeln!(
        out,
        "{}: {} configuration, {errors} error(s), {warnings} warning(s), checked against {against}",
        file.display(),
        product.name()
    );
    out
}
