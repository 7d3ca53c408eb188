//! Outgoing gRPC: a [`Channel`] the generated clients call through, and the
//! `*_SERVICE_ADDR` variables that say where the other services are.
//!
//! The channel is hyper-util's pooling HTTP/2 client (no tonic transport): it connects on
//! first use, reuses the connection, and reconnects after failures. Every call it sends
//! carries a `traceparent` that continues the trace of the call being handled
//! ([`crate::trace::outgoing`]), unless the caller set one on the request itself.

use std::task::{Context, Poll};

use http::{HeaderValue, Uri};
use hyper_util::client::legacy::{Client, ResponseFuture, connect::HttpConnector};
use tonic::body::Body;

use crate::trace;

/// How long to wait for a TCP connection to another service.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Errors finding another service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The variable naming the service's address is not set.
    #[error("{var} is not set: set it to the address (host:port) of the service to call")]
    MissingAddr {
        /// The environment variable.
        var: &'static str,
    },
    /// The address is not `host:port`.
    #[error("{var}={value:?} is not a valid address: expected host:port")]
    InvalidAddr {
        /// The environment variable (or flag) it came from.
        var: &'static str,
        /// The value given.
        value: String,
    },
}

/// A cheaply cloneable HTTP/2 (prior knowledge, plaintext) client channel.
#[derive(Debug, Clone)]
pub struct Channel {
    client: Client<HttpConnector, Body>,
}

// === impl Channel ===

impl Channel {
    /// A channel with its own connection pool.
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build(connector);
        Self { client }
    }
}

impl Default for Channel {
    fn default() -> Self {
        Self::new()
    }
}

impl tonic::codegen::Service<http::Request<Body>> for Channel {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The pooling client is always ready; it connects inside the call.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        // A traceparent the caller set explicitly is kept.
        if !req.headers().contains_key(trace::TRACEPARENT) {
            let traceparent = trace::outgoing().to_string();
            let value = HeaderValue::from_str(&traceparent).expect("a traceparent is ASCII hex");
            req.headers_mut().insert(trace::TRACEPARENT, value);
        }
        self.client.request(req)
    }
}

/// The origin (`http://host:port`) for the address `value` (`host:port`, as upstream's
/// `*_SERVICE_ADDR` variables hold it; an `http://` prefix is accepted), which came from
/// `var`.
pub fn origin(var: &'static str, value: &str) -> Result<Uri, Error> {
    let invalid = || Error::InvalidAddr {
        var,
        value: value.to_string(),
    };
    let trimmed = value.trim();
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_string()
    } else {
        format!("http://{trimmed}")
    };
    let uri: Uri = with_scheme.parse().map_err(|_| invalid())?;
    let has_port = uri.port_u16().is_some();
    let bare = uri.path() == "/" || uri.path().is_empty();
    if uri.scheme_str() != Some("http") || !has_port || !bare || uri.host().is_none() {
        return Err(invalid());
    }
    Ok(uri)
}

/// The origin of the service whose address is in the environment variable `var`.
pub fn origin_from_env(var: &'static str) -> Result<Uri, Error> {
    match std::env::var(var) {
        Ok(value) if !value.trim().is_empty() => origin(var, &value),
        _ => Err(Error::MissingAddr { var }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_from_upstream_style_addresses() {
        let uri = origin("X_ADDR", "productcatalogservice:3550").unwrap();
        assert_eq!(uri.to_string(), "http://productcatalogservice:3550/");
        assert_eq!(
            origin("X_ADDR", "http://127.0.0.1:7000")
                .unwrap()
                .port_u16(),
            Some(7000)
        );
        for bad in [
            "productcatalogservice",
            "",
            "https://a:1",
            "a:1/path",
            "a:b",
        ] {
            let err = origin("X_ADDR", bad).unwrap_err();
            assert!(err.to_string().starts_with("X_ADDR="), "{bad:?}: {err}");
        }
    }

    #[test]
    fn a_missing_variable_is_named() {
        let err = origin_from_env("BOUTIQUE_TEST_SURELY_UNSET_SERVICE_ADDR").unwrap_err();
        assert_eq!(
            err.to_string(),
            "BOUTIQUE_TEST_SURELY_UNSET_SERVICE_ADDR is not set: set it to the address \
             (host:port) of the service to call"
        );
    }
}
