//! Telemetry: what the proxy tells operators about the traffic it carries and about itself.
//!
//! - [`metrics`]: Istio's "golden" request and TCP metrics with a `mesh_` prefix
//!   (`mesh_requests_total`, `mesh_request_duration_milliseconds`, …) and proxy-level gauges,
//!   kept in a caller-owned `prometheus_client` registry (no global state) with a bounded
//!   number of label sets, rendered for scrapes by [`metrics::SharedRegistry`].
//! - [`access_log`]: one JSON line per request or TCP connection on stdout, written by a
//!   background task so the request path never waits on I/O.
//! - [`trace`]: distributed tracing — a span per request on each side, W3C/B3 context
//!   joined and propagated, sampled by percentage, exported over OTLP/gRPC by a background
//!   task; off (and free) without a collector.
//! - [`init_tracing`]: installs the process-wide `tracing` subscriber (honouring `MESH_LOG`)
//!   and returns a [`LogHandle`] that the admin server ([`crate::admin`]) uses to read and
//!   change the filter at run time.
//!
//! The data path (listeners, HTTP routing) records into these; the admin servers
//! ([`crate::admin`]) expose them.

pub mod access_log;
pub mod log;
pub mod metrics;
mod time;
pub mod trace;

pub use self::log::{LOG_ENV, LogHandle, init_tracing, subscriber};
pub use self::time::Rfc3339;

/// Errors of telemetry setup and of run-time log-filter changes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tracing filter did not parse.
    #[error(
        "invalid log filter {filter:?}: {source} (expected e.g. `info` or `mesh_proxy=debug,warn`)"
    )]
    InvalidFilter {
        /// The filter as given.
        filter: String,
        /// Why it did not parse.
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    /// `MESH_LOG` is set but not valid Unicode or not a valid filter.
    #[error("invalid {LOG_ENV} filter: {0} (check the {LOG_ENV} environment variable)")]
    InvalidEnvFilter(#[source] tracing_subscriber::filter::FromEnvError),
    /// A global subscriber is already installed (e.g. `init_tracing` was called before).
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled(#[source] tracing_subscriber::util::TryInitError),
    /// The subscriber whose filter a [`LogHandle`] changes no longer exists.
    #[error("the tracing subscriber is gone; cannot change the log filter: {0}")]
    SubscriberGone(#[source] tracing_subscriber::reload::Error),
}
