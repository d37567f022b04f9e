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

/// The labels a NoCloud seed's file system carries (cloud-init's portable first-boot data: a
/// vfat or ISO 9660 file system with `meta-data` and `user-data`, which libvirt, Proxmox,
/// OpenStack's config drive tools and `cloud-localds` write).
pub(crate) const SEED_LABELS: [&str; 2] = ["cidata", "CIDATA"];
/// The most a seed's `meta-data` or `user-data` may hold (user-data carries more than ours).
pub(crate) const MAX_SEED_FILE_BYTES: usize = 1024 * 1024;
/// Where a `#cloud-config`'s `write_files` puts what stackring takes, and the credential each
/// stands for. The secrets go to systemd's credential store (`/etc/credstore`), from which
/// `stackring.service` loads them like the platform's own.
pub(crate) const SEED_FILES: [(&str, &str); 3] = [
    ("/etc/stackring/stackring.yaml", CONFIG),
    (
        "/etc/credstore/stackring.credentials",
        "stackring.credentials",
    ),
    (
        "/etc/credstore/stackring.join_token",
        "stackring.join_token",
    ),
];

/// What a NoCloud seed gives: credential name → text (as the platform's credentials would), and
/// what of the seed stackring leaves alone (said, not an error: the seed may serve others too).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct NoCloud {
    pub(crate) given: std::collections::BTreeMap<&'static str, String>,
    pub(crate) ignored: Vec<String>,
}

/// Reads a NoCloud seed's `meta-data` (YAML: `local-hostname`) and `user-data` (a
/// `#cloud-config`: `hostname`, which wins as in cloud-init, and `write_files` entries for the
/// paths of [`SEED_FILES`], `content` as text or `encoding: b64`). Anything else is listed in
/// `ignored`. User-data that is not a `#cloud-config` (a script, a MIME multipart) is refused:
/// stackring runs nothing from it, and a node that silently ignored its first-boot data would
/// sit idle with no word why. Every problem is returned, naming the key and the fix.
pub(crate) fn nocloud(
    meta_data: Option<&str>,
    user_data: Option<&str>,
) -> Result<NoCloud, Vec<String>> {
    use serde_json::Value;
    let mut out = NoCloud::default();
    let mut problems = Vec::new();
    let yaml = |file: &str, text: &str| -> Result<serde_json::Map<String, Value>, String> {
        if text.trim().is_empty() {
            return Ok(Default::default());
        }
        match serde_saphyr::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(Value::Null) => Ok(Default::default()),
            Ok(_) => Err(format!("{file}: is not a YAML mapping; fix: write 'key: value' lines (e.g. local-hostname: node1)")),
            Err(e) => Err(format!(
                "{file}: is not valid YAML ({}); fix: correct the YAML at the position shown",
                crate::core::config::echo(e.to_string().lines().next().unwrap_or_default())
            )),
        }
    };
    fn hostname(key: String, value: &Value, out: &mut NoCloud, problems: &mut Vec<String>) {
        match value {
            Value::String(name) => match check_hostname(name) {
                Ok(name) => {
                    out.given.insert(HOSTNAME, name);
                }
                Err(e) => problems.push(format!(
                    "{key}: {}",
                    e.trim_start_matches(HOSTNAME).trim_start()
                )),
            },
            _ => problems.push(format!(
                "{key}: is not a string; fix: give the host name as text (e.g. node1)"
            )),
        }
    }
    if let Some(text) = meta_data {
        match yaml("meta-data", text) {
            Ok(map) => {
                for (key, value) in &map {
                    match key.as_str() {
                        "local-hostname" => {
                            hostname(format!("meta-data: {key}"), value, &mut out, &mut problems)
                        }
                        // Read by cloud-init to tell instances apart; a marker does that here.
                        "instance-id" => {}
                        other => out
                            .ignored
                            .push(format!("meta-data: {}", crate::core::config::echo(other))),
                    }
                }
            }
            Err(p) => problems.push(p),
        }
    }
    if let Some(text) = user_data.filter(|t| !t.trim().is_empty()) {
        let first = text.lines().next().unwrap_or_default().trim_end();
        if first != "#cloud-config" {
            problems.push(format!(
                "user-data: begins '{}', not '#cloud-config': stackring takes hostname and write_files from a #cloud-config and runs nothing (no scripts, no MIME multipart); fix: make user-data a #cloud-config",
                crate::core::config::echo(first.get(..first.len().min(40)).unwrap_or(first))
            ));
        } else {
            match yaml("user-data", text) {
                Ok(map) => {
                    for (key, value) in &map {
                        match key.as_str() {
                            "hostname" => hostname(
                                format!("user-data: {key}"),
                                value,
                                &mut out,
                                &mut problems,
                            ),
                            "write_files" => write_files(value, &mut out, &mut problems),
                            other => out
                                .ignored
                                .push(format!("user-data: {}", crate::core::config::echo(other))),
                        }
                    }
                }
                Err(p) => problems.push(p),
            }
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// `write_files` of a `#cloud-config`: the entries for [`SEED_FILES`] become credentials.
fn write_files(value: &serde_json::Value, out: &mut NoCloud, problems: &mut Vec<String>) {
    use base64::Engine;
    use serde_json::Value;
    let Value::Array(entries) = value else {
        problems.push("user-data: write_files is not a list; fix: give a list of entries, each with path: and content:".into());
        return;
    };
    for (i, entry) in entries.iter().enumerate() {
        let at = format!("user-data: write_files[{i}]");
        let Value::Object(entry) = entry else {
            problems.push(format!(
                "{at}: is not a mapping; fix: give path: and content:"
            ));
            continue;
        };
        let Some(Value::String(path)) = entry.get("path") else {
            problems.push(format!(
                "{at}.path: missing or not text; fix: give the file's absolute path"
            ));
            continue;
        };
        let Some((_, name)) = SEED_FILES.iter().find(|(p, _)| p == path) else {
            out.ignored
                .push(format!("{at}: {}", crate::core::config::echo(path)));
            continue;
        };
        let content = match entry.get("content") {
            Some(Value::String(c)) => c.as_str(),
            None => "",
            Some(_) => {
                problems.push(format!("{at}.content ({path}): is not text; fix: give the file's content as a string (a YAML block: content: |)"));
                continue;
            }
        };
        let text = match entry.get("encoding").map(|e| e.as_str()) {
            None | Some(Some("text/plain")) => Ok(content.to_string()),
            Some(Some("b64" | "base64")) => base64::engine::general_purpose::STANDARD
                .decode(content.split_whitespace().collect::<String>())
                .map_err(|_| "is not valid base64".to_string())
                .and_then(|bytes| {
                    String::from_utf8(bytes)
                        .map_err(|_| "decodes to bytes that are not UTF-8 text".to_string())
                }),
            Some(other) => Err(format!(
                "encoding '{}' is not one stackring reads",
                crate::core::config::echo(
                    &other
                        .map(str::to_string)
                        .unwrap_or_else(|| "(not text)".into())
                )
            )),
        };
        match text {
            Ok(text) if text.len() > MAX_CREDENTIAL_BYTES => problems.push(format!(
                "{at}.content ({path}): {} bytes; fix: give at most {MAX_CREDENTIAL_BYTES} bytes",
                text.len()
            )),
            Ok(text) => {
                if out.given.insert(name, text).is_some() {
                    problems.push(format!("{at}: {path} is written twice; fix: keep one entry for it"));
                }
            }
            Err(problem) => problems.push(format!(
                "{at}.content ({path}): {problem}; fix: give the content as text, or base64 with encoding: b64"
            )),
        }
    }
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

    /// cloud-init's NoCloud documentation, as printed: the meta-data and a user-data.
    const DOC_META_DATA: &str = "instance-id: iid-local01\nlocal-hostname: cloudimg\n";
    const DOC_USER_DATA: &str =
        "#cloud-config\npassword: passw0rd\nchpasswd: { expire: False }\nssh_pwauth: True\n";

    #[test]
    fn a_nocloud_seed_from_the_documentation_names_the_host_and_ignores_the_rest_aloud() {
        let seed = nocloud(Some(DOC_META_DATA), Some(DOC_USER_DATA)).unwrap();
        assert_eq!(
            seed.given.get(HOSTNAME).map(String::as_str),
            Some("cloudimg")
        );
        assert_eq!(seed.given.len(), 1);
        assert_eq!(
            seed.ignored,
            [
                "user-data: chpasswd",
                "user-data: password",
                "user-data: ssh_pwauth"
            ]
        );
        // Neither file, or empty ones: nothing given, nothing wrong.
        assert_eq!(nocloud(None, None), Ok(NoCloud::default()));
        assert_eq!(nocloud(Some(""), Some("")), Ok(NoCloud::default()));
    }

    #[test]
    fn write_files_of_a_cloud_config_give_the_configuration_and_the_secrets() {
        let user_data = "#cloud-config\nhostname: node2\nwrite_files:\n- path: /etc/stackring/stackring.yaml\n  content: |\n    cluster:\n      name: c1\n- path: /etc/credstore/stackring.credentials\n  encoding: b64\n  content: YWRtaW46czNjcmV0Cg==\n  permissions: '0600'\n- path: /etc/motd\n  content: hello\n";
        let seed = nocloud(Some(DOC_META_DATA), Some(user_data)).unwrap();
        // user-data's hostname wins over meta-data's local-hostname, as in cloud-init.
        assert_eq!(seed.given.get(HOSTNAME).map(String::as_str), Some("node2"));
        assert_eq!(
            seed.given.get(CONFIG).map(String::as_str),
            Some("cluster:\n  name: c1\n")
        );
        assert_eq!(
            seed.given.get("stackring.credentials").map(String::as_str),
            Some("admin:s3cret\n")
        );
        assert_eq!(seed.ignored, ["user-data: write_files[2]: /etc/motd"]);
    }

    #[test]
    fn a_hostile_or_mistaken_seed_is_refused_naming_the_key_and_the_fix() {
        let big = format!(
            "#cloud-config\nwrite_files:\n- path: /etc/stackring/stackring.yaml\n  content: '{}'\n",
            "#".repeat(MAX_CREDENTIAL_BYTES + 1)
        );
        // (meta-data, user-data, what the refusal names)
        let cases: &[(&str, &str, &str)] = &[
            ("local-hostname: bad_name\n", "", "meta-data: local-hostname"),
            ("local-hostname: [a, b]\n", "", "meta-data: local-hostname: is not a string"),
            ("local-hostname: $(reboot)\n", "", "not a host name"),
            ("just text\n", "", "meta-data: is not a YAML mapping"),
            ("a: [\n", "", "meta-data: is not valid YAML"),
            ("", "#!/bin/sh\nreboot\n", "not '#cloud-config'"),
            ("", "Content-Type: multipart/mixed; boundary=x\n", "not '#cloud-config'"),
            ("", "#cloud-config\nwrite_files: {path: /etc/x}\n", "write_files is not a list"),
            ("", "#cloud-config\nwrite_files: [42]\n", "write_files[0]: is not a mapping"),
            ("", "#cloud-config\nwrite_files: [{content: x}]\n", "write_files[0].path"),
            ("", "#cloud-config\nwrite_files: [{path: /etc/stackring/stackring.yaml, content: [1]}]\n", "is not text"),
            ("", "#cloud-config\nwrite_files: [{path: /etc/stackring/stackring.yaml, encoding: gzip, content: x}]\n", "encoding 'gzip'"),
            ("", "#cloud-config\nwrite_files: [{path: /etc/stackring/stackring.yaml, encoding: b64, content: '!!notbase64'}]\n", "not valid base64"),
            ("", "#cloud-config\nwrite_files: [{path: /etc/stackring/stackring.yaml, encoding: b64, content: '//79'}]\n", "not UTF-8"),
            ("", "#cloud-config\nwrite_files: [{path: /etc/credstore/stackring.join_token, content: a}, {path: /etc/credstore/stackring.join_token, content: b}]\n", "written twice"),
            ("", &big, "at most 65536 bytes"),
        ];
        for (meta, user, says) in cases {
            let problems = nocloud(Some(meta), Some(user)).unwrap_err().join("\n");
            assert!(problems.contains(says), "{meta:?} {user:?}: {problems}");
            assert!(problems.contains("fix: "), "{meta:?} {user:?}: {problems}");
        }
        // Every problem at once, not only the first.
        let problems =
            nocloud(Some("local-hostname: bad_name\n"), Some("#!/bin/sh\n")).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
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
