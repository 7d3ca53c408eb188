use super::*;

const TEXT: &str = r#"# HELP mesh_requests Requests.
# TYPE mesh_requests counter
mesh_requests_total{reporter="destination",destination_service="frontend.default.svc.cluster.local",destination_workload="frontend",destination_app="frontend",response_code="200",connection_security_policy="mutual_tls"} 90
mesh_requests_total{reporter="destination",destination_service="frontend.default.svc.cluster.local",destination_workload="frontend",destination_app="frontend",response_code="503",connection_security_policy="none"} 10
mesh_requests_total{reporter="source",destination_service="cartservice.default.svc.cluster.local",destination_workload="cartservice",destination_app="cartservice",response_code="200",connection_security_policy="mutual_tls"} 7
mesh_request_duration_milliseconds_bucket{reporter="destination",destination_service="frontend.default.svc.cluster.local",destination_workload="frontend",destination_app="frontend",le="1.0"} 50
mesh_request_duration_milliseconds_bucket{reporter="destination",destination_service="frontend.default.svc.cluster.local",destination_workload="frontend",destination_app="frontend",le="10.0"} 100
mesh_request_duration_milliseconds_bucket{reporter="destination",destination_service="frontend.default.svc.cluster.local",destination_workload="frontend",destination_app="frontend",le="+Inf"} 100
weird_line_without_value
escaped{a="x\"y\\z",b="line\nbreak"} 1 1700000000
# EOF
"#;

#[test]
fn parse_reads_names_labels_values_and_escapes_and_skips_junk() {
    let samples = parse(TEXT);
    assert_eq!(samples.len(), 7, "{samples:#?}");
    assert_eq!(samples[0].name, REQUESTS);
    assert_eq!(samples[0].label("response_code"), Some("200"));
    assert_eq!(samples[0].value, 90.0);
    assert_eq!(samples[5].label("le"), Some("+Inf"));
    let escaped = &samples[6];
    assert_eq!(escaped.label("a"), Some("x\"y\\z"));
    assert_eq!(escaped.label("b"), Some("line\nbreak"));
    assert_eq!(escaped.value, 1.0);
}

#[test]
fn snapshot_keeps_destination_series_only() {
    let mut snap = Snapshot::default();
    snap.add(&parse(TEXT));
    assert_eq!(snap.workloads.len(), 1, "{snap:#?}");
    let key = snap.workloads.keys().next().unwrap();
    assert_eq!(
        (key.service.as_str(), key.workload.as_str()),
        ("frontend", "frontend")
    );
    let c = snap.workloads.values().next().unwrap();
    assert_eq!((c.requests, c.successes, c.mutual_tls), (100.0, 90.0, 90.0));
    assert_eq!(
        c.buckets,
        vec![(1.0, 50.0), (10.0, 100.0), (f64::INFINITY, 100.0)]
    );
}

#[test]
fn quantile_interpolates_within_buckets_like_prometheus() {
    let b = [(1.0, 50.0), (10.0, 100.0), (f64::INFINITY, 100.0)];
    assert_eq!(quantile(&b, 0.5), Some(1.0));
    // Rank 99 is 49 of the 50 observations between 1 and 10 ms.
    let p99 = quantile(&b, 0.99).unwrap();
    assert!((p99 - (1.0 + 9.0 * 49.0 / 50.0)).abs() < 1e-9, "{p99}");
    // Everything above the last finite bound: that bound.
    assert_eq!(
        quantile(&[(5.0, 0.0), (f64::INFINITY, 3.0)], 0.5),
        Some(5.0)
    );
    assert_eq!(quantile(&[(5.0, 0.0), (f64::INFINITY, 0.0)], 0.5), None);
    assert_eq!(quantile(&[], 0.5), None);
}
