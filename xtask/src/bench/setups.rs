//! The three setups the benchmark compares, all on loopback, each on its own `127.0.x.0/24`:
//!
//! | setup | path |
//! |---|---|
//! | direct | load → backend `127.0.102.2:8080` |
//! | mesh | load → client sidecar `127.0.100.1:18080` (explicit upstream listener) → HTTP/2 → server sidecar `127.0.100.2:15008` → backend `127.0.100.2:8080` |
//! | haproxy | load → HAProxy #1 `127.0.101.1:18080` → HTTP/2 (`proto h2`) → HAProxy #2 `127.0.101.2:15008` → backend `127.0.101.2:8080` |
//!
//! The mesh proxies get their config as a [`ProxyConfigSpec`] JSON file built from the model
//! types: one service `bench.default.svc.cluster.local:8080` whose single endpoint is the
//! server workload (in the mesh), no routes (the default cluster), access log off.
//! Readiness is `GET /healthz/ready` on each proxy's health port (HAProxy: a `monitor-uri`
//! frontend on the same port).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use mesh_api::model::{
    AppProtocol, Endpoint, EndpointSet, Health, Locality, ProxyConfig, ProxyConfigSpec, Service,
    ServiceKind, ServiceName, ServicePort, Workload,
};
use mesh_api::spiffe::SpiffeId;

use super::procs::{Launcher, Proc};

/// The application port of every backend.
pub(crate) const BACKEND_PORT: u16 = 8080;
/// The port clients use on the first hop (the mesh's explicit upstream listener).
pub(crate) const ENTRY_PORT: u16 = 18080;
/// The mesh port (server side).
pub(crate) const MESH_PORT: u16 = 15008;
/// Health port (`/healthz/ready`).
pub(crate) const HEALTH_PORT: u16 = 15021;
/// The benchmark service.
pub(crate) const SERVICE_HOST: &str = "bench.default.svc.cluster.local";
/// How long a proxy may take to become ready before the run fails.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

const fn v4(c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, c, d))
}

/// Direct: the backend the load generator hits.
pub(crate) const DIRECT_BACKEND: SocketAddr = SocketAddr::new(v4(102, 2), BACKEND_PORT);
/// Mesh: the client workload (its sidecar's listeners).
pub(crate) const MESH_CLIENT: IpAddr = v4(100, 1);
/// Mesh: the server workload (its sidecar and its backend).
pub(crate) const MESH_SERVER: IpAddr = v4(100, 2);
/// HAProxy: the first (client-side) instance.
pub(crate) const HAPROXY_CLIENT: IpAddr = v4(101, 1);
/// HAProxy: the second (server-side) instance and its backend.
pub(crate) const HAPROXY_SERVER: IpAddr = v4(101, 2);

/// Every backend address (one backend serves them all).
pub(crate) fn backend_addrs() -> [SocketAddr; 3] {
    [
        DIRECT_BACKEND,
        SocketAddr::new(MESH_SERVER, BACKEND_PORT),
        SocketAddr::new(HAPROXY_SERVER, BACKEND_PORT),
    ]
}

/// A started setup: where the load goes and the processes to measure.
#[derive(Debug)]
pub(crate) struct Running {
    /// The load generator's target.
    pub(crate) entry: SocketAddr,
    /// The proxies, client side first; stopped when this is dropped.
    pub(crate) procs: Vec<Proc>,
    /// Time from spawn to ready, per process.
    pub(crate) ready: Vec<Duration>,
}

/// The load generator's `Host` for every setup (the mesh routes on it).
pub(crate) fn host_header() -> String {
    format!("{SERVICE_HOST}:{BACKEND_PORT}")
}

fn workload(name: &str, address: IpAddr) -> anyhow::Result<Workload> {
    Ok(Workload {
        uid: format!("uid-{name}"),
        name: name.into(),
        namespace: "default".into(),
        address,
        identity: SpiffeId::new("cluster.local", "default", name)?,
        labels: [
            ("app".to_owned(), name.to_owned()),
            ("version".to_owned(), "v1".to_owned()),
        ]
        .into(),
        canonical_service: name.into(),
        canonical_revision: "v1".into(),
        locality: Locality::default(),
        health: Health::Healthy,
        in_mesh: true,
    })
}

/// The client and server sidecars' configs.
pub(crate) fn mesh_specs() -> anyhow::Result<(ProxyConfigSpec, ProxyConfigSpec)> {
    let client = workload("bench-client", MESH_CLIENT)?;
    let server = workload("bench", MESH_SERVER)?;
    let service = Service {
        name: ServiceName::new("default", "bench"),
        hostname: SERVICE_HOST.into(),
        vips: vec![IpAddr::V4(Ipv4Addr::new(10, 96, 0, 80))],
        ports: vec![ServicePort {
            port: BACKEND_PORT,
            target_port: BACKEND_PORT,
            name: "http".into(),
            protocol: AppProtocol::Http,
        }],
        kind: ServiceKind::ClusterIp,
    };
    let endpoints = EndpointSet {
        hostname: SERVICE_HOST.into(),
        endpoints: vec![Endpoint {
            workload: server.clone(),
            ports: BTreeMap::new(),
            weight: NonZeroU32::MIN,
        }],
    };
    let spec = |me: Workload| {
        let mut s = ProxyConfigSpec::new(me.identity.clone());
        s.version = "bench-1".into();
        s.workload = Some(me);
        s.services = vec![service.clone()];
        s.endpoints = vec![endpoints.clone()];
        s
    };
    Ok((spec(client), spec(server)))
}

fn write_spec(
    dir: &Path,
    name: &str,
    spec: &ProxyConfigSpec,
) -> anyhow::Result<std::path::PathBuf> {
    ProxyConfig::new(spec.clone()).with_context(|| format!("{name}: invalid proxy config"))?;
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(spec)?)
        .with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

/// Issues a certificate for `spec`'s identity with `mesh-control ca issue` (the CA in
/// `<dir>/ca`), into `<dir>/<name>-identity`, for `mesh-proxy run --identity-dir`.
fn issue_identity(
    mesh_control: &Path,
    dir: &Path,
    name: &str,
    spec: &ProxyConfigSpec,
) -> anyhow::Result<std::path::PathBuf> {
    let out = dir.join(format!("{name}-identity"));
    let status = std::process::Command::new(mesh_control)
        .args([
            "ca",
            "issue",
            "--identity",
            spec.identity.as_str(),
            "--ca-dir",
        ])
        .arg(dir.join("ca"))
        .arg("--out-dir")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .with_context(|| format!("run {}", mesh_control.display()))?;
    anyhow::ensure!(
        status.success(),
        "`mesh-control ca issue` for {name} failed ({status})"
    );
    Ok(out)
}

/// `mesh-proxy run` arguments for the workload at `ip` with the certificate in `identity`.
pub(crate) fn mesh_proxy_args(
    config: &Path,
    identity: &Path,
    ip: IpAddr,
    upstream: Option<&str>,
) -> Vec<String> {
    let at = |port: u16| SocketAddr::new(ip, port).to_string();
    let mut args = vec![
        "run".to_owned(),
        "--config".to_owned(),
        config.display().to_string(),
        "--identity-dir".to_owned(),
        identity.display().to_string(),
        "--no-capture".to_owned(),
        "--inbound".to_owned(),
        at(MESH_PORT),
        "--admin".to_owned(),
        at(15000),
        "--metrics".to_owned(),
        at(15020),
        "--health".to_owned(),
        at(HEALTH_PORT),
        "--app-host".to_owned(),
        ip.to_string(),
        "--drain-timeout".to_owned(),
        "1s".to_owned(),
    ];
    if let Some(u) = upstream {
        args.extend(["--upstream".to_owned(), u.to_owned()]);
    }
    args
}

/// Starts the server sidecar, then the client sidecar, each waited for until ready.
pub(crate) fn start_mesh(launcher: &Launcher, bin: &Path) -> anyhow::Result<Running> {
    let dir = &launcher.log_dir;
    let (client_spec, server_spec) = mesh_specs()?;
    let server_cfg = write_spec(dir, "mesh-server", &server_spec)?;
    let client_cfg = write_spec(dir, "mesh-client", &client_spec)?;
    // Mutual TLS between the sidecars, with certificates from mesh-control's CA.
    let mesh_control = bin.with_file_name("mesh-control");
    let server_id = issue_identity(&mesh_control, dir, "mesh-server", &server_spec)?;
    let client_id = issue_identity(&mesh_control, dir, "mesh-client", &client_spec)?;
    // The production default log level, whatever the caller's environment says.
    let env = [("MESH_LOG", "info")];
    let mut procs = Vec::new();
    let mut ready = Vec::new();
    let mut server = launcher.spawn(
        "mesh-server",
        bin,
        &mesh_proxy_args(&server_cfg, &server_id, MESH_SERVER, None),
        &env,
    )?;
    ready.push(server.wait_ready(
        SocketAddr::new(MESH_SERVER, HEALTH_PORT),
        "/healthz/ready",
        READY_TIMEOUT,
    )?);
    let entry = SocketAddr::new(MESH_CLIENT, ENTRY_PORT);
    let upstream = format!("{entry}={SERVICE_HOST}:{BACKEND_PORT}");
    let mut client = launcher.spawn(
        "mesh-client",
        bin,
        &mesh_proxy_args(&client_cfg, &client_id, MESH_CLIENT, Some(&upstream)),
        &env,
    )?;
    ready.insert(
        0,
        client.wait_ready(
            SocketAddr::new(MESH_CLIENT, HEALTH_PORT),
            "/healthz/ready",
            READY_TIMEOUT,
        )?,
    );
    procs.push(client);
    procs.push(server);
    Ok(Running {
        entry,
        procs,
        ready,
    })
}

/// One HAProxy instance's config: an HTTP frontend on `listen` forwarding to `upstream`
/// (over HTTP/2 when `upstream_h2`; the frontend accepts HTTP/2 only when `listen_h2`),
/// and a `monitor-uri` health frontend on `health`. No logging; keep-alive and connection
/// reuse on both sides, as the mesh proxies do.
pub(crate) fn haproxy_config(
    listen: SocketAddr,
    listen_h2: bool,
    upstream: SocketAddr,
    upstream_h2: bool,
    health: SocketAddr,
) -> String {
    let bind_proto = if listen_h2 { " proto h2" } else { "" };
    let server_proto = if upstream_h2 { " proto h2" } else { "" };
    format!(
        "# Generated by `cargo xtask bench`.
global
    maxconn 4000

defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s

frontend health
    bind {health}
    monitor-uri /healthz/ready

frontend bench
    bind {listen}{bind_proto}
    default_backend next

backend next
    http-reuse always
    server next {upstream}{server_proto}
"
    )
}

/// Starts the server-side HAProxy, then the client-side one, each waited for until ready.
pub(crate) fn start_haproxy(launcher: &Launcher, bin: &Path) -> anyhow::Result<Running> {
    let dir = &launcher.log_dir;
    let entry = SocketAddr::new(HAPROXY_CLIENT, ENTRY_PORT);
    let hop = SocketAddr::new(HAPROXY_SERVER, MESH_PORT);
    let configs = [
        (
            "haproxy-server",
            haproxy_config(
                hop,
                true,
                SocketAddr::new(HAPROXY_SERVER, BACKEND_PORT),
                false,
                SocketAddr::new(HAPROXY_SERVER, HEALTH_PORT),
            ),
            SocketAddr::new(HAPROXY_SERVER, HEALTH_PORT),
        ),
        (
            "haproxy-client",
            haproxy_config(
                entry,
                false,
                hop,
                true,
                SocketAddr::new(HAPROXY_CLIENT, HEALTH_PORT),
            ),
            SocketAddr::new(HAPROXY_CLIENT, HEALTH_PORT),
        ),
    ];
    let mut procs = Vec::new();
    let mut ready = Vec::new();
    for (name, text, health) in configs {
        let path = dir.join(format!("{name}.cfg"));
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
        // -db: stay in the foreground, one process (threads), no daemon.
        let args = vec![
            "-db".to_owned(),
            "-f".to_owned(),
            path.display().to_string(),
        ];
        let mut p = launcher.spawn(name, bin, &args, &[])?;
        ready.push(p.wait_ready(health, "/healthz/ready", READY_TIMEOUT)?);
        procs.push(p);
    }
    // Client side first, as for the mesh.
    procs.reverse();
    ready.reverse();
    Ok(Running {
        entry,
        procs,
        ready,
    })
}

/// `haproxy -v`'s first line.
pub(crate) fn haproxy_version(bin: &Path) -> Option<String> {
    let out = std::process::Command::new(bin).arg("-v").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().next().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesh_configs_validate_and_name_the_server_as_the_endpoint() {
        let (client, server) = mesh_specs().unwrap();
        for spec in [&client, &server] {
            ProxyConfig::new(spec.clone()).expect("valid config");
            // Round-trips through the JSON the proxy reads.
            let json = serde_json::to_string(spec).unwrap();
            let back: ProxyConfigSpec = serde_json::from_str(&json).unwrap();
            assert_eq!(&back, spec);
        }
        assert_eq!(client.workload.as_ref().unwrap().address, MESH_CLIENT);
        let ep = &client.endpoints[0].endpoints[0].workload;
        assert_eq!((ep.address, ep.in_mesh), (MESH_SERVER, true));
    }

    #[test]
    fn haproxy_chain_speaks_h2_between_the_hops() {
        let hop = SocketAddr::new(HAPROXY_SERVER, MESH_PORT);
        let first = haproxy_config(
            SocketAddr::new(HAPROXY_CLIENT, ENTRY_PORT),
            false,
            hop,
            true,
            SocketAddr::new(HAPROXY_CLIENT, HEALTH_PORT),
        );
        assert!(first.contains("bind 127.0.101.1:18080\n"));
        assert!(first.contains("server next 127.0.101.2:15008 proto h2\n"));
        let second = haproxy_config(
            hop,
            true,
            SocketAddr::new(HAPROXY_SERVER, BACKEND_PORT),
            false,
            SocketAddr::new(HAPROXY_SERVER, HEALTH_PORT),
        );
        assert!(second.contains("bind 127.0.101.2:15008 proto h2\n"));
        assert!(second.contains("server next 127.0.101.2:8080\n"));
    }
}
