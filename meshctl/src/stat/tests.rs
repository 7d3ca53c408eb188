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

fn requests(service: &str, workload: &str, n: u64) -> String {
    format!(
        "mesh_requests_total{{reporter=\"destination\",destination_service=\"{service}.default.svc.cluster.local\",destination_service_name=\"{service}\",destination_workload=\"{workload}\",destination_app=\"{service}\",response_code=\"200\",connection_security_policy=\"mutual_tls\"}} {n}\n"
    )
}

#[test]
fn share_is_each_workloads_part_of_its_services_requests() {
    let mut before = Snapshot::default();
    before.add(&parse(&requests("productcatalogservice", "pc-v1", 100)));
    let mut after = Snapshot::default();
    let text = [
        requests("productcatalogservice", "pc-v1", 100 + 270),
        requests("productcatalogservice", "pc-v2", 30),
        requests("cartservice", "cart-v1", 5),
        // A service with no traffic in the window has no share.
        requests("adservice", "ad-v1", 0),
    ]
    .concat();
    after.add(&parse(&text));
    let rows = rows(&before, &after, Duration::from_secs(3));
    let share = |w: &str| rows.iter().find(|r| r.key.workload == w).unwrap().share;
    assert_eq!(share("pc-v1"), Some(90.0));
    assert_eq!(share("pc-v2"), Some(10.0));
    assert_eq!(share("cart-v1"), Some(100.0));
    assert_eq!(share("ad-v1"), None);
    let text = table(&rows).render();
    assert!(
        text.contains("productcatalogservice   pc-v2      10.00   10.0%    100.0%"),
        "{text}"
    );
}

#[test]
fn rows_are_keyed_by_the_service_the_client_routed_to() {
    // The service name, not an address a client dialed; the app label when the service
    // name is an address or missing.
    let text = r#"mesh_requests_total{reporter="destination",destination_service_name="reviews",destination_workload="reviews-v1",destination_app="reviews-app",response_code="200"} 1
mesh_requests_total{reporter="destination",destination_service_name="10.0.0.7",destination_workload="ratings-v1",destination_app="ratings",response_code="200"} 1
mesh_requests_total{reporter="destination",destination_workload="details-v1",destination_app="details",response_code="200"} 1
"#;
    let mut snap = Snapshot::default();
    snap.add(&parse(text));
    let services: Vec<(&str, &str)> = snap
        .workloads
        .keys()
        .map(|k| (k.service.as_str(), k.workload.as_str()))
        .collect();
    assert_eq!(
        services,
        vec![
            ("details", "details-v1"),
            ("ratings", "ratings-v1"),
            ("reviews", "reviews-v1"),
        ]
    );
}

#[test]
fn share_divides_an_apps_requests_across_per_version_services() {
    // Gateway API canaries route to a Service per version: the services differ, the app
    // (canonical service) is the same.
    let series = |service: &str, workload: &str, n: u64| {
        format!(
            "mesh_requests_total{{reporter=\"destination\",destination_service_name=\"{service}\",destination_workload=\"{workload}\",destination_app=\"catalog\",response_code=\"200\"}} {n}\n"
        )
    };
    let mut after = Snapshot::default();
    after.add(&parse(
        &[
            series("catalog-v1", "pc-v1", 180),
            series("catalog-v2", "pc-v2", 20),
        ]
        .concat(),
    ));
    let rows = rows(&Snapshot::default(), &after, Duration::from_secs(1));
    let share = |w: &str| rows.iter().find(|r| r.key.workload == w).unwrap().share;
    assert_eq!(share("pc-v1"), Some(90.0));
    assert_eq!(share("pc-v2"), Some(10.0));
    assert_eq!(rows[0].key.service, "catalog-v1");
}
