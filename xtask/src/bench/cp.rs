//! `cargo xtask bench cp`: the control plane under a large mesh.
//!
//! Generates a local-mode config directory (`--services` Kubernetes Services spread over
//! `--namespaces`, each visible in its own namespace only through the
//! `networking.mesh.dev/exportTo` annotation, and `--endpoints` WorkloadEntries), starts the
//! release `mesh-control` on it, and subscribes `--proxies` simulated proxies (one HTTP/2
//! connection and discovery stream each, spread over the namespaces) that ACK everything.
//! Then it adds one backend to one service and measures, for every proxy of that
//! service's namespace, the time from the control plane publishing the change
//! (`last_change_unix_ms` of `/debug/registry`) to the proxy receiving the updated endpoint
//! set. Reported: initial sync time, p50/p99/max push latency, the reload time of the
//! directory (file write → published), and mesh-control's RSS (current and peak).
//!
//! The simulated proxies decode only names and versions (slim prost messages with the
//! same field numbers), so the generator's cost stays small next to the control plane's.
//! Everything runs on loopback; every wait is bounded.
//!
//! The discovery port speaks TLS and requires a client certificate whose identity is the
//! node's, so each namespace's simulated proxies share one certificate for
//! `spiffe://cluster.local/ns/<ns>/sa/sim`, made with `mesh-control ca issue` in the
//! benchmark's state directory before the control plane starts (the CA path itself is not
//! what this benchmark measures). Every proxy makes its own TLS handshake.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use mesh_api::tls::rustls::ClientConfig;

use super::procfs;
use super::procs::Launcher;

/// Options of `cargo xtask bench cp`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    /// Simulated proxies.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    pub(crate) proxies: u32,
    /// Services.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) services: u32,
    /// Endpoints (WorkloadEntries), spread evenly over the services.
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub(crate) endpoints: u32,
    /// Namespaces services and proxies are spread over.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) namespaces: u32,
    /// Make every service visible in every namespace (no exportTo): each proxy then
    /// receives the whole mesh.
    #[arg(long)]
    pub(crate) export_everywhere: bool,
    /// Do not run `cargo build --release -p mesh-control` first.
    #[arg(long)]
    pub(crate) no_build: bool,
}

/// Runs the benchmark.
pub(crate) fn run(root: &Path, args: &Args) -> anyhow::Result<()> {
    raise_fd_limit(u64::from(args.proxies) * 2 + 256)?;
    let bin = super::target_dir(root).join("release").join("mesh-control");
    if !args.no_build {
        super::build_package(root, "mesh-control")?;
    }
    if !bin.is_file() {
        bail!(
            "{} not found: run `cargo build --release -p mesh-control`",
            bin.display()
        );
    }
    let work = root.join("bench-results").join("control-plane");
    let _ = std::fs::remove_dir_all(&work);
    let config = work.join("config");
    std::fs::create_dir_all(&config).with_context(|| format!("create {}", config.display()))?;
    eprintln!(
        "== generating {} services / {} endpoints in {} namespaces",
        args.services, args.endpoints, args.namespaces
    );
    generate(&config, args)?;

    let state = work.join("state");
    eprintln!(
        "== issuing one certificate per namespace ({})",
        args.namespaces
    );
    let tls = issue_certificates(&bin, &work, &state, args.namespaces)?;

    let discovery = free_port()?;
    let debug = free_port()?;
    let launcher = Launcher::new(&work, None)?;
    let mut cp = launcher.spawn(
        "mesh-control",
        &bin,
        &[
            "--config-dir".into(),
            config.display().to_string(),
            "--state-dir".into(),
            state.display().to_string(),
            "--discovery-addr".into(),
            discovery.to_string(),
            "--debug-addr".into(),
            debug.to_string(),
        ],
        &[("MESH_LOG", "warn")],
    )?;
    let started = cp.wait_ready(debug, "/healthz/ready", Duration::from_secs(300))?;
    let (rss_loaded, _) = procfs::memory_kib(cp.pid())?;
    eprintln!(
        "== mesh-control loaded the config in {:.1}s, RSS {:.0} MiB",
        started.as_secs_f64(),
        rss_loaded as f64 / 1024.0
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let sims = Arc::new(Sims::new(args.proxies as usize));
    let t0 = Instant::now();
    // Proxies start over about a second (as pods do, never all in one instant).
    for i in 0..args.proxies {
        let ns = format!("ns-{}", i % args.namespaces);
        let tls = tls[&ns].clone();
        runtime.spawn(sims.clone().proxy(discovery, tls, i, ns));
        std::thread::sleep(Duration::from_micros(1000));
    }
    wait_for(Duration::from_secs(600), || {
        cp.check_alive()?;
        if let Some(e) = sims.error.lock().expect("poisoned").clone() {
            bail!("a simulated proxy failed: {e}");
        }
        Ok(sims.synced.load(Ordering::Relaxed) == args.proxies as usize)
    })
    .context("initial sync of every simulated proxy")?;
    let initial_sync = t0.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let (rss_synced, _) = procfs::memory_kib(cp.pid())?;
    eprintln!(
        "== {} proxies synced in {:.2}s; mesh-control RSS {:.0} MiB",
        args.proxies,
        initial_sync.as_secs_f64(),
        rss_synced as f64 / 1024.0
    );

    // One endpoint change: a new backend for service svc-0 in ns-0.
    let target = "svc-0.ns-0.svc.cluster.local";
    let expecting = (0..args.proxies)
        .filter(|i| i % args.namespaces == 0 || args.export_everywhere)
        .count();
    sims.watch(target);
    let written = unix_ms();
    std::fs::write(
        config.join("zz-change.yaml"),
        workload_entry("ns-0", "svc-0", "change-1", [10, 255, 255, 1]),
    )?;
    wait_for(Duration::from_secs(120), || {
        cp.check_alive()?;
        Ok(sims.received.lock().expect("poisoned").len() >= expecting)
    })
    .context("the change reaching every proxy of its namespace")?;
    let status = http_get_body(debug, "/debug/registry")?;
    let status: serde_json::Value = serde_json::from_str(&status)?;
    let published = status["last_change_unix_ms"]
        .as_u64()
        .context("/debug/registry has no last_change_unix_ms")?;
    let mut latencies: Vec<u64> = sims
        .received
        .lock()
        .expect("poisoned")
        .iter()
        .map(|t| t.saturating_sub(published))
        .collect();
    latencies.sort_unstable();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[i]
    };
    let (rss, hwm) = procfs::memory_kib(cp.pid())?;
    let metrics = http_get_body(debug, "/metrics")?;
    let build_sum = metric_value(&metrics, "mesh_control_index_build_seconds_sum");
    let build_count = metric_value(&metrics, "mesh_control_index_build_seconds_count");

    let mut out = String::new();
    let _ = writeln!(
        out,
        "\ncontrol plane: {} services, {} endpoints, {} namespaces ({}), {} proxies",
        args.services,
        args.endpoints,
        args.namespaces,
        if args.export_everywhere {
            "every service visible everywhere"
        } else {
            "services visible in their own namespace"
        },
        args.proxies
    );
    let _ = writeln!(out, "| measure | value |\n|---|---|");
    let _ = writeln!(
        out,
        "| start → ready (load + index) | {:.2} s |",
        started.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "| initial sync of all proxies | {:.2} s |",
        initial_sync.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "| one endpoint change: push latency p50 / p99 / max ({} proxies) | {} / {} / {} ms |",
        latencies.len(),
        pct(0.5),
        pct(0.99),
        latencies.last().copied().unwrap_or(0)
    );
    let _ = writeln!(
        out,
        "| file write → change published (re-read + validate + index) | {} ms |",
        published.saturating_sub(written)
    );
    if let (Some(sum), Some(count)) = (build_sum, build_count)
        && count > 0.0
    {
        let _ = writeln!(
            out,
            "| index rebuild per change (mean of {count}) | {:.0} ms |",
            sum / count * 1000.0
        );
    }
    let _ = writeln!(
        out,
        "| mesh-control RSS: loaded / with proxies / now (peak) | {:.0} / {:.0} / {:.0} ({:.0}) MiB |",
        rss_loaded as f64 / 1024.0,
        rss_synced as f64 / 1024.0,
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    print!("{out}");
    std::fs::write(work.join("results.md"), &out)?;
    sims.stop.store(true, Ordering::Relaxed);
    runtime.shutdown_timeout(Duration::from_secs(2));
    drop(cp);
    Ok(())
}

/// Issues the certificate of each namespace's simulated proxies with `mesh-control ca
/// issue` (which also creates the CA in `state`), and builds their TLS client configs:
/// namespace → config presenting that certificate and verifying mesh-control's identity.
fn issue_certificates(
    bin: &Path,
    work: &Path,
    state: &Path,
    namespaces: u32,
) -> anyhow::Result<HashMap<String, Arc<ClientConfig>>> {
    use mesh_api::tls::{self, CertStore, Expected, FileIdentity, ServerVerifier, TrustStore};
    let control_plane: mesh_api::spiffe::SpiffeId =
        "spiffe://cluster.local/ns/mesh-system/sa/mesh-control".parse()?;
    let mut configs = HashMap::new();
    for n in 0..namespaces {
        let ns = format!("ns-{n}");
        let dir = work.join("certs").join(&ns);
        let out = std::process::Command::new(bin)
            .args(["ca", "issue", "--identity"])
            .arg(format!("spiffe://cluster.local/ns/{ns}/sa/sim"))
            .arg("--out-dir")
            .arg(&dir)
            .arg("--state-dir")
            .arg(state)
            .env("MESH_LOG", "warn")
            .output()
            .context("run mesh-control ca issue")?;
        if !out.status.success() {
            bail!(
                "mesh-control ca issue failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let identity = FileIdentity::read(&dir)?;
        let certs = CertStore::new();
        certs.store(tls::certified_key(identity.chain, identity.key)?);
        let verifier = Arc::new(ServerVerifier::new(
            Arc::new(TrustStore::new(identity.bundle)),
            Expected::Exactly(control_plane.clone()),
        ));
        let config = tls::client_config(Some(Arc::new(certs)), verifier, &[tls::ALPN_H2]);
        configs.insert(ns, Arc::new(config));
    }
    Ok(configs)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Polls `done` every 10 ms until it is true or `timeout` passes.
fn wait_for(
    timeout: Duration,
    mut done: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done()? {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!("not done within {timeout:?}")
}

fn free_port() -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

fn raise_fd_limit(want: u64) -> anyhow::Result<()> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < want {
        let new = want.min(hard);
        setrlimit(Resource::RLIMIT_NOFILE, new, hard)
            .context("raise the open-files limit for the simulated proxies")?;
        if new < want {
            bail!("the open-files limit is {hard}; {want} are needed (raise `ulimit -n`)");
        }
    }
    Ok(())
}

fn http_get_body(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .context("no HTTP body")?;
    Ok(body)
}

fn workload_entry(ns: &str, app: &str, name: &str, ip: [u8; 4]) -> String {
    format!(
        "---\napiVersion: networking.mesh.dev/v1alpha1\nkind: WorkloadEntry\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  address: {}.{}.{}.{}\n  labels:\n    app: {app}\n  serviceAccount: {app}\n",
        ip[0], ip[1], ip[2], ip[3]
    )
}

/// Services and their WorkloadEntries, in files of at most 1,000 documents (the loader's
/// per-file budget).
fn generate(dir: &Path, args: &Args) -> anyhow::Result<()> {
    let per_service = (args.endpoints / args.services).max(1);
    let mut file = String::new();
    let mut docs = 0u32;
    let mut files = 0u32;
    let mut flush = |file: &mut String, docs: &mut u32| -> anyhow::Result<()> {
        if *docs > 0 {
            std::fs::write(dir.join(format!("mesh-{files:04}.yaml")), &*file)?;
            files += 1;
            file.clear();
            *docs = 0;
        }
        Ok(())
    };
    let mut ep = 0u32;
    for s in 0..args.services {
        if docs + 1 + per_service > 1000 {
            flush(&mut file, &mut docs)?;
        }
        let ns = format!("ns-{}", s % args.namespaces);
        let name = format!("svc-{}", s / args.namespaces);
        let vip = 0x0a60_0000u32 + s + 1; // 10.96.0.0/12
        let export = if args.export_everywhere {
            String::new()
        } else {
            "  annotations:\n    networking.mesh.dev/exportTo: \".\"\n".to_owned()
        };
        let _ = write!(
            file,
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {ns}\n{export}spec:\n  clusterIP: {}\n  selector:\n    app: {name}\n  ports:\n  - name: http\n    port: 8080\n",
            std::net::Ipv4Addr::from(vip)
        );
        docs += 1;
        for k in 0..per_service {
            let addr = 0x0b00_0000u32 + ep + 1; // 11.0.0.0/8
            ep += 1;
            file.push_str(&workload_entry(
                &ns,
                &name,
                &format!("{name}-{k}"),
                std::net::Ipv4Addr::from(addr).octets(),
            ));
            docs += 1;
        }
    }
    flush(&mut file, &mut docs)
}

/// The simulated proxies' shared bookkeeping.
struct Sims {
    synced: AtomicUsize,
    error: Mutex<Option<String>>,
    watching: Mutex<Option<String>>,
    received: Mutex<Vec<u64>>,
    stop: AtomicBool,
}

impl Sims {
    fn new(n: usize) -> Self {
        Self {
            synced: AtomicUsize::new(0),
            error: Mutex::new(None),
            watching: Mutex::new(None),
            received: Mutex::new(Vec::with_capacity(n)),
            stop: AtomicBool::new(false),
        }
    }

    fn watch(&self, hostname: &str) {
        *self.watching.lock().expect("poisoned") = Some(hostname.to_owned());
    }

    /// One simulated proxy; a stream that fails before its initial sync is retried (a
    /// real proxy reconnects too), twice at most.
    async fn proxy(self: Arc<Self>, addr: SocketAddr, tls: Arc<ClientConfig>, i: u32, ns: String) {
        for attempt in 0..3 {
            let synced = Arc::new(AtomicBool::new(false));
            match self
                .clone()
                .run_proxy(addr, tls.clone(), i, ns.clone(), synced.clone())
                .await
            {
                Ok(()) => return,
                Err(_) if self.stop.load(Ordering::Relaxed) => return,
                Err(e) if attempt == 2 || synced.load(Ordering::Relaxed) => {
                    let mut err = self.error.lock().expect("poisoned");
                    err.get_or_insert(format!("proxy {i}: {e:#}"));
                    return;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    async fn run_proxy(
        self: Arc<Self>,
        addr: SocketAddr,
        tls: Arc<ClientConfig>,
        i: u32,
        ns: String,
        synced: Arc<AtomicBool>,
    ) -> anyhow::Result<()> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = mesh_api::tls::rustls::pki_types::ServerName::try_from("mesh-control")?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .context("TLS handshake with mesh-control")?;
        let (send, conn) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .initial_stream_window_size(4 * 1024 * 1024)
                .initial_connection_window_size(8 * 1024 * 1024)
                .handshake(hyper_util::rt::TokioIo::new(stream))
                .await?;
        tokio::spawn(conn);
        let mut grpc = tonic::client::Grpc::new(H2(send));
        grpc = grpc.max_decoding_message_size(256 * 1024 * 1024);
        grpc.ready().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let (tx, rx) = tokio::sync::mpsc::channel::<slim::Request>(16);
        let kinds = [
            "Workload",
            "InboundPolicy",
            "AuthorizationPolicy",
            "Service",
            "EndpointSet",
            "Cluster",
            "RouteTable",
        ];
        for (k, kind) in kinds.iter().enumerate() {
            tx.send(slim::Request {
                node: (k == 0).then(|| slim::Node {
                    id: format!("sim~{i}"),
                    pod_name: format!("sim-{i}"),
                    namespace: ns.clone(),
                    ip: vec![10, 200, (i >> 8) as u8, i as u8],
                    identity: format!("spiffe://cluster.local/ns/{ns}/sa/sim"),
                    mode: 1,
                    proxy_version: "bench".into(),
                }),
                type_url: format!("mesh.discovery.v1.{kind}"),
                response_nonce: String::new(),
            })
            .await?;
        }
        let requests =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|r| (r, rx)) },
            );
        let path = http::uri::PathAndQuery::from_static("/mesh.discovery.v1.Discovery/Stream");
        let codec = tonic_prost::ProstCodec::<slim::Request, slim::Response>::default();
        let mut inbound = grpc
            .streaming(tonic::Request::new(requests), path, codec)
            .await?
            .into_inner();
        let mut answered = 0;
        while let Some(r) = inbound.message().await? {
            let now = unix_ms();
            if r.type_url.ends_with(".EndpointSet") {
                let watching = self.watching.lock().expect("poisoned").clone();
                if let Some(host) = watching
                    && r.resources.iter().any(|res| res.name == host)
                {
                    self.received.lock().expect("poisoned").push(now);
                }
            }
            tx.send(slim::Request {
                node: None,
                type_url: r.type_url,
                response_nonce: r.nonce,
            })
            .await?;
            answered += 1;
            if answered == kinds.len() {
                synced.store(true, Ordering::Relaxed);
                self.synced.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

/// A hyper HTTP/2 connection as tonic's client service.
#[derive(Clone)]
struct H2(hyper::client::conn::http2::SendRequest<tonic::body::Body>);

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for H2 {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<tonic::body::Body>) -> Self::Future {
        *req.uri_mut() = format!(
            "https://mesh-control{}",
            req.uri().path_and_query().map_or("/", |p| p.as_str())
        )
        .parse()
        .expect("valid uri");
        Box::pin(self.0.send_request(req))
    }
}

/// Slim copies of the discovery messages: the same field numbers, only what the simulated
/// proxies read (prost skips the rest without building it).
mod slim {
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Node {
        #[prost(string, tag = "1")]
        pub(super) id: String,
        #[prost(string, tag = "2")]
        pub(super) pod_name: String,
        #[prost(string, tag = "3")]
        pub(super) namespace: String,
        #[prost(bytes = "vec", tag = "4")]
        pub(super) ip: Vec<u8>,
        #[prost(string, tag = "5")]
        pub(super) identity: String,
        #[prost(int32, tag = "7")]
        pub(super) mode: i32,
        #[prost(string, tag = "8")]
        pub(super) proxy_version: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Request {
        #[prost(message, optional, tag = "1")]
        pub(super) node: Option<Node>,
        #[prost(string, tag = "2")]
        pub(super) type_url: String,
        #[prost(string, tag = "3")]
        pub(super) response_nonce: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Resource {
        #[prost(string, tag = "1")]
        pub(super) name: String,
        #[prost(string, tag = "2")]
        pub(super) version: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Response {
        #[prost(string, tag = "1")]
        pub(super) type_url: String,
        #[prost(string, tag = "3")]
        pub(super) nonce: String,
        #[prost(message, repeated, tag = "4")]
        pub(super) resources: Vec<Resource>,
        #[prost(string, repeated, tag = "5")]
        pub(super) removed_resources: Vec<String>,
    }
}
