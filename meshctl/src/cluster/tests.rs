//! The pure parts of the cluster machinery, on recorded apiserver objects
//! (`tests/fixtures/apiserver/`): durations, versions, the kinds table, error mapping,
//! conflict reading, and the judgement of CRDs, rollouts, pods and webhook bundles.

use std::time::Duration;

use http::{Request, Response};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::client::Body;
use kube::core::Status;

use super::apply::{FieldConflict, conflicts, describe_conflicts};
use super::wait::{CrdState, Rollout, crd_state, missing_ca_bundles, pod_problems, rollout_state};
use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../tests/fixtures/apiserver/", $name))
    };
}

fn parse<T: serde::de::DeserializeOwned>(json: &str) -> T {
    serde_json::from_str(json).expect("a fixture of the right shape")
}

/// A cluster whose client is never used (error mapping needs only its names).
fn cluster() -> Cluster {
    let (svc, _handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    Cluster::new(
        kube::Client::new(svc, "default"),
        "https://10.0.0.1:6443",
        Some("prod".to_owned()),
    )
}

fn api_error(json: &str) -> kube::Error {
    kube::Error::Api(Box::new(parse::<Status>(json)))
}

#[test]
fn parses_and_formats_durations_as_kubectl_does() {
    let ok = |s: &str| parse_duration(s).unwrap();
    assert_eq!(ok("5m"), Duration::from_secs(300));
    assert_eq!(ok("1m30s"), Duration::from_secs(90));
    assert_eq!(ok("90s"), Duration::from_secs(90));
    assert_eq!(ok("2h"), Duration::from_secs(7200));
    assert_eq!(ok("500ms"), Duration::from_millis(500));
    assert_eq!(ok("300"), Duration::from_secs(300));
    for bad in ["", "5x", "m5", "-1s", "1.5m", "5 m"] {
        assert!(
            parse_duration(bad).unwrap_err().contains("such as 5m"),
            "{bad:?}"
        );
    }
    assert_eq!(format_duration(Duration::from_secs(300)), "5m");
    assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
    assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
    assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    assert_eq!(format_duration(Duration::ZERO), "0ms");
}

#[test]
fn reads_server_versions_including_managed_clusters() {
    let v = ServerVersion::parse("1", "32", "v1.32.2").unwrap();
    assert!(v.is_supported());
    assert_eq!(v.display(), "v1.32.2");
    let eks = ServerVersion::parse("1", "31+", "v1.31.4-eks-2d5f260").unwrap();
    assert_eq!((eks.major, eks.minor), (1, 31));
    assert!(!eks.is_supported());
    assert_eq!(
        eks.unsupported(),
        "Kubernetes v1.31.4-eks-2d5f260 is older than 1.32, the oldest release the mesh supports; upgrade the cluster (or use local mode, which needs no cluster)"
    );
    let from_git = ServerVersion::parse("", "", "v1.33.0").unwrap();
    assert_eq!((from_git.major, from_git.minor), (1, 33));
    assert!(ServerVersion::parse("", "", "").is_none());
    assert!(ServerVersion::parse("2", "0", "").unwrap().is_supported());
}

#[test]
fn knows_the_rendered_kinds_with_their_plurals_and_scopes() {
    let table = [
        ("apps/v1", "Deployment", "deployments.apps", true),
        ("v1", "Namespace", "namespaces", false),
        ("v1", "ServiceAccount", "serviceaccounts", true),
        ("v1", "Service", "services", true),
        (
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            "customresourcedefinitions.apiextensions.k8s.io",
            false,
        ),
        (
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding",
            "clusterrolebindings.rbac.authorization.k8s.io",
            false,
        ),
        (
            "rbac.authorization.k8s.io/v1",
            "Role",
            "roles.rbac.authorization.k8s.io",
            true,
        ),
        (
            "admissionregistration.k8s.io/v1",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations.admissionregistration.k8s.io",
            false,
        ),
        (
            "policy/v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets.policy",
            true,
        ),
    ];
    for (api_version, kind, resource, namespaced) in table {
        let k = Kind::known(api_version, kind).unwrap_or_else(|| panic!("{kind}"));
        assert_eq!(k.resource_name(), resource);
        assert_eq!(k.namespaced, namespaced, "{kind}");
    }
    assert!(Kind::known("apps/v1beta1", "Deployment").is_none());
    assert!(Kind::known("scheduling.k8s.io/v1", "PriorityClass").is_none());
}

#[test]
fn objects_need_a_name_and_a_namespace_where_their_kind_has_one() {
    let kind = Kind::known("apps/v1", "Deployment").unwrap();
    let nameless: kube::api::DynamicObject =
        parse(r#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {}}"#);
    assert_eq!(
        Object::new(kind.clone(), nameless).unwrap_err().to_string(),
        "the rendered manifests are invalid: a Deployment (apps/v1) has no name; this is a meshctl bug, please report it"
    );
    let no_ns: kube::api::DynamicObject = parse(
        r#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "mesh-control"}}"#,
    );
    assert!(
        Object::new(kind, no_ns)
            .unwrap_err()
            .to_string()
            .contains("\"mesh-control\" has no namespace")
    );
    let ns: kube::api::DynamicObject =
        parse(r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "mesh-system"}}"#);
    let ns = Object::new(Kind::known("v1", "Namespace").unwrap(), ns).unwrap();
    assert_eq!(ns.to_string(), "Namespace mesh-system");
    assert_eq!(ns.namespace(), None);
}

#[tokio::test]
async fn maps_api_errors_to_what_to_do() {
    let cluster = cluster();
    let patch = Op::new(Verb::Apply, "deployments.apps")
        .named("mesh-control")
        .in_namespace(Some("mesh-system"));
    let e = cluster.error(
        api_error(fixture!("forbidden-patch-deployments.json")),
        &patch,
    );
    assert!(
        matches!(
            e,
            Error::Forbidden {
                verb: Verb::Apply,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .ends_with("ask for a role that grants create and patch on deployments.apps in namespace mesh-system; `meshctl precheck` lists every permission install needs"),
        "{e}"
    );

    let create_crd = Op::new(
        Verb::Apply,
        "customresourcedefinitions.apiextensions.k8s.io",
    )
    .named("virtualservices.networking.mesh.dev");
    let e = cluster.error(
        api_error(fixture!("forbidden-patch-deployments.json")),
        &create_crd,
    );
    assert!(
        e.to_string().contains("cluster-wide (a ClusterRole)"),
        "{e}"
    );

    let e = cluster.error(api_error(fixture!("unauthorized.json")), &patch);
    assert_eq!(
        e.to_string(),
        "the Kubernetes API server at https://10.0.0.1:6443 (context prod) rejected the credentials (Unauthorized); log in again (the token may have expired) or pick another --context"
    );

    // A 404 from an API group that is not served (Go's text, not a Status).
    let list_vs = Op::new(Verb::List, "virtualservices.networking.mesh.dev");
    let text = kube::Error::Api(Box::new(
        Status::failure(
            fixture!("not-found-group.txt"),
            "Failed to parse error data",
        )
        .with_code(404),
    ));
    let e = cluster.error(text, &list_vs);
    assert_eq!(
        e.to_string(),
        "the cluster does not serve virtualservices.networking.mesh.dev: the mesh's CRDs are not installed; run `meshctl install`"
    );
    // A 404 for one missing object of a served kind is just that.
    let get_vs = Op::new(Verb::Get, "virtualservices.networking.mesh.dev").named("reviews");
    let e = cluster.error(
        api_error(
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"virtualservices.networking.mesh.dev \"reviews\" not found","reason":"NotFound","code":404}"#,
        ),
        &get_vs,
    );
    assert!(matches!(e, Error::Api { code: 404, .. }), "{e:?}");

    let e = cluster.error(
        api_error(fixture!("namespace-terminating-forbidden.json")),
        &patch,
    );
    assert!(
        e.to_string().contains("wait until the namespace is gone"),
        "{e}"
    );

    let refused = kube::Error::Service(Box::new(std::io::Error::new(
        std::io::ErrorKind::ConnectionRefused,
        "tcp connect error: Connection refused (os error 111)",
    )));
    assert_eq!(
        cluster.error(refused, &patch).to_string(),
        "cannot reach the Kubernetes API server at https://10.0.0.1:6443 (context prod) to patch deployments.apps \"mesh-control\" in namespace mesh-system: tcp connect error: Connection refused (os error 111); is the cluster up and is this the right context? (`kubectl cluster-info --context prod`)"
    );
}

#[test]
fn reads_field_manager_conflicts_from_a_409() {
    let status: Status = parse(fixture!("conflict-deployment-replicas.json"));
    let found = conflicts(&status);
    assert_eq!(
        found,
        [FieldConflict {
            manager: "kubectl-client-side-apply".to_owned(),
            how: "using apps/v1".to_owned(),
            fields: vec![
                ".spec.replicas".to_owned(),
                ".spec.template.spec.containers[name=\"discovery\"].image".to_owned()
            ],
        }]
    );
    // An Apply manager has no "using"; names may hold escaped quotes; managers group.
    let status: Status = parse(
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","reason":"Conflict","code":409,
            "details":{"causes":[
              {"reason":"FieldManagerConflict","message":"conflict with \"helm\"","field":".spec.replicas"},
              {"reason":"FieldManagerConflict","message":"conflict with \"my \\\"tool\\\"\" using v1 at 2025-03-04T10:00:00Z","field":".data.a"},
              {"reason":"FieldManagerConflict","message":"conflict with \"helm\"","field":".spec.paused"},
              {"reason":"FieldValueInvalid","message":"ignored","field":".x"}]}}"#,
    );
    let found = conflicts(&status);
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].fields, [".spec.replicas", ".spec.paused"]);
    assert_eq!(found[1].manager, "my \"tool\"");
    assert_eq!(found[1].how, "using v1 at 2025-03-04T10:00:00Z");
    assert_eq!(
        describe_conflicts(&found),
        "\"helm\" owns .spec.replicas and .spec.paused and \"my \\\"tool\\\"\" (using v1 at 2025-03-04T10:00:00Z) owns .data.a"
    );
    let plain: Status = parse(
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","reason":"Conflict","code":409,"message":"the object has been modified"}"#,
    );
    assert!(conflicts(&plain).is_empty());
}

#[test]
fn judges_crds_by_their_conditions() {
    let crd: CustomResourceDefinition = parse(fixture!("crd-virtualservices-installing.json"));
    assert_eq!(
        crd_state(&crd),
        CrdState::Pending("Established=False (Installing)".to_owned())
    );
    let crd: CustomResourceDefinition = parse(fixture!("crd-virtualservices-established.json"));
    assert_eq!(crd_state(&crd), CrdState::Established);
    let mut clash = crd.clone();
    let conditions = clash.status.as_mut().unwrap().conditions.as_mut().unwrap();
    conditions[0].status = "False".to_owned();
    conditions[0].reason = Some("ListKindConflict".to_owned());
    conditions[0].message = Some("\"VirtualServiceList\" is already in use".to_owned());
    assert_eq!(
        crd_state(&clash),
        CrdState::Failed(
            "NamesAccepted=False (ListKindConflict): \"VirtualServiceList\" is already in use"
                .to_owned()
        )
    );
    clash.status = None;
    assert_eq!(
        crd_state(&clash),
        CrdState::Pending("no Established condition yet".to_owned())
    );
}

#[test]
fn judges_rollouts_as_kubectl_rollout_status_does() {
    let progressing: Deployment = parse(fixture!("deployment-mesh-control-progressing.json"));
    assert_eq!(
        rollout_state(&progressing),
        Rollout::Waiting {
            progress: "0/1 available".to_owned()
        }
    );
    let available: Deployment = parse(fixture!("deployment-mesh-control-available.json"));
    assert_eq!(
        rollout_state(&available),
        Rollout::Done {
            available: 1,
            desired: 1
        }
    );
    let stuck: Deployment = parse(fixture!("deployment-mesh-control-deadline-exceeded.json"));
    assert_eq!(
        rollout_state(&stuck),
        Rollout::Failed {
            why: "0/1 available; Progressing=False (ProgressDeadlineExceeded): ReplicaSet \"mesh-control-6f9c8d7b54\" has timed out progressing.".to_owned()
        }
    );

    // A new spec not yet seen by the controller is not done, whatever the counts say.
    let mut unobserved = available.clone();
    unobserved.metadata.generation = Some(2);
    assert_eq!(
        rollout_state(&unobserved),
        Rollout::Waiting {
            progress: "1/1 available (the new spec is not observed yet)".to_owned()
        }
    );
    // Scaled to 3 while one old pod still terminates.
    let mut upgrading = available.clone();
    upgrading.spec.as_mut().unwrap().replicas = Some(3);
    let status = upgrading.status.as_mut().unwrap();
    status.replicas = Some(4);
    status.updated_replicas = Some(3);
    status.available_replicas = Some(3);
    assert_eq!(
        rollout_state(&upgrading),
        Rollout::Waiting {
            progress: "3/3 available, 1 old replicas pending termination".to_owned()
        }
    );
    upgrading.status.as_mut().unwrap().updated_replicas = Some(1);
    assert_eq!(
        rollout_state(&upgrading),
        Rollout::Waiting {
            progress: "3/3 available, 1/3 updated".to_owned()
        }
    );
    assert_eq!(
        wait::selector(&available).as_deref(),
        Some("app=mesh-control")
    );
    assert_eq!(
        wait::describe_conditions(&progressing),
        "Available=False (MinimumReplicasUnavailable): Deployment does not have minimum availability."
    );
}

#[test]
fn explains_pods_that_do_not_start() {
    let pods: k8s_openapi::List<Pod> = parse(fixture!("pods-mesh-control-imagepullbackoff.json"));
    let problems = pod_problems(&pods.items[0]);
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].starts_with("pod mesh-control-6f9c8d7b54-q8w7n: container discovery is waiting: ImagePullBackOff (Back-off pulling image \"ghcr.io/mesh/mesh-control:0.1.0\"): the image ghcr.io/mesh/mesh-control:0.1.0 cannot be pulled"),
        "{}",
        problems[0]
    );
    assert!(problems[0].ends_with("`meshctl install --set hub=REGISTRY`"));

    let mut crashing = pods.items[0].clone();
    let status = crashing.status.as_mut().unwrap();
    let cs = &mut status.container_statuses.as_mut().unwrap()[0];
    cs.state = Some(parse(
        r#"{"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container=discovery pod=mesh-control-6f9c8d7b54-q8w7n_mesh-system(c5a1f5d2)"}}"#,
    ));
    cs.last_state = Some(parse(
        r#"{"terminated": {"exitCode": 1, "reason": "Error", "startedAt": "2025-03-04T10:13:01Z", "finishedAt": "2025-03-04T10:13:02Z"}}"#,
    ));
    let problems = pod_problems(&crashing);
    assert!(
        problems[0].ends_with(": it last exited with code 1 (Error); see `kubectl -n mesh-system logs mesh-control-6f9c8d7b54-q8w7n -c discovery --previous`"),
        "{}",
        problems[0]
    );

    let mut unscheduled = pods.items[0].clone();
    let status = unscheduled.status.as_mut().unwrap();
    status.container_statuses = None;
    status.conditions = Some(vec![parse(
        r#"{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes are available: 1 Insufficient cpu."}"#,
    )]);
    assert_eq!(
        pod_problems(&unscheduled),
        [
            "pod mesh-control-6f9c8d7b54-q8w7n is not scheduled (Unschedulable): 0/1 nodes are available: 1 Insufficient cpu.; free capacity or lower the resource requests"
        ]
    );

    // Starting up is not a problem.
    let mut starting = pods.items[0].clone();
    starting
        .status
        .as_mut()
        .unwrap()
        .container_statuses
        .as_mut()
        .unwrap()[0]
        .state = Some(parse(r#"{"waiting": {"reason": "ContainerCreating"}}"#));
    assert!(pod_problems(&starting).is_empty());
}

#[test]
fn finds_webhooks_without_a_ca_bundle() {
    let config = serde_json::json!({"webhooks": [
        {"name": "a.mesh.dev", "clientConfig": {"caBundle": "LS0t"}},
        {"name": "b.mesh.dev", "clientConfig": {"caBundle": ""}},
        {"name": "c.mesh.dev", "clientConfig": {}},
    ]});
    assert_eq!(missing_ca_bundles(&config), ["b.mesh.dev", "c.mesh.dev"]);
    assert!(missing_ca_bundles(&serde_json::json!({})).is_empty());
}

#[test]
fn a_checklist_fails_on_any_failure_only() {
    let mut list = Checklist::default();
    let mut out = Vec::new();
    list.ok(&mut out, "fine").unwrap();
    list.warn(&mut out, "careful").unwrap();
    assert!(list.passed());
    assert_eq!(list.exit_code(), std::process::ExitCode::SUCCESS);
    list.fail(&mut out, "broken").unwrap();
    assert!(!list.passed());
    assert_eq!(list.exit_code(), std::process::ExitCode::FAILURE);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "✔ fine\n⚠ careful\n✗ broken\n"
    );
}
