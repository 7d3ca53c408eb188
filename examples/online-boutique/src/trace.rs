//! W3C Trace Context (`traceparent`) propagation.
//!
//! [`crate::server`] reads the `traceparent` of every incoming call (or starts a new trace
//! when there is none or it is malformed), gives the call its own span id, and runs the
//! handler inside [`scope`]. [`crate::client`] then stamps every outgoing call made while
//! handling it with the same trace id and a fresh child span id, so a trace follows a
//! request through checkout → cart, catalog, currency, shipping, payment and email, and
//! through the mesh's sidecars, which join the same trace.

use std::{fmt, future::Future};

/// The header (gRPC metadata key) carrying the trace context.
pub const TRACEPARENT: &str = "traceparent";

/// One span's place in a trace: what `traceparent` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: u128,
    span_id: u64,
    flags: u8,
}

tokio::task_local! {
    /// The span of the incoming call being handled by the current task.
    static CURRENT: TraceContext;
}

// === impl TraceContext ===

impl TraceContext {
    /// Parses a `traceparent` value: `version-traceid-parentid-flags` in lower-case hex.
    /// Versions other than `00` are accepted when they carry at least these fields (as the
    /// specification asks); version `ff`, all-zero ids and malformed values are rejected.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let span = parts.next()?;
        let flags = parts.next()?;
        let rest = parts.next();
        let lower_hex = |s: &str, len: usize| {
            s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        if !lower_hex(version, 2) || version == "ff" || (version == "00" && rest.is_some()) {
            return None;
        }
        if !lower_hex(trace, 32) || !lower_hex(span, 16) || !lower_hex(flags, 2) {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let span_id = u64::from_str_radix(span, 16).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        (trace_id != 0 && span_id != 0).then_some(Self {
            trace_id,
            span_id,
            flags,
        })
    }

    /// A new trace with a new root span, sampled.
    pub fn new_root() -> Self {
        Self {
            trace_id: nonzero_u128(),
            span_id: nonzero_u64(),
            flags: 0x01,
        }
    }

    /// A child span: the same trace and flags, a new span id.
    #[must_use]
    pub fn child(&self) -> Self {
        Self {
            span_id: nonzero_u64(),
            ..*self
        }
    }

    /// The span of an incoming call with these headers: a child of the caller's span when
    /// it sent a valid `traceparent`, else the root of a new trace.
    pub fn incoming(headers: &http::HeaderMap) -> Self {
        headers
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(Self::parse)
            .map_or_else(Self::new_root, |parent| parent.child())
    }

    /// The trace id.
    pub fn trace_id(&self) -> u128 {
        self.trace_id
    }

    /// This span's id.
    pub fn span_id(&self) -> u64 {
        self.span_id
    }

    /// The trace flags (bit 0: sampled).
    pub fn flags(&self) -> u8 {
        self.flags
    }
}

/// Formats as a version-00 `traceparent` value.
impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

/// Runs `fut` as the handling of a call whose span is `ctx`: outgoing calls it makes carry
/// children of `ctx`.
pub async fn scope<F: Future>(ctx: TraceContext, fut: F) -> F::Output {
    CURRENT.scope(ctx, fut).await
}

/// The span of the call the current task is handling, if any.
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(|c| *c).ok()
}

/// The `traceparent` for an outgoing call made now: a child of the current span, or the
/// root of a new trace outside any call.
pub fn outgoing() -> TraceContext {
    current().map_or_else(TraceContext::new_root, |c| c.child())
}

fn nonzero_u64() -> u64 {
    fastrand::u64(1..)
}

fn nonzero_u128() -> u128 {
    fastrand::u128(1..)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_formats_the_specification_example() {
        let ctx = TraceContext::parse(SAMPLE).unwrap();
        assert_eq!(ctx.trace_id(), 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(ctx.span_id(), 0x00f067aa0ba902b7);
        assert_eq!(ctx.flags(), 1);
        assert_eq!(ctx.to_string(), SAMPLE);
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad:?}");
        }
        // A future version may append fields.
        let future = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what";
        assert!(TraceContext::parse(future).is_some());
    }

    #[test]
    fn incoming_continues_the_callers_trace() {
        let mut headers = http::HeaderMap::new();
        headers.insert(TRACEPARENT, SAMPLE.parse().unwrap());
        let parent = TraceContext::parse(SAMPLE).unwrap();
        let ctx = TraceContext::incoming(&headers);
        assert_eq!(ctx.trace_id(), parent.trace_id());
        assert_ne!(ctx.span_id(), parent.span_id());

        headers.insert(TRACEPARENT, "garbage".parse().unwrap());
        assert_ne!(
            TraceContext::incoming(&headers).trace_id(),
            parent.trace_id()
        );
    }

    #[tokio::test]
    async fn outgoing_calls_are_children_of_the_current_span() {
        assert_eq!(current(), None);
        let ctx = TraceContext::new_root();
        let (cur, out) = scope(ctx, async { (current(), outgoing()) }).await;
        assert_eq!(cur, Some(ctx));
        assert_eq!(out.trace_id(), ctx.trace_id());
        assert_ne!(out.span_id(), ctx.span_id());
        assert_ne!(outgoing().trace_id(), ctx.trace_id());
    }
}
