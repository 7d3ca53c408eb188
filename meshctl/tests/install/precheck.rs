//! `meshctl precheck`: permissions from access reviews derived from the rendered objects,
//! other meshes, CRD ownership, and an unreachable cluster.

use http::Method;
use meshctl::precheck;
use serde_json::{Value, json};

use crate::apiserver::{ApiServer, Reply, Seen, fixture_json};
use crate::bounded;
use crate::objects::{self, PATHS};

const REVIEWS: &str = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";

/// Answers access reviews: denied when `deny(attributes)`, else allowed.
fn reviews(deny: impl Fn(&Value) -> bool + Send + 'static) -> Reply {
    Reply::with(move |seen| {
        let attrs = &seen.body["spec"]["resourceAttributes"];
        let name = if deny(attrs) {
            "ssar-denied.json"
        } else {
            "ssar-allowed.json"
        };
        let mut review = fixture_json(name);
        review["spec"] = seen.body["spec"].clone();
        (201, review.to_string())
    })
}

fn empty(kind: &str) -> Reply {
    Reply::ok(
        json!({"kind": format!("{kind}List"), "apiVersion": "v1", "metadata": {"resourceVersion": "88213"}, "items": []})
            .to_string(),
    )
}

/// Plans a precheck of [`objects::installation`]; `istio` puts Istio in the cluster;
/// `mesh_control` answers the search for other mesh-control Deployments.
fn plan(api: &mut ApiServer, istio: bool, crd: Reply, mesh_control: Reply) {
    api.once(Method::GET, "/version", Reply::fixture("version.json"));
    api.once(
        Method::GET,
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
        if istio {
            Reply::fixture("mutatingwebhookconfigurations-istio.json")
        } else {
            empty("MutatingWebhookConfiguration")
        },
    );
    api.once(
        Method::GET,
        "/apis/apps/v1/deployments?fieldSelector=metadata.name%3Distiod",
        if istio {
            Reply::fixture("deployments-istiod.json")
        } else {
            empty("Deployment")
        },
    );
    api.once(
        Method::GET,
        "/apis/apps/v1/deployments?fieldSelector=metadata.name%3Dmesh-control",
        mesh_control,
    );
    api.once(Method::GET, PATHS[0], crd);
}

fn crd_not_found() -> Reply {
    Reply::status(
        404,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "customresourcedefinitions.apiextensions.k8s.io \"virtualservices.networking.mesh.dev\" not found", "reason": "NotFound", "details": {"name": "virtualservices.networking.mesh.dev", "group": "apiextensions.k8s.io", "kind": "customresourcedefinitions"}, "code": 404}).to_string(),
    )
}

fn reviewed(log: &[Seen]) -> Vec<String> {
    log.iter()
        .filter(|s| s.path == REVIEWS)
        .map(|s| {
            let a = &s.body["spec"]["resourceAttributes"];
            format!(
                "{} {}/{} {}",
                a["verb"].as_str().unwrap(),
                a["group"].as_str().unwrap(),
                a["resource"].as_str().unwrap(),
                a["namespace"].as_str().unwrap_or("*")
            )
        })
        .collect()
}

#[tokio::test]
async fn reports_a_denied_permission_and_an_istio_install() {
    let mut api = ApiServer::new();
    plan(&mut api, true, crd_not_found(), empty("Deployment"));
    api.always(
        Method::POST,
        REVIEWS,
        reviews(|a| a["resource"] == "customresourcedefinitions" && a["verb"] == "create"),
    );
    let cluster = api.start();
    let mut out = Vec::new();
    let report = bounded(precheck::precheck(
        &cluster,
        objects::installation(),
        "mesh-system",
        &mut out,
    ))
    .await
    .unwrap();
    let out = String::from_utf8(out).unwrap();
    let log = api.finish();

    // One review per (verb, resource, namespace) the install needs, derived from the objects.
    let asked = reviewed(&log);
    assert_eq!(asked.len(), 22, "{asked:#?}");
    for expected in [
        "create apiextensions.k8s.io/customresourcedefinitions *",
        "get apiextensions.k8s.io/customresourcedefinitions *",
        "patch /namespaces *",
        "create /serviceaccounts mesh-system",
        "patch rbac.authorization.k8s.io/clusterroles *",
        "create apps/deployments mesh-system",
        "get apps/deployments mesh-system",
        "create admissionregistration.k8s.io/validatingwebhookconfigurations *",
    ] {
        assert!(
            asked.iter().any(|a| a == expected),
            "no review of {expected:?}: {asked:#?}"
        );
    }

    assert_eq!(
        report.failures,
        [
            "missing permission: create customresourcedefinitions.apiextensions.k8s.io cluster-wide; installing the mesh needs it (usually a cluster-admin does the install)"
        ]
    );
    assert_eq!(report.warnings.len(), 2, "{:?}", report.warnings);
    assert!(report.warnings[0].starts_with("Istio's sidecar injector is installed (MutatingWebhookConfiguration istio-sidecar-injector): Istio and the mesh would both inject a sidecar"));
    assert!(
        report.warnings[1]
            .starts_with("an Istio control plane runs (Deployment istio-system/istiod)")
    );
    for expected in [
        "✔ cluster reachable: https://127.0.0.1:6443 (context kind-mesh)\n",
        "✔ Kubernetes v1.32.2 is supported (1.32 or newer; native sidecar containers available)\n",
        "✗ missing permission: create customresourcedefinitions.apiextensions.k8s.io cluster-wide",
        "⚠ Istio's sidecar injector is installed",
        "✔ CRDs: 1 to create\n",
        "1 check(s) failed; fix them and run `meshctl precheck` again\n",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    assert!(!out.contains("no other service mesh"), "{out}");
}

#[tokio::test]
async fn passes_on_a_ready_cluster() {
    let mut api = ApiServer::new();
    plan(&mut api, false, crd_not_found(), empty("Deployment"));
    api.always(Method::POST, REVIEWS, reviews(|_| false));
    let cluster = api.start();
    let mut out = Vec::new();
    let report = bounded(precheck::precheck(
        &cluster,
        objects::installation(),
        "mesh-system",
        &mut out,
    ))
    .await
    .unwrap();
    api.finish();
    let out = String::from_utf8(out).unwrap();
    assert!(report.passed() && report.warnings.is_empty(), "{out}");
    assert!(out.contains("✔ permissions: all 22 granted (create and patch on customresourcedefinitions.apiextensions.k8s.io, namespaces, serviceaccounts, clusterroles.rbac.authorization.k8s.io, clusterrolebindings.rbac.authorization.k8s.io, services, deployments.apps, mutatingwebhookconfigurations.admissionregistration.k8s.io, validatingwebhookconfigurations.admissionregistration.k8s.io)\n"), "{out}");
    assert!(
        out.contains("✔ no other service mesh control plane found\n"),
        "{out}"
    );
    assert!(
        out.ends_with("the cluster is ready for `meshctl install`\n"),
        "{out}"
    );
}

#[tokio::test]
async fn flags_a_crd_someone_else_installed() {
    let mut api = ApiServer::new();
    plan(
        &mut api,
        false,
        Reply::fixture("crd-virtualservices-foreign.json"),
        empty("Deployment"),
    );
    api.always(Method::POST, REVIEWS, reviews(|_| false));
    let cluster = api.start();
    let report = bounded(precheck::precheck(
        &cluster,
        objects::installation(),
        "mesh-system",
        &mut Vec::new(),
    ))
    .await
    .unwrap();
    api.finish();
    assert_eq!(
        report.failures,
        [
            "CRD virtualservices.networking.mesh.dev exists but was not installed by meshctl (no label app.kubernetes.io/part-of=mesh; no label app.kubernetes.io/managed-by=meshctl; written by kubectl-client-side-apply): if it is an older copy of the mesh's CRD, `meshctl install --force-conflicts` adopts it; otherwise remove it with `kubectl delete crd virtualservices.networking.mesh.dev` (this deletes every object of that kind)"
        ]
    );
}

#[tokio::test]
async fn flags_mesh_control_in_another_namespace() {
    let mut api = ApiServer::new();
    let mut elsewhere = fixture_json("deployments-istiod.json");
    elsewhere["items"][0]["metadata"]["name"] = json!("mesh-control");
    elsewhere["items"][0]["metadata"]["namespace"] = json!("mesh");
    plan(
        &mut api,
        false,
        crd_not_found(),
        Reply::ok(elsewhere.to_string()),
    );
    api.always(Method::POST, REVIEWS, reviews(|_| false));
    let cluster = api.start();
    let report = bounded(precheck::precheck(
        &cluster,
        objects::installation(),
        "mesh-system",
        &mut Vec::new(),
    ))
    .await
    .unwrap();
    assert_eq!(
        report.failures,
        [
            "mesh-control is already installed in namespace mesh: two control planes would fight over the same webhooks and CRDs; uninstall it (`meshctl uninstall -n mesh`) or install into mesh (`--set namespace=mesh`)"
        ]
    );
    api.finish();
}

#[tokio::test]
async fn an_unreachable_cluster_stops_the_checks() {
    let mut api = ApiServer::new();
    api.once(Method::GET, "/version", Reply::Refused);
    let cluster = api.start();
    let mut out = Vec::new();
    let report = bounded(precheck::precheck(
        &cluster,
        objects::installation(),
        "mesh-system",
        &mut out,
    ))
    .await
    .unwrap();
    assert_eq!(api.finish().len(), 1, "nothing else is asked");
    assert_eq!(report.failures.len(), 1);
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.starts_with(
            "✗ cannot reach the Kubernetes API server at https://127.0.0.1:6443 (context kind-mesh)"
        ),
        "{out}"
    );
}
