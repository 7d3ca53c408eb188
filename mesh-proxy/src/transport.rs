//! Connections to upstreams.
//!
//! - [`MeshConn`]: one HTTP/2 connection per peer proxy (its inbound port 15008), shared by
//!   every request and every TCP tunnel to that peer. HTTP requests travel as HTTP/2
//!   requests carrying the target port in `x-mesh-target-port`; opaque TCP travels as an
//!   HTTP/2 `CONNECT` stream to `<endpoint-ip>:<target-port>`. The connection is made on
//!   first use, re-made when it closes, and never locked on the request path: the current
//!   sender sits in an [`ArcSwapOption`].
//! - [`Direct`]: plain HTTP/1.1 and HTTP/2 clients with keep-alive pools, for endpoints
//!   without a proxy and for the server side's hop to the local application.
//! - [`connect_tcp`]: a TCP connect with a timeout and `TCP_NODELAY`.
//!
//! Mesh connections are mutual TLS 1.3 ([`crate::identity`]): the peer must present the
//! SPIFFE identity the control plane announced for the endpoint, and this proxy presents its
//! own certificate. A handshake failure is a connect failure (retried on another endpoint,
//! counted by outlier detection); nothing falls back to plaintext.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::http::Body;

/// Why a connection could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The TCP connect failed.
    #[error("connect to {addr} failed: {source}")]
    Connect {
        /// The address dialed.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The TCP connect timed out.
    #[error("connect to {addr} timed out after {timeout:?}")]
    ConnectTimeout {
        /// The address dialed.
        addr: SocketAddr,
        /// The timeout.
        timeout: Duration,
    },
    /// The TLS handshake failed (wrong identity, unknown CA, no certificate yet…).
    #[error("mTLS handshake with {addr} failed: {}", tls_cause(.source))]
    Tls {
        /// The peer.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The HTTP/2 handshake failed.
    #[error("http/2 handshake with {addr} failed: {source}")]
    Handshake {
        /// The peer.
        addr: SocketAddr,
        /// The cause.
        source: hyper::Error,
    },
    /// The request failed on an established connection.
    #[error("request to {addr} failed: {source}")]
    Request {
        /// The peer.
        addr: SocketAddr,
        /// The cause.
        source: hyper::Error,
    },
    /// A request to a non-mesh endpoint failed.
    #[error("request failed: {0}")]
    Direct(#[from] hyper_util::client::legacy::Error),
}

impl Error {
    /// Whether the failure happened before the request reached the peer (safe to retry on
    /// another endpoint; counts as a connect failure for outlier detection).
    pub fn is_connect(&self) -> bool {
        match self {
            Error::Connect { .. }
            | Error::ConnectTimeout { .. }
            | Error::Tls { .. }
            | Error::Handshake { .. } => true,
            Error::Request { .. } => false,
            Error::Direct(e) => e.is_connect(),
        }
    }
}

/// rustls' errors arrive wrapped in io errors; show the inner one.
fn tls_cause(e: &std::io::Error) -> String {
    match e.get_ref() {
        Some(inner) => inner.to_string(),
        None => e.to_string(),
    }
}

/// Connects with a timeout and `TCP_NODELAY` (the proxy writes whole messages; Nagle only
/// adds latency).
pub async fn connect_tcp(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, Error> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| Error::ConnectTimeout { addr, timeout })?
        .map_err(|source| Error::Connect { addr, source })?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

// === impl MeshConn ===

/// The shared mTLS HTTP/2 connection to one peer proxy.
#[derive(Debug)]
pub struct MeshConn {
    addr: SocketAddr,
    connect_timeout: Duration,
    /// Verifies the peer's identity and presents ours.
    tls: Arc<rustls::ClientConfig>,
    /// Sent as SNI (verification does not use it).
    server_name: rustls::pki_types::ServerName<'static>,
    sender: ArcSwapOption<http2::SendRequest<Body>>,
    /// Serializes (re)connects so a burst of requests makes one connection, not many.
    connecting: tokio::sync::Mutex<()>,
}

impl MeshConn {
    /// A connection handle for the peer at `addr` (`<ip>:15008`) whose identity must be
    /// `peer`; nothing is dialed yet.
    pub fn new(
        addr: SocketAddr,
        peer: &mesh_api::spiffe::SpiffeId,
        tls: Arc<rustls::ClientConfig>,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            addr,
            connect_timeout,
            tls,
            server_name: mesh_api::tls::server_name(peer),
            sender: ArcSwapOption::empty(),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    /// The peer's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether a live connection exists.
    pub fn is_connected(&self) -> bool {
        self.sender.load().as_ref().is_some_and(|s| !s.is_closed())
    }

    async fn sender(&self) -> Result<http2::SendRequest<Body>, Error> {
        if let Some(s) = self.sender.load().as_ref()
            && !s.is_closed()
        {
            return Ok(http2::SendRequest::clone(s));
        }
        let _guard = self.connecting.lock().await;
        // Another task may have connected while this one waited.
        if let Some(s) = self.sender.load().as_ref()
            && !s.is_closed()
        {
            return Ok(http2::SendRequest::clone(s));
        }
        let tcp = connect_tcp(self.addr, self.connect_timeout).await?;
        let tls = tokio::time::timeout(
            self.connect_timeout,
            tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(self.server_name.clone(), tcp),
        )
        .await
        .map_err(|_| Error::ConnectTimeout {
            addr: self.addr,
            timeout: self.connect_timeout,
        })?
        .map_err(|source| Error::Tls {
            addr: self.addr,
            source,
        })?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .initial_stream_window_size(1 << 20)
            .initial_connection_window_size(4 << 20)
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10))
            .handshake(TokioIo::new(tls))
            .await
            .map_err(|source| Error::Handshake {
                addr: self.addr,
                source,
            })?;
        let addr = self.addr;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%addr, error = %e, "mesh connection closed");
            }
        });
        self.sender.store(Some(Arc::new(sender.clone())));
        Ok(sender)
    }

    /// Sends a request over the shared connection.
    pub async fn send(&self, req: Request<Body>) -> Result<Response<Incoming>, Error> {
        let mut sender = self.sender().await?;
        sender.ready().await.map_err(|source| Error::Request {
            addr: self.addr,
            source,
        })?;
        sender
            .send_request(req)
            .await
            .map_err(|source| Error::Request {
                addr: self.addr,
                source,
            })
    }

    /// Opens a TCP tunnel to `target` (`<ip>:<port>` as the peer sees it) with HTTP/2
    /// `CONNECT`. Extra headers (e.g. the client's metadata) ride along.
    pub async fn tunnel(
        &self,
        target: &str,
        headers: http::HeaderMap,
    ) -> Result<TokioIo<hyper::upgrade::Upgraded>, TunnelError> {
        let mut req = Request::connect(target)
            .body(Body::Empty)
            .map_err(|e| TunnelError::Refused(format!("bad tunnel target {target:?}: {e}")))?;
        req.headers_mut().extend(headers);
        let res = self.send(req).await.map_err(TunnelError::Transport)?;
        if !res.status().is_success() {
            let why = res
                .headers()
                .get(crate::http::ERROR)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            return Err(TunnelError::Refused(format!(
                "peer answered {}: {why}",
                res.status()
            )));
        }
        let upgraded = hyper::upgrade::on(res)
            .await
            .map_err(|e| TunnelError::Refused(format!("tunnel upgrade failed: {e}")))?;
        Ok(TokioIo::new(upgraded))
    }
}

/// Why a TCP tunnel could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// The connection to the peer failed.
    #[error(transparent)]
    Transport(Error),
    /// The peer refused the tunnel.
    #[error("{0}")]
    Refused(String),
}

// === impl Direct ===

/// Pooled plain-HTTP clients for endpoints without a proxy and for the local application.
#[derive(Clone, Debug)]
pub struct Direct {
    http1: Client<HttpConnector, Body>,
    http2: Client<HttpConnector, Body>,
}

impl Direct {
    /// Clients with keep-alive pools; connections idle longer than `idle_timeout` close.
    pub fn new(connect_timeout: Duration, idle_timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        connector.enforce_http(false);
        let http1 = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(idle_timeout)
            .pool_timer(TokioTimer::new())
            .build(connector.clone());
        let http2 = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(idle_timeout)
            .pool_timer(TokioTimer::new())
            .http2_only(true)
            .build(connector);
        Self { http1, http2 }
    }

    /// Sends `req` (whose URI must be absolute: `http://<addr><path>`), with HTTP/2 prior
    /// knowledge when `h2` is set and HTTP/1.1 otherwise.
    pub async fn send(&self, req: Request<Body>, h2: bool) -> Result<Response<Incoming>, Error> {
        let client = if h2 { &self.http2 } else { &self.http1 };
        Ok(client.request(req).await?)
    }
}
