//! Compiles proto/ with protox (pure Rust: no protoc on the build machine) and keeps the encoded
//! descriptor set for gRPC reflection.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    // `stackring --version` names the commit it was built from (a build without git says so).
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
    };
    // Rebuild when HEAD moves: watch HEAD and the branch it names, only where they exist (a
    // missing path would rebuild every time; in a worktree `.git` is a file).
    let mut watched = Vec::new();
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        watched.push(std::path::Path::new(&dir).join("HEAD"));
    }
    if let (Some(common), Some(branch)) = (
        git(&["rev-parse", "--git-common-dir"]),
        git(&["rev-parse", "--symbolic-full-name", "HEAD"]),
    ) {
        watched.push(std::path::Path::new(&common).join(branch));
        watched.push(std::path::Path::new(&common).join("packed-refs"));
    }
    for path in watched.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    let commit =
        git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown commit".into());
    let version = std::env::var("CARGO_PKG_VERSION")?;
    println!("cargo:rustc-env=STACKRING_VERSION={version} ({commit})");
    // One word for tables (`status nodes` VERSION): 0.1.0+5ae489c.
    let short: String = commit.chars().take(7).collect();
    let build = if commit.starts_with("unknown") {
        version
    } else {
        format!("{version}+{short}")
    };
    println!("cargo:rustc-env=STACKRING_BUILD={build}");
    let fds = protox::compile(["proto/stackring.proto"], ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("stackring_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
