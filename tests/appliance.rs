//! The appliance checks, run as cargo integration tests: each test drives one script of
//! `tests/appliance/` and fails with that script's whole output.
//!
//! - `unit_verify`: `systemd-analyze verify` is clean for the units of `systemd/` (the agent,
//!   `stackring-wait-online.service`, `stackring-online.target`) and the image's own (the boot
//!   report of the test build, the firewall, the example consumer `stackring-identity-motd.service`),
//!   and the waiting design
//!   holds: no `network-online.target` ordering and no `ExecStartPre=` gate on the agent, the
//!   wait service and target static, wired as `systemd-networkd-wait-online` is.
//! - `unit_security`: `systemd-analyze security --offline=true` rates `stackring.service` and
//!   `stackring-wait-online.service` each with exposure <= 2.0.
//! - `nix_parse_and_eval`: every `.nix` file parses; what needs no nixpkgs evaluates (the NixOS
//!   appliance's partitions and sysupdate transfers say what `image/`'s say); the cluster VM
//!   test's script runs against the agent in network namespaces.
//! - `production_image_has_no_test_aid_and_the_basics`: `image/build` (the production image, no
//!   `--test`), read with debugfs: no boot report nor anything enabling it, the firewall and
//!   timesyncd enabled, Debian's `nftables.service` not, fsck for ext4 and vfat present; the A/B
//!   layout and verity root hash; signed updates (`Verify=yes`, the build's key alone in
//!   `/etc/systemd/import-pubring.gpg`, `SHA256SUMS.gpg` its good signature); an empty
//!   machine-id; an initrd with only the modules that find the root.
//! - `image_build_and_boot_ipv6_only`: `cargo build --release`, `image/build --test` (mkosi 24), a QEMU
//!   boot on an IPv6-only QEMU user network, the agent active with IPv6 chosen, graceful power-off.
//! - `image_cluster_two_vms_ipv6_bridge_in_netns`: two VMs of the same image on an IPv6-only
//!   bridge in a network namespace made by the test (tap devices, radvd); from the namespace
//!   over IPv6 each VM's HTTP API answers; told apart only by SMBIOS type 11 first-boot
//!   credentials (host name, configuration, password), vm1 creates the cluster and vm2 joins it
//!   by themselves; `stackring status nodes` inside both VMs (through the QEMU guest agent)
//!   lists both nodes ACTIVE over IPv6; the firewall drops a port it does not open; vm2's agent
//!   stopped shows LEFT, then rejoins.
//! - `image_boot_qemu_default_ipv6_site_local`: a boot on QEMU's plain IPv6 user network
//!   (`-netdev user,id=n0,ipv4=off,ipv6=on`, SLAAC in site-local `fec0::/64`): the boot finishes
//!   in normal time, the agent advertises the `fec0:` address (a last resort) unrestarted, the
//!   preflight warns `addr.site_local` and passes, `stackring-online.target` starts at once and
//!   the example consumer writes the identity.
//! - `image_boot_kernel_command_line_credentials`: the UKI's kernel, initrd and command line booted
//!   directly with `systemd.set_credential=system.hostname:kcmd1` and a base64
//!   `systemd.set_credential_binary=stackring.yaml:` appended: the first boot names the host and
//!   writes the configuration from them, and the agent is node `kcmd1`.
//! - `image_boot_no_network`: a boot without any network device: the boot finishes in normal
//!   time (nothing waits for stackring), the agent is active and unrestarted with STATUS=
//!   `waiting: ...`, `/ready` answers 503 with the reason, `stackring wait --timeout 3s` exits 1,
//!   a consumer of `stackring-online.target` waits without holding the system up; then an
//!   address appears inside the VM (a veth pair) and the identity, `stackring wait` and the
//!   consumer follow within seconds.
//! - `image_update_a_b_blessed_then_a_broken_version_rolled_back`: versions 1, 2 and 3 of the
//!   test image (3 with a stackring that exits at once); one VM of version 1 with a 4 GB disk
//!   (`/var` grown to it at first boot, fsck clean) updates itself with `systemd-sysupdate` from
//!   an HTTP server on its bridge, refusing what the image's key did not sign (another key's
//!   signature, a SHA256SUMS changed after signing, none), to version 2 in root slot B and
//!   reboots into it: blessed by
//!   `stackring-boot-health.service`, host name, cluster and state kept; then to version 3, in
//!   version 1's slot, which fails its health check three boots in a row, and systemd-boot boots
//!   version 2 again by itself (`stackring_3+0-3.efi`).
//! - `image_verity_refuses_a_changed_root_block`: one byte of the test image's root slot A
//!   changed (the first block of `/usr/bin/stackring`): booted, dm-verity refuses exactly that
//!   block and the agent never runs.
//!
//! The VM tests take turns (two TCG VMs at most on a 2-core machine).
//!
//! A missing tool (systemd-analyze, mkosi, QEMU, nix-instantiate) or not being root skips a test
//! on a developer's machine (saying so on stderr) but fails it in CI (`CI=true`): CI must really
//! run them. `image/deps` installs the tools. `STACKRING_SKIP_IMAGE=1` skips the image test
//! outside CI (it takes minutes).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// Held by a test while its VM runs.
static VM: Mutex<()> = Mutex::new(());

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether a prerequisite holds. Outside CI a missing one skips the test (returns false);
/// in CI it fails the test.
fn require(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if in_ci() {
        panic!("CI=true but {what}: install it with image/deps (the test must run in CI)");
    }
    eprintln!("SKIPPED: {what} (outside CI; image/deps installs the tools)");
    false
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a command from the repository root with stdout and stderr merged, echoes the output, and
/// panics with all of it when the command fails.
fn run(program: &Path, args: &[&str], what: &str) -> String {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("exec \"$0\" \"$@\" 2>&1")
        .arg(program)
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::null());
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {}: {e}", program.display()));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{text}");
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{text}",
        out.status
    );
    text
}

fn script(name: &str) -> PathBuf {
    repo().join("tests/appliance").join(name)
}

/// Runs `tests/appliance/unit-check <mode>` and asserts its PASS line.
fn unit_check(mode: &str, pass: &str) {
    if !require(have("systemd-analyze"), "systemd-analyze is not installed") {
        return;
    }
    let out = run(
        &script("unit-check"),
        &[mode, env!("CARGO_BIN_EXE_stackring")],
        &format!("systemd-analyze {mode}"),
    );
    assert!(out.contains(pass), "{out}");
}

#[test]
fn unit_verify() {
    unit_check("verify", "PASS: systemd-analyze verify is clean");
}

#[test]
fn unit_security() {
    unit_check("security", "PASS: exposure");
}

#[test]
fn nix_parse_and_eval() {
    if !require(
        have("nix-instantiate"),
        "nix-instantiate (nix-bin) is not installed",
    ) {
        return;
    }
    // With the binary (and root) the cluster VM test's script also runs against the agent.
    let out = run(
        &script("nix-check"),
        &[env!("CARGO_BIN_EXE_stackring")],
        "nix checks",
    );
    assert!(out.contains("PASS: nix"), "{out}");
}

/// Builds the release binary (the image ships it, whatever profile these tests were built with)
/// and returns its path; `None` when the image tests are skipped.
fn release_binary() -> Option<PathBuf> {
    if !in_ci() && std::env::var("STACKRING_SKIP_IMAGE").is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED: STACKRING_SKIP_IMAGE=1");
        return None;
    }
    let ready = require(
        is_root(),
        "not root (mkosi and network namespaces need root)",
    ) && require(have("mkosi"), "mkosi is not installed")
        && require(
            have("qemu-system-x86_64"),
            "qemu-system-x86_64 is not installed",
        );
    if !ready {
        return None;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(
        Path::new(&cargo),
        &["build", "--release", "--bin", "stackring"],
        "cargo build --release",
    );
    // CARGO_BIN_EXE_stackring is <target>/<profile>/stackring: the release one is beside it.
    let target = Path::new(env!("CARGO_BIN_EXE_stackring"))
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    Some(target.join("release/stackring"))
}

fn boot_test(net: &str, vms: u32) {
    boot_test_with(net, vms, &[]);
}

fn boot_test_with(net: &str, vms: u32, extra: &[&str]) {
    let Some(bin) = release_binary() else {
        return;
    };
    if net == "bridge" && !require(have("radvd"), "radvd is not installed") {
        return;
    }
    let _vm = VM.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let vms = vms.to_string();
    let mut args = vec![
        "--net",
        net,
        "--vms",
        &vms,
        "--bin",
        bin.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    let out = run(
        &script("boot-test"),
        &args,
        &format!("image build and boot test ({net}, {vms} VMs {extra:?})"),
    );
    assert!(out.contains("PASS: boot test"), "{out}");
}

#[test]
fn production_image_has_no_test_aid_and_the_basics() {
    let Some(bin) = release_binary() else {
        return;
    };
    if !require(have("debugfs"), "debugfs is not installed (e2fsprogs)") {
        return;
    }
    let _vm = VM.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let out = run(
        &script("image-check"),
        &[bin.to_str().expect("utf-8 path")],
        "the production image check",
    );
    assert!(out.contains("PASS: the production image"), "{out}");
}

#[test]
fn image_build_and_boot_ipv6_only() {
    boot_test("user6", 1);
}

#[test]
fn image_cluster_two_vms_ipv6_bridge_in_netns() {
    boot_test("bridge", 2);
}

#[test]
fn image_boot_qemu_default_ipv6_site_local() {
    boot_test("user6-default", 1);
}

/// The first-boot data on the kernel command line (`systemd.set_credential=`): the UKI's own
/// kernel, initrd and command line booted directly, the credentials appended.
#[test]
fn image_boot_kernel_command_line_credentials() {
    boot_test_with("user6", 1, &["--cmdline-credentials"]);
}

#[test]
fn image_boot_no_network() {
    boot_test("none", 1);
}

/// Runs the VM script `name --bin <release binary>` once `tool` is there, its VM taking its turn,
/// and asserts its PASS line.
fn vm_script(name: &str, tool: &str, what: &str, pass: &str) {
    let Some(bin) = release_binary() else {
        return;
    };
    if !require(have(tool), &format!("{tool} is not installed")) {
        return;
    }
    let _vm = VM.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let out = run(
        &script(name),
        &["--bin", bin.to_str().expect("utf-8 path")],
        what,
    );
    assert!(out.contains(pass), "{out}");
}

#[test]
fn image_verity_refuses_a_changed_root_block() {
    vm_script(
        "verity-test",
        "debugfs",
        "the dm-verity test",
        "PASS: verity refused the changed root block",
    );
}

#[test]
fn image_update_a_b_blessed_then_a_broken_version_rolled_back() {
    vm_script(
        "update-test",
        "radvd",
        "the A/B update and rollback test",
        "PASS: update 1 → 2 blessed",
    );
}
