//! The health server's `/app-health/...` paths (application probes rewritten through the
//! proxy by sidecar injection), in-process on 127.0.0.1 against small test applications:
//! an HTTP (and HTTPS) app whose status the test flips, a TCP listener that goes away, a
//! hand-rolled gRPC health server over h2c, and an app that accepts and never answers.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU16, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use clap::Parser as _;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_api::inject::{AppProbes, probe::APP_HEALTH_PREFIX};
use mesh_proxy::admin::{self, AdminState, Readiness};
use prometheus_client::registry::Registry;
use tokio::{net::TcpListener, sync::watch};

/// Bound on every wait in these tests.
const WAIT: Duration = Duration::from_secs(10);

// === the health server ===

/// The health server with `probes` (JSON, parsed as the proxy parses `MESH_APP_PROBES`);
/// it stops when the returned sender is dropped.
async fn health_server(probes: &serde_json::Value) -> (SocketAddr, watch::Sender<bool>) {
    let (quit, _) = watch::channel(false);
    let state = AdminState::new(
        Arc::new(|| None),
        Readiness::new(admin::WAITING_FOR_CONFIG),
        Registry::default(),
        Arc::new(|| serde_json::json!({})),
        None,
        quit,
    );
    state.set_app_probes(AppProbes::parse(&probes.to_string()).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, mut stopped) = watch::channel(false);
    tokio::spawn(admin::serve_health(listener, state, async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    (addr, stop)
}

/// `method path` on the health server: the status and the body.
async fn call(addr: SocketAddr, method: Method, path: &str) -> (StatusCode, String) {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "pod")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = send.send_request(req).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(WAIT, exchange)
        .await
        .unwrap_or_else(|_| panic!("no answer to {path} within {WAIT:?}"))
}

async fn get(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    call(addr, Method::GET, path).await
}

// === test applications ===

/// An HTTP/1.1 app answering `GET /healthz` carrying `X-Probe: yes` with the status in
/// `status` (anything else: 400), over TLS when `tls` is set.
async fn http_app(status: Arc<AtomicU16>, tls: Option<tokio_rustls::TlsAcceptor>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let status = status.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let expected = req.uri().path() == "/healthz"
                        && req.headers().get("x-probe").is_some_and(|v| v == "yes")
                        && req
                            .headers()
                            .get("user-agent")
                            .is_some_and(|v| v.as_bytes().starts_with(b"kube-probe/"));
                    let code = if expected {
                        status.load(Ordering::SeqCst)
                    } else {
                        400
                    };
                    let mut r = Response::new(Full::new(Bytes::from("app\n")));
                    *r.status_mut() = StatusCode::from_u16(code).unwrap();
                    async move { Ok::<_, Infallible>(r) }
                });
                let http = hyper::server::conn::http1::Builder::new();
                match tls {
                    None => {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                    Some(tls) => {
                        if let Ok(stream) = tls.accept(stream).await {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                }
            });
        }
    });
    port
}

/// A TLS acceptor with a fresh self-signed certificate (which the probe must not verify).
fn self_signed_tls() -> tokio_rustls::TlsAcceptor {
    let key = rcgen::generate_simple_self_signed(vec!["app.example".to_owned()]).unwrap();
    let cert = key.cert.der().clone();
    let private = rustls::pki_types::PrivatePkcs8KeyDer::from(key.signing_key.serialize_der());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], private.into())
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// A gRPC health server over h2c: service `up` (and the empty name) is SERVING, `down`
/// NOT_SERVING, any other name answers grpc-status 5 (NOT_FOUND), trailers-only.
async fn grpc_app() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = service_fn(|req: Request<Incoming>| async move {
                    assert_eq!(req.uri().path(), "/grpc.health.v1.Health/Check");
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    // [flag, len(4), 0x0a, n, name…] or an empty message.
                    let service = body
                        .get(7..)
                        .map(|n| String::from_utf8_lossy(n).into_owned());
                    let status: Option<u8> = match service.as_deref() {
                        None | Some("up") => Some(1),
                        Some("down") => Some(2),
                        Some(_) => None,
                    };
                    let mut trailers = HeaderMap::new();
                    let message = match status {
                        Some(s) => {
                            trailers.insert("grpc-status", HeaderValue::from_static("0"));
                            Bytes::from(vec![0, 0, 0, 0, 2, 0x08, s])
                        }
                        None => {
                            trailers.insert("grpc-status", HeaderValue::from_static("5"));
                            trailers.insert("grpc-message", HeaderValue::from_static("unknown"));
                            Bytes::new()
                        }
                    };
                    let body = Full::new(message).with_trailers(async move { Some(Ok(trailers)) });
                    let mut r = Response::new(body);
                    r.headers_mut()
                        .insert("content-type", HeaderValue::from_static("application/grpc"));
                    Ok::<_, Infallible>(r)
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    port
}

/// An app that accepts connections and never answers.
async fn hanging_app() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    port
}

fn http_probe(port: u16, scheme: &str) -> serde_json::Value {
    serde_json::json!({
        "httpGet": {
            "path": "/healthz",
            "port": port,
            "scheme": scheme,
            "httpHeaders": [{"name": "X-Probe", "value": "yes"}],
        },
        "timeoutSeconds": 5,
    })
}

// === tests ===

#[tokio::test]
async fn http_probe_answers_as_the_application_does() {
    let status = Arc::new(AtomicU16::new(200));
    let port = http_app(status.clone(), None).await;
    let (health, _stop) =
        health_server(&serde_json::json!({"/app-health/web/readyz": http_probe(port, "HTTP")}))
            .await;

    let (code, body) = get(health, "/app-health/web/readyz").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let (code, _) = call(health, Method::HEAD, "/app-health/web/readyz").await;
    assert_eq!(code, StatusCode::OK);

    status.store(302, Ordering::SeqCst);
    let (code, body) = get(health, "/app-health/web/readyz").await;
    assert_eq!(code, StatusCode::OK, "a redirect counts as success: {body}");

    status.store(500, Ordering::SeqCst);
    let (code, body) = get(health, "/app-health/web/readyz").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("500"), "{body}");

    let (code, _) = call(health, Method::POST, "/app-health/web/readyz").await;
    assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn https_probe_does_not_verify_the_certificate() {
    let status = Arc::new(AtomicU16::new(200));
    let port = http_app(status.clone(), Some(self_signed_tls())).await;
    let (health, _stop) =
        health_server(&serde_json::json!({"/app-health/web/livez": http_probe(port, "HTTPS")}))
            .await;
    let (code, body) = get(health, "/app-health/web/livez").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    status.store(503, Ordering::SeqCst);
    let (code, body) = get(health, "/app-health/web/livez").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
}

#[tokio::test]
async fn tcp_probe_follows_the_listener() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (health, _stop) = health_server(&serde_json::json!({
        "/app-health/db/livez": {"tcpSocket": {"port": port}, "timeoutSeconds": 5},
    }))
    .await;
    let (code, body) = get(health, "/app-health/db/livez").await;
    assert_eq!(code, StatusCode::OK, "{body}");

    drop(listener);
    let (code, body) = get(health, "/app-health/db/livez").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("cannot connect"), "{body}");
}

#[tokio::test]
async fn grpc_probe_checks_the_health_service() {
    let port = grpc_app().await;
    let probe = |service: &str| serde_json::json!({"grpc": {"port": port, "service": service}, "timeoutSeconds": 5});
    let (health, _stop) = health_server(&serde_json::json!({
        "/app-health/up/readyz": probe("up"),
        "/app-health/down/readyz": probe("down"),
        "/app-health/other/readyz": probe("other"),
        "/app-health/all/readyz": {"grpc": {"port": port}},
    }))
    .await;

    for path in ["/app-health/up/readyz", "/app-health/all/readyz"] {
        let (code, body) = get(health, path).await;
        assert_eq!(code, StatusCode::OK, "{path}: {body}");
        assert!(body.contains("SERVING"), "{body}");
    }
    let (code, body) = get(health, "/app-health/down/readyz").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("NOT_SERVING"), "{body}");
    let (code, body) = get(health, "/app-health/other/readyz").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("grpc-status 5"), "{body}");
}

#[tokio::test]
async fn a_hanging_application_fails_the_probe_within_its_timeout() {
    let port = hanging_app().await;
    let (health, _stop) = health_server(&serde_json::json!({
        "/app-health/stuck/readyz": {
            "httpGet": {"path": "/healthz", "port": port, "scheme": "HTTP"},
            "timeoutSeconds": 1,
        },
        "/app-health/stuck-grpc/readyz": {"grpc": {"port": port}, "timeoutSeconds": 1},
    }))
    .await;
    for path in ["/app-health/stuck/readyz", "/app-health/stuck-grpc/readyz"] {
        let started = Instant::now();
        let (code, body) = get(health, path).await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert!(body.contains("timed out after 1s"), "{body}");
        // Generous: the bound is the 1 s timeout, not the test's 10 s wait.
        assert!(started.elapsed() < Duration::from_secs(5), "{path}");
    }
}

#[tokio::test]
async fn unknown_app_health_paths_are_404_and_readiness_still_answers() {
    let (health, _stop) = health_server(&serde_json::json!({
        "/app-health/web/readyz": {"tcpSocket": {"port": 1}},
    }))
    .await;
    let (code, body) = get(health, "/app-health/web/livez").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert!(
        body.contains("/app-health/web/readyz"),
        "lists the probes: {body}"
    );
    let (code, _) = get(health, &format!("{APP_HEALTH_PREFIX}nothing")).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, body) = get(health, "/healthz/ready").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains(admin::WAITING_FOR_CONFIG), "{body}");
}

/// `mesh-proxy run --app-probes` (env `MESH_APP_PROBES`) refuses invalid JSON at start,
/// naming the variable.
#[test]
fn invalid_app_probes_are_a_startup_error() {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: mesh_proxy::app::Args,
    }
    let err = Cli::try_parse_from([
        "mesh-proxy",
        "--config",
        "p.yaml",
        "--app-probes",
        "{not json",
    ])
    .err()
    .expect("invalid JSON is refused");
    assert!(err.to_string().contains("MESH_APP_PROBES"), "{err}");
    let ok = Cli::try_parse_from([
        "mesh-proxy",
        "--config",
        "p.yaml",
        "--app-probes",
        r#"{"/app-health/web/readyz": {"tcpSocket": {"port": 8080}}}"#,
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ok.args.app_probes.map(|p| p.len()), Some(1));
}
