//! HTTP plumbing shared by the inbound and outbound sides: the proxy's body type, hop-by-hop
//! header handling, the mesh's own request headers, and gRPC detection.
//!
//! Requests and responses cross the proxy without being boxed: [`Body`] is an enum over the
//! bodies the proxy actually handles (a peer's streaming body, a buffered body that can be
//! replayed for retries and mirrors, or nothing).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http_body::{Frame, SizeHint};

pub mod error;
pub mod replay;

pub use error::{ProxyError, error_response};

/// The request header that carries the destination application port between proxies.
pub const TARGET_PORT: HeaderName = HeaderName::from_static("x-mesh-target-port");
/// The request header that tells the server proxy the client spoke HTTP/1.x, so it speaks
/// HTTP/1.1 to the application (between proxies every request travels over HTTP/2).
pub const ORIG_PROTO: HeaderName = HeaderName::from_static("x-mesh-orig-proto");
/// The request header that carries the client workload's metadata
/// (`namespace/workload/app/version`), for the server proxy's telemetry.
pub const PEER: HeaderName = HeaderName::from_static("x-mesh-peer");
/// The request header that names the service the client proxy routed to (its host name),
/// so the server proxy's telemetry reports the same `destination_service` whatever
/// authority the application used (an explicit upstream listener's address, a pod IP).
pub const SERVICE: HeaderName = HeaderName::from_static("x-mesh-service");
/// The response header that says why the proxy answered a request itself.
pub const ERROR: HeaderName = HeaderName::from_static("x-mesh-error");

/// A request or response body as it crosses the proxy.
#[derive(Debug, Default)]
pub enum Body {
    /// A body streaming from a peer (client or upstream).
    Incoming(hyper::body::Incoming),
    /// A complete body in memory; cheap to clone for retries and mirrors.
    Full(Option<Bytes>),
    /// A streaming request body whose bytes and gRPC messages are counted.
    Counted(Box<crate::meter::CountedBody>),
    /// A streaming response body that records its request's metrics when it ends.
    Metered(Box<crate::meter::Metered>),
    /// A streaming request body copied for a possible retry.
    Tee(Box<replay::TeeBody>),
    /// No body.
    #[default]
    Empty,
}

impl Body {
    /// A body of these bytes.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        if bytes.is_empty() {
            Body::Empty
        } else {
            Body::Full(Some(bytes))
        }
    }
}

impl From<hyper::body::Incoming> for Body {
    fn from(b: hyper::body::Incoming) -> Self {
        Body::Incoming(b)
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Body::Incoming(b) => Pin::new(b).poll_frame(cx),
            Body::Counted(b) => Pin::new(b.as_mut()).poll_frame(cx),
            Body::Metered(b) => Pin::new(b.as_mut()).poll_frame(cx),
            Body::Tee(b) => Pin::new(b.as_mut()).poll_frame(cx),
            Body::Full(b) => Poll::Ready(b.take().map(|bytes| Ok(Frame::data(bytes)))),
            Body::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Incoming(b) => b.is_end_stream(),
            Body::Counted(b) => b.is_end_stream(),
            Body::Metered(b) => b.is_end_stream(),
            Body::Tee(b) => b.is_end_stream(),
            Body::Full(b) => b.is_none(),
            Body::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Incoming(b) => b.size_hint(),
            Body::Counted(b) => b.size_hint(),
            Body::Metered(b) => b.size_hint(),
            Body::Tee(b) => b.size_hint(),
            Body::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Body::Full(None) | Body::Empty => SizeHint::with_exact(0),
        }
    }
}

/// Headers that describe one hop and must not be forwarded (RFC 9110 §7.6.1), plus
/// whatever the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Names listed in `Connection` are hop-by-hop too.
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
    // `TE: trailers` is the one TE value HTTP/2 allows (and gRPC needs).
    if headers
        .get(header::TE)
        .is_some_and(|te| te.as_bytes() != b"trailers")
    {
        headers.remove(header::TE);
    }
}

/// Removes the mesh's own headers, so a client cannot spoof them.
pub fn strip_mesh_headers(headers: &mut HeaderMap) {
    headers.remove(TARGET_PORT);
    headers.remove(ORIG_PROTO);
    headers.remove(PEER);
    headers.remove(SERVICE);
}

/// Whether the request (or response) is gRPC, by content type.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
}

/// The `grpc-status` of a response's headers or trailers, if any.
pub fn grpc_status(headers: &HeaderMap) -> Option<u32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The request's authority: `:authority` (the URI's) or the `Host` header.
pub fn authority<B>(req: &http::Request<B>) -> Option<&str> {
    req.uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(header::HOST)?.to_str().ok())
}

/// A header value from a string that is known to be valid (numbers, fixed tokens).
pub(crate) fn value_of(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// Rewrites the request target to its canonical form ([`crate::canon::path`]): the path
/// routing matches, authorization checks and the application receives are one and the
/// same. A target that has no canonical form (an encoded `/` or `\`, a control character…)
/// is a 400. Asterisk- and authority-form targets (`OPTIONS *`, `CONNECT`) are left alone.
pub fn canonicalize<B>(req: &mut http::Request<B>) -> Result<(), error::ProxyError> {
    let Some(pq) = req.uri().path_and_query() else {
        return Ok(());
    };
    if pq.as_str() == "*" {
        return Ok(());
    }
    let canonical = crate::canon::path(pq.as_str())
        .map_err(|e| error::ProxyError::BadRequest(e.to_string()))?;
    let std::borrow::Cow::Owned(path) = canonical.path else {
        return Ok(());
    };
    let target = match canonical.query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = Some(
        target
            .parse()
            .map_err(|_| error::ProxyError::BadRequest("invalid request path".into()))?,
    );
    *req.uri_mut() = http::Uri::from_parts(parts)
        .map_err(|_| error::ProxyError::BadRequest("invalid request target".into()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert(header::TE, "gzip".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));

        let mut h = HeaderMap::new();
        h.insert(header::TE, "trailers".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert!(h.contains_key(header::TE), "gRPC needs TE: trailers");
    }

    #[test]
    fn grpc_detection() {
        let mut h = HeaderMap::new();
        assert!(!is_grpc(&h));
        h.insert(
            header::CONTENT_TYPE,
            "application/grpc+proto".parse().unwrap(),
        );
        assert!(is_grpc(&h));
        h.insert("grpc-status", "14".parse().unwrap());
        assert_eq!(grpc_status(&h), Some(14));
    }

    #[test]
    fn authority_prefers_the_uri() {
        let req = http::Request::builder()
            .uri("http://a.example:80/x")
            .header(header::HOST, "b.example")
            .body(())
            .unwrap();
        assert_eq!(authority(&req), Some("a.example:80"));
        let req = http::Request::builder()
            .uri("/x")
            .header(header::HOST, "b.example")
            .body(())
            .unwrap();
        assert_eq!(authority(&req), Some("b.example"));
    }
}
