//! The handle every listener and request shares: config state, connection clients,
//! telemetry (metrics, access log, tracer), limits.

use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulConnection, GracefulShutdown};

use crate::state::State;
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::trace::Tracer;
use crate::transport::Direct;

/// Limits and timeouts of the proxy's HTTP servers and clients.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Where the local application listens (the inbound side forwards there).
    pub app_host: IpAddr,
    /// Largest request head (HTTP/1 buffer, HTTP/2 header list).
    pub max_header_bytes: u32,
    /// Most concurrent HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// How long a client may take to send a request head (slowloris).
    pub header_read_timeout: Duration,
    /// Connect timeout for connections the proxy makes outside any cluster's settings.
    pub connect_timeout: Duration,
    /// Idle pooled connections close after this long.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            app_host: IpAddr::from([127, 0, 0, 1]),
            max_header_bytes: 64 * 1024,
            max_concurrent_streams: 1_000,
            header_read_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(90),
        }
    }
}

/// Shared by all listeners and requests.
#[derive(Debug)]
pub struct Proxy {
    /// Config and runtime state.
    pub state: std::sync::Arc<State>,
    /// Plain HTTP clients (non-mesh endpoints, the local application).
    pub direct: Direct,
    /// Golden metrics.
    pub metrics: Metrics,
    /// The access log (a no-op when disabled).
    pub access_log: AccessLog,
    /// Distributed tracing (a no-op without a collector).
    pub tracer: Tracer,
    /// Limits and timeouts.
    pub config: Limits,
    /// Tracks HTTP connections for graceful drain; taken when draining starts.
    pub graceful: std::sync::Mutex<Option<GracefulShutdown>>,
    /// Caps retries at a share of requests.
    pub retry_budget: RetryBudget,
}

impl Proxy {
    /// Serves an HTTP connection so that draining can shut it down gracefully (finish
    /// in-flight requests, refuse new ones). Locks once per connection, not per request.
    pub async fn serve_conn<C: GracefulConnection>(&self, conn: C) -> C::Output {
        let watcher = self
            .graceful
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(GracefulShutdown::watcher);
        match watcher {
            Some(w) => w.watch(conn).await,
            None => conn.await,
        }
    }

    /// Starts a graceful shutdown of every HTTP connection; resolves when all have closed.
    pub async fn drain(&self) {
        let graceful = self
            .graceful
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(g) = graceful {
            g.shutdown().await;
        }
    }

    /// The HTTP server settings for client-facing connections (HTTP/1.1 and HTTP/2).
    pub fn http_server(&self) -> auto::Builder<TokioExecutor> {
        let mut b = auto::Builder::new(TokioExecutor::new());
        b.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.config.header_read_timeout)
            .max_buf_size(self.config.max_header_bytes.max(8192) as usize)
            .keep_alive(true);
        b.http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(self.config.max_concurrent_streams)
            .max_header_list_size(self.config.max_header_bytes)
            .initial_stream_window_size(1 << 20)
            .initial_connection_window_size(4 << 20);
        b
    }
}

/// Accepts connections on `listener` until `shutdown` resolves, serving each on its own
/// task with `TCP_NODELAY` set. Accept errors (EMFILE and friends) back off briefly instead
/// of spinning.
pub(crate) async fn accept_loop<F, Fut>(
    listener: tokio::net::TcpListener,
    what: &'static str,
    shutdown: impl std::future::Future<Output = ()>,
    serve: F,
) where
    F: Fn(tokio::net::TcpStream, std::net::SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::pin!(shutdown);
    loop {
        let (stream, client) = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(listener = what, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve(stream, client));
    }
}

/// A retry budget (Finagle's and linkerd2-proxy's idea): every request deposits a fraction of
/// a token, every retry withdraws a whole one, and a small allowance per second keeps
/// low-traffic services retrying. Retries therefore stay a bounded share of traffic — they
/// cannot multiply load on a struggling service. Lock-free.
#[derive(Debug)]
pub struct RetryBudget {
    /// Milli-tokens available.
    tokens: AtomicI64,
    /// Milli-tokens each request deposits (`ratio * 1000`).
    per_request: i64,
    /// Milli-tokens granted per second regardless of traffic.
    per_second: i64,
    /// Cap on saved milli-tokens (ten seconds of allowance plus deposits).
    cap: i64,
    /// Seconds (since `epoch`) of the last per-second grant.
    last_grant: AtomicU64,
    epoch: Instant,
}

impl RetryBudget {
    /// Allows retries up to `ratio` of requests (e.g. 0.2) plus `min_per_second`.
    pub fn new(ratio: f64, min_per_second: u32) -> Self {
        let per_second = i64::from(min_per_second) * 1000;
        Self {
            tokens: AtomicI64::new(per_second),
            per_request: (ratio.clamp(0.0, 1.0) * 1000.0) as i64,
            per_second,
            cap: per_second * 10 + 100_000,
            last_grant: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// A request was made.
    pub fn deposit(&self) {
        let t = self.tokens.fetch_add(self.per_request, Relaxed) + self.per_request;
        if t > self.cap {
            self.tokens.fetch_sub(t - self.cap, Relaxed);
        }
    }

    /// Asks to retry once; `false` means the budget is spent.
    pub fn withdraw(&self) -> bool {
        let now = self.epoch.elapsed().as_secs();
        let last = self.last_grant.load(Relaxed);
        if now > last
            && self
                .last_grant
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            let grant = self.per_second * i64::try_from(now - last).unwrap_or(1).min(10);
            self.tokens.fetch_add(grant, Relaxed);
        }
        if self.tokens.fetch_sub(1000, Relaxed) >= 1000 {
            true
        } else {
            self.tokens.fetch_add(1000, Relaxed);
            false
        }
    }
}

impl Default for RetryBudget {
    /// Retries up to half of requests plus 10 per second: enough for `attempts: 3` to hide
    /// a backend failing a third of its requests (about 0.43 retries per request), while a
    /// dead service sees at most 1.5 times its normal load instead of 4 times.
    fn default() -> Self {
        Self::new(0.5, 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_limits_retries_to_a_share_of_requests() {
        let b = RetryBudget::new(0.2, 0);
        assert!(!b.withdraw(), "nothing deposited yet");
        for _ in 0..100 {
            b.deposit();
        }
        let allowed = (0..100).filter(|_| b.withdraw()).count();
        assert_eq!(allowed, 20);
    }

    #[test]
    fn budget_has_a_per_second_floor() {
        let b = RetryBudget::new(0.0, 10);
        let allowed = (0..100).filter(|_| b.withdraw()).count();
        assert_eq!(allowed, 10);
    }
}
