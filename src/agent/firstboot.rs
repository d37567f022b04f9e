//! `stackring firstboot`: the first boot of an appliance instance takes its host name and its
//! stackring configuration from the systemd system credentials the platform passed (SMBIOS type
//! 11 `io.systemd.credential:NAME=VALUE`, or `systemd.set_credential=` on the kernel command line;
//! systemd 252 puts both in `/run/credentials/@system`), before the firewall and the agent start
//! (`stackring-firstboot.service`). All or nothing: every credential is checked first, and a bad
//! one changes nothing. Once applied, never again (a marker under `/var/lib`): a later boot with
//! other credentials does not undo what the operator changed since. Secrets are not copied: the
//! agent's unit loads them as credentials itself.

use crate::core::firstboot::{self, check_hostname, CONFIG, HOSTNAME, MAX_CREDENTIAL_BYTES};
use std::path::{Path, PathBuf};

/// Where it reads and writes; `root` is `/` on a host (tests give a directory).
pub(crate) struct Places {
    pub(crate) credentials: PathBuf,
    pub(crate) root: PathBuf,
}

impl Places {
    fn config(&self) -> PathBuf {
        self.root.join("etc/stackring/stackring.yaml")
    }
    fn hostname(&self) -> PathBuf {
        self.root.join("etc/hostname")
    }
    fn marker(&self) -> PathBuf {
        self.root.join("var/lib/stackring-firstboot/applied")
    }
    /// The running host name: the kernel's, on a host only.
    fn kernel_hostname(&self) -> Option<PathBuf> {
        (self.root == Path::new("/")).then(|| PathBuf::from("/proc/sys/kernel/hostname"))
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A first boot applied these before (the marker's text).
    AlreadyApplied(String),
    /// No credential of ours: the image's configuration stays (the node idles, safe).
    NothingGiven,
    /// What was applied, one line each.
    Applied(Vec<String>),
}

/// A credential's text, if the platform passed it; an error when it is there but unusable.
fn credential(places: &Places, name: &str) -> Result<Option<String>, String> {
    let path = places.credentials.join(name);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{name}: cannot be read ({e})")),
    };
    if bytes.len() > MAX_CREDENTIAL_BYTES {
        return Err(format!(
            "{name}: {} bytes; fix: pass at most {MAX_CREDENTIAL_BYTES} bytes",
            bytes.len()
        ));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| format!("{name}: not UTF-8 text; fix: pass it as text"))
}

/// Checks every credential, then applies them (configuration, `/etc/hostname`, the running host
/// name, the marker), or returns every problem and changes nothing.
/// `current_id` is the node id's default before this boot names the host (the kernel's name).
pub(crate) fn apply(places: &Places, current_id: &str) -> Result<Outcome, Vec<String>> {
    if let Ok(done) = std::fs::read_to_string(places.marker()) {
        return Ok(Outcome::AlreadyApplied(done));
    }
    let mut problems = Vec::new();
    let hostname = match credential(places, HOSTNAME) {
        Ok(Some(text)) => check_hostname(&text).map_err(|p| problems.push(p)).ok(),
        Ok(None) => None,
        Err(p) => {
            problems.push(p);
            None
        }
    };
    let config = match credential(places, CONFIG) {
        Ok(Some(text)) => {
            let default_id = hostname.clone().unwrap_or_else(|| current_id.to_string());
            match check_config(places, &text, &default_id) {
                Ok(()) => Some(text),
                Err(mut found) => {
                    problems.append(&mut found);
                    None
                }
            }
        }
        Ok(None) => None,
        Err(p) => {
            problems.push(p);
            None
        }
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    if hostname.is_none() && config.is_none() {
        return Ok(Outcome::NothingGiven);
    }
    let mut applied = Vec::new();
    let write = |path: &Path, text: &[u8], mode: u32| {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        crate::agent::fsutil::write_atomic(path, text, mode)
    };
    let failed = |path: &Path, e: std::io::Error| vec![format!("{}: {e}", path.display())];
    if let Some(text) = &config {
        write(&places.config(), text.as_bytes(), 0o644).map_err(|e| failed(&places.config(), e))?;
        applied.push(format!(
            "{} from the credential {CONFIG}",
            places.config().display()
        ));
    }
    if let Some(name) = &hostname {
        write(&places.hostname(), format!("{name}\n").as_bytes(), 0o644)
            .map_err(|e| failed(&places.hostname(), e))?;
        if let Some(kernel) = places.kernel_hostname() {
            std::fs::write(&kernel, name).map_err(|e| failed(&kernel, e))?;
        }
        applied.push(format!("host name {name} from the credential {HOSTNAME}"));
    }
    let marker = applied.join("\n") + "\n";
    write(&places.marker(), marker.as_bytes(), 0o644).map_err(|e| failed(&places.marker(), e))?;
    Ok(Outcome::Applied(applied))
}

/// The configuration as `serve` would take it, its secret included: one `stackring.service`
/// loads as a credential is checked in the system credentials it will come from.
fn check_config(places: &Places, text: &str, default_id: &str) -> Result<(), Vec<String>> {
    let settings = crate::core::config::parse_str(text, default_id).map_err(|errors| {
        errors
            .0
            .iter()
            .map(|e| format!("{CONFIG}: {e}"))
            .collect::<Vec<_>>()
    })?;
    let Some(declared) = &settings.cluster else {
        return Ok(());
    };
    let mut seen = settings.clone();
    if let (Some(name), Some(cluster)) = (
        firstboot::service_credential(declared.secret.path()),
        seen.cluster.as_mut(),
    ) {
        cluster.secret = cluster.secret.at(places.credentials.join(name));
    }
    let errors = crate::agent::files::check_files(&seen);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors
            .iter()
            .map(|e| {
                format!(
                    "{CONFIG}: {e} (a file under {} is the credential of that name)",
                    firstboot::SERVICE_CREDENTIALS
                )
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A machine in a directory of its own: `creds/` (the system credentials) and `root/`.
    struct Machine {
        dir: PathBuf,
    }

    impl Drop for Machine {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    impl Machine {
        fn new() -> Machine {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir()
                .join(format!("stackring-firstboot-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("creds")).unwrap();
            std::fs::create_dir_all(dir.join("root/etc/stackring")).unwrap();
            std::fs::write(dir.join("root/etc/stackring/stackring.yaml"), IMAGE).unwrap();
            Machine { dir }
        }
        fn places(&self) -> Places {
            Places {
                credentials: self.dir.join("creds"),
                root: self.dir.join("root"),
            }
        }
        fn give(&self, name: &str, text: &[u8]) {
            std::fs::write(self.dir.join("creds").join(name), text).unwrap();
        }
        fn read(&self, path: &str) -> Option<String> {
            std::fs::read_to_string(self.dir.join("root").join(path)).ok()
        }
        fn apply(&self) -> Result<Outcome, Vec<String>> {
            apply(&self.places(), "image-default")
        }
    }

    const IMAGE: &str = "# the image's own\n";
    const CREATE: &str = "cluster: {name: c1, credentials_file: /run/credentials/stackring.service/stackring.credentials, create: true}\n";

    #[test]
    fn nothing_given_changes_nothing_and_leaves_no_marker() {
        let m = Machine::new();
        assert_eq!(m.apply(), Ok(Outcome::NothingGiven));
        assert_eq!(
            m.read("etc/stackring/stackring.yaml").as_deref(),
            Some(IMAGE)
        );
        assert_eq!(m.read("etc/hostname"), None);
        assert_eq!(m.read("var/lib/stackring-firstboot/applied"), None);
    }

    #[test]
    fn a_hostname_and_a_declared_cluster_are_applied_once() {
        let m = Machine::new();
        m.give("system.hostname", b"node1\n");
        m.give("stackring.yaml", CREATE.as_bytes());
        m.give("stackring.credentials", b"admin:correct horse\n");
        let Ok(Outcome::Applied(lines)) = m.apply() else {
            panic!("not applied");
        };
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(
            m.read("etc/stackring/stackring.yaml").as_deref(),
            Some(CREATE)
        );
        assert_eq!(m.read("etc/hostname").as_deref(), Some("node1\n"));
        // The secret is not copied anywhere under the root.
        let copied = walk(&m.dir.join("root"))
            .into_iter()
            .any(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("correct horse")));
        assert!(!copied, "the secret was copied");
        // A later boot with other credentials applies nothing.
        m.give("system.hostname", b"other\n");
        assert!(matches!(m.apply(), Ok(Outcome::AlreadyApplied(_))));
        assert_eq!(m.read("etc/hostname").as_deref(), Some("node1\n"));
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }

    #[test]
    fn any_bad_credential_changes_nothing_and_says_which_and_how_to_fix_it() {
        // (credentials given, what the refusal must name)
        type Case<'a> = (&'a [(&'a str, &'a [u8])], &'a str);
        let cases: &[Case<'_>] = &[
            (
                &[("system.hostname", b"bad_name")],
                "system.hostname 'bad_name'",
            ),
            // A good hostname does not go in beside a bad configuration.
            (
                &[
                    ("system.hostname", b"node1"),
                    ("stackring.yaml", b"server: {grpc_listen_port: 0}\n"),
                ],
                "server.grpc_listen_port",
            ),
            (&[("stackring.yaml", b"nonsense: [\n")], "stackring.yaml"),
            (&[("stackring.yaml", &[0xff, 0xfe, 0x00])], "not UTF-8"),
            (
                &[("stackring.yaml", &[b'#'; 70_000])],
                "at most 65536 bytes",
            ),
            // A declared cluster whose secret credential was not passed.
            (
                &[("stackring.yaml", CREATE.as_bytes())],
                "cluster.credentials_file",
            ),
            // ... or is not 'username:password'.
            (
                &[
                    ("stackring.yaml", CREATE.as_bytes()),
                    ("stackring.credentials", b"no colon here"),
                ],
                "cluster.credentials_file",
            ),
        ];
        for (given, says) in cases {
            let m = Machine::new();
            for (name, text) in *given {
                m.give(name, text);
            }
            let problems = m.apply().unwrap_err();
            let text = problems.join("\n");
            assert!(text.contains(says), "{given:?}: {text}");
            assert!(text.contains("fix"), "{given:?}: {text}");
            assert!(!text.contains("no colon here"), "a secret echoed: {text}");
            assert_eq!(
                m.read("etc/stackring/stackring.yaml").as_deref(),
                Some(IMAGE)
            );
            assert_eq!(m.read("etc/hostname"), None);
            assert_eq!(m.read("var/lib/stackring-firstboot/applied"), None);
        }
    }
}
