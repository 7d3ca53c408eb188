//! `mesh-proxy`: the mesh's data plane.
//!
//! One binary, several roles: `mesh-proxy init` installs the traffic-capture rules in a
//! pod's network namespace ([`init`]); the proxy itself runs as a sidecar next to an
//! application, or as the ingress gateway.

use clap::{Parser, Subcommand};

pub mod init;

/// The mesh proxy.
#[derive(Debug, Parser)]
#[command(name = "mesh-proxy", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// `mesh-proxy` commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install (or with --clean, remove) the iptables rules that redirect the pod's TCP
    /// traffic through the proxy. Needs NET_ADMIN in the pod's network namespace.
    Init(init::Args),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Init(args) => init::run(&args),
    }
}
