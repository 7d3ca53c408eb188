//! The accept loop shared by the three servers: HTTP/1.1 and HTTP/2 per connection task,
//! a connection limit, a header-read timeout, graceful drain on shutdown.

use std::{convert::Infallible, future::Future, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, Response, request::Parts};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::{net::TcpListener, sync::Semaphore};

use super::DRAIN_TIMEOUT;

/// Response bodies: always small and complete.
pub(super) type Body = Full<Bytes>;

/// Most connections one server keeps open; more are closed on accept.
const MAX_CONNECTIONS: usize = 128;
/// How long a client may take to send request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts connections on `listener` and answers every request with `handler` (given the
/// request head; bodies are not read) until `shutdown` completes; then drains.
pub(super) async fn serve<H, F>(
    name: &'static str,
    listener: TcpListener,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Parts) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let addr = listener.local_addr().ok();
    tracing::debug!(server = name, ?addr, "serving");
    let graceful = GracefulShutdown::new();
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());

    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => None,
            r = listener.accept() => Some(r),
        };
        let stream = match accepted {
            None => break,
            Some(Ok((stream, _peer))) => stream,
            Some(Err(e)) => {
                tracing::warn!(server = name, error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::debug!(server = name, "too many connections; closing a new one");
            continue;
        };
        let handler = handler.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let (parts, _body) = req.into_parts();
            let response = handler(parts);
            async move { Ok::<_, Infallible>(response.await) }
        });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(server = name, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!(
            server = name,
            "connections still open after the drain timeout"
        );
    }
    tracing::debug!(server = name, ?addr, "stopped");
}
