//! Trace context on the wire: W3C Trace Context (`traceparent`, `tracestate`) and Zipkin B3
//! (the `x-b3-*` headers and the single `b3` header).
//!
//! [`extract`] reads what a request carries; [`inject`] writes the proxy's span as the new
//! parent. Parsing is strict where the specs are (a malformed context is ignored and a new
//! trace starts), and allocation-free: ids are fixed-size byte arrays.
//!
//! - `traceparent`: `<version>-<trace id>-<parent id>-<flags>`, lower-case hex, 2-32-16-2
//!   digits. Version `00` must be exactly 55 bytes; a later version may append `-…` (parsed
//!   by its `00` prefix, as the spec asks); `ff` is invalid. All-zero ids are invalid. More
//!   than one `traceparent` header is invalid.
//! - `tracestate` is never parsed: it passes through untouched when the parent came from a
//!   valid `traceparent`, and is removed otherwise (it means nothing without one).
//! - B3 multi: `x-b3-traceid` (16 or 32 hex digits), `x-b3-spanid` (16), `x-b3-sampled`
//!   (`1`/`0`, also `true`/`false`), `x-b3-flags: 1` (debug: sampled). `x-b3-parentspanid`
//!   is not needed to join a trace and is only rewritten. B3 hex is accepted in either case.
//! - B3 single: `b3: <trace id>-<span id>[-<1|0|d>[-<parent span id>]]`, or just `b3: 0`
//!   (or `1`/`d`): a sampling decision without ids.
//!
//! When several are present, `traceparent` wins, then `b3`, then `x-b3-*`.

use std::fmt;

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// The W3C `traceparent` header.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The W3C `tracestate` header.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// The B3 single header.
pub const B3: HeaderName = HeaderName::from_static("b3");
/// B3 multi: the trace id.
pub const X_B3_TRACEID: HeaderName = HeaderName::from_static("x-b3-traceid");
/// B3 multi: the span id (the caller's span).
pub const X_B3_SPANID: HeaderName = HeaderName::from_static("x-b3-spanid");
/// B3 multi: the parent of `x-b3-spanid`.
pub const X_B3_PARENTSPANID: HeaderName = HeaderName::from_static("x-b3-parentspanid");
/// B3 multi: the sampling decision.
pub const X_B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
/// B3 multi: `1` means debug (sampled).
pub const X_B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");

/// The W3C `sampled` trace flag.
pub const FLAG_SAMPLED: u8 = 0x01;

// === ids ===

/// A 128-bit trace id; all zeros is invalid.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TraceId([u8; 16]);

/// A 64-bit span id; all zeros is invalid.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SpanId([u8; 8]);

impl TraceId {
    /// The id of these bytes (big-endian, as on the wire).
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The id's bytes.
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0
    }

    /// A new random, valid id.
    pub fn random() -> Self {
        loop {
            let v = fastrand::u128(..);
            if v != 0 {
                return Self(v.to_be_bytes());
            }
        }
    }

    /// Whether the id is not all zeros.
    pub fn is_valid(self) -> bool {
        self.0 != [0; 16]
    }

    /// The low 64 bits, which the sampler reads (random in ids the proxy makes, and in
    /// 64-bit B3 ids).
    pub fn low_u64(self) -> u64 {
        let mut b = [0; 8];
        b.copy_from_slice(&self.0[8..]);
        u64::from_be_bytes(b)
    }

    /// Whether only the low 64 bits are set (a 64-bit B3 id).
    fn is_short(self) -> bool {
        self.0[..8] == [0; 8]
    }
}

impl SpanId {
    /// The id of these bytes.
    pub const fn from_bytes(bytes: [u8; 8]) -> Self {
        Self(bytes)
    }

    /// The id's bytes.
    pub const fn to_bytes(self) -> [u8; 8] {
        self.0
    }

    /// A new random, valid id.
    pub fn random() -> Self {
        loop {
            let v = fastrand::u64(..);
            if v != 0 {
                return Self(v.to_be_bytes());
            }
        }
    }

    /// Whether the id is not all zeros.
    pub fn is_valid(self) -> bool {
        self.0 != [0; 8]
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0; 32];
        f.write_str(hex(&self.0, &mut buf))
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0; 16];
        f.write_str(hex(&self.0, &mut buf))
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Lower-case hex of `src` into `dst` (twice as long).
fn hex<'a>(src: &[u8], dst: &'a mut [u8]) -> &'a str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in src.iter().enumerate() {
        dst[2 * i] = DIGITS[usize::from(b >> 4)];
        dst[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
    }
    // Only ASCII hex digits were written.
    std::str::from_utf8(&dst[..2 * src.len()]).unwrap_or_default()
}

/// Parses exactly `2 * N` hex digits; upper case only when `any_case`.
fn unhex<const N: usize>(s: &[u8], any_case: bool) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' if any_case => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0; N];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

// === extraction ===

/// A caller's span, as a request carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanContext {
    /// The trace.
    pub trace_id: TraceId,
    /// The caller's span: the parent of the proxy's span.
    pub span_id: SpanId,
    /// The caller's sampling decision; `None` when B3 defers it to the receiver.
    pub sampled: Option<bool>,
    /// W3C trace flags (bit 0 is `sampled`); other bits are passed on.
    pub flags: u8,
}

/// Which trace headers a request carried, so the same kinds are rewritten on the way out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Carriers {
    /// A `b3` header was present.
    pub b3_single: bool,
    /// `x-b3-traceid` or `x-b3-sampled` was present.
    pub b3_multi: bool,
    /// The B3 trace id was 64-bit (16 digits); it is written back the same way.
    pub b3_short: bool,
}

/// What a request's trace headers say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extracted {
    /// The caller's span, when a valid context was present.
    pub parent: Option<SpanContext>,
    /// A sampling decision without a context (`b3: 0`, or `x-b3-sampled` alone).
    pub sampled: Option<bool>,
    /// The parent came from a valid `traceparent`, so `tracestate` belongs to it.
    pub w3c: bool,
    /// Which headers to rewrite.
    pub carriers: Carriers,
}

/// Reads the trace context of a request's headers.
pub fn extract(headers: &HeaderMap) -> Extracted {
    let mut out = Extracted::default();
    let mut parents = headers.get_all(TRACEPARENT).iter();
    if let (Some(v), None) = (parents.next(), parents.next())
        && let Some(ctx) = parse_traceparent(v.as_bytes())
    {
        out.parent = Some(ctx);
        out.w3c = true;
    }
    if let Some(v) = headers.get(B3) {
        out.carriers.b3_single = true;
        match parse_b3_single(v.as_bytes()) {
            Some(B3Single::Context(ctx)) => {
                out.carriers.b3_short = ctx.trace_id.is_short();
                if out.parent.is_none() {
                    out.parent = Some(ctx);
                }
            }
            Some(B3Single::Decision(s)) => out.sampled = Some(s),
            None => {}
        }
    }
    if headers.contains_key(X_B3_TRACEID) || headers.contains_key(X_B3_SAMPLED) {
        out.carriers.b3_multi = true;
        let sampled = b3_multi_sampled(headers);
        match parse_b3_multi(headers) {
            Some(ctx) => {
                if !out.carriers.b3_single {
                    out.carriers.b3_short = ctx.trace_id.is_short();
                }
                if out.parent.is_none() {
                    out.parent = Some(ctx);
                }
            }
            None => {
                if out.sampled.is_none() {
                    out.sampled = sampled;
                }
            }
        }
    }
    out
}

/// Parses a `traceparent` value.
pub fn parse_traceparent(v: &[u8]) -> Option<SpanContext> {
    if v.len() < 55 {
        return None;
    }
    let [version] = unhex::<1>(&v[0..2], false)?;
    match version {
        0xff => return None,
        0 if v.len() != 55 => return None,
        // A later version: parse its version-00 prefix.
        _ if v.len() > 55 && v[55] != b'-' => return None,
        _ => {}
    }
    if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let trace_id = TraceId(unhex(&v[3..35], false)?);
    let span_id = SpanId(unhex(&v[36..52], false)?);
    let [flags] = unhex::<1>(&v[53..55], false)?;
    if !trace_id.is_valid() || !span_id.is_valid() {
        return None;
    }
    Some(SpanContext {
        trace_id,
        span_id,
        sampled: Some(flags & FLAG_SAMPLED != 0),
        flags,
    })
}

/// A B3 trace id: 16 or 32 hex digits, not all zeros.
fn b3_trace_id(s: &[u8]) -> Option<TraceId> {
    let id = match s.len() {
        32 => TraceId(unhex(s, true)?),
        16 => {
            let low: [u8; 8] = unhex(s, true)?;
            let mut b = [0; 16];
            b[8..].copy_from_slice(&low);
            TraceId(b)
        }
        _ => return None,
    };
    id.is_valid().then_some(id)
}

fn b3_span_id(s: &[u8]) -> Option<SpanId> {
    let id = SpanId(unhex(s, true)?);
    id.is_valid().then_some(id)
}

/// What a `b3` header holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum B3Single {
    /// A span context.
    Context(SpanContext),
    /// Only a sampling decision (`b3: 0`, `1` or `d`).
    Decision(bool),
}

fn b3_sampling(s: &[u8]) -> Option<bool> {
    match s {
        b"1" | b"d" => Some(true),
        b"0" => Some(false),
        _ => None,
    }
}

/// Parses a `b3` value.
pub fn parse_b3_single(v: &[u8]) -> Option<B3Single> {
    let mut parts = v.split(|c| *c == b'-');
    let first = parts.next()?;
    let Some(second) = parts.next() else {
        return b3_sampling(first).map(B3Single::Decision);
    };
    let trace_id = b3_trace_id(first)?;
    let span_id = b3_span_id(second)?;
    let sampled = match parts.next() {
        None => None,
        Some(s) => Some(b3_sampling(s)?),
    };
    if let Some(parent) = parts.next() {
        b3_span_id(parent)?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(B3Single::Context(SpanContext {
        trace_id,
        span_id,
        sampled,
        flags: u8::from(sampled == Some(true)),
    }))
}

fn b3_multi_sampled(headers: &HeaderMap) -> Option<bool> {
    if headers
        .get(X_B3_FLAGS)
        .is_some_and(|v| v.as_bytes() == b"1")
    {
        return Some(true);
    }
    match headers.get(X_B3_SAMPLED)?.as_bytes() {
        b"1" | b"true" => Some(true),
        b"0" | b"false" => Some(false),
        _ => None,
    }
}

/// Parses the `x-b3-*` headers.
pub fn parse_b3_multi(headers: &HeaderMap) -> Option<SpanContext> {
    let trace_id = b3_trace_id(headers.get(X_B3_TRACEID)?.as_bytes())?;
    let span_id = b3_span_id(headers.get(X_B3_SPANID)?.as_bytes())?;
    let sampled = b3_multi_sampled(headers);
    Some(SpanContext {
        trace_id,
        span_id,
        sampled,
        flags: u8::from(sampled == Some(true)),
    })
}

// === injection ===

/// The span a request leaves the proxy with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing {
    /// The trace.
    pub trace_id: TraceId,
    /// The proxy's span: the receiver's parent.
    pub span_id: SpanId,
    /// The proxy's span's parent (for `x-b3-parentspanid`).
    pub parent_span_id: Option<SpanId>,
    /// W3C trace flags, `sampled` included.
    pub flags: u8,
    /// Keep `tracestate` (it belongs to the incoming `traceparent`).
    pub keep_tracestate: bool,
    /// The B3 headers to rewrite.
    pub carriers: Carriers,
}

impl Outgoing {
    fn sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }
}

/// Writes `out` into a request's headers: always `traceparent`, and the B3 headers the
/// request came with.
pub fn inject(headers: &mut HeaderMap, out: &Outgoing) {
    let mut buf = [0u8; 55];
    buf[..3].copy_from_slice(b"00-");
    hex(&out.trace_id.0, &mut buf[3..35]);
    buf[35] = b'-';
    hex(&out.span_id.0, &mut buf[36..52]);
    buf[52] = b'-';
    hex(&[out.flags], &mut buf[53..55]);
    insert(headers, TRACEPARENT, &buf);
    if !out.keep_tracestate {
        headers.remove(TRACESTATE);
    }
    let mut trace_buf = [0u8; 32];
    let trace_hex = if out.carriers.b3_short && out.trace_id.is_short() {
        hex(&out.trace_id.0[8..], &mut trace_buf)
    } else {
        hex(&out.trace_id.0, &mut trace_buf)
    };
    let mut span_buf = [0u8; 16];
    let span_hex = hex(&out.span_id.0, &mut span_buf);
    let sampled = if out.sampled() { "1" } else { "0" };
    let mut parent_buf = [0u8; 16];
    let parent_hex = out.parent_span_id.map(|p| hex(&p.0, &mut parent_buf));
    if out.carriers.b3_multi {
        insert(headers, X_B3_TRACEID, trace_hex.as_bytes());
        insert(headers, X_B3_SPANID, span_hex.as_bytes());
        insert(headers, X_B3_SAMPLED, sampled.as_bytes());
        match parent_hex {
            Some(p) => insert(headers, X_B3_PARENTSPANID, p.as_bytes()),
            None => {
                headers.remove(X_B3_PARENTSPANID);
            }
        }
    }
    if out.carriers.b3_single {
        let mut v = String::with_capacity(32 + 1 + 16 + 2 + 17);
        v.push_str(trace_hex);
        v.push('-');
        v.push_str(span_hex);
        v.push('-');
        v.push_str(sampled);
        if let Some(p) = parent_hex {
            v.push('-');
            v.push_str(p);
        }
        insert(headers, B3, v.as_bytes());
    }
}

fn insert(headers: &mut HeaderMap, name: HeaderName, value: &[u8]) {
    // Hex digits and dashes are always a valid header value.
    if let Ok(v) = HeaderValue::from_bytes(value) {
        headers.insert(name, v);
    }
}

#[cfg(test)]
mod tests;
