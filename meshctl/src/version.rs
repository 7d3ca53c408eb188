//! `meshctl version`: the client's version (and, once connected, the control plane's).

use std::io::Write;
use std::process::ExitCode;

use crate::OutputFormat;

/// Arguments of `meshctl version`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// The version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Prints the version.
pub fn run(args: &Args, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    match args.output {
        OutputFormat::Text => writeln!(out, "meshctl {VERSION}")?,
        OutputFormat::Json => writeln!(
            out,
            "{}",
            serde_json::json!({ "client": { "version": VERSION } })
        )?,
    }
    Ok(ExitCode::SUCCESS)
}
