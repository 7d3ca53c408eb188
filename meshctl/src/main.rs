//! `meshctl`: the mesh's command-line interface. Thin: parse arguments, run the command,
//! map its outcome to an exit status. The commands live in the `meshctl` library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = meshctl::Cli::parse();
    match meshctl::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
