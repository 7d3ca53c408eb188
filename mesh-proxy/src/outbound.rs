//! The client side of the proxy: connections from the local application to services.
//!
//! Connections arrive either by transparent capture (port 15001; the original destination
//! comes from `SO_ORIGINAL_DST` and is resolved to a service by VIP and port) or on an
//! explicit listener declared for one upstream service (no root needed). From "which service
//! is this?" on, both are the same: the port's protocol (declared, or sniffed) decides
//! between per-request HTTP routing ([`forward`]) and an opaque TCP stream ([`tcp`]).
//!
//! Connections to addresses that are not services pass through untouched (Istio's
//! `PassthroughCluster`), so capture never breaks traffic the mesh does not know about.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use mesh_api::model::AppProtocol;
use tokio::net::{TcpListener, TcpStream};

use crate::detect::{self, Protocol};
use crate::http::Body;
use crate::proxy::Proxy;

pub mod forward;
pub mod route;
pub mod tcp;

/// How an outbound listener learns where a connection was going.
#[derive(Debug, Clone)]
pub enum Target {
    /// Transparent capture: read `SO_ORIGINAL_DST` from each connection.
    Captured,
    /// An explicit listener for one service port.
    Service {
        /// The service's host name.
        hostname: Arc<str>,
        /// The service port.
        port: u16,
    },
}

/// Where one connection is going, once resolved.
#[derive(Debug, Clone)]
pub struct Destination {
    /// The service host name, when the destination is a known service.
    pub service: Option<Arc<str>>,
    /// The service port (or the original destination port).
    pub port: u16,
    /// The address the client dialed (VIP:port), when captured.
    pub original: Option<SocketAddr>,
    /// The port's declared protocol.
    pub protocol: AppProtocol,
    /// For a headless service: the endpoint address the client dialed, which must be the one
    /// that serves it (a StatefulSet pod, say) rather than any endpoint of the service.
    pub pinned: Option<SocketAddr>,
}

/// Accepts connections until `shutdown` resolves, serving each on its own task.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    target: Target,
    shutdown: impl std::future::Future<Output = ()>,
) {
    crate::proxy::accept_loop(listener, "outbound", shutdown, move |stream, client| {
        let proxy = proxy.clone();
        let target = target.clone();
        async move {
            if let Err(e) = serve_conn(proxy, stream, client, target).await {
                tracing::debug!(%client, error = %e, "outbound connection ended with an error");
            }
        }
    })
    .await;
}

/// Resolves a connection's destination against the current config.
fn resolve(proxy: &Proxy, stream: &TcpStream, target: &Target) -> std::io::Result<Destination> {
    let snapshot = proxy.state.snapshot();
    match target {
        Target::Service { hostname, port } => {
            let protocol = snapshot
                .as_ref()
                .and_then(|s| s.config.service(hostname))
                .and_then(|svc| svc.port(*port))
                .map_or(AppProtocol::Unknown, |p| p.protocol);
            Ok(Destination {
                service: Some(hostname.clone()),
                port: *port,
                original: None,
                protocol,
                pinned: None,
            })
        }
        Target::Captured => {
            let original = crate::sockopt::original_dst(stream)?;
            let found = snapshot
                .as_ref()
                .and_then(|s| s.config.service_by_addr(original))
                .map(|(svc, port)| {
                    let headless = svc.kind == mesh_api::model::ServiceKind::Headless;
                    (
                        Arc::<str>::from(svc.hostname.as_str()),
                        port.port,
                        port.protocol,
                        headless,
                    )
                });
            Ok(match found {
                // The service port (a headless service may be dialed on its target port).
                Some((service, port, protocol, headless)) => Destination {
                    service: Some(service),
                    port,
                    original: Some(original),
                    protocol,
                    pinned: headless.then_some(original),
                },
                None => Destination {
                    service: None,
                    port: original.port(),
                    original: Some(original),
                    protocol: AppProtocol::Tcp,
                    pinned: None,
                },
            })
        }
    }
}

async fn serve_conn(
    proxy: Arc<Proxy>,
    stream: TcpStream,
    client: SocketAddr,
    target: Target,
) -> anyhow::Result<()> {
    let dest = resolve(&proxy, &stream, &target)?;
    if dest.service.is_none() {
        // Not a service: pass through to where the client was going.
        if let Some(original) = dest.original {
            return tcp::passthrough(&proxy, stream, original).await;
        }
        return Ok(());
    }
    match detect::detect(&stream, dest.protocol, dest.port).await {
        Protocol::Opaque => tcp::forward(&proxy, stream, client, &dest).await,
        Protocol::Http => serve_http(proxy, stream, client, dest).await,
    }
}

async fn serve_http(
    proxy: Arc<Proxy>,
    stream: TcpStream,
    client: SocketAddr,
    dest: Destination,
) -> anyhow::Result<()> {
    let conn = Arc::new(forward::ConnCtx { client, dest });
    let svc_proxy = proxy.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let proxy = svc_proxy.clone();
        let conn = conn.clone();
        async move { Ok::<Response<Body>, Infallible>(forward::handle(&proxy, &conn, req).await) }
    });
    let builder = proxy.http_server();
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let conn = proxy.serve_conn(conn.into_owned());
    conn.await.map_err(|e| anyhow::anyhow!("serving http: {e}"))
}
