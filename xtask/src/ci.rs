//! `cargo xtask ci`: everything CI checks, in one command anyone can run.
//!
//! 1. system prerequisites for the end-to-end tests (installed with apt-get when running as
//!    root on Debian/Ubuntu and missing; otherwise reported),
//! 2. `cargo fmt --check`,
//! 3. `cargo clippy --workspace --all-targets -D warnings`,
//! 4. `cargo xtask codegen --check`,
//! 5. every test with cargo-nextest (or `cargo test` when nextest is missing), with
//!    `MESH_E2E=require` so that end-to-end tests fail instead of skipping,
//! 6. the doc tests (nextest does not run them).
//!
//! Steps run in order and stop at the first failure, naming the step and how to reproduce it.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

/// Options of `cargo xtask ci`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Do not install missing system packages, only report them.
    #[arg(long)]
    pub(crate) no_install: bool,
    /// Skip fmt, clippy and codegen checks (run tests only).
    #[arg(long)]
    pub(crate) tests_only: bool,
}

/// The Debian packages the tests need, with a binary on PATH (or an absolute path) that
/// shows each is present. The end-to-end tests run real third-party clients and servers:
/// curl, Python grpcio, redis, Prometheus.
const SYSTEM_PACKAGES: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("iptables", "iptables"),
    ("nsenter", "util-linux"),
    ("setpriv", "util-linux"),
    ("curl", "curl"),
    ("openssl", "openssl"),
    ("/usr/bin/python3", "python3"),
    (
        "/usr/lib/python3/dist-packages/grpc/__init__.py",
        "python3-grpcio",
    ),
    (
        "/usr/lib/python3/dist-packages/grpc_tools/__init__.py",
        "python3-grpc-tools",
    ),
    ("redis-server", "redis-server"),
    ("redis-cli", "redis-tools"),
    ("prometheus", "prometheus"),
    ("promtool", "prometheus"),
];

/// Runs all CI steps from the workspace root.
pub(crate) fn run(root: &Path, args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    step("system prerequisites", || prerequisites(!args.no_install))?;
    if !args.tests_only {
        step("cargo fmt --check", || {
            cargo(
                root,
                &["fmt", "--all", "--", "--check"],
                "run `cargo fmt --all`",
            )
        })?;
        step("cargo clippy", || {
            cargo(
                root,
                &[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ],
                "fix the lints above (`cargo clippy --workspace --all-targets`)",
            )
        })?;
        step("codegen --check", || crate::codegen::run(root, true))?;
    }
    step("tests (MESH_E2E=require)", || tests(root))?;
    step("doc tests", || {
        cargo(
            root,
            &["test", "--workspace", "--doc"],
            "run `cargo test --workspace --doc`",
        )
    })?;
    println!(
        "\n== xtask ci: all steps passed in {:.0}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn step(name: &str, f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    println!("\n== {name}");
    let t = Instant::now();
    f().with_context(|| format!("xtask ci: step `{name}` failed"))?;
    println!("== {name}: ok ({:.1}s)", t.elapsed().as_secs_f64());
    Ok(())
}

fn cargo(root: &Path, args: &[&str], hint: &str) -> anyhow::Result<()> {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .current_dir(root)
        .status()
        .with_context(|| format!("cannot run cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status}); {hint}", args.join(" "));
    }
    Ok(())
}

fn tests(root: &Path) -> anyhow::Result<()> {
    let cargo_bin = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let has_nextest = Command::new(&cargo_bin)
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut cmd = Command::new(&cargo_bin);
    if has_nextest {
        cmd.args(["nextest", "run", "--workspace", "--profile", "ci"]);
    } else {
        println!(
            "cargo-nextest not found; using cargo test (install: cargo install cargo-nextest)"
        );
        cmd.args(["test", "--workspace"]);
    }
    let status = cmd
        .env("MESH_E2E", "require")
        .current_dir(root)
        .status()
        .context("cannot run the tests")?;
    if !status.success() {
        bail!(
            "tests failed ({status}); rerun one with `MESH_E2E=require cargo nextest run -p <crate> <test name>`"
        );
    }
    Ok(())
}

fn which(bin: &str) -> bool {
    if bin.starts_with('/') {
        return Path::new(bin).exists();
    }
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| dir.join(bin).is_file())
            || ["/usr/sbin", "/sbin"]
                .iter()
                .any(|d| Path::new(d).join(bin).is_file())
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn prerequisites(install: bool) -> anyhow::Result<()> {
    let mut missing: Vec<&str> = SYSTEM_PACKAGES
        .iter()
        .filter(|(bin, _)| !which(bin))
        .map(|(_, pkg)| *pkg)
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        println!(
            "all present: {}",
            SYSTEM_PACKAGES
                .iter()
                .map(|(b, _)| *b)
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(());
    }
    let list = missing.join(" ");
    if !install {
        println!("missing packages: {list} (end-to-end tests will fail under MESH_E2E=require)");
        return Ok(());
    }
    if !is_root() || !which("apt-get") {
        bail!(
            "missing packages for the end-to-end tests: {list}; install them (e.g. `sudo apt-get install -y {list}`) and run as root, or set MESH_E2E=skip to run without e2e tests"
        );
    }
    println!("installing: {list}");
    let update = Command::new("apt-get")
        .args(["update", "-qq"])
        .status()
        .context("cannot run apt-get update")?;
    if !update.success() {
        bail!("`apt-get update` failed ({update}); check the package mirror is reachable");
    }
    let status = Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("cannot run apt-get install")?;
    if !status.success() {
        bail!("`apt-get install {list}` failed ({status})");
    }
    Ok(())
}
