//! What one proxy receives (visibility, its own workload), determinism, versions, and
//! validity of every computed config.

use mesh_api::config::ResourceKind;

use super::*;

#[test]
fn services_are_scoped_by_export_to() {
    let docs = vec![
        mk_service("public", "a", "10.96.0.1", &[(80, "http")]),
        r#"
apiVersion: v1
kind: Service
metadata:
  name: private
  namespace: a
  annotations: {networking.mesh.dev/exportTo: "., b"}
spec:
  clusterIP: 10.96.0.2
  ports: [{port: 80, name: http}]
---
apiVersion: networking.mesh.dev/v1alpha1
kind: ServiceEntry
metadata: {name: ext, namespace: a}
spec:
  hosts: [api.example.com]
  exportTo: ["."]
  ports: [{number: 443, name: tls, protocol: TLS}]
"#
        .to_owned(),
    ];
    let index = mk_index(&docs);
    let hosts = |ns: &str| -> Vec<String> {
        let spec = proxy(&index, &mk_client(ns));
        assert_eq!(spec.services.len(), spec.endpoints.len());
        spec.services.iter().map(|s| s.hostname.clone()).collect()
    };
    assert_eq!(
        hosts("a"),
        [
            "api.example.com",
            "private.a.svc.cluster.local",
            "public.a.svc.cluster.local"
        ]
    );
    assert_eq!(
        hosts("b"),
        ["private.a.svc.cluster.local", "public.a.svc.cluster.local"]
    );
    assert_eq!(hosts("c"), ["public.a.svc.cluster.local"]);
    // Clusters follow the services.
    let spec = proxy(&index, &mk_client("c"));
    assert!(
        spec.clusters
            .iter()
            .all(|c| c.key.hostname == "public.a.svc.cluster.local")
    );
}

#[test]
fn the_proxy_gets_its_own_workload_and_identity() {
    let index = mk_index(&bookinfo_reviews());
    let node = mk_node("default", "reviews-v2", "reviews");
    let spec = proxy(&index, &node);
    assert_eq!(spec.identity, node.identity);
    assert_eq!(spec.mode, ProxyMode::Sidecar);
    let w = spec.workload.expect("its workload");
    assert_eq!(
        (w.uid.as_str(), w.canonical_revision.as_str()),
        ("default/reviews-v2", "v2")
    );

    // A node claiming a workload of another service account does not get it.
    let spec = proxy(&index, &mk_node("default", "reviews-v2", "intruder"));
    assert!(spec.workload.is_none());
    // Nor does a node in another namespace.
    assert!(
        proxy(&index, &mk_node("other", "reviews-v2", "reviews"))
            .workload
            .is_none()
    );
}

#[test]
fn duplicate_hosts_and_vips_keep_the_config_valid() {
    let docs = vec![
        mk_service("reviews", "default", "10.96.0.10", &[(9080, "http")]),
        // A ServiceEntry claiming the same host, and another service on the same VIP.
        r#"
apiVersion: networking.mesh.dev/v1alpha1
kind: ServiceEntry
metadata: {name: shadow, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  addresses: [10.96.0.99]
  ports: [{number: 9080, name: http}]
---
apiVersion: networking.mesh.dev/v1alpha1
kind: ServiceEntry
metadata: {name: same-vip, namespace: default}
spec:
  hosts: [reviews.default]
  location: MESH_INTERNAL
  addresses: [10.96.0.10]
  ports: [{number: 9080, name: http}]
---
apiVersion: networking.mesh.dev/v1alpha1
kind: VirtualService
metadata: {name: both}
spec:
  hosts: [reviews.default.svc.cluster.local, reviews.default]
  http: [{route: [{destination: {host: reviews.default.svc.cluster.local}}]}]
"#
        .to_owned(),
    ];
    let index = mk_index(&docs);
    assert_warned(
        &index,
        &[
            "ServiceEntry default/shadow",
            "also defined by Service default/reviews",
        ],
    );
    assert_warned(&index, &["virtual IP 10.96.0.10 port 9080 is also used"]);
    let spec = proxy(&index, &mk_client("default"));
    // The Kubernetes Service wins its host; the other service loses the shared VIP.
    let reviews = service(&spec, FQDN);
    assert_eq!(reviews.name.to_string(), "default/reviews");
    assert!(service(&spec, "reviews.default").vips.is_empty());
    // `reviews.default` is the second service's own name, not an alias of the first.
    let t = table(&spec, &format!("{FQDN}:9080"));
    assert!(
        !t.hostnames.iter().any(|h| h == "reviews.default"),
        "{:?}",
        t.hostnames
    );
    assert_eq!(
        table(&spec, "reviews.default:9080").hostnames,
        ["reviews.default"]
    );
}

#[test]
fn gateway_proxies_get_no_sidecar_routes() {
    let mut docs = bookinfo_reviews();
    docs.push(
        r#"
apiVersion: networking.mesh.dev/v1alpha1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews}}]}]
"#
        .to_owned(),
    );
    let index = mk_index(&docs);
    let mut node = mk_node(
        "mesh-system",
        "mesh-ingressgateway-1",
        "mesh-ingressgateway",
    );
    node.mode = ProxyMode::Gateway;
    let spec = proxy(&index, &node);
    assert_eq!(spec.mode, ProxyMode::Gateway);
    assert!(spec.routes.is_empty());
    assert!(!spec.services.is_empty() && !spec.clusters.is_empty());
}

/// A config exercising every translation at once.
fn everything() -> Vec<String> {
    let mut docs = bookinfo_reviews();
    docs.extend([
        mk_service(
            "ratings",
            "default",
            "10.96.0.11",
            &[(9080, "http"), (9090, "grpc")],
        ),
        mk_service("productpage", "default", "10.96.0.12", &[(9080, "http")]),
        mk_service("db", "data", "None", &[(5432, "tcp")]),
        mk_workload(
            "ratings-1",
            "default",
            "10.1.1.1",
            "ratings",
            &[("app", "ratings")],
        ),
        mk_workload(
            "productpage-1",
            "default",
            "10.1.2.1",
            "productpage",
            &[("app", "productpage")],
        ),
        mk_workload("db-0", "data", "10.1.3.1", "db", &[("app", "db")]),
        r#"
apiVersion: networking.mesh.dev/v1alpha1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    fault: {delay: {fixedDelay: 7s, percentage: {value: 100}}}
    route: [{destination: {host: reviews, subset: v2}}]
  - timeout: 10s
    retries: {attempts: 2, perTryTimeout: 2s}
    mirror: {host: ratings, port: {number: 9080}}
    route:
    - {destination: {host: reviews, subset: v1}, weight: 90}
    - {destination: {host: reviews, subset: v3}, weight: 10}
---
apiVersion: networking.mesh.dev/v1alpha1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy: {outlierDetection: {consecutive5xxErrors: 3}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ratings}
spec:
  parentRefs: [{kind: Service, group: "", name: ratings}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /ratings}}]
    backendRefs: [{name: ratings, port: 9080}]
---
apiVersion: networking.mesh.dev/v1alpha1
kind: VirtualService
metadata: {name: db, namespace: data}
spec:
  hosts: [db]
  tcp: [{route: [{destination: {host: db}}]}]
---
apiVersion: networking.mesh.dev/v1alpha1
kind: ServiceEntry
metadata: {name: google}
spec:
  hosts: [www.google.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: NONE
---
apiVersion: security.mesh.dev/v1alpha1
kind: PeerAuthentication
metadata: {name: default, namespace: mesh-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.mesh.dev/v1alpha1
kind: PeerAuthentication
metadata: {name: reviews}
spec:
  selector: {matchLabels: {app: reviews}}
  mtls: {mode: STRICT}
  portLevelMtls: {15090: {mode: PERMISSIVE}}
---
apiVersion: security.mesh.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: reviews}
spec:
  selector: {matchLabels: {app: reviews}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/productpage]}}]
    to: [{operation: {methods: [GET]}}]
"#
        .to_owned(),
    ]);
    docs
}

fn nodes() -> Vec<Node> {
    let mut gw = mk_node("mesh-system", "gw", "gw");
    gw.mode = ProxyMode::Gateway;
    vec![
        mk_node("default", "reviews-v1", "reviews"),
        mk_node("default", "productpage-1", "productpage"),
        mk_node("data", "db-0", "db"),
        mk_client("elsewhere"),
        gw,
    ]
}

#[test]
fn every_computed_config_is_valid() {
    let index = mk_index(&everything());
    assert!(index.warnings().is_empty(), "{:#?}", warnings(&index));
    for node in nodes() {
        // `proxy` asserts `ProxyConfig::new` accepts it.
        let spec = proxy(&index, &node);
        assert!(!spec.services.is_empty(), "{}", node.id);
    }
    let spec = proxy(&index, &mk_node("default", "reviews-v1", "reviews"));
    let names: Vec<&str> = spec.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "db.data.svc.cluster.local:5432",
            "ratings.default.svc.cluster.local:9080",
            // The HTTPRoute has no parent port: every HTTP port, gRPC included.
            "ratings.default.svc.cluster.local:9090",
            "reviews.default.svc.cluster.local:9080",
        ]
    );
    assert_eq!(
        spec.inbound.mode_for(15090),
        mesh_api::model::MtlsMode::Permissive
    );
    assert_eq!(spec.authorization.len(), 1);
}

#[test]
fn same_inputs_same_bytes_whatever_the_order() {
    let resources = parse(&everything().join("\n---\n"));
    let mut forward = Index::new(Settings::default());
    for r in resources.clone() {
        forward.apply(r);
    }
    let mut backward = Index::new(Settings::default());
    for r in resources.iter().rev().cloned() {
        backward.apply(r);
    }
    let mut snapshot = Index::new(Settings::default());
    snapshot.replace_all(resources);
    for node in nodes() {
        let a = serde_json::to_string(&forward.proxy_config(&node)).unwrap();
        let b = serde_json::to_string(&backward.proxy_config(&node)).unwrap();
        let c = serde_json::to_string(&snapshot.proxy_config(&node)).unwrap();
        assert_eq!(a, b, "{}", node.id);
        assert_eq!(a, c, "{}", node.id);
    }
    assert_eq!(forward.warnings(), backward.warnings());
}

#[test]
fn version_moves_on_every_change_only() {
    let resources = parse(&bookinfo_reviews().join("\n---\n"));
    let mut index = Index::new(Settings::default());
    assert_eq!(index.version(), 0);
    index.apply(resources[0].clone());
    assert_eq!(index.version(), 1);
    index.apply(resources[0].clone());
    assert_eq!(
        index.version(),
        1,
        "re-applying the same resource is not a change"
    );
    index.replace_all(resources.clone());
    assert_eq!(index.version(), 2);
    index.replace_all(resources.clone());
    assert_eq!(index.version(), 2);
    index.delete(ResourceKind::WorkloadEntry, "default", "nope");
    assert_eq!(index.version(), 2);
    index.delete(ResourceKind::WorkloadEntry, "default", "reviews-v3");
    assert_eq!(index.version(), 3);
    assert_eq!(index.workloads().count(), 2);
    let spec = proxy(&index, &mk_client("default"));
    assert_eq!(endpoints(&spec, FQDN).endpoints.len(), 2);
}

#[test]
fn apply_replaces_and_delete_clears_warnings() {
    let mut index = mk_index(&bookinfo_reviews());
    let bad = parse(
        r#"
apiVersion: networking.mesh.dev/v1alpha1
kind: DestinationRule
metadata: {name: reviews}
spec: {host: nope}
"#,
    );
    index.apply(bad[0].clone());
    assert_warned(
        &index,
        &["DestinationRule default/reviews", "not a known service"],
    );
    let good = parse(
        r#"
apiVersion: networking.mesh.dev/v1alpha1
kind: DestinationRule
metadata: {name: reviews}
spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}]}
"#,
    );
    index.apply(good[0].clone());
    assert!(index.warnings().is_empty(), "{:?}", warnings(&index));
    let spec = proxy(&index, &mk_client("default"));
    assert_eq!(spec.clusters.len(), 2);
    index.delete(ResourceKind::DestinationRule, "default", "reviews");
    assert_eq!(proxy(&index, &mk_client("default")).clusters.len(), 1);
}

#[test]
fn invalid_values_never_make_an_invalid_config() {
    let mut docs = bookinfo_reviews();
    docs.push(
        r#"
apiVersion: networking.mesh.dev/v1alpha1
kind: VirtualService
metadata: {name: hostile}
spec:
  hosts: [reviews, "*.nothing.example"]
  http:
  - match: [{uri: {prefix: /zero}}]
    route:
    - {destination: {host: reviews, subset: v1}, weight: 0}
    - {destination: {host: reviews, subset: v2}, weight: -5}
  - match: [{uri: {prefix: /bad}, headers: {"Bad Header": {exact: x}}}]
    route: [{destination: {host: reviews}}]
  - match: [{uri: {prefix: /a}}]
    timeout: soon
    retries: {attempts: 3, perTryTimeout: 0s, retryOn: "nonsense"}
    fault:
      delay: {fixedDelay: "-1s", percentage: {value: 150}}
      abort: {httpStatus: 700}
    mirror: {host: "*.wild"}
    mirrorPercentage: {value: -3}
    rewrite: {uri: relative, authority: ""}
    headers:
      request: {set: {":path": /x, "x-ok": "line1\nline2"}, remove: [Host]}
    route: [{destination: {host: reviews, port: {number: 70000}}}, {destination: {host: reviews}}]
  - match: [{uri: {prefix: /r}}]
    redirect: {scheme: ftp}
  - match: [{uri: {prefix: /d}}]
    directResponse: {status: 99}
  - match: [{uri: {prefix: /e}}]
  - match: [{uri: {exact: /f}}]
    fault: {abort: {grpcStatus: OK}}
    route: [{destination: {host: reviews}}]
---
apiVersion: networking.mesh.dev/v1alpha1
kind: DestinationRule
metadata: {name: hostile}
spec:
  host: reviews
  trafficPolicy:
    connectionPool: {tcp: {maxConnections: -1, idleTimeout: 0s}, http: {http2MaxRequests: 0}}
    outlierDetection: {interval: 0s, baseEjectionTime: never, maxEjectionPercent: 500}
    portLevelSettings: [{port: {number: 0}, loadBalancer: {simple: RANDOM}}]
  subsets:
  - {name: "", labels: {version: v1}}
  - {name: v1, labels: {version: v1}}
  - {name: v1, labels: {version: v2}}
---
apiVersion: networking.mesh.dev/v1alpha1
kind: ServiceEntry
metadata: {name: hostile}
spec:
  hosts: [Bad_Host.example, "bad host"]
  ports: [{number: 0, name: zero}, {number: 80, name: a}, {number: 80, name: b, targetPort: 99999}]
---
apiVersion: networking.mesh.dev/v1alpha1
kind: WorkloadEntry
metadata: {name: hostile}
spec: {address: "::ffff:10.9.9.9", ports: {http: 70000}, labels: {app: reviews}}
---
apiVersion: security.mesh.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: hostile}
spec:
  action: DENY
  rules:
  - to: [{operation: {methods: [""], ports: ["0"]}}]
  - when: [{key: source.ip}]
---
apiVersion: security.mesh.dev/v1alpha1
kind: PeerAuthentication
metadata: {name: hostile}
spec:
  selector: {matchLabels: {app: reviews}}
  portLevelMtls: {0: {mode: STRICT}, 70000: {mode: DISABLE}}
"#
        .to_owned(),
    );
    let index = mk_index(&docs);
    assert!(warnings(&index).len() > 20, "{:#?}", warnings(&index));
    for node in nodes()
        .iter()
        .chain([&mk_node("default", "hostile", "default")])
    {
        proxy(&index, node);
    }
    let spec = proxy(&index, &mk_client("default"));
    let t = table(&spec, &format!("{FQDN}:9080"));
    // The all-zero route and the action-less route are gone; the others survive with
    // their broken parts removed.
    let prefixes: Vec<String> = t
        .http
        .iter()
        .map(|r| format!("{:?}", r.matches[0].uri))
        .collect();
    assert_eq!(prefixes, [r#"Some(Prefix("/a"))"#, r#"Some(Exact("/f"))"#,]);
    let f = forward(&t.http[0].action);
    assert_eq!(f.backends.len(), 1);
    assert!(f.fault.is_none() && f.timeout.is_none() && f.mirrors.is_empty());
    assert!(f.rewrite.is_none() && f.request_headers.is_empty());
    assert_eq!(f.retry.as_ref().unwrap().per_try_timeout, None);
    assert!(f.retry.as_ref().unwrap().retry_on.is_empty());
}
