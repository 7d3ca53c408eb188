use super::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";

fn tp(s: &str) -> Option<SpanContext> {
    parse_traceparent(s.as_bytes())
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

#[test]
fn traceparent_valid() {
    let ctx = tp(&format!("00-{TRACE}-{SPAN}-01")).unwrap();
    assert_eq!(ctx.trace_id.to_string(), TRACE);
    assert_eq!(ctx.span_id.to_string(), SPAN);
    assert_eq!(ctx.sampled, Some(true));
    assert_eq!(ctx.flags, 1);
    let ctx = tp(&format!("00-{TRACE}-{SPAN}-00")).unwrap();
    assert_eq!(ctx.sampled, Some(false));
    // Unknown flag bits are kept; only bit 0 is `sampled`.
    let ctx = tp(&format!("00-{TRACE}-{SPAN}-03")).unwrap();
    assert_eq!((ctx.sampled, ctx.flags), (Some(true), 3));
    // A later version is parsed by its version-00 prefix, extra fields after a dash.
    assert!(tp(&format!("01-{TRACE}-{SPAN}-01")).is_some());
    assert!(tp(&format!("cc-{TRACE}-{SPAN}-01-what-the-future-brings")).is_some());
}

#[test]
fn traceparent_invalid() {
    let upper = TRACE.to_uppercase();
    let zero_trace = "0".repeat(32);
    let zero_span = "0".repeat(16);
    for bad in [
        String::new(),
        "00".to_string(),
        format!("00-{upper}-{SPAN}-01"),
        format!("00-{TRACE}-{}-01", SPAN.to_uppercase()),
        format!("00-{TRACE}-{SPAN}-0A"),
        format!("00-{zero_trace}-{SPAN}-01"),
        format!("00-{TRACE}-{zero_span}-01"),
        format!("ff-{TRACE}-{SPAN}-01"),
        format!("0-{TRACE}-{SPAN}-01"),
        format!("00-{TRACE}-{SPAN}-01-"),
        format!("00-{TRACE}-{SPAN}-1"),
        format!("00-{TRACE}1-{SPAN}-01"),
        format!("00_{TRACE}-{SPAN}-01"),
        format!("00-{TRACE}_{SPAN}-01"),
        format!("00-{TRACE}-{SPAN}_01"),
        format!("00-{}x-{SPAN}-01", &TRACE[..31]),
        format!("01-{TRACE}-{SPAN}-01x"),
        format!(" 00-{TRACE}-{SPAN}-01"),
    ] {
        assert_eq!(tp(&bad), None, "{bad:?}");
    }
}

#[test]
fn extract_w3c_and_duplicates() {
    let v = format!("00-{TRACE}-{SPAN}-01");
    let ex = extract(&headers(&[("traceparent", &v), ("tracestate", "a=b")]));
    assert!(ex.w3c);
    assert_eq!(ex.parent.unwrap().span_id.to_string(), SPAN);
    assert_eq!(ex.carriers, Carriers::default());
    // Two traceparent headers: invalid, a new trace starts.
    let ex = extract(&headers(&[("traceparent", &v), ("traceparent", &v)]));
    assert_eq!(ex, Extracted::default());
    let ex = extract(&headers(&[("traceparent", "garbage")]));
    assert_eq!(ex, Extracted::default());
}

#[test]
fn b3_single() {
    let full = format!("{TRACE}-{SPAN}-1-{}", "0102030405060708");
    match parse_b3_single(full.as_bytes()).unwrap() {
        B3Single::Context(ctx) => {
            assert_eq!(ctx.trace_id.to_string(), TRACE);
            assert_eq!(ctx.span_id.to_string(), SPAN);
            assert_eq!(ctx.sampled, Some(true));
        }
        other => panic!("{other:?}"),
    }
    let deferred = format!("{TRACE}-{SPAN}");
    assert!(matches!(
        parse_b3_single(deferred.as_bytes()),
        Some(B3Single::Context(SpanContext { sampled: None, .. }))
    ));
    let debug = format!("{}-{SPAN}-d", &TRACE[16..]);
    match parse_b3_single(debug.as_bytes()).unwrap() {
        B3Single::Context(ctx) => {
            assert_eq!(
                ctx.trace_id.to_string(),
                format!("{}{}", "0".repeat(16), &TRACE[16..])
            );
            assert_eq!(ctx.sampled, Some(true));
        }
        other => panic!("{other:?}"),
    }
    // Upper-case hex is accepted in B3.
    let upper = format!("{}-{}-0", TRACE.to_uppercase(), SPAN.to_uppercase());
    assert!(matches!(
        parse_b3_single(upper.as_bytes()),
        Some(B3Single::Context(SpanContext {
            sampled: Some(false),
            ..
        }))
    ));
    assert_eq!(parse_b3_single(b"0"), Some(B3Single::Decision(false)));
    assert_eq!(parse_b3_single(b"1"), Some(B3Single::Decision(true)));
    assert_eq!(parse_b3_single(b"d"), Some(B3Single::Decision(true)));
    for bad in [
        String::new(),
        "2".into(),
        "true".into(),
        TRACE.to_string(),
        format!("{TRACE}-"),
        format!("{TRACE}-{SPAN}-2"),
        format!("{TRACE}-{SPAN}-1-"),
        format!("{TRACE}-{SPAN}-1-{SPAN}-x"),
        format!("{TRACE}-{SPAN}-1-123"),
        format!("{}-{SPAN}", &TRACE[..20]),
        format!("{}-{SPAN}", "0".repeat(32)),
        format!("{TRACE}-{}", "0".repeat(16)),
        format!("{TRACE}-{}", &SPAN[..15]),
    ] {
        assert_eq!(parse_b3_single(bad.as_bytes()), None, "{bad:?}");
    }
}

#[test]
fn b3_multi() {
    let h = headers(&[
        ("x-b3-traceid", TRACE),
        ("x-b3-spanid", SPAN),
        ("x-b3-sampled", "1"),
    ]);
    let ctx = parse_b3_multi(&h).unwrap();
    assert_eq!(
        (ctx.trace_id.to_string(), ctx.sampled),
        (TRACE.into(), Some(true))
    );
    let h = headers(&[
        ("x-b3-traceid", &TRACE[16..]),
        ("x-b3-spanid", SPAN),
        ("x-b3-sampled", "false"),
    ]);
    let ex = extract(&h);
    assert_eq!(ex.parent.unwrap().sampled, Some(false));
    assert!(ex.carriers.b3_multi && ex.carriers.b3_short && !ex.carriers.b3_single);
    assert!(!ex.w3c);
    // Debug flag means sampled; no x-b3-sampled means deferred.
    let h = headers(&[
        ("x-b3-traceid", TRACE),
        ("x-b3-spanid", SPAN),
        ("x-b3-flags", "1"),
    ]);
    assert_eq!(parse_b3_multi(&h).unwrap().sampled, Some(true));
    let h = headers(&[("x-b3-traceid", TRACE), ("x-b3-spanid", SPAN)]);
    assert_eq!(parse_b3_multi(&h).unwrap().sampled, None);
    // Broken ids: no context, but a sampling decision still counts.
    let h = headers(&[("x-b3-traceid", TRACE), ("x-b3-sampled", "0")]);
    let ex = extract(&h);
    assert_eq!((ex.parent, ex.sampled), (None, Some(false)));
    let h = headers(&[("x-b3-traceid", "xyz"), ("x-b3-spanid", SPAN)]);
    assert_eq!(parse_b3_multi(&h), None);
    let h = headers(&[("x-b3-traceid", &"0".repeat(16)), ("x-b3-spanid", SPAN)]);
    assert_eq!(parse_b3_multi(&h), None);
}

#[test]
fn precedence_traceparent_then_b3_then_x_b3() {
    let other_trace = "0af7651916cd43dd8448eb211c80319c";
    let w3c = format!("00-{TRACE}-{SPAN}-01");
    let single = format!("{other_trace}-{SPAN}-1");
    let ex = extract(&headers(&[
        ("traceparent", &w3c),
        ("b3", &single),
        ("x-b3-traceid", other_trace),
        ("x-b3-spanid", SPAN),
    ]));
    assert_eq!(ex.parent.unwrap().trace_id.to_string(), TRACE);
    assert!(ex.w3c && ex.carriers.b3_single && ex.carriers.b3_multi);
    let ex = extract(&headers(&[
        ("b3", &single),
        ("x-b3-traceid", TRACE),
        ("x-b3-spanid", SPAN),
    ]));
    assert_eq!(ex.parent.unwrap().trace_id.to_string(), other_trace);
    // `b3: 0` alone: a decision, no context.
    let ex = extract(&headers(&[("b3", "0")]));
    assert_eq!((ex.parent, ex.sampled), (None, Some(false)));
}

fn outgoing(carriers: Carriers, keep_tracestate: bool) -> Outgoing {
    Outgoing {
        trace_id: parse_traceparent(format!("00-{TRACE}-{SPAN}-01").as_bytes())
            .unwrap()
            .trace_id,
        span_id: SpanId::from_bytes([0xaa; 8]),
        parent_span_id: Some(SpanId::from_bytes([
            0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
        ])),
        flags: 1,
        keep_tracestate,
        carriers,
    }
}

#[test]
fn inject_w3c() {
    let mut h = headers(&[("tracestate", "vendor=x"), ("traceparent", "junk")]);
    inject(&mut h, &outgoing(Carriers::default(), true));
    assert_eq!(
        h["traceparent"],
        format!("00-{TRACE}-aaaaaaaaaaaaaaaa-01").as_str()
    );
    assert_eq!(h["tracestate"], "vendor=x");
    assert!(!h.contains_key("b3") && !h.contains_key("x-b3-traceid"));
    // Without a valid incoming traceparent, tracestate has no owner: removed.
    inject(&mut h, &outgoing(Carriers::default(), false));
    assert!(!h.contains_key("tracestate"));
    // What is injected extracts back to the same span.
    let ex = extract(&h);
    assert_eq!(ex.parent.unwrap().span_id, SpanId::from_bytes([0xaa; 8]));
}

#[test]
fn inject_b3() {
    let carriers = Carriers {
        b3_single: true,
        b3_multi: true,
        b3_short: false,
    };
    let mut h = HeaderMap::new();
    let mut out = outgoing(carriers, false);
    inject(&mut h, &out);
    assert_eq!(h["x-b3-traceid"], TRACE);
    assert_eq!(h["x-b3-spanid"], "aaaaaaaaaaaaaaaa");
    assert_eq!(h["x-b3-parentspanid"], "0102030405060708");
    assert_eq!(h["x-b3-sampled"], "1");
    assert_eq!(
        h["b3"],
        format!("{TRACE}-aaaaaaaaaaaaaaaa-1-0102030405060708").as_str()
    );
    assert!(h.contains_key("traceparent"));
    // Not sampled, no parent, a 64-bit B3 trace id stays 64-bit.
    let mut short = [0u8; 16];
    short[8..].copy_from_slice(&[0x11; 8]);
    out.trace_id = TraceId::from_bytes(short);
    out.flags = 0;
    out.parent_span_id = None;
    out.carriers.b3_short = true;
    inject(&mut h, &out);
    assert_eq!(h["x-b3-traceid"], "1111111111111111");
    assert_eq!(h["x-b3-sampled"], "0");
    assert!(!h.contains_key("x-b3-parentspanid"));
    assert_eq!(h["b3"], "1111111111111111-aaaaaaaaaaaaaaaa-0");
    assert_eq!(
        h["traceparent"],
        "00-00000000000000001111111111111111-aaaaaaaaaaaaaaaa-00"
    );
    let ex = extract(&h);
    assert_eq!(ex.parent.unwrap().trace_id, out.trace_id);
}

#[test]
fn random_ids_are_valid_and_distinct() {
    let a = TraceId::random();
    let b = TraceId::random();
    assert!(a.is_valid() && b.is_valid() && a != b);
    assert!(SpanId::random().is_valid());
    assert_eq!(
        format!("{:?}", SpanId::from_bytes([0xab; 8])),
        "abababababababab"
    );
}
