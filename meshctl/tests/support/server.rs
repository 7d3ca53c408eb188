//! A fake control-plane debug API: hyper on 127.0.0.1 (port 0) in a thread of its own,
//! answering each request with what a handler returns. Stops when dropped.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

/// An answer: status, content type, body.
pub(crate) struct Canned {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) body: String,
}

impl Canned {
    pub(crate) fn json(value: &impl serde::Serialize) -> Self {
        Self {
            status: 200,
            content_type: "application/json",
            body: serde_json::to_string(value).unwrap(),
        }
    }

    pub(crate) fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

type Handler = Arc<dyn Fn(&str, Option<&str>) -> Canned + Send + Sync>;

/// A running fake server.
pub(crate) struct FakeControlPlane {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeControlPlane {
    /// Serves `handler(path, query)` for every request.
    pub(crate) fn start(
        handler: impl Fn(&str, Option<&str>) -> Canned + Send + Sync + 'static,
    ) -> Self {
        let handler: Handler = Arc::new(handler);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = oneshot::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let stream = tokio::select! {
                        _ = &mut rx => break,
                        accepted = listener.accept() => match accepted {
                            Ok((stream, _)) => stream,
                            Err(_) => continue,
                        },
                    };
                    let handler = handler.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                            let canned = handler(req.uri().path(), req.uri().query());
                            async move {
                                Ok::<_, Infallible>(
                                    Response::builder()
                                        .status(StatusCode::from_u16(canned.status).unwrap())
                                        .header(header::CONTENT_TYPE, canned.content_type)
                                        .body(Full::new(Bytes::from(canned.body)))
                                        .unwrap(),
                                )
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        Self {
            addr,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// `HOST:PORT` for `--control-plane`.
    pub(crate) fn addr(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for FakeControlPlane {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Decodes `%XX` escapes of a query value.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}
