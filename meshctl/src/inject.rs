//! `meshctl inject`: sidecar injection of manifests, offline (Istio's `kube-inject`).
//!
//! Reads a YAML stream from a file or `-` (stdin), injects every workload's pod template
//! with the same pure function mesh-control's admission webhook runs
//! ([`mesh_api::inject::inject_yaml`]), and prints the stream to stdout: Services,
//! ConfigMaps and other kinds exactly as written, documents in input order. Injecting the
//! output again changes nothing.
//!
//! For manifests applied to namespaces *without* the `mesh-injection=enabled` label, or to
//! see what the webhook would do. Warnings (e.g. no native sidecars with
//! `--no-native-sidecars`) and the workloads left alone go to stderr. Invalid input (bad
//! YAML, an invalid annotation, a field the Pod API does not have) prints one error naming
//! the file, the document and the resource, nothing on stdout, and exits 1.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use mesh_api::config::load::MAX_FILE_BYTES;
use mesh_api::inject::{self, Context, DocumentResult};
use mesh_api::spiffe::SpiffeId;

/// Arguments of `meshctl inject`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The manifest to inject; `-` reads standard input.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: PathBuf,
    /// Registry and repository prefix of the proxy image (`<hub>/mesh-proxy:<tag>`).
    #[arg(long, value_name = "HUB", default_value = inject::DEFAULT_HUB, conflicts_with = "image")]
    pub hub: String,
    /// Tag of the proxy image.
    #[arg(long, value_name = "TAG", default_value = inject::DEFAULT_TAG, conflicts_with = "image")]
    pub tag: String,
    /// The whole proxy image reference (instead of --hub and --tag).
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// The control plane's address as the proxies reach it.
    #[arg(long, value_name = "HOST:PORT", default_value = inject::DEFAULT_CONTROL_PLANE_ADDR)]
    pub control_plane_addr: String,
    /// The trust domain.
    #[command(flatten)]
    pub trust_domain: crate::TrustDomainArg,
    /// The control plane's SPIFFE identity
    /// (default `spiffe://<trust-domain>/ns/mesh-system/sa/mesh-control`).
    #[arg(long, value_name = "SPIFFE_ID")]
    pub control_plane_identity: Option<SpiffeId>,
    /// For Kubernetes before 1.29: inject the proxy as the first container instead of a
    /// native sidecar (restartable init container).
    #[arg(long)]
    pub no_native_sidecars: bool,
    /// The proxies' tracing filter (`MESH_LOG`).
    #[arg(long, value_name = "FILTER", default_value = inject::DEFAULT_LOG_LEVEL)]
    pub log_level: String,
    /// Namespace of resources that do not name one (for the identity check and messages).
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
}

impl Args {
    /// The injection settings these flags describe.
    pub fn context(&self) -> Context {
        Context {
            image: self
                .image
                .clone()
                .unwrap_or_else(|| Context::image(&self.hub, &self.tag)),
            control_plane_addr: self.control_plane_addr.clone(),
            trust_domain: self.trust_domain.name.clone(),
            control_plane_identity: self.control_plane_identity.clone(),
            native_sidecars: !self.no_native_sidecars,
            log_level: self.log_level.clone(),
            namespace: self.namespace.clone(),
            ..Context::default()
        }
    }
}

/// Injects the file and prints the result to `out`; warnings, notes and errors go to
/// `err`. Exit status 1 when the input cannot be injected.
pub fn run(args: &Args, out: &mut impl Write, err: &mut impl Write) -> anyhow::Result<ExitCode> {
    let name = if args.file.as_os_str() == "-" {
        "<stdin>".to_owned()
    } else {
        args.file.display().to_string()
    };
    let text = match read(args) {
        Ok(text) => text,
        Err(e) => {
            writeln!(err, "error: {name}: {e}")?;
            return Ok(ExitCode::FAILURE);
        }
    };
    let injected = match inject::inject_yaml(&text, &args.context()) {
        Ok(injected) => injected,
        Err(e) => {
            writeln!(err, "error: {name}: {e}")?;
            return Ok(ExitCode::FAILURE);
        }
    };
    for report in &injected.reports {
        let at = format!("{name}: document {} ({})", report.document, report.resource);
        match &report.result {
            DocumentResult::Injected { warnings } => {
                for w in warnings {
                    writeln!(err, "warning: {at}: {w}")?;
                }
            }
            DocumentResult::Skipped(skip) => writeln!(err, "note: {at}: not injected: {skip}")?,
        }
    }
    out.write_all(injected.yaml.as_bytes())
        .context("cannot write the injected YAML")?;
    out.flush().context("cannot write the injected YAML")?;
    Ok(ExitCode::SUCCESS)
}

/// The input as text, at most [`MAX_FILE_BYTES`].
fn read(args: &Args) -> Result<String, String> {
    let mut bytes = Vec::new();
    let result = if args.file.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
    } else {
        std::fs::File::open(&args.file)
            .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
    };
    result.map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "larger than {} MiB; split it into several files",
            MAX_FILE_BYTES >> 20
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8 text (invalid byte at offset {}); manifests must be UTF-8 YAML or JSON",
            e.utf8_error().valid_up_to()
        )
    })
}
