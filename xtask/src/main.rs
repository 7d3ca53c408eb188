//! Project automation, run as `cargo xtask <command>` (an alias in `.cargo/config.toml`).
//!
//! One module per subcommand; `main` only parses arguments and dispatches.
//!
//! - `codegen`: regenerate committed generated code (protobuf, CRD YAML), or `--check` that
//!   it is fresh.
//! - `ci`: everything CI checks (fmt, clippy, codegen, all tests with e2e required).
//! - `bench`: the data-plane and control-plane benchmarks.
//! - `images`: the container images, with docker or podman when one is there.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod ci;
mod codegen;
mod images;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Project automation for the mesh workspace"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Regenerate the committed protobuf code and CRD YAML (or check that they are fresh).
    Codegen(codegen::Args),
    /// Run every CI check: fmt, clippy, codegen --check, tests (MESH_E2E=require), doc tests.
    Ci(ci::Args),
    /// Data-plane benchmark: latency, throughput, CPU and RSS of mesh vs direct vs HAProxy.
    Bench(bench::Args),
    /// Build the mesh-control, mesh-proxy and boutique container images (docker or podman).
    Images(images::Args),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Codegen(args) => codegen::run(&codegen::workspace_root(), args.check),
        Command::Ci(args) => ci::run(&codegen::workspace_root(), &args),
        Command::Bench(args) => bench::run(&codegen::workspace_root(), &args),
        Command::Images(args) => images::run(&codegen::workspace_root(), &args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
