//! The access log: one JSON object per line on stdout for every request (and every TCP
//! connection) the proxy handles, Envoy-style field names.
//!
//! The request path never waits on stdout. [`AccessLog::log`] serializes the record into a
//! line (no I/O) and hands it to a bounded channel; a writer task drains the channel and
//! writes whatever has queued up in one `write` per batch. When the channel is full (stdout
//! is slower than the traffic) the record is dropped and counted in
//! `mesh_access_log_dropped_total` ([`super::metrics::Metrics::access_log_dropped`]); a full
//! channel costs no serialization. A disabled log ([`AccessLog::disabled`]) is a `None`
//! inside: `log` is one branch.
//!
//! HTTP lines carry: `start_time` (RFC 3339, UTC), `duration_ms`, `reporter`, `method`,
//! `path`, `protocol` (`HTTP/1.1`, `HTTP/2`), `authority`, `response_code` (0 without a
//! response), `grpc_status`, `response_flags`, `bytes_received`, `bytes_sent`,
//! `upstream_host`, `upstream_cluster`, `route_name`, `request_id`, `user_agent`,
//! `source_principal`, `destination_principal`, `trace_id`. Optional values the record
//! leaves empty are `null`.
//! TCP lines carry `protocol: "TCP"` and the connection-level subset plus
//! `downstream_remote_address`.

use std::{io, time::Duration, time::SystemTime};

use http::Version;
use prometheus_client::metrics::counter::Counter;
use serde::{Serialize, Serializer};
use tokio::{
    io::{AsyncWrite, AsyncWriteExt as _},
    sync::mpsc,
    task::JoinHandle,
};

use super::{
    Rfc3339,
    metrics::{Metrics, Reporter, ResponseFlag},
};

/// The default channel capacity, in records.
pub const DEFAULT_CAPACITY: usize = 4096;

/// The most lines written in one batch.
const MAX_BATCH: usize = 256;

/// One finished HTTP request, as the access log shows it. Text fields left empty show as
/// `null` (those documented as optional) or `""`.
#[derive(Debug, Clone)]
pub struct AccessRecord {
    /// When the request's first byte arrived.
    pub start_time: SystemTime,
    /// From the first request byte to the last response byte.
    pub duration: Duration,
    /// Which proxy logs (client side or server side).
    pub reporter: Reporter,
    /// The request method.
    pub method: String,
    /// The request path and query, as received.
    pub path: String,
    /// The downstream protocol: `HTTP/1.1`, `HTTP/2` (see [`version_str`]).
    pub protocol: String,
    /// The request's authority (`Host` / `:authority`).
    pub authority: String,
    /// The response status, 0 when there was no response.
    pub response_code: u16,
    /// The gRPC status, for gRPC responses that carry one.
    pub grpc_status: Option<u32>,
    /// Why the proxy shaped the response, if it did.
    pub response_flags: ResponseFlag,
    /// Request body bytes received from the client.
    pub bytes_received: u64,
    /// Response body bytes sent to the client.
    pub bytes_sent: u64,
    /// Optional: the endpoint the request went to (`10.0.0.7:15008`).
    pub upstream_host: String,
    /// Optional: the upstream cluster.
    pub upstream_cluster: String,
    /// Optional: the route that matched.
    pub route_name: String,
    /// Optional: the `x-request-id` header.
    pub request_id: String,
    /// Optional: the `user-agent` header.
    pub user_agent: String,
    /// Optional: the client's identity.
    pub source_principal: String,
    /// Optional: the server's identity.
    pub destination_principal: String,
    /// Optional: the trace id (from `traceparent` or `x-b3-traceid`).
    pub trace_id: String,
}

impl AccessRecord {
    /// A record of a request starting now, every other field empty or zero.
    pub fn new(reporter: Reporter) -> Self {
        Self {
            start_time: SystemTime::now(),
            duration: Duration::ZERO,
            reporter,
            method: String::new(),
            path: String::new(),
            protocol: String::new(),
            authority: String::new(),
            response_code: 0,
            grpc_status: None,
            response_flags: ResponseFlag::None,
            bytes_received: 0,
            bytes_sent: 0,
            upstream_host: String::new(),
            upstream_cluster: String::new(),
            route_name: String::new(),
            request_id: String::new(),
            user_agent: String::new(),
            source_principal: String::new(),
            destination_principal: String::new(),
            trace_id: String::new(),
        }
    }
}

/// One finished TCP connection (proxied opaquely), as the access log shows it. Optional text
/// fields left empty show as `null`.
#[derive(Debug, Clone)]
pub struct TcpRecord {
    /// When the connection was accepted.
    pub start_time: SystemTime,
    /// How long it was open.
    pub duration: Duration,
    /// Which proxy logs.
    pub reporter: Reporter,
    /// Optional: the peer that opened the connection.
    pub downstream_remote_address: String,
    /// Why the proxy ended or refused the connection, if it did.
    pub response_flags: ResponseFlag,
    /// Bytes received from the connection's initiator.
    pub bytes_received: u64,
    /// Bytes sent to the connection's initiator.
    pub bytes_sent: u64,
    /// Optional: the endpoint the connection went to.
    pub upstream_host: String,
    /// Optional: the upstream cluster.
    pub upstream_cluster: String,
    /// Optional: the route that matched.
    pub route_name: String,
    /// Optional: the client's identity.
    pub source_principal: String,
    /// Optional: the server's identity.
    pub destination_principal: String,
}

impl TcpRecord {
    /// A record of a connection accepted now, every other field empty or zero.
    pub fn new(reporter: Reporter) -> Self {
        Self {
            start_time: SystemTime::now(),
            duration: Duration::ZERO,
            reporter,
            downstream_remote_address: String::new(),
            response_flags: ResponseFlag::None,
            bytes_received: 0,
            bytes_sent: 0,
            upstream_host: String::new(),
            upstream_cluster: String::new(),
            route_name: String::new(),
            source_principal: String::new(),
            destination_principal: String::new(),
        }
    }
}

// === impl AccessLog ===

/// A handle to the access log. Cheap to clone; all clones feed one writer task, which
/// finishes (after writing what is queued) when every clone is dropped.
#[derive(Debug, Clone, Default)]
pub struct AccessLog {
    inner: Option<Inner>,
}

#[derive(Debug, Clone)]
struct Inner {
    tx: mpsc::Sender<Vec<u8>>,
    dropped: Counter,
}

impl AccessLog {
    /// A log that logs nothing.
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// A log to the process's stdout with a channel of [`DEFAULT_CAPACITY`] records; drops
    /// are counted in `metrics`' `mesh_access_log_dropped_total`. Spawns the writer on the
    /// current Tokio runtime (detached: lines still queued when the process exits are lost).
    pub fn stdout(metrics: &Metrics) -> Self {
        Self::spawn(
            tokio::io::stdout(),
            DEFAULT_CAPACITY,
            metrics.access_log_dropped(),
        )
        .0
    }

    /// A log to `writer`, with a channel of `capacity` records (at least 1); drops are
    /// counted in `dropped`. Spawns the writer on the current Tokio runtime; the task
    /// returns `writer` once every handle is dropped and the queue is written.
    pub fn spawn<W>(writer: W, capacity: usize, dropped: Counter) -> (Self, JoinHandle<W>)
    where
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let task = tokio::spawn(write_lines(rx, writer, dropped.clone()));
        let log = Self {
            inner: Some(Inner { tx, dropped }),
        };
        (log, task)
    }

    /// Whether records are logged; callers can skip building a record when not.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Logs one HTTP request. Never blocks; drops the record when the writer is behind.
    pub fn log(&self, record: &AccessRecord) {
        if let Some(inner) = &self.inner {
            inner.send(|| http_line(record));
        }
    }

    /// Logs one TCP connection. Never blocks; drops the record when the writer is behind.
    pub fn log_tcp(&self, record: &TcpRecord) {
        if let Some(inner) = &self.inner {
            inner.send(|| tcp_line(record));
        }
    }
}

impl Inner {
    fn send(&self, line: impl FnOnce() -> Vec<u8>) {
        match self.tx.try_reserve() {
            Ok(permit) => permit.send(line()),
            Err(_) => {
                self.dropped.inc();
            }
        }
    }
}

/// The writer task: batches whatever is queued into one write.
async fn write_lines<W: AsyncWrite + Unpin>(
    mut rx: mpsc::Receiver<Vec<u8>>,
    mut writer: W,
    dropped: Counter,
) -> W {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut failing = false;
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        buf.clear();
        let lines = batch.len() as u64;
        for line in batch.drain(..) {
            buf.extend_from_slice(&line);
        }
        match write_batch(&mut writer, &buf).await {
            Ok(()) => failing = false,
            Err(e) => {
                dropped.inc_by(lines);
                if !failing {
                    tracing::warn!(error = %e, "writing the access log failed; dropping records until it recovers");
                }
                failing = true;
            }
        }
    }
    let _ = writer.flush().await;
    writer
}

async fn write_batch<W: AsyncWrite + Unpin>(writer: &mut W, buf: &[u8]) -> io::Result<()> {
    writer.write_all(buf).await?;
    writer.flush().await
}

// === JSON lines ===

#[derive(Serialize)]
struct HttpLine<'a> {
    start_time: Rfc3339,
    duration_ms: u64,
    reporter: &'static str,
    method: &'a str,
    path: &'a str,
    protocol: &'a str,
    authority: &'a str,
    response_code: u16,
    grpc_status: Option<u32>,
    response_flags: &'static str,
    bytes_received: u64,
    bytes_sent: u64,
    #[serde(serialize_with = "null_if_empty")]
    upstream_host: &'a str,
    #[serde(serialize_with = "null_if_empty")]
    upstream_cluster: &'a str,
    #[serde(serialize_with = "null_if_empty")]
    route_name: &'a str,
    #[serde(serialize_with = "null_if_empty")]
    request_id: &'a str,
    #[serde(serialize_with = "null_if_empty")]
    user_agent: &'a str,
    #[serde(serialize_with = "null_if_empty")]
    source_principal: &'a str,
    #[serde(serialize_with = "null_if_empty")]
    destination_principal: &'a str,
    #[serde(serialize_with = "null_if_empty")]
    trace_id: &'a str,
}

#[derive(Serialize)]
struct TcpLine<'a> {
    start_time: Rfc3339,
    duration_ms: u64,
    reporter: &'static str,
    protocol: &'static str,
    #[serde(serialize_with = "null_if_empty")]
    downstream_remote_address: &'a str,
    response_flags: &'static str,
    bytes_received: u64,
    bytes_sent: u64,
    #[serde(serialize_with = "null_if_empty")]
    upstream_host: &'a str,
    #[serde(serialize_with = "null_if_empty")]
    upstream_cluster: &'a str,
    #[serde(serialize_with = "null_if_empty")]
    route_name: &'a str,
    #[serde(serialize_with = "null_if_empty")]
    source_principal: &'a str,
    #[serde(serialize_with = "null_if_empty")]
    destination_principal: &'a str,
}

fn http_line(r: &AccessRecord) -> Vec<u8> {
    to_line(&HttpLine {
        start_time: Rfc3339(r.start_time),
        duration_ms: millis(r.duration),
        reporter: r.reporter.as_str(),
        method: &r.method,
        path: &r.path,
        protocol: &r.protocol,
        authority: &r.authority,
        response_code: r.response_code,
        grpc_status: r.grpc_status,
        response_flags: r.response_flags.as_str(),
        bytes_received: r.bytes_received,
        bytes_sent: r.bytes_sent,
        upstream_host: &r.upstream_host,
        upstream_cluster: &r.upstream_cluster,
        route_name: &r.route_name,
        request_id: &r.request_id,
        user_agent: &r.user_agent,
        source_principal: &r.source_principal,
        destination_principal: &r.destination_principal,
        trace_id: &r.trace_id,
    })
}

fn tcp_line(r: &TcpRecord) -> Vec<u8> {
    to_line(&TcpLine {
        start_time: Rfc3339(r.start_time),
        duration_ms: millis(r.duration),
        reporter: r.reporter.as_str(),
        protocol: "TCP",
        downstream_remote_address: &r.downstream_remote_address,
        response_flags: r.response_flags.as_str(),
        bytes_received: r.bytes_received,
        bytes_sent: r.bytes_sent,
        upstream_host: &r.upstream_host,
        upstream_cluster: &r.upstream_cluster,
        route_name: &r.route_name,
        source_principal: &r.source_principal,
        destination_principal: &r.destination_principal,
    })
}

fn to_line(v: &impl Serialize) -> Vec<u8> {
    let mut line = Vec::with_capacity(512);
    // Serializing these structs into a Vec cannot fail: every field is a string, number or
    // null, and map keys are field names.
    if serde_json::to_writer(&mut line, v).is_err() {
        line.clear();
        line.extend_from_slice(b"{}");
    }
    line.push(b'\n');
    line
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// An HTTP version as access logs spell it (`HTTP/2`, not `HTTP/2.0`), for
/// [`AccessRecord::protocol`].
pub fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "unknown",
    }
}

fn null_if_empty<S: Serializer>(v: &&str, s: S) -> Result<S::Ok, S::Error> {
    if v.is_empty() {
        s.serialize_none()
    } else {
        s.serialize_str(v)
    }
}

#[cfg(test)]
mod tests;
