//! The application's probes, run by the proxy for the kubelet (Istio's "app probers").
//!
//! Sidecar injection ([`mesh_api::inject::probe`]) points the application containers'
//! probes at the health port, `GET :15021/app-health/<container>/<livez|readyz|startupz>`,
//! and gives the proxy the original probes ([`AppProbes`], `MESH_APP_PROBES`). The health
//! server ([`super::serve_health`]) hands those paths to [`answer`], which runs the original
//! probe against the application on 127.0.0.1 and answers `200` when it succeeds, else
//! `503` with why. The proxy runs as uid 1337, which the capture rules leave alone, so the
//! probe reaches the application directly, not through the inbound proxy; and the kubelet's
//! plaintext request only ever reaches the health port, so the application's ports stay
//! captured (mTLS and authorization policy apply to every other client).
//!
//! - `httpGet`: an HTTP/1.1 `GET` of the path with the probe's headers (`Host`,
//!   `User-Agent: kube-probe/…` and `Accept: */*` unless the probe sets them); success is a
//!   status from 200 to 399 (redirects are not followed: a 3xx counts as success). `HTTPS`
//!   does not verify the application's certificate, as the kubelet does not.
//! - `tcpSocket`: success is an accepted connection.
//! - `grpc`: `grpc.health.v1.Health/Check` with the service name over HTTP/2 without TLS
//!   (h2c), the two tiny protobuf messages coded by hand; success is `SERVING`.
//!
//! Each run is bounded by the probe's `timeoutSeconds`. This is the health server's own
//! task per request: nothing here touches the proxying code.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, LazyLock},
    time::Duration,
};

use bytes::{BufMut as _, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_api::inject::{
    AppProbe, AppProbes,
    probe::{Grpc, Handler, HttpGet, Scheme},
};
use rustls::{
    DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName, UnixTime},
};
use tokio::{net::TcpStream, task::JoinHandle};

use super::server::Body;

/// The path prefix the health server hands to [`answer`].
pub const PREFIX: &str = mesh_api::inject::probe::APP_HEALTH_PREFIX;

/// The `User-Agent` of HTTP probes (applications sometimes recognize the kubelet's).
const USER_AGENT: &str = concat!("kube-probe/mesh-proxy-", env!("CARGO_PKG_VERSION"));

/// Answers a health-server request for an `/app-health/...` path: 404 when no probe has
/// that path, 405 for a method other than `GET`/`HEAD`, else the probe's result.
pub(super) async fn answer(probes: &AppProbes, parts: &http::request::Parts) -> Response<Body> {
    let path = parts.uri.path();
    let Some(probe) = probes.get(path) else {
        let mut body = format!("no application probe at {path:?}");
        if probes.is_empty() {
            body.push_str(" (the proxy has none: MESH_APP_PROBES is unset)\n");
        } else {
            body.push_str("; the configured ones are:\n");
            for (p, _) in probes.iter() {
                body.push_str(p);
                body.push('\n');
            }
        }
        return text(StatusCode::NOT_FOUND, body);
    };
    if parts.method != Method::GET && parts.method != Method::HEAD {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not allowed on {path}; use GET, HEAD\n", parts.method),
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match run(probe).await {
        Ok(what) => text(StatusCode::OK, format!("{what}\n")),
        Err(why) => {
            tracing::debug!(path, reason = %why, "application probe failed");
            text(StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n"))
        }
    }
}

/// Runs `probe` against the application on 127.0.0.1, bounded by its timeout: `Ok` with
/// what succeeded, or `Err` with why it failed (a sentence for the kubelet's event).
pub async fn run(probe: &AppProbe) -> Result<String, String> {
    let timeout = Duration::from_secs(u64::from(probe.timeout_seconds.max(1)));
    let check = async {
        match &probe.handler {
            Handler::HttpGet(h) => http_get(h).await,
            Handler::TcpSocket(t) => connect(t.port)
                .await
                .map(|_| format!("connected to port {}", t.port)),
            Handler::Grpc(g) => grpc(g).await,
        }
    };
    tokio::time::timeout(timeout, check)
        .await
        .unwrap_or_else(|_| Err(format!("timed out after {}s", timeout.as_secs())))
}

async fn connect(port: u16) -> Result<TcpStream, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to the application at {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Aborts a connection task when the probe is done (or timed out).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

// === httpGet ===

async fn http_get(h: &HttpGet) -> Result<String, String> {
    let stream = connect(h.port).await?;
    let status = match h.scheme {
        Scheme::Http => http1_get(TokioIo::new(stream), h).await?,
        Scheme::Https => {
            let connector = tokio_rustls::TlsConnector::from(INSECURE_TLS.clone());
            let name = ServerName::IpAddress(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST).into());
            let tls = connector
                .connect(name, stream)
                .await
                .map_err(|e| format!("TLS handshake with port {} failed: {e}", h.port))?;
            http1_get(TokioIo::new(tls), h).await?
        }
    };
    if (200..400).contains(&status.as_u16()) {
        Ok(format!("the application answered {status}"))
    } else {
        Err(format!("the application answered {status}"))
    }
}

async fn http1_get<I>(io: I, h: &HttpGet) -> Result<StatusCode, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let path = if h.path.starts_with('/') {
        h.path.clone()
    } else {
        format!("/{}", h.path)
    };
    let mut req = Request::get(path.as_str())
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("the probe's path {path:?} is not a valid request path: {e}"))?;
    *req.headers_mut() = probe_headers(h)?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake with port {} failed: {e}", h.port))?;
    let _conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let response = send
        .send_request(req)
        .await
        .map_err(|e| format!("GET {path} on port {} failed: {e}", h.port))?;
    Ok(response.status())
}

/// The probe's headers, after the kubelet's defaults it does not override.
fn probe_headers(h: &HttpGet) -> Result<HeaderMap, String> {
    let mut own = HeaderMap::new();
    for hdr in &h.http_headers {
        let name = HeaderName::try_from(hdr.name.as_str())
            .map_err(|e| format!("the probe's header name {:?} is invalid: {e}", hdr.name))?;
        let value = HeaderValue::try_from(hdr.value.as_str()).map_err(|e| {
            format!(
                "the probe's header {:?} has an invalid value: {e}",
                hdr.name
            )
        })?;
        own.append(name, value);
    }
    let defaults = [
        (header::HOST, format!("127.0.0.1:{}", h.port)),
        (header::USER_AGENT, USER_AGENT.to_owned()),
        (header::ACCEPT, "*/*".to_owned()),
    ];
    for (name, value) in defaults {
        if !own.contains_key(&name) {
            let value = HeaderValue::try_from(value).expect("a valid default header");
            own.insert(name, value);
        }
    }
    Ok(own)
}

/// TLS for HTTPS probes: any certificate is accepted (the kubelet does not verify either;
/// the connection never leaves the pod), signatures are still checked.
static INSECURE_TLS: LazyLock<Arc<rustls::ClientConfig>> = LazyLock::new(|| {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("the default provider supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Arc::new(config)
});

/// Accepts every server certificate; checks handshake signatures with the provider.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

// === grpc ===

/// `grpc.health.v1.HealthCheckResponse.ServingStatus` names, by number.
const SERVING_STATUS: [&str; 4] = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];
const SERVING: u64 = 1;

async fn grpc(g: &Grpc) -> Result<String, String> {
    let stream = connect(g.port).await?;
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP/2 handshake with port {} failed: {e}", g.port))?;
    let _conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let service = g.service.as_deref().unwrap_or_default();
    let req = Request::post(format!(
        "http://127.0.0.1:{}/grpc.health.v1.Health/Check",
        g.port
    ))
    .header(header::CONTENT_TYPE, "application/grpc")
    .header(header::TE, "trailers")
    .header(header::USER_AGENT, USER_AGENT)
    .body(Full::new(health_check_request(service)))
    .expect("a valid gRPC request");
    let failed = |e: &dyn std::fmt::Display| {
        format!(
            "gRPC health check of service {service:?} on port {} failed: {e}",
            g.port
        )
    };
    let response = send.send_request(req).await.map_err(|e| failed(&e))?;
    let (head, body) = response.into_parts();
    if head.status != StatusCode::OK {
        return Err(failed(&format!("HTTP status {}", head.status)));
    }
    let body = body.collect().await.map_err(|e| failed(&e))?;
    // A trailers-only answer carries grpc-status in the headers.
    let trailers = body.trailers().cloned().unwrap_or_default();
    let grpc_status = trailers
        .get("grpc-status")
        .or_else(|| head.headers.get("grpc-status"));
    match grpc_status.map(HeaderValue::as_bytes) {
        Some(b"0") => {}
        other => {
            let message = trailers
                .get("grpc-message")
                .or_else(|| head.headers.get("grpc-message"))
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let code = other.map_or("missing".into(), String::from_utf8_lossy);
            return Err(failed(&format!("grpc-status {code} {message}")));
        }
    }
    let status = health_check_response(&body.to_bytes()).map_err(|e| failed(&e))?;
    let name = usize::try_from(status)
        .ok()
        .and_then(|s| SERVING_STATUS.get(s))
        .copied()
        .unwrap_or("an unknown status");
    if status == SERVING {
        Ok(format!("service {service:?} is SERVING"))
    } else {
        Err(format!("service {service:?} is {name} ({status})"))
    }
}

/// A length-prefixed `HealthCheckRequest { string service = 1; }`.
fn health_check_request(service: &str) -> Bytes {
    let mut message = BytesMut::new();
    if !service.is_empty() {
        message.put_u8(0x0a); // field 1, length-delimited
        put_varint(&mut message, service.len() as u64);
        message.put_slice(service.as_bytes());
    }
    let mut frame = BytesMut::with_capacity(5 + message.len());
    frame.put_u8(0); // not compressed
    frame.put_u32(u32::try_from(message.len()).expect("a short service name"));
    frame.put_slice(&message);
    frame.freeze()
}

/// The `status` (field 1) of a length-prefixed `HealthCheckResponse`; 0 (`UNKNOWN`) when
/// absent, as protobuf defaults.
fn health_check_response(frame: &[u8]) -> Result<u64, String> {
    let [compressed, l0, l1, l2, l3, rest @ ..] = frame else {
        return Err("the response has no message".to_owned());
    };
    if *compressed != 0 {
        return Err("the response is compressed, which the probe did not ask for".to_owned());
    }
    let len = u32::from_be_bytes([*l0, *l1, *l2, *l3]) as usize;
    let mut message = rest.get(..len).ok_or("the response message is truncated")?;
    let mut status = 0;
    while !message.is_empty() {
        let key = take_varint(&mut message)?;
        match key & 7 {
            0 => {
                let value = take_varint(&mut message)?;
                if key >> 3 == 1 {
                    status = value;
                }
            }
            2 => {
                let n = usize::try_from(take_varint(&mut message)?)
                    .map_err(|_| "a field is too long")?;
                message = message.get(n..).ok_or("a field is truncated")?;
            }
            1 => message = message.get(8..).ok_or("a field is truncated")?,
            5 => message = message.get(4..).ok_or("a field is truncated")?,
            w => return Err(format!("the response has a field of wire type {w}")),
        }
    }
    Ok(status)
}

fn put_varint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

fn take_varint(input: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = input
            .split_first()
            .ok_or("the response message is truncated")?;
        *input = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("the response has an overlong varint".to_owned())
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_check_messages_round_trip_by_hand() {
        let req = health_check_request("x");
        assert_eq!(&req[..], &[0, 0, 0, 0, 3, 0x0a, 1, b'x']);
        assert_eq!(&health_check_request("")[..], &[0, 0, 0, 0, 0]);
        // status = SERVING, after an unknown length-delimited field 2.
        let serving = [0, 0, 0, 0, 5, 0x12, 1, b'z', 0x08, 1];
        assert_eq!(health_check_response(&serving), Ok(1));
        assert_eq!(health_check_response(&[0, 0, 0, 0, 0]), Ok(0));
        assert!(health_check_response(&[0, 0, 0, 0, 2, 0x08]).is_err());
        assert!(health_check_response(&[1, 0, 0, 0, 0]).is_err());
    }
}
