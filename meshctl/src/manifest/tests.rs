//! Tests of the rendered manifests: strict round trips through the k8s-openapi types,
//! profile contents, `--set` parsing, namespace propagation, RBAC, webhooks and images.

use std::collections::BTreeSet;

use clap::{Args as _, Parser};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Namespace, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::DynamicObject;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::values::parse_quantity;
use super::*;

fn values(profile: Profile, set: &[&str]) -> Values {
    ValuesArgs {
        profile,
        set: set.iter().map(|s| (*s).to_owned()).collect(),
    }
    .values()
    .expect("valid values")
}

fn set_error(set: &[&str]) -> String {
    ValuesArgs {
        profile: Profile::Default,
        set: set.iter().map(|s| (*s).to_owned()).collect(),
    }
    .values()
    .expect_err("the override is refused")
    .to_string()
}

fn objects(values: &Values) -> Vec<DynamicObject> {
    render(values).expect("render")
}

fn kind(o: &DynamicObject) -> &str {
    &o.types.as_ref().expect("apiVersion and kind").kind
}

fn name(o: &DynamicObject) -> &str {
    o.metadata.name.as_deref().expect("a name")
}

/// The one object of kind `K` named `name`, typed.
fn find<K>(objects: &[DynamicObject], name_: &str) -> K
where
    K: kube::Resource<DynamicType = ()> + DeserializeOwned,
{
    let matches: Vec<&DynamicObject> = objects
        .iter()
        .filter(|o| kind(o) == K::kind(&()) && name(o) == name_)
        .collect();
    assert_eq!(matches.len(), 1, "{} {name_}", K::kind(&()));
    matches[0].clone().try_parse::<K>().expect("parses")
}

fn container(d: &Deployment) -> Container {
    let spec = d.spec.as_ref().expect("spec");
    let pod = spec.template.spec.as_ref().expect("pod spec");
    assert_eq!(pod.containers.len(), 1);
    pod.containers[0].clone()
}

fn env(c: &Container, name: &str) -> Option<String> {
    c.env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .map(|e| e.value.clone().expect("a literal value"))
}

fn args(c: &Container) -> Vec<String> {
    c.args.clone().unwrap_or_default()
}

/// The value after `flag` in `args`.
fn flag<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let i = args.iter().position(|a| a == flag)?;
    args.get(i + 1).map(String::as_str)
}

/// Deserializes `json` into `K`, serializes it again and compares: a field `K` does not
/// know (misspelt, wrong level) is dropped on the way and the comparison fails.
fn strict<K: DeserializeOwned + Serialize>(json: &Value) -> Result<(), String> {
    let typed: K = serde_json::from_value(json.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    if &back == json {
        Ok(())
    } else {
        Err(format!(
            "round trip changed the object:\n{}\n---\n{}",
            serde_json::to_string_pretty(json).unwrap_or_default(),
            serde_json::to_string_pretty(&back).unwrap_or_default()
        ))
    }
}

/// [`strict`] for an object of any kind we render.
fn strict_round_trip(json: &Value) -> Result<(), String> {
    match json["kind"].as_str() {
        Some("CustomResourceDefinition") => strict::<CustomResourceDefinition>(json),
        Some("Namespace") => strict::<Namespace>(json),
        Some("ServiceAccount") => strict::<ServiceAccount>(json),
        Some("ClusterRole") => strict::<ClusterRole>(json),
        Some("ClusterRoleBinding") => strict::<ClusterRoleBinding>(json),
        Some("Role") => strict::<Role>(json),
        Some("RoleBinding") => strict::<RoleBinding>(json),
        Some("Service") => strict::<Service>(json),
        Some("Deployment") => strict::<Deployment>(json),
        Some("MutatingWebhookConfiguration") => strict::<MutatingWebhookConfiguration>(json),
        Some("ValidatingWebhookConfiguration") => strict::<ValidatingWebhookConfiguration>(json),
        other => Err(format!("unexpected kind {other:?}")),
    }
}

/// Every profile, and one values set with every key changed.
fn every_values() -> Vec<Values> {
    let mut all: Vec<Values> = Profile::ALL.iter().map(|p| values(*p, &[])).collect();
    let mut changed = Values::profile(Profile::Minimal);
    for key in KEYS {
        changed
            .set(key.name, key.example)
            .expect("the example is valid");
    }
    changed.gateway.enabled = true;
    changed.validate().expect("consistent");
    all.push(changed);
    all
}

// === round trips ===

#[test]
fn every_object_round_trips_strictly_through_its_type() {
    for values in every_values() {
        let objects = objects(&values);
        let kinds: BTreeSet<&str> = objects.iter().map(kind).collect();
        assert!(kinds.contains("CustomResourceDefinition"), "{kinds:?}");
        for o in &objects {
            let json = serde_json::to_value(o).expect("serializes");
            assert!(json["apiVersion"].is_string(), "{json}");
            if let Err(e) = strict_round_trip(&json) {
                panic!("{} {} ({}): {e}", kind(o), name(o), values.profile);
            }
        }
    }
}

#[test]
fn the_strict_round_trip_catches_misspelt_fields() {
    let objects = objects(&Values::default());
    let d = objects
        .iter()
        .find(|o| kind(o) == "Deployment")
        .expect("a deployment");
    let mut json = serde_json::to_value(d).expect("serializes");
    json["spec"]["template"]["spec"]["serviceAccount_name"] = Value::from("x");
    assert!(strict_round_trip(&json).is_err());
    let mut json = serde_json::to_value(d).expect("serializes");
    json["spec"]["replicaz"] = Value::from(1);
    assert!(strict_round_trip(&json).is_err());
}

#[test]
fn the_yaml_output_parses_back_to_the_same_objects() {
    for values in every_values() {
        let objects = objects(&values);
        let yaml = to_yaml(&objects).expect("yaml");
        assert!(yaml.starts_with("---\n"));
        let docs: Vec<Value> = serde_saphyr::from_multiple(&yaml).expect("valid YAML");
        let want: Vec<Value> = objects
            .iter()
            .map(|o| serde_json::to_value(o).expect("serializes"))
            .collect();
        assert_eq!(docs.len(), want.len());
        for (doc, want) in docs.iter().zip(&want) {
            // Strings such as "true" and "15014" must stay strings.
            assert_eq!(doc, want);
        }
    }
}

#[test]
fn rendering_is_deterministic() {
    let a = to_yaml(&objects(&Values::default())).expect("yaml");
    let b = to_yaml(&objects(&Values::default())).expect("yaml");
    assert_eq!(a, b);
}

// === order, labels, profiles ===

#[test]
fn objects_come_in_apply_order() {
    let kinds = |values: &Values| -> Vec<(String, String)> {
        objects(values)
            .iter()
            .filter(|o| kind(o) != "CustomResourceDefinition")
            .map(|o| (kind(o).to_owned(), name(o).to_owned()))
            .collect()
    };
    let pair = |k: &str, n: &str| (k.to_owned(), n.to_owned());
    assert_eq!(
        kinds(&Values::default()),
        vec![
            pair("Namespace", "mesh-system"),
            pair("ServiceAccount", "mesh-control"),
            pair("ServiceAccount", "mesh-ingressgateway"),
            pair("ClusterRole", "mesh-control"),
            pair("ClusterRoleBinding", "mesh-control"),
            pair("Role", "mesh-control"),
            pair("RoleBinding", "mesh-control"),
            pair("Service", "mesh-control"),
            pair("Service", "mesh-ingressgateway"),
            pair("Deployment", "mesh-control"),
            pair("Deployment", "mesh-ingressgateway"),
            pair("MutatingWebhookConfiguration", "mesh-sidecar-injector"),
            pair("ValidatingWebhookConfiguration", "mesh-validator"),
        ]
    );
    let all = objects(&Values::default());
    let first_other = all
        .iter()
        .position(|o| kind(o) != "CustomResourceDefinition")
        .expect("more than CRDs");
    assert_eq!(first_other, crds::EMBEDDED.len(), "the CRDs come first");
}

#[test]
fn every_object_carries_the_common_labels() {
    for values in every_values() {
        for o in objects(&values) {
            let labels = o.metadata.labels.as_ref().expect("labels");
            for (k, v) in [PART_OF_LABEL, MANAGED_BY_LABEL, (VERSION_LABEL, VERSION)] {
                assert_eq!(
                    labels.get(k).map(String::as_str),
                    Some(v),
                    "{} {}",
                    kind(&o),
                    name(&o)
                );
            }
        }
    }
}

#[test]
fn minimal_has_no_gateway_and_default_has_one() {
    let minimal = objects(&values(Profile::Minimal, &[]));
    assert!(
        minimal.iter().all(|o| !name(o).contains("ingressgateway")),
        "{:?}",
        minimal.iter().map(name).collect::<Vec<_>>()
    );
    for profile in [Profile::Default, Profile::Demo] {
        let all = objects(&values(profile, &[]));
        let gateway: Vec<&str> = all
            .iter()
            .filter(|o| name(o) == GATEWAY)
            .map(kind)
            .collect();
        assert_eq!(gateway, ["ServiceAccount", "Service", "Deployment"]);
    }
    let disabled = objects(&values(Profile::Demo, &["gateway.enabled=false"]));
    assert!(disabled.iter().all(|o| name(o) != GATEWAY));
    let enabled = objects(&values(Profile::Minimal, &["gateway.enabled=true"]));
    assert!(enabled.iter().any(|o| name(o) == GATEWAY));
}

#[test]
fn demo_turns_on_access_logs_and_full_sampling_with_small_requests() {
    let demo = objects(&values(Profile::Demo, &[]));
    let control = container(&find::<Deployment>(&demo, CONTROL));
    let args = args(&control);
    assert!(args.contains(&"--proxy-access-log".to_owned()), "{args:?}");
    assert_eq!(flag(&args, "--proxy-trace-sampling"), Some("100"));
    assert_eq!(flag(&args, "--proxy-cpu-request"), Some("10m"));
    assert_eq!(flag(&args, "--proxy-memory-request"), Some("40Mi"));
    let requests = control
        .resources
        .and_then(|r| r.requests)
        .expect("requests");
    assert_eq!(requests["cpu"].0, "50m");
    assert_eq!(requests["memory"].0, "128Mi");
    let gateway = container(&find::<Deployment>(&demo, GATEWAY));
    assert_eq!(env(&gateway, "MESH_ACCESS_LOG").as_deref(), Some("true"));
    assert_eq!(env(&gateway, "MESH_TRACE_SAMPLING").as_deref(), Some("100"));

    let default = objects(&values(Profile::Default, &[]));
    let control = container(&find::<Deployment>(&default, CONTROL));
    let args = self::args(&control);
    assert!(!args.contains(&"--proxy-access-log".to_owned()), "{args:?}");
    assert_eq!(flag(&args, "--proxy-trace-sampling"), None);
    assert_eq!(flag(&args, "--proxy-trace-collector"), None);
    let r = control.resources.expect("resources");
    assert_eq!(r.requests.expect("requests")["cpu"].0, "100m");
    assert_eq!(r.limits.expect("limits")["memory"].0, "1Gi");
    let gateway = container(&find::<Deployment>(&default, GATEWAY));
    assert_eq!(env(&gateway, "MESH_ACCESS_LOG"), None);
    assert_eq!(env(&gateway, "MESH_TRACE_SAMPLING"), None);
    let requests = gateway
        .resources
        .and_then(|r| r.requests)
        .expect("requests");
    assert_eq!(requests["cpu"].0, "100m");
    assert_eq!(requests["memory"].0, "128Mi");
}

#[test]
fn default_proxy_resources_are_the_injectors() {
    for profile in Profile::ALL {
        assert_eq!(
            Values::profile(profile).proxy.resources.to_requirements(),
            mesh_api::inject::Context::default_resources(),
            "{profile}"
        );
    }
}

#[test]
fn tracing_overrides_reach_the_control_plane_and_the_gateway() {
    let all = objects(&values(
        Profile::Default,
        &[
            "proxy.traceSampling=0.5",
            "proxy.traceCollector=http://otel.observability:4317",
            "proxy.accessLog=true",
            "proxy.logLevel=debug",
            "logLevel=info,mesh_control=debug",
        ],
    ));
    let control = container(&find::<Deployment>(&all, CONTROL));
    let args = args(&control);
    assert_eq!(flag(&args, "--proxy-trace-sampling"), Some("0.5"));
    assert_eq!(
        flag(&args, "--proxy-trace-collector"),
        Some("http://otel.observability:4317")
    );
    assert_eq!(flag(&args, "--proxy-log-level"), Some("debug"));
    assert!(args.contains(&"--proxy-access-log".to_owned()));
    assert_eq!(
        env(&control, "MESH_LOG").as_deref(),
        Some("info,mesh_control=debug")
    );
    let gateway = container(&find::<Deployment>(&all, GATEWAY));
    assert_eq!(env(&gateway, "MESH_TRACE_SAMPLING").as_deref(), Some("0.5"));
    assert_eq!(
        env(&gateway, "MESH_TRACE_COLLECTOR").as_deref(),
        Some("http://otel.observability:4317")
    );
    assert_eq!(env(&gateway, "MESH_LOG").as_deref(), Some("debug"));
    assert_eq!(env(&gateway, "MESH_ACCESS_LOG").as_deref(), Some("true"));
}

// === the control plane ===

#[test]
fn the_control_plane_deployment_has_the_contract_names() {
    let all = objects(&Values::default());
    let d = find::<Deployment>(&all, CONTROL);
    let spec = d.spec.as_ref().expect("spec");
    assert_eq!(spec.replicas, Some(1));
    let selector = spec.selector.match_labels.as_ref().expect("selector");
    assert_eq!(
        selector.get("app").map(String::as_str),
        Some("mesh-control")
    );
    let meta = spec.template.metadata.as_ref().expect("template metadata");
    let labels = meta.labels.as_ref().expect("labels");
    assert_eq!(labels["app"], "mesh-control");
    assert_eq!(labels["app.kubernetes.io/name"], "mesh-control");
    let annotations = meta.annotations.as_ref().expect("annotations");
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "15014");
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    assert_eq!(annotations["sidecar.mesh.dev/inject"], "false");
    let pod = spec.template.spec.as_ref().expect("pod");
    assert_eq!(pod.service_account_name.as_deref(), Some("mesh-control"));

    let c = container(&d);
    assert_eq!(c.name, "mesh-control");
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    let args = args(&c);
    assert_eq!(args[0], "--kubernetes");
    for (f, v) in [
        ("--root-namespace", "mesh-system"),
        ("--trust-domain", "cluster.local"),
        ("--discovery-addr", "0.0.0.0:15012"),
        ("--debug-addr", "0.0.0.0:15014"),
        ("--webhook-addr", "0.0.0.0:15017"),
        ("--injector-config", "mesh-sidecar-injector"),
        ("--validator-config", "mesh-validator"),
        ("--proxy-log-level", "info"),
        ("--proxy-memory-limit", "128Mi"),
        ("--native-sidecars", "auto"),
    ] {
        assert_eq!(flag(&args, f), Some(v), "{f} in {args:?}");
    }
    let ports: Vec<(String, i32)> = c
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone().expect("named"), p.container_port))
        .collect();
    assert_eq!(
        ports,
        [
            ("grpc-mesh".to_owned(), 15012),
            ("https-webhook".to_owned(), 15017),
            ("http-monitoring".to_owned(), 15014)
        ]
    );
    let ready = c
        .readiness_probe
        .expect("readiness")
        .http_get
        .expect("http");
    assert_eq!(ready.path.as_deref(), Some("/healthz/ready"));
    assert_eq!(ready.port, IntOrString::Int(15014));
    let live = c.liveness_probe.expect("liveness");
    assert_eq!(live.tcp_socket.expect("tcp").port, IntOrString::Int(15014));
    let sc = c.security_context.expect("security context");
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.run_as_user, Some(65_532));
    assert_eq!(sc.run_as_group, Some(65_532));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(
        sc.capabilities.and_then(|c| c.drop),
        Some(vec!["ALL".to_owned()])
    );
    assert_eq!(
        sc.seccomp_profile.map(|s| s.type_).as_deref(),
        Some("RuntimeDefault")
    );

    let svc = find::<Service>(&all, CONTROL);
    let spec = svc.spec.expect("spec");
    assert_eq!(spec.selector.expect("selector")["app"], "mesh-control");
    let ports: Vec<(String, i32, Option<String>)> = spec
        .ports
        .into_iter()
        .flatten()
        .map(|p| (p.name.expect("named"), p.port, p.app_protocol))
        .collect();
    assert_eq!(
        ports,
        [
            ("grpc-mesh".to_owned(), 15012, Some("grpc".to_owned())),
            ("https-webhook".to_owned(), 15017, None),
            ("http-monitoring".to_owned(), 15014, None)
        ]
    );
}

#[test]
fn control_overrides_apply() {
    let all = objects(&values(
        Profile::Default,
        &[
            "control.replicas=3",
            "control.resources.limits.cpu=2",
            "imagePullPolicy=Always",
            "trustDomain=example.org",
        ],
    ));
    let d = find::<Deployment>(&all, CONTROL);
    assert_eq!(d.spec.as_ref().and_then(|s| s.replicas), Some(3));
    let c = container(&d);
    assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
    assert_eq!(flag(&args(&c), "--trust-domain"), Some("example.org"));
    let limits = c.resources.and_then(|r| r.limits).expect("limits");
    assert_eq!(limits["cpu"].0, "2");
    let gateway = container(&find::<Deployment>(&all, GATEWAY));
    assert_eq!(
        env(&gateway, "MESH_CONTROL_PLANE_IDENTITY").as_deref(),
        Some("spiffe://example.org/ns/mesh-system/sa/mesh-control")
    );
    assert_eq!(gateway.image_pull_policy.as_deref(), Some("Always"));
}

// === RBAC ===

fn rules_of(all: &[DynamicObject]) -> (Vec<PolicyRule>, Vec<PolicyRule>) {
    let cluster = find::<ClusterRole>(all, CONTROL).rules.expect("rules");
    let namespaced = find::<Role>(all, CONTROL).rules.expect("rules");
    (cluster, namespaced)
}

#[test]
fn rbac_has_no_wildcards_and_no_cluster_wide_secrets() {
    let all = objects(&Values::default());
    let (cluster, namespaced) = rules_of(&all);
    for rule in cluster.iter().chain(&namespaced) {
        let fields = rule
            .verbs
            .iter()
            .chain(rule.resources.iter().flatten())
            .chain(rule.api_groups.iter().flatten());
        for f in fields {
            assert!(!f.contains('*'), "wildcard in {rule:?}");
        }
        assert!(rule.non_resource_urls.is_none());
        for verb in &rule.verbs {
            assert!(
                ["get", "list", "watch", "create", "update", "patch"].contains(&verb.as_str()),
                "verb {verb} in {rule:?}"
            );
        }
    }
    let resources = |rules: &[PolicyRule]| -> BTreeSet<String> {
        rules
            .iter()
            .flat_map(|r| r.resources.clone().unwrap_or_default())
            .collect()
    };
    assert!(!resources(&cluster).contains("secrets"));
    assert_eq!(
        resources(&namespaced),
        BTreeSet::from(["secrets".to_owned(), "events".to_owned()])
    );
    // Writes to the webhook configurations are limited to ours.
    for rule in &cluster {
        let webhook = rule
            .resources
            .iter()
            .flatten()
            .any(|r| r.ends_with("webhookconfigurations"));
        let writes = rule.verbs.iter().any(|v| v == "patch" || v == "update");
        if webhook && writes {
            let names = rule.resource_names.clone().expect("restricted by name");
            assert!(
                names == [INJECTOR_CONFIG] || names == [VALIDATOR_CONFIG],
                "{names:?}"
            );
        }
    }
    // Only ConfigMaps are written cluster-wide (besides reviews and our webhooks).
    let written: BTreeSet<String> = cluster
        .iter()
        .filter(|r| {
            r.verbs
                .iter()
                .any(|v| v != "get" && v != "list" && v != "watch")
        })
        .flat_map(|r| r.resources.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        written,
        BTreeSet::from(
            [
                "configmaps",
                "tokenreviews",
                "subjectaccessreviews",
                "mutatingwebhookconfigurations",
                "validatingwebhookconfigurations"
            ]
            .map(str::to_owned)
        )
    );
}

#[test]
fn rbac_reads_every_source_the_registry_watches() {
    let all = objects(&Values::default());
    let (cluster, _) = rules_of(&all);
    let granted = |group: &str, resource: &str, verb: &str| {
        cluster.iter().any(|r| {
            r.api_groups.iter().flatten().any(|g| g == group)
                && r.resources.iter().flatten().any(|x| x == resource)
                && r.verbs.iter().any(|v| v == verb)
                && r.resource_names.is_none()
        })
    };
    for (group, resource) in [
        ("", "services"),
        ("", "pods"),
        ("", "namespaces"),
        ("", "configmaps"),
        ("discovery.k8s.io", "endpointslices"),
        ("networking.mesh.dev", "virtualservices"),
        ("networking.mesh.dev", "destinationrules"),
        ("networking.mesh.dev", "gateways"),
        ("networking.mesh.dev", "serviceentries"),
        ("networking.mesh.dev", "workloadentries"),
        ("security.mesh.dev", "peerauthentications"),
        ("security.mesh.dev", "authorizationpolicies"),
        ("gateway.networking.k8s.io", "httproutes"),
        ("gateway.networking.k8s.io", "grpcroutes"),
        ("gateway.networking.k8s.io", "gateways"),
    ] {
        for verb in ["get", "list", "watch"] {
            assert!(granted(group, resource, verb), "{verb} {group}/{resource}");
        }
    }
    assert!(granted("authentication.k8s.io", "tokenreviews", "create"));
    assert!(granted(
        "authorization.k8s.io",
        "subjectaccessreviews",
        "create"
    ));
}

// === webhooks ===

#[test]
fn webhooks_are_explicit_and_leave_the_ca_bundle_to_mesh_control() {
    let all = objects(&Values::default());
    for o in &all {
        if kind(o).ends_with("WebhookConfiguration") {
            let json = serde_json::to_string(o).expect("serializes");
            assert!(!json.contains("caBundle"), "{json}");
        }
    }
    let injector = find::<MutatingWebhookConfiguration>(&all, INJECTOR_CONFIG);
    let [hook] = injector
        .webhooks
        .expect("webhooks")
        .try_into()
        .expect("one");
    assert_eq!(hook.name, "sidecar-injector.mesh.dev");
    assert_eq!(hook.failure_policy.as_deref(), Some("Fail"));
    assert_eq!(hook.timeout_seconds, Some(10));
    assert_eq!(hook.side_effects, "None");
    assert_eq!(hook.admission_review_versions, ["v1"]);
    assert_eq!(hook.reinvocation_policy.as_deref(), Some("Never"));
    assert_eq!(hook.match_policy.as_deref(), Some("Equivalent"));
    assert!(hook.object_selector.is_none());
    let svc = hook.client_config.service.expect("service");
    assert_eq!(
        (
            svc.namespace.as_str(),
            svc.name.as_str(),
            svc.path.as_deref(),
            svc.port
        ),
        ("mesh-system", "mesh-control", Some("/inject"), Some(15017))
    );
    assert!(hook.client_config.url.is_none());
    let selector = hook.namespace_selector.expect("namespace selector");
    assert_eq!(
        selector.match_labels.expect("labels")["mesh-injection"],
        "enabled"
    );
    let [rule] = hook.rules.expect("rules").try_into().expect("one rule");
    assert_eq!(rule.operations.as_deref(), Some(&["CREATE".to_owned()][..]));
    assert_eq!(rule.api_groups.as_deref(), Some(&[String::new()][..]));
    assert_eq!(rule.resources.as_deref(), Some(&["pods".to_owned()][..]));

    let validator = find::<ValidatingWebhookConfiguration>(&all, VALIDATOR_CONFIG);
    let [hook] = validator
        .webhooks
        .expect("webhooks")
        .try_into()
        .expect("one");
    assert_eq!(hook.name, "validation.mesh.dev");
    assert_eq!(hook.failure_policy.as_deref(), Some("Fail"));
    assert_eq!(hook.timeout_seconds, Some(10));
    assert_eq!(hook.side_effects, "None");
    assert_eq!(hook.admission_review_versions, ["v1"]);
    let svc = hook.client_config.service.expect("service");
    assert_eq!(
        (svc.path.as_deref(), svc.port),
        (Some("/validate"), Some(15017))
    );
    let [rule] = hook.rules.expect("rules").try_into().expect("one rule");
    assert_eq!(
        rule.api_groups,
        Some(vec![
            "networking.mesh.dev".to_owned(),
            "security.mesh.dev".to_owned()
        ])
    );
    assert_eq!(rule.api_versions, Some(vec!["v1alpha1".to_owned()]));
    assert_eq!(
        rule.operations,
        Some(vec!["CREATE".to_owned(), "UPDATE".to_owned()])
    );
    assert_eq!(rule.resources, Some(vec!["*".to_owned()]));
}

#[test]
fn webhook_overrides_apply_to_both_configurations() {
    let all = objects(&values(
        Profile::Default,
        &["webhook.failurePolicy=Ignore", "webhook.timeoutSeconds=5"],
    ));
    let m = find::<MutatingWebhookConfiguration>(&all, INJECTOR_CONFIG);
    let v = find::<ValidatingWebhookConfiguration>(&all, VALIDATOR_CONFIG);
    for (policy, timeout) in m
        .webhooks
        .iter()
        .flatten()
        .map(|w| (w.failure_policy.clone(), w.timeout_seconds))
        .chain(
            v.webhooks
                .iter()
                .flatten()
                .map(|w| (w.failure_policy.clone(), w.timeout_seconds)),
        )
    {
        assert_eq!(policy.as_deref(), Some("Ignore"));
        assert_eq!(timeout, Some(5));
    }
}

// === namespace, images, gateway ===

#[test]
fn the_namespace_override_reaches_every_reference() {
    let all = objects(&values(Profile::Default, &["namespace=mesh-prod"]));
    assert_eq!(
        find::<Namespace>(&all, "mesh-prod")
            .metadata
            .name
            .as_deref(),
        Some("mesh-prod")
    );
    for o in &all {
        match kind(o) {
            "CustomResourceDefinition"
            | "Namespace"
            | "ClusterRole"
            | "ClusterRoleBinding"
            | "MutatingWebhookConfiguration"
            | "ValidatingWebhookConfiguration" => {
                assert_eq!(o.metadata.namespace, None, "{} is cluster-scoped", kind(o));
            }
            _ => assert_eq!(
                o.metadata.namespace.as_deref(),
                Some("mesh-prod"),
                "{} {}",
                kind(o),
                name(o)
            ),
        }
        if kind(o) != "CustomResourceDefinition" {
            let json = serde_json::to_string(o).expect("serializes");
            assert!(!json.contains("mesh-system"), "{json}");
        }
    }
    for s in find::<ClusterRoleBinding>(&all, CONTROL)
        .subjects
        .into_iter()
        .flatten()
        .chain(
            find::<RoleBinding>(&all, CONTROL)
                .subjects
                .into_iter()
                .flatten(),
        )
    {
        assert_eq!(s.namespace.as_deref(), Some("mesh-prod"));
    }
    let m = find::<MutatingWebhookConfiguration>(&all, INJECTOR_CONFIG);
    let v = find::<ValidatingWebhookConfiguration>(&all, VALIDATOR_CONFIG);
    let namespaces: Vec<String> = m
        .webhooks
        .iter()
        .flatten()
        .map(|w| w.client_config.clone())
        .chain(v.webhooks.iter().flatten().map(|w| w.client_config.clone()))
        .map(|c| c.service.expect("service").namespace)
        .collect();
    assert_eq!(namespaces, ["mesh-prod", "mesh-prod"]);
    let control = container(&find::<Deployment>(&all, CONTROL));
    assert_eq!(flag(&args(&control), "--root-namespace"), Some("mesh-prod"));
    let gateway = container(&find::<Deployment>(&all, GATEWAY));
    assert_eq!(
        env(&gateway, "MESH_CONTROL_ADDR").as_deref(),
        Some("mesh-control.mesh-prod.svc:15012")
    );
    assert_eq!(
        env(&gateway, "MESH_CONTROL_PLANE_IDENTITY").as_deref(),
        Some("spiffe://cluster.local/ns/mesh-prod/sa/mesh-control")
    );
}

#[test]
fn images_follow_hub_and_tag() {
    let default = objects(&Values::default());
    let tag = mesh_api::inject::DEFAULT_TAG;
    let control = container(&find::<Deployment>(&default, CONTROL));
    assert_eq!(
        control.image.as_deref(),
        Some(format!("ghcr.io/mesh-dev/mesh-control:{tag}").as_str())
    );
    assert_eq!(
        flag(&args(&control), "--proxy-image"),
        Some(format!("ghcr.io/mesh-dev/mesh-proxy:{tag}").as_str())
    );

    let all = objects(&values(
        Profile::Default,
        &["hub=registry.example.com/mesh/", "tag=dev-1"],
    ));
    let control = container(&find::<Deployment>(&all, CONTROL));
    assert_eq!(
        control.image.as_deref(),
        Some("registry.example.com/mesh/mesh-control:dev-1")
    );
    assert_eq!(
        flag(&args(&control), "--proxy-image"),
        Some("registry.example.com/mesh/mesh-proxy:dev-1")
    );
    let gateway = container(&find::<Deployment>(&all, GATEWAY));
    assert_eq!(
        gateway.image.as_deref(),
        Some("registry.example.com/mesh/mesh-proxy:dev-1")
    );

    let all = objects(&values(
        Profile::Default,
        &["control.image=example.com/cp@sha256:abc", "tag=dev-1"],
    ));
    let control = container(&find::<Deployment>(&all, CONTROL));
    assert_eq!(control.image.as_deref(), Some("example.com/cp@sha256:abc"));
    assert_eq!(
        flag(&args(&control), "--proxy-image"),
        Some("ghcr.io/mesh-dev/mesh-proxy:dev-1")
    );
}

#[test]
fn the_gateway_joins_the_mesh_like_a_sidecar() {
    use mesh_api::inject;

    let all = objects(&Values::default());
    let d = find::<Deployment>(&all, GATEWAY);
    let spec = d.spec.clone().expect("spec");
    let meta = spec.template.metadata.expect("metadata");
    let labels = meta.labels.expect("labels");
    assert_eq!(labels["mesh"], "ingressgateway");
    assert_eq!(labels["app"], "mesh-ingressgateway");
    let annotations = meta.annotations.expect("annotations");
    assert_eq!(annotations[inject::INJECT_ANNOTATION], "false");
    assert_eq!(annotations["prometheus.io/port"], "15020");
    let pod = spec.template.spec.expect("pod");
    assert_eq!(pod.service_account_name.as_deref(), Some(GATEWAY));
    assert_eq!(pod.automount_service_account_token, Some(false));

    let c = container(&d);
    assert_eq!(c.name, inject::PROXY_CONTAINER);
    assert_eq!(c.args.as_deref(), Some(&["gateway".to_owned()][..]));
    for (name, path) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
        ("POD_IP", "status.podIP"),
        ("SERVICE_ACCOUNT", "spec.serviceAccountName"),
    ] {
        let var = c.env.iter().flatten().find(|e| e.name == name).expect(name);
        let field = var.value_from.clone().and_then(|v| v.field_ref);
        assert_eq!(field.map(|f| f.field_path).as_deref(), Some(path));
    }
    assert_eq!(
        env(&c, "MESH_CONTROL_ADDR").as_deref(),
        Some("mesh-control.mesh-system.svc:15012")
    );
    assert_eq!(
        env(&c, "MESH_TRUST_DOMAIN").as_deref(),
        Some("cluster.local")
    );
    assert_eq!(env(&c, "MESH_LOG").as_deref(), Some("info"));
    assert_eq!(
        env(&c, "MESH_TOKEN_FILE").as_deref(),
        Some(inject::TOKEN_FILE)
    );
    assert_eq!(
        env(&c, "MESH_CA_BUNDLE").as_deref(),
        Some(inject::CA_BUNDLE_FILE)
    );
    let ports: Vec<(String, i32)> = c
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone().expect("named"), p.container_port))
        .collect();
    assert_eq!(
        ports,
        [
            ("http2".to_owned(), 8080),
            ("https".to_owned(), 8443),
            ("http-metrics".to_owned(), 15020),
            ("status-port".to_owned(), 15021)
        ]
    );
    let ready = c
        .readiness_probe
        .clone()
        .expect("readiness")
        .http_get
        .expect("http");
    assert_eq!(ready.path.as_deref(), Some("/healthz/ready"));
    assert_eq!(ready.port, IntOrString::Int(15021));
    let sc = c.security_context.clone().expect("security context");
    assert_eq!(sc.run_as_user, Some(1337));
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));

    // The token and trust bundle are mounted where the proxy's files point.
    let volumes = pod.volumes.expect("volumes");
    let token = volumes
        .iter()
        .find(|v| v.name == inject::TOKEN_VOLUME)
        .and_then(|v| v.projected.clone())
        .and_then(|p| p.sources)
        .and_then(|s| s.into_iter().next())
        .and_then(|s| s.service_account_token)
        .expect("a projected token");
    assert_eq!(token.audience.as_deref(), Some(inject::TOKEN_AUDIENCE));
    assert_eq!(
        token.expiration_seconds,
        Some(inject::TOKEN_EXPIRATION_SECONDS)
    );
    assert_eq!(
        format!("{}/{}", inject::TOKEN_DIR, token.path),
        inject::TOKEN_FILE
    );
    let root = volumes
        .iter()
        .find(|v| v.name == inject::ROOT_CERT_VOLUME)
        .and_then(|v| v.config_map.clone())
        .expect("the trust bundle");
    assert_eq!(root.name, "mesh-root-cert");
    let mounts = c.volume_mounts.expect("mounts");
    let mounted = |volume: &str| {
        mounts
            .iter()
            .find(|m| m.name == volume)
            .map(|m| m.mount_path.clone())
    };
    assert_eq!(
        mounted(inject::TOKEN_VOLUME).as_deref(),
        Some(inject::TOKEN_DIR)
    );
    assert_eq!(
        mounted(inject::ROOT_CERT_VOLUME).map(|d| format!("{d}/{}", inject::ROOT_CERT_KEY)),
        Some(inject::CA_BUNDLE_FILE.to_owned())
    );

    let svc = find::<Service>(&all, GATEWAY).spec.expect("spec");
    assert_eq!(svc.type_.as_deref(), Some("LoadBalancer"));
    assert_eq!(
        svc.selector.expect("selector"),
        [("mesh".to_owned(), "ingressgateway".to_owned())].into()
    );
    let ports: Vec<(String, i32, Option<IntOrString>)> = svc
        .ports
        .into_iter()
        .flatten()
        .map(|p| (p.name.expect("named"), p.port, p.target_port))
        .collect();
    assert_eq!(
        ports,
        [
            ("http2".to_owned(), 80, Some(IntOrString::Int(8080))),
            ("https".to_owned(), 443, Some(IntOrString::Int(8443))),
            (
                "status-port".to_owned(),
                15021,
                Some(IntOrString::Int(15021))
            )
        ]
    );

    let all = objects(&values(
        Profile::Default,
        &["gateway.serviceType=ClusterIP", "gateway.replicas=2"],
    ));
    let svc = find::<Service>(&all, GATEWAY).spec.expect("spec");
    assert_eq!(svc.type_.as_deref(), Some("ClusterIP"));
    let d = find::<Deployment>(&all, GATEWAY);
    assert_eq!(d.spec.and_then(|s| s.replicas), Some(2));
}

// === CRDs ===

#[test]
fn the_embedded_crds_are_every_file_of_deploy_crds_and_current() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("deploy/crds")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let embedded: Vec<&str> = crds::EMBEDDED.iter().map(|(f, _)| *f).collect();
    assert_eq!(
        files, embedded,
        "add new CRD files to manifest::crds::EMBEDDED"
    );

    let mut generated = mesh_api::config::crd_definitions();
    generated.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    assert_eq!(
        crds::crds().expect("parses"),
        generated,
        "deploy/crds is stale: run `cargo xtask codegen`"
    );
    let names: Vec<String> = generated
        .iter()
        .map(|c| format!("{}.yaml", c.metadata.name.as_deref().unwrap_or_default()))
        .collect();
    assert_eq!(names, embedded);
}

#[test]
fn no_gateway_api_crds_are_rendered() {
    for o in objects(&Values::default()) {
        if kind(&o) == "CustomResourceDefinition" {
            assert!(
                name(&o).ends_with(".mesh.dev"),
                "{} is not one of ours",
                name(&o)
            );
        }
    }
}

// === --set ===

#[test]
fn every_key_can_be_set_and_changes_something() {
    for key in KEYS {
        let before = Values::default();
        let mut after = before.clone();
        after
            .set(key.name, key.example)
            .unwrap_or_else(|e| panic!("{}: {e}", key.name));
        assert_ne!(before, after, "{} has no effect", key.name);
        for profile in Profile::ALL {
            Values::profile(profile)
                .set(key.name, key.example)
                .unwrap_or_else(|e| panic!("{} {profile}: {e}", key.name));
        }
    }
}

#[test]
fn unknown_keys_list_the_valid_ones() {
    let e = set_error(&["gateway.enable=false"]);
    assert!(e.contains("unknown --set key \"gateway.enable\""), "{e}");
    for key in KEYS {
        assert!(e.contains(key.name), "{e} lacks {}", key.name);
    }
    let e = set_error(&["gateway.enabled"]);
    assert!(e.contains("expected KEY=VALUE"), "{e}");
}

#[test]
fn bad_values_name_the_key_the_value_and_the_form() {
    for (set, expected) in [
        ("namespace=Mesh_System", "DNS label"),
        ("namespace=-mesh", "DNS label"),
        ("hub=https://ghcr.io/x", "without a scheme"),
        ("tag=v1:2", "image tag"),
        ("imagePullPolicy=always", "Always, IfNotPresent or Never"),
        ("trustDomain=Example.ORG", "SPIFFE trust domain"),
        ("logLevel=", "tracing filter"),
        ("proxy.logLevel=info debug", "tracing filter"),
        ("proxy.accessLog=yes", "true or false"),
        ("proxy.traceSampling=101", "percentage from 0 to 100"),
        ("proxy.traceSampling=-1", "percentage from 0 to 100"),
        ("proxy.traceSampling=NaN", "percentage from 0 to 100"),
        ("proxy.traceCollector=otel:4317", "http://HOST[:PORT]"),
        (
            "proxy.traceCollector=https://otel:4317",
            "http://HOST[:PORT]",
        ),
        (
            "proxy.traceCollector=http://otel:4317/v1",
            "http://HOST[:PORT]",
        ),
        ("proxy.resources.requests.cpu=100 m", "Kubernetes quantity"),
        (
            "proxy.resources.requests.memory=-40Mi",
            "Kubernetes quantity",
        ),
        ("control.resources.limits.memory=1GB", "Kubernetes quantity"),
        ("control.image=", "whole image reference"),
        ("control.replicas=0", "integer from 1 to 100"),
        ("control.replicas=two", "integer from 1 to 100"),
        ("gateway.enabled=1", "true or false"),
        ("gateway.replicas=101", "integer from 1 to 100"),
        (
            "gateway.serviceType=External",
            "LoadBalancer, NodePort or ClusterIP",
        ),
        ("webhook.failurePolicy=fail", "Fail or Ignore"),
        ("webhook.timeoutSeconds=31", "integer from 1 to 30"),
        ("webhook.timeoutSeconds=0", "integer from 1 to 30"),
    ] {
        let e = set_error(&[set]);
        let (key, value) = set.split_once('=').expect("KEY=VALUE");
        assert!(
            e.contains(&format!("invalid --set {key}={value:?}")),
            "{set}: {e}"
        );
        assert!(e.contains(expected), "{set}: {e}");
    }
}

#[test]
fn requests_above_limits_are_refused() {
    let e = set_error(&["proxy.resources.requests.memory=256Mi"]);
    assert!(
        e.contains(
            "proxy.resources.requests.memory 256Mi is above proxy.resources.limits.memory 128Mi"
        ),
        "{e}"
    );
    let e = set_error(&[
        "control.resources.limits.cpu=500m",
        "control.resources.requests.cpu=1",
    ]);
    assert!(
        e.contains("control.resources.requests.cpu 1 is above"),
        "{e}"
    );
    // Equal is fine, and a later --set wins.
    let v = values(
        Profile::Default,
        &[
            "proxy.resources.requests.memory=256Mi",
            "proxy.resources.limits.memory=0.25Gi",
            "proxy.resources.limits.memory=1Gi",
        ],
    );
    assert_eq!(v.proxy.resources.limits_memory.as_deref(), Some("1Gi"));
}

#[test]
fn quantities_parse_as_kubernetes_does() {
    for (q, want) in [
        ("0", 0.0),
        ("100m", 0.1),
        ("0.5", 0.5),
        (".5", 0.5),
        ("1.", 1.0),
        ("+2", 2.0),
        ("128Mi", 128.0 * 1024.0 * 1024.0),
        ("1Gi", 1024.0 * 1024.0 * 1024.0),
        ("1G", 1e9),
        ("1k", 1e3),
        ("1e3", 1e3),
        ("1E3", 1e3),
        ("1E", 1e18),
        ("5e-1", 0.5),
    ] {
        assert_eq!(parse_quantity(q), Some(want), "{q}");
    }
    for q in [
        "", "m", "-1", "1 Mi", "1MB", "1mi", "1.2.3", "1e", "1e1.5", "Mi", "1Ki2", "0x10",
    ] {
        assert_eq!(parse_quantity(q), None, "{q:?}");
    }
}

#[test]
fn the_set_help_and_the_module_docs_list_every_key() {
    let cmd = ValuesArgs::augment_args(clap::Command::new("test"));
    let set = cmd
        .get_arguments()
        .find(|a| a.get_id() == "set")
        .expect("--set");
    let help = set
        .get_long_help()
        .or_else(|| set.get_help())
        .expect("help")
        .to_string();
    let docs: String = include_str!("values.rs")
        .lines()
        .filter(|l| l.starts_with("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    for key in KEYS {
        assert!(
            help.lines()
                .any(|l| l.split_whitespace().next() == Some(key.name)),
            "--set help lacks {}",
            key.name
        );
        assert!(
            docs.contains(&format!("| `{}` |", key.name)),
            "docs lack {}",
            key.name
        );
    }
}

#[test]
fn manifest_generate_prints_the_rendered_yaml() {
    let cli = crate::Cli::try_parse_from([
        "meshctl",
        "manifest",
        "generate",
        "--profile",
        "minimal",
        "--set",
        "namespace=mesh",
    ])
    .expect("parses");
    let crate::Command::Manifest(args) = cli.command else {
        panic!("not manifest");
    };
    let mut out = Vec::new();
    run(&args, &mut out).expect("runs");
    let want = to_yaml(&objects(&values(Profile::Minimal, &["namespace=mesh"]))).expect("yaml");
    assert_eq!(String::from_utf8(out).expect("utf-8"), want);
}

#[test]
fn gateway_credentials_are_mounted_secrets_the_gateway_reads_itself() {
    let all = objects(&values(
        Profile::Default,
        &["gateway.credentials=shop-cert,api.example.com"],
    ));
    let deployment = find::<Deployment>(&all, GATEWAY);
    let gateway = container(&deployment);
    assert_eq!(
        env(&gateway, "MESH_GATEWAY_CREDENTIALS_DIR").as_deref(),
        Some(gateway::CREDENTIALS_DIR)
    );
    let pod = deployment
        .spec
        .and_then(|s| s.template.spec)
        .expect("pod spec");
    let mounts = gateway.volume_mounts.expect("mounts");
    for name in ["shop-cert", "api.example.com"] {
        let path = format!("{}/{name}", gateway::CREDENTIALS_DIR);
        let mount = mounts
            .iter()
            .find(|m| m.mount_path == path)
            .unwrap_or_else(|| panic!("no mount at {path}: {mounts:#?}"));
        assert_eq!(mount.read_only, Some(true));
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == mount.name)
            .expect("the mounted volume");
        let secret = volume.secret.as_ref().expect("a Secret volume");
        assert_eq!(secret.secret_name.as_deref(), Some(name));
        assert_eq!(secret.optional, Some(true), "the pod starts without it");
    }
    // mesh-control never reads them: no access to Secrets beyond its own Role.
    let role = find::<ClusterRole>(&all, CONTROL);
    assert!(
        !role.rules.iter().flatten().any(|r| r
            .resources
            .iter()
            .flatten()
            .any(|res| res == "secrets")),
        "{role:#?}"
    );

    // None by default: nothing mounted.
    let default = find::<Deployment>(&objects(&values(Profile::Default, &[])), GATEWAY);
    let mounts = container(&default).volume_mounts.expect("mounts");
    assert!(
        mounts
            .iter()
            .all(|m| !m.mount_path.starts_with(gateway::CREDENTIALS_DIR)),
        "{mounts:#?}"
    );
    assert!(set_error(&["gateway.credentials=Shop_Cert"]).contains("gateway.credentials"));
}
