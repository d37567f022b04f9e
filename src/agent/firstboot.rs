//! `stackring firstboot`: the first boot of an appliance instance takes its host name and its
//! stackring configuration from the systemd system credentials the platform passed (SMBIOS type
//! 11 `io.systemd.credential:NAME=VALUE`, or `systemd.set_credential=` on the kernel command line;
//! systemd 252 puts both in `/run/credentials/@system`), before the firewall and the agent start
//! (`stackring-firstboot.service`). All or nothing: every credential is checked first, and a bad
//! one changes nothing. Once applied, never again (a marker under `/var/lib`): a later boot with
//! other credentials does not undo what the operator changed since. Secrets are not copied: the
//! agent's unit loads them as credentials itself.
//!
//! On the appliance `/etc/stackring/stackring.yaml` and `/etc/hostname` are links into `/var`
//! (the partition every root slot shares, so that an update keeps them): the files are written
//! where the links point, the links stay. Because the host's name then lives on `/var`, which is
//! mounted after systemd names the host, every boot (first or not) names the host from
//! `/etc/hostname` again.

use crate::core::firstboot::{self, check_hostname, CONFIG, HOSTNAME, MAX_CREDENTIAL_BYTES};
use std::path::{Path, PathBuf};

/// Where it reads and writes; `root` is `/` on a host (tests give a directory), and
/// `kernel_hostname` the running host name's file (`/proc/sys/kernel/hostname` on a host).
pub(crate) struct Places {
    pub(crate) credentials: PathBuf,
    pub(crate) root: PathBuf,
    pub(crate) kernel_hostname: Option<PathBuf>,
}

impl Places {
    /// The host's own: `/run/credentials/@system` and `/`.
    pub(crate) fn host(credentials: PathBuf) -> Places {
        Places {
            credentials,
            root: PathBuf::from("/"),
            kernel_hostname: Some(PathBuf::from("/proc/sys/kernel/hostname")),
        }
    }
    fn config(&self) -> PathBuf {
        self.root.join("etc/stackring/stackring.yaml")
    }
    fn hostname(&self) -> PathBuf {
        self.root.join("etc/hostname")
    }
    fn marker(&self) -> PathBuf {
        self.root.join("var/lib/stackring-firstboot/applied")
    }
    /// Where a seed's secrets are kept (owner-only, on `/var`: the seed may be gone at the next
    /// boot, and the root is read-only).
    fn kept_secrets(&self) -> PathBuf {
        self.root.join("var/lib/stackring-firstboot/credstore")
    }
    /// systemd's runtime credential store: `stackring.service`'s `LoadCredential=NAME` looks
    /// here when the platform passed no system credential NAME (systemd.exec(5)).
    fn run_credstore(&self) -> PathBuf {
        self.root.join("run/credstore")
    }
    /// Where a seed's data waits, as credentials, while it is checked (memory, owner-only).
    fn staging(&self) -> PathBuf {
        self.root.join("run/stackring-firstboot")
    }
    /// Where a write to `path` goes: the file a symbolic link there points to (an absolute
    /// target is taken inside `root`), else `path` itself. Writing over the link would replace
    /// it with a file on the root slot, which the next update throws away.
    fn written(&self, path: &Path) -> PathBuf {
        match std::fs::read_link(path) {
            Ok(target) if target.is_absolute() => {
                self.root.join(target.strip_prefix("/").unwrap_or(&target))
            }
            Ok(target) => path.parent().unwrap_or(&self.root).join(target),
            Err(_) => path.to_path_buf(),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A first boot applied these before (the marker's text); `named` is the host name this boot
    /// took from `/etc/hostname`, if it had to.
    AlreadyApplied { done: String, named: Option<String> },
    /// No credential of ours: the image's configuration stays (the node idles, safe); `named`
    /// as above.
    NothingGiven { named: Option<String> },
    /// What was applied, one line each.
    Applied(Vec<String>),
}

/// Names the running host as `/etc/hostname` says, when they differ: the name that survives an
/// update lives on `/var` (see the module's comment). A missing, unreadable or invalid file
/// leaves the name as it is. Returns the name it set.
fn name_host(places: &Places) -> Option<String> {
    let kernel = places.kernel_hostname.as_ref()?;
    let text = std::fs::read_to_string(places.written(&places.hostname())).ok()?;
    let name = check_hostname(&text).ok()?;
    let running = std::fs::read_to_string(kernel).unwrap_or_default();
    if running.trim() == name {
        return None;
    }
    std::fs::write(kernel, &name).ok()?;
    Some(name)
}

/// Copies the secrets a seed gave (kept on `/var`) into `/run/credstore`, owner-only, where
/// `stackring.service` loads them: at every boot, before the agent starts. Returns their names.
pub(crate) fn publish_secrets(places: &Places) -> Result<Vec<String>, String> {
    let store = places.run_credstore();
    let mut published = Vec::new();
    for name in firstboot::SECRETS {
        let from = places.kept_secrets().join(name);
        // (only a regular file: a link there is not followed)
        if !std::fs::symlink_metadata(&from).is_ok_and(|m| m.is_file()) {
            continue;
        }
        let secret = std::fs::read(&from).map_err(|e| format!("{}: {e}", from.display()))?;
        write_secret(&store, name, &secret)
            .map_err(|e| format!("{}: {e}", store.join(name).display()))?;
        published.push(name.to_string());
    }
    Ok(published)
}

/// `dir/name`, owner-only in an owner-only directory.
fn write_secret(dir: &Path, name: &str, secret: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    crate::agent::fsutil::write_atomic(&dir.join(name), secret, 0o600)
}

/// Where the first-boot data came from.
enum From {
    /// The platform's system credentials (`Places::credentials`).
    Credentials,
    /// A NoCloud seed, its data staged as credentials in this directory; its secrets are kept in
    /// the credential store, since the seed may be gone at the next boot.
    Seed(PathBuf),
}

/// A credential's text, if the platform passed it; an error when it is there but unusable.
fn credential(dir: &Path, name: &str) -> Result<Option<String>, String> {
    read_text(&dir.join(name), name, MAX_CREDENTIAL_BYTES)
}

/// A first-boot file's text (`what` names it in errors): `None` when absent; refused when it
/// is not a regular file (a link is not followed), over `max` bytes (checked before reading)
/// or not UTF-8.
fn read_text(path: &Path, what: &str, max: usize) -> Result<Option<String>, String> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{what}: cannot be read ({e})")),
    };
    if !meta.is_file() {
        return Err(format!(
            "{what}: is not a regular file; fix: pass it as a file"
        ));
    }
    if meta.len() > max as u64 {
        return Err(format!(
            "{what}: {} bytes; fix: pass at most {max} bytes",
            meta.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("{what}: cannot be read ({e})"))?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| format!("{what}: not UTF-8 text; fix: pass it as text"))
}

/// Checks every credential, then applies them (configuration, `/etc/hostname`, the running host
/// name, the marker), or returns every problem and changes nothing.
/// `current_id` is the node id's default before this boot names the host (the kernel's name).
pub(crate) fn apply(places: &Places, current_id: &str) -> Result<Outcome, Vec<String>> {
    apply_from(places, From::Credentials, current_id)
}

/// [`apply`] from a NoCloud seed (its file system mounted at `seed`) instead of the system
/// credentials: `meta-data` and `user-data` read (see [`firstboot::nocloud`]), checked and
/// applied the same way, all or nothing; the secrets it gives are kept on `/var`
/// (owner-only) for [`publish_secrets`]. What the seed holds beyond stackring's is listed in the outcome.
pub(crate) fn apply_seed(
    places: &Places,
    seed: &Path,
    current_id: &str,
) -> Result<(Outcome, Vec<String>), Vec<String>> {
    if let Ok(done) = std::fs::read_to_string(places.marker()) {
        let named = name_host(places);
        return Ok((Outcome::AlreadyApplied { done, named }, Vec::new()));
    }
    let read = |name: &str| {
        read_text(
            &seed.join(name),
            &format!("the seed's {name}"),
            firstboot::MAX_SEED_FILE_BYTES,
        )
    };
    let (meta_data, user_data) = match (read("meta-data"), read("user-data")) {
        (Ok(m), Ok(u)) => (m, u),
        (m, u) => return Err([m.err(), u.err()].into_iter().flatten().collect()),
    };
    let seed_data = firstboot::nocloud(meta_data.as_deref(), user_data.as_deref())?;
    let staging = places.staging();
    let _ = std::fs::remove_dir_all(&staging);
    let staged = seed_data
        .given
        .iter()
        .try_for_each(|(name, text)| write_secret(&staging, name, text.as_bytes()));
    let outcome = staged
        .map_err(|e| vec![format!("{}: {e}", staging.display())])
        .and_then(|()| apply_from(places, From::Seed(staging.clone()), current_id));
    let _ = std::fs::remove_dir_all(&staging);
    outcome.map(|o| (o, seed_data.ignored))
}

fn apply_from(places: &Places, from: From, current_id: &str) -> Result<Outcome, Vec<String>> {
    if let Ok(done) = std::fs::read_to_string(places.marker()) {
        let named = name_host(places);
        return Ok(Outcome::AlreadyApplied { done, named });
    }
    let dir = match &from {
        From::Credentials => places.credentials.as_path(),
        From::Seed(dir) => dir.as_path(),
    };
    let origin = |name: &str| match &from {
        From::Credentials => format!("the credential {name}"),
        From::Seed(_) => "the NoCloud seed".to_string(),
    };
    let mut problems = Vec::new();
    let hostname = match credential(dir, HOSTNAME) {
        Ok(Some(text)) => check_hostname(&text).map_err(|p| problems.push(p)).ok(),
        Ok(None) => None,
        Err(p) => {
            problems.push(p);
            None
        }
    };
    let config = match credential(dir, CONFIG) {
        Ok(Some(text)) => {
            let default_id = hostname.clone().unwrap_or_else(|| current_id.to_string());
            match check_config(dir, &text, &default_id) {
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
        let named = name_host(places);
        return Ok(Outcome::NothingGiven { named });
    }
    let mut applied = Vec::new();
    let write = |path: &Path, text: &[u8], mode: u32| {
        let path = places.written(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        crate::agent::fsutil::write_atomic(&path, text, mode)
    };
    let failed = |path: &Path, e: std::io::Error| vec![format!("{}: {e}", path.display())];
    // A seed's secrets first: the configuration that names them is only good with them there.
    if let From::Seed(staged) = &from {
        let store = places.kept_secrets();
        for name in firstboot::SECRETS {
            let Ok(secret) = std::fs::read(staged.join(name)) else {
                continue;
            };
            write_secret(&store, name, &secret).map_err(|e| failed(&store.join(name), e))?;
            applied.push(format!(
                "{name} from {} (kept in {})",
                origin(name),
                store.display()
            ));
        }
    }
    if let Some(text) = &config {
        write(&places.config(), text.as_bytes(), 0o644).map_err(|e| failed(&places.config(), e))?;
        applied.push(format!(
            "{} from {}",
            places.config().display(),
            origin(CONFIG)
        ));
    }
    if let Some(name) = &hostname {
        write(&places.hostname(), format!("{name}\n").as_bytes(), 0o644)
            .map_err(|e| failed(&places.hostname(), e))?;
        if let Some(kernel) = &places.kernel_hostname {
            std::fs::write(kernel, name).map_err(|e| failed(kernel, e))?;
        }
        applied.push(format!("host name {name} from {}", origin(HOSTNAME)));
    }
    let marker = applied.join("\n") + "\n";
    write(&places.marker(), marker.as_bytes(), 0o644).map_err(|e| failed(&places.marker(), e))?;
    Ok(Outcome::Applied(applied))
}

/// The configuration as `serve` would take it, its secret included: one `stackring.service`
/// loads as a credential is checked in the system credentials it will come from.
fn check_config(dir: &Path, text: &str, default_id: &str) -> Result<(), Vec<String>> {
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
        cluster.secret = cluster.secret.at(dir.join(name));
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

/// A NoCloud seed's file system, mounted read-only for as long as this lives (the edge to the
/// kernel: `udevadm` and `mount`, as a first-boot unit runs them).
pub(crate) struct SeedMount {
    dir: PathBuf,
    pub(crate) device: PathBuf,
}

impl SeedMount {
    /// Finds a file system labelled `cidata` or `CIDATA` (udev's `/dev/disk/by-label`, once its
    /// queue has settled: this runs early in the boot) and mounts it at `/run/stackring-seed`,
    /// read-only, nothing on it executable. `Ok(None)` when there is none.
    pub(crate) fn find() -> Result<Option<SeedMount>, String> {
        let _ = std::process::Command::new("udevadm")
            .args(["settle", "--timeout=10"])
            .status();
        let Some(device) = firstboot::SEED_LABELS
            .iter()
            .map(|label| Path::new("/dev/disk/by-label").join(label))
            .find(|p| p.exists())
        else {
            return Ok(None);
        };
        let dir = PathBuf::from("/run/stackring-seed");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let out = std::process::Command::new("mount")
            .args(["-o", "ro,nosuid,nodev,noexec"])
            .arg(&device)
            .arg(&dir)
            .output()
            .map_err(|e| format!("mount {}: {e}", device.display()))?;
        if !out.status.success() {
            return Err(format!(
                "the NoCloud seed {}: cannot be mounted ({}); fix: give it a vfat or ISO 9660 file system labelled cidata",
                device.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Some(SeedMount { dir, device }))
    }
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for SeedMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
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
                kernel_hostname: Some(self.dir.join("kernel-hostname")),
            }
        }
        /// The appliance's layout: the configuration and the host name are links into /var.
        fn appliance() -> Machine {
            let m = Machine::new();
            let root = m.dir.join("root");
            std::fs::create_dir_all(root.join("var/lib/stackring-config")).unwrap();
            std::fs::write(root.join("var/lib/stackring-config/stackring.yaml"), IMAGE).unwrap();
            std::fs::write(
                root.join("var/lib/stackring-config/hostname"),
                "stackring\n",
            )
            .unwrap();
            std::fs::remove_file(root.join("etc/stackring/stackring.yaml")).unwrap();
            std::os::unix::fs::symlink(
                "/var/lib/stackring-config/stackring.yaml",
                root.join("etc/stackring/stackring.yaml"),
            )
            .unwrap();
            std::os::unix::fs::symlink(
                "/var/lib/stackring-config/hostname",
                root.join("etc/hostname"),
            )
            .unwrap();
            std::fs::write(m.dir.join("kernel-hostname"), "localhost\n").unwrap();
            m
        }
        fn is_link(&self, path: &str) -> bool {
            std::fs::symlink_metadata(self.dir.join("root").join(path))
                .is_ok_and(|m| m.file_type().is_symlink())
        }
        fn kernel(&self) -> String {
            std::fs::read_to_string(self.dir.join("kernel-hostname")).unwrap()
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
        assert_eq!(m.apply(), Ok(Outcome::NothingGiven { named: None }));
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
        assert!(matches!(m.apply(), Ok(Outcome::AlreadyApplied { .. })));
        assert_eq!(m.read("etc/hostname").as_deref(), Some("node1\n"));
    }

    #[test]
    fn on_the_appliance_the_files_go_where_the_links_point_and_every_boot_names_the_host() {
        // First boot without credentials: nothing written, the host named from /etc/hostname
        // (the image's default, on /var).
        let m = Machine::appliance();
        assert_eq!(
            m.apply(),
            Ok(Outcome::NothingGiven {
                named: Some("stackring".into())
            })
        );
        assert_eq!(m.kernel(), "stackring");
        // With credentials: written through the links, which stay links.
        let m = Machine::appliance();
        m.give("system.hostname", b"node7");
        m.give("stackring.yaml", b"lifecycler: {zone: z1}\n");
        assert!(matches!(m.apply(), Ok(Outcome::Applied(_))));
        assert!(m.is_link("etc/stackring/stackring.yaml"));
        assert!(m.is_link("etc/hostname"));
        assert_eq!(
            m.read("var/lib/stackring-config/stackring.yaml").as_deref(),
            Some("lifecycler: {zone: z1}\n")
        );
        assert_eq!(
            m.read("var/lib/stackring-config/hostname").as_deref(),
            Some("node7\n")
        );
        assert_eq!(m.kernel(), "node7");
        // A later boot (an update's new root, say) whose kernel started under another name:
        // named from /etc/hostname again; a boot already named so changes nothing.
        std::fs::write(m.dir.join("kernel-hostname"), "localhost\n").unwrap();
        let Ok(Outcome::AlreadyApplied { named, .. }) = m.apply() else {
            panic!("not already applied");
        };
        assert_eq!(named.as_deref(), Some("node7"));
        assert_eq!(m.kernel(), "node7");
        let Ok(Outcome::AlreadyApplied { named, .. }) = m.apply() else {
            panic!("not already applied");
        };
        assert_eq!(named, None);
        // An invalid /etc/hostname (edited by hand) is not taken.
        std::fs::write(
            m.dir.join("root/var/lib/stackring-config/hostname"),
            "bad_name\n",
        )
        .unwrap();
        std::fs::write(m.dir.join("kernel-hostname"), "node7\n").unwrap();
        let Ok(Outcome::AlreadyApplied { named, .. }) = m.apply() else {
            panic!("not already applied");
        };
        assert_eq!(named, None);
        assert_eq!(m.kernel(), "node7\n");
    }

    /// A NoCloud seed as a `#cloud-config` writes it: the host name, a configuration that
    /// creates a cluster, and its secret in the credential store.
    const SEED_USER_DATA: &str = "#cloud-config\nhostname: node9\nwrite_files:\n- path: /etc/stackring/stackring.yaml\n  content: |\n    cluster: {name: c1, credentials_file: /run/credentials/stackring.service/stackring.credentials, create: true}\n- path: /etc/credstore/stackring.credentials\n  content: 'admin:seed horse'\n  permissions: '0600'\nruncmd: [reboot]\n";

    impl Machine {
        fn seed(&self, files: &[(&str, &[u8])]) -> PathBuf {
            let dir = self.dir.join("seed");
            std::fs::create_dir_all(&dir).unwrap();
            for (name, text) in files {
                std::fs::write(dir.join(name), text).unwrap();
            }
            dir
        }
        fn apply_seed(&self, seed: &Path) -> Result<(Outcome, Vec<String>), Vec<String>> {
            apply_seed(&self.places(), seed, "image-default")
        }
        fn mode(&self, path: &str) -> u32 {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(self.dir.join("root").join(path))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        }
    }

    #[test]
    fn a_nocloud_seed_names_the_host_writes_the_configuration_and_keeps_the_secret_owner_only() {
        let m = Machine::appliance();
        let root = m.dir.join("root");
        let seed = m.seed(&[
            (
                "meta-data",
                b"instance-id: iid-1\nlocal-hostname: from-meta\n",
            ),
            ("user-data", SEED_USER_DATA.as_bytes()),
        ]);
        let (outcome, ignored) = m.apply_seed(&seed).unwrap();
        let Outcome::Applied(lines) = outcome else {
            panic!("not applied: {outcome:?}");
        };
        assert_eq!(
            lines,
            [
                format!(
                    "stackring.credentials from the NoCloud seed (kept in {})",
                    root.join("var/lib/stackring-firstboot/credstore").display()
                ),
                format!(
                    "{} from the NoCloud seed",
                    root.join("etc/stackring/stackring.yaml").display()
                ),
                "host name node9 from the NoCloud seed".to_string(),
            ]
        );
        assert_eq!(ignored, ["user-data: runcmd"]);
        // Through the links, which stay links.
        assert!(m.is_link("etc/stackring/stackring.yaml") && m.is_link("etc/hostname"));
        assert_eq!(
            m.read("var/lib/stackring-config/hostname").as_deref(),
            Some("node9\n")
        );
        assert_eq!(m.kernel(), "node9");
        assert!(m
            .read("var/lib/stackring-config/stackring.yaml")
            .is_some_and(|c| c.contains("create: true")));
        let kept = "var/lib/stackring-firstboot/credstore";
        assert_eq!(
            m.read(&format!("{kept}/stackring.credentials")).as_deref(),
            Some("admin:seed horse")
        );
        assert_eq!(m.mode(kept), 0o700);
        assert_eq!(m.mode(&format!("{kept}/stackring.credentials")), 0o600);
        // The staged copy is gone; the secret is kept once under the root.
        assert!(!root.join("run/stackring-firstboot").exists());
        let copies = |root: &Path| {
            walk(root)
                .into_iter()
                .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("seed horse")))
                .count()
        };
        assert_eq!(copies(&root), 1);
        // Every boot: published where stackring.service's LoadCredential= finds it, owner-only.
        assert_eq!(
            publish_secrets(&m.places()),
            Ok(vec!["stackring.credentials".to_string()])
        );
        assert_eq!(
            m.read("run/credstore/stackring.credentials").as_deref(),
            Some("admin:seed horse")
        );
        assert_eq!(m.mode("run/credstore"), 0o700);
        assert_eq!(m.mode("run/credstore/stackring.credentials"), 0o600);
        // Once: a later boot with the seed still there (or another) applies nothing.
        let seed = m.seed(&[("user-data", b"#cloud-config\nhostname: other\n")]);
        assert!(matches!(
            m.apply_seed(&seed),
            Ok((Outcome::AlreadyApplied { .. }, _))
        ));
        assert_eq!(
            m.read("var/lib/stackring-config/hostname").as_deref(),
            Some("node9\n")
        );
    }

    #[test]
    fn publishing_takes_only_regular_files_and_nothing_is_nothing() {
        let m = Machine::new();
        assert_eq!(publish_secrets(&m.places()), Ok(vec![]));
        assert!(!m.dir.join("root/run/credstore").exists());
        let kept = m.dir.join("root/var/lib/stackring-firstboot/credstore");
        std::fs::create_dir_all(&kept).unwrap();
        std::os::unix::fs::symlink("/etc/shadow", kept.join("stackring.credentials")).unwrap();
        std::fs::write(kept.join("stackring.join_token"), "t0ken").unwrap();
        std::fs::write(kept.join("other"), "x").unwrap();
        assert_eq!(
            publish_secrets(&m.places()),
            Ok(vec!["stackring.join_token".to_string()])
        );
        assert!(!m
            .dir
            .join("root/run/credstore/stackring.credentials")
            .exists());
        assert!(!m.dir.join("root/run/credstore/other").exists());
    }

    #[test]
    fn a_bad_or_hostile_seed_changes_nothing_and_says_which_and_how_to_fix_it() {
        // (the seed's files, a link to make, what the refusal must name)
        type Case<'a> = (&'a [(&'a str, &'a [u8])], Option<&'a str>, &'a str);
        let huge = vec![b'#'; firstboot::MAX_SEED_FILE_BYTES + 1];
        let no_secret = "#cloud-config\nwrite_files:\n- path: /etc/stackring/stackring.yaml\n  content: 'cluster: {name: c1, credentials_file: /run/credentials/stackring.service/stackring.credentials, create: true}'\n";
        let cases: &[Case<'_>] = &[
            (&[("meta-data", b"local-hostname: bad_name\n")], None, "meta-data: local-hostname"),
            (&[("user-data", b"#!/bin/sh\nrm -rf /\n")], None, "not '#cloud-config'"),
            (&[("user-data", &huge)], None, "user-data: 1048577 bytes; fix: pass at most 1048576"),
            (&[("user-data", &[0xff, 0xfe, 0x00])], None, "not UTF-8"),
            // A link on the seed (Rock Ridge can carry one) is not followed.
            (&[], Some("user-data"), "not a regular file"),
            // A configuration naming a secret the seed does not give.
            (&[("user-data", no_secret.as_bytes())], None, "cluster.credentials_file"),
            // A good host name does not go in beside a bad configuration.
            (
                &[
                    ("meta-data", b"local-hostname: node1\n"),
                    ("user-data", b"#cloud-config\nwrite_files: [{path: /etc/stackring/stackring.yaml, content: 'server: {grpc_listen_port: 0}'}]\n"),
                ],
                None,
                "server.grpc_listen_port",
            ),
        ];
        for (files, link, says) in cases {
            let m = Machine::new();
            let seed = m.seed(files);
            if let Some(name) = link {
                std::os::unix::fs::symlink("/etc/shadow", seed.join(name)).unwrap();
            }
            let problems = m.apply_seed(&seed).unwrap_err().join("\n");
            assert!(problems.contains(says), "{files:?}: {problems}");
            assert!(problems.contains("fix"), "{files:?}: {problems}");
            assert_eq!(
                m.read("etc/stackring/stackring.yaml").as_deref(),
                Some(IMAGE)
            );
            assert_eq!(m.read("etc/hostname"), None);
            assert_eq!(m.read("var/lib/stackring-firstboot/applied"), None);
            assert!(!m
                .dir
                .join("root/var/lib/stackring-firstboot/credstore")
                .exists());
            assert!(!m.dir.join("root/run/stackring-firstboot").exists());
        }
    }

    #[test]
    fn a_credential_that_is_a_link_is_refused_not_followed() {
        let m = Machine::new();
        std::os::unix::fs::symlink("/etc/hostname", m.dir.join("creds/system.hostname")).unwrap();
        let problems = m.apply().unwrap_err().join("\n");
        assert!(
            problems.contains("system.hostname: is not a regular file; fix: "),
            "{problems}"
        );
        assert_eq!(m.read("etc/hostname"), None);
        assert_eq!(m.read("var/lib/stackring-firstboot/applied"), None);
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
