//! `meshctl demo`: the Online Boutique on the mesh, on one machine, with one command.
//!
//! Starts mesh-control in local mode, every shop service behind its own sidecar (explicit
//! mode: no root, no iptables; each "pod" on its own loopback address, see [`topology`]),
//! a second, slower productcatalogservice (`version: v2`) for the canary, the ingress
//! gateway on `--gateway-addr` and the load generator; waits until every proxy is ready
//! and the shop answers through the gateway; then shows a live table of golden metrics
//! per workload (the [`crate::stat`] table, refreshed every 2 s) with the URLs to open and
//! the command that applies the 90/10 canary.
//!
//! With `--transparent` (root) every pod is a network namespace with real iptables
//! capture instead ([`transparent`]): the applications dial the Services' virtual IPs
//! unmodified and their sidecars capture both directions, as on a Kubernetes node. The
//! addresses on this machine (the shop, each pod's admin, metrics and health ports) stay
//! the same, forwarded into the pods.
//!
//! Everything lives in the state directory (`--state-dir`): the generated config
//! (`config/`, watched by mesh-control), mesh-control's CA and tokens, one log file per
//! process (`logs/`), the canary files and `demo.json` (what runs where, for `meshctl
//! stat`). Ctrl-C, SIGTERM, `--duration` or any failure stops every process
//! ([`procs::Supervisor`]); a clean stop removes the directory unless `--keep`, a failure
//! keeps it and prints the failed process's last log lines.
//!
//! The sibling binaries (`mesh-control`, `mesh-proxy`, `boutique`) are taken from the
//! directory `meshctl` itself runs from (`target/debug` under `cargo run`), or `--bin-dir`;
//! `redis-server`, when on PATH, keeps the carts (through the mesh, as TCP). Linux only:
//! it relies on every `127.0.0.0/8` address being local, and on `/proc`.

use std::io::{IsTerminal as _, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;

use crate::control::client;
use crate::stat;

pub mod procs;
pub mod topology;
pub mod transparent;

use procs::Supervisor;
use topology::{AppCommand, Plan};
use transparent::Cluster;

/// The marker file that makes a directory a demo state directory (safe to wipe).
const MARKER: &str = ".mesh-demo";
/// The demo's description, for `meshctl stat`.
pub const INFO_FILE: &str = "demo.json";
/// How long each startup step may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the table refreshes.
const REFRESH: Duration = Duration::from_secs(2);

/// Arguments of `meshctl demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Where the demo keeps its config, CA, logs and `demo.json` (default:
    /// `$XDG_STATE_HOME/mesh-demo`, else `~/.local/state/mesh-demo`). Removed at a clean
    /// exit unless --keep.
    #[arg(long, value_name = "DIR", env = "MESH_DEMO_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Where the shop is served (the ingress gateway's port 80 server).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
    pub gateway_addr: SocketAddr,
    /// The loopback network the pods get addresses in: `127.<N>.0.0/24`.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub loopback_net: u8,
    /// Stop after this long once everything is ready (e.g. `40s`, `5m`); default: until
    /// Ctrl-C.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Do not start the load generator.
    #[arg(long)]
    pub no_loadgen: bool,
    /// Keep the cart in memory even when `redis-server` is on PATH.
    #[arg(long)]
    pub no_redis: bool,
    /// Keep the state directory (config, logs) after exit.
    #[arg(long)]
    pub keep: bool,
    /// Run every pod in a network namespace of its own with real traffic capture
    /// (`mesh-proxy init`'s iptables rules), as on a Kubernetes node: applications dial the
    /// Services' virtual IPs unmodified. Needs root, iproute2, util-linux and iptables.
    /// The shop, metrics and admin addresses on this machine stay the same (forwarded into
    /// the pods).
    #[arg(long)]
    pub transparent: bool,
    /// Where `mesh-control`, `mesh-proxy` and `boutique` are (default: beside meshctl).
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    mesh_api::duration::parse(s).map_err(|e| e.to_string())
}

/// What a running demo writes to `demo.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Info {
    /// `meshctl demo`'s process id.
    pub pid: u32,
    /// The shop's URL.
    pub shop: String,
    /// mesh-control's debug address.
    pub control_plane: SocketAddr,
    /// The config directory mesh-control watches.
    pub config_dir: PathBuf,
    /// Every proxy, sidecars then the gateway.
    pub proxies: Vec<ProxyInfo>,
    /// Every process the demo started.
    pub processes: Vec<ProcessInfo>,
}

/// One proxy of a running demo.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProxyInfo {
    /// Its pod name.
    pub name: String,
    /// Its metrics address (`/metrics`).
    pub metrics: SocketAddr,
    /// Its admin address.
    pub admin: SocketAddr,
}

/// One process of a running demo.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// What it is.
    pub name: String,
    /// Its process id.
    pub pid: u32,
    /// Its log file.
    pub log: PathBuf,
}

impl Info {
    /// Reads the `demo.json` of a running demo in `dir`.
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(INFO_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no running demo in {} (reading {INFO_FILE}): start one with `meshctl demo`, \
                 pass its --state-dir, or name proxies with --metrics HOST:PORT",
                dir.display()
            )
        })?;
        let info: Self = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a demo description", path.display()))?;
        if !Path::new(&format!("/proc/{}", info.pid)).exists() {
            bail!(
                "the demo that wrote {} (pid {}) is not running any more: start it again with `meshctl demo`",
                path.display(),
                info.pid
            );
        }
        Ok(info)
    }
}

/// `$XDG_STATE_HOME/mesh-demo`, else `~/.local/state/mesh-demo`.
pub fn default_state_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("mesh-demo"));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/state/mesh-demo")),
        None => bail!("neither XDG_STATE_HOME nor HOME is set: pass --state-dir DIR"),
    }
}

/// The binaries the demo runs.
#[derive(Debug, Clone)]
struct Bins {
    control: PathBuf,
    proxy: PathBuf,
    boutique: PathBuf,
    redis: Option<PathBuf>,
}

impl Bins {
    fn find(args: &Args) -> anyhow::Result<Self> {
        let dir = match &args.bin_dir {
            Some(dir) => dir.clone(),
            None => std::env::current_exe()
                .context("find meshctl's own path")?
                .parent()
                .context("meshctl's path has no directory")?
                .to_owned(),
        };
        // (binary, package) of what is not there.
        let mut missing: Vec<(&str, &str)> = Vec::new();
        let mut find = |name: &'static str, package: &'static str| {
            let path = dir.join(name);
            if !path.is_file() {
                missing.push((name, package));
            }
            path
        };
        let bins = Self {
            control: find("mesh-control", "mesh-control"),
            proxy: find("mesh-proxy", "mesh-proxy"),
            boutique: find("boutique", "online-boutique"),
            redis: None,
        };
        if !missing.is_empty() {
            let release = if dir.ends_with("release") {
                " --release"
            } else {
                ""
            };
            let names: Vec<&str> = missing.iter().map(|(name, _)| *name).collect();
            let packages: Vec<String> = missing.iter().map(|(_, p)| format!("-p {p}")).collect();
            bail!(
                "{} not found in {}: build {} first with `cargo build{release} {}` (or pass --bin-dir)",
                names.join(", "),
                dir.display(),
                if missing.len() == 1 { "it" } else { "them" },
                packages.join(" "),
            );
        }
        let redis = if args.no_redis {
            None
        } else {
            std::env::var_os("PATH").and_then(|path| {
                std::env::split_paths(&path)
                    .map(|d| d.join("redis-server"))
                    .find(|p| p.is_file())
            })
        };
        Ok(Self { redis, ..bins })
    }
}

/// The state directory's layout.
#[derive(Debug, Clone)]
struct Dirs {
    root: PathBuf,
    config: PathBuf,
    control: PathBuf,
    logs: PathBuf,
}

impl Dirs {
    /// Makes a fresh state directory at `root`: refuses a running demo's and any directory
    /// that is not empty and not a demo's.
    fn prepare(root: &Path) -> anyhow::Result<Self> {
        if root.exists() {
            if Info::read(root).is_ok() {
                bail!(
                    "a demo is already running with state directory {}: stop it, or pass another --state-dir",
                    root.display()
                );
            }
            let empty = std::fs::read_dir(root)
                .with_context(|| format!("read {}", root.display()))?
                .next()
                .is_none();
            if !empty && !root.join(MARKER).exists() {
                bail!(
                    "{} exists and is not a demo state directory: pass another --state-dir (or remove it)",
                    root.display()
                );
            }
            std::fs::remove_dir_all(root)
                .with_context(|| format!("remove the old demo state in {}", root.display()))?;
        }
        let dirs = Self {
            root: root.to_owned(),
            config: root.join("config"),
            control: root.join("control-state"),
            logs: root.join("logs"),
        };
        for dir in [&dirs.root, &dirs.config, &dirs.logs] {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        std::fs::write(root.join(MARKER), "a `meshctl demo` state directory\n")
            .with_context(|| format!("write {}", root.join(MARKER).display()))?;
        Ok(dirs)
    }

    fn log(&self, name: &str) -> PathBuf {
        self.logs.join(format!("{name}.log"))
    }
}

/// Why the demo stopped.
enum Stop {
    /// `--duration` elapsed.
    Elapsed,
    /// SIGINT or SIGTERM.
    Signal(&'static str),
}

/// Runs the demo until Ctrl-C, SIGTERM or `--duration`.
pub fn run(args: &Args, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let bins = Bins::find(args)?;
    let root = match &args.state_dir {
        Some(dir) => dir.clone(),
        None => default_state_dir()?,
    };
    let mut plan = Plan::new(args.loopback_net, args.gateway_addr, bins.redis.is_some());
    check_free(&plan)?;
    // The pods' network namespaces (transparent mode), dropped after the processes in
    // them have stopped.
    let mut cluster = match args.transparent {
        true => Some(Cluster::new(&mut plan, &bins.proxy)?),
        false => None,
    };
    let dirs = Dirs::prepare(&root)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the runtime")?;
    let mut sup = Supervisor::default();
    let outcome = rt.block_on(async {
        let mut int = signal(SignalKind::interrupt()).context("handle SIGINT")?;
        let mut term = signal(SignalKind::terminate()).context("handle SIGTERM")?;
        tokio::select! {
            r = demo(args, &bins, &plan, &dirs, &mut sup, cluster.as_mut(), out) => r,
            _ = int.recv() => Ok(Stop::Signal("interrupted")),
            _ = term.recv() => Ok(Stop::Signal("terminated")),
        }
    });
    // Cleaning up must not depend on the terminal still being there.
    let _ = writeln!(out, "stopping {} processes ...", sup.procs().len());
    sup.stop();
    if let Some(cluster) = cluster.take() {
        // Inside the runtime: the port-forwards are its tasks.
        let _guard = rt.enter();
        drop(cluster);
    }
    // No running demo to describe any more (`meshctl stat` would also notice the pid).
    let _ = std::fs::remove_file(dirs.root.join(INFO_FILE));
    match outcome {
        Ok(stop) => {
            let why = match stop {
                Stop::Elapsed => "the --duration elapsed",
                Stop::Signal(s) => s,
            };
            if args.keep {
                writeln!(
                    out,
                    "stopped ({why}); config and logs kept in {}",
                    dirs.root.display()
                )?;
            } else {
                std::fs::remove_dir_all(&dirs.root)
                    .with_context(|| format!("remove {}", dirs.root.display()))?;
                writeln!(out, "stopped ({why}); removed {}", dirs.root.display())?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            // The directory stays, with the logs, for the post-mortem.
            Err(e.context(format!(
                "the demo failed; logs are in {}",
                dirs.logs.display()
            )))
        }
    }
}

/// Fails early, with the fix, when the gateway's address or mesh-control's ports are
/// taken (another demo, or something on 8080).
fn check_free(plan: &Plan) -> anyhow::Result<()> {
    for (what, addr, flag) in [
        ("the shop's address", plan.gateway, "--gateway-addr"),
        (
            "mesh-control's discovery address",
            plan.discovery(),
            "--loopback-net",
        ),
    ] {
        TcpListener::bind(addr).with_context(|| {
            format!("{what} {addr} is not available (another demo running?): stop what uses it or pass another {flag}")
        })?;
    }
    Ok(())
}

/// Starts everything, then shows the table until `--duration` elapses.
async fn demo(
    args: &Args,
    bins: &Bins,
    plan: &Plan,
    dirs: &Dirs,
    sup: &mut Supervisor,
    mut cluster: Option<&mut Cluster>,
    out: &mut impl Write,
) -> anyhow::Result<Stop> {
    for file in plan.config_files() {
        let path = dirs.config.join(file.name);
        std::fs::write(&path, file.text).with_context(|| format!("write {}", path.display()))?;
    }
    let canary = dirs.root.join("canary-90-10.yaml");
    let rollback = dirs.root.join("canary-rollback.yaml");
    std::fs::write(&canary, topology::routes(90, 10))
        .with_context(|| format!("write {}", canary.display()))?;
    std::fs::write(&rollback, topology::routes(100, 0))
        .with_context(|| format!("write {}", rollback.display()))?;
    // The same with Gateway API resources: the gateway and the canary.
    for (name, text) in [
        ("gateway-api.yaml", topology::GATEWAY_API),
        (
            "canary-90-10-gateway-api.yaml",
            topology::CANARY_GATEWAY_API,
        ),
    ] {
        let path = dirs.root.join(name);
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
    }
    writeln!(out, "demo state, config and logs: {}", dirs.root.display())?;
    let started = Instant::now();

    // 1. The control plane.
    let discovery = match cluster.as_deref() {
        Some(c) => SocketAddr::from((c.control_ip()?, topology::DISCOVERY_PORT)),
        None => plan.discovery(),
    };
    let mut cmd = match cluster.as_deref() {
        Some(c) => c.command(transparent::CONTROL_POD, &bins.control)?,
        None => Command::new(&bins.control),
    };
    let debug = match cluster.as_deref() {
        Some(c) => SocketAddr::from((c.control_ip()?, topology::DEBUG_PORT)),
        None => plan.debug(),
    };
    cmd.arg("--config-dir")
        .arg(&dirs.config)
        .arg("--state-dir")
        .arg(&dirs.control)
        .arg("--discovery-addr")
        .arg(discovery.to_string())
        .arg("--debug-addr")
        .arg(debug.to_string())
        .env("MESH_LOG", "info");
    sup.spawn("mesh-control", cmd, &dirs.log("mesh-control"))?;
    if let Some(c) = cluster.as_deref_mut() {
        c.log_forwards_to(dirs.log("port-forward"));
        c.forward(plan.debug(), transparent::CONTROL_POD, debug)
            .await?;
    }
    wait_http(sup, "mesh-control", plan.debug(), "/healthz/ready").await?;
    writeln!(out, "ok  mesh-control ready (discovery {discovery})")?;

    // 2. Every pod: the application and its sidecar.
    let mut bundle = dirs.control.join("trust-bundle.pem");
    if let Some(c) = cluster.as_deref() {
        bundle = c.share(&bundle, "trust-bundle.pem", true)?;
    }
    for pod in &plan.pods {
        let mut token = token(bins, dirs, topology::NAMESPACE, pod.component.name)?;
        match cluster.as_deref_mut() {
            None => {
                let cp = ControlPlane::new(discovery, &token, &bundle);
                start_explicit(bins, plan, dirs, sup, pod, &cp)?;
            }
            Some(c) => {
                token = c.share(&token, &format!("{}.token", pod.name), false)?;
                let cp = ControlPlane::new(discovery, &token, &bundle);
                start_captured(bins, c, plan, dirs, sup, pod, &cp)?;
                for port in [
                    topology::ADMIN_PORT,
                    topology::METRICS_PORT,
                    topology::HEALTH_PORT,
                    pod.component.target_port,
                ] {
                    c.forward(
                        SocketAddr::from((pod.ip, port)),
                        &pod.name,
                        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                    )
                    .await?;
                }
            }
        }
    }

    // 3. The ingress gateway.
    let mut token = token(
        bins,
        dirs,
        topology::GATEWAY_NAMESPACE,
        topology::GATEWAY_NAME,
    )?;
    let gw_at = |port: u16| SocketAddr::from((plan.gateway_ip(), port));
    let mut gateway = match cluster.as_deref() {
        Some(c) => {
            token = c.share(&token, "mesh-ingressgateway.token", false)?;
            let ip = c.pod(topology::GATEWAY_NAME)?.ip();
            let mut cmd = c.proxy_command(topology::GATEWAY_NAME)?;
            cmd.arg("gateway")
                .args(["--pod-ip", &ip.to_string()])
                .args(["--listen", &format!("80={ip}:8080")]);
            cmd
        }
        None => {
            let mut cmd = Command::new(&bins.proxy);
            cmd.arg("gateway")
                .args(["--pod-ip", &plan.gateway_ip().to_string()])
                .args(["--admin", &gw_at(topology::ADMIN_PORT).to_string()])
                .args(["--metrics", &gw_at(topology::METRICS_PORT).to_string()])
                .args(["--health", &gw_at(topology::HEALTH_PORT).to_string()])
                .args(["--listen-host", &plan.gateway_ip().to_string()])
                .args(["--listen", &format!("80={}", plan.gateway)]);
            cmd
        }
    };
    gateway
        .args(ControlPlane::new(discovery, &token, &bundle).flags())
        .args(["--pod-name", topology::GATEWAY_NAME])
        .args(["--pod-namespace", topology::GATEWAY_NAMESPACE])
        .args(["--service-account", topology::GATEWAY_NAME])
        .args(["--label", "mesh=ingressgateway", "--drain-timeout", "1s"])
        .env("MESH_LOG", "info");
    sup.spawn("gateway", gateway, &dirs.log("gateway"))?;
    if let Some(c) = cluster.as_deref_mut() {
        let ip = c.pod(topology::GATEWAY_NAME)?.ip();
        c.forward(
            plan.gateway,
            topology::GATEWAY_NAME,
            SocketAddr::from((ip, 8080)),
        )
        .await?;
        for port in [
            topology::ADMIN_PORT,
            topology::METRICS_PORT,
            topology::HEALTH_PORT,
        ] {
            c.forward(
                gw_at(port),
                topology::GATEWAY_NAME,
                SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            )
            .await?;
        }
    }

    // 4. Readiness: sidecars and gateway, applications, then the shop end to end.
    for pod in &plan.pods {
        wait_http(sup, &pod.name, pod.health_addr(), "/healthz/ready").await?;
        wait_tcp(sup, &pod.name, pod.app_addr()).await?;
        if cluster.is_some() {
            writeln!(
                out,
                "ok  {:<26} pod {} (captured; admin, metrics, health and :{} forwarded at {})",
                pod.name, pod.cluster_ip, pod.component.target_port, pod.ip
            )?;
        } else {
            writeln!(
                out,
                "ok  {:<26} {} (sidecar {}:{})",
                pod.name,
                pod.app_addr(),
                pod.ip,
                topology::MESH_PORT
            )?;
        }
    }
    wait_http(
        sup,
        "gateway",
        gw_at(topology::HEALTH_PORT),
        "/healthz/ready",
    )
    .await?;
    wait_http(sup, "the shop through the gateway", plan.gateway, "/").await?;
    writeln!(
        out,
        "ok  ingress gateway: the shop answers on http://{}",
        plan.gateway
    )?;

    // 5. Load.
    if !args.no_loadgen {
        let mut cmd = Command::new(&bins.boutique);
        cmd.args(["loadgen", "--frontend-addr", &plan.gateway.to_string()])
            .args(["--users", "5", "--rate", "1", "--wait", "1-3"]);
        sup.spawn("loadgen", cmd, &dirs.log("loadgen"))?;
        writeln!(out, "ok  load generator: 5 simulated shoppers")?;
    }

    let info = info(plan, dirs, sup);
    let path = dirs.root.join(INFO_FILE);
    std::fs::write(&path, serde_json::to_vec_pretty(&info)?)
        .with_context(|| format!("write {}", path.display()))?;
    let banner = banner(plan, dirs, &info);
    writeln!(
        out,
        "ready: {} processes running (started in {:.1}s)\n\n{banner}",
        info.processes.len(),
        started.elapsed().as_secs_f64()
    )?;
    out.flush()?;

    // 6. The live table.
    let sidecars: Vec<SocketAddr> = plan.pods.iter().map(|p| p.metrics_addr()).collect();
    let deadline = args.duration.map(|d| Instant::now() + d);
    let tty = std::io::stdout().is_terminal();
    let (mut before, _) = stat::scrape_all(&sidecars).await;
    let mut last = Instant::now();
    loop {
        let next = last + REFRESH;
        if deadline.is_some_and(|d| d <= next) {
            tokio::time::sleep_until(deadline.unwrap_or(next)).await;
            check_running(sup)?;
            return Ok(Stop::Elapsed);
        }
        tokio::time::sleep_until(next).await;
        check_running(sup)?;
        let (after, errors) = stat::scrape_all(&sidecars).await;
        let window = last.elapsed();
        last = Instant::now();
        let table = stat::table(&stat::rows(&before, &after, window)).render();
        before = after;
        if tty {
            // Home, clear: redraw in place.
            writeln!(out, "\x1b[H\x1b[2J{banner}")?;
        }
        writeln!(out, "{table}")?;
        for e in errors {
            writeln!(out, "warning: {e}")?;
        }
        out.flush()?;
    }
}

/// Where a proxy gets its config and certificate: mesh-control's discovery address, the
/// proxy's token and the trust bundle that verifies mesh-control.
struct ControlPlane<'a> {
    discovery: SocketAddr,
    token: &'a Path,
    bundle: &'a Path,
}

impl<'a> ControlPlane<'a> {
    fn new(discovery: SocketAddr, token: &'a Path, bundle: &'a Path) -> Self {
        Self {
            discovery,
            token,
            bundle,
        }
    }

    /// The `mesh-proxy` flags that take config and certificates from it.
    fn flags(&self) -> Vec<String> {
        vec![
            "--control-plane".to_owned(),
            self.discovery.to_string(),
            "--token-file".to_owned(),
            self.token.display().to_string(),
            "--ca-bundle".to_owned(),
            self.bundle.display().to_string(),
        ]
    }
}

/// Starts `pod` in explicit mode: its application on its loopback address, pointed at its
/// sidecar's `--upstream` listeners, and the sidecar without capture.
fn start_explicit(
    bins: &Bins,
    plan: &Plan,
    dirs: &Dirs,
    sup: &mut Supervisor,
    pod: &topology::Pod,
    cp: &ControlPlane<'_>,
) -> anyhow::Result<()> {
    let (upstreams, env) = plan.upstreams(pod);
    let mut app = match pod.component.command {
        AppCommand::Boutique(sub) => {
            let mut cmd = Command::new(&bins.boutique);
            cmd.arg(sub).arg("--listen").arg(pod.app_addr().to_string());
            cmd
        }
        AppCommand::Redis => {
            let mut cmd = Command::new(bins.redis.as_ref().context("redis-server")?);
            cmd.args(["--bind", &pod.ip.to_string()])
                .args(redis_args(pod, &dirs.root));
            cmd
        }
    };
    app.envs(env).envs(pod.extra_env.iter().copied());
    sup.spawn(&pod.name, app, &dirs.log(&pod.name))?;

    let at = |port: u16| SocketAddr::from((pod.ip, port)).to_string();
    let mut proxy = Command::new(&bins.proxy);
    proxy
        .arg("run")
        .args(sidecar_args(pod, cp))
        .arg("--no-capture")
        .args(["--inbound", &at(topology::MESH_PORT)])
        .args(["--admin", &at(topology::ADMIN_PORT)])
        .args(["--metrics", &at(topology::METRICS_PORT)])
        .args(["--health", &at(topology::HEALTH_PORT)])
        .args(["--app-host", &pod.ip.to_string()]);
    for u in upstreams {
        proxy.args(["--upstream", &u]);
    }
    proxy.env("MESH_LOG", "info");
    let name = format!("{}-proxy", pod.name);
    sup.spawn(&name, proxy, &dirs.log(&name))?;
    Ok(())
}

/// Starts `pod` in transparent mode, as the kubelet would an injected pod: the capture
/// rules first (the init container), then the application — unmodified, dialing the
/// Services' virtual IPs — and the sidecar as uid 1337.
fn start_captured(
    bins: &Bins,
    cluster: &Cluster,
    plan: &Plan,
    dirs: &Dirs,
    sup: &mut Supervisor,
    pod: &topology::Pod,
    cp: &ControlPlane<'_>,
) -> anyhow::Result<()> {
    cluster.capture(&pod.name)?;
    let listen = SocketAddr::from((Ipv4Addr::UNSPECIFIED, pod.component.target_port));
    let mut app = match pod.component.command {
        AppCommand::Boutique(sub) => {
            let mut cmd = cluster.command(&pod.name, &bins.boutique)?;
            cmd.arg(sub).arg("--listen").arg(listen.to_string());
            cmd
        }
        AppCommand::Redis => {
            let redis = bins.redis.as_ref().context("redis-server")?;
            let mut cmd = cluster.command(&pod.name, redis)?;
            cmd.args(["--bind", "0.0.0.0", "--protected-mode", "no"])
                .args(redis_args(pod, cluster.files()));
            cmd
        }
    };
    app.envs(plan.service_env(pod))
        .envs(pod.extra_env.iter().copied());
    sup.spawn(&pod.name, app, &dirs.log(&pod.name))?;

    let mut proxy = cluster.proxy_command(&pod.name)?;
    proxy
        .arg("run")
        .args(sidecar_args(pod, cp))
        .env("MESH_LOG", "info");
    let name = format!("{}-proxy", pod.name);
    sup.spawn(&name, proxy, &dirs.log(&name))?;
    Ok(())
}

/// `redis-server`'s port and an ephemeral store (no snapshots, no append-only file).
fn redis_args(pod: &topology::Pod, dir: &Path) -> Vec<String> {
    vec![
        "--port".to_owned(),
        pod.component.target_port.to_string(),
        "--save".to_owned(),
        String::new(),
        "--appendonly".to_owned(),
        "no".to_owned(),
        "--dir".to_owned(),
        dir.display().to_string(),
    ]
}

/// The `mesh-proxy run` flags both modes share: the control plane, the pod's identity and
/// labels.
fn sidecar_args(pod: &topology::Pod, cp: &ControlPlane<'_>) -> Vec<String> {
    let mut args = cp.flags();
    args.extend(
        [
            "--pod-name",
            &pod.name,
            "--pod-namespace",
            topology::NAMESPACE,
            "--pod-ip",
            &pod.cluster_ip.to_string(),
            "--service-account",
            pod.component.name,
            "--label",
            &format!("app={}", pod.component.name),
            "--label",
            &format!("version={}", pod.version),
            "--drain-timeout",
            "1s",
        ]
        .map(str::to_owned),
    );
    args
}

/// `mesh-control token`: the local-mode token file of `ns/sa`.
fn token(bins: &Bins, dirs: &Dirs, ns: &str, sa: &str) -> anyhow::Result<PathBuf> {
    let out = Command::new(&bins.control)
        .arg("token")
        .arg("--state-dir")
        .arg(&dirs.control)
        .arg(format!("{ns}/{sa}"))
        .output()
        .with_context(|| format!("run {} token", bins.control.display()))?;
    if !out.status.success() {
        bail!(
            "`mesh-control token {ns}/{sa}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Fails, naming the process and showing its last log lines, when a child has exited.
fn check_running(sup: &mut Supervisor) -> anyhow::Result<()> {
    if let Some((proc, status)) = sup.exited() {
        bail!(
            "{} exited early ({status}); the end of {}:\n{}",
            proc.name,
            proc.log.display(),
            procs::tail(&proc.log, 20)
        );
    }
    Ok(())
}

/// Waits until `GET path` on `addr` answers 2xx, checking that no child exited.
async fn wait_http(
    sup: &mut Supervisor,
    what: &str,
    addr: SocketAddr,
    path: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    let mut last = String::from("not tried");
    while Instant::now() < deadline {
        check_running(sup)?;
        let attempt = async {
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            client::get(tcp, &addr.to_string(), path).await
        };
        match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Ok(res)) if res.status.is_success() => return Ok(()),
            Ok(Ok(res)) => last = format!("{path} answered {}", res.status),
            Ok(Err(e)) => last = e,
            Err(_) => last = "no answer within 5s".to_owned(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!(
        "{what} was not ready at http://{addr}{path} within {}s (last: {last}); see its log",
        STEP_TIMEOUT.as_secs()
    )
}

/// Waits until `addr` accepts TCP connections, checking that no child exited.
async fn wait_tcp(sup: &mut Supervisor, what: &str, addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    while Instant::now() < deadline {
        check_running(sup)?;
        if TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "{what} did not listen on {addr} within {}s; see its log",
        STEP_TIMEOUT.as_secs()
    )
}

/// The description `meshctl stat` reads.
fn info(plan: &Plan, dirs: &Dirs, sup: &Supervisor) -> Info {
    let mut proxies: Vec<ProxyInfo> = plan
        .pods
        .iter()
        .map(|p| ProxyInfo {
            name: p.name.clone(),
            metrics: p.metrics_addr(),
            admin: SocketAddr::from((p.ip, topology::ADMIN_PORT)),
        })
        .collect();
    proxies.push(ProxyInfo {
        name: topology::GATEWAY_NAME.to_owned(),
        metrics: SocketAddr::from((plan.gateway_ip(), topology::METRICS_PORT)),
        admin: SocketAddr::from((plan.gateway_ip(), topology::ADMIN_PORT)),
    });
    Info {
        pid: std::process::id(),
        shop: format!("http://{}", plan.gateway),
        control_plane: plan.debug(),
        config_dir: dirs.config.clone(),
        proxies,
        processes: sup
            .procs()
            .iter()
            .map(|p| ProcessInfo {
                name: p.name.clone(),
                pid: p.pid(),
                log: p.log.clone(),
            })
            .collect(),
    }
}

/// The URLs and commands shown above the table.
fn banner(plan: &Plan, dirs: &Dirs, info: &Info) -> String {
    let root = dirs.root.display();
    let routes = dirs.config.join(topology::ROUTES_FILE);
    let first = plan.pods.first().map(|p| p.metrics_addr());
    let state = format!(" --state-dir {root}");
    format!(
        "Online Boutique on the mesh: {pods} pods, mutual TLS between all of them. Ctrl-C stops everything.
  shop          {shop}
  mesh-control  http://{debug}/debug/proxies    meshctl proxy-status --control-plane {debug}
  metrics       http://{metrics}/metrics (one per proxy)    meshctl stat{state}
  logs          {logs}
  canary 90/10  cp {root}/canary-90-10.yaml {routes}
  roll back     cp {root}/canary-rollback.yaml {routes}
  Gateway API   cp {root}/canary-90-10-gateway-api.yaml {routes}
                cp {root}/gateway-api.yaml {gateway}
Golden metrics per workload, as each workload's sidecar measures them (refreshed every {refresh}s):",
        pods = plan.pods.len(),
        shop = info.shop,
        debug = plan.debug(),
        metrics = first.map_or_else(|| "-".to_owned(), |a| a.to_string()),
        logs = dirs.logs.display(),
        routes = routes.display(),
        gateway = dirs.config.join(topology::GATEWAY_FILE).display(),
        refresh = REFRESH.as_secs(),
    )
}
