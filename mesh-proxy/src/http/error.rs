//! Why the proxy answered a request itself, classified once at the edge.
//!
//! Every failure on the request path becomes a [`ProxyError`], which decides the status code,
//! the Envoy-style response flag for metrics and access logs, and the `x-mesh-error` header
//! text. For gRPC requests the answer is a gRPC status (HTTP 200 with `grpc-status` and
//! `grpc-message` in a trailers-only response), so gRPC clients see `UNAVAILABLE` or
//! `DEADLINE_EXCEEDED` rather than a protocol error. Messages name the service and the
//! reason, never internal addresses.

use std::time::Duration;

use http::{HeaderValue, Response, StatusCode, header};

use super::{Body, ERROR, value_of};
use crate::telemetry::metrics::ResponseFlag;

/// A request the proxy could not forward (or chose not to).
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No route matched the request (a route table exists for the host but no rule applies).
    #[error("no route for {authority}{path}")]
    NoRoute {
        /// The request's authority.
        authority: String,
        /// The request's path.
        path: String,
    },
    /// A gateway serves no virtual host for the request's host on this port.
    #[error("no virtual host for {host} on gateway port {port}; {served}")]
    NoVirtualHost {
        /// The request's host.
        host: String,
        /// The gateway server port.
        port: u16,
        /// The hosts served there, in words (`it serves a, b`).
        served: String,
    },
    /// The destination is not a service this proxy knows.
    #[error("unknown destination {0}")]
    UnknownDestination(String),
    /// The route's backend cluster does not exist (e.g. a subset no DestinationRule defines).
    #[error("no cluster {0}")]
    NoCluster(String),
    /// The cluster has no endpoints, or none that can take traffic.
    #[error("no healthy upstream for {0}")]
    NoHealthyUpstream(String),
    /// Connecting to the chosen endpoint failed.
    #[error("upstream connect error for {service}: {reason}")]
    ConnectFailure {
        /// The service.
        service: String,
        /// What failed, in words.
        reason: String,
    },
    /// The upstream connection broke before a response arrived.
    #[error("upstream reset for {service}: {reason}")]
    UpstreamReset {
        /// The service.
        service: String,
        /// What happened.
        reason: String,
    },
    /// The route's timeout (or the last try's timeout) expired.
    #[error("upstream request timeout after {timeout:?} for {service}")]
    Timeout {
        /// The service.
        service: String,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// A connection-pool limit refused the request.
    #[error("upstream overflow for {0}: too many pending requests")]
    Overflow(String),
    /// An injected fault aborted the request.
    #[error("fault injected")]
    FaultAbort {
        /// The HTTP status to answer with.
        status: StatusCode,
        /// The gRPC status to answer with, for gRPC requests.
        grpc: Option<u32>,
    },
    /// The request itself is malformed (missing the mesh target port, bad authority…).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// An authorization policy denied the request.
    #[error("RBAC: access denied ({0})")]
    Denied(String),
}

impl ProxyError {
    /// The response flag for metrics and access logs.
    pub fn flag(&self) -> ResponseFlag {
        match self {
            Self::NoRoute { .. } | Self::NoVirtualHost { .. } | Self::UnknownDestination(_) => {
                ResponseFlag::NoRouteFound
            }
            Self::NoCluster(_) => ResponseFlag::NoClusterFound,
            Self::NoHealthyUpstream(_) => ResponseFlag::NoHealthyUpstream,
            Self::ConnectFailure { .. } => ResponseFlag::UpstreamConnectionFailure,
            Self::UpstreamReset { .. } => ResponseFlag::UpstreamConnectionTermination,
            Self::Timeout { .. } => ResponseFlag::UpstreamRequestTimeout,
            Self::Overflow(_) => ResponseFlag::UpstreamOverflow,
            Self::FaultAbort { .. } => ResponseFlag::FaultInjected,
            Self::BadRequest(_) | Self::Denied(_) => ResponseFlag::None,
        }
    }

    /// The HTTP status the proxy answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute { .. } | Self::NoVirtualHost { .. } => StatusCode::NOT_FOUND,
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::FaultAbort { status, .. } => *status,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Denied(_) => StatusCode::FORBIDDEN,
            Self::UnknownDestination(_)
            | Self::NoCluster(_)
            | Self::NoHealthyUpstream(_)
            | Self::ConnectFailure { .. }
            | Self::UpstreamReset { .. }
            | Self::Overflow(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The gRPC status code the proxy answers gRPC requests with.
    pub fn grpc_status(&self) -> u32 {
        match self {
            Self::NoRoute { .. } | Self::NoVirtualHost { .. } => 12, // UNIMPLEMENTED
            Self::Timeout { .. } => 4,                               // DEADLINE_EXCEEDED
            Self::FaultAbort { grpc, status } => grpc.unwrap_or_else(|| http_to_grpc(*status)),
            Self::BadRequest(_) => 13, // INTERNAL
            Self::Denied(_) => 7,      // PERMISSION_DENIED
            Self::Overflow(_) => 8,    // RESOURCE_EXHAUSTED
            _ => 14,                   // UNAVAILABLE
        }
    }

    /// Whether a retry with `retryOn: connect-failure` / `reset` / `5xx` may help.
    pub fn is_retryable_transport(&self) -> bool {
        matches!(
            self,
            Self::ConnectFailure { .. } | Self::UpstreamReset { .. }
        )
    }
}

/// The gRPC code for an HTTP status, as gRPC's HTTP mapping defines it.
fn http_to_grpc(status: StatusCode) -> u32 {
    match status.as_u16() {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502..=504 => 14,
        _ => 2,
    }
}

/// The proxy's own answer to a request it could not forward.
pub fn error_response(err: &ProxyError, grpc: bool) -> Response<Body> {
    let text = err.to_string();
    let mut res = if grpc {
        let mut res = Response::new(Body::Empty);
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        h.insert("grpc-status", value_of(&err.grpc_status().to_string()));
        h.insert("grpc-message", grpc_message(&text));
        res
    } else {
        let mut res = Response::new(Body::full(format!("{text}\n")));
        *res.status_mut() = err.status();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        res
    };
    if !matches!(err, ProxyError::FaultAbort { .. }) {
        res.headers_mut().insert(ERROR, header_text(&text));
    }
    res
}

/// Header-safe text: printable ASCII only.
fn header_text(s: &str) -> HeaderValue {
    let clean: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    value_of(&clean)
}

/// `grpc-message` is percent-encoded (gRPC's HTTP/2 protocol spec).
fn grpc_message(s: &str) -> HeaderValue {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    value_of(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_errors_say_why() {
        let err = ProxyError::NoHealthyUpstream("reviews.default.svc.cluster.local:9080".into());
        let res = error_response(&err, false);
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            res.headers()[ERROR],
            "no healthy upstream for reviews.default.svc.cluster.local:9080"
        );
        assert_eq!(err.flag(), ResponseFlag::NoHealthyUpstream);
    }

    #[test]
    fn grpc_errors_are_grpc_statuses() {
        let err = ProxyError::Timeout {
            service: "cart".into(),
            timeout: Duration::from_millis(200),
        };
        let res = error_response(&err, true);
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["grpc-status"], "4");
        assert!(
            res.headers()["grpc-message"]
                .to_str()
                .unwrap()
                .starts_with("upstream request timeout")
        );
    }

    #[test]
    fn fault_aborts_use_the_configured_status_and_no_error_header() {
        let err = ProxyError::FaultAbort {
            status: StatusCode::from_u16(418).unwrap(),
            grpc: None,
        };
        let res = error_response(&err, false);
        assert_eq!(res.status().as_u16(), 418);
        assert!(!res.headers().contains_key(ERROR));
        assert_eq!(err.flag(), ResponseFlag::FaultInjected);
    }

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(grpc_message("a%b\nc"), "a%25b%0Ac");
    }
}
