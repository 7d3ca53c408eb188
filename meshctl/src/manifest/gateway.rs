//! The ingress gateway `mesh-ingressgateway` (profiles `default` and `demo`, or
//! `--set gateway.enabled=true`): `mesh-proxy` in `gateway` mode behind a Service of type
//! `gateway.serviceType`.
//!
//! The gateway is a proxy of its own, not an injected pod (it opts out of injection), but
//! it joins the mesh exactly as a sidecar does: the same environment from the downward
//! API, the same projected ServiceAccount token (audience `mesh-control`) and the same
//! `mesh-root-cert` trust bundle, with the names and paths taken from
//! [`mesh_api::inject`] so the two cannot drift apart. Its ServiceAccount token is not
//! mounted: the gateway never talks to the Kubernetes API.
//!
//! TLS credentials for `Gateway` HTTPS servers (`tls.credentialName: NAME`) reach the
//! gateway as Secret volumes, never through mesh-control: each `kubernetes.io/tls` Secret
//! named in `gateway.credentials` is mounted (optional, so the pod starts before it exists)
//! at [`CREDENTIALS_DIR`]`/NAME`, whose `tls.crt` and `tls.key` the gateway reads and
//! re-reads as the kubelet updates them (`mesh-proxy gateway --credentials-dir`, see
//! `mesh_proxy::gateway::tls`). A credential not listed there is reported missing by the
//! gateway; add it with `meshctl install --set gateway.credentials=NAME,...`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, HTTPGetAction, PodSpec, PodTemplateSpec, Probe,
    SecretVolumeSource, Service, ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mesh_api::inject::{
    CA_BUNDLE_FILE, HEALTH_PORT, INJECT_ANNOTATION, METRICS_PORT, PROXY_CONTAINER, PROXY_ID,
    READY_PATH, ROOT_CERT_DIR, ROOT_CERT_VOLUME, TOKEN_DIR, TOKEN_FILE, TOKEN_VOLUME,
};

/// Where the gateway's TLS credentials are mounted, one directory per Secret
/// (`MESH_GATEWAY_CREDENTIALS_DIR`).
pub const CREDENTIALS_DIR: &str = "/etc/mesh/gateway-credentials";

use super::{GATEWAY, Values, labels, meta, prometheus_annotations};

/// The label the gateway's Service (and `Gateway` resources) select its pods by; Gateway API
/// `Gateway`s of `gatewayClassName: mesh` select the pods with this label by convention.
pub const SELECTOR_LABEL: (&str, &str) = ("mesh", "ingressgateway");
/// The gateway pods' `app` label.
pub const APP_LABEL: (&str, &str) = ("app", GATEWAY);

/// The ports: (name, Service port, container port).
const PORTS: [(&str, u16, u16); 4] = [
    ("http2", 80, 8080),
    ("https", 443, 8443),
    ("http-metrics", METRICS_PORT, METRICS_PORT),
    ("status-port", HEALTH_PORT, HEALTH_PORT),
];

/// The ports the Service exposes (metrics are scraped from the pods directly).
const SERVICE_PORTS: [&str; 3] = ["http2", "https", "status-port"];

fn selector() -> BTreeMap<String, String> {
    [SELECTOR_LABEL, APP_LABEL]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// ServiceAccount `mesh-ingressgateway`: the gateway's mesh identity.
pub(super) fn service_account(values: &Values) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(GATEWAY, Some(&values.namespace), [APP_LABEL]),
        ..ServiceAccount::default()
    }
}

/// Service `mesh-ingressgateway`.
pub(super) fn service(values: &Values) -> Service {
    Service {
        metadata: meta(GATEWAY, Some(&values.namespace), [APP_LABEL]),
        spec: Some(ServiceSpec {
            type_: Some(values.gateway.service_type.as_str().to_owned()),
            selector: Some(BTreeMap::from([(
                SELECTOR_LABEL.0.to_owned(),
                SELECTOR_LABEL.1.to_owned(),
            )])),
            ports: Some(
                PORTS
                    .iter()
                    .filter(|(name, ..)| SERVICE_PORTS.contains(name))
                    .map(|&(name, port, target)| ServicePort {
                        name: Some(name.to_owned()),
                        port: i32::from(port),
                        target_port: Some(IntOrString::Int(i32::from(target))),
                        protocol: Some("TCP".to_owned()),
                        ..ServicePort::default()
                    })
                    .collect(),
            ),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The proxy's environment, as the injector gives a sidecar's.
fn env(values: &Values) -> anyhow::Result<Vec<EnvVar>> {
    let field = mesh_api::inject::env_from_field;
    let value = mesh_api::inject::env_value;
    let proxy = &values.proxy;
    let mut env = vec![
        field("POD_NAME", "metadata.name"),
        field("POD_NAMESPACE", "metadata.namespace"),
        field("POD_IP", "status.podIP"),
        field("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        value("MESH_CONTROL_ADDR", &values.control_addr()),
        value("MESH_TRUST_DOMAIN", &values.trust_domain),
        value(
            "MESH_CONTROL_PLANE_IDENTITY",
            values.control_identity()?.as_str(),
        ),
        value("MESH_LOG", &proxy.log_level),
        value("MESH_TOKEN_FILE", TOKEN_FILE),
        value("MESH_CA_BUNDLE", CA_BUNDLE_FILE),
        value("MESH_GATEWAY_CREDENTIALS_DIR", CREDENTIALS_DIR),
    ];
    if proxy.access_log {
        env.push(value("MESH_ACCESS_LOG", "true"));
    }
    if let Some(p) = proxy.trace_sampling {
        env.push(value("MESH_TRACE_SAMPLING", &p.to_string()));
    }
    if let Some(c) = &proxy.trace_collector {
        env.push(value("MESH_TRACE_COLLECTOR", c));
    }
    Ok(env)
}

/// Deployment `mesh-ingressgateway`.
pub(super) fn deployment(values: &Values) -> anyhow::Result<Deployment> {
    let mount = |name: &str, path: &str| VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    let mut annotations = prometheus_annotations(METRICS_PORT);
    annotations.insert(INJECT_ANNOTATION.to_owned(), "false".to_owned());
    let mut template_labels = selector();
    template_labels.extend(labels([]));
    let mut volumes: Vec<Volume> = mesh_api::inject::identity_volumes().into();
    let mut mounts = vec![
        mount(TOKEN_VOLUME, TOKEN_DIR),
        mount(ROOT_CERT_VOLUME, ROOT_CERT_DIR),
    ];
    for (i, name) in values.gateway.credentials.iter().enumerate() {
        // Secret names may be longer than volume names (DNS labels): number them.
        let volume = format!("credential-{i}");
        volumes.push(Volume {
            name: volume.clone(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(name.clone()),
                optional: Some(true),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(mount(&volume, &format!("{CREDENTIALS_DIR}/{name}")));
    }
    let container = Container {
        name: PROXY_CONTAINER.to_owned(),
        image: Some(values.proxy_image()),
        image_pull_policy: Some(values.image_pull_policy.as_str().to_owned()),
        args: Some(vec!["gateway".to_owned()]),
        env: Some(env(values)?),
        ports: Some(
            PORTS
                .iter()
                .map(|&(name, _, port)| ContainerPort {
                    name: Some(name.to_owned()),
                    container_port: i32::from(port),
                    protocol: Some("TCP".to_owned()),
                    ..ContainerPort::default()
                })
                .collect(),
        ),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some(READY_PATH.to_owned()),
                port: IntOrString::Int(i32::from(HEALTH_PORT)),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(5),
            timeout_seconds: Some(3),
            failure_threshold: Some(3),
            ..Probe::default()
        }),
        resources: Some(values.gateway.resources.to_requirements()),
        security_context: Some(super::restricted(PROXY_ID)),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    Ok(Deployment {
        metadata: meta(GATEWAY, Some(&values.namespace), [APP_LABEL]),
        spec: Some(DeploymentSpec {
            replicas: Some(values.gateway.replicas),
            selector: LabelSelector {
                match_labels: Some(selector()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(template_labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(GATEWAY.to_owned()),
                    automount_service_account_token: Some(false),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    })
}
