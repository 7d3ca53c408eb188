//! The server side of the proxy: traffic to the local application.
//!
//! - **Mesh inbound** (port 15008): peer proxies connect with mutual TLS 1.3 (a client
//!   certificate from the mesh CA is required; [`crate::identity`]) and send HTTP/2. The
//!   peer's SPIFFE identity comes from its certificate, never from a header: it is the
//!   `source_principal` of metrics and access logs and what authorization policies match.
//!   A `CONNECT <ip>:<port>` stream
//!   is an opaque TCP tunnel to the application's port; any other request is an HTTP request
//!   for the application port named in `x-mesh-target-port`, forwarded as HTTP/1.1 when the
//!   original client spoke HTTP/1 (`x-mesh-orig-proto`) and as HTTP/2 otherwise (gRPC).
//! - **Captured inbound** (port 15006): plaintext connections from clients outside the mesh,
//!   redirected by the capture rules. The workload's mTLS mode decides: `STRICT` refuses
//!   them, `PERMISSIVE` and `DISABLE` forward them to the application.
//!
//! Both record a server span when tracing is on, and the application receives a
//! `traceparent` whose parent is that span.
//!
//! The application is reached on the configured local address (127.0.0.1 by default, which
//! the capture rules leave alone). The proxy's own ports are never tunnel targets.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use mesh_api::model::MtlsMode;
use mesh_api::spiffe::SpiffeId;
use tokio::net::{TcpListener, TcpStream};

use crate::authz;
use crate::detect::{self, Protocol};
use crate::http::{self as mhttp, Body, ProxyError};
use crate::meter::{Meter, Side, TcpMeter};
use crate::proxy::Proxy;
use crate::state::{PeerMeta, Snapshot};
use crate::telemetry::metrics::ResponseFlag;
use crate::transport;

/// Ports of the proxy itself, which peers may not tunnel to.
pub const PROXY_PORTS: &[u16] = &[15000, 15001, 15006, 15008, 15020, 15021];

/// How long a peer may take to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The verified peer of a mesh connection.
#[derive(Debug, Clone)]
pub(crate) struct MeshPeer {
    /// The connection's source address.
    pub(crate) addr: SocketAddr,
    /// The address the peer connected to.
    pub(crate) local: std::net::IpAddr,
    /// The identity from the peer's certificate.
    pub(crate) id: SpiffeId,
}

/// Accepts mesh connections (mutual TLS, HTTP/2 from peer proxies) until `shutdown`.
pub async fn serve_mesh(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(proxy.state.identity().server_config());
    crate::proxy::accept_loop(listener, "inbound", shutdown, move |stream, client| {
        let proxy = proxy.clone();
        let acceptor = acceptor.clone();
        async move {
            let local = stream
                .local_addr()
                .map_or(proxy.config.app_host, |a| a.ip());
            let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                .await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    proxy.metrics.inbound_tls_failed();
                    tracing::debug!(%client, error = %tls_cause(&e), "mesh connection refused: mTLS handshake failed");
                    return;
                }
                Err(_) => {
                    proxy.metrics.inbound_tls_failed();
                    tracing::debug!(%client, "mesh connection refused: TLS handshake timed out");
                    return;
                }
            };
            let Some(id) = mesh_api::tls::peer_identity(tls.get_ref().1.peer_certificates()) else {
                // The verifier requires a certificate with an identity; this is unreachable
                // unless rustls changes, and fails closed if it does.
                tracing::warn!(%client, "mesh connection without a peer identity: closed");
                return;
            };
            let peer = Arc::new(MeshPeer {
                addr: client,
                local,
                id,
            });
            let svc_proxy = proxy.clone();
            let service = service_fn(move |req: Request<Incoming>| {
                let proxy = svc_proxy.clone();
                let peer = peer.clone();
                async move { Ok::<_, Infallible>(handle_mesh(&proxy, &peer, req).await) }
            });
            let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            builder
                .timer(TokioTimer::new())
                .max_concurrent_streams(proxy.config.max_concurrent_streams)
                .max_header_list_size(proxy.config.max_header_bytes)
                .initial_stream_window_size(1 << 20)
                .initial_connection_window_size(4 << 20)
                .keep_alive_interval(Some(std::time::Duration::from_secs(30)));
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            if let Err(e) = proxy.serve_conn(conn).await {
                tracing::debug!(%client, error = %e, "mesh connection ended with an error");
            }
        }
    })
    .await;
}

/// Accepts captured plaintext connections until `shutdown`.
pub async fn serve_captured(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    crate::proxy::accept_loop(listener, "inbound", shutdown, move |stream, client| {
        let proxy = proxy.clone();
        async move {
            if let Err(e) = serve_captured_conn(proxy, stream, client).await {
                tracing::debug!(%client, error = %e, "captured inbound connection ended with an error");
            }
        }
    })
    .await;
}

/// The application's address for `port`.
fn app_addr(proxy: &Proxy, port: u16) -> SocketAddr {
    SocketAddr::new(proxy.config.app_host, port)
}

/// rustls' errors arrive wrapped in io errors; show the inner one.
fn tls_cause(e: &std::io::Error) -> String {
    match e.get_ref() {
        Some(inner) => inner.to_string(),
        None => e.to_string(),
    }
}

/// The peer's metadata: workload, app and version as its `x-mesh-peer` header describes
/// them (telemetry only), namespace and principal from its verified certificate.
fn peer_meta(req: &Request<Incoming>, peer: &MeshPeer) -> PeerMeta {
    let mut meta = req
        .headers()
        .get(mhttp::PEER)
        .and_then(|v| v.to_str().ok())
        .map(PeerMeta::from_header)
        .unwrap_or_default();
    meta.namespace = peer.id.namespace().into();
    meta.principal = peer.id.as_str().into();
    meta
}

async fn handle_mesh(
    proxy: &Arc<Proxy>,
    peer: &MeshPeer,
    req: Request<Incoming>,
) -> Response<Body> {
    let grpc = mhttp::is_grpc(req.headers());
    let client = peer.addr;
    let meta = peer_meta(&req, peer);
    if req.method() == Method::CONNECT {
        return tunnel(proxy, peer, req, meta);
    }
    let Some(snap) = proxy.state.snapshot() else {
        let err =
            ProxyError::NoHealthyUpstream("this workload (its proxy has no config yet)".into());
        return mhttp::error_response(&err, grpc);
    };
    let mut meter = Meter::start(proxy, &snap, Side::Inbound, &req, grpc);
    meter.set_peer(meta, "mutual_tls");
    meter.set_peer_address(client);
    let port = req
        .headers()
        .get(mhttp::TARGET_PORT)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u16>().ok());
    let Some(port) = port.filter(|p| *p != 0 && !PROXY_PORTS.contains(p)) else {
        let err = ProxyError::BadRequest("missing or invalid x-mesh-target-port".into());
        return meter.respond_error(&err, grpc);
    };
    let mut req = req;
    let conn = Conn {
        peer: Some(&peer.id),
        source: client,
        local: peer.local,
    };
    if let Err(err) = admit(&snap, &mut req, &conn, port) {
        return meter.respond_error(&err, grpc);
    }
    let h1 = req
        .headers()
        .get(mhttp::ORIG_PROTO)
        .is_some_and(|v| v.as_bytes().starts_with(b"HTTP/1"));
    let mut req = req.map(|b| meter.count_request(b, grpc));
    meter.propagate(req.headers_mut());
    match to_app(proxy, req, port, !h1).await {
        Ok(res) => meter.respond(res),
        Err(err) => meter.respond_error(&err, grpc),
    }
}

/// Forwards an HTTP request to the application on `port`.
async fn to_app(
    proxy: &Proxy,
    req: Request<Body>,
    port: u16,
    h2: bool,
) -> Result<Response<Incoming>, ProxyError> {
    let (mut parts, body) = req.into_parts();
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            parts
                .headers
                .get(header::HOST)?
                .to_str()
                .ok()
                .map(str::to_string)
        });
    mhttp::strip_hop_by_hop(&mut parts.headers);
    mhttp::strip_mesh_headers(&mut parts.headers);
    if let Some(a) = &authority
        && let Ok(v) = HeaderValue::from_str(a)
    {
        parts.headers.insert(header::HOST, v);
    }
    let addr = app_addr(proxy, port);
    let app_authority: Authority = addr
        .to_string()
        .parse()
        .map_err(|_| ProxyError::BadRequest("invalid application address".into()))?;
    parts.uri = Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(app_authority)
        .path_and_query(
            parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        )
        .build()
        .map_err(|e| ProxyError::BadRequest(format!("invalid request target: {e}")))?;
    parts.version = if h2 {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    if h2 {
        parts.headers.remove(header::HOST);
    }
    let req = Request::from_parts(parts, body);
    match proxy.direct.send(req, h2).await {
        Ok(mut res) => {
            mhttp::strip_hop_by_hop(res.headers_mut());
            Ok(res)
        }
        Err(e) if e.is_connect() => Err(ProxyError::ConnectFailure {
            service: format!("local application port {port}"),
            reason: "nothing is listening, or it refused the connection".into(),
        }),
        Err(e) => {
            tracing::debug!(error = %e, "application request failed");
            Err(ProxyError::UpstreamReset {
                service: format!("local application port {port}"),
                reason: "the application closed the connection before responding".into(),
            })
        }
    }
}

/// Answers a peer's `CONNECT` and pipes the stream to the application port.
fn tunnel(
    proxy: &Arc<Proxy>,
    mesh_peer: &MeshPeer,
    req: Request<Incoming>,
    peer: PeerMeta,
) -> Response<Body> {
    let client = mesh_peer.addr;
    let port = req
        .uri()
        .authority()
        .and_then(|a| a.port_u16())
        .filter(|p| *p != 0 && !PROXY_PORTS.contains(p));
    let Some(port) = port else {
        let mut res = Response::new(Body::Empty);
        *res.status_mut() = StatusCode::BAD_REQUEST;
        res.headers_mut().insert(
            mhttp::ERROR,
            HeaderValue::from_static("tunnel target must be <ip>:<application port>"),
        );
        return res;
    };
    let Some(snap) = proxy.state.snapshot() else {
        let mut res = Response::new(Body::Empty);
        *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        return res;
    };
    let conn = Conn {
        peer: Some(&mesh_peer.id),
        source: client,
        local: mesh_peer.local,
    };
    if let Err(denied) = authorize_tcp(&snap, &conn, port) {
        tracing::debug!(%client, port, %denied, "tunnel denied");
        let mut res = Response::new(Body::Empty);
        *res.status_mut() = StatusCode::FORBIDDEN;
        res.headers_mut()
            .insert(mhttp::ERROR, crate::http::value_of(&denied));
        return res;
    }
    let service = req
        .headers()
        .get(mhttp::SERVICE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let proxy = proxy.clone();
    tokio::spawn(async move {
        let mut meter = TcpMeter::start(&proxy, &snap, Side::Inbound);
        meter.set_peer(peer, "mutual_tls");
        meter.set_service_host(&service);
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(%client, error = %e, "tunnel upgrade failed");
                return;
            }
        };
        let mut downstream = TokioIo::new(upgraded);
        match transport::connect_tcp(app_addr(&proxy, port), proxy.config.connect_timeout).await {
            Ok(mut app) => {
                meter.opened();
                let _ = crate::outbound::tcp::copy(&mut downstream, &mut app, &mut meter).await;
            }
            Err(e) => {
                tracing::debug!(port, error = %e, "tunnel to the application failed");
                meter.fail(ResponseFlag::UpstreamConnectionFailure);
            }
        }
    });
    Response::new(Body::Empty)
}

/// The connection a request arrived on, as authorization sees it.
struct Conn<'a> {
    /// The peer's verified identity; `None` for plaintext.
    peer: Option<&'a SpiffeId>,
    /// The peer's address.
    source: SocketAddr,
    /// The address it connected to.
    local: std::net::IpAddr,
}

/// Canonicalizes the request target and checks the workload's authorization policies:
/// a non-canonical target is a 400, a denial a 403 naming the policy.
fn admit(
    snap: &Snapshot,
    req: &mut Request<Incoming>,
    conn: &Conn<'_>,
    port: u16,
) -> Result<(), ProxyError> {
    mhttp::canonicalize(req)?;
    if snap.authz.is_empty() {
        return Ok(());
    }
    let raw_host = mhttp::authority(req).unwrap_or_default();
    let host = if raw_host.is_empty() {
        std::borrow::Cow::Borrowed("")
    } else {
        crate::canon::host(raw_host).map_err(|e| ProxyError::BadRequest(e.to_string()))?
    };
    let http = authz::HttpRequest {
        method: req.method(),
        path: req.uri().path(),
        host: &host,
        headers: req.headers(),
    };
    authorize(snap, conn, port, Some(http)).map_err(|denied| {
        tracing::debug!(source = %conn.source, port, %denied, "request denied");
        ProxyError::Denied(denied)
    })
}

/// Checks the workload's authorization policies for an opaque TCP connection.
fn authorize_tcp(snap: &Snapshot, conn: &Conn<'_>, port: u16) -> Result<(), String> {
    authorize(snap, conn, port, None)
}

/// Evaluates the workload's authorization policies for a connection (and its HTTP
/// request, if any); `Err` carries the decision in words.
fn authorize(
    snap: &Snapshot,
    conn: &Conn<'_>,
    port: u16,
    http: Option<authz::HttpRequest<'_>>,
) -> Result<(), String> {
    if snap.authz.is_empty() {
        return Ok(());
    }
    let decision = snap.authz.evaluate(&authz::Request {
        peer: conn.peer,
        source_ip: conn.source.ip(),
        remote_ip: None,
        destination_ip: conn.local,
        destination_port: port,
        sni: None,
        http,
    });
    if decision.allowed {
        Ok(())
    } else {
        Err(decision.to_string())
    }
}

async fn serve_captured_conn(
    proxy: Arc<Proxy>,
    stream: TcpStream,
    client: SocketAddr,
) -> anyhow::Result<()> {
    let original = crate::sockopt::original_dst(&stream)?;
    let port = original.port();
    let Some(snap) = proxy.state.snapshot() else {
        anyhow::bail!("no config yet: refusing inbound plaintext");
    };
    if snap.config.inbound_policy().mode_for(port) == MtlsMode::Strict {
        // STRICT: plaintext is refused; closing the connection is the answer.
        tracing::debug!(%client, port, "refused plaintext connection under STRICT mTLS");
        return Ok(());
    }
    let local = original.ip();
    // The inbound port's protocol is not declared per workload port: sniff.
    match detect::detect(&stream, mesh_api::model::AppProtocol::Unknown, port).await {
        Protocol::Opaque => {
            let conn = Conn {
                peer: None,
                source: client,
                local,
            };
            if let Err(denied) = authorize_tcp(&snap, &conn, port) {
                tracing::debug!(%client, port, %denied, "plaintext connection denied");
                return Ok(());
            }
            let mut meter = TcpMeter::start(&proxy, &snap, Side::Inbound);
            meter.set_peer(PeerMeta::default(), "none");
            let mut app =
                transport::connect_tcp(app_addr(&proxy, port), proxy.config.connect_timeout)
                    .await?;
            meter.opened();
            let mut stream = stream;
            crate::outbound::tcp::copy(&mut stream, &mut app, &mut meter).await
        }
        Protocol::Http => {
            let svc_proxy = proxy.clone();
            let service = service_fn(move |req: Request<Incoming>| {
                let proxy = svc_proxy.clone();
                async move {
                    let grpc = mhttp::is_grpc(req.headers());
                    let Some(snap) = proxy.state.snapshot() else {
                        let err =
                            ProxyError::NoHealthyUpstream("this workload (no config yet)".into());
                        return Ok::<_, Infallible>(mhttp::error_response(&err, grpc));
                    };
                    // A plaintext client is no mesh peer: it does not get to name the
                    // service (or anything else) by the mesh's headers.
                    let mut req = req;
                    mhttp::strip_mesh_headers(req.headers_mut());
                    let mut meter = Meter::start(&proxy, &snap, Side::Inbound, &req, grpc);
                    meter.set_peer(PeerMeta::default(), "none");
                    meter.set_peer_address(client);
                    let conn = Conn {
                        peer: None,
                        source: client,
                        local,
                    };
                    if let Err(err) = admit(&snap, &mut req, &conn, port) {
                        return Ok(meter.respond_error(&err, grpc));
                    }
                    let h2 = req.version() == Version::HTTP_2;
                    let mut req = req.map(|b| meter.count_request(b, grpc));
                    meter.propagate(req.headers_mut());
                    Ok(match to_app(&proxy, req, port, h2).await {
                        Ok(res) => meter.respond(res),
                        Err(err) => meter.respond_error(&err, grpc),
                    })
                }
            });
            let builder = proxy.http_server();
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            proxy
                .serve_conn(conn.into_owned())
                .await
                .map_err(|e| anyhow::anyhow!("serving captured http: {e}"))
        }
    }
}
