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
