//! Gateways and gateway-bound VirtualServices → listeners of gateway proxies.

use mesh_api::model::{Node, ProxyMode};

use super::*;

fn mk_gateway(name: &str, ns: &str, port: u16, hosts: &[&str]) -> String {
    format!(
        "apiVersion: networking.mesh.dev/v1alpha1\nkind: Gateway\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  selector: {{mesh: ingressgateway}}\n  servers:\n  - port: {{number: {port}, name: http, protocol: HTTP}}\n    hosts: [{}]\n",
        hosts.join(", ")
    )
}

fn mk_gateway_vs(name: &str, ns: &str, hosts: &[&str], gateways: &[&str], dest: &str) -> String {
    format!(
        "apiVersion: networking.mesh.dev/v1alpha1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  hosts: [{}]\n  gateways: [{}]\n  http:\n  - route:\n    - destination: {{host: {dest}}}\n",
        hosts.join(", "),
        gateways.join(", ")
    )
}

/// The ingress gateway's workload and Service (80 → 8080) in `mesh-system`.
fn ingress() -> Vec<String> {
    vec![
        mk_workload(
            "ingress-1",
            "mesh-system",
            "10.1.9.1",
            "mesh-ingressgateway",
            &[("app", "mesh-ingressgateway"), ("mesh", "ingressgateway")],
        ),
        "apiVersion: v1\nkind: Service\nmetadata: {name: mesh-ingressgateway, namespace: mesh-system}\nspec:\n  clusterIP: 10.96.9.1\n  selector: {app: mesh-ingressgateway}\n  ports:\n  - {port: 80, name: http2, targetPort: 8080}\n".to_owned(),
    ]
}

fn mk_gateway_node() -> Node {
    Node {
        mode: ProxyMode::Gateway,
        ..mk_node("mesh-system", "ingress-1", "mesh-ingressgateway")
    }
}

fn frontend() -> Vec<String> {
    vec![
        mk_service("frontend", "shop", "10.96.1.1", &[(80, "http")]),
        mk_workload(
            "frontend-1",
            "shop",
            "10.1.1.1",
            "frontend",
            &[("app", "frontend")],
        ),
    ]
}

#[test]
fn gateway_proxy_gets_a_listener_per_server_with_bound_virtual_hosts() {
    let mut docs = ingress();
    docs.extend(frontend());
    docs.push(mk_gateway("public", "shop", 80, &["\"*.example.com\""]));
    docs.push(mk_gateway_vs(
        "shop",
        "shop",
        &["shop.example.com", "shop.example.org"],
        &["public"],
        "frontend",
    ));
    // Bound to another gateway: not served here.
    docs.push(mk_gateway_vs(
        "other",
        "shop",
        &["other.example.com"],
        &["shop/private"],
        "frontend",
    ));
    let index = mk_index(&docs);
    let spec = proxy(&index, &mk_gateway_node());

    assert_eq!(spec.listeners.len(), 1, "{:#?}", spec.listeners);
    let l = &spec.listeners[0];
    assert_eq!((l.name.as_str(), l.port), ("http.80", 80));
    assert_eq!(l.bind_port, Some(8080), "the Service maps 80 to 8080");
    assert_eq!(l.virtual_hosts.len(), 1);
    let v = &l.virtual_hosts[0];
    assert_eq!(v.name, "shop/shop:80");
    // Only the host the server exposes.
    assert_eq!(v.hostnames, ["shop.example.com"]);
    let fwd = forward(&v.http[0].action);
    assert_eq!(
        fwd.backends[0].cluster,
        ClusterKey::new("frontend.shop.svc.cluster.local".to_owned(), 80)
    );
    assert!(
        spec.routes.is_empty(),
        "gateways get no service route tables"
    );
    assert_warned(&index, &["private", "does not exist"]);
}

#[test]
fn gateway_bound_virtual_services_stay_away_from_sidecars_unless_bound_to_mesh() {
    let mut docs = frontend();
    docs.push(mk_gateway("public", "shop", 80, &["\"*\""]));
    docs.push(mk_gateway_vs(
        "gw-only",
        "shop",
        &["frontend"],
        &["public"],
        "frontend",
    ));
    let index = mk_index(&docs);
    let sidecar = proxy(&index, &mk_client("shop"));
    assert!(sidecar.routes.is_empty(), "{:#?}", sidecar.routes);
    assert!(sidecar.listeners.is_empty());

    docs.pop();
    docs.push(mk_gateway_vs(
        "both",
        "shop",
        &["frontend"],
        &["public", "mesh"],
        "frontend",
    ));
    let index = mk_index(&docs);
    let sidecar = proxy(&index, &mk_client("shop"));
    assert_eq!(
        table(&sidecar, "frontend.shop.svc.cluster.local:80").port,
        80
    );
    assert!(sidecar.listeners.is_empty());
}

#[test]
fn selector_and_server_host_namespaces_decide_what_a_gateway_serves() {
    let mut docs = ingress();
    docs.extend(frontend());
    docs.push(mk_gateway(
        "public",
        "shop",
        80,
        &["\"other/*\"", "\"./shop.example.com\""],
    ));
    docs.push(mk_gateway_vs(
        "shop",
        "shop",
        &["shop.example.com"],
        &["public"],
        "frontend",
    ));
    docs.push(mk_gateway_vs(
        "wild",
        "shop",
        &["\"*.example.com\""],
        &["shop/public"],
        "frontend",
    ));
    let index = mk_index(&docs);
    let spec = proxy(&index, &mk_gateway_node());
    let l = &spec.listeners[0];
    // `wild` from `shop` may only claim the `./shop.example.com` host, which `shop` (first
    // by name) already has.
    let names: Vec<_> = l.virtual_hosts.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["shop/shop:80"]);

    // A gateway proxy the selector does not pick gets nothing.
    let mut node = mk_gateway_node();
    node.pod_name = "unknown".to_owned();
    node.labels = [("mesh".to_owned(), "egressgateway".to_owned())].into();
    assert!(proxy(&index, &node).listeners.is_empty());
    // Without a known workload the server port is bound as is.
    node.labels = [("mesh".to_owned(), "ingressgateway".to_owned())].into();
    assert_eq!(proxy(&index, &node).listeners[0].bind_port, None);
}

#[test]
fn https_servers_become_tls_listeners_naming_their_credentials() {
    let mut docs = ingress();
    docs.extend(frontend());
    docs.push(
        "apiVersion: networking.mesh.dev/v1alpha1\nkind: Gateway\nmetadata: {name: public, namespace: shop}\nspec:\n  selector: {mesh: ingressgateway}\n  servers:\n  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [shop.example.com]\n    tls: {mode: SIMPLE, credentialName: shop-cert}\n  - port: {number: 443, name: https-api, protocol: HTTPS}\n    hosts: [\"*.api.example.com\"]\n    tls: {mode: SIMPLE, credentialName: api-cert}\n  - port: {number: 443, name: http-mixed, protocol: HTTP}\n    hosts: [mixed.example.com]\n  - port: {number: 8443, name: https-pass, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls: {mode: PASSTHROUGH}\n  - port: {number: 9443, name: https-unset, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls: {credentialName: shop-cert}\n  - port: {number: 9444, name: https-mutual, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls: {mode: MUTUAL, credentialName: shop-cert}\n  - port: {number: 9445, name: tls, protocol: TLS}\n    hosts: [\"*\"]\n    tls: {mode: PASSTHROUGH}\n".to_owned(),
    );
    docs.push(mk_gateway_vs(
        "shop",
        "shop",
        &["shop.example.com", "v1.api.example.com"],
        &["public"],
        "frontend",
    ));
    let index = mk_index(&docs);
    let spec = proxy(&index, &mk_gateway_node());

    assert_eq!(spec.listeners.len(), 1, "{:#?}", spec.listeners);
    let l = &spec.listeners[0];
    assert_eq!(l.port, 443);
    assert_eq!(l.bind_port, None, "the Service does not expose 443");
    let tls = l.tls.as_ref().expect("an HTTPS server terminates TLS");
    let certs: Vec<(&str, Vec<&str>)> = tls
        .certificates
        .iter()
        .map(|c| {
            (
                c.credential_name.as_str(),
                c.hosts.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        certs,
        [
            ("api-cert", vec!["*.api.example.com"]),
            ("shop-cert", vec!["shop.example.com"]),
        ]
    );
    // Routed as HTTP behind TLS: the VirtualService's hosts the servers expose.
    assert_eq!(l.virtual_hosts.len(), 1);
    assert_eq!(
        l.virtual_hosts[0].hostnames,
        ["shop.example.com", "v1.api.example.com"]
    );
    assert_warned(&index, &["servers[2]", "port 443", "HTTPS server"]);
    assert_warned(&index, &["servers[3]", "PASSTHROUGH", "skipped"]);
    assert_warned(&index, &["servers[4]", "unset", "mode: SIMPLE"]);
    assert_warned(&index, &["servers[5]", "MUTUAL", "only SIMPLE"]);
    assert_warned(&index, &["servers[6]", "protocol TLS"]);
}

#[test]
fn https_without_a_credential_is_reported_and_skipped() {
    let mut docs = ingress();
    docs.extend(frontend());
    docs.push(
        "apiVersion: networking.mesh.dev/v1alpha1\nkind: Gateway\nmetadata: {name: public, namespace: shop}\nspec:\n  selector: {mesh: ingressgateway}\n  servers:\n  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls: {mode: SIMPLE}\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n".to_owned(),
    );
    docs.push(mk_gateway_vs(
        "shop",
        "shop",
        &["shop.example.com"],
        &["public"],
        "frontend",
    ));
    let index = mk_index(&docs);
    let spec = proxy(&index, &mk_gateway_node());
    let ports: Vec<(u16, bool)> = spec
        .listeners
        .iter()
        .map(|l| (l.port, l.tls.is_some()))
        .collect();
    assert_eq!(ports, [(80, false)], "the HTTP server is still served");
    assert_warned(&index, &["servers[0]", "credentialName is required"]);
}

// === Gateway API Gateways ===

/// A Gateway API Gateway `public` in `shop`: HTTP on 80 for `*.example.com`, HTTPS on 443
/// for `shop.example.com` with Secret `shop-cert`, routes from all namespaces on 443.
fn kube_gateway(class: &str) -> String {
    format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: public, namespace: shop}}
spec:
  gatewayClassName: {class}
  listeners:
  - name: http
    port: 80
    protocol: HTTP
    hostname: "*.example.com"
  - name: https
    port: 443
    protocol: HTTPS
    hostname: shop.example.com
    tls:
      certificateRefs: [{{name: shop-cert}}]
    allowedRoutes:
      namespaces: {{from: All}}
  - name: tls
    port: 8443
    protocol: TLS
    tls: {{mode: Passthrough}}
"#
    )
}

fn kube_route(name: &str, ns: &str, hostnames: &[&str], parent: &str) -> String {
    format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: {ns}}}
spec:
  parentRefs: [{parent}]
  hostnames: [{}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /api}}}}]
    backendRefs: [{{name: frontend, namespace: shop, port: 80}}]
  - backendRefs: [{{name: frontend, namespace: shop, port: 80}}]
"#,
        hostnames.join(", ")
    )
}

#[test]
fn gateway_api_gateways_of_class_mesh_serve_attached_http_routes() {
    let mut docs = ingress();
    docs.extend(frontend());
    docs.push(kube_gateway("mesh"));
    docs.push(kube_route(
        "shop",
        "shop",
        &["shop.example.com", "other.example.org"],
        "{name: public}",
    ));
    let index = mk_index(&docs);
    let spec = proxy(&index, &mk_gateway_node());

    let ports: Vec<(u16, Option<u16>)> = spec
        .listeners
        .iter()
        .map(|l| (l.port, l.bind_port))
        .collect();
    assert_eq!(
        ports,
        [(80, Some(8080)), (443, None)],
        "{:#?}",
        spec.listeners
    );
    let [http, https] = &spec.listeners[..] else {
        unreachable!()
    };
    assert_eq!(http.tls, None);
    let tls = https
        .tls
        .as_ref()
        .expect("the HTTPS listener terminates TLS");
    assert_eq!(tls.certificates.len(), 1);
    assert_eq!(tls.certificates[0].credential_name, "shop-cert");
    assert_eq!(tls.certificates[0].hosts, ["shop.example.com"]);
    for l in [http, https] {
        assert_eq!(l.virtual_hosts.len(), 1, "{l:#?}");
        let v = &l.virtual_hosts[0];
        assert_eq!(v.name, format!("HTTPRoute:shop/shop:{}", l.port));
        // Route hostnames ∩ the listener's hostname.
        assert_eq!(v.hostnames, ["shop.example.com"]);
        // Gateway API precedence: the /api prefix (exact, then `/api/`) before the
        // catch-all.
        let uris: Vec<String> = v
            .http
            .iter()
            .map(|r| format!("{:?}", r.matches[0].uri))
            .collect();
        assert_eq!(uris.len(), 3, "{uris:?}");
        assert!(
            uris[0].contains("\"/api\"")
                && uris[1].contains("\"/api/\"")
                && !uris[2].contains("api"),
            "{uris:?}"
        );
        assert_eq!(
            forward(&v.http[2].action).backends[0].cluster,
            ClusterKey::new("frontend.shop.svc.cluster.local".to_owned(), 80)
        );
    }
    assert_warned(&index, &["listeners[2] (tls)", "protocol TLS"]);

    // Of another class: another controller's, nothing served and nothing reported.
    let mut other = docs.clone();
    other[docs.len() - 2] = kube_gateway("istio");
    let index = mk_index(&other);
    assert!(proxy(&index, &mk_gateway_node()).listeners.is_empty());
    assert!(warnings(&index).is_empty(), "{:#?}", warnings(&index));
}

#[test]
fn gateway_api_section_names_hostnames_and_allowed_namespaces_decide_attachment() {
    let mut docs = ingress();
    docs.extend(frontend());
    docs.push(kube_gateway("mesh"));
    // From another namespace: the HTTP listener allows only its own (Same, the default),
    // the HTTPS one routes from all namespaces.
    docs.push(kube_route(
        "foreign",
        "tenant",
        &["\"*.example.com\""],
        "{name: public, namespace: shop}",
    ));
    let index = mk_index(&docs);
    let spec = proxy(&index, &mk_gateway_node());
    let names = |spec: &mesh_api::model::ProxyConfigSpec, port: u16| -> Vec<String> {
        let l = spec.listeners.iter().find(|l| l.port == port).unwrap();
        l.virtual_hosts.iter().map(|v| v.name.clone()).collect()
    };
    assert!(names(&spec, 80).is_empty());
    assert_eq!(names(&spec, 443), ["HTTPRoute:tenant/foreign:443"]);

    // Only the HTTPS listener, by section name; no hostnames: the listener's. First by
    // namespace and name, it takes the host from `foreign`.
    docs.push(kube_route(
        "secure",
        "shop",
        &[],
        "{name: public, sectionName: https}",
    ));
    docs.push(kube_route(
        "missing",
        "shop",
        &[],
        "{name: public, sectionName: grpc}",
    ));
    let index = mk_index(&docs);
    let spec = proxy(&index, &mk_gateway_node());
    assert!(names(&spec, 80).is_empty());
    assert_eq!(names(&spec, 443), ["HTTPRoute:shop/secure:443"]);
    let https = spec.listeners.iter().find(|l| l.port == 443).unwrap();
    assert_eq!(https.virtual_hosts[0].hostnames, ["shop.example.com"]);
    assert_warned(&index, &["parentRefs[0]", "no listener named \"grpc\""]);
}
