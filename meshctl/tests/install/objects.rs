//! Small hand-built installations: the kinds `manifest::render` produces, one object or
//! two each, so scenarios can plan every request.

use kube::api::DynamicObject;
use serde_json::{Value, json};

/// The labels every installed object carries.
fn labels() -> Value {
    json!({"app.kubernetes.io/part-of": "mesh", "app.kubernetes.io/managed-by": "meshctl"})
}

fn obj(
    api_version: &str,
    kind: &str,
    name: &str,
    namespace: Option<&str>,
    rest: Value,
) -> DynamicObject {
    let mut v = json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "labels": labels()},
    });
    if let Some(ns) = namespace {
        v["metadata"]["namespace"] = json!(ns);
    }
    if let Value::Object(fields) = rest {
        for (k, val) in fields {
            v[k] = val;
        }
    }
    serde_json::from_value(v).unwrap()
}

/// The CRD `virtualservices.networking.mesh.dev`.
pub(crate) fn crd() -> DynamicObject {
    obj(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        "virtualservices.networking.mesh.dev",
        None,
        json!({"spec": {
            "group": "networking.mesh.dev",
            "names": {"plural": "virtualservices", "singular": "virtualservice", "kind": "VirtualService", "listKind": "VirtualServiceList"},
            "scope": "Namespaced",
            "versions": [{"name": "v1alpha1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
        }}),
    )
}

/// Deployment `mesh-control` in `mesh-system`.
pub(crate) fn deployment() -> DynamicObject {
    obj(
        "apps/v1",
        "Deployment",
        "mesh-control",
        Some("mesh-system"),
        json!({"spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "mesh-control"}},
            "template": {
                "metadata": {"labels": {"app": "mesh-control"}},
                "spec": {"serviceAccountName": "mesh-control", "containers": [{"name": "discovery", "image": "ghcr.io/mesh/mesh-control:0.1.0"}]}
            }
        }}),
    )
}

fn webhook(kind: &str, name: &str, hook: &str, path: &str) -> DynamicObject {
    obj(
        "admissionregistration.k8s.io/v1",
        kind,
        name,
        None,
        json!({"webhooks": [{
            "name": hook,
            "clientConfig": {"service": {"namespace": "mesh-system", "name": "mesh-control", "path": path, "port": 15017}},
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"]
        }]}),
    )
}

/// MutatingWebhookConfiguration `mesh-sidecar-injector`.
pub(crate) fn injector() -> DynamicObject {
    webhook(
        "MutatingWebhookConfiguration",
        "mesh-sidecar-injector",
        "inject.sidecar.mesh.dev",
        "/inject",
    )
}

/// ValidatingWebhookConfiguration `mesh-validator`.
pub(crate) fn validator() -> DynamicObject {
    webhook(
        "ValidatingWebhookConfiguration",
        "mesh-validator",
        "validate.config.mesh.dev",
        "/validate",
    )
}

/// A small installation in `render`'s order: CRD, Namespace, ServiceAccount, ClusterRole,
/// ClusterRoleBinding, Service, Deployment, then the two webhook configurations.
pub(crate) fn installation() -> Vec<DynamicObject> {
    vec![
        crd(),
        obj("v1", "Namespace", "mesh-system", None, json!({})),
        obj(
            "v1",
            "ServiceAccount",
            "mesh-control",
            Some("mesh-system"),
            json!({}),
        ),
        obj(
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
            "mesh-control",
            None,
            json!({"rules": [{"apiGroups": [""], "resources": ["pods", "services"], "verbs": ["get", "list", "watch"]}]}),
        ),
        obj(
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding",
            "mesh-control",
            None,
            json!({
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "mesh-control"},
                "subjects": [{"kind": "ServiceAccount", "name": "mesh-control", "namespace": "mesh-system"}]
            }),
        ),
        obj(
            "v1",
            "Service",
            "mesh-control",
            Some("mesh-system"),
            json!({"spec": {"selector": {"app": "mesh-control"}, "ports": [{"name": "https-webhook", "port": 15017}]}}),
        ),
        deployment(),
        injector(),
        validator(),
    ]
}

/// The API paths of [`installation`]'s objects, in order.
pub(crate) const PATHS: [&str; 9] = [
    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/virtualservices.networking.mesh.dev",
    "/api/v1/namespaces/mesh-system",
    "/api/v1/namespaces/mesh-system/serviceaccounts/mesh-control",
    "/apis/rbac.authorization.k8s.io/v1/clusterroles/mesh-control",
    "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/mesh-control",
    "/api/v1/namespaces/mesh-system/services/mesh-control",
    "/apis/apps/v1/namespaces/mesh-system/deployments/mesh-control",
    "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/mesh-sidecar-injector",
    "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/mesh-validator",
];

/// A PriorityClass: a kind outside meshctl's table, found by discovery.
pub(crate) fn priority_class() -> DynamicObject {
    obj(
        "scheduling.k8s.io/v1",
        "PriorityClass",
        "mesh-critical",
        None,
        json!({"value": 1000000, "globalDefault": false}),
    )
}
