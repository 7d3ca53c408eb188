//! The benchmark's backend: an HTTP/1.1 keep-alive server (hyper) answering every request
//! with `200` and a fixed body, on one or more loopback addresses.
//!
//! It runs on its own thread with a current-thread tokio runtime inside the xtask process,
//! so its CPU time is the xtask's, never the proxies' (which are separate processes and are
//! measured through `/proc/<pid>`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;

/// A running backend; dropping it stops it.
#[derive(Debug)]
pub(crate) struct Backend {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    served: Arc<AtomicU64>,
}

impl Backend {
    /// Binds every address in `addrs` (failing if any is taken) and serves `body_len`-byte
    /// bodies on all of them.
    pub(crate) fn start(addrs: &[SocketAddr], body_len: usize) -> anyhow::Result<Self> {
        let mut listeners = Vec::new();
        for addr in addrs {
            let l = std::net::TcpListener::bind(addr)
                .with_context(|| format!("backend cannot listen on {addr}"))?;
            l.set_nonblocking(true)?;
            listeners.push(l);
        }
        let body = Bytes::from(vec![b'x'; body_len]);
        let served = Arc::new(AtomicU64::new(0));
        let counter = served.clone();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("backend runtime")?;
        let thread = std::thread::Builder::new()
            .name("bench-backend".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut accept = tokio::task::JoinSet::new();
                    for l in listeners {
                        let Ok(l) = tokio::net::TcpListener::from_std(l) else {
                            continue;
                        };
                        accept.spawn(accept_loop(l, body.clone(), counter.clone()));
                    }
                    let _ = stop_rx.await;
                    accept.abort_all();
                });
                // Dropping the runtime cancels every connection task.
            })
            .context("spawn the backend thread")?;
        Ok(Self {
            stop: Some(stop_tx),
            thread: Some(thread),
            served,
        })
    }

    /// Requests answered so far.
    pub(crate) fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, body: Bytes, served: Arc<AtomicU64>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors or similar: back off instead of spinning.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        let served = served.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |_req: Request<Incoming>| {
                served.fetch_add(1, Ordering::Relaxed);
                let res = Response::new(Full::new(body.clone()));
                async move { Ok::<_, Infallible>(res) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::http1::{Conn, get_request};

    #[test]
    fn answers_keep_alive_requests_with_the_body() {
        // Port 0 on a loopback address of its own; the bound port is found by probing
        // the listener before handing it over, so bind here and pass the address.
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let backend = Backend::start(&[addr], 1024).unwrap();
        let mut conn = Conn::connect(addr, std::time::Duration::from_secs(5)).unwrap();
        let req = get_request("bench", "/");
        for _ in 0..3 {
            let res = conn.roundtrip(&req).unwrap();
            assert_eq!(
                (res.status, res.body_len, res.keep_alive),
                (200, 1024, true)
            );
        }
        assert_eq!(backend.served(), 3);
    }
}
