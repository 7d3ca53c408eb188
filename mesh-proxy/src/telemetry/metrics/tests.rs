use std::{collections::BTreeMap, process::Command};

use super::{export::openmetrics_to_text, *};

/// `name{labels} value` lines of an exposition, parsed naively (no escaped quotes).
fn samples(body: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            if n != name {
                return None;
            }
            let labels = labels
                .split("\",")
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once("=\"").expect("label");
                    (k.to_owned(), v.trim_end_matches('"').to_owned())
                })
                .collect();
            Some((labels, value.parse().ok()?))
        })
        .collect()
}

/// The value of the one sample of `name` whose labels include `want`.
fn value(body: &str, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<_> = samples(body, name)
        .into_iter()
        .filter(|(labels, _)| {
            want.iter()
                .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert!(matching.len() <= 1, "{name} {want:?}: {matching:?}");
    matching.first().map(|(_, v)| *v)
}

fn labels() -> RequestLabels {
    RequestLabels {
        source_workload: "productpage-v1".into(),
        source_workload_namespace: "default".into(),
        source_principal: "spiffe://cluster.local/ns/default/sa/productpage".into(),
        source_app: "productpage".into(),
        source_version: "v1".into(),
        destination_workload: "reviews-v2".into(),
        destination_workload_namespace: "default".into(),
        destination_service: "reviews.default.svc.cluster.local".into(),
        destination_service_name: "reviews".into(),
        destination_app: "reviews".into(),
        destination_version: "v2".into(),
        response_code: 200,
        connection_security_policy: SecurityPolicy::MutualTls,
        ..RequestLabels::new(Reporter::Source)
    }
}

fn setup(max: usize) -> (Metrics, SharedRegistry) {
    let mut registry = Registry::default();
    let metrics = Metrics::with_max_series(&mut registry, max);
    (metrics, SharedRegistry::new(registry))
}

const GOLDEN_LABELS: [&str; 17] = [
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "destination_workload",
    "destination_workload_namespace",
    "destination_service",
    "destination_service_name",
    "destination_app",
    "destination_version",
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
];

#[test]
fn one_request_shows_in_every_request_family_with_the_golden_labels() {
    let (metrics, registry) = setup(DEFAULT_MAX_SERIES);
    metrics.record_request(&labels(), Duration::from_micros(3_250), 120, 4_000, 0, 0);
    let om = registry.encode(Format::OpenMetrics);

    assert!(om.contains("# TYPE mesh_requests counter\n"), "{om}");
    let (set, n) = samples(&om, "mesh_requests_total").pop().expect("a sample");
    assert_eq!(n, 1.0);
    let names: Vec<&str> = set.keys().map(String::as_str).collect();
    let mut golden = GOLDEN_LABELS.to_vec();
    golden.sort_unstable();
    assert_eq!(names, golden);
    assert_eq!(set["reporter"], "source");
    assert_eq!(set["response_code"], "200");
    assert_eq!(set["grpc_response_status"], "");
    assert_eq!(set["response_flags"], "-");
    assert_eq!(set["request_protocol"], "http");
    assert_eq!(set["connection_security_policy"], "mutual_tls");
    assert_eq!(
        set["source_principal"],
        "spiffe://cluster.local/ns/default/sa/productpage"
    );

    let d = "mesh_request_duration_milliseconds";
    assert!(om.contains(&format!("# TYPE {d} histogram\n")));
    assert_eq!(value(&om, &format!("{d}_count"), &[]), Some(1.0));
    assert_eq!(value(&om, &format!("{d}_sum"), &[]), Some(3.25));
    assert_eq!(
        value(&om, &format!("{d}_bucket"), &[("le", "1.0")]),
        Some(0.0)
    );
    assert_eq!(
        value(&om, &format!("{d}_bucket"), &[("le", "5.0")]),
        Some(1.0)
    );
    assert_eq!(
        value(&om, &format!("{d}_bucket"), &[("le", "+Inf")]),
        Some(1.0)
    );
    assert_eq!(
        value(&om, "mesh_request_bytes_bucket", &[("le", "100.0")]),
        Some(0.0)
    );
    assert_eq!(
        value(&om, "mesh_request_bytes_bucket", &[("le", "1000.0")]),
        Some(1.0)
    );
    assert_eq!(value(&om, "mesh_request_bytes_sum", &[]), Some(120.0));
    assert_eq!(value(&om, "mesh_response_bytes_sum", &[]), Some(4000.0));
    // Istio's buckets, all of them.
    assert_eq!(samples(&om, &format!("{d}_bucket")).len(), 20);
    assert_eq!(samples(&om, "mesh_response_bytes_bucket").len(), 9);
    // Message counters are for gRPC only.
    assert!(samples(&om, "mesh_request_messages_total").is_empty());
    assert!(om.ends_with("# EOF\n"));
}

#[test]
fn grpc_requests_count_messages_and_status() {
    let (metrics, registry) = setup(DEFAULT_MAX_SERIES);
    let l = RequestLabels {
        request_protocol: RequestProtocol::Grpc,
        grpc_response_status: Some(14),
        response_flags: ResponseFlag::NoHealthyUpstream,
        response_code: 200,
        ..RequestLabels::new(Reporter::Destination)
    };
    metrics.record_request(&l, Duration::from_millis(2), 10, 0, 1, 3);
    metrics.record_request(&l, Duration::from_millis(2), 10, 0, 2, 0);
    let om = registry.encode(Format::OpenMetrics);
    let want = [
        ("reporter", "destination"),
        ("request_protocol", "grpc"),
        ("grpc_response_status", "14"),
        ("response_flags", "UH"),
        ("source_workload", "unknown"),
    ];
    assert_eq!(value(&om, "mesh_requests_total", &want), Some(2.0));
    assert_eq!(value(&om, "mesh_request_messages_total", &want), Some(3.0));
    assert_eq!(value(&om, "mesh_response_messages_total", &want), Some(3.0));
}

#[test]
fn tcp_and_proxy_level_metrics() {
    let (metrics, registry) = setup(DEFAULT_MAX_SERIES);
    let l = TcpLabels {
        destination_service: "db.default.svc.cluster.local".into(),
        connection_security_policy: SecurityPolicy::None,
        ..TcpLabels::new(Reporter::Source)
    };
    metrics.tcp_opened(&l);
    metrics.tcp_opened(&l);
    metrics.tcp_bytes(&l, 10, 20);
    metrics.tcp_closed(&l, 5, 7);
    metrics.set_ready(true);
    let guard = metrics.track_connection(Direction::Inbound);
    let _other = metrics.track_connection(Direction::Inbound);
    drop(guard);
    metrics.config_applied("v42");
    metrics.access_log_dropped().inc_by(3);

    let om = registry.encode(Format::OpenMetrics);
    let want = [("destination_service", "db.default.svc.cluster.local")];
    assert_eq!(
        value(&om, "mesh_tcp_connections_opened_total", &want),
        Some(2.0)
    );
    assert_eq!(
        value(&om, "mesh_tcp_connections_closed_total", &want),
        Some(1.0)
    );
    assert_eq!(value(&om, "mesh_tcp_sent_bytes_total", &want), Some(15.0));
    assert_eq!(
        value(&om, "mesh_tcp_received_bytes_total", &want),
        Some(27.0)
    );
    let (set, _) = samples(&om, "mesh_tcp_sent_bytes_total").pop().unwrap();
    assert_eq!(set.len(), 14, "{set:?}");
    assert_eq!(set["connection_security_policy"], "none");
    assert_eq!(set["response_flags"], "-");

    assert_eq!(value(&om, "mesh_proxy_ready", &[]), Some(1.0));
    let inbound = [("direction", "inbound")];
    assert_eq!(
        value(&om, "mesh_proxy_open_connections", &inbound),
        Some(1.0)
    );
    let outbound = [("direction", "outbound")];
    assert_eq!(
        value(&om, "mesh_proxy_open_connections", &outbound),
        Some(0.0)
    );
    let v42 = [("version", "v42")];
    assert_eq!(value(&om, "mesh_proxy_config_info", &v42), Some(1.0));
    assert_eq!(
        value(&om, "mesh_proxy_config_updates_total", &[]),
        Some(1.0)
    );
    let at = value(&om, "mesh_proxy_config_last_update_timestamp_seconds", &[]).unwrap();
    assert!(at > 1.6e9, "{at}");
    assert_eq!(value(&om, "mesh_access_log_dropped_total", &[]), Some(3.0));
    assert_eq!(
        value(&om, "mesh_telemetry_overflow_total", &[("family", "tcp")]),
        Some(0.0)
    );
}

#[test]
fn cardinality_is_capped_with_an_overflow_series() {
    let (metrics, registry) = setup(3);
    for code in 200..210 {
        let l = RequestLabels {
            response_code: code,
            ..labels()
        };
        metrics.record_request(&l, Duration::from_millis(1), 1, 1, 0, 0);
    }
    // A known label set keeps counting after the cap.
    let first = RequestLabels {
        response_code: 200,
        ..labels()
    };
    metrics.record_request(&first, Duration::from_millis(1), 1, 1, 0, 0);
    // The other reporter gets its own overflow series.
    let dest = RequestLabels {
        reporter: Reporter::Destination,
        ..labels()
    };
    metrics.record_request(&dest, Duration::from_millis(1), 1, 1, 0, 0);
    assert_eq!(metrics.request_series(), 3);

    let om = registry.encode(Format::OpenMetrics);
    let all = samples(&om, "mesh_requests_total");
    assert_eq!(all.len(), 5, "3 label sets + 2 overflow series: {all:?}");
    assert_eq!(
        value(&om, "mesh_requests_total", &[("response_code", "200")]),
        Some(2.0)
    );
    let overflow = [("reporter", "source"), ("response_code", "overflow")];
    assert_eq!(value(&om, "mesh_requests_total", &overflow), Some(7.0));
    let dest_overflow = [("reporter", "destination"), ("source_app", "overflow")];
    assert_eq!(value(&om, "mesh_requests_total", &dest_overflow), Some(1.0));
    assert_eq!(
        value(&om, "mesh_request_duration_milliseconds_count", &overflow),
        Some(7.0)
    );
    assert_eq!(
        value(
            &om,
            "mesh_telemetry_overflow_total",
            &[("family", "request")]
        ),
        Some(8.0)
    );
    // The overflow series has exactly the golden label names, all "overflow" but reporter.
    let (set, _) = all
        .iter()
        .find(|(l, _)| l["response_code"] == "overflow")
        .unwrap();
    let mut golden = GOLDEN_LABELS.to_vec();
    golden.sort_unstable();
    assert_eq!(set.keys().map(String::as_str).collect::<Vec<_>>(), golden);
    assert!(set.iter().all(|(k, v)| k == "reporter" || v == "overflow"));

    // TCP has its own cap, with the TCP label names.
    for i in 0..5 {
        let l = TcpLabels {
            destination_service: format!("svc-{i}").into(),
            ..TcpLabels::new(Reporter::Source)
        };
        metrics.tcp_opened(&l);
    }
    assert_eq!(metrics.tcp_series(), 3);
    let om = registry.encode(Format::OpenMetrics);
    let tcp = samples(&om, "mesh_tcp_connections_opened_total");
    let (set, n) = tcp
        .iter()
        .find(|(l, _)| l["destination_service"] == "overflow")
        .unwrap();
    assert_eq!(*n, 2.0);
    assert_eq!(set.len(), 14);
    assert!(set.contains_key("connection_security_policy"));
}

#[test]
fn text_format_renames_counters_and_drops_eof() {
    let (metrics, registry) = setup(DEFAULT_MAX_SERIES);
    metrics.record_request(&labels(), Duration::from_millis(1), 1, 1, 0, 0);
    let text = registry.encode(Format::Text);
    assert!(text.contains("# HELP mesh_requests_total Requests handled by the proxy.\n"));
    assert!(text.contains("# TYPE mesh_requests_total counter\n"));
    assert!(text.contains("# TYPE mesh_request_duration_milliseconds histogram\n"));
    assert!(text.contains("# TYPE mesh_proxy_ready gauge\n"));
    assert!(!text.contains("# EOF"));
    assert!(!text.contains("# TYPE mesh_requests counter"));
    assert_eq!(value(&text, "mesh_requests_total", &[]), Some(1.0));
    // Samples are unchanged.
    let om = registry.encode(Format::OpenMetrics);
    let sample_lines = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_owned)
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(sample_lines(&om), sample_lines(&text));
}

#[test]
fn openmetrics_to_text_handles_edge_cases() {
    let om = "# HELP a_total Already suffixed.\n# TYPE a_total counter\na_total 1\n\
              # HELP b Info.\n# TYPE b info\nb_info{x=\"y\"} 1\n\
              # HELP c Unit.\n# TYPE c_seconds gauge\n# UNIT c_seconds seconds\nc_seconds 2\n# EOF\n";
    let text = openmetrics_to_text(om);
    assert_eq!(
        text,
        "# HELP a_total Already suffixed.\n# TYPE a_total counter\na_total 1\n\
         # HELP b Info.\n# TYPE b untyped\nb_info{x=\"y\"} 1\n\
         # HELP c Unit.\n# TYPE c_seconds gauge\nc_seconds 2\n"
    );
}

#[test]
fn negotiation_prefers_openmetrics_only_when_asked() {
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
    assert_eq!(Format::negotiate(None), Format::Text);
    assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
    assert_eq!(Format::negotiate(Some("text/plain")), Format::Text);
    assert_eq!(
        Format::negotiate(Some("application/openmetrics-text; q=0, text/plain")),
        Format::Text
    );
    assert_eq!(
        Format::OpenMetrics.content_type(),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert_eq!(
        Format::Text.content_type(),
        "text/plain; version=0.0.4; charset=utf-8"
    );
}

#[test]
fn response_flags_have_envoy_short_forms() {
    let forms: Vec<&str> = ResponseFlag::ALL.iter().map(|f| f.as_str()).collect();
    assert_eq!(
        forms,
        [
            "-", "NR", "NC", "UH", "UF", "URX", "UT", "UO", "UC", "UPE", "DC", "DPE", "SI", "FI",
            "DI", "RL"
        ]
    );
    assert_eq!(ResponseFlag::default().to_string(), "-");
}

/// `promtool check metrics` (from Debian's `prometheus` package) accepts the text format,
/// including every lint (counters end in `_total`, help text present, no bad names).
#[test]
fn promtool_accepts_the_text_exposition() {
    let (metrics, registry) = setup(2);
    for code in [200, 503, 504] {
        let l = RequestLabels {
            response_code: code,
            ..labels()
        };
        metrics.record_request(&l, Duration::from_millis(7), 10, 10, 0, 0);
    }
    let grpc = RequestLabels {
        request_protocol: RequestProtocol::Grpc,
        ..labels()
    };
    metrics.record_request(&grpc, Duration::from_millis(7), 10, 10, 1, 1);
    metrics.tcp_opened(&TcpLabels::new(Reporter::Destination));
    metrics.config_applied("v1");
    let text = registry.encode(Format::Text);

    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if std::env::var("MESH_PROMTOOL").as_deref() == Ok("require") {
                panic!("promtool not found and MESH_PROMTOOL=require (apt-get install prometheus)");
            }
            eprintln!("SKIPPED: promtool not found (apt-get install prometheus to run this check)");
            return;
        }
        Err(e) => panic!("running promtool: {e}"),
    };
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Istio's name for the duration histogram is in milliseconds, against Prometheus's
    // base-unit advice; that one lint is expected, anything else fails.
    let allowed =
        "mesh_request_duration_milliseconds use base unit \"seconds\" instead of \"milliseconds\"";
    let problems: Vec<&str> = report
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != allowed)
        .collect();
    assert!(problems.is_empty(), "promtool: {problems:?}\n---\n{text}");
    // Exit code 3 means lint problems only (1 would be a parse error).
    assert!(
        out.status.success() || (out.status.code() == Some(3) && report.contains(allowed)),
        "promtool exited with {}: {report}",
        out.status
    );
}

#[test]
fn concurrent_recording_loses_nothing_and_respects_the_cap() {
    let (metrics, registry) = setup(100);
    std::thread::scope(|s| {
        for t in 0..8u16 {
            let metrics = metrics.clone();
            s.spawn(move || {
                for i in 0..500u16 {
                    // Threads share half of their label sets.
                    let code = if i % 2 == 0 { i } else { t * 1000 + i };
                    let l = RequestLabels {
                        response_code: code,
                        ..labels()
                    };
                    metrics.record_request(&l, Duration::from_millis(1), 1, 1, 0, 0);
                }
            });
        }
    });
    assert_eq!(metrics.request_series(), 100);
    let om = registry.encode(Format::OpenMetrics);
    let all = samples(&om, "mesh_requests_total");
    assert_eq!(all.len(), 101, "100 label sets and the overflow series");
    let total: f64 = all.iter().map(|(_, v)| v).sum();
    assert_eq!(total, 8.0 * 500.0);
    let overflowed = value(
        &om,
        "mesh_telemetry_overflow_total",
        &[("family", "request")],
    );
    let in_overflow = value(&om, "mesh_requests_total", &[("response_code", "overflow")]);
    assert_eq!(overflowed, in_overflow);
}
