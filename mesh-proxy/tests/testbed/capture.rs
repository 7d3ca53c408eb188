//! What capture leaves alone and what it passes through, with a running sidecar: an app's
//! loopback connections never reach the proxy; a connection to an address that is no
//! service goes through the client sidecar untouched (Istio's `PassthroughCluster`) — to a
//! pod without a sidecar, and to a meshed pod's app port, where that pod's inbound capture
//! (PERMISSIVE) hands it to the app — while the service VIP, whose port declares no
//! protocol, is sniffed as HTTP and routed.
//!
//! A workload in STRICT mTLS mode refuses captured plaintext from outside the mesh but
//! serves its mesh peers, and its probe and metrics ports stay reachable.
//!
//! The banner server (`fixtures/testbed/banner_server.py`) reports the peer address it sees
//! and the banner client its own local address: equal means nothing was in between; the
//! same IP with another port means the client sidecar made its own connection.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use mesh_api::model::{AppProtocol, InboundPolicy, MtlsMode};
use serde_json::Value;

use crate::backend::{Backend, Behavior};
use crate::config::{self, Topology};
use crate::harness::{self, CURL_TOOL, Mesh, PYTHON, PYTHON_TOOL, metric_sum, run_bounded};

/// The `web` service VIP.
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 50);
const PORT: u16 = 80;
const TARGET_PORT: u16 = 8080;
/// The banner server of the pod without a sidecar.
const OUTSIDE_PORT: u16 = 7070;
/// The client pod's own loopback-only banner server.
const LOOPBACK_PORT: u16 = 7071;

/// One banner exchange as the client reports it.
struct Exchange {
    /// The client's local `ip:port`.
    local: String,
    /// The `ip:port` the server saw.
    peer: String,
}

#[test]
fn loopback_is_not_captured_and_unknown_destinations_pass_through() {
    let Some(mut mesh) = Mesh::new(&["client", "backend", "outside"], &[CURL_TOOL, PYTHON_TOOL])
    else {
        return;
    };
    let client = config::workload(mesh.pod("client"), "frontend", "v1");
    let server = config::workload(mesh.pod("backend"), "web", "v1");
    let topology = Topology {
        services: vec![config::service(
            "web",
            VIP,
            PORT,
            TARGET_PORT,
            AppProtocol::Unknown,
        )],
        endpoints: vec![config::endpoints("web", &[&server])],
        routes: Vec::new(),
        clusters: vec![config::cluster("web", PORT)],
    };
    // Declared after the mesh, so it stops before the namespaces go away.
    let backend = Backend::start(mesh.pod("backend"), TARGET_PORT, "web", Behavior::default());
    mesh.sidecar(&client, &topology);
    mesh.sidecar(&server, &topology);
    let banner = harness::fixtures().join("banner_server.py");
    let banner = banner.to_str().expect("a UTF-8 path");
    // No sidecar in `outside`: a plain pod on the subnet.
    mesh.spawn_app(
        "outside",
        PYTHON,
        &[banner, "0.0.0.0", &OUTSIDE_PORT.to_string(), "180"],
    );
    mesh.spawn_app(
        "client",
        PYTHON,
        &[banner, "127.0.0.1", &LOOPBACK_PORT.to_string(), "180"],
    );
    let outside_ip = mesh.pod("outside").ip();
    mesh.wait_for_listener("outside", SocketAddr::from((outside_ip, OUTSIDE_PORT)));
    mesh.wait_for_listener("client", SocketAddr::from(([127, 0, 0, 1], LOOPBACK_PORT)));

    // Loopback: the server sees the client's own address and port.
    for e in exchanges(&mesh, Ipv4Addr::LOCALHOST, LOOPBACK_PORT) {
        assert_eq!(
            e.peer, e.local,
            "a loopback connection went through the proxy"
        );
    }

    // A pod without a sidecar: reached through the client sidecar's passthrough, which
    // connects from the pod's address with a port of its own.
    let client_ip = mesh.pod("client").ip().to_string();
    for e in exchanges(&mesh, outside_ip, OUTSIDE_PORT) {
        let (peer_ip, peer_port) = e.peer.rsplit_once(':').expect("ip:port");
        let (local_ip, local_port) = e.local.rsplit_once(':').expect("ip:port");
        assert_eq!(peer_ip, client_ip, "{} / {}", e.peer, e.local);
        assert_eq!(local_ip, client_ip, "{} / {}", e.peer, e.local);
        assert_ne!(
            peer_port, local_port,
            "the connection to {outside_ip} bypassed the client sidecar"
        );
    }

    // A meshed pod's app port, addressed directly (no service has that address): through
    // the client sidecar untouched and into the backend pod's inbound capture.
    let direct = format!("http://{}:{TARGET_PORT}/direct", mesh.pod("backend").ip());
    let t = &mesh.curl("client", &[direct], &["--http1.1"])[0];
    assert_eq!(t.status, 200, "{t:?}");
    assert_eq!(t.backend, "web", "{t:?}");
    assert_eq!(
        t.peer, "127.0.0.1",
        "not forwarded by the backend's sidecar: {t:?}"
    );
    // h2c the same way: the inbound capture sniffs the HTTP/2 preface.
    let direct_h2 = format!(
        "http://{}:{TARGET_PORT}/direct-h2",
        mesh.pod("backend").ip()
    );
    let t = &mesh.curl("client", &[direct_h2], &["--http2-prior-knowledge"])[0];
    assert_eq!(t.status, 200, "{t:?}");
    assert_eq!(
        (t.http_version.as_str(), t.backend_proto.as_str()),
        ("2", "HTTP/2.0"),
        "{t:?}"
    );
    assert_eq!(
        t.peer, "127.0.0.1",
        "not forwarded by the backend's sidecar: {t:?}"
    );
    let client_metrics = mesh.metrics("client");
    assert_eq!(
        metric_sum(&client_metrics, "mesh_requests_total", &[]),
        0.0,
        "passthrough traffic was routed as HTTP:\n{client_metrics}"
    );
    let server_metrics = mesh.metrics("backend");
    assert_eq!(
        metric_sum(
            &server_metrics,
            "mesh_requests_total",
            &[("reporter", "destination"), ("response_code", "200")]
        ),
        2.0,
        "{server_metrics}"
    );

    // The service VIP, in contrast, is sniffed as HTTP and routed by the client sidecar.
    let via_vip = format!("http://{VIP}:{PORT}/vip");
    let t = &mesh.curl("client", &[via_vip], &["--http1.1"])[0];
    assert_eq!(t.status, 200, "{t:?}");
    assert_eq!(t.backend, "web", "{t:?}");
    let client_metrics = mesh.metrics("client");
    assert_eq!(
        metric_sum(
            &client_metrics,
            "mesh_requests_total",
            &[("reporter", "source"), ("response_code", "200")]
        ),
        1.0,
        "{client_metrics}"
    );
    assert_eq!(backend.requests(), 3);
}

#[test]
fn strict_mtls_refuses_plaintext_from_outside_the_mesh() {
    let Some(mut mesh) = Mesh::new(&["client", "backend", "outside"], &[CURL_TOOL]) else {
        return;
    };
    let client = config::workload(mesh.pod("client"), "frontend", "v1");
    let server = config::workload(mesh.pod("backend"), "web", "v1");
    let topology = Topology {
        services: vec![config::service(
            "web",
            VIP,
            PORT,
            TARGET_PORT,
            AppProtocol::Http,
        )],
        endpoints: vec![config::endpoints("web", &[&server])],
        routes: Vec::new(),
        clusters: vec![config::cluster("web", PORT)],
    };
    let backend = Backend::start(mesh.pod("backend"), TARGET_PORT, "web", Behavior::default());
    mesh.sidecar(&client, &topology);
    let mut strict = topology.spec_for(&server);
    strict.inbound = InboundPolicy {
        mode: MtlsMode::Strict,
        port_overrides: Default::default(),
    };
    mesh.sidecar_spec(&strict);

    // Mesh traffic (the client's sidecar to the backend's mesh port) is served, over mutual
    // TLS, and the server side knows the client by its certificate.
    let t = &mesh.curl(
        "client",
        &[format!("http://{VIP}:{PORT}/mesh")],
        &["--http1.1"],
    )[0];
    assert_eq!(t.status, 200, "{t:?}");
    assert_eq!(t.backend, "web", "{t:?}");
    let metrics = mesh.metrics("backend");
    let mtls = [
        ("reporter", "destination"),
        ("connection_security_policy", "mutual_tls"),
        (
            "source_principal",
            "spiffe://cluster.local/ns/default/sa/frontend",
        ),
        ("source_workload_namespace", "default"),
        ("response_code", "200"),
    ];
    assert_eq!(
        metric_sum(&metrics, "mesh_requests_total", &mtls),
        1.0,
        "the meshed request is counted as mutual TLS from frontend:\n{metrics}"
    );
    // Plaintext from a pod without a sidecar is captured and refused before the app.
    let backend_ip = mesh.pod("backend").ip();
    let plain = format!("http://{backend_ip}:{TARGET_PORT}/plaintext");
    let t = &mesh.curl("outside", std::slice::from_ref(&plain), &["--http1.1"])[0];
    assert_eq!(t.status, 0, "plaintext reached the app under STRICT: {t:?}");
    // The mesh port itself takes no plaintext, and no TLS client without a mesh
    // certificate.
    let mesh_port = format!("{backend_ip}:15008");
    let t = &mesh.curl(
        "outside",
        &[format!("http://{mesh_port}/h2c")],
        &["--http2-prior-knowledge", "-H", "x-mesh-target-port: 8080"],
    )[0];
    assert_eq!(
        t.status, 0,
        "plaintext HTTP/2 was served on the mesh port: {t:?}"
    );
    let t = &mesh.curl(
        "outside",
        &[format!("https://{mesh_port}/tls")],
        &["--insecure", "--http2", "-H", "x-mesh-target-port: 8080"],
    )[0];
    assert_eq!(
        t.status, 0,
        "TLS without a client certificate was served: {t:?}"
    );
    assert_eq!(backend.requests(), 1);
    let refused = metric_sum(
        &mesh.metrics("backend"),
        "mesh_proxy_inbound_tls_handshake_failures_total",
        &[],
    );
    assert!(refused >= 2.0, "handshake failures counted: {refused}");
    // The probe and metrics ports stay reachable from other pods (like a kubelet's probes
    // and a Prometheus elsewhere in the cluster).
    let outside = mesh.pod("outside");
    let (status, body) = harness::http_get(
        outside,
        SocketAddr::from((backend_ip, 15021)),
        "/healthz/ready",
    )
    .expect("GET the readiness probe from another pod");
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        harness::http_get(outside, SocketAddr::from((backend_ip, 15020)), "/metrics")
            .expect("GET the metrics from another pod");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("mesh_requests_total"), "{body}");

    // PERMISSIVE: the same plaintext request now reaches the app, counted as plaintext.
    let mut permissive = strict.clone();
    permissive.inbound.mode = MtlsMode::Permissive;
    mesh.replace_config(
        "backend",
        &serde_json::to_vec_pretty(&permissive).expect("serialize the proxy config"),
    );
    harness::wait_until("PERMISSIVE takes effect", Duration::from_secs(10), || {
        let t = &mesh.curl("outside", std::slice::from_ref(&plain), &["--http1.1"])[0];
        if t.status == 200 {
            Ok(())
        } else {
            Err(format!("{t:?}"))
        }
    });
    assert_eq!(backend.requests(), 2);
    let plaintext = [
        ("reporter", "destination"),
        ("connection_security_policy", "none"),
        ("response_code", "200"),
    ];
    assert_eq!(
        metric_sum(&mesh.metrics("backend"), "mesh_requests_total", &plaintext),
        1.0
    );
}

/// Three banner exchanges from the client pod (as the app uid) with `ip:port`.
fn exchanges(mesh: &Mesh, ip: Ipv4Addr, port: u16) -> Vec<Exchange> {
    let out = run_bounded(
        mesh.app_command("client", PYTHON)
            .arg(harness::fixtures().join("banner_client.py"))
            .arg(ip.to_string())
            .arg(port.to_string())
            .arg("3"),
        Duration::from_secs(60),
        "banner_client.py",
    );
    assert!(out.success, "{}", out.text());
    let exchanges: Vec<Exchange> = out
        .stdout
        .lines()
        .map(|line| {
            let r: Value = serde_json::from_str(line).expect("a JSON line");
            let banner = r["banner"]
                .as_str()
                .unwrap_or_else(|| panic!("{ip}:{port}: {r}"));
            assert_eq!(r["bye"], "221 bye", "{r}");
            Exchange {
                local: r["local"].as_str().expect("a local address").to_owned(),
                peer: banner
                    .strip_prefix("220 banner peer=")
                    .unwrap_or_else(|| panic!("unexpected banner {banner:?}"))
                    .to_owned(),
            }
        })
        .collect();
    assert_eq!(exchanges.len(), 3, "{}", out.text());
    exchanges
}
