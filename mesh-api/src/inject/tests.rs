//! Injection of typed pods and pod templates.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, ExecAction, GRPCAction, HTTPGetAction, HTTPHeader, Pod, PodSpec,
    PodTemplateSpec, Probe, TCPSocketAction, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};

use super::*;

// === fixtures ===

fn mk_container(name: &str) -> Container {
    Container {
        name: name.to_owned(),
        image: Some(format!("example.com/{name}:1.0")),
        ..Container::default()
    }
}

fn mk_template(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> PodTemplateSpec {
    let map = |kv: &[(&str, &str)]| {
        (!kv.is_empty()).then(|| {
            kv.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>()
        })
    };
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: map(labels),
            annotations: map(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![mk_container("app")],
            service_account_name: Some("web".to_owned()),
            ..PodSpec::default()
        }),
    }
}

fn mk_pod(annotations: &[(&str, &str)]) -> Pod {
    let t = mk_template(&[("app", "web")], annotations);
    Pod {
        metadata: ObjectMeta {
            name: Some("web-0".to_owned()),
            namespace: Some("shop".to_owned()),
            ..t.metadata.unwrap()
        },
        spec: t.spec,
        status: None,
    }
}

fn mk_deployment() -> Deployment {
    let mut template = mk_template(&[("app", "web"), ("version", "v1")], &[]);
    let spec = template.spec.as_mut().unwrap();
    spec.init_containers = Some(vec![mk_container("migrate")]);
    spec.volumes = Some(vec![Volume {
        name: "data".to_owned(),
        empty_dir: Some(Default::default()),
        ..Volume::default()
    }]);
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".to_owned()),
            namespace: Some("shop".to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([("app".to_owned(), "web".to_owned())])),
                ..LabelSelector::default()
            },
            template,
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

fn classic() -> Context {
    Context {
        native_sidecars: false,
        ..Context::default()
    }
}

fn injected<T>(outcome: Result<Outcome<T>, InjectError>) -> (T, Vec<String>) {
    match outcome {
        Ok(Outcome::Injected { pod, warnings }) => (*pod, warnings),
        other => panic!("expected an injected pod, got {:?}", other.map(|_| "…")),
    }
}

fn skipped<T: std::fmt::Debug>(outcome: Result<Outcome<T>, InjectError>) -> Skip {
    match outcome {
        Ok(Outcome::Skipped(skip)) => skip,
        other => panic!("expected a skipped pod, got {other:?}"),
    }
}

fn spec(t: &PodTemplateSpec) -> &PodSpec {
    t.spec.as_ref().unwrap()
}

fn names(cs: Option<&Vec<Container>>) -> Vec<&str> {
    cs.into_iter().flatten().map(|c| c.name.as_str()).collect()
}

fn container<'a>(cs: Option<&'a Vec<Container>>, name: &str) -> &'a Container {
    cs.into_iter()
        .flatten()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

fn init_args(t: &PodTemplateSpec) -> Vec<String> {
    container(spec(t).init_containers.as_ref(), INIT_CONTAINER)
        .args
        .clone()
        .unwrap()
}

// === the injected pod ===

/// The whole proxy and init container and the volumes, field by field: any change to the
/// contract (names, ports, env, mounts, security) fails here.
#[test]
fn deployment_template_gets_exactly_the_init_container_proxy_and_volumes() {
    let deployment = mk_deployment();
    let template = &deployment.spec.as_ref().unwrap().template;
    let (t, warnings) = injected(inject_template(template, &Context::default()));
    assert_eq!(warnings, Vec::<String>::new());
    let image = format!("ghcr.io/mesh-dev/mesh-proxy:{}", env!("CARGO_PKG_VERSION"));
    let resources = json!({
        "requests": {"cpu": "10m", "memory": "40Mi"},
        "limits": {"memory": "128Mi"},
    });

    // Native sidecars: mesh-init, then the proxy, then the pod's own init containers; the
    // app containers are untouched.
    assert_eq!(
        names(spec(&t).init_containers.as_ref()),
        ["mesh-init", "mesh-proxy", "migrate"]
    );
    assert_eq!(
        spec(&t).containers,
        template.spec.as_ref().unwrap().containers
    );

    let init = serde_json::to_value(&spec(&t).init_containers.as_ref().unwrap()[0]).unwrap();
    assert_eq!(
        init,
        json!({
            "name": "mesh-init",
            "image": image,
            "args": ["init"],
            "resources": resources,
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "privileged": false,
                "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
                "runAsUser": 0,
                "runAsGroup": 0,
                "runAsNonRoot": false,
            },
            "terminationMessagePolicy": "FallbackToLogsOnError",
        })
    );

    let ready = |period: i32, failures: i32| {
        json!({
            "httpGet": {"path": "/healthz/ready", "port": 15021},
            "periodSeconds": period,
            "timeoutSeconds": 3,
            "failureThreshold": failures,
        })
    };
    let field = |name: &str, path: &str| json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}});
    let value = |name: &str, value: &str| json!({"name": name, "value": value});
    let proxy = serde_json::to_value(&spec(&t).init_containers.as_ref().unwrap()[1]).unwrap();
    assert_eq!(
        proxy,
        json!({
            "name": "mesh-proxy",
            "image": image,
            "args": [
                "run",
                "--label", "app=web",
                "--label", "security.mesh.dev/tlsMode=mesh",
                "--label", "version=v1",
            ],
            "env": [
                field("POD_NAME", "metadata.name"),
                field("POD_NAMESPACE", "metadata.namespace"),
                field("POD_IP", "status.podIP"),
                field("SERVICE_ACCOUNT", "spec.serviceAccountName"),
                value("MESH_CONTROL_ADDR", "mesh-control.mesh-system.svc:15012"),
                value("MESH_TRUST_DOMAIN", "cluster.local"),
                value(
                    "MESH_CONTROL_PLANE_IDENTITY",
                    "spiffe://cluster.local/ns/mesh-system/sa/mesh-control",
                ),
                value("MESH_LOG", "info"),
                value("MESH_TOKEN_FILE", "/var/run/secrets/tokens/mesh-token"),
                value("MESH_CA_BUNDLE", "/var/run/secrets/mesh/root-cert.pem"),
            ],
            "ports": [
                {"containerPort": 15008, "name": "mesh", "protocol": "TCP"},
                {"containerPort": 15020, "name": "mesh-metrics", "protocol": "TCP"},
                {"containerPort": 15021, "name": "mesh-health", "protocol": "TCP"},
            ],
            "readinessProbe": ready(5, 3),
            "startupProbe": ready(1, 600),
            "restartPolicy": "Always",
            "resources": resources,
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "privileged": false,
                "capabilities": {"drop": ["ALL"]},
                "readOnlyRootFilesystem": true,
                "runAsUser": 1337,
                "runAsGroup": 1337,
                "runAsNonRoot": true,
            },
            "volumeMounts": [
                {"name": "mesh-token", "mountPath": "/var/run/secrets/tokens", "readOnly": true},
                {"name": "mesh-root-cert", "mountPath": "/var/run/secrets/mesh", "readOnly": true},
            ],
        })
    );

    let volumes = serde_json::to_value(spec(&t).volumes.as_ref().unwrap()).unwrap();
    assert_eq!(
        volumes,
        json!([
            {"name": "data", "emptyDir": {}},
            {"name": "mesh-token", "projected": {"sources": [{"serviceAccountToken": {
                "audience": "mesh-control", "expirationSeconds": 43200, "path": "mesh-token",
            }}]}},
            {"name": "mesh-root-cert", "configMap": {
                "name": "mesh-root-cert",
                "items": [{"key": "root-cert.pem", "path": "root-cert.pem"}],
            }},
        ])
    );

    let meta = t.metadata.as_ref().unwrap();
    assert_eq!(
        meta.labels.as_ref().unwrap(),
        &BTreeMap::from([
            ("app".to_owned(), "web".to_owned()),
            ("security.mesh.dev/tlsMode".to_owned(), "mesh".to_owned()),
            ("version".to_owned(), "v1".to_owned()),
        ])
    );
    let annotations: Value = serde_json::to_value(meta.annotations.as_ref().unwrap()).unwrap();
    let status = format!(
        r#"{{"version":"{}","initContainers":["mesh-init","mesh-proxy"],"containers":[],"volumes":["mesh-token","mesh-root-cert"]}}"#,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(
        annotations,
        json!({
            "prometheus.io/path": "/metrics",
            "prometheus.io/port": "15020",
            "prometheus.io/scrape": "true",
            "sidecar.mesh.dev/status": status,
        })
    );
    assert_eq!(
        Status::of(meta),
        Some(Status {
            version: VERSION.to_owned(),
            init_containers: vec!["mesh-init".to_owned(), "mesh-proxy".to_owned()],
            containers: Vec::new(),
            volumes: vec!["mesh-token".to_owned(), "mesh-root-cert".to_owned()],
        })
    );
}

/// Before 1.29: the proxy is the first container, without the native-sidecar fields; the
/// pod's own init containers run before mesh-init; warnings say what that costs.
#[test]
fn classic_sidecar_comes_first_in_containers_with_warnings() {
    let deployment = mk_deployment();
    let template = &deployment.spec.as_ref().unwrap().template;
    let (t, warnings) = injected(inject_template(template, &classic()));
    assert_eq!(
        names(spec(&t).init_containers.as_ref()),
        ["migrate", "mesh-init"]
    );
    assert_eq!(names(Some(&spec(&t).containers)), ["mesh-proxy", "app"]);
    let proxy = &spec(&t).containers[0];
    assert_eq!(proxy.restart_policy, None);
    assert_eq!(proxy.startup_probe, None);
    // The application starts only once the proxy is ready: the kubelet waits for the
    // first container's postStart hook.
    let hook = proxy
        .lifecycle
        .as_ref()
        .and_then(|l| l.post_start.as_ref())
        .and_then(|h| h.exec.as_ref())
        .and_then(|e| e.command.clone());
    assert_eq!(hook, Some(vec!["mesh-proxy".to_owned(), "wait".to_owned()]));
    assert!(proxy.readiness_probe.is_some());
    let meta = t.metadata.as_ref().unwrap();
    assert_eq!(annotation(meta, DEFAULT_CONTAINER_ANNOTATION), Some("app"));
    assert_eq!(
        Status::of(meta).unwrap().containers,
        [PROXY_CONTAINER.to_owned()]
    );
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("migrate") && warnings[0].contains("outside the mesh"),
        "{warnings:#?}"
    );
    // Native sidecars need no hook: the startup probe orders the start.
    let (native, _) = injected(inject_template(template, &Context::default()));
    let proxy = spec(&native)
        .init_containers
        .iter()
        .flatten()
        .find(|c| c.name == PROXY_CONTAINER)
        .unwrap();
    assert_eq!(proxy.lifecycle, None);
}

#[test]
fn pods_are_injected_and_keep_their_status_and_identity_fields() {
    let pod = mk_pod(&[]);
    let (out, _) = injected(inject_pod(&pod, &Context::default()));
    assert_eq!(out.metadata.name.as_deref(), Some("web-0"));
    assert_eq!(out.metadata.namespace.as_deref(), Some("shop"));
    let spec = out.spec.as_ref().unwrap();
    assert_eq!(
        names(spec.init_containers.as_ref()),
        ["mesh-init", "mesh-proxy"]
    );
    assert_eq!(names(Some(&spec.containers)), ["app"]);
    assert_eq!(spec.service_account_name.as_deref(), Some("web"));
}

/// Context settings reach the containers.
#[test]
fn context_settings_reach_the_containers() {
    let ctx = Context {
        image: Context::image("registry.local:5000/mesh/", "dev"),
        control_plane_addr: "10.0.0.1:15012".to_owned(),
        trust_domain: "example.org".to_owned(),
        log_level: "debug".to_owned(),
        access_log: true,
        trace_sampling: Some(100.0),
        trace_collector: Some("http://otel.observability:4317".to_owned()),
        ..Context::default()
    };
    let (pod, _) = injected(inject_pod(&mk_pod(&[]), &ctx));
    let spec = pod.spec.unwrap();
    let proxy = container(spec.init_containers.as_ref(), PROXY_CONTAINER);
    assert_eq!(
        proxy.image.as_deref(),
        Some("registry.local:5000/mesh/mesh-proxy:dev")
    );
    let env: BTreeMap<_, _> = proxy
        .env
        .iter()
        .flatten()
        .filter_map(|e| Some((e.name.as_str(), e.value.as_deref()?)))
        .collect();
    assert_eq!(env["MESH_CONTROL_ADDR"], "10.0.0.1:15012");
    assert_eq!(env["MESH_TRUST_DOMAIN"], "example.org");
    assert_eq!(
        env["MESH_CONTROL_PLANE_IDENTITY"],
        "spiffe://example.org/ns/mesh-system/sa/mesh-control"
    );
    assert_eq!(env["MESH_LOG"], "debug");
    assert_eq!(env["MESH_ACCESS_LOG"], "true");
    assert_eq!(env["MESH_TRACE_SAMPLING"], "100");
    assert_eq!(
        env["MESH_TRACE_COLLECTOR"],
        "http://otel.observability:4317"
    );
    // Off by default: the proxy's own defaults apply.
    let (plain, _) = injected(inject_pod(&mk_pod(&[]), &Context::default()));
    let plain = plain.spec.unwrap();
    let names: Vec<&str> = container(plain.init_containers.as_ref(), PROXY_CONTAINER)
        .env
        .iter()
        .flatten()
        .map(|e| e.name.as_str())
        .collect();
    for absent in [
        "MESH_ACCESS_LOG",
        "MESH_TRACE_SAMPLING",
        "MESH_TRACE_COLLECTOR",
    ] {
        assert!(!names.contains(&absent), "{absent} in {names:?}");
    }
    let bad_sampling = Context {
        trace_sampling: Some(150.0),
        ..Context::default()
    };
    let err = inject_pod(&mk_pod(&[]), &bad_sampling).unwrap_err();
    assert!(err.to_string().contains("150"), "{err}");

    let bad = Context {
        trust_domain: "Not A Domain".to_owned(),
        ..Context::default()
    };
    let err = inject_pod(&mk_pod(&[]), &bad).unwrap_err();
    assert!(matches!(err, InjectError::Context(_)), "{err}");
    assert!(err.to_string().contains("Not A Domain"), "{err}");
}

// === skipped pods ===

#[test]
fn opted_out_pods_are_skipped_and_bad_inject_values_rejected() {
    for value in ["false", "False", " false "] {
        let pod = mk_pod(&[(INJECT_ANNOTATION, value)]);
        assert_eq!(
            skipped(inject_pod(&pod, &Context::default())),
            Skip::OptedOut
        );
    }
    let pod = mk_pod(&[(INJECT_ANNOTATION, "true")]);
    injected(inject_pod(&pod, &Context::default()));

    let pod = mk_pod(&[(INJECT_ANNOTATION, "nope")]);
    let err = inject_pod(&pod, &Context::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("sidecar.mesh.dev/inject") && msg.contains("\"nope\""),
        "{msg}"
    );
    assert!(msg.contains("\"true\" or \"false\""), "{msg}");
}

#[test]
fn host_network_pods_are_skipped() {
    let mut pod = mk_pod(&[]);
    pod.spec.as_mut().unwrap().host_network = Some(true);
    let skip = skipped(inject_pod(&pod, &Context::default()));
    assert_eq!(skip, Skip::HostNetwork);
    assert!(skip.to_string().contains("hostNetwork"), "{skip}");
}

/// Injecting twice is injecting once: the second run finds `mesh-proxy` and changes
/// nothing, in both modes; a `mesh-proxy` container alone counts too.
#[test]
fn already_injected_pods_are_left_unchanged() {
    for ctx in [Context::default(), classic()] {
        let (once, _) = injected(inject_pod(&mk_pod(&[]), &ctx));
        let skip = skipped(inject_pod(&once, &ctx));
        assert_eq!(
            skip,
            Skip::AlreadyInjected {
                status: Status::of(&once.metadata)
            }
        );
        assert!(matches!(skip, Skip::AlreadyInjected { status: Some(_) }));
    }
    let mut pod = mk_pod(&[]);
    pod.spec
        .as_mut()
        .unwrap()
        .containers
        .push(mk_container("mesh-proxy"));
    assert_eq!(
        skipped(inject_pod(&pod, &Context::default())),
        Skip::AlreadyInjected { status: None }
    );

    // A record of another injector version says so.
    let stale = Skip::AlreadyInjected {
        status: Some(Status {
            version: "0.0.1".to_owned(),
            init_containers: Vec::new(),
            containers: vec![PROXY_CONTAINER.to_owned()],
            volumes: Vec::new(),
        }),
    };
    let msg = stale.to_string();
    assert!(msg.contains("0.0.1") && msg.contains(VERSION), "{msg}");
}

#[test]
fn reserved_names_are_errors_not_duplicates() {
    let mut pod = mk_pod(&[]);
    pod.spec
        .as_mut()
        .unwrap()
        .containers
        .push(mk_container("mesh-init"));
    let err = inject_pod(&pod, &Context::default()).unwrap_err();
    assert_eq!(
        err,
        InjectError::ReservedName {
            what: "a container",
            name: "mesh-init".to_owned()
        }
    );

    let mut pod = mk_pod(&[]);
    pod.spec.as_mut().unwrap().volumes = Some(vec![Volume {
        name: "mesh-token".to_owned(),
        ..Volume::default()
    }]);
    let err = inject_pod(&pod, &Context::default()).unwrap_err();
    assert!(
        err.to_string().contains("a volume named \"mesh-token\""),
        "{err}"
    );
}

/// The namespace comes from the pod, or from the context when the pod names none.
#[test]
fn identity_is_checked_with_the_context_namespace_when_the_pod_has_none() {
    let mut pod = mk_pod(&[]);
    pod.metadata.namespace = None;
    let ctx = Context {
        namespace: "bad ns".to_owned(),
        ..Context::default()
    };
    let err = inject_pod(&pod, &ctx).unwrap_err();
    assert!(
        matches!(&err, InjectError::Identity { namespace, .. } if namespace == "bad ns"),
        "{err}"
    );
    // The pod's own namespace wins.
    pod.metadata.namespace = Some("shop".to_owned());
    injected(inject_pod(&pod, &ctx));
}

// === exclusions and probes ===

#[test]
fn exclusion_annotations_become_init_flags() {
    let t = mk_template(
        &[("app", "web")],
        &[
            (EXCLUDE_INBOUND_PORTS_ANNOTATION, " 8080, 9000-9010,8080 "),
            (EXCLUDE_OUTBOUND_PORTS_ANNOTATION, "3306,6379"),
            (
                EXCLUDE_OUTBOUND_IP_RANGES_ANNOTATION,
                "10.0.0.0/8, fd00::/8,192.168.1.1",
            ),
        ],
    );
    let (t, _) = injected(inject_template(&t, &Context::default()));
    assert_eq!(
        init_args(&t),
        [
            "init",
            "--exclude-inbound-ports",
            "8080,9000-9010",
            "--exclude-outbound-ports",
            "3306,6379",
            "--exclude-outbound-cidrs",
            "10.0.0.0/8,fd00::/8,192.168.1.1/32",
        ]
    );
}

#[test]
fn invalid_exclusion_annotations_name_annotation_value_and_form() {
    let cases = [
        (
            EXCLUDE_INBOUND_PORTS_ANNOTATION,
            "8080,abc",
            "\"abc\" is not a port",
        ),
        (
            EXCLUDE_INBOUND_PORTS_ANNOTATION,
            "70000",
            "\"70000\" is not a port",
        ),
        (
            EXCLUDE_OUTBOUND_PORTS_ANNOTATION,
            "0",
            "\"0\" is not a port",
        ),
        (
            EXCLUDE_OUTBOUND_PORTS_ANNOTATION,
            "9010-9000",
            "must not exceed",
        ),
        (
            EXCLUDE_OUTBOUND_IP_RANGES_ANNOTATION,
            "10.0.0.0/33",
            "prefix length must be 0-32",
        ),
        (
            EXCLUDE_OUTBOUND_IP_RANGES_ANNOTATION,
            "10.0.0.0/8,db.internal",
            "\"db.internal\" is not an IP address",
        ),
        (
            EXCLUDE_OUTBOUND_IP_RANGES_ANNOTATION,
            "*",
            "cannot be excluded",
        ),
    ];
    for (key, value, reason) in cases {
        let pod = mk_pod(&[(key, value)]);
        let err = inject_pod(&pod, &Context::default()).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(&err, InjectError::InvalidAnnotation { annotation, .. } if *annotation == key),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("annotation {key}: {value:?}")),
            "{msg}"
        );
        assert!(msg.contains(reason), "{key}={value}: {msg}");
        assert!(msg.contains("expected a comma-separated list of"), "{msg}");
    }
}

fn probe_http(port: IntOrString, host: Option<&str>) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/healthz".to_owned()),
            port,
            host: host.map(str::to_owned),
            ..HTTPGetAction::default()
        }),
        ..Probe::default()
    }
}

/// The rewritten form of a probe: only the handler changes.
fn rewritten(path: &str, timing: &Probe) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(15021),
            scheme: Some("HTTP".to_owned()),
            ..HTTPGetAction::default()
        }),
        tcp_socket: None,
        grpc: None,
        ..timing.clone()
    }
}

fn proxy_env<'a>(t: &'a PodTemplateSpec, name: &str) -> Option<&'a str> {
    container(spec(t).init_containers.as_ref(), PROXY_CONTAINER)
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.as_deref())
}

/// httpGet (named port, headers, HTTPS), tcpSocket and grpc probes go through the proxy's
/// health port with their timing kept, and the originals reach the proxy as
/// `MESH_APP_PROBES`; probes with a host, exec probes, probes on the proxy's ports and
/// unknown named ports are left alone (the last with a warning); no port is excluded
/// from capture but the user's own.
#[test]
fn probes_are_rewritten_through_the_proxy() {
    let mut t = mk_template(
        &[("app", "web")],
        &[(EXCLUDE_INBOUND_PORTS_ANNOTATION, "9000-9100")],
    );
    let s = t.spec.as_mut().unwrap();
    let app = &mut s.containers[0];
    app.ports = Some(vec![ContainerPort {
        name: Some("http".to_owned()),
        container_port: 8080,
        ..ContainerPort::default()
    }]);
    let live = Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/healthz".to_owned()),
            port: IntOrString::String("http".to_owned()),
            scheme: Some("HTTPS".to_owned()),
            http_headers: Some(vec![HTTPHeader {
                name: "X-Probe".to_owned(),
                value: "yes".to_owned(),
            }]),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(3),
        period_seconds: Some(7),
        timeout_seconds: Some(2),
        success_threshold: Some(1),
        failure_threshold: Some(4),
        termination_grace_period_seconds: Some(11),
        ..Probe::default()
    };
    let ready = Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(8080),
            ..TCPSocketAction::default()
        }),
        period_seconds: Some(5),
        ..Probe::default()
    };
    let startup = Probe {
        grpc: Some(GRPCAction {
            port: 9555,
            service: Some("x".to_owned()),
        }),
        failure_threshold: Some(30),
        ..Probe::default()
    };
    app.liveness_probe = Some(live.clone());
    app.readiness_probe = Some(ready.clone());
    app.startup_probe = Some(startup.clone());
    let mut side = mk_container("side");
    side.liveness_probe = Some(probe_http(IntOrString::Int(6060), Some("example.com")));
    side.readiness_probe = Some(Probe {
        exec: Some(ExecAction {
            command: Some(vec!["true".to_owned()]),
        }),
        ..Probe::default()
    });
    side.startup_probe = Some(probe_http(IntOrString::String("metrics".to_owned()), None));
    s.containers.push(side.clone());
    let mut proxyish = mk_container("uses-health");
    proxyish.readiness_probe = Some(probe_http(IntOrString::Int(15021), None));
    s.containers.push(proxyish.clone());

    let (out, warnings) = injected(inject_template(&t, &Context::default()));
    assert_eq!(
        init_args(&out),
        ["init", "--exclude-inbound-ports", "9000-9100"]
    );
    let meta = out.metadata.as_ref().unwrap();
    assert_eq!(annotation(meta, "sidecar.mesh.dev/probe-ports"), None);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("container side") && warnings[0].contains("\"metrics\""),
        "{warnings:#?}"
    );

    let app = container(Some(&spec(&out).containers), "app");
    assert_eq!(
        app.liveness_probe,
        Some(rewritten("/app-health/app/livez", &live))
    );
    assert_eq!(
        app.readiness_probe,
        Some(rewritten("/app-health/app/readyz", &ready))
    );
    assert_eq!(
        app.startup_probe,
        Some(rewritten("/app-health/app/startupz", &startup))
    );
    assert_eq!(container(Some(&spec(&out).containers), "side"), &side);
    assert_eq!(
        container(Some(&spec(&out).containers), "uses-health"),
        &proxyish
    );

    let env = proxy_env(&out, APP_PROBES_ENV).expect("MESH_APP_PROBES is set");
    let expected = json!({
        "/app-health/app/livez": {
            "httpGet": {
                "path": "/healthz",
                "port": 8080,
                "scheme": "HTTPS",
                "httpHeaders": [{"name": "X-Probe", "value": "yes"}],
            },
            "timeoutSeconds": 2,
        },
        "/app-health/app/readyz": {"tcpSocket": {"port": 8080}, "timeoutSeconds": 1},
        "/app-health/app/startupz": {
            "grpc": {"port": 9555, "service": "x"},
            "timeoutSeconds": 1,
        },
    });
    assert_eq!(serde_json::from_str::<Value>(env).unwrap(), expected);
    let parsed = AppProbes::parse(env).unwrap();
    assert_eq!(parsed.len(), 3);
    assert_eq!(
        parsed.get("/app-health/app/readyz").unwrap().handler,
        probe::Handler::TcpSocket(probe::TcpSocket { port: 8080 })
    );

    // Idempotent: the injected template is left as it is.
    assert!(matches!(
        skipped(inject_template(&out, &Context::default())),
        Skip::AlreadyInjected { .. }
    ));
}

/// Without rewritable probes the proxy gets no `MESH_APP_PROBES`.
#[test]
fn no_probes_no_app_probes_env() {
    let (out, _) = injected(inject_template(
        &mk_template(&[("app", "web")], &[]),
        &Context::default(),
    ));
    assert_eq!(proxy_env(&out, APP_PROBES_ENV), None);
    assert_eq!(init_args(&out), ["init"]);
}

/// `rewriteAppProbers: "false"` leaves the probes as they are (and excludes nothing);
/// a value other than true/false is an error naming the annotation.
#[test]
fn rewriting_probes_can_be_turned_off() {
    let probe = probe_http(IntOrString::Int(8080), None);
    let with = |value: &str| {
        let mut t = mk_template(&[("app", "web")], &[(REWRITE_PROBES_ANNOTATION, value)]);
        t.spec.as_mut().unwrap().containers[0].readiness_probe = Some(probe.clone());
        inject_template(&t, &Context::default())
    };
    let (out, warnings) = injected(with("false"));
    assert!(warnings.is_empty(), "{warnings:#?}");
    assert_eq!(
        spec(&out).containers[0].readiness_probe,
        Some(probe.clone())
    );
    assert_eq!(proxy_env(&out, APP_PROBES_ENV), None);
    assert_eq!(init_args(&out), ["init"]);

    let (out, _) = injected(with("True"));
    assert_eq!(
        spec(&out).containers[0].readiness_probe,
        Some(rewritten("/app-health/app/readyz", &probe))
    );

    let err = with("no").unwrap_err();
    assert!(
        matches!(&err, InjectError::InvalidAnnotation { annotation, .. } if *annotation == REWRITE_PROBES_ANNOTATION),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("annotation sidecar.mesh.dev/rewriteAppProbers: \"no\""),
        "{err}"
    );
}

/// The pod's own sidecar init containers are rewritten with native sidecars (the proxy
/// starts before them) but not in classic mode (it starts after them).
#[test]
fn sidecar_init_container_probes_are_rewritten_only_with_native_sidecars() {
    let mut t = mk_template(&[("app", "web")], &[]);
    let mut sidecar = mk_container("logs");
    sidecar.restart_policy = Some("Always".to_owned());
    sidecar.startup_probe = Some(probe_http(IntOrString::Int(9000), None));
    t.spec.as_mut().unwrap().init_containers = Some(vec![sidecar.clone()]);

    let (out, _) = injected(inject_template(&t, &Context::default()));
    let logs = container(spec(&out).init_containers.as_ref(), "logs");
    assert_eq!(
        logs.startup_probe,
        Some(rewritten(
            "/app-health/logs/startupz",
            sidecar.startup_probe.as_ref().unwrap()
        ))
    );

    let (out, _) = injected(inject_template(&t, &classic()));
    assert_eq!(
        container(spec(&out).init_containers.as_ref(), "logs"),
        &sidecar
    );
}

/// The proxy's parser names `MESH_APP_PROBES` and refuses what injection never writes.
#[test]
fn app_probes_parse_refuses_bad_input() {
    let cases = [
        ("not json", "is not valid JSON app probes"),
        (
            r#"{"/app-health/a/readyz": {"tcpSocket": {"port": 1}, "grpc": {"port": 2}}}"#,
            "exactly one of httpGet, tcpSocket and grpc",
        ),
        (r#"{"/app-health/a/readyz": {"exec": {}}}"#, "unknown field"),
        (
            r#"{"/healthz": {"tcpSocket": {"port": 1}}}"#,
            "is not a path of the form",
        ),
        (
            r#"{"/app-health/a/readyz": {"tcpSocket": {"port": 70000}}}"#,
            "is not valid JSON",
        ),
    ];
    for (json, reason) in cases {
        let msg = AppProbes::parse(json).unwrap_err().to_string();
        assert!(msg.starts_with("MESH_APP_PROBES"), "{msg}");
        assert!(msg.contains(reason), "{json}: {msg}");
    }
    let ok = AppProbes::parse(r#"{"/app-health/a/readyz": {"tcpSocket": {"port": 1}}}"#).unwrap();
    assert_eq!(
        ok.get("/app-health/a/readyz").unwrap().timeout_seconds,
        probe::DEFAULT_TIMEOUT_SECONDS
    );
}

#[test]
fn prometheus_annotations_keep_the_pods_own() {
    let pod = mk_pod(&[("prometheus.io/scrape", "false")]);
    let (out, warnings) = injected(inject_pod(&pod, &Context::default()));
    assert_eq!(
        annotation(&out.metadata, "prometheus.io/scrape"),
        Some("false")
    );
    assert_eq!(annotation(&out.metadata, "prometheus.io/port"), None);
    assert!(warnings.is_empty(), "{warnings:#?}");

    let pod = mk_pod(&[("prometheus.io/port", "9102")]);
    let (out, warnings) = injected(inject_pod(&pod, &Context::default()));
    assert_eq!(
        annotation(&out.metadata, "prometheus.io/port"),
        Some("9102")
    );
    assert_eq!(annotation(&out.metadata, "prometheus.io/scrape"), None);
    assert!(warnings[0].contains("prometheus.io"), "{warnings:#?}");
}

// === Jobs ===

fn mk_job() -> Job {
    let mut template = mk_template(&[("job-name", "backup")], &[]);
    template.spec.as_mut().unwrap().restart_policy = Some("Never".to_owned());
    Job {
        metadata: ObjectMeta {
            name: Some("backup".to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            template,
            ..JobSpec::default()
        }),
        status: None,
    }
}

/// A Job's pod with a native sidecar completes when the app exits: the proxy is a
/// restartable init container, not a regular container the Job would wait for.
#[test]
fn job_pods_use_a_native_sidecar_or_warn() {
    let job = mk_job();
    let template = &job.spec.as_ref().unwrap().template;
    let (t, warnings) = injected(inject_template(template, &Context::default()));
    assert!(warnings.is_empty(), "{warnings:#?}");
    assert_eq!(names(Some(&spec(&t).containers)), ["app"]);
    let proxy = container(spec(&t).init_containers.as_ref(), PROXY_CONTAINER);
    assert_eq!(proxy.restart_policy.as_deref(), Some("Always"));
    assert_eq!(spec(&t).restart_policy.as_deref(), Some("Never"));

    let (t, warnings) = injected(inject_template(template, &classic()));
    assert_eq!(names(Some(&spec(&t).containers)), ["mesh-proxy", "app"]);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("does not complete") && warnings[0].contains("quitquitquit"),
        "{warnings:#?}"
    );
}

// === round trip ===

/// Decodes `value` as `T`, failing on any field `T` does not have, and checks that
/// serializing it again gives back exactly `value` (nothing dropped or renamed).
pub(super) fn strict_round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(
    value: &Value,
) -> T {
    let mut unknown = Vec::new();
    let mut on_ignored = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
    let de = serde_ignored::Deserializer::new(value, &mut on_ignored);
    let typed: T = serde_path_to_error::deserialize(de).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(unknown, Vec::<String>::new(), "unknown fields");
    assert_eq!(
        &serde_json::to_value(&typed).unwrap(),
        value,
        "dropped fields"
    );
    typed
}

#[test]
fn injected_pods_round_trip_strictly_through_the_kubernetes_types() {
    for ctx in [Context::default(), classic()] {
        let mut pod = mk_pod(&[(EXCLUDE_OUTBOUND_PORTS_ANNOTATION, "3306")]);
        pod.spec.as_mut().unwrap().containers[0].readiness_probe =
            Some(probe_http(IntOrString::Int(8080), None));
        let (out, _) = injected(inject_pod(&pod, &ctx));
        let value = serde_json::to_value(&out).unwrap();
        assert_eq!(value["kind"], "Pod");
        assert_eq!(value["apiVersion"], "v1");
        let back: Pod = strict_round_trip(&value);
        assert_eq!(back, out);
    }
    let deployment = mk_deployment();
    let (t, _) = injected(inject_template(
        &deployment.spec.as_ref().unwrap().template,
        &Context::default(),
    ));
    let mut d = deployment.clone();
    d.spec.as_mut().unwrap().template = t;
    let back: Deployment = strict_round_trip(&serde_json::to_value(&d).unwrap());
    assert_eq!(back, d);
}

#[test]
fn native_sidecar_support_starts_at_1_29() {
    assert!(!native_sidecars_supported("1", "28"));
    assert!(native_sidecars_supported("1", "29"));
    assert!(native_sidecars_supported("1", "32+"));
    assert!(native_sidecars_supported("2", "0"));
    assert!(!native_sidecars_supported("", "x"));
}
