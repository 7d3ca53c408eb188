//! An in-process HTTP backend for testbed pods: HTTP/1.1 and h2c (prior knowledge) on one
//! port, via hyper-util's auto server, on a current-thread tokio runtime in a thread that
//! entered the pod's network namespace.
//!
//! Every response names the backend (`x-backend`, also the body), the HTTP version it
//! received (`x-proto`), whether any `x-mesh-*` header leaked through the server sidecar
//! (`x-leak`), the peer address of its connection (`x-peer`: `127.0.0.1` when the request
//! came through the pod's sidecar) and the size of the request body it read (`x-received`);
//! `GET /bytes/<n>` answers n bytes. A [`Behavior`] makes it fail a share of requests with
//! 503 or answer late. Dropping the [`Backend`] stops it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_testbed::Pod;

/// What a backend does with each request.
#[derive(Clone, Debug, Default)]
pub(crate) struct Behavior {
    /// Answer 503 for this share of requests (0.0–1.0), spread deterministically.
    pub(crate) fail_ratio: f64,
    /// Wait this long before answering.
    pub(crate) delay: Duration,
}

/// A running backend; dropping it stops it.
pub(crate) struct Backend {
    requests: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), mesh_testbed::Error>>>,
}

impl Backend {
    /// Starts backend `name` on `0.0.0.0:port` inside `pod`; returns once it listens.
    pub(crate) fn start(pod: &Pod, port: u16, name: &'static str, behavior: Behavior) -> Self {
        let requests = Arc::new(AtomicU64::new(0));
        let counter = requests.clone();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (bound_tx, bound_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
        let thread = pod
            .spawn_thread(move || serve(port, name, behavior, counter, stop_rx, bound_tx))
            .expect("start the backend thread");
        match bound_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("backend {name} cannot listen on port {port}: {e}"),
            Err(e) => panic!("backend {name} did not start: {e}"),
        }
        Self {
            requests,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Requests received so far.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // The runtime stops at once: its tasks are dropped with it.
            let _ = thread.join();
        }
    }
}

fn serve(
    port: u16,
    name: &'static str,
    behavior: Behavior,
    counter: Arc<AtomicU64>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
    bound: std::sync::mpsc::Sender<std::io::Result<()>>,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        let listener =
            match tokio::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port))).await {
                Ok(l) => {
                    let _ = bound.send(Ok(()));
                    l
                }
                Err(e) => {
                    let _ = bound.send(Err(e));
                    return;
                }
            };
        loop {
            let (stream, peer) = tokio::select! {
                _ = &mut stop => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(_) => continue,
                },
            };
            let counter = counter.clone();
            let behavior = behavior.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    respond(req, n, name, behavior.clone(), peer)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}

async fn respond(
    req: Request<Incoming>,
    n: u64,
    name: &'static str,
    behavior: Behavior,
    peer: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let proto = format!("{:?}", req.version());
    let leaked = req
        .headers()
        .keys()
        .any(|k| k.as_str().starts_with("x-mesh-"));
    let received = req
        .into_body()
        .collect()
        .await
        .map_or(0, |b| b.to_bytes().len());
    if !behavior.delay.is_zero() {
        tokio::time::sleep(behavior.delay).await;
    }
    // Request n fails when the running count of failures would fall behind n * ratio.
    let fail = behavior.fail_ratio > 0.0
        && ((n + 1) as f64 * behavior.fail_ratio).floor()
            > (n as f64 * behavior.fail_ratio).floor();
    // `/bytes/<n>` asks for an n-byte body (at most 64 MiB).
    let body = match path
        .strip_prefix("/bytes/")
        .and_then(|n| n.parse::<usize>().ok())
    {
        Some(n) => Bytes::from(vec![b'x'; n.min(64 << 20)]),
        None => Bytes::from(format!("{name} {path}\n")),
    };
    let mut res = Response::new(Full::new(body));
    if fail {
        *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    }
    let headers = res.headers_mut();
    headers.insert("x-backend", name.parse().expect("a header value"));
    headers.insert("x-proto", proto.parse().expect("a header value"));
    headers.insert(
        "x-leak",
        (if leaked { "leaked" } else { "clean" })
            .parse()
            .expect("a header value"),
    );
    headers.insert("x-received", received.into());
    headers.insert(
        "x-peer",
        peer.ip().to_string().parse().expect("a header value"),
    );
    Ok(res)
}
