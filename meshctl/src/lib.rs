//! `meshctl`: install, inspect and check the mesh from the command line.
//!
//! Each subcommand is a module with an `Args` type (clap) and a `run` function; [`run`]
//! dispatches. Commands return the process exit status they want: `analyze` exits 1 when it
//! finds errors, so scripts and CI can gate on it. Failures to do the job at all (an
//! unwritable output, a bad flag value) are `anyhow` errors and exit 2.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod analyze;
pub mod check;
pub mod cluster;
pub mod control;
pub mod demo;
pub mod inject;
pub mod install;
pub mod manifest;
pub mod output;
pub mod precheck;
pub mod proxy_config;
pub mod proxy_status;
pub mod stat;
pub mod uninstall;
pub mod version;

#[cfg(test)]
#[path = "../tests/support/fixtures.rs"]
mod fixtures;

/// The mesh's command-line interface.
#[derive(Debug, Parser)]
#[command(name = "meshctl", version, about, propagate_version = true)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// meshctl's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install the mesh into the current Kubernetes cluster, or upgrade it.
    Install(install::Args),
    /// Remove the mesh from the cluster (`--purge` also removes its CRDs).
    Uninstall(uninstall::Args),
    /// Check that the cluster is ready for `meshctl install`.
    Precheck(precheck::Args),
    /// Check an installed mesh: control plane, webhook, CA, proxies.
    Check(check::Args),
    /// Print the manifests `meshctl install` applies.
    Manifest(manifest::Args),
    /// Validate mesh config offline: YAML files, directories, or `-` for stdin.
    Analyze(analyze::Args),
    /// Add the mesh sidecar to the workloads of a manifest (file or `-` for stdin) and
    /// print it.
    Inject(inject::Args),
    /// Show every connected proxy and whether its config is in sync with the control plane.
    ProxyStatus(proxy_status::Args),
    /// Show the config the control plane computed for one proxy (or, with `secret`, the
    /// certificate its CA issued to it).
    ProxyConfig(proxy_config::Args),
    /// Run the Online Boutique on the mesh on this machine, with a live table of golden
    /// metrics (local mode, no root, no Kubernetes).
    Demo(demo::Args),
    /// Print the golden metrics of every meshed workload once (the demo's, or --metrics).
    Stat(stat::Args),
    /// Print meshctl's version.
    Version(version::Args),
}

/// Runs a parsed command line, returning the exit status.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Install(args) => install::run(&args, &mut std::io::stdout().lock()),
        Command::Uninstall(args) => uninstall::run(&args, &mut std::io::stdout().lock()),
        Command::Precheck(args) => precheck::run(&args, &mut std::io::stdout().lock()),
        Command::Check(args) => check::run(&args, &mut std::io::stdout().lock()),
        Command::Manifest(args) => manifest::run(&args, &mut std::io::stdout().lock()),
        Command::Analyze(args) => analyze::run(&args, &mut std::io::stdout().lock()),
        Command::Inject(args) => inject::run(
            &args,
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        ),
        Command::ProxyStatus(args) => proxy_status::run(&args, &mut std::io::stdout().lock()),
        Command::ProxyConfig(args) => proxy_config::run(&args, &mut std::io::stdout().lock()),
        Command::Demo(args) => demo::run(&args, &mut std::io::stdout().lock()),
        Command::Stat(args) => stat::run(&args, &mut std::io::stdout().lock()),
        Command::Version(args) => version::run(&args, &mut std::io::stdout().lock()),
    }
}

/// `--trust-domain`: the mesh's SPIFFE trust domain, as given to mesh-control. Shared by
/// the commands that need it (`analyze` reports principals no peer can have, `inject`
/// configures proxies).
#[derive(Debug, Clone, clap::Args)]
pub struct TrustDomainArg {
    /// The mesh's SPIFFE trust domain (as given to mesh-control).
    #[arg(
        long = "trust-domain",
        value_name = "DOMAIN",
        env = "MESH_TRUST_DOMAIN",
        default_value = mesh_api::spiffe::DEFAULT_TRUST_DOMAIN,
        value_parser = parse_trust_domain,
    )]
    pub name: String,
}

/// Checks a trust domain as the identities' parser does (lower-case DNS-like name).
fn parse_trust_domain(s: &str) -> Result<String, String> {
    mesh_api::spiffe::SpiffeId::new(s, "default", "default")
        .map(|_| s.to_owned())
        .map_err(|e| e.to_string())
}

/// Output formats shared by commands that print structured results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Human-readable text.
    Text,
    /// JSON, for machines.
    Json,
}

#[cfg(test)]
mod cli_tests {
    /// clap's own consistency checks (unique argument and group ids across flattened
    /// structs, valid defaults), which otherwise only fire when a command is first parsed
    /// in a debug build.
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory as _;
        super::Cli::command().debug_assert();
    }
}
