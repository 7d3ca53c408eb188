//! One HTTP/2-over-TLS connection to the control plane, as the service `tonic`'s generated
//! clients (discovery, identity) send their calls over.
//!
//! A fresh connection per stream: resolve, connect (one address after another), TLS 1.3
//! handshake (the control plane's certificate checked against the trust bundle and its
//! SPIFFE identity; the proxy's certificate, once it has one, as client certificate), HTTP/2
//! handshake with keep-alive PINGs (also while idle, so a control plane that vanished
//! without closing the connection is noticed within interval + timeout), all within the
//! connect timeout. The connection's driver task is aborted when the [`Connection`] drops.

use std::{
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll},
};

use http::{Request, Response};
use hyper::{body::Incoming, client::conn::http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::sync::Arc;

use tokio::{net::TcpStream, task::JoinHandle};

use super::{ControlPlaneAddr, Error, Settings};

/// An HTTP/2 connection; a `tower` service of gRPC requests.
#[derive(Debug)]
pub(crate) struct Connection {
    sender: http2::SendRequest<tonic::body::Body>,
    driver: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Connection {
    /// Connects to `addr` with `tls` within `settings.connect_timeout`.
    pub(crate) async fn connect(
        addr: &ControlPlaneAddr,
        settings: &Settings,
        tls: &Arc<rustls::ClientConfig>,
    ) -> Result<Self, Error> {
        let timeout = settings.connect_timeout;
        tokio::time::timeout(timeout, Self::dial(addr, settings, tls))
            .await
            .unwrap_or_else(|_| {
                Err(Error::Connect(format!(
                    "connect timed out after {:.1}s",
                    timeout.as_secs_f64()
                )))
            })
    }

    async fn dial(
        addr: &ControlPlaneAddr,
        settings: &Settings,
        tls: &Arc<rustls::ClientConfig>,
    ) -> Result<Self, Error> {
        let addrs = tokio::net::lookup_host((addr.host(), addr.port()))
            .await
            .map_err(|e| Error::Connect(format!("cannot resolve {:?}: {e}", addr.host())))?;
        let mut last = None;
        let mut tcp = None;
        for a in addrs {
            match TcpStream::connect(a).await {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let tcp = match (tcp, last) {
            (Some(tcp), _) => tcp,
            (None, Some(e)) => return Err(Error::Connect(io_cause(&e))),
            (None, None) => {
                return Err(Error::Connect(format!(
                    "{:?} resolves to no address",
                    addr.host()
                )));
            }
        };
        let _ = tcp.set_nodelay(true);
        // The verifier checks the SPIFFE identity, not this name; it is only sent as SNI.
        let name = rustls::pki_types::ServerName::try_from(addr.host().to_owned())
            .unwrap_or_else(|_| rustls::pki_types::ServerName::from(std::net::Ipv4Addr::LOCALHOST));
        let tls = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| Error::Connect(format!("TLS handshake failed: {}", tls_cause(&e))))?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(settings.keepalive_interval)
            .keep_alive_timeout(settings.keepalive_timeout)
            .keep_alive_while_idle(true)
            .handshake(TokioIo::new(tls))
            .await
            .map_err(|e| Error::Connect(format!("http/2 handshake failed: {e}")))?;
        let driver = tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "control-plane connection closed");
            }
        });
        Ok(Self { sender, driver })
    }
}

/// A TLS failure in a few words: rustls' certificate errors are wrapped in io errors.
fn tls_cause(e: &io::Error) -> String {
    match e.get_ref() {
        Some(inner) => inner.to_string(),
        None => io_cause(e),
    }
}

/// A connect error in a few words: `connection refused`, not
/// `Connection refused (os error 111)`.
fn io_cause(e: &io::Error) -> String {
    use io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => "connection refused".into(),
        K::ConnectionReset => "connection reset".into(),
        K::TimedOut => "connect timed out".into(),
        K::HostUnreachable => "host unreachable".into(),
        K::NetworkUnreachable => "network unreachable".into(),
        K::AddrNotAvailable => "address not available".into(),
        _ => e.to_string(),
    }
}

impl tonic::codegen::Service<Request<tonic::body::Body>> for Connection {
    type Response = Response<Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Incoming>, hyper::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.sender.poll_ready(cx)
    }

    fn call(&mut self, req: Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.sender.send_request(req))
    }
}
