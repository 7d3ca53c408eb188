//! DestinationRule translation and selection.

use std::{num::NonZeroU32, time::Duration};

use mesh_api::model::{ConnectionPool, LoadBalancer, OutlierDetection, Percent, TlsMode};

use super::*;

fn key(port: u16, subset: Option<&str>) -> ClusterKey {
    let k = ClusterKey::new(FQDN, port);
    match subset {
        Some(s) => k.with_subset(s),
        None => k,
    }
}

fn reviews_two_ports(dr: &str) -> Index {
    let mut docs = bookinfo_reviews();
    docs[0] = mk_service(
        "reviews",
        "default",
        "10.96.0.10",
        &[(9080, "http"), (9090, "grpc")],
    );
    if !dr.is_empty() {
        docs.push(dr.to_owned());
    }
    mk_index(&docs)
}

#[test]
fn every_service_port_gets_a_default_cluster() {
    let index = reviews_two_ports("");
    let spec = proxy(&index, &mk_client("default"));
    assert_eq!(spec.clusters.len(), 2);
    for port in [9080, 9090] {
        let c = cluster(&spec, &key(port, None));
        assert!(c.subset_labels.is_empty());
        assert_eq!(c.load_balancer, LoadBalancer::P2cEwma);
        assert_eq!(c.connection_pool, ConnectionPool::default());
        assert_eq!(c.outlier_detection, None);
        assert_eq!(c.tls, TlsMode::Auto);
    }
}

#[test]
fn traffic_policy_port_level_settings_and_subset_merging() {
    let index = reviews_two_ports(
        r#"
apiVersion: networking.mesh.dev/v1alpha1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 2s, idleTimeout: 5m}
      http: {http1MaxPendingRequests: 10, http2MaxRequests: 1000, maxRequestsPerConnection: 1}
    outlierDetection: {consecutive5xxErrors: 7, interval: 5s, baseEjectionTime: 1m, maxEjectionPercent: 50}
    tls: {mode: DISABLE}
    portLevelSettings:
    - port: {number: 9090}
      loadBalancer: {simple: LEAST_REQUEST}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {simple: RANDOM}
      portLevelSettings:
      - port: {number: 9090}
        tls: {mode: ISTIO_MUTUAL}
"#,
    );
    assert!(index.warnings().is_empty(), "{:#?}", warnings(&index));
    let spec = proxy(&index, &mk_client("default"));
    assert_eq!(spec.clusters.len(), 6);

    let base = cluster(&spec, &key(9080, None));
    assert_eq!(base.load_balancer, LoadBalancer::RoundRobin);
    assert_eq!(
        base.connection_pool,
        ConnectionPool {
            max_connections: NonZeroU32::new(100),
            max_pending: NonZeroU32::new(10),
            max_requests: NonZeroU32::new(1000),
            max_requests_per_connection: NonZeroU32::new(1),
            connect_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(300),
        }
    );
    assert_eq!(
        base.outlier_detection,
        Some(OutlierDetection {
            consecutive_5xx: 7,
            consecutive_gateway_errors: 0,
            interval: Duration::from_secs(5),
            base_ejection_time: Duration::from_secs(60),
            max_ejection_percent: Percent::new(50.0).unwrap(),
        })
    );
    assert_eq!(base.tls, TlsMode::Disable);

    // Port-level settings replace all four settings: the rest fall back to defaults.
    let p9090 = cluster(&spec, &key(9090, None));
    assert_eq!(p9090.load_balancer, LoadBalancer::LeastRequest);
    assert_eq!(p9090.connection_pool, ConnectionPool::default());
    assert_eq!(p9090.outlier_detection, None);
    assert_eq!(p9090.tls, TlsMode::Auto);

    // A subset without a policy inherits the rule's (per port).
    let v1 = cluster(&spec, &key(9080, Some("v1")));
    assert_eq!(v1.subset_labels, [("version".into(), "v1".into())].into());
    assert_eq!(
        (v1.load_balancer, v1.tls, v1.connection_pool.max_connections),
        (
            LoadBalancer::RoundRobin,
            TlsMode::Disable,
            NonZeroU32::new(100)
        )
    );
    assert_eq!(
        cluster(&spec, &key(9090, Some("v1"))).load_balancer,
        LoadBalancer::LeastRequest
    );

    // A subset's policy overrides field by field...
    let v2 = cluster(&spec, &key(9080, Some("v2")));
    assert_eq!(v2.load_balancer, LoadBalancer::Random);
    assert_eq!(v2.tls, TlsMode::Disable);
    assert_eq!(v2.connection_pool.max_connections, NonZeroU32::new(100));
    // ...and its port-level entry replaces everything on that port.
    let v2_9090 = cluster(&spec, &key(9090, Some("v2")));
    assert_eq!(v2_9090.tls, TlsMode::IstioMutual);
    assert_eq!(v2_9090.load_balancer, LoadBalancer::P2cEwma);
    assert_eq!(v2_9090.outlier_detection, None);
}

#[test]
fn outlier_detection_defaults_are_istios() {
    let index = reviews_two_ports(
        r#"
apiVersion: networking.mesh.dev/v1alpha1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews.default.svc.cluster.local
  trafficPolicy:
    outlierDetection: {consecutiveGatewayErrors: 3}
"#,
    );
    let spec = proxy(&index, &mk_client("default"));
    let od = cluster(&spec, &key(9080, None))
        .outlier_detection
        .clone()
        .unwrap();
    assert_eq!(
        od,
        OutlierDetection {
            consecutive_5xx: 5,
            consecutive_gateway_errors: 3,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_percent: Percent::new(10.0).unwrap(),
        }
    );
}

#[test]
fn unsupported_settings_warn_and_tls_origination_fails_closed() {
    let index = reviews_two_ports(
        r#"
apiVersion: networking.mesh.dev/v1alpha1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: PASSTHROUGH}
    connectionPool:
      tcp: {maxConnectionDuration: 1h, connectTimeout: 0s}
      http: {maxRetries: 3}
    tls: {mode: SIMPLE, sni: reviews.example}
"#,
    );
    for part in [
        "PASSTHROUGH",
        "maxConnectionDuration",
        "maxRetries",
        "connectTimeout: must not be zero",
        "TLS origination",
        "sni",
    ] {
        assert_warned(&index, &["DestinationRule default/reviews", part]);
    }
    let spec = proxy(&index, &mk_client("default"));
    let c = cluster(&spec, &key(9080, None));
    assert_eq!(c.tls, TlsMode::IstioMutual);
    assert_eq!(c.load_balancer, LoadBalancer::P2cEwma);
    assert_eq!(c.connection_pool.connect_timeout, Duration::from_secs(10));
}

fn dr(name: &str, ns: &str, host: &str, lb: &str, export: &str) -> String {
    format!(
        r#"
apiVersion: networking.mesh.dev/v1alpha1
kind: DestinationRule
metadata: {{name: {name}, namespace: {ns}}}
spec:
  host: {host}
  exportTo: [{export}]
  trafficPolicy: {{loadBalancer: {{simple: {lb}}}}}
"#
    )
}

#[test]
fn destination_rule_precedence_proxy_namespace_then_service_then_root() {
    let mut docs = bookinfo_reviews();
    docs.push(dr("root", "mesh-system", FQDN, "RANDOM", "\"*\""));
    docs.push(dr("svc", "default", "reviews", "ROUND_ROBIN", "\"*\""));
    docs.push(dr("client", "frontend", FQDN, "LEAST_REQUEST", "\".\""));
    let index = mk_index(&docs);
    let lb = |ns: &str| {
        let spec = proxy(&index, &mk_client(ns));
        cluster(&spec, &key(9080, None)).load_balancer
    };
    assert_eq!(
        lb("frontend"),
        LoadBalancer::LeastRequest,
        "proxy's namespace first"
    );
    assert_eq!(
        lb("default"),
        LoadBalancer::RoundRobin,
        "then the service's"
    );
    assert_eq!(lb("backend"), LoadBalancer::RoundRobin);

    // Without the service's rule, the root namespace's applies.
    let mut docs = bookinfo_reviews();
    docs.push(dr("root", "mesh-system", FQDN, "RANDOM", "\"*\""));
    // A rule in an unrelated namespace is never used for others.
    docs.push(dr("other", "other", FQDN, "LEAST_REQUEST", "\"*\""));
    let index = mk_index(&docs);
    let spec = proxy(&index, &mk_client("backend"));
    assert_eq!(
        cluster(&spec, &key(9080, None)).load_balancer,
        LoadBalancer::Random
    );
}

#[test]
fn destination_rule_export_to_is_honoured() {
    let mut docs = bookinfo_reviews();
    docs.push(dr("private", "default", "reviews", "RANDOM", "\".\""));
    docs.push(dr("for-team", "mesh-system", FQDN, "LEAST_REQUEST", "team"));
    let index = mk_index(&docs);
    let lb = |ns: &str| {
        let spec = proxy(&index, &mk_client(ns));
        cluster(&spec, &key(9080, None)).load_balancer
    };
    assert_eq!(lb("default"), LoadBalancer::Random);
    assert_eq!(lb("team"), LoadBalancer::LeastRequest);
    assert_eq!(lb("else"), LoadBalancer::P2cEwma);
}

#[test]
fn duplicate_and_dangling_destination_rules_warn() {
    let mut docs = bookinfo_reviews();
    docs.push(dr("b", "default", "reviews", "RANDOM", "\"*\""));
    docs.push(dr("a", "default", "reviews", "ROUND_ROBIN", "\"*\""));
    docs.push(dr("ghost", "default", "ghost", "ROUND_ROBIN", "\"*\""));
    let index = mk_index(&docs);
    assert_warned(
        &index,
        &[
            "DestinationRule default/b",
            "DestinationRule default/a",
            "takes precedence",
        ],
    );
    assert_warned(
        &index,
        &["DestinationRule default/ghost", "not a known service"],
    );
    let spec = proxy(&index, &mk_client("default"));
    assert_eq!(
        cluster(&spec, &key(9080, None)).load_balancer,
        LoadBalancer::RoundRobin
    );
}
