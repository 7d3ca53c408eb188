//! Index tests, one file per topic, on shared `mk_*` fixtures.
//!
//! Resources are written as YAML and read through [`mesh_api::config::Loader`] (the same
//! path local mode takes), so the tests read like the config users write. Every computed
//! config goes through [`proxy`], which also checks that it passes
//! [`ProxyConfig::new`].

mod clusters;
mod gateway_api;
mod gateways;
mod routes;
mod scope;
mod security;
mod services;

use std::collections::BTreeMap;

use mesh_api::{
    config::{Loader, Resource},
    model::{
        Cluster, ClusterKey, EndpointSet, Forward, HttpAction, Node, ProxyConfig, ProxyConfigSpec,
        ProxyMode, RouteTable, Service,
    },
    spiffe::SpiffeId,
};

use super::{Index, Settings};

/// Parses YAML documents (separated by `---`) into resources; fails on any load error.
pub(super) fn parse(yaml: &str) -> Vec<Resource> {
    let mut loader = Loader::new();
    loader.add_str("test.yaml", yaml);
    let set = loader.finish();
    assert!(
        set.diagnostics.is_empty(),
        "fixture does not load: {:#?}",
        set.diagnostics
    );
    set.resources.into_iter().map(|l| l.resource).collect()
}

/// An index with default settings holding `docs`.
pub(super) fn mk_index(docs: &[String]) -> Index {
    let mut index = Index::new(Settings::default());
    index.replace_all(parse(&docs.join("\n---\n")));
    index
}

/// A Kubernetes Service `name` in `ns` selecting `app: <name>`, with `ports` as
/// `(port, name)`.
pub(super) fn mk_service(name: &str, ns: &str, vip: &str, ports: &[(u16, &str)]) -> String {
    let ports: Vec<String> = ports
        .iter()
        .map(|(p, n)| format!("  - {{port: {p}, name: {n}}}"))
        .collect();
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  clusterIP: {vip}\n  selector: {{app: {name}}}\n  ports:\n{}\n",
        ports.join("\n")
    )
}

/// A WorkloadEntry `name` in `ns` at `ip` with `labels` and service account `sa`.
pub(super) fn mk_workload(
    name: &str,
    ns: &str,
    ip: &str,
    sa: &str,
    labels: &[(&str, &str)],
) -> String {
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!(
        "apiVersion: networking.mesh.dev/v1alpha1\nkind: WorkloadEntry\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  address: {ip}\n  serviceAccount: {sa}\n  labels: {{{}}}\n",
        labels.join(", ")
    )
}

/// The node of a sidecar for pod `pod` in `ns` with service account `sa`.
pub(super) fn mk_node(ns: &str, pod: &str, sa: &str) -> Node {
    Node {
        id: format!("sidecar~10.0.0.1~{pod}.{ns}"),
        pod_name: pod.to_owned(),
        namespace: ns.to_owned(),
        ip: "10.0.0.1".parse().unwrap(),
        identity: SpiffeId::new("cluster.local", ns, sa).unwrap(),
        labels: BTreeMap::new(),
        mode: ProxyMode::Sidecar,
        proxy_version: String::new(),
    }
}

/// A client sidecar in `ns` that names no known workload.
pub(super) fn mk_client(ns: &str) -> Node {
    mk_node(ns, "client", "client")
}

/// The config of `node`, checked to be valid and deterministic.
pub(super) fn proxy(index: &Index, node: &Node) -> ProxyConfigSpec {
    let spec = index.proxy_config(node);
    if let Err(e) = ProxyConfig::new(spec.clone()) {
        panic!(
            "computed config is invalid: {e}\n{}",
            serde_json::to_string_pretty(&spec).unwrap()
        );
    }
    assert_eq!(
        serde_json::to_string(&index.proxy_config(node)).unwrap(),
        serde_json::to_string(&spec).unwrap(),
        "not deterministic"
    );
    spec
}

/// `reviews` in `default` as in the Istio Bookinfo sample: a service on 9080 and three
/// versions of workloads.
pub(super) fn bookinfo_reviews() -> Vec<String> {
    vec![
        mk_service("reviews", "default", "10.96.0.10", &[(9080, "http")]),
        mk_workload(
            "reviews-v1",
            "default",
            "10.1.0.1",
            "reviews",
            &[("app", "reviews"), ("version", "v1")],
        ),
        mk_workload(
            "reviews-v2",
            "default",
            "10.1.0.2",
            "reviews",
            &[("app", "reviews"), ("version", "v2")],
        ),
        mk_workload(
            "reviews-v3",
            "default",
            "10.1.0.3",
            "reviews",
            &[("app", "reviews"), ("version", "v3")],
        ),
    ]
}

pub(super) const FQDN: &str = "reviews.default.svc.cluster.local";

pub(super) fn service<'a>(spec: &'a ProxyConfigSpec, hostname: &str) -> &'a Service {
    spec.services
        .iter()
        .find(|s| s.hostname == hostname)
        .unwrap_or_else(|| panic!("no service {hostname}"))
}

pub(super) fn endpoints<'a>(spec: &'a ProxyConfigSpec, hostname: &str) -> &'a EndpointSet {
    spec.endpoints
        .iter()
        .find(|s| s.hostname == hostname)
        .unwrap_or_else(|| panic!("no endpoints for {hostname}"))
}

pub(super) fn table<'a>(spec: &'a ProxyConfigSpec, name: &str) -> &'a RouteTable {
    spec.routes
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| {
            let names: Vec<_> = spec.routes.iter().map(|r| &r.name).collect();
            panic!("no route table {name}; have {names:?}")
        })
}

pub(super) fn cluster<'a>(spec: &'a ProxyConfigSpec, key: &ClusterKey) -> &'a Cluster {
    spec.clusters
        .iter()
        .find(|c| &c.key == key)
        .unwrap_or_else(|| panic!("no cluster {key}"))
}

pub(super) fn forward(action: &HttpAction) -> &Forward {
    match action {
        HttpAction::Forward(f) => f,
        other => panic!("not a forward: {other:?}"),
    }
}

/// The warnings of `index` as display strings.
pub(super) fn warnings(index: &Index) -> Vec<String> {
    index.warnings().iter().map(ToString::to_string).collect()
}

/// Asserts some warning contains every one of `parts`.
#[track_caller]
pub(super) fn assert_warned(index: &Index, parts: &[&str]) {
    let ws = warnings(index);
    assert!(
        ws.iter().any(|w| parts.iter().all(|p| w.contains(p))),
        "no warning with {parts:?} in {ws:#?}"
    );
}
