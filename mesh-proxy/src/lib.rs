//! `mesh-proxy`: the mesh's data plane.
//!
//! One binary, several roles: `mesh-proxy init` installs the traffic-capture rules in a
//! pod's network namespace ([`init`]); `mesh-proxy run` is the sidecar next to an
//! application ([`app`]); `mesh-proxy gateway` is the ingress gateway ([`gateway`]);
//! `mesh-proxy wait` blocks until it is ready ([`wait`]).
//!
//! The request path, client side to server side:
//!
//! ```text
//! app ─► outbound (15001 capture | explicit listener) ─► detect ─► route ─► balance ─► transport
//!          └─ opaque TCP ─────────────────────────────────────────────────► CONNECT tunnel │
//!                                                                                          ▼
//! app ◄─ inbound (15008 mesh, mTLS + HTTP/2; 15006 plaintext capture) ◄─ peer's mTLS conn
//!          └─ canonical path ─► authorization (DENY, then ALLOW) ─► app
//! ```
//!
//! - [`outbound`]: capture/explicit listeners, per-request routing ([`outbound::route`]),
//!   splits, retries, timeouts, faults, mirrors ([`outbound::forward`]), TCP ([`outbound::tcp`]).
//! - [`inbound`]: the mesh port and the plaintext capture port, to the local application,
//!   through [`authz`] (AuthorizationPolicy, fail-closed) on paths and hosts made canonical
//!   by [`canon`] — the same canonical path routing matches.
//! - [`identity`]: the workload certificate (from the control plane's CA, or files), the
//!   trust bundle, and the mutual-TLS configs of the mesh port and of peer connections.
//! - [`discovery`]: the config stream from the control plane (or a static file, see
//!   [`app`]).
//! - [`state`]: the config snapshot and per-cluster balancers; [`balance`]: P2C/EWMA and
//!   friends with outlier detection; [`transport`]: pooled mTLS HTTP/2 to peers, plain
//!   clients.
//! - [`detect`]: protocol sniffing; [`http`]: body type, headers, error classification.
//! - [`meter`] and [`telemetry`]: golden metrics and access logs; [`admin`]: admin,
//!   metrics and health servers.

use clap::{Parser, Subcommand};

pub mod admin;
pub mod app;
pub mod authz;
pub mod balance;
pub mod canon;
pub mod detect;
pub mod discovery;
pub mod gateway;
pub mod http;
pub mod identity;
pub mod inbound;
pub mod init;
pub mod meter;
pub mod outbound;
pub mod proxy;
pub mod sockopt;
pub mod state;
pub mod telemetry;
pub mod transport;
pub mod wait;

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
    /// Run the proxy as a sidecar.
    Run(Box<app::Args>),
    /// Run the proxy as an ingress gateway (no capture; listeners from the Gateways that
    /// select it).
    Gateway(Box<gateway::Args>),
    /// Wait until the proxy is ready (classic sidecars' `postStart` hook holds the
    /// application's start with it).
    Wait(wait::Args),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Init(args) => init::run(&args),
        Command::Run(args) => {
            let threads = args.threads;
            run_proxy(threads, |log| app::App::build(*args, log))
        }
        Command::Gateway(args) => {
            let threads = args.run.threads;
            run_proxy(threads, |log| app::App::build_gateway(*args, log))
        }
        Command::Wait(args) => wait::run(&args),
    }
}

fn run_proxy<F>(
    threads: u16,
    build: impl FnOnce(Option<telemetry::log::LogHandle>) -> F,
) -> anyhow::Result<()>
where
    F: std::future::Future<Output = anyhow::Result<app::App>>,
{
    let log = telemetry::log::init_tracing("info", false).ok();
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("mesh-proxy")
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(threads))
            .enable_all()
            .thread_name("mesh-proxy")
            .build()?
    };
    runtime.block_on(async move {
        let app = build(log).await?;
        app.run(shutdown_signal()).await
    })
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// The admin `/clusters` view: every cluster's endpoints with their balancer statistics.
pub fn admin_clusters(proxy: &proxy::Proxy) -> serde_json::Value {
    let Some(snap) = proxy.state.snapshot() else {
        return serde_json::json!({ "clusters": [] });
    };
    let now = std::time::Instant::now();
    let mut clusters: Vec<_> = snap
        .clusters
        .values()
        .map(|c| {
            serde_json::json!({
                "name": c.cluster.key.to_string(),
                "service": &*c.service,
                "loadBalancer": format!("{:?}", c.balancer.load_balancer()),
                "endpoints": c.balancer.stats(now),
            })
        })
        .collect();
    clusters.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    serde_json::json!({ "clusters": clusters })
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
