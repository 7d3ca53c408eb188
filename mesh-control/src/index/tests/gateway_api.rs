//! Gateway API (GAMMA) routes attached to Services.

use std::time::Duration;

use mesh_api::model::{DirectResponse, HttpRoute, Percent, StringMatch};

use super::*;

fn docs(routes: &str) -> Vec<String> {
    vec![
        mk_service(
            "reviews",
            "default",
            "10.96.0.10",
            &[(9080, "http"), (9443, "tls")],
        ),
        mk_service("reviews-v1", "default", "10.96.0.11", &[(9080, "http")]),
        mk_service("reviews-v2", "default", "10.96.0.12", &[(9080, "http")]),
        routes.to_owned(),
    ]
}

fn uri(r: &HttpRoute) -> &StringMatch {
    r.matches[0].uri.as_ref().expect("a uri match")
}

fn backend_weights(r: &HttpRoute) -> Vec<(String, u16, u32)> {
    forward(&r.action)
        .backends
        .iter()
        .map(|b| (b.cluster.hostname.clone(), b.cluster.port, b.weight))
        .collect()
}

#[test]
fn http_route_with_weights_and_path_prefix() {
    let index = mk_index(&docs(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api/}}]
    backendRefs:
    - {name: reviews-v1, port: 9080, weight: 9}
    - {name: reviews-v2, port: 9080, weight: 1}
  - backendRefs: [{name: reviews, port: 9080}]
"#,
    ));
    assert!(index.warnings().is_empty(), "{:#?}", warnings(&index));
    let spec = proxy(&index, &mk_client("default"));
    assert!(
        spec.routes.iter().all(|r| r.port == 9080),
        "only the parent's port"
    );
    let t = table(&spec, &format!("{FQDN}:9080"));
    assert_eq!(t.hostnames[0], FQDN);
    let uris: Vec<&StringMatch> = t.http.iter().map(uri).collect();
    assert_eq!(
        uris,
        [
            &StringMatch::Exact("/api".into()),
            &StringMatch::Prefix("/api/".into()),
            &StringMatch::Prefix("/".into()),
        ]
    );
    let v1 = "reviews-v1.default.svc.cluster.local".to_owned();
    let v2 = "reviews-v2.default.svc.cluster.local".to_owned();
    assert_eq!(
        backend_weights(&t.http[0]),
        [(v1.clone(), 9080, 9), (v2.clone(), 9080, 1)]
    );
    assert_eq!(backend_weights(&t.http[1]), [(v1, 9080, 9), (v2, 9080, 1)]);
    assert_eq!(backend_weights(&t.http[2]), [(FQDN.to_owned(), 9080, 1)]);
}

#[test]
fn rules_are_ordered_by_gateway_api_precedence_across_routes() {
    let index = mk_index(&docs(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: a}
spec:
  parentRefs: [{kind: Service, group: "", name: reviews}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: reviews-v1, port: 9080}]
  - matches: [{path: {type: PathPrefix, value: /a}}]
    backendRefs: [{name: reviews-v1, port: 9080}]
  - matches: [{path: {type: RegularExpression, value: "/r.*"}}]
    backendRefs: [{name: reviews-v1, port: 9080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: b}
spec:
  parentRefs: [{kind: Service, group: "", name: reviews}]
  rules:
  - matches:
    - path: {type: PathPrefix, value: /a}
      headers: [{name: X-Canary, value: "1"}]
    - path: {type: PathPrefix, value: /a}
      method: GET
    - path: {type: Exact, value: /a/b}
    - path: {type: PathPrefix, value: /a/b}
    backendRefs: [{name: reviews-v2, port: 9080}]
"#,
    ));
    let spec = proxy(&index, &mk_client("default"));
    let t = table(&spec, &format!("{FQDN}:9080"));
    let order: Vec<String> = t
        .http
        .iter()
        .map(|r| {
            let m = &r.matches[0];
            format!(
                "{:?} m={} h={}",
                m.uri.as_ref().unwrap(),
                m.method.is_some(),
                m.headers.len()
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            r#"Exact("/a/b") m=false h=0"#,
            r#"Exact("/a/b") m=false h=0"#,
            r#"Prefix("/a/b/") m=false h=0"#,
            r#"Exact("/a") m=true h=0"#,
            r#"Prefix("/a/") m=true h=0"#,
            r#"Exact("/a") m=false h=1"#,
            r#"Prefix("/a/") m=false h=1"#,
            r#"Exact("/a") m=false h=0"#,
            r#"Prefix("/a/") m=false h=0"#,
            r#"Prefix("/") m=false h=0"#,
            r#"Regex(Pattern("/r.*")) m=false h=0"#,
        ]
    );
    assert_eq!(t.http[5].matches[0].headers[0].name, "x-canary");
}

#[test]
fn filters_map_to_the_model() {
    let index = mk_index(&docs(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews}
spec:
  parentRefs: [{kind: Service, group: "", name: reviews, port: 9080}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v1}}]
    timeouts: {request: 4s}
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: X-Env, value: prod}], add: [{name: x-a, value: b}], remove: [x-debug]}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {set: [{name: x-served-by, value: mesh}]}
    - type: URLRewrite
      urlRewrite: {hostname: internal, path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}
    - type: RequestMirror
      requestMirror: {backendRef: {name: reviews-v2, port: 9080}, percent: 20}
    - type: CORS
      cors: {allowOrigins: ["https://a.example"]}
    backendRefs: [{name: reviews-v1, port: 9080}]
  - matches: [{path: {type: PathPrefix, value: /full}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /index.html}}
    backendRefs: [{name: reviews-v1, port: 9080}]
  - matches: [{path: {type: Exact, value: /old}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {scheme: https, hostname: new.example, path: {type: ReplaceFullPath, replaceFullPath: /new}}
  - matches: [{path: {type: Exact, value: /ext}}]
    filters:
    - type: ExtensionRef
      extensionRef: {group: example.com, kind: Thing, name: x}
    backendRefs: [{name: reviews-v1, port: 9080}]
"#,
    ));
    let spec = proxy(&index, &mk_client("default"));
    let t = table(&spec, &format!("{FQDN}:9080"));
    let by_uri = |u: StringMatch| {
        t.http
            .iter()
            .find(|r| uri(r) == &u)
            .unwrap_or_else(|| panic!("no route for {u:?}"))
    };

    // PathPrefix /v1 + ReplacePrefixMatch /v2: /v1 → /v2 and /v1/x → /v2/x.
    let exact = forward(&by_uri(StringMatch::Exact("/v1".into())).action);
    let prefix = forward(&by_uri(StringMatch::Prefix("/v1/".into())).action);
    assert_eq!(
        exact.rewrite.as_ref().unwrap().uri_prefix.as_deref(),
        Some("/v2")
    );
    assert_eq!(
        prefix.rewrite.as_ref().unwrap().uri_prefix.as_deref(),
        Some("/v2/")
    );
    assert_eq!(
        prefix.rewrite.as_ref().unwrap().authority.as_deref(),
        Some("internal")
    );
    assert_eq!(prefix.timeout, Some(Duration::from_secs(4)));
    assert_eq!(
        prefix.request_headers.set,
        [("x-env".into(), "prod".into())].into()
    );
    assert_eq!(
        prefix.request_headers.add,
        [("x-a".into(), "b".into())].into()
    );
    assert_eq!(prefix.request_headers.remove, ["x-debug"]);
    assert_eq!(
        prefix.response_headers.set,
        [("x-served-by".into(), "mesh".into())].into()
    );
    assert_eq!(prefix.mirrors.len(), 1);
    assert_eq!(
        prefix.mirrors[0].cluster.hostname,
        "reviews-v2.default.svc.cluster.local"
    );
    assert_eq!(prefix.mirrors[0].percentage, Percent::new(20.0).unwrap());
    assert_warned(&index, &["HTTPRoute default/reviews", "CORS"]);

    // ReplaceFullPath after a prefix: the prefix half becomes a regex so the whole path
    // is replaced.
    let full = by_uri(StringMatch::Exact("/full".into()));
    assert_eq!(
        forward(&full.action)
            .rewrite
            .as_ref()
            .unwrap()
            .uri_prefix
            .as_deref(),
        Some("/index.html")
    );
    let full_dir = t
        .http
        .iter()
        .find(|r| matches!(uri(r), StringMatch::Regex(p) if p.as_str() == "/full/.*"))
        .expect("regex half of the prefix");
    assert!(uri(full_dir).matches("/full/a/b"));
    assert_eq!(
        forward(&full_dir.action)
            .rewrite
            .as_ref()
            .unwrap()
            .uri_prefix
            .as_deref(),
        Some("/index.html")
    );

    let HttpAction::Redirect(r) = &by_uri(StringMatch::Exact("/old".into())).action else {
        panic!("not a redirect")
    };
    assert_eq!(
        (
            r.scheme.as_deref(),
            r.authority.as_deref(),
            r.path.as_deref(),
            r.status
        ),
        (Some("https"), Some("new.example"), Some("/new"), 302)
    );

    assert_eq!(
        by_uri(StringMatch::Exact("/ext".into())).action,
        HttpAction::DirectResponse(DirectResponse {
            status: 500,
            body: None
        })
    );
    assert_warned(&index, &["filter ExtensionRef is not supported"]);
}

#[test]
fn no_usable_backend_answers_500() {
    let index = mk_index(&docs(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews}
spec:
  parentRefs: [{kind: Service, group: "", name: reviews, port: 9080}]
  rules:
  - matches: [{path: {type: Exact, value: /zero}}]
    backendRefs: [{name: reviews-v1, port: 9080, weight: 0}]
  - matches: [{path: {type: Exact, value: /import}}]
    backendRefs: [{group: multicluster.x-k8s.io, kind: ServiceImport, name: reviews, port: 9080}]
"#,
    ));
    let spec = proxy(&index, &mk_client("default"));
    let t = table(&spec, &format!("{FQDN}:9080"));
    assert_eq!(t.http.len(), 2);
    for r in &t.http {
        assert!(
            matches!(&r.action, HttpAction::DirectResponse(d) if d.status == 500),
            "{r:?}"
        );
    }
    assert_warned(&index, &["ServiceImport is not supported"]);
}

#[test]
fn consumer_routes_override_producer_routes_for_their_namespace() {
    let mut d = docs(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: producer}
spec:
  parentRefs: [{kind: Service, group: "", name: reviews, port: 9080}]
  rules: [{name: producer, backendRefs: [{name: reviews-v1, port: 9080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: consumer, namespace: frontend}
spec:
  parentRefs: [{kind: Service, group: "", name: reviews, namespace: default, port: 9080}]
  rules: [{name: consumer, backendRefs: [{name: reviews-v2, namespace: default, port: 9080}]}]
"#,
    );
    d.push(mk_service("web", "frontend", "10.96.9.1", &[(80, "http")]));
    let index = mk_index(&d);
    let name_for = |ns: &str| {
        let spec = proxy(&index, &mk_client(ns));
        table(&spec, &format!("{FQDN}:9080")).http[0].name.clone()
    };
    assert_eq!(name_for("frontend"), "consumer");
    assert_eq!(name_for("default"), "producer");
    assert_eq!(name_for("elsewhere"), "producer");
}

#[test]
fn virtual_service_wins_over_http_route() {
    let mut d = docs(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews}
spec:
  parentRefs: [{kind: Service, group: "", name: reviews}]
  rules: [{name: gamma, backendRefs: [{name: reviews-v1, port: 9080}]}]
"#,
    );
    d.push(
        r#"
apiVersion: networking.mesh.dev/v1alpha1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http: [{name: vs, route: [{destination: {host: reviews, port: {number: 9080}}}]}]
"#
        .to_owned(),
    );
    let index = mk_index(&d);
    let spec = proxy(&index, &mk_client("default"));
    assert_eq!(table(&spec, &format!("{FQDN}:9080")).http[0].name, "vs");
    assert_warned(
        &index,
        &["HTTPRoute default/reviews", "the VirtualService wins"],
    );
}

#[test]
fn grpc_route_method_matches() {
    let index = mk_index(&[
        mk_service("cart", "shop", "10.96.2.1", &[(7070, "grpc")]),
        mk_service("cart-v2", "shop", "10.96.2.2", &[(7070, "grpc")]),
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: cart, namespace: shop}
spec:
  parentRefs: [{kind: Service, group: "", name: cart}]
  rules:
  - matches:
    - method: {service: hipstershop.CartService, method: AddItem}
    - method: {service: hipstershop.CartService}
      headers: [{name: x-user, value: beta}]
    - method: {method: EmptyCart}
    backendRefs: [{name: cart-v2, port: 7070}]
  - backendRefs: [{name: cart, port: 7070}]
"#
        .to_owned(),
    ]);
    assert!(index.warnings().is_empty(), "{:#?}", warnings(&index));
    let spec = proxy(&index, &mk_client("shop"));
    let t = table(&spec, "cart.shop.svc.cluster.local:7070");
    let uris: Vec<String> = t
        .http
        .iter()
        .map(|r| format!("{:?}", r.matches[0].uri))
        .collect();
    assert_eq!(
        uris,
        [
            r#"Some(Exact("/hipstershop.CartService/AddItem"))"#,
            r#"Some(Prefix("/hipstershop.CartService/"))"#,
            r#"Some(Regex(Pattern("/[^/]+/EmptyCart")))"#,
            "None",
        ]
    );
    assert_eq!(t.http[1].matches[0].headers[0].name, "x-user");
    assert_eq!(
        forward(&t.http[3].action).backends[0].cluster.hostname,
        "cart.shop.svc.cluster.local"
    );
}

#[test]
fn routes_attached_to_gateways_are_not_sidecar_routes() {
    let index = mk_index(&docs(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: edge}
spec:
  parentRefs: [{name: public-gateway, namespace: mesh-system}]
  rules: [{backendRefs: [{name: reviews, port: 9080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: missing}
spec:
  parentRefs: [{kind: Service, group: "", name: nosuch}]
  rules: [{backendRefs: [{name: reviews, port: 9080}]}]
"#,
    ));
    let spec = proxy(&index, &mk_client("default"));
    assert!(spec.routes.is_empty(), "{:?}", spec.routes);
    assert!(
        warnings(&index).iter().all(|w| !w.contains("edge")),
        "{:?}",
        warnings(&index)
    );
    assert_warned(
        &index,
        &[
            "HTTPRoute default/missing",
            "Service default/nosuch not found",
        ],
    );
}
