//! VirtualService translation.

use std::time::Duration;

use mesh_api::model::{
    AbortError, HeaderMatch, HttpMatch, Percent, QueryParamMatch, RetryCondition, RetryOn,
    StringMatch, WeightedBackend,
};

use super::*;

fn key(host: &str, port: u16, subset: Option<&str>) -> ClusterKey {
    let k = ClusterKey::new(host, port);
    match subset {
        Some(s) => k.with_subset(s),
        None => k,
    }
}

fn canary() -> Vec<String> {
    let mut docs = bookinfo_reviews();
    docs.push(
        r#"
apiVersion: networking.mesh.dev/v1alpha1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 90
    - destination: {host: reviews, subset: v2}
      weight: 10
---
apiVersion: networking.mesh.dev/v1alpha1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"#
        .to_owned(),
    );
    docs
}

#[test]
fn canary_90_10_gives_a_weighted_route_and_subset_clusters() {
    let index = mk_index(&canary());
    assert!(index.warnings().is_empty(), "{:#?}", warnings(&index));
    let spec = proxy(&index, &mk_client("default"));

    let t = table(&spec, "reviews.default.svc.cluster.local:9080");
    assert_eq!(t.port, 9080);
    assert_eq!(
        t.hostnames,
        [
            FQDN,
            "reviews",
            "reviews.default",
            "reviews.default.svc",
            "10.96.0.10"
        ]
    );
    assert_eq!(t.http.len(), 1);
    assert!(t.http[0].matches.is_empty());
    let f = forward(&t.http[0].action);
    assert_eq!(
        f.backends,
        vec![
            WeightedBackend {
                cluster: key(FQDN, 9080, Some("v1")),
                weight: 90
            },
            WeightedBackend {
                cluster: key(FQDN, 9080, Some("v2")),
                weight: 10
            },
        ]
    );
    assert_eq!(f.retry, None);
    assert_eq!(f.timeout, None);

    let keys: Vec<String> = spec.clusters.iter().map(|c| c.key.to_string()).collect();
    assert_eq!(
        keys,
        [
            "outbound|9080||reviews.default.svc.cluster.local",
            "outbound|9080|v1|reviews.default.svc.cluster.local",
            "outbound|9080|v2|reviews.default.svc.cluster.local",
        ]
    );
    let v2 = cluster(&spec, &key(FQDN, 9080, Some("v2")));
    assert_eq!(v2.subset_labels, [("version".into(), "v2".into())].into());

    // The proxy resolves the table by any of its names and the subset to its endpoints.
    let name = t.name.clone();
    let config = ProxyConfig::new(spec).unwrap();
    assert_eq!(config.route_table("reviews:9080", 9080).unwrap().name, name);
    assert_eq!(config.route_table("10.96.0.10", 9080).unwrap().name, name);
    let v2 = config.cluster(&key(FQDN, 9080, Some("v2"))).unwrap();
    let eps: Vec<_> = config
        .cluster_endpoints(v2)
        .map(|e| e.workload.name.as_str())
        .collect();
    assert_eq!(eps, ["reviews-v2"]);
}

#[test]
fn short_name_is_only_a_route_host_in_the_services_namespace() {
    let index = mk_index(&canary());
    let spec = proxy(&index, &mk_client("other"));
    let t = table(&spec, "reviews.default.svc.cluster.local:9080");
    assert!(
        !t.hostnames.iter().any(|h| h == "reviews"),
        "{:?}",
        t.hostnames
    );
    assert!(t.hostnames.iter().any(|h| h == "reviews.default"));
}

fn vs_with(http: &str) -> Index {
    let mut docs = bookinfo_reviews();
    docs.push(mk_service(
        "ratings",
        "default",
        "10.96.0.11",
        &[(9080, "http")],
    ));
    docs.push(mk_service(
        "multi",
        "default",
        "10.96.0.12",
        &[(80, "http"), (81, "http-alt")],
    ));
    docs.push(format!(
        r#"
apiVersion: networking.mesh.dev/v1alpha1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  http:
{http}
"#
    ));
    mk_index(&docs)
}

fn first_route(index: &Index) -> mesh_api::model::HttpRoute {
    let spec = proxy(index, &mk_client("default"));
    table(&spec, "reviews.default.svc.cluster.local:9080").http[0].clone()
}

#[test]
fn timeout_and_retries() {
    let index = vs_with(
        r#"
  - timeout: 2s
    retries: {attempts: 3, perTryTimeout: 500ms, retryOn: "5xx,connect-failure,reset,retriable-4xx,retriable-status-codes"}
    route: [{destination: {host: reviews}}]
  - match: [{uri: {prefix: /b}}]
    retries: {attempts: 2}
    route: [{destination: {host: reviews}}]
  - match: [{uri: {prefix: /c}}]
    retries: {attempts: 0}
    timeout: 0s
    route: [{destination: {host: reviews}}]
  - match: [{uri: {prefix: /d}}]
    retries: {attempts: 1, retryOn: "503,500,418"}
    route: [{destination: {host: reviews}}]
"#,
    );
    let spec = proxy(&index, &mk_client("default"));
    let t = table(&spec, "reviews.default.svc.cluster.local:9080");
    let f = forward(&t.http[0].action);
    assert_eq!(f.timeout, Some(Duration::from_secs(2)));
    let r = f.retry.as_ref().unwrap();
    assert_eq!(r.attempts, 3);
    assert_eq!(r.per_try_timeout, Some(Duration::from_millis(500)));
    assert_eq!(
        r.retry_on,
        [
            RetryCondition::Status5xx,
            RetryCondition::ConnectFailure,
            RetryCondition::Reset,
            RetryCondition::Retriable4xx
        ]
        .into_iter()
        .collect::<RetryOn>()
    );
    // Without retryOn: the documented default.
    let r = forward(&t.http[1].action).retry.as_ref().unwrap();
    assert_eq!((r.attempts, r.retry_on), (2, RetryOn::DEFAULT));
    assert!(r.retry_on.contains(RetryCondition::ConnectFailure));
    assert!(r.retry_on.contains(RetryCondition::Unavailable));
    // attempts 0 disables retries; timeout 0s disables the timeout.
    let f = forward(&t.http[2].action);
    assert_eq!((f.retry.is_none(), f.timeout), (true, None));
    // Status codes map to the nearest condition, with a warning.
    let r = forward(&t.http[3].action).retry.as_ref().unwrap();
    assert_eq!(
        r.retry_on,
        [RetryCondition::GatewayError, RetryCondition::Status5xx]
            .into_iter()
            .collect::<RetryOn>()
    );
    assert_warned(&index, &["status 503 is retried as gateway-error"]);
    assert_warned(&index, &["unsupported retry condition \"418\""]);
}

#[test]
fn no_retries_without_a_retry_policy() {
    let index = vs_with("  - route: [{destination: {host: reviews}}]");
    assert_eq!(forward(&first_route(&index).action).retry, None);
}

#[test]
fn faults() {
    let index = vs_with(
        r#"
  - match: [{headers: {x-chaos: {exact: delay}}}]
    fault: {delay: {fixedDelay: 5s, percentage: {value: 10}}}
    route: [{destination: {host: reviews}}]
  - match: [{headers: {x-chaos: {exact: abort}}}]
    fault: {abort: {httpStatus: 503, percentage: {value: 50.5}}}
    route: [{destination: {host: reviews}}]
  - fault: {abort: {grpcStatus: UNAVAILABLE}}
    route: [{destination: {host: reviews}}]
"#,
    );
    let spec = proxy(&index, &mk_client("default"));
    let t = table(&spec, "reviews.default.svc.cluster.local:9080");
    let d = forward(&t.http[0].action)
        .fault
        .clone()
        .unwrap()
        .delay
        .unwrap();
    assert_eq!(d.fixed, Duration::from_secs(5));
    assert_eq!(d.percentage, Percent::new(10.0).unwrap());
    let a = forward(&t.http[1].action)
        .fault
        .clone()
        .unwrap()
        .abort
        .unwrap();
    assert_eq!(a.error, AbortError::HttpStatus(503));
    assert_eq!(a.percentage, Percent::new(50.5).unwrap());
    let f = forward(&t.http[2].action).fault.clone().unwrap();
    assert!(f.delay.is_none());
    let a = f.abort.unwrap();
    assert_eq!(
        (a.error, a.percentage),
        (AbortError::GrpcStatus(14), Percent::HUNDRED)
    );
}

#[test]
fn mirror_rewrite_and_headers() {
    let index = vs_with(
        r#"
  - match: [{uri: {prefix: /api/v1}}]
    rewrite: {uri: /v1, authority: reviews-internal}
    mirror: {host: ratings}
    mirrorPercentage: {value: 25}
    headers:
      request:
        set: {X-Env: prod}
        add: {x-trace: "1"}
        remove: [x-debug, host]
      response:
        set: {cache-control: no-store}
    route:
    - destination: {host: reviews}
      headers: {request: {set: {x-dest: reviews}}}
"#,
    );
    let route = first_route(&index);
    let f = forward(&route.action);
    assert_eq!(
        f.mirrors,
        vec![mesh_api::model::Mirror {
            cluster: key("ratings.default.svc.cluster.local", 9080, None),
            percentage: Percent::new(25.0).unwrap(),
        }]
    );
    let rw = f.rewrite.as_ref().unwrap();
    assert_eq!(rw.uri_prefix.as_deref(), Some("/v1"));
    assert_eq!(rw.authority.as_deref(), Some("reviews-internal"));
    assert_eq!(
        f.request_headers.set,
        [
            ("x-dest".to_owned(), "reviews".to_owned()),
            ("x-env".to_owned(), "prod".to_owned())
        ]
        .into()
    );
    assert_eq!(
        f.request_headers.add,
        [("x-trace".into(), "1".into())].into()
    );
    assert_eq!(f.request_headers.remove, ["x-debug"]);
    assert_eq!(
        f.response_headers.set,
        [("cache-control".into(), "no-store".into())].into()
    );
    assert_warned(&index, &["header \"host\" cannot be changed"]);
}

#[test]
fn per_destination_headers_need_a_single_destination() {
    let index = vs_with(
        r#"
  - route:
    - destination: {host: reviews}
      weight: 50
      headers: {request: {set: {x-a: a}}}
    - destination: {host: ratings}
      weight: 50
"#,
    );
    assert!(
        forward(&first_route(&index).action)
            .request_headers
            .is_empty()
    );
    assert_warned(&index, &["per-destination headers"]);
}

#[test]
fn redirect_and_direct_response() {
    let index = vs_with(
        r#"
  - match: [{uri: {exact: /old}}]
    redirect: {uri: /new, authority: shop.example.com, scheme: https, port: 8443, redirectCode: 308}
  - match: [{uri: {exact: /health}}]
    directResponse: {status: 200, body: {string: ok}}
  - match: [{uri: {exact: /moved}}]
    redirect: {uri: /x}
"#,
    );
    let spec = proxy(&index, &mk_client("default"));
    let t = table(&spec, "reviews.default.svc.cluster.local:9080");
    let HttpAction::Redirect(r) = &t.http[0].action else {
        panic!("{:?}", t.http[0].action)
    };
    assert_eq!(
        (
            r.path.as_deref(),
            r.authority.as_deref(),
            r.scheme.as_deref(),
            r.port,
            r.status
        ),
        (
            Some("/new"),
            Some("shop.example.com"),
            Some("https"),
            Some(8443),
            308
        )
    );
    let HttpAction::DirectResponse(d) = &t.http[1].action else {
        panic!("{:?}", t.http[1].action)
    };
    assert_eq!((d.status, d.body.as_deref()), (200, Some("ok")));
    let HttpAction::Redirect(r) = &t.http[2].action else {
        panic!()
    };
    assert_eq!(r.status, 301, "Istio's default redirect code");
}

#[test]
fn matches_translate_field_by_field() {
    let index = vs_with(
        r#"
  - match:
    - name: full
      uri: {prefix: /api}
      method: {exact: GET}
      authority: {regex: "reviews(:[0-9]+)?"}
      scheme: {exact: http}
      headers: {X-User: {exact: jason}, x-present: {}}
      withoutHeaders: {x-canary: {prefix: "1"}}
      queryParams: {debug: {exact: "true"}}
      sourceLabels: {app: productpage}
      sourceNamespace: default
    - uri: {prefix: /Ci}
      ignoreUriCase: true
    route: [{destination: {host: reviews}}]
"#,
    );
    let route = first_route(&index);
    assert_eq!(route.matches.len(), 2);
    let m = &route.matches[0];
    let expected = HttpMatch {
        name: "full".into(),
        uri: Some(StringMatch::Prefix("/api".into())),
        method: Some(StringMatch::Exact("GET".into())),
        authority: Some(StringMatch::Regex(
            mesh_api::model::Pattern::new("reviews(:[0-9]+)?").unwrap(),
        )),
        scheme: Some(StringMatch::Exact("http".into())),
        headers: vec![
            HeaderMatch {
                name: "x-present".into(),
                value: None,
            },
            HeaderMatch {
                name: "x-user".into(),
                value: Some(StringMatch::Exact("jason".into())),
            },
        ],
        without_headers: vec![HeaderMatch {
            name: "x-canary".into(),
            value: Some(StringMatch::Prefix("1".into())),
        }],
        query_params: vec![QueryParamMatch {
            name: "debug".into(),
            value: Some(StringMatch::Exact("true".into())),
        }],
        source_labels: [("app".into(), "productpage".into())].into(),
        source_namespace: Some("default".into()),
    };
    // Header matches come out sorted by name; compare independent of that order.
    let mut got = m.clone();
    got.headers.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(got, expected);
    let uri = route.matches[1].uri.as_ref().unwrap();
    assert!(matches!(uri, StringMatch::Regex(_)), "{uri:?}");
    assert!(uri.matches("/ci/x") && uri.matches("/CI") && !uri.matches("/x/ci"));
}

#[test]
fn untranslatable_conditions_are_dropped_never_widened() {
    let index = vs_with(
        r#"
  - match:
    - uri: {regex: "(unclosed"}
    - uri: {exact: /ok}
    route: [{destination: {host: reviews}}]
  - match:
    - uri: {regex: "(bad"}
    route: [{destination: {host: ratings}}]
  - route: [{destination: {host: reviews}}]
"#,
    );
    let spec = proxy(&index, &mk_client("default"));
    let t = table(&spec, "reviews.default.svc.cluster.local:9080");
    // The first route keeps its good condition; the second lost all and is gone.
    assert_eq!(t.http.len(), 2);
    assert_eq!(t.http[0].matches.len(), 1);
    assert!(t.http[1].matches.is_empty());
    assert_eq!(
        forward(&t.http[1].action).backends[0].cluster.hostname,
        FQDN
    );
    assert_warned(&index, &["http[0].match[0]", "invalid regex"]);
    assert_warned(&index, &["http[1].match[0]", "invalid regex"]);
}

#[test]
fn match_port_selects_the_route_table() {
    let mut docs = vec![mk_service(
        "multi",
        "default",
        "10.96.0.12",
        &[(80, "http"), (81, "http-alt"), (5432, "tcp-db")],
    )];
    docs.push(
        r#"
apiVersion: networking.mesh.dev/v1alpha1
kind: VirtualService
metadata: {name: multi}
spec:
  hosts: [multi]
  http:
  - match: [{port: 81, uri: {prefix: /alt}}]
    route: [{destination: {host: multi}}]
  - route: [{destination: {host: multi, port: {number: 80}}}]
  tcp:
  - match: [{port: 5432}]
    route: [{destination: {host: multi}}]
"#
        .to_owned(),
    );
    let index = mk_index(&docs);
    let spec = proxy(&index, &mk_client("default"));
    let host = "multi.default.svc.cluster.local";
    let t80 = table(&spec, &format!("{host}:80"));
    assert_eq!(t80.http.len(), 1);
    assert!(t80.tcp.is_empty());
    let t81 = table(&spec, &format!("{host}:81"));
    assert_eq!(t81.http.len(), 2);
    // No port on the destination of a multi-port service: the table's port.
    assert_eq!(
        forward(&t81.http[0].action).backends[0].cluster,
        key(host, 81, None)
    );
    assert_eq!(
        forward(&t81.http[1].action).backends[0].cluster,
        key(host, 80, None)
    );
    let tdb = table(&spec, &format!("{host}:5432"));
    assert!(index.warnings().is_empty(), "{:#?}", warnings(&index));
    assert!(
        tdb.http.is_empty(),
        "http routes do not apply to an opaque port"
    );
    assert_eq!(tdb.tcp.len(), 1);
    assert_eq!(tdb.tcp[0].backends[0].cluster, key(host, 5432, None));
}

#[test]
fn destination_port_defaults_to_the_services_only_port() {
    let mut docs = vec![
        mk_service("front", "default", "10.96.0.20", &[(80, "http")]),
        mk_service("back", "default", "10.96.0.21", &[(8080, "http")]),
    ];
    docs.push(
        r#"
apiVersion: networking.mesh.dev/v1alpha1
kind: VirtualService
metadata: {name: front}
spec:
  hosts: [front]
  http:
  - route:
    - destination: {host: back}
      weight: 70
    - destination: {host: back.default.svc.cluster.local, port: {number: 9000}}
      weight: 30
"#
        .to_owned(),
    );
    let index = mk_index(&docs);
    let spec = proxy(&index, &mk_client("default"));
    let f = forward(&table(&spec, "front.default.svc.cluster.local:80").http[0].action).clone();
    let back = "back.default.svc.cluster.local";
    assert_eq!(f.backends[0].cluster, key(back, 8080, None));
    assert_eq!(f.backends[1].cluster, key(back, 9000, None));
}

#[test]
fn gateway_bound_virtual_services_do_not_apply_to_sidecars() {
    let mut docs = bookinfo_reviews();
    docs.push(mk_service(
        "ratings",
        "default",
        "10.96.0.11",
        &[(9080, "http")],
    ));
    docs.push(
        r#"
apiVersion: networking.mesh.dev/v1alpha1
kind: VirtualService
metadata: {name: edge}
spec:
  hosts: [reviews]
  gateways: [mesh-system/ingress]
  http: [{route: [{destination: {host: reviews, subset: v1}}]}]
---
apiVersion: networking.mesh.dev/v1alpha1
kind: VirtualService
metadata: {name: both}
spec:
  hosts: [ratings]
  gateways: [mesh-system/ingress, mesh]
  http:
  - match: [{gateways: [mesh-system/ingress], uri: {prefix: /edge}}]
    route: [{destination: {host: ratings}}]
  - route: [{destination: {host: ratings}}]
"#
        .to_owned(),
    );
    let index = mk_index(&docs);
    let spec = proxy(&index, &mk_client("default"));
    assert!(spec.routes.iter().all(|r| !r.name.starts_with("reviews.")));
    let t = table(&spec, "ratings.default.svc.cluster.local:9080");
    assert_eq!(t.http.len(), 1, "the gateway-only route is left out");
    assert!(t.http[0].matches.is_empty());
}

#[test]
fn first_virtual_service_by_namespace_and_name_wins() {
    let mut docs = bookinfo_reviews();
    for name in ["b-reviews", "a-reviews"] {
        docs.push(format!(
            r#"
apiVersion: networking.mesh.dev/v1alpha1
kind: VirtualService
metadata: {{name: {name}}}
spec:
  hosts: [reviews]
  http: [{{name: {name}, route: [{{destination: {{host: reviews}}}}]}}]
"#
        ));
    }
    let index = mk_index(&docs);
    let spec = proxy(&index, &mk_client("default"));
    assert_eq!(
        table(&spec, &format!("{FQDN}:9080")).http[0].name,
        "a-reviews"
    );
    assert_warned(
        &index,
        &[
            "VirtualService default/b-reviews",
            "also routed by VirtualService default/a-reviews",
        ],
    );
}

#[test]
fn virtual_service_export_to_and_namespace_of_short_hosts() {
    let mut docs = bookinfo_reviews();
    docs.push(mk_service(
        "reviews",
        "team",
        "10.96.5.10",
        &[(9080, "http")],
    ));
    docs.push(
        r#"
apiVersion: networking.mesh.dev/v1alpha1
kind: VirtualService
metadata: {name: private, namespace: team}
spec:
  hosts: [reviews]
  exportTo: ["."]
  http: [{timeout: 3s, route: [{destination: {host: reviews}}]}]
"#
        .to_owned(),
    );
    let index = mk_index(&docs);
    // `reviews` in namespace team is reviews.team, not reviews.default.
    let team = proxy(&index, &mk_client("team"));
    let t = table(&team, "reviews.team.svc.cluster.local:9080");
    assert_eq!(
        forward(&t.http[0].action).timeout,
        Some(Duration::from_secs(3))
    );
    assert!(team.routes.iter().all(|r| !r.name.starts_with(FQDN)));
    // Not exported to default.
    let default = proxy(&index, &mk_client("default"));
    assert!(default.routes.is_empty(), "{:?}", default.routes);
}

#[test]
fn wildcard_hosts_cover_matching_services_and_exact_hosts_win() {
    let docs = vec![
        mk_service("a", "default", "10.96.0.31", &[(80, "http")]),
        mk_service("b", "default", "10.96.0.32", &[(80, "http")]),
        r#"
apiVersion: networking.mesh.dev/v1alpha1
kind: VirtualService
metadata: {name: all}
spec:
  hosts: ["*.default.svc.cluster.local"]
  http: [{name: wildcard, timeout: 1s, route: [{destination: {host: a}}]}]
---
apiVersion: networking.mesh.dev/v1alpha1
kind: VirtualService
metadata: {name: zzz-b}
spec:
  hosts: [b]
  http: [{name: exact, route: [{destination: {host: b}}]}]
"#
        .to_owned(),
    ];
    let index = mk_index(&docs);
    let spec = proxy(&index, &mk_client("default"));
    assert_eq!(
        table(&spec, "a.default.svc.cluster.local:80").http[0].name,
        "wildcard"
    );
    assert_eq!(
        table(&spec, "b.default.svc.cluster.local:80").http[0].name,
        "exact"
    );
}

#[test]
fn unknown_hosts_and_subsets_are_reported() {
    let mut docs = bookinfo_reviews();
    docs.push(
        r#"
apiVersion: networking.mesh.dev/v1alpha1
kind: VirtualService
metadata: {name: odd}
spec:
  hosts: [nope, reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v9}
      weight: 50
    - destination: {host: ghost}
      weight: 50
"#
        .to_owned(),
    );
    let index = mk_index(&docs);
    assert_warned(
        &index,
        &[
            "VirtualService default/odd",
            "host \"nope\" is not a known service",
        ],
    );
    assert_warned(&index, &["subset \"v9\"", "not defined"]);
    assert_warned(
        &index,
        &["ghost.default.svc.cluster.local is not a known service"],
    );
    // Still emitted: the proxy answers 503 for the missing parts, as Istio does.
    let spec = proxy(&index, &mk_client("default"));
    assert_eq!(
        forward(&table(&spec, &format!("{FQDN}:9080")).http[0].action)
            .backends
            .len(),
        2
    );
}

#[test]
fn tcp_routes_on_opaque_ports() {
    let docs = vec![
        mk_service("db", "default", "10.96.0.40", &[(5432, "tcp")]),
        mk_service("db-new", "default", "10.96.0.41", &[(5432, "tcp")]),
        r#"
apiVersion: networking.mesh.dev/v1alpha1
kind: VirtualService
metadata: {name: db}
spec:
  hosts: [db]
  tcp:
  - match: [{sourceLabels: {app: migrator}}]
    route: [{destination: {host: db-new}}]
  - match: [{destinationSubnets: [10.0.0.0/8]}]
    route: [{destination: {host: db-new}}]
  - route:
    - destination: {host: db}
      weight: 80
    - destination: {host: db-new}
      weight: 20
"#
        .to_owned(),
    ];
    let index = mk_index(&docs);
    let spec = proxy(&index, &mk_client("default"));
    let t = table(&spec, "db.default.svc.cluster.local:5432");
    assert!(t.http.is_empty());
    assert_eq!(
        t.tcp.len(),
        2,
        "the destinationSubnets route cannot be expressed"
    );
    assert_eq!(
        t.tcp[0].matches[0].source_labels,
        [("app".into(), "migrator".into())].into()
    );
    let weights: Vec<u32> = t.tcp[1].backends.iter().map(|b| b.weight).collect();
    assert_eq!(weights, [80, 20]);
    assert_warned(&index, &["tcp[1].match[0]", "destinationSubnets"]);
}

#[test]
fn a_virtual_service_that_routes_no_port_is_reported() {
    let docs = vec![
        mk_service("db", "default", "10.96.0.40", &[(5432, "tcp")]),
        r#"
apiVersion: networking.mesh.dev/v1alpha1
kind: VirtualService
metadata: {name: db}
spec:
  hosts: [db]
  http: [{route: [{destination: {host: db}}]}]
"#
        .to_owned(),
    ];
    let index = mk_index(&docs);
    assert_warned(
        &index,
        &[
            "VirtualService default/db",
            "no route applies to any port of db.default",
        ],
    );
    assert!(proxy(&index, &mk_client("default")).routes.is_empty());
}
