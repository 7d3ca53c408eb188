//! gRPC through the sidecars with Python grpcio on both ends: a client in pod `client` calls
//! the `versioned` VIP (port protocol gRPC) on one channel — one HTTP/2 connection carrying
//! every call — and its sidecar splits the calls 90/10 between grpcio servers in pods `v1`
//! and `v2`. The Python code is generated from `fixtures/testbed/testbed.proto` at test time.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use mesh_api::model::AppProtocol;
use serde_json::Value;

use crate::config::{self, Topology};
use crate::harness::{self, GRPC_TOOL, Mesh, PYTHON, PYTHON_TOOL, metric_sum, run_bounded};

/// The `versioned` service VIP.
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 20);
/// The service port, also the servers' port.
const PORT: u16 = 50051;
/// Unary calls.
const UNARY: u64 = 2000;
/// Server-streaming calls, and messages per stream.
const STREAMS: u64 = 20;
const MESSAGES: u64 = 100;
/// The servers exit by themselves after this long (the test kills them much earlier).
const SERVER_LIFETIME: &str = "180";

#[test]
fn grpc_canary_split_and_server_streaming() {
    let Some(mut mesh) = Mesh::new(&["client", "v1", "v2"], &[PYTHON_TOOL, GRPC_TOOL]) else {
        return;
    };
    let fixtures = harness::fixtures();
    let generated = harness::generate_grpc_python(&mesh);

    let client = config::workload(mesh.pod("client"), "frontend", "v1");
    let w1 = config::workload(mesh.pod("v1"), "versioned", "v1");
    let w2 = config::workload(mesh.pod("v2"), "versioned", "v2");
    let topology = Topology {
        services: vec![config::service(
            "versioned",
            VIP,
            PORT,
            PORT,
            AppProtocol::Grpc,
        )],
        endpoints: vec![config::endpoints("versioned", &[&w1, &w2])],
        routes: vec![config::split("versioned", PORT, &[("v1", 90), ("v2", 10)])],
        clusters: vec![
            config::subset("versioned", PORT, "v1"),
            config::subset("versioned", PORT, "v2"),
        ],
    };
    for w in [&client, &w1, &w2] {
        mesh.sidecar(w, &topology);
    }
    let server = fixtures.join("grpc_server.py");
    let generated_arg = generated.to_str().expect("a UTF-8 path");
    for version in ["v1", "v2"] {
        mesh.spawn_app(
            version,
            PYTHON,
            &[
                server.to_str().expect("a UTF-8 path"),
                generated_arg,
                &PORT.to_string(),
                version,
                SERVER_LIFETIME,
            ],
        );
    }
    for version in ["v1", "v2"] {
        mesh.wait_for_listener(version, SocketAddr::from(([127, 0, 0, 1], PORT)));
    }

    let script = fixtures.join("grpc_client.py");
    let out = run_bounded(
        mesh.app_command("client", PYTHON)
            .arg(&script)
            .arg(generated_arg)
            .arg(format!("{VIP}:{PORT}"))
            .arg(UNARY.to_string())
            .arg(STREAMS.to_string())
            .arg(MESSAGES.to_string()),
        Duration::from_secs(120),
        "grpc_client.py",
    );
    assert!(out.success, "the gRPC client failed: {}", out.text());
    let report: Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("bad client report ({e}): {}", out.text()));

    // Unary calls: all answered, split 90/10.
    let errors = &report["unary_errors"];
    assert_eq!(errors.as_object().map(|o| o.len()), Some(0), "{report}");
    let v1 = report["unary"]["v1"].as_u64().unwrap_or(0);
    let v2 = report["unary"]["v2"].as_u64().unwrap_or(0);
    assert_eq!(v1 + v2, UNARY, "{report}");
    let share = v2 as f64 / UNARY as f64;
    assert!(
        (0.07..=0.13).contains(&share),
        "v2 share {share:.3} is not 10 % ± 3: {report}"
    );

    // Server streaming: every stream complete, in order, from one backend.
    let stream_errors = &report["stream_errors"];
    assert_eq!(
        stream_errors.as_object().map(|o| o.len()),
        Some(0),
        "{report}"
    );
    let streams = report["streams"].as_array().expect("a list of streams");
    assert_eq!(streams.len() as u64, STREAMS, "{report}");
    for s in streams {
        assert_eq!(s["messages"].as_u64(), Some(MESSAGES), "{s}");
        assert_eq!(s["seqs_in_order"].as_bool(), Some(true), "{s}");
        assert_eq!(s["versions"].as_array().map(Vec::len), Some(1), "{s}");
    }

    // An error status from the server reaches the client intact.
    assert_eq!(report["rejected"]["code"], "INVALID_ARGUMENT", "{report}");
    assert_eq!(report["rejected"]["details"], "count too large", "{report}");

    // The client's sidecar saw every call as gRPC with its status, and the messages.
    let metrics = mesh.metrics("client");
    let ok = [
        ("reporter", "source"),
        ("request_protocol", "grpc"),
        ("grpc_response_status", "0"),
    ];
    let calls = metric_sum(&metrics, "mesh_requests_total", &ok);
    assert_eq!(calls, (UNARY + STREAMS) as f64, "{metrics}");
    let messages = metric_sum(&metrics, "mesh_response_messages_total", &ok);
    assert_eq!(messages, (UNARY + STREAMS * MESSAGES) as f64, "{metrics}");
    let rejected = [
        ("reporter", "source"),
        ("request_protocol", "grpc"),
        ("grpc_response_status", "3"),
    ];
    assert_eq!(
        metric_sum(&metrics, "mesh_requests_total", &rejected),
        1.0,
        "{metrics}"
    );
}
