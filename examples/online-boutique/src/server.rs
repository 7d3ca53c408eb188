//! Serving gRPC: the generated tonic servers on hyper's HTTP/2 server (no tonic transport),
//! one port per process as upstream.
//!
//! A [`Router`] maps `/<package>.<Service>/` path prefixes to generated servers; [`Server`]
//! binds, adds the standard [`health`] service answering for every routed
//! service, and serves each call inside its [`trace`](crate::trace) span so that outgoing
//! calls made while handling it carry the caller's trace. Unknown services and methods get
//! the gRPC `UNIMPLEMENTED` status.

use std::{convert::Infallible, future::Future, net::SocketAddr, pin::Pin, sync::Arc};

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tonic::{body::Body, server::NamedService};

use crate::{health, trace::TraceContext};

/// Errors starting a server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listening socket could not be bound.
    #[error(
        "cannot listen on {addr}: {source} (is another process using the port? \
         set PORT or --listen)"
    )]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why binding failed.
        source: std::io::Error,
    },
}

type ResponseFuture = Pin<Box<dyn Future<Output = http::Response<Body>> + Send>>;
type Handler = Arc<dyn Fn(http::Request<Incoming>) -> ResponseFuture + Send + Sync>;

/// Routes calls to generated tonic servers by service name.
#[derive(Clone, Default)]
pub struct Router {
    /// `("/<package>.<Service>/", handler)`.
    routes: Vec<(String, Handler)>,
}

/// A bound server, ready to [`run`](Server::run).
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    router: Arc<Router>,
}

// === impl Router ===

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes the calls of the generated server `svc` (`/<S::NAME>/<Method>`) to it.
    #[must_use]
    pub fn add_service<S>(mut self, svc: S) -> Self
    where
        S: tonic::codegen::Service<
                http::Request<Incoming>,
                Response = http::Response<Body>,
                Error = Infallible,
            > + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let handler: Handler = Arc::new(move |req| {
            let mut svc = svc.clone();
            Box::pin(async move {
                match svc.call(req).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            })
        });
        self.routes.push((format!("/{}/", S::NAME), handler));
        self
    }

    /// The fully qualified names of the routed services, in the order added.
    pub fn services(&self) -> Vec<String> {
        self.routes
            .iter()
            .map(|(prefix, _)| prefix.trim_matches('/').to_string())
            .collect()
    }

    /// Handles one call inside its trace span.
    async fn handle(&self, req: http::Request<Incoming>) -> http::Response<Body> {
        let path = req.uri().path();
        let Some((_, handler)) = self
            .routes
            .iter()
            .find(|(p, _)| path.starts_with(p.as_str()))
        else {
            tracing::debug!(path, "call to an unknown service");
            return tonic::Status::unimplemented(format!("unknown service for {path}")).into_http();
        };
        let span = TraceContext::incoming(req.headers());
        tracing::debug!(path, traceparent = %span, "call");
        crate::trace::scope(span, handler(req)).await
    }
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("services", &self.services())
            .finish()
    }
}

// === impl Server ===

impl Server {
    /// Binds `addr` (port 0 picks a free port) and prepares to serve `router`'s services
    /// plus `grpc.health.v1.Health`, which reports every routed service as serving.
    pub async fn bind(addr: SocketAddr, router: Router) -> Result<Self, Error> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| Error::Bind { addr, source })?;
        let services = router.services();
        let router = router.add_service(health::server(services));
        Ok(Self {
            listener,
            local_addr,
            router: Arc::new(router),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves connections until the task is dropped or aborted.
    pub async fn run(self) {
        tracing::info!(addr = %self.local_addr, services = ?self.router.services(), "serving gRPC");
        let builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        loop {
            let (socket, peer) = accept(&self.listener).await;
            let router = self.router.clone();
            let builder = builder.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let router = router.clone();
                    async move { Ok::<_, Infallible>(router.handle(req).await) }
                });
                if let Err(e) = builder.serve_connection(TokioIo::new(socket), svc).await {
                    tracing::debug!(%peer, error = %e, "connection ended");
                }
            });
        }
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("router", &self.router)
            .finish()
    }
}

/// The next connection of `listener`, with Nagle off; failed accepts (e.g. out of file
/// descriptors) are logged and retried after 50 ms. Shared by the gRPC servers and the
/// frontend.
pub(crate) async fn accept(
    listener: &tokio::net::TcpListener,
) -> (tokio::net::TcpStream, std::net::SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((socket, peer)) => {
                let _ = socket.set_nodelay(true);
                return (socket, peer);
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
