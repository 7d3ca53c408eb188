//! A scripted test control plane: the generated `mesh.discovery.v1.Discovery` server, served
//! over hyper's HTTP/2 server (no tonic transport) behind mutual TLS with the test CA's
//! certificate for mesh-control ([`super::pki`]), that
//!
//! - holds resources per kind ([`TestControlPlane::set`]) and answers each subscription with
//!   what differs from the subscription's `initial_resource_versions` (nothing if nothing
//!   differs, except that a subscription listing nothing is always answered);
//! - pushes any response a test scripts ([`TestControlPlane::push`]) on the newest stream;
//! - records every request and response, by stream, for assertions
//!   ([`TestControlPlane::wait_for`]);
//! - can be killed (every connection dropped, the port closed) and restarted on the same
//!   address with the same state ([`TestControlPlane::kill`], [`TestControlPlane::restart`]).

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use mesh_api::model::{self, ResourceKind};
use mesh_api::proto::discovery::v1 as pb;
use mesh_api::proto::discovery::v1::discovery_server::{Discovery, DiscoveryServer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;

/// Bound on every wait.
pub const WAIT: Duration = Duration::from_secs(10);

type Tx = mpsc::Sender<Result<pb::DiscoveryResponse, tonic::Status>>;

/// Everything the control plane saw and sent, by stream (numbered from 0 in the order they
/// opened, across restarts).
#[derive(Default)]
pub struct Log {
    /// Requests received: (stream, request).
    pub requests: Vec<(usize, pb::DiscoveryRequest)>,
    /// Responses sent: (stream, response).
    pub sent: Vec<(usize, pb::DiscoveryResponse)>,
    /// Streams opened.
    pub streams: usize,
}

impl Log {
    /// The requests of stream `stream`.
    pub fn requests_of(&self, stream: usize) -> Vec<&pb::DiscoveryRequest> {
        self.requests
            .iter()
            .filter(|(s, _)| *s == stream)
            .map(|(_, r)| r)
            .collect()
    }

    /// The subscriptions (requests without a nonce) of stream `stream`.
    pub fn subscriptions_of(&self, stream: usize) -> Vec<&pb::DiscoveryRequest> {
        self.requests_of(stream)
            .into_iter()
            .filter(|r| r.response_nonce.is_empty())
            .collect()
    }

    /// The answer (ACK or NACK) to the response with `nonce`.
    pub fn answer(&self, nonce: &str) -> Option<&pb::DiscoveryRequest> {
        self.requests
            .iter()
            .map(|(_, r)| r)
            .find(|r| r.response_nonce == nonce)
    }

    /// The responses sent on stream `stream`.
    pub fn sent_on(&self, stream: usize) -> Vec<&pb::DiscoveryResponse> {
        self.sent
            .iter()
            .filter(|(s, _)| *s == stream)
            .map(|(_, r)| r)
            .collect()
    }
}

#[derive(Default)]
struct State {
    /// type_url → name → resource.
    resources: BTreeMap<String, BTreeMap<String, pb::Resource>>,
    /// Each stream's response sender (`None` once killed), by stream number.
    streams: Vec<Option<Tx>>,
    log: Log,
    nonce: u64,
    version: u64,
}

impl State {
    fn next_nonce(&mut self) -> String {
        self.nonce += 1;
        format!("n{}", self.nonce)
    }

    /// The answer to a subscription, if one is due.
    fn subscription(&mut self, req: &pb::DiscoveryRequest) -> Option<pb::DiscoveryResponse> {
        let held = &req.initial_resource_versions;
        let want = self
            .resources
            .get(&req.type_url)
            .cloned()
            .unwrap_or_default();
        let resources: Vec<pb::Resource> = want
            .values()
            .filter(|r| held.get(&r.name) != Some(&r.version))
            .cloned()
            .collect();
        let removed: Vec<String> = held
            .keys()
            .filter(|n| !want.contains_key(*n))
            .cloned()
            .collect();
        if !held.is_empty() && resources.is_empty() && removed.is_empty() {
            return None;
        }
        Some(pb::DiscoveryResponse {
            type_url: req.type_url.clone(),
            system_version: format!("cp-{}", self.version),
            nonce: self.next_nonce(),
            resources,
            removed_resources: removed,
        })
    }
}

#[derive(Clone)]
struct Handler {
    state: Arc<Mutex<State>>,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

#[tonic::async_trait]
impl Discovery for Handler {
    type StreamStream = ReceiverStream<Result<pb::DiscoveryResponse, tonic::Status>>;

    async fn stream(
        &self,
        req: tonic::Request<tonic::Streaming<pb::DiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::StreamStream>, tonic::Status> {
        let (tx, rx) = mpsc::channel(64);
        let id = {
            let mut s = self.state.lock().unwrap();
            s.streams.push(Some(tx.clone()));
            s.log.streams += 1;
            s.streams.len() - 1
        };
        let mut incoming = req.into_inner();
        let state = self.state.clone();
        let task = tokio::spawn(async move {
            while let Ok(Some(r)) = incoming.message().await {
                let answer = {
                    let mut s = state.lock().unwrap();
                    s.log.requests.push((id, r.clone()));
                    let answer = if r.response_nonce.is_empty() {
                        s.subscription(&r)
                    } else {
                        None
                    };
                    if let Some(a) = &answer {
                        s.log.sent.push((id, a.clone()));
                    }
                    answer
                };
                if let Some(a) = answer
                    && tx.send(Ok(a)).await.is_err()
                {
                    return;
                }
            }
        });
        self.tasks.lock().unwrap().push(task.abort_handle());
        Ok(tonic::Response::new(ReceiverStream::new(rx)))
    }
}

/// The test control plane; dropping it kills it.
pub struct TestControlPlane {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Drop for TestControlPlane {
    fn drop(&mut self) {
        self.kill();
    }
}

impl TestControlPlane {
    /// Starts serving on `addr` (port 0 picks one) with `resources` (each with its version),
    /// which are in place before the first connection.
    pub async fn start(addr: SocketAddr, resources: Vec<(model::Resource, &str)>) -> Self {
        let mut cp = Self {
            addr,
            state: Arc::default(),
            tasks: Arc::default(),
        };
        let mut by_kind: BTreeMap<ResourceKind, Vec<_>> = BTreeMap::new();
        for (r, v) in resources {
            by_kind.entry(r.kind()).or_default().push((r, v));
        }
        for (kind, rs) in by_kind {
            cp.set(kind, rs);
        }
        cp.serve().await;
        cp
    }

    async fn serve(&mut self) {
        // A listener on this address that was just aborted closes once its task is dropped:
        // retry for a bounded time.
        let deadline = tokio::time::Instant::now() + WAIT;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot bind the test control plane to {}: {e}", self.addr),
            }
        };
        self.addr = listener.local_addr().unwrap();
        let server = DiscoveryServer::new(Handler {
            state: self.state.clone(),
            tasks: self.tasks.clone(),
        });
        let tasks = self.tasks.clone();
        let control_plane =
            mesh_api::spiffe::SpiffeId::new("cluster.local", "mesh-system", "mesh-control")
                .unwrap();
        let acceptor =
            tokio_rustls::TlsAcceptor::from(super::pki::ca().server_config(&control_plane));
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let svc = TowerToHyperService::new(server.clone());
                let acceptor = acceptor.clone();
                let conn = tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
                tasks.lock().unwrap().push(conn.abort_handle());
            }
        });
        self.tasks.lock().unwrap().push(accept.abort_handle());
    }

    /// Closes the port and drops every connection and stream; the state is kept.
    pub fn kill(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
        for s in &mut self.state.lock().unwrap().streams {
            *s = None;
        }
    }

    /// Serves again on the same address, with the same state.
    pub async fn restart(&mut self) {
        self.kill();
        self.serve().await;
    }

    /// Sets the resources of `kind` that subscriptions are answered with, each with its
    /// version. Open streams are not told (see [`TestControlPlane::push`]).
    pub fn set(&self, kind: ResourceKind, resources: Vec<(model::Resource, &str)>) {
        let mut s = self.state.lock().unwrap();
        s.version += 1;
        s.resources.insert(
            kind.type_url().to_owned(),
            resources
                .into_iter()
                .map(|(r, v)| (r.name().into_owned(), pb::Resource::new(&r, v)))
                .collect(),
        );
    }

    /// Sends `response` (its nonce replaced by a fresh one) on the newest stream; returns
    /// the nonce.
    pub async fn push(&self, mut response: pb::DiscoveryResponse) -> String {
        let tx = {
            let mut s = self.state.lock().unwrap();
            response.nonce = s.next_nonce();
            let id = s.streams.len().checked_sub(1).expect("a stream");
            s.log.sent.push((id, response.clone()));
            s.streams[id].clone().expect("the newest stream is open")
        };
        let nonce = response.nonce.clone();
        tx.send(Ok(response)).await.expect("the stream is open");
        nonce
    }

    /// Runs `f` on the log.
    pub fn log<T>(&self, f: impl FnOnce(&Log) -> T) -> T {
        f(&self.state.lock().unwrap().log)
    }

    /// Polls the log until `f` returns `Some` (at most [`WAIT`]); panics naming `what`.
    pub async fn wait_for<T>(&self, what: &str, f: impl Fn(&Log) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(v) = self.log(&f) {
                return v;
            }
            if tokio::time::Instant::now() >= deadline {
                let requests = self.log(|l| format!("{:#?}", l.requests));
                panic!("{what}: not within {WAIT:?}; requests so far: {requests}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the answer to `nonce`.
    pub async fn answer(&self, nonce: &str) -> pb::DiscoveryRequest {
        self.wait_for(&format!("the answer to {nonce}"), |l| {
            l.answer(nonce).cloned()
        })
        .await
    }
}
