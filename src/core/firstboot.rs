//! First boot of an appliance instance, the pure part: which systemd system credentials stackring
//! takes from the platform, and the rules their values must meet. `agent::firstboot` reads them
//! (SMBIOS type 11 strings or the kernel command line, which systemd puts in
//! `/run/credentials/@system`) and applies them, all or nothing.

/// The credential that names the host (systemd's own name for it; systemd 254 and later apply it
/// themselves, 252 does not, so stackring does). It is the node id's default, too.
pub(crate) const HOSTNAME: &str = "system.hostname";
/// The whole `/etc/stackring/stackring.yaml`.
pub(crate) const CONFIG: &str = "stackring.yaml";
/// Secrets stay credentials: `stackring.service` loads these with `LoadCredential=` (a missing
/// one is skipped), and a configuration names them under [`SERVICE_CREDENTIALS`].
pub(crate) const SECRETS: [&str; 2] = ["stackring.credentials", "stackring.join_token"];
/// Where systemd 252 puts the credentials `stackring.service` loads.
pub(crate) const SERVICE_CREDENTIALS: &str = "/run/credentials/stackring.service";
/// The most a credential may hold (a configuration is a few hundred bytes).
pub(crate) const MAX_CREDENTIAL_BYTES: usize = 64 * 1024;

/// A host name as `system.hostname` may give it: RFC 1123 labels (letters, digits, inner
/// hyphens, 1–63 each) joined by dots, 63 characters at most (it becomes the node id, whose limit
/// that is). Surrounding whitespace (a trailing newline) is dropped. The error names the fix.
pub(crate) fn check_hostname(text: &str) -> Result<String, String> {
    let name = text.trim();
    let fix = "fix: give letters, digits and inner hyphens, in dot-separated labels, 63 characters at most (e.g. node1 or node1.example)";
    if name.is_empty() {
        return Err(format!("{HOSTNAME} is empty; {fix}"));
    }
    if name.len() > 63 {
        return Err(format!(
            "{HOSTNAME} is {} characters long; {fix}",
            name.chars().count()
        ));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if !name.split('.').all(label_ok) {
        return Err(format!(
            "{HOSTNAME} '{}' is not a host name; {fix}",
            crate::core::config::echo(name)
        ));
    }
    Ok(name.to_string())
}

/// Whether `path`, named by the configuration for a secret, is one of the credentials
/// `stackring.service` loads: its credential name then.
pub(crate) fn service_credential(path: &std::path::Path) -> Option<&'static str> {
    let name = path
        .strip_prefix(SERVICE_CREDENTIALS)
        .ok()?
        .to_str()
        .filter(|n| !n.contains('/'))?;
    SECRETS.into_iter().find(|s| *s == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_follow_rfc_1123_and_fit_a_node_id() {
        for (text, want) in [
            ("node1", Ok("node1")),
            ("node1\n", Ok("node1")),
            ("  vm-2.lab.example ", Ok("vm-2.lab.example")),
            ("N1", Ok("N1")),
            (&"a".repeat(63), Ok(&*"a".repeat(63))),
        ] {
            assert_eq!(check_hostname(text).as_deref(), want.map(|s: &str| s));
        }
        for bad in [
            "",
            " \n",
            "-node",
            "node-",
            "no_de",
            "node..1",
            ".node",
            "node 1",
            "nöde",
            "node1\nnode2",
            &"a".repeat(64),
            "$(reboot)",
        ] {
            let err = check_hostname(bad).unwrap_err();
            assert!(err.starts_with("system.hostname"), "{bad:?}: {err}");
            assert!(err.contains("fix: "), "{bad:?}: {err}");
        }
    }

    #[test]
    fn only_the_secrets_stackring_loads_count_as_service_credentials() {
        use std::path::Path;
        assert_eq!(
            service_credential(Path::new(
                "/run/credentials/stackring.service/stackring.credentials"
            )),
            Some("stackring.credentials")
        );
        assert_eq!(
            service_credential(Path::new(
                "/run/credentials/stackring.service/stackring.join_token"
            )),
            Some("stackring.join_token")
        );
        for other in [
            "/etc/stackring/credentials",
            "/run/credentials/stackring.service/other",
            "/run/credentials/stackring.service/../@system/stackring.credentials",
            "/run/credentials/other.service/stackring.credentials",
        ] {
            assert_eq!(service_credential(Path::new(other)), None, "{other}");
        }
    }
}
