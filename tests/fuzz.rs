//! CI's share of the fuzzing: every target in `fuzz/` runs for a few seconds from its committed
//! corpus (fuzz/run runs them for minutes). Needs cargo-fuzz (`.ci/run` installs it): without it
//! the test is skipped, loudly, outside CI and fails in CI (`CI=true`).
//!
//! cargo fuzz passes nightly-only `-Z` flags to rustc; the one stable toolchain here takes them
//! with RUSTC_BOOTSTRAP=1. The build goes to the target dir fuzz/run uses
//! (STACKRING_FUZZ_TARGET_DIR, default /var/tmp/stackring-fuzz-target), so a second run rebuilds
//! only what changed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Seconds each target runs.
const SECONDS: u32 = 5;

fn cargo_fuzz(fuzz_dir: &Path) -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.arg("fuzz")
        .current_dir(fuzz_dir)
        .env("RUSTC_BOOTSTRAP", "1")
        .env(
            "CARGO_BUILD_JOBS",
            std::env::var("CARGO_BUILD_JOBS").unwrap_or_else(|_| "1".into()),
        );
    c
}

fn target_dir() -> String {
    std::env::var("STACKRING_FUZZ_TARGET_DIR")
        .unwrap_or_else(|_| "/var/tmp/stackring-fuzz-target".into())
}

#[test]
fn every_fuzz_target_runs_clean_from_its_corpus() {
    let fuzz_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let installed = cargo_fuzz(&fuzz_dir)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
        assert!(
            !in_ci,
            "cargo-fuzz is not installed; fix: cargo install cargo-fuzz --locked (.ci/run does)"
        );
        eprintln!(
            "\n*** SKIPPED: fuzz targets not run: cargo-fuzz is not installed \
             (cargo install cargo-fuzz --locked) ***\n"
        );
        return;
    }
    let started = Instant::now();
    let flags = ["-s", "none", "--target-dir", &target_dir()].map(String::from);
    let build = cargo_fuzz(&fuzz_dir)
        .arg("build")
        .args(&flags)
        .status()
        .expect("cargo fuzz build");
    assert!(build.success(), "cargo fuzz build failed");
    eprintln!("fuzz targets built in {:?}", started.elapsed());

    let list = cargo_fuzz(&fuzz_dir)
        .arg("list")
        .output()
        .expect("cargo fuzz list");
    let targets: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    assert!(targets.len() >= 7, "fuzz targets: {targets:?}");

    let scratch = std::env::temp_dir().join(format!("stackring-fuzz-{}", std::process::id()));
    let mut failures = Vec::new();
    for t in &targets {
        let seeds = fuzz_dir.join("corpus").join(t);
        assert!(
            std::fs::read_dir(&seeds).is_ok_and(|mut d| d.next().is_some()),
            "{t}: no committed corpus in {}",
            seeds.display()
        );
        // New inputs go to a scratch directory: the committed corpus is only read.
        let new = scratch.join(t);
        std::fs::create_dir_all(&new).unwrap();
        let out = cargo_fuzz(&fuzz_dir)
            .arg("run")
            .args(&flags)
            .arg(t)
            .arg(&new)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={SECONDS}"))
            .arg("-timeout=25")
            .arg("-rss_limit_mb=2048")
            .arg("-print_final_stats=1")
            .arg(format!("-artifact_prefix={}/", new.display()))
            .output()
            .expect("cargo fuzz run");
        let log = String::from_utf8_lossy(&out.stderr);
        let execs = log
            .lines()
            .rfind(|l| l.starts_with("stat::number_of_executed_units"))
            .unwrap_or("stat::number_of_executed_units: ?")
            .to_string();
        eprintln!("{t}: {execs}, exit {:?}", out.status.code());
        if !out.status.success() {
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            failures.push(format!("{t}:\n{}", tail.join("\n")));
        }
    }
    eprintln!(
        "{} fuzz targets, {SECONDS} s each, in {:?} with the build",
        targets.len(),
        started.elapsed()
    );
    if failures.is_empty() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    assert!(
        failures.is_empty(),
        "fuzz targets failed (inputs kept in {}):\n{}",
        scratch.display(),
        failures.join("\n\n")
    );
}
