//! Limits and lifecycle of the proxy's client-facing listeners: oversized request heads,
//! slow clients (slowloris), and graceful drain on shutdown.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser;
use mesh_api::model::*;
use mesh_proxy::app::{App, Args};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `mesh-proxy run` arguments parsed as the CLI would, so new flags keep their defaults.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: Args,
}

/// A client proxy for `reviews:9080` whose only endpoint is a plain (non-mesh) backend.
async fn start(
    net: u8,
    extra: &[&str],
    backend_behavior: Behavior,
) -> (App, Backend, tempfile::TempDir) {
    let be = backend(SocketAddr::new(ip(net, 2), 8080), "v1", backend_behavior).await;
    let me = workload("productpage", ip(net, 1), "productpage", "v1", true);
    let plain = workload("reviews-v1", ip(net, 2), "reviews", "v1", false);
    let s = spec(
        me,
        vec![service(9080, 8080, AppProtocol::Http)],
        vec![endpoints(vec![plain])],
        Vec::new(),
        Vec::new(),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.json");
    std::fs::write(&path, serde_json::to_vec(&s).unwrap()).unwrap();
    let identity_dir = dir.path().join("identity");
    support::pki::ca().issue_into(&s.identity, &identity_dir);
    let host = ip(net, 1).to_string();
    let mut argv: Vec<String> = vec![
        "test".into(),
        "--config".into(),
        path.display().to_string(),
        "--identity-dir".into(),
        identity_dir.display().to_string(),
        "--no-capture".into(),
        "--inbound".into(),
        format!("{host}:0"),
        "--admin".into(),
        format!("{host}:0"),
        "--metrics".into(),
        format!("{host}:0"),
        "--health".into(),
        format!("{host}:0"),
        "--upstream".into(),
        format!("{host}:0={HOST}:9080"),
    ];
    argv.extend(extra.iter().map(|s| s.to_string()));
    let cli = Cli::try_parse_from(argv).expect("valid arguments");
    let app = App::build(cli.args, None).await.expect("proxy builds");
    (app, be, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_heads_are_refused_with_431() {
    let (app, _be, _dir) = start(41, &["--max-header-bytes", "16384"], Behavior::default()).await;
    let addr = app.bound().upstreams[0];
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));
    // A normal request works…
    let (status, body, _) = get(&http1_client(), addr, "/ok", &[]).await;
    assert_eq!(status, 200, "{body}");
    // …a 32 KiB header does not reach the backend.
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let big = "a".repeat(32 * 1024);
    let req = format!("GET / HTTP/1.1\r\nHost: reviews:9080\r\nx-big: {big}\r\n\r\n");
    let _ = stream.write_all(req.as_bytes()).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    let head = String::from_utf8_lossy(&buf);
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
    let _ = tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_heads_are_cut_off() {
    let (app, _be, _dir) =
        start(42, &["--header-read-timeout", "300ms"], Behavior::default()).await;
    let addr = app.bound().upstreams[0];
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // Half a request head, then silence.
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: reviews")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the proxy kept a slow client's connection open"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let _ = tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_finishes_in_flight_requests_and_stops_accepting() {
    let slow = Behavior {
        delay: Duration::from_millis(500),
        ..Behavior::default()
    };
    let (app, _be, _dir) = start(43, &["--drain-timeout", "5s"], slow).await;
    let addr = app.bound().upstreams[0];
    let health = app.bound().health;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));
    let client = http1_client();
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { get(&client, addr, "/slow", &[]).await }
    });
    // Let the request reach the backend, then ask the proxy to stop.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = tx.send(());
    let (status, body, _) = in_flight.await.unwrap();
    assert_eq!(status, 200, "in-flight request survives the drain: {body}");
    let ended = tokio::time::timeout(Duration::from_secs(10), task).await;
    assert!(
        ended.is_ok(),
        "the proxy did not stop within the drain timeout"
    );
    // Stopped: the listeners are gone.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    assert!(tokio::net::TcpStream::connect(health).await.is_err());
}
