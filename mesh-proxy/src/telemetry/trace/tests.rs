use super::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";

fn tracer(percent: f64) -> Tracer {
    // Nothing listens on port 1; these tests never get as far as exporting.
    let collector: Collector = "http://127.0.0.1:1".parse().unwrap();
    Tracer::spawn(
        &collector,
        Sampler::new(percent).unwrap(),
        Metrics::default(),
    )
}

fn request(headers: &[(&str, &str)]) -> Request<()> {
    let mut req = Request::builder().uri("http://reviews:9080/r?x=1");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(()).unwrap()
}

fn local() -> PeerMeta {
    PeerMeta::from_header("default/productpage-v1-abc/productpage/v1")
}

#[test]
fn disabled_tracer_does_nothing() {
    let t = Tracer::disabled();
    assert!(!t.is_enabled());
    let req = request(&[("traceparent", &format!("00-{TRACE}-{SPAN}-01"))]);
    assert!(t.start(Kind::Client, &req, &local()).is_none());
}

#[tokio::test]
async fn a_span_joins_the_incoming_trace_and_becomes_the_parent() {
    // 0 %: the incoming `sampled` flag decides.
    let t = tracer(0.0);
    let req = request(&[
        ("traceparent", &format!("00-{TRACE}-{SPAN}-01")),
        ("tracestate", "vendor=x"),
    ]);
    let span = t.start(Kind::Client, &req, &local()).unwrap();
    assert_eq!(span.trace_id().to_string(), TRACE);
    assert_eq!(span.parent_span_id().unwrap().to_string(), SPAN);
    assert_ne!(span.span_id().to_string(), SPAN);
    assert!(span.is_sampled());
    let mut out = req.headers().clone();
    span.inject(&mut out);
    assert_eq!(
        out["traceparent"],
        format!("00-{TRACE}-{}-01", span.span_id()).as_str()
    );
    assert_eq!(out["tracestate"], "vendor=x");
}

#[tokio::test]
async fn unsampled_requests_carry_the_decision() {
    let t = tracer(100.0);
    let req = request(&[("traceparent", &format!("00-{TRACE}-{SPAN}-00"))]);
    let span = t.start(Kind::Server, &req, &local()).unwrap();
    assert!(!span.is_sampled(), "the parent said no");
    let mut out = req.headers().clone();
    span.inject(&mut out);
    assert!(out["traceparent"].to_str().unwrap().ends_with("-00"));

    let t = tracer(0.0);
    let req = request(&[]);
    let span = t.start(Kind::Client, &req, &local()).unwrap();
    assert!(!span.is_sampled());
    assert!(span.parent_span_id().is_none());
    let mut out = http::HeaderMap::new();
    span.inject(&mut out);
    let tp = out["traceparent"].to_str().unwrap();
    assert!(tp.starts_with(&format!("00-{}-", span.trace_id())), "{tp}");
    assert!(tp.ends_with("-00"), "{tp}");
    // Nothing recorded, nothing counted.
    span.finish(&outcome(200));
    assert_eq!(t.metrics().unwrap().dropped(), 0);
}

#[tokio::test]
async fn new_traces_follow_the_percentage() {
    let all = tracer(100.0);
    let span = all.start(Kind::Client, &request(&[]), &local()).unwrap();
    assert!(span.is_sampled());
    assert!(span.trace_id().is_valid());
    // A B3 context that defers the decision is sampled like a new trace.
    let req = request(&[("x-b3-traceid", TRACE), ("x-b3-spanid", SPAN)]);
    let span = all.start(Kind::Client, &req, &local()).unwrap();
    assert!(span.is_sampled());
    assert_eq!(span.trace_id().to_string(), TRACE);
    let none = tracer(0.0);
    assert!(
        !none
            .start(Kind::Client, &req, &local())
            .unwrap()
            .is_sampled()
    );
    // `b3: 0` without ids: a new trace, not sampled even at 100 %.
    let span = all
        .start(Kind::Client, &request(&[("b3", "0")]), &local())
        .unwrap();
    assert!(!span.is_sampled());
}

#[tokio::test]
async fn an_invalid_traceparent_starts_a_new_trace_and_drops_tracestate() {
    let t = tracer(100.0);
    let req = request(&[
        (
            "traceparent",
            &format!("00-{}-{SPAN}-01", TRACE.to_uppercase()),
        ),
        ("tracestate", "vendor=x"),
    ]);
    let span = t.start(Kind::Server, &req, &local()).unwrap();
    assert_ne!(span.trace_id().to_string(), TRACE);
    assert!(span.parent_span_id().is_none());
    let mut out = req.headers().clone();
    span.inject(&mut out);
    assert!(!out.contains_key("tracestate"));
}

fn outcome(status_code: u16) -> Outcome {
    Outcome {
        duration: Duration::from_millis(3),
        status_code,
        grpc_status: None,
        response_flags: ResponseFlag::None,
        request_bytes: 0,
        response_bytes: 0,
    }
}

#[tokio::test]
async fn a_full_queue_drops_and_counts() {
    let collector: Collector = "http://127.0.0.1:1".parse().unwrap();
    let settings = export::Settings {
        capacity: 1,
        ..export::Settings::default()
    };
    let t = Tracer::spawn_with(
        &collector,
        Sampler::new(100.0).unwrap(),
        Metrics::default(),
        settings,
    );
    // A current-thread runtime: the exporter does not run until this test yields, so the
    // queue (one slot) is full after the first span.
    for _ in 0..3 {
        let span = t.start(Kind::Client, &request(&[]), &local()).unwrap();
        span.finish(&outcome(200));
    }
    assert_eq!(t.metrics().unwrap().dropped(), 2);
}

#[test]
fn collector_urls() {
    let c: Collector = "http://otel-collector.observability:4317".parse().unwrap();
    assert_eq!(c.to_string(), "http://otel-collector.observability:4317");
    assert_eq!(
        c.origin().to_string(),
        "http://otel-collector.observability:4317/"
    );
    let c: Collector = "http://10.0.0.1".parse().unwrap();
    assert_eq!(c.to_string(), "http://10.0.0.1:4317");
    let c: Collector = "http://[::1]:5317/".parse().unwrap();
    assert_eq!(c.to_string(), "http://[::1]:5317");
    for (bad, why) in [
        ("", "not a URL"),
        ("collector:4317", "scheme"),
        ("https://collector:4317", "TLS"),
        ("grpc://collector:4317", "scheme"),
        ("http://collector:4317/v1/traces", "no path"),
        ("http://user:pw@collector:4317", "credentials"),
        ("/just/a/path", "scheme"),
    ] {
        let err = bad.parse::<Collector>().unwrap_err().to_string();
        assert!(err.contains(why), "{bad}: {err}");
        assert!(err.contains("--trace-collector"), "{err}");
    }
}

#[test]
fn counters_are_exposed() {
    let mut registry = Registry::default();
    let m = Metrics::register(&mut registry);
    m.dropped.inc_by(3);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(text.contains("mesh_trace_spans_dropped_total 3"), "{text}");
    assert!(text.contains("mesh_trace_spans_exported_total 0"), "{text}");
}
