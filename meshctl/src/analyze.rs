//! `meshctl analyze`: validate mesh config offline.
//!
//! Loads every file, directory or `-` (stdin) given with `-f`, runs the same loader and
//! validator the control plane uses, and prints one coded diagnostic per problem
//! (`MSH0101 error: file:line:col (document N, Kind ns/name): field.path: message`, with a
//! `fix:` line), then a summary. Exit status: 1 when any error was found, 0 otherwise
//! (warnings do not fail the run unless `--strict`).
//!
//! Principals are checked against the mesh's trust domain (`--trust-domain`, the same flag
//! and `MESH_TRUST_DOMAIN` variable as mesh-control's; `cluster.local` by default): a
//! principal of another trust domain can never match a peer.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use mesh_api::config::{ConfigSet, Loader, Severity, validate};
use serde::Serialize;

use crate::OutputFormat;

/// Arguments of `meshctl analyze`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files or directories of YAML to check; `-` reads standard input. Repeatable.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Namespace for resources that do not name one.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// The trust domain.
    #[command(flatten)]
    pub trust_domain: crate::TrustDomainArg,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Treat warnings as errors (exit 1 when any is found).
    #[arg(long)]
    pub strict: bool,
    /// Also print informational messages (e.g. documents that are not mesh config).
    #[arg(short, long)]
    pub verbose: bool,
}

/// The JSON report.
#[derive(Debug, Serialize)]
struct Report<'a> {
    diagnostics: Vec<&'a mesh_api::config::Diagnostic>,
    summary: Summary,
}

/// Counts for the summary line.
#[derive(Debug, Serialize, Default)]
struct Summary {
    resources: usize,
    errors: usize,
    warnings: usize,
    infos: usize,
}

/// Loads, validates and prints; returns exit status 1 when errors were found.
pub fn run(args: &Args, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let set = load(args);
    print(args, &set, out)
}

fn load(args: &Args) -> ConfigSet {
    let mut loader = Loader::new().with_default_namespace(&args.namespace);
    for path in &args.files {
        if path.as_os_str() == "-" {
            loader.add_reader("<stdin>", std::io::stdin().lock());
        } else {
            loader.add_path(path);
        }
    }
    let mut set = loader.finish();
    validate::validate_with(
        &mut set,
        &validate::Options {
            trust_domain: args.trust_domain.name.clone(),
        },
    );
    // Input order for files and documents; within a document, by line.
    set.diagnostics.sort_by(|a, b| {
        let (la, lb) = (&a.location, &b.location);
        (la.file.as_ref(), la.document)
            .cmp(&(lb.file.as_ref(), lb.document))
            .then(la.line.cmp(&lb.line))
            .then(la.column.cmp(&lb.column))
    });
    set
}

fn print(args: &Args, set: &ConfigSet, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let mut summary = Summary {
        resources: set.resources.len(),
        ..Summary::default()
    };
    for d in &set.diagnostics {
        match d.severity {
            Severity::Error => summary.errors += 1,
            Severity::Warning => summary.warnings += 1,
            Severity::Info => summary.infos += 1,
        }
    }
    let shown: Vec<_> = set
        .diagnostics
        .iter()
        .filter(|d| args.verbose || d.severity != Severity::Info)
        .collect();
    match args.output {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(
                &mut *out,
                &Report {
                    diagnostics: shown,
                    summary: Summary { ..summary },
                },
            )?;
            writeln!(out)?;
        }
        OutputFormat::Text => {
            for d in &shown {
                writeln!(out, "{d}")?;
            }
            if !shown.is_empty() {
                writeln!(out)?;
            }
            let plural =
                |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
            if summary.errors == 0 && summary.warnings == 0 {
                writeln!(
                    out,
                    "✔ no problems found in {}",
                    plural(summary.resources, "resource")
                )?;
            } else {
                writeln!(
                    out,
                    "✘ {} and {} in {}",
                    plural(summary.errors, "error"),
                    plural(summary.warnings, "warning"),
                    plural(summary.resources, "loaded resource"),
                )?;
            }
        }
    }
    let failed = summary.errors > 0 || (args.strict && summary.warnings > 0);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
