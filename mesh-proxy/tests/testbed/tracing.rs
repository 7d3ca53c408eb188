//! Distributed tracing through both sidecars with real capture: curl in the client pod sends
//! a request carrying a W3C `traceparent` to the `reviews` VIP; the client and server
//! sidecars export their spans over OTLP/gRPC to a test collector running in a third pod.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

use crate::backend::{Backend, Behavior};
use crate::config::{self, Topology};
use crate::harness::{CURL_TOOL, Mesh};
use crate::http::{PORT, TARGET_PORT, VIP};
use crate::otlp::{Received, TestCollector};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// The collector, running on a current-thread runtime inside the `collector` pod until the
/// returned sender is dropped.
fn start_collector(mesh: &Mesh) -> (TestCollector, std::sync::mpsc::Sender<()>) {
    let pod = mesh.pod("collector");
    let addr = SocketAddr::new(IpAddr::V4(pod.ip()), 4317);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    pod.spawn_thread(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(async move {
            let collector = TestCollector::start(addr).await;
            let _ = ready_tx.send(collector);
            // Serve until the test drops the stop sender (polled, so the runtime keeps
            // driving the collector's tasks).
            loop {
                match stop_rx.try_recv() {
                    Err(std::sync::mpsc::TryRecvError::Empty) => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    _ => return,
                }
            }
        });
    })
    .expect("a thread in the collector pod");
    let collector = ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the collector starts");
    (collector, stop_tx)
}

fn wait_for_spans(collector: &TestCollector, n: usize) -> Vec<Received> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let spans: Vec<Received> = collector
            .spans()
            .into_iter()
            .filter(|r| hex(&r.span.trace_id) == TRACE)
            .collect();
        if spans.len() >= n || Instant::now() > deadline {
            return spans;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn client_and_server_spans_reach_the_collector_with_the_incoming_trace() {
    let Some(mut mesh) = Mesh::new(&["client", "v1", "collector"], &[CURL_TOOL]) else {
        return;
    };
    let client = config::workload(mesh.pod("client"), "productpage", "v1");
    let w1 = config::workload(mesh.pod("v1"), "reviews", "v1");
    let topology = Topology {
        services: vec![config::service(
            "reviews",
            VIP,
            PORT,
            TARGET_PORT,
            mesh_api::model::AppProtocol::Http,
        )],
        endpoints: vec![config::endpoints("reviews", &[&w1])],
        routes: Vec::new(),
        clusters: vec![config::cluster("reviews", PORT)],
    };
    let (collector, _stop) = start_collector(&mesh);
    let url = format!("http://{}", collector.addr);
    let _backend = Backend::start(mesh.pod("v1"), TARGET_PORT, "v1", Behavior::default());
    // Sampling 0 %: only the incoming sampled flag decides, so exactly this trace is kept.
    let args = ["--trace-collector", url.as_str(), "--trace-sampling", "0"];
    for w in [&client, &w1] {
        mesh.sidecar_spec_with(&topology.spec_for(w), &args);
    }
    let traceparent = format!("traceparent: 00-{TRACE}-{PARENT}-01");
    let transfers = mesh.curl(
        "client",
        &[format!("http://{VIP}:{PORT}/traced")],
        &["-H", &traceparent],
    );
    assert_eq!(transfers[0].status, 200, "{transfers:?}");

    let spans = wait_for_spans(&collector, 2);
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let client_span = spans
        .iter()
        .find(|r| r.span.kind == SpanKind::Client as i32)
        .expect("a CLIENT span from the client sidecar");
    let server_span = spans
        .iter()
        .find(|r| r.span.kind == SpanKind::Server as i32)
        .expect("a SERVER span from the server sidecar");
    assert_eq!(hex(&client_span.span.parent_span_id), PARENT);
    assert_eq!(server_span.span.parent_span_id, client_span.span.span_id);
    assert_eq!(client_span.service, "productpage.default");
    assert_eq!(server_span.service, "reviews.default");
}
