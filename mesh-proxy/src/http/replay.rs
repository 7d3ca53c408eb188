//! Replaying streamed request bodies for retries.
//!
//! A body whose size is not known up front (gRPC requests, chunked uploads) is streamed to
//! the first try as it arrives — waiting for it to end first could deadlock a streaming call
//! — while a [`TeeBody`] keeps a copy of what passes, up to a limit. If the body ended within
//! the limit by the time a retry is wanted, the retry replays the copy; otherwise the request
//! cannot be retried and the first answer stands (as linkerd2-proxy's replay body does).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body as _, Frame, SizeHint};

use super::Body;

/// The copy of a streamed body, shared between the body and the request that may replay it.
#[derive(Debug)]
pub struct ReplayBuffer {
    limit: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    chunks: Vec<Bytes>,
    len: usize,
    complete: bool,
    /// Over the limit, trailers, or an error: cannot be replayed.
    spoiled: bool,
}

impl ReplayBuffer {
    /// A buffer keeping at most `limit` bytes.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            state: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The whole body, if it ended within the limit.
    pub fn replay(&self) -> Option<Body> {
        let s = self.lock();
        if !s.complete || s.spoiled {
            return None;
        }
        let mut all = BytesMut::with_capacity(s.len);
        for c in &s.chunks {
            all.extend_from_slice(c);
        }
        Some(Body::full(all.freeze()))
    }

    /// Whether [`ReplayBuffer::replay`] would succeed.
    pub fn is_replayable(&self) -> bool {
        let s = self.lock();
        s.complete && !s.spoiled
    }
}

/// A body that copies what it streams into a [`ReplayBuffer`].
#[derive(Debug)]
pub struct TeeBody {
    inner: Body,
    copy: Arc<ReplayBuffer>,
}

impl TeeBody {
    /// Streams `inner`, copying into `copy`.
    pub fn new(inner: Body, copy: Arc<ReplayBuffer>) -> Self {
        Self { inner, copy }
    }

    pub(crate) fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                let mut s = this.copy.lock();
                match frame.data_ref() {
                    Some(data) if !s.spoiled => {
                        if s.len + data.len() > this.copy.limit {
                            s.spoiled = true;
                            s.chunks = Vec::new();
                        } else {
                            s.len += data.len();
                            s.chunks.push(data.clone());
                        }
                    }
                    Some(_) => {}
                    // Trailers are not replayed.
                    None => s.spoiled = true,
                }
                if this.inner.is_end_stream() {
                    s.complete = true;
                }
            }
            Poll::Ready(None) => this.copy.lock().complete = true,
            Poll::Ready(Some(Err(_))) => this.copy.lock().spoiled = true,
            Poll::Pending => {}
        }
        polled
    }

    pub(crate) fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    pub(crate) fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_body_within_the_limit_replays() {
        let copy = ReplayBuffer::new(16);
        let tee = Body::Tee(Box::new(TeeBody::new(Body::full("hello"), copy.clone())));
        assert!(!copy.is_replayable(), "not before it has streamed");
        let first = tee.collect().await.unwrap().to_bytes();
        assert_eq!(first, "hello");
        let again = copy.replay().unwrap().collect().await.unwrap().to_bytes();
        assert_eq!(again, "hello");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_does_not() {
        let copy = ReplayBuffer::new(4);
        let tee = Body::Tee(Box::new(TeeBody::new(Body::full("hello"), copy.clone())));
        let first = tee.collect().await.unwrap().to_bytes();
        assert_eq!(first, "hello", "the first try still gets everything");
        assert!(copy.replay().is_none());
    }
}
