//! The `mesh-control` command line: the server (the default action, [`app::Args`]) and
//! the maintenance subcommands.
//!
//! ```text
//! mesh-control --config-dir DIR ...                 # the control plane (local mode)
//! mesh-control --kubernetes ...                     # the control plane (Kubernetes)
//! mesh-control ca rotate [--state-dir D | --ca-dir D | --kubernetes [--root-namespace NS]]
//! mesh-control ca issue --identity spiffe://<td>/ns/<ns>/sa/<sa> --out-dir DIR
//!                       [--lifetime 24h] [--dns NAME]... [--state-dir D | --ca-dir D]
//! mesh-control token [--state-dir D] <namespace>/<service-account>
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use mesh_api::spiffe::SpiffeId;
use mesh_api::tls::{FILE_CERT_CHAIN, FILE_KEY, FILE_ROOT_CERT};

use crate::app::{self, Args};
use crate::ca::{self, LocalStore, Storage};
use crate::files;
use crate::identity::tokens;

/// `mesh-control`: the mesh's control plane.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "mesh-control",
    version,
    about,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    /// A maintenance command; without one, mesh-control serves.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The server's options.
    #[command(flatten)]
    pub server: Args,
}

/// The subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// The local-mode certificate authority.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Creates (if absent) the local-mode token of a workload identity and prints the path
    /// of its file, for `mesh-proxy --token-file`.
    Token(TokenArgs),
}

/// `mesh-control ca ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum CaCommand {
    /// Stages a new root (`next-root-cert.pem`, `next-root-key.pem`) and exits. A running
    /// mesh-control adds it to the trust bundle within a second, signs with it after
    /// --root-rotation-grace, and drops the old root once its certificates have expired.
    Rotate(RotateArgs),
    /// Signs a certificate with a new key and writes `cert-chain.pem`, `key.pem` (0600) and
    /// `root-cert.pem` (the trust bundle) into --out-dir: a file-mounted identity for
    /// `mesh-proxy --identity-dir`. Creates the root if there is none yet.
    Issue(IssueArgs),
}

/// Where the CA directory is.
#[derive(Debug, Clone, clap::Args)]
pub struct CaDirArgs {
    /// mesh-control's state directory; the CA is in its `ca/`.
    /// Default: `${XDG_STATE_HOME:-$HOME/.local/state}/mesh-control`.
    #[arg(long, env = "MESH_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The CA directory itself (wins over --state-dir).
    #[arg(long, env = "MESH_CA_DIR", value_name = "DIR")]
    pub ca_dir: Option<PathBuf>,
}

impl CaDirArgs {
    /// The CA directory.
    pub fn ca_dir(&self) -> anyhow::Result<PathBuf> {
        match &self.ca_dir {
            Some(d) => Ok(d.clone()),
            None => Ok(app::resolve_state_dir(self.state_dir.as_deref())?.join("ca")),
        }
    }
}

/// `mesh-control ca rotate`.
#[derive(Debug, Clone, clap::Args)]
pub struct RotateArgs {
    /// The CA directory (local mode).
    #[command(flatten)]
    pub ca: CaDirArgs,
    /// Stage the new root in Secret `mesh-ca` of --root-namespace instead (the cluster of
    /// the current kubeconfig context or in-cluster service account).
    #[arg(long)]
    pub kubernetes: bool,
    /// With --kubernetes: the control-plane namespace.
    #[arg(long, default_value = "mesh-system", requires = "kubernetes")]
    pub root_namespace: String,
}

/// `mesh-control ca issue`.
#[derive(Debug, Clone, clap::Args)]
pub struct IssueArgs {
    /// The identity, `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
    #[arg(long, value_name = "SPIFFE_ID")]
    pub identity: SpiffeId,
    /// Where to write the files (created 0700 if missing).
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
    /// The certificate's lifetime. Keep it at most mesh-control's --workload-cert-ttl:
    /// after a root rotation the old root is trusted for that long only.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub lifetime: Duration,
    /// A DNS name to add beside the identity (repeatable).
    #[arg(long = "dns", value_name = "NAME")]
    pub dns: Vec<String>,
    /// The CA.
    #[command(flatten)]
    pub ca: CaDirArgs,
}

/// `mesh-control token`.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// mesh-control's state directory; tokens are in its `tokens/`.
    /// Default: `${XDG_STATE_HOME:-$HOME/.local/state}/mesh-control`.
    #[arg(long, env = "MESH_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The workload's `<namespace>/<service-account>`.
    #[arg(value_name = "NAMESPACE/SERVICE_ACCOUNT")]
    pub workload: String,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    mesh_api::duration::parse(s).map_err(|e| e.to_string())
}

/// Runs a subcommand.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Ca(CaCommand::Rotate(args)) => rotate(&args),
        Command::Ca(CaCommand::Issue(args)) => issue(&args),
        Command::Token(args) => token(&args),
    }
}

fn rotate(args: &RotateArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        let storage = if args.kubernetes {
            let client = kube::Client::try_default().await.context(
                "cannot build a Kubernetes client: set KUBECONFIG / ~/.kube/config, or run in a pod with a service account",
            )?;
            Storage::Kube(ca::kube::KubeStore::new(client, args.root_namespace.clone()))
        } else {
            Storage::Local(LocalStore::open(args.ca.ca_dir()?)?)
        };
        let next = ca::stage_next_root(&storage, mesh_api::spiffe::DEFAULT_TRUST_DOMAIN).await?;
        println!(
            "staged a new root at {} (serial {}, valid until {})",
            storage.locate(ca::names::NEXT_ROOT_CERT),
            next.serial,
            next.not_after
        );
        println!(
            "a running mesh-control adds it to the trust bundle within a second, signs with it after --root-rotation-grace, and removes the old root once its certificates have expired (see GET /debug/ca)"
        );
        Ok(())
    })
}

/// `mesh-control ca issue`: the files written.
pub fn issue(args: &IssueArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.lifetime >= ca::MIN_LIFETIME,
        "--lifetime {:?} is too short: at least {:?}",
        args.lifetime,
        ca::MIN_LIFETIME
    );
    let store = LocalStore::open(args.ca.ca_dir()?)?;
    let issued = ca::issue_offline(&store, &args.identity, &args.dns, args.lifetime)?;
    files::create_private_dir(&args.out_dir)?;
    let chain = mesh_api::tls::certs_to_pem(&issued.issued.chain);
    let bundle = mesh_api::tls::certs_to_pem(&issued.issued.trust_anchors);
    // The key first: a chain without its key is useless, a key without a chain harmless.
    files::write_atomic(
        &args.out_dir.join(FILE_KEY),
        issued.key_pem.as_bytes(),
        files::SECRET,
    )?;
    files::write_atomic(
        &args.out_dir.join(FILE_CERT_CHAIN),
        chain.as_bytes(),
        files::PUBLIC,
    )?;
    files::write_atomic(
        &args.out_dir.join(FILE_ROOT_CERT),
        bundle.as_bytes(),
        files::PUBLIC,
    )?;
    let leaf = ca::cert_info(&issued.issued.chain[0]);
    println!(
        "issued {} (serial {}, valid until {}) into {}",
        args.identity,
        leaf.serial,
        leaf.not_after,
        args.out_dir.display()
    );
    Ok(())
}

fn token(args: &TokenArgs) -> anyhow::Result<()> {
    let (ns, sa) = args.workload.split_once('/').with_context(|| {
        format!(
            "{:?}: expected <namespace>/<service-account>, e.g. default/reviews",
            args.workload
        )
    })?;
    // Validates both names as path segments (no '/', never '.' or '..').
    let id = SpiffeId::new(mesh_api::spiffe::DEFAULT_TRUST_DOMAIN, ns, sa)
        .with_context(|| format!("{:?} is not a valid workload", args.workload))?;
    let state_dir = app::resolve_state_dir(args.state_dir.as_deref())?;
    files::create_private_dir(&state_dir)?;
    let (path, _) = tokens::ensure_token(&state_dir, &id)?;
    println!("{}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    /// clap's consistency checks (unique argument and group ids across flattened structs).
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }

    #[test]
    fn the_server_stays_the_default_action() {
        let cli = Cli::try_parse_from(["mesh-control", "--config-dir", "/tmp/x"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.server.config_dir, Some(PathBuf::from("/tmp/x")));
        assert_eq!(cli.server.workload_cert_ttl, Duration::from_secs(24 * 3600));
        assert_eq!(cli.server.root_rotation_grace, Duration::from_secs(30));
        // Without a subcommand, the server still needs a source.
        assert!(Cli::try_parse_from(["mesh-control"]).is_err());
    }

    #[test]
    fn subcommands_parse() {
        let cli = Cli::try_parse_from(["mesh-control", "ca", "rotate", "--ca-dir", "/d"]).unwrap();
        let Some(Command::Ca(CaCommand::Rotate(args))) = cli.command else {
            panic!("not rotate: {cli:?}")
        };
        assert_eq!(args.ca.ca_dir().unwrap(), PathBuf::from("/d"));
        assert!(!args.kubernetes);
        let cli = Cli::try_parse_from(["mesh-control", "ca", "rotate", "--kubernetes"]).unwrap();
        let Some(Command::Ca(CaCommand::Rotate(args))) = cli.command else {
            panic!("not rotate: {cli:?}")
        };
        assert!(args.kubernetes);
        assert_eq!(args.root_namespace, "mesh-system");

        let cli = Cli::try_parse_from([
            "mesh-control",
            "ca",
            "issue",
            "--identity",
            "spiffe://cluster.local/ns/default/sa/reviews",
            "--out-dir",
            "/o",
            "--dns",
            "a",
            "--dns",
            "b",
            "--lifetime",
            "1h",
            "--state-dir",
            "/s",
        ])
        .unwrap();
        let Some(Command::Ca(CaCommand::Issue(args))) = cli.command else {
            panic!("not issue: {cli:?}")
        };
        assert_eq!(args.dns, ["a", "b"]);
        assert_eq!(args.lifetime, Duration::from_secs(3600));
        assert_eq!(args.ca.ca_dir().unwrap(), PathBuf::from("/s/ca"));

        let cli = Cli::try_parse_from([
            "mesh-control",
            "token",
            "--state-dir",
            "/s",
            "default/reviews",
        ])
        .unwrap();
        assert!(matches!(cli.command, Some(Command::Token(_))));
        // Server flags do not mix with subcommands.
        assert!(
            Cli::try_parse_from(["mesh-control", "--config-dir", "/x", "ca", "rotate"]).is_err()
        );
    }
}
