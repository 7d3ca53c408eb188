//! `meshctl uninstall`: deletion order (webhooks first, CRDs last), the label sweeps,
//! 404 tolerance, `--purge`, the namespace rule and the confirmation.

use http::Method;
use meshctl::uninstall::{self, Options};
use serde_json::{Value, json};

use crate::apiserver::{ApiServer, Reply, Seen, fixture, fixture_json};
use crate::bounded;
use crate::objects::{self, PATHS};

const PART_OF: &str = "labelSelector=app.kubernetes.io%2Fpart-of%3Dmesh";

fn list(kind: &str, api_version: &str, items: Vec<Value>) -> String {
    json!({"kind": format!("{kind}List"), "apiVersion": api_version, "metadata": {"resourceVersion": "9900"}, "items": items}).to_string()
}

/// A listed object (no kind/apiVersion in items, as the apiserver sends them).
fn item(name: &str, namespace: Option<&str>) -> Value {
    let mut v = json!({"metadata": {"name": name, "uid": format!("uid-{name}"), "resourceVersion": "1700", "labels": {"app.kubernetes.io/part-of": "mesh"}}});
    if let Some(ns) = namespace {
        v["metadata"]["namespace"] = json!(ns);
    }
    v
}

fn options(purge: bool) -> Options {
    Options {
        namespace: "mesh-system".to_owned(),
        purge,
    }
}

/// Plans the sweeps and deletes of [`objects::installation`]: a Service only the sweep
/// finds, the validating webhook already gone, the namespace ours.
fn plan(api: &mut ApiServer) {
    let sweeps = [
        (
            "/api/v1/namespaces/mesh-system/serviceaccounts",
            "ServiceAccount",
            "v1",
            vec![],
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            "ClusterRole",
            "rbac.authorization.k8s.io/v1",
            vec![],
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            "ClusterRoleBinding",
            "rbac.authorization.k8s.io/v1",
            vec![],
        ),
        (
            "/api/v1/namespaces/mesh-system/services",
            "Service",
            "v1",
            vec![
                item("mesh-control", Some("mesh-system")),
                item("mesh-control-metrics", Some("mesh-system")),
            ],
        ),
        (
            "/apis/apps/v1/namespaces/mesh-system/deployments",
            "Deployment",
            "apps/v1",
            vec![item("mesh-control", Some("mesh-system"))],
        ),
        (
            "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
            "MutatingWebhookConfiguration",
            "admissionregistration.k8s.io/v1",
            vec![],
        ),
        (
            "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
            "ValidatingWebhookConfiguration",
            "admissionregistration.k8s.io/v1",
            vec![],
        ),
    ];
    for (path, kind, api_version, items) in sweeps {
        api.once(
            Method::GET,
            &format!("{path}?{PART_OF}"),
            Reply::ok(list(kind, api_version, items)),
        );
    }
    api.once(
        Method::GET,
        "/api/v1/configmaps?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dmesh-control",
        Reply::fixture("configmaps-root-cert.json"),
    );
    api.once(
        Method::DELETE,
        PATHS[7],
        Reply::fixture("delete-success.json"),
    );
    api.once(
        Method::DELETE,
        PATHS[8],
        Reply::status(404, fixture("not-found-webhook.json")),
    );
    for path in [
        PATHS[6],
        PATHS[5],
        "/api/v1/namespaces/mesh-system/services/mesh-control-metrics",
        PATHS[4],
        PATHS[3],
        PATHS[2],
        "/api/v1/namespaces/default/configmaps/mesh-root-cert",
        "/api/v1/namespaces/mesh-system/configmaps/mesh-root-cert",
    ] {
        api.once(Method::DELETE, path, Reply::fixture("delete-success.json"));
    }
    api.once(
        Method::GET,
        PATHS[1],
        Reply::fixture("namespace-mesh-system.json"),
    );
    api.once(
        Method::DELETE,
        PATHS[1],
        Reply::fixture("namespace-mesh-system-terminating.json"),
    );
}

fn deletes(log: &[Seen]) -> Vec<&str> {
    log.iter()
        .filter(|s| s.method == Method::DELETE)
        .map(|s| s.path.as_str())
        .collect()
}

#[tokio::test]
async fn deletes_webhooks_first_then_workloads_rbac_bundles_and_the_namespace() {
    let mut api = ApiServer::new();
    plan(&mut api);
    let cluster = api.start();
    let mut out = Vec::new();
    let report = bounded(uninstall::uninstall(
        &cluster,
        objects::installation(),
        &options(false),
        &mut out,
    ))
    .await
    .unwrap();
    let out = String::from_utf8(out).unwrap();
    let log = api.finish();

    assert_eq!(
        deletes(&log),
        [
            PATHS[7],
            PATHS[8],
            PATHS[6],
            PATHS[5],
            "/api/v1/namespaces/mesh-system/services/mesh-control-metrics",
            PATHS[4],
            PATHS[3],
            PATHS[2],
            "/api/v1/namespaces/default/configmaps/mesh-root-cert",
            "/api/v1/namespaces/mesh-system/configmaps/mesh-root-cert",
            PATHS[1],
        ],
        "webhooks first; the CRD is kept without --purge"
    );
    for delete in log.iter().filter(|s| s.method == Method::DELETE) {
        assert_eq!(
            delete.body["propagationPolicy"],
            "Background",
            "{}",
            delete.line()
        );
    }
    assert_eq!(report.deleted.len(), 10);
    assert_eq!(
        report.already_gone,
        ["ValidatingWebhookConfiguration mesh-validator"]
    );
    for expected in [
        "✔ deleted MutatingWebhookConfiguration mesh-sidecar-injector\n",
        "- ValidatingWebhookConfiguration mesh-validator: already gone\n",
        "✔ deleted Service mesh-system/mesh-control-metrics\n",
        "✔ deleted ConfigMap default/mesh-root-cert\n",
        "✔ deleted Namespace mesh-system\n",
        "✔ the mesh is uninstalled from namespace mesh-system: 10 objects deleted, 1 already gone\n",
        "namespace mesh-system is terminating",
        "`meshctl uninstall --purge` deletes them",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    assert!(
        !out.contains("mesh-control-leader"),
        "only mesh-root-cert ConfigMaps go"
    );
}

#[tokio::test]
async fn purge_also_deletes_the_crds_last_and_warns() {
    let mut api = ApiServer::new();
    plan(&mut api);
    let mut crd = fixture_json("crd-virtualservices-established.json");
    crd.as_object_mut().unwrap().remove("kind");
    crd.as_object_mut().unwrap().remove("apiVersion");
    api.once(
        Method::GET,
        &format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions?{PART_OF}"),
        Reply::ok(list(
            "CustomResourceDefinition",
            "apiextensions.k8s.io/v1",
            vec![crd, item("destinationrules.networking.mesh.dev", None)],
        )),
    );
    api.once(
        Method::DELETE,
        PATHS[0],
        Reply::fixture("delete-success.json"),
    );
    api.once(
        Method::DELETE,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/destinationrules.networking.mesh.dev",
        Reply::fixture("delete-success.json"),
    );
    let cluster = api.start();
    let mut out = Vec::new();
    let report = bounded(uninstall::uninstall(
        &cluster,
        objects::installation(),
        &options(true),
        &mut out,
    ))
    .await
    .unwrap();
    let out = String::from_utf8(out).unwrap();
    let log = api.finish();
    let deleted = deletes(&log);
    assert_eq!(deleted[0], PATHS[7], "webhooks still first");
    assert_eq!(
        deleted[deleted.len() - 3..],
        [
            PATHS[1],
            PATHS[0],
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/destinationrules.networking.mesh.dev",
        ],
        "the CRDs after the namespace"
    );
    assert_eq!(report.deleted.len(), 12);
    assert!(
        out.starts_with(
            "⚠ --purge deletes the mesh's CRDs and with them every VirtualService, DestinationRule"
        ),
        "{out}"
    );
    assert!(!out.contains("are kept"), "{out}");
}

#[tokio::test]
async fn running_twice_finds_everything_gone() {
    let mut api = ApiServer::new();
    api.always(
        Method::GET,
        "/api/v1/configmaps",
        Reply::ok(list("ConfigMap", "v1", vec![])),
    );
    for (path, kind) in [
        (
            "/api/v1/namespaces/mesh-system/serviceaccounts",
            "ServiceAccount",
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            "ClusterRole",
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            "ClusterRoleBinding",
        ),
        ("/api/v1/namespaces/mesh-system/services", "Service"),
        (
            "/apis/apps/v1/namespaces/mesh-system/deployments",
            "Deployment",
        ),
        (
            "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
            "MutatingWebhookConfiguration",
        ),
        (
            "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
            "ValidatingWebhookConfiguration",
        ),
    ] {
        api.once(Method::GET, path, Reply::ok(list(kind, "v1", vec![])));
    }
    let gone = fixture("not-found-webhook.json");
    api.always(Method::GET, PATHS[1], Reply::status(404, gone.clone()));
    for path in &PATHS[1..] {
        api.always(Method::DELETE, path, Reply::status(404, gone.clone()));
    }
    let cluster = api.start();
    let mut out = Vec::new();
    let report = bounded(uninstall::uninstall(
        &cluster,
        objects::installation(),
        &options(false),
        &mut out,
    ))
    .await
    .unwrap();
    assert!(report.deleted.is_empty());
    assert_eq!(report.already_gone.len(), 8, "{report:?}");
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains("✔ the mesh is uninstalled from namespace mesh-system: 0 objects deleted, 8 already gone"),
        "{out}"
    );
    api.finish();
}

#[tokio::test]
async fn keeps_a_namespace_meshctl_did_not_create() {
    let mut api = ApiServer::new();
    api.always(
        Method::GET,
        "/api/v1/configmaps",
        Reply::ok(list("ConfigMap", "v1", vec![])),
    );
    for path in [
        "/api/v1/namespaces/mesh-system/serviceaccounts",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        "/api/v1/namespaces/mesh-system/services",
        "/apis/apps/v1/namespaces/mesh-system/deployments",
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
    ] {
        api.always(Method::GET, path, Reply::ok(list("Thing", "v1", vec![])));
    }
    for path in &PATHS[2..] {
        api.always(Method::DELETE, path, Reply::fixture("delete-success.json"));
    }
    let mut ns = fixture_json("namespace-mesh-system.json");
    ns["metadata"]["labels"] =
        json!({"kubernetes.io/metadata.name": "mesh-system", "team": "platform"});
    api.once(Method::GET, PATHS[1], Reply::ok(ns.to_string()));
    let cluster = api.start();
    let mut out = Vec::new();
    let report = bounded(uninstall::uninstall(
        &cluster,
        objects::installation(),
        &options(false),
        &mut out,
    ))
    .await
    .unwrap();
    let log = api.finish();
    assert!(!deletes(&log).contains(&PATHS[1]), "the namespace is kept");
    assert_eq!(
        report.kept,
        [
            "Namespace mesh-system: meshctl did not create it (no label app.kubernetes.io/part-of=mesh); delete it yourself if it is empty"
        ]
    );
}

#[test]
fn asks_on_a_terminal_and_refuses_without_one() {
    let opts = options(false);
    let err = uninstall::confirm(&opts, false, &mut &b""[..], &mut Vec::new()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "refusing to uninstall without confirmation: stdin is not a terminal; pass -y to confirm"
    );

    let mut out = Vec::new();
    assert!(uninstall::confirm(&opts, true, &mut &b"y\n"[..], &mut out).unwrap());
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "Remove the mesh from namespace mesh-system? [y/N] "
    );
    assert!(uninstall::confirm(&opts, true, &mut &b"YES\n"[..], &mut Vec::new()).unwrap());
    assert!(!uninstall::confirm(&opts, true, &mut &b"\n"[..], &mut Vec::new()).unwrap());
    assert!(!uninstall::confirm(&opts, true, &mut &b"no\n"[..], &mut Vec::new()).unwrap());

    let mut out = Vec::new();
    assert!(!uninstall::confirm(&options(true), true, &mut &b""[..], &mut out).unwrap());
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.starts_with("⚠ --purge deletes the mesh's CRDs"),
        "{out}"
    );
    assert!(
        out.ends_with("Remove the mesh from namespace mesh-system and delete its CRDs? [y/N] ")
    );
}
