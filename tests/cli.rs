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
            &["node.addr", "CIDR", "'2001:DB8::'"],
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
    for cmd in ["serve", "inspect", "preflight", "config", "render"] {
        assert!(help.contains(cmd), "{help}");
    }
}
