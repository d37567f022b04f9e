//! The CLI's contract for scripts: `config validate` exit codes and messages, `--config` placement.

mod common;
use common::*;
use std::process::Command;

fn validate(yaml: &str) -> (i32, String) {
    let dir = std::env::temp_dir().join(format!("stackring-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!(
        "c{}.yaml",
        yaml.len() ^ yaml.bytes().map(u32::from).sum::<u32>() as usize
    ));
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(STACKRING)
        .args(["config", "validate"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stderr) + &text(&out.stdout),
    )
}

#[test]
fn config_validate_exits_78_naming_key_value_and_fix() {
    let table: &[(&str, &[&str])] = &[
        (
            "lifecycler:\n  address: '::'\n",
            &["lifecycler.address", "'::'", "unspecified", "fix:"],
        ),
        (
            "lifecycler: {address: '192.0.2.5'}\nnode: {addr: '2001:db8::5'}\n",
            &[
                "lifecycler.address",
                "'192.0.2.5'",
                "node.addr",
                "IPv6",
                "fix:",
            ],
        ),
        (
            "server: {grpc_listen_port: 3200}\n",
            &["server.http_listen_port", "3200", "share a port"],
        ),
        (
            "node: {addr: '2001:DB8::/32'}\n",
            &["node.addr", "CIDR", "fix:"],
        ),
        (
            "lifecycler: {interface_names: ['this-name-is-too-long']}\n",
            &["interface_names[0]", "15 bytes"],
        ),
        (
            "server: {grpc_listen_port: 99999}\n",
            &["server.grpc_listen_port", "99999", "1–65535"],
        ),
        (
            "server: {grpc_listen_port: nine}\n",
            &["server.grpc_listen_port", "not a port"],
        ),
        ("server: [unclosed\n", &["not valid YAML"]),
        ("sever: {}\n", &["sever", "not a known key", "server"]),
    ];
    for (yaml, needles) in table {
        let (code, msg) = validate(yaml);
        assert_eq!(code, 78, "{yaml:?}: {msg}");
        for n in *needles {
            assert!(msg.contains(n), "{yaml:?}: {n:?} missing in {msg}");
        }
    }
    let (code, msg) = validate("server: {grpc_listen_port: 9095}\nlifecycler: {port: 19095}\n");
    assert_eq!(code, 0, "{msg}");
}

#[test]
fn config_goes_before_or_after_the_subcommand_and_a_missing_explicit_file_is_an_error() {
    for args in [
        &["--config", "/nonexistent/x.yaml", "render", "env"][..],
        &["render", "env", "--config", "/nonexistent/x.yaml"][..],
    ] {
        let out = Command::new(STACKRING).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(78), "{args:?}");
        assert!(
            text(&out.stderr).contains("/nonexistent/x.yaml"),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn help_lists_every_subcommand() {
    let out = Command::new(STACKRING).arg("--help").output().unwrap();
    let help = text(&out.stdout);
    // Each command on a line of its own in the Commands section (not a word found in an option).
    let commands: Vec<&str> = help
        .split("Commands:")
        .nth(1)
        .unwrap_or_default()
        .split("Options:")
        .next()
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for cmd in [
        "serve",
        "inspect",
        "preflight",
        "config",
        "render",
        "node",
        "cluster",
        "status",
        "wait",
    ] {
        assert!(
            commands.contains(&cmd),
            "{cmd} missing from {commands:?}\n{help}"
        );
    }
}

/// `stackring --config F config validate` checks F, like every other command reads it.
#[test]
fn config_validate_takes_the_global_config() {
    let dir = std::env::temp_dir().join(format!("stackring-cli-global-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "lifecycler: {address: '::'}\n").unwrap();
    let out = Command::new(STACKRING)
        .args(["--config", bad.to_str().unwrap(), "config", "validate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("lifecycler.address"),
        "{}",
        text(&out.stderr)
    );
    let good = dir.join("good.yaml");
    std::fs::write(&good, "lifecycler: {port: 19095}\n").unwrap();
    let out = Command::new(STACKRING)
        .args(["config", "validate", "--config", good.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--version` names the build: version and commit.
#[test]
fn version_names_the_commit() {
    let out = Command::new(STACKRING).arg("--version").output().unwrap();
    let v = text(&out.stdout);
    let commit = v
        .split('(')
        .nth(1)
        .and_then(|rest| rest.strip_suffix(")\n"))
        .unwrap_or_default();
    assert!(
        v.starts_with(&format!("stackring {} (", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
    assert!(
        commit == "unknown commit"
            || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{v}"
    );
}

/// Completions and a man page from the same definitions as `--help`; exit codes documented.
#[test]
fn completions_man_page_and_exit_codes() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(STACKRING)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let script = text(&out.stdout);
        assert!(
            script.contains("stackring") && script.contains("external_addr"),
            "{shell}: {script}"
        );
    }
    let out = Command::new(STACKRING).arg("man").output().unwrap();
    let page = text(&out.stdout);
    assert!(page.contains(".TH stackring"), "{page}");
    assert!(page.contains("Exit codes"), "{page}");
    let out = Command::new(STACKRING).arg("--help").output().unwrap();
    let help = text(&out.stdout);
    assert!(
        help.contains("Exit codes: 0 success") && help.contains("78"),
        "{help}"
    );
    let out = Command::new(STACKRING)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

/// Without a daemon the admin commands say so, and how to start it (not "Connection refused").
#[test]
fn admin_commands_without_a_daemon_say_it_is_not_running() {
    let dir = std::env::temp_dir().join(format!("stackring-cli-nodaemon-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("c.yaml");
    std::fs::write(
        &config,
        format!("node:\n  runtime_dir: {}\n", dir.display()),
    )
    .unwrap();
    // A stale socket left by a daemon that stopped, and no socket at all.
    for stale in [true, false] {
        let socket = dir.join("admin.sock");
        let _ = std::fs::remove_file(&socket);
        if stale {
            drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        }
        for args in [
            &["status"][..],
            &["status", "nodes"],
            &["node", "node2", "forget"],
        ] {
            let out = Command::new(STACKRING)
                .arg("--config")
                .arg(&config)
                .args(args)
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(1), "{args:?}");
            let err = text(&out.stderr);
            assert!(
                err.contains("not running") && err.contains("systemctl start stackring"),
                "stale={stale} {args:?}: {err}"
            );
        }
    }
}

/// `node.addr: 2001:db8:5a::/64` (what `ip addr` prints, or the seed's `"addr": "2001:DB8::/32"`)
/// on a real host: the fix names the address this host has in that network, read from its
/// interfaces, else one of its family, else says there is none and how to list them.
#[test]
fn a_network_for_node_addr_gets_an_address_the_host_has() {
    let ns = Netns::new("cidrfix");
    ns.nic("e0")
        .addr("2001:db8:5a::17/64", "e0")
        .addr("192.0.2.17/24", "e0");
    let v4_only = Netns::new("cidrfix4");
    v4_only.nic("e0").addr("192.0.2.17/24", "e0");
    for (host, yaml, needles) in [
        (
            &ns,
            "node:\n  addr: 2001:db8:5a::/64\n",
            &[
                "node.addr",
                "CIDR",
                "in 2001:db8:5a::/64",
                "'2001:db8:5a::17'",
            ][..],
        ),
        (
            &ns,
            "node:\n  addr: 2001:DB8::/32\n",
            &["in 2001:db8::/32", "'2001:db8:5a::17'"],
        ),
        (
            &ns,
            "node:\n  addr: 2001:db9::/32\n",
            &[
                "no address of this host is in 2001:db9::/32",
                "'2001:db8:5a::17'",
            ],
        ),
        (
            &ns,
            "node:\n  external_addr: [198.51.100.0/24]\n",
            &["node.external_addr[0]", "'192.0.2.17'"],
        ),
        (
            &v4_only,
            "node:\n  addr: 2001:DB8::/32\n",
            &["no usable IPv6 address", "stackring inspect"],
        ),
    ] {
        let out = host.stackring(yaml, &["config", "validate"]);
        let said = text(&out.stderr) + &text(&out.stdout);
        assert_eq!(out.status.code(), Some(78), "{yaml:?}: {said}");
        for n in needles {
            assert!(said.contains(n), "{yaml:?}: {n:?} missing in {said}");
        }
        assert!(
            !said.contains("::1'"),
            "{yaml:?}: an address made up: {said}"
        );
    }
}
