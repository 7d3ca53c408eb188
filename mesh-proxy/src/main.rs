//! `mesh-proxy`: the sidecar / gateway binary. Thin: parse the command line, run the chosen
//! command from the `mesh_proxy` library, map failures to exit codes.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = mesh_proxy::Cli::parse();
    match mesh_proxy::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mesh-proxy: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
