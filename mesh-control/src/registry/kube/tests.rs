//! Unit tests of the Kubernetes registry: translation edge cases and the sync state
//! machine, fed watcher events directly. The API-server-facing behaviour (lists, watches,
//! 403/404/410 from recorded JSON) is tested in `tests/kube_registry.rs`.

use kube::core::Status;
use serde_json::json;

use super::*;

fn pod(value: serde_json::Value) -> Pod {
    serde_json::from_value(value).expect("a pod")
}

/// A Running, Ready pod `name` in `default` at `ip` with containers named `containers`.
fn ready_pod(name: &str, ip: &str, containers: &[&str]) -> serde_json::Value {
    let containers: Vec<_> = containers
        .iter()
        .map(|c| json!({"name": c, "ports": [{"name": "http", "containerPort": 8080}]}))
        .collect();
    json!({
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
        "spec": {"containers": containers, "serviceAccountName": "web"},
        "status": {
            "phase": "Running", "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    })
}

fn api_error(code: u16, reason: &str) -> kube::Error {
    kube::Error::Api(Status::failure("test", reason).with_code(code).boxed())
}

fn state() -> State {
    State::new(
        Options::default(),
        WatchErrors::default(),
        NamespaceLabels::default(),
    )
}

fn list(state: &mut State, w: Watched, objects: Vec<Object>) -> Vec<RegistryEvent> {
    let mut out = state.handle(w, Ok(Event::Init));
    for o in objects {
        out.extend(state.handle(w, Ok(Event::InitApply(o))));
    }
    out.extend(state.handle(w, Ok(Event::InitDone)));
    out
}

fn ns(name: &str, labels: serde_json::Value) -> Object {
    Object::Namespace(
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap(),
    )
}

#[test]
fn pods_need_to_be_running_ready_alive_and_addressed() {
    assert!(translate::pod(&pod(ready_pod("a", "10.0.0.1", &["app"]))).is_some());
    for broken in [
        json!({"status": {"phase": "Pending"}}),
        json!({"status": {"phase": "Succeeded"}}),
        json!({"status": {"podIP": ""}}),
        json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
        json!({"metadata": {"deletionTimestamp": "2026-11-02T10:00:00Z"}}),
    ] {
        let mut value = ready_pod("a", "10.0.0.1", &["app"]);
        merge(&mut value, &broken);
        assert_eq!(translate::pod(&pod(value)), None, "{broken}");
    }
}

fn merge(into: &mut serde_json::Value, from: &serde_json::Value) {
    match (into, from) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(serde_json::Value::Null), v);
            }
        }
        (a, b) => *a = b.clone(),
    }
}

#[test]
fn a_native_sidecar_counts_and_its_ports_do_not() {
    let mut value = ready_pod("a", "10.0.0.1", &["app", SIDECAR_CONTAINER]);
    let we = translate::pod(&pod(value.clone())).unwrap();
    assert_eq!(we.spec.labels.get(INJECT_LABEL), None);
    assert_eq!(we.spec.service_account.as_deref(), Some("web"));
    assert_eq!(we.spec.ports.len(), 1);

    // The sidecar as a native sidecar (an init container).
    value["spec"]["containers"] = json!([{"name": "app"}]);
    value["spec"]["initContainers"] =
        json!([{"name": SIDECAR_CONTAINER, "restartPolicy": "Always"}]);
    let we = translate::pod(&pod(value.clone())).unwrap();
    assert_eq!(we.spec.labels.get(INJECT_LABEL), None);

    value["spec"]["initContainers"] = json!([{"name": "setup"}]);
    let we = translate::pod(&pod(value)).unwrap();
    assert_eq!(
        we.spec.labels.get(INJECT_LABEL).map(String::as_str),
        Some("false")
    );
}

#[test]
fn endpoint_slices_of_selector_less_services_only() {
    let slice = |labels: serde_json::Value, address_type: &str| -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": "db-abc", "namespace": "default", "labels": labels},
            "addressType": address_type,
            "endpoints": [
                {"addresses": ["10.0.5.10", "10.0.5.99"]},
                {"addresses": ["10.0.5.11"], "conditions": {"ready": false}},
                {"addresses": ["10.0.5.12"], "conditions": {"ready": true}},
            ],
            "ports": [{"port": 5432}],
        }))
        .unwrap()
    };
    let manual = slice(json!({"kubernetes.io/service-name": "db"}), "IPv4");
    let wes = translate::endpoint_slice(&manual);
    let got: Vec<_> = wes
        .iter()
        .map(|w| (w.metadata.name.as_deref().unwrap(), w.spec.address.as_str()))
        .collect();
    // A missing `ready` means ready; the first address of an endpoint is used; names keep
    // the endpoint's position. An unnamed port cannot be keyed.
    assert_eq!(got, [("db-abc-0", "10.0.5.10"), ("db-abc-2", "10.0.5.12")]);
    assert!(wes[0].spec.ports.is_empty());

    let controller = slice(
        json!({"kubernetes.io/service-name": "db",
               "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}),
        "IPv4",
    );
    assert!(translate::endpoint_slice(&controller).is_empty());
    assert!(translate::endpoint_slice(&slice(json!({}), "IPv4")).is_empty());
    let fqdn = slice(json!({"kubernetes.io/service-name": "db"}), "FQDN");
    assert!(translate::endpoint_slice(&fqdn).is_empty());
}

#[test]
fn an_empty_selector_is_no_selector() {
    let svc: KubeService = serde_json::from_value(json!({
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {"selector": {}, "ports": [{"port": 5432}]},
    }))
    .unwrap();
    let svc = translate::service(svc);
    assert_eq!(
        svc.spec.unwrap().selector,
        Some(BTreeMap::from([(
            ENDPOINTSLICE_SERVICE_LABEL.to_owned(),
            "db".to_owned()
        )]))
    );
}

#[test]
fn problems_are_reported_once_until_progress() {
    let mut state = state();
    let forbidden = || {
        Err(watcher::Error::WatchStartFailed(api_error(
            403,
            "Forbidden",
        )))
    };
    let out = state.handle(Watched::Services, forbidden());
    assert_eq!(
        out,
        [RegistryEvent::Problem(
            "mesh-control may not list/watch services (403 Forbidden): apply deploy/ RBAC or check the ClusterRole".into()
        )]
    );
    assert!(state.handle(Watched::Services, forbidden()).is_empty());
    // Progress, then the same failure again: reported again.
    assert!(state.handle(Watched::Services, Ok(Event::Init)).is_empty());
    assert!(
        state
            .handle(Watched::Services, Ok(Event::InitDone))
            .is_empty()
    );
    assert_eq!(state.handle(Watched::Services, forbidden()).len(), 1);
    assert_eq!(state.errors.get(Watched::Services), 3);
    assert_eq!(state.errors.get(Watched::Pods), 0);
}

#[test]
fn synced_once_every_watcher_listed_or_found_its_crd_missing() {
    let mut state = state();
    let mut events = Vec::new();
    for w in Watched::ALL {
        assert!(!events.contains(&RegistryEvent::Synced), "early at {w}");
        if w == Watched::KubeGateways {
            let missing = watcher::Error::InitialListFailed(api_error(404, "NotFound"));
            events.extend(state.handle(w, Err(missing)));
        } else {
            events.extend(list(&mut state, w, Vec::new()));
        }
    }
    assert_eq!(events.last(), Some(&RegistryEvent::Synced));
    // Never again.
    assert!(!list(&mut state, Watched::Pods, Vec::new()).contains(&RegistryEvent::Synced));
}

#[test]
fn a_404_list_after_a_crd_is_removed_deletes_its_objects() {
    let mut state = state();
    let route: HttpRoute = serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "r", "namespace": "default"}, "spec": {},
    }))
    .unwrap();
    let out = list(
        &mut state,
        Watched::HttpRoutes,
        vec![Object::Resource(Resource::HttpRoute(route))],
    );
    assert!(matches!(out[0], RegistryEvent::Apply(_)));
    let missing = watcher::Error::InitialListFailed(api_error(404, "NotFound"));
    let out = state.handle(Watched::HttpRoutes, Err(missing));
    assert_eq!(
        out[0],
        RegistryEvent::Delete {
            kind: ResourceKind::HttpRoute,
            namespace: "default".into(),
            name: "r".into()
        }
    );
    assert!(matches!(&out[1], RegistryEvent::Problem(p) if p.starts_with("HTTPRoute CRD")));
}

#[test]
fn namespaces_keep_labels_and_forget_vanished_ones() {
    let mut state = state();
    let labels = state.namespaces.clone();
    list(
        &mut state,
        Watched::Namespaces,
        vec![
            ns("a", json!({"mesh-injection": "enabled"})),
            ns("b", json!({})),
        ],
    );
    assert_eq!(labels.len(), 2);
    assert_eq!(
        labels
            .get("a")
            .unwrap()
            .get("mesh-injection")
            .map(String::as_str),
        Some("enabled")
    );
    list(&mut state, Watched::Namespaces, vec![ns("a", json!({}))]);
    assert_eq!(labels.get("a"), Some(BTreeMap::new()));
    assert_eq!(labels.get("b"), None);
}

#[test]
fn a_pod_in_an_ignored_namespace_is_dropped() {
    let mut state = State::new(
        Options {
            ignore_namespaces: ["default".to_owned()].into(),
        },
        WatchErrors::default(),
        NamespaceLabels::default(),
    );
    let p = pod(ready_pod("a", "10.0.0.1", &["app"]));
    let out = state.handle(Watched::Pods, Ok(Event::Apply(Object::Pod(Box::new(p)))));
    assert!(out.is_empty());
    assert_eq!(
        field_selector(&["a".to_owned(), "b".to_owned()].into()).as_deref(),
        Some("metadata.namespace!=a,metadata.namespace!=b")
    );
}
