//! The control plane `mesh-control`: its ServiceAccount, least-privilege RBAC, Service and
//! Deployment.
//!
//! The RBAC grants what mesh-control's Kubernetes registry watches (Services, Pods,
//! Namespaces, EndpointSlices, our CRDs, Gateway API routes), what its CA writes (the
//! `mesh-root-cert` ConfigMap in every namespace, token and subject-access reviews; the
//! `mesh-ca` / `cacerts` Secrets and Events in its own namespace only, through a Role) and
//! the `caBundle` it fills into the two webhook configurations [`super::webhooks`] renders
//! (patch and update restricted to those names). Nothing is granted with a wildcard.
//!
//! The Deployment passes mesh-control its settings as flags; the injector flags
//! (`--proxy-*`) carry the `proxy.*` values to every injected sidecar.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, HTTPGetAction, PodSpec, PodTemplateSpec, Probe, Service,
    ServiceAccount, ServicePort, ServiceSpec, TCPSocketAction,
};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mesh_api::inject::{INJECT_ANNOTATION, READY_PATH};

use super::{
    CONTROL, DEBUG_PORT, GRPC_PORT, INJECTOR_CONFIG, VALIDATOR_CONFIG, Values, WEBHOOK_PORT,
    labels, meta, prometheus_annotations,
};

/// The non-root user and group mesh-control runs as (the distroless `nonroot` user).
pub const RUN_AS: i64 = 65_532;

/// The pod label meshctl selects mesh-control's pods with (`app=mesh-control`).
pub const APP_LABEL: (&str, &str) = ("app", CONTROL);

const READ: &[&str] = &["get", "list", "watch"];

/// ServiceAccount `mesh-control`.
pub(super) fn service_account(values: &Values) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(CONTROL, Some(&values.namespace), [APP_LABEL]),
        ..ServiceAccount::default()
    }
}

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        ..PolicyRule::default()
    }
}

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| (*s).to_owned()).collect()
}

/// ClusterRole `mesh-control`: read the mesh's sources, publish the trust bundle, review
/// tokens, fill the webhooks' `caBundle`.
pub(super) fn cluster_role() -> ClusterRole {
    let named = |resource: &str, name: &str| PolicyRule {
        resource_names: Some(vec![name.to_owned()]),
        ..rule(
            "admissionregistration.k8s.io",
            &[resource],
            &["patch", "update"],
        )
    };
    ClusterRole {
        metadata: meta(CONTROL, None, [APP_LABEL]),
        rules: Some(vec![
            rule("", &["services", "pods", "namespaces"], READ),
            rule("discovery.k8s.io", &["endpointslices"], READ),
            rule(
                "networking.mesh.dev",
                &[
                    "virtualservices",
                    "destinationrules",
                    "gateways",
                    "serviceentries",
                    "workloadentries",
                ],
                READ,
            ),
            rule(
                "security.mesh.dev",
                &["peerauthentications", "authorizationpolicies"],
                READ,
            ),
            rule(
                "gateway.networking.k8s.io",
                &["httproutes", "grpcroutes", "gateways"],
                READ,
            ),
            // The trust bundle `mesh-root-cert`, server-side applied into every namespace.
            rule(
                "",
                &["configmaps"],
                &["get", "list", "watch", "create", "patch", "update"],
            ),
            rule("authentication.k8s.io", &["tokenreviews"], &["create"]),
            rule(
                "authorization.k8s.io",
                &["subjectaccessreviews"],
                &["create"],
            ),
            rule(
                "admissionregistration.k8s.io",
                &[
                    "mutatingwebhookconfigurations",
                    "validatingwebhookconfigurations",
                ],
                READ,
            ),
            named("mutatingwebhookconfigurations", INJECTOR_CONFIG),
            named("validatingwebhookconfigurations", VALIDATOR_CONFIG),
        ]),
        ..ClusterRole::default()
    }
}

fn subject(values: &Values) -> Subject {
    Subject {
        kind: "ServiceAccount".to_owned(),
        name: CONTROL.to_owned(),
        namespace: Some(values.namespace.clone()),
        ..Subject::default()
    }
}

/// ClusterRoleBinding `mesh-control` → ServiceAccount `<namespace>/mesh-control`.
pub(super) fn cluster_role_binding(values: &Values) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(CONTROL, None, [APP_LABEL]),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "ClusterRole".to_owned(),
            name: CONTROL.to_owned(),
        },
        subjects: Some(vec![subject(values)]),
    }
}

/// Role `mesh-control` in the control-plane namespace: the CA's Secrets (`mesh-ca`, the
/// plug-in `cacerts`) and Events.
pub(super) fn role(values: &Values) -> Role {
    Role {
        metadata: meta(CONTROL, Some(&values.namespace), [APP_LABEL]),
        rules: Some(vec![
            rule(
                "",
                &["secrets"],
                &["get", "list", "watch", "create", "update", "patch"],
            ),
            rule("", &["events"], &["create"]),
        ]),
    }
}

/// RoleBinding `mesh-control` → ServiceAccount `<namespace>/mesh-control`.
pub(super) fn role_binding(values: &Values) -> RoleBinding {
    RoleBinding {
        metadata: meta(CONTROL, Some(&values.namespace), [APP_LABEL]),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "Role".to_owned(),
            name: CONTROL.to_owned(),
        },
        subjects: Some(vec![subject(values)]),
    }
}

/// The three ports: (name, number, appProtocol).
const PORTS: [(&str, u16, Option<&str>); 3] = [
    ("grpc-mesh", GRPC_PORT, Some("grpc")),
    ("https-webhook", WEBHOOK_PORT, None),
    ("http-monitoring", DEBUG_PORT, None),
];

/// Service `mesh-control`: discovery and identity (gRPC), the webhooks, metrics and debug.
pub(super) fn service(values: &Values) -> Service {
    Service {
        metadata: meta(CONTROL, Some(&values.namespace), [APP_LABEL]),
        spec: Some(ServiceSpec {
            selector: Some(BTreeMap::from([(
                APP_LABEL.0.to_owned(),
                APP_LABEL.1.to_owned(),
            )])),
            ports: Some(
                PORTS
                    .iter()
                    .map(|&(name, port, app_protocol)| ServicePort {
                        name: Some(name.to_owned()),
                        port: i32::from(port),
                        target_port: Some(IntOrString::Int(i32::from(port))),
                        protocol: Some("TCP".to_owned()),
                        app_protocol: app_protocol.map(str::to_owned),
                        ..ServicePort::default()
                    })
                    .collect(),
            ),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// mesh-control's command line.
fn args(values: &Values) -> Vec<String> {
    let proxy = &values.proxy;
    let r = &proxy.resources;
    let given = |s: &str| Some(s.to_owned());
    let mut args = vec!["--kubernetes".to_owned()];
    push_flags(
        &mut args,
        [
            ("--root-namespace", given(&values.namespace)),
            ("--trust-domain", given(&values.trust_domain)),
            ("--discovery-addr", Some(format!("0.0.0.0:{GRPC_PORT}"))),
            ("--debug-addr", Some(format!("0.0.0.0:{DEBUG_PORT}"))),
            ("--webhook-addr", Some(format!("0.0.0.0:{WEBHOOK_PORT}"))),
            ("--injector-config", given(INJECTOR_CONFIG)),
            ("--validator-config", given(VALIDATOR_CONFIG)),
            ("--proxy-image", Some(values.proxy_image())),
            ("--proxy-log-level", given(&proxy.log_level)),
            ("--proxy-cpu-request", r.requests_cpu.clone()),
            ("--proxy-memory-request", r.requests_memory.clone()),
            ("--proxy-memory-limit", r.limits_memory.clone()),
            ("--native-sidecars", given("auto")),
        ],
    );
    if proxy.access_log {
        args.push("--proxy-access-log".to_owned());
    }
    push_flags(
        &mut args,
        [
            (
                "--proxy-trace-sampling",
                proxy.trace_sampling.map(|p| p.to_string()),
            ),
            ("--proxy-trace-collector", proxy.trace_collector.clone()),
        ],
    );
    args
}

/// Appends `--flag value` for each flag that has a value.
fn push_flags<'a>(
    args: &mut Vec<String>,
    flags: impl IntoIterator<Item = (&'a str, Option<String>)>,
) {
    for (name, value) in flags {
        if let Some(value) = value {
            args.extend([name.to_owned(), value]);
        }
    }
}

/// The pod labels (and the selector: `app: mesh-control`).
fn pod_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (APP_LABEL.0.to_owned(), APP_LABEL.1.to_owned()),
        ("app.kubernetes.io/name".to_owned(), CONTROL.to_owned()),
    ])
}

/// Deployment `mesh-control`.
pub(super) fn deployment(values: &Values) -> Deployment {
    let port = |(name, port, _): (&str, u16, Option<&str>)| ContainerPort {
        name: Some(name.to_owned()),
        container_port: i32::from(port),
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    };
    let mut annotations = prometheus_annotations(DEBUG_PORT);
    annotations.insert(INJECT_ANNOTATION.to_owned(), "false".to_owned());
    let mut template_labels = pod_labels();
    template_labels.extend(labels([]));
    let container = Container {
        name: CONTROL.to_owned(),
        image: Some(values.control_image()),
        image_pull_policy: Some(values.image_pull_policy.as_str().to_owned()),
        args: Some(args(values)),
        env: Some(vec![EnvVar {
            name: "MESH_LOG".to_owned(),
            value: Some(values.log_level.clone()),
            ..EnvVar::default()
        }]),
        ports: Some(PORTS.into_iter().map(port).collect()),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some(READY_PATH.to_owned()),
                port: IntOrString::Int(i32::from(DEBUG_PORT)),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(5),
            timeout_seconds: Some(3),
            failure_threshold: Some(3),
            ..Probe::default()
        }),
        // Liveness only asks whether the process still serves at all: readiness waits for
        // the registries' first sync, which may legitimately take long on a big cluster.
        liveness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(i32::from(DEBUG_PORT)),
                ..TCPSocketAction::default()
            }),
            initial_delay_seconds: Some(15),
            period_seconds: Some(10),
            timeout_seconds: Some(5),
            failure_threshold: Some(6),
            ..Probe::default()
        }),
        resources: Some(values.control.resources.to_requirements()),
        security_context: Some(super::restricted(RUN_AS)),
        ..Container::default()
    };
    Deployment {
        metadata: meta(CONTROL, Some(&values.namespace), [APP_LABEL]),
        spec: Some(DeploymentSpec {
            replicas: Some(values.control.replicas),
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    APP_LABEL.0.to_owned(),
                    APP_LABEL.1.to_owned(),
                )])),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(template_labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(CONTROL.to_owned()),
                    containers: vec![container],
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}
