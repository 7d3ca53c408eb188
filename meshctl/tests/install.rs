//! `meshctl install`, `uninstall`, `precheck` and `check` against a scripted Kubernetes API
//! server (`tower-test` mock) replaying apiserver responses from
//! `tests/fixtures/apiserver/`: discovery, server-side apply, 409 conflicts, 403 forbidden,
//! CRDs not yet established, rollout progress and failures, access reviews, lists.
//!
//! Waits run on tokio's paused clock, so a five-minute rollout timeout takes no real time;
//! every test is bounded by [`bounded`].

#[path = "install/apiserver.rs"]
mod apiserver;
#[path = "install/check.rs"]
mod check;
#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "install/objects.rs"]
mod objects;
#[path = "install/precheck.rs"]
mod precheck;
#[path = "install/rendered.rs"]
mod rendered;
#[path = "install/uninstall.rs"]
mod uninstall;

use std::time::Duration;

use apiserver::{ApiServer, Reply, Seen, fixture};
use http::Method;
use meshctl::install::{self, Options};
use objects::PATHS;

/// Runs `f` with a bound (virtual on a paused clock), so a missing answer fails the test
/// instead of hanging it.
pub(crate) async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(3600), f)
        .await
        .expect("the scenario finished in time")
}

pub(crate) fn options() -> Options {
    Options {
        namespace: "mesh-system".to_owned(),
        force_conflicts: false,
        skip_precheck: false,
        timeout: Duration::from_secs(300),
    }
}

/// A fixture with `${CA_BUNDLE}` set to a (base64) PEM certificate.
pub(crate) fn with_ca_bundle(name: &str) -> String {
    fixture(name).replace("${CA_BUNDLE}", "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==")
}

/// Plans the requests of a successful install of [`objects::installation`]: the CRD is
/// `Installing` once before it is `Established`; the Deployment progresses for
/// `progressing` polls before it is available.
fn plan_install(api: &mut ApiServer, progressing: usize) {
    api.once(Method::GET, "/version", Reply::fixture("version.json"));
    api.once(Method::PATCH, PATHS[0], Reply::applied(true));
    api.once(
        Method::GET,
        PATHS[0],
        Reply::fixture("crd-virtualservices-installing.json"),
    );
    api.always(
        Method::GET,
        PATHS[0],
        Reply::fixture("crd-virtualservices-established.json"),
    );
    for path in &PATHS[1..7] {
        api.once(Method::PATCH, path, Reply::applied(true));
    }
    for _ in 0..progressing {
        api.once(
            Method::GET,
            PATHS[6],
            Reply::fixture("deployment-mesh-control-progressing.json"),
        );
    }
    api.always(
        Method::GET,
        PATHS[6],
        Reply::fixture("deployment-mesh-control-available.json"),
    );
    api.once(Method::PATCH, PATHS[7], Reply::applied(true));
    api.once(Method::PATCH, PATHS[8], Reply::applied(true));
    api.always(
        Method::GET,
        PATHS[7],
        Reply::ok(with_ca_bundle("mutatingwebhookconfiguration-mesh.json")),
    );
    api.always(
        Method::GET,
        PATHS[8],
        Reply::ok(with_ca_bundle("validatingwebhookconfiguration-mesh.json")),
    );
}

fn patches(log: &[Seen]) -> Vec<&Seen> {
    log.iter().filter(|s| s.method == Method::PATCH).collect()
}

fn position(log: &[Seen], method: Method, path: &str) -> usize {
    log.iter()
        .position(|s| s.method == method && s.path == path)
        .unwrap_or_else(|| panic!("no {method} {path}"))
}

#[tokio::test(start_paused = true)]
async fn installs_crds_first_waits_for_them_and_the_rollout_then_applies_webhooks() {
    let mut api = ApiServer::new();
    plan_install(&mut api, 3);
    let cluster = api.start();
    let mut out = Vec::new();
    let report = bounded(install::install(
        &cluster,
        objects::installation(),
        &options(),
        &mut out,
    ))
    .await
    .unwrap();
    let out = String::from_utf8(out).unwrap();
    let log = api.finish();

    // Every object server-side applied, in render order, as meshctl, without force.
    let applied: Vec<&str> = patches(&log).iter().map(|s| s.path.as_str()).collect();
    assert_eq!(applied, PATHS);
    for patch in patches(&log) {
        assert_eq!(
            patch.content_type,
            "application/apply-patch+yaml",
            "{}",
            patch.line()
        );
        assert_eq!(patch.param("fieldManager").as_deref(), Some("meshctl"));
        assert_eq!(patch.param("force"), None, "{}", patch.line());
        assert!(patch.body["apiVersion"].is_string() && patch.body["kind"].is_string());
        assert_eq!(
            patch.body["metadata"]["labels"]["app.kubernetes.io/part-of"],
            "mesh"
        );
    }
    assert_eq!(report.applied.len(), PATHS.len());
    assert_eq!(report.applied[6], "Deployment mesh-system/mesh-control");

    // The CRD was polled until Established before anything else was applied.
    let crd_gets: Vec<usize> = log
        .iter()
        .enumerate()
        .filter(|(_, s)| s.method == Method::GET && s.path == PATHS[0])
        .map(|(i, _)| i)
        .collect();
    assert_eq!(crd_gets.len(), 2, "Installing, then Established");
    assert!(crd_gets[1] < position(&log, Method::PATCH, PATHS[1]));

    // The webhooks came only after the rollout finished.
    let last_rollout_poll = log
        .iter()
        .rposition(|s| s.method == Method::GET && s.path == PATHS[6])
        .unwrap();
    assert!(last_rollout_poll < position(&log, Method::PATCH, PATHS[7]));
    assert_eq!(
        log.iter()
            .filter(|s| s.method == Method::GET && s.path == PATHS[6])
            .count(),
        4,
        "three polls progressing, then available"
    );

    for expected in [
        "✔ cluster https://127.0.0.1:6443 (context kind-mesh) runs Kubernetes v1.32.2\n",
        "✔ CRDs applied (1)\n",
        "… waiting for CRDs to be established: 0/1 (virtualservices.networking.mesh.dev: Established=False (Installing))\n",
        "✔ CRDs established (1)\n",
        "✔ control plane applied (Namespace, ServiceAccount, ClusterRole, ClusterRoleBinding, Service, Deployment)\n",
        "… waiting for deployment mesh-system/mesh-control: 0/1 available\n",
        "✔ deployment mesh-system/mesh-control rolled out (1/1 available)\n",
        "✔ webhook configurations applied (MutatingWebhookConfiguration, ValidatingWebhookConfiguration)\n",
        "✔ webhook configurations have mesh-control's caBundle (2)\n",
        "✔ the mesh is installed in namespace mesh-system (9 objects applied)\n",
        "kubectl label namespace default mesh-injection=enabled",
        "meshctl check ",
        "meshctl proxy-status --kubernetes\n",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    // Progress lines are rate-limited: three identical polls print one line.
    assert_eq!(out.matches("waiting for deployment").count(), 1, "{out}");
}

#[tokio::test(start_paused = true)]
async fn installing_again_is_an_idempotent_upgrade() {
    let store = apiserver::FakeCluster::new();
    let mut api = ApiServer::new();
    api.fallback(store.clone());
    let cluster = api.start();
    let mut first = Vec::new();
    bounded(install::install(
        &cluster,
        objects::installation(),
        &options(),
        &mut first,
    ))
    .await
    .unwrap();
    let after_first = store.lock().unwrap().objects();
    let requests_first = api.log().len();

    let mut second = Vec::new();
    let report = bounded(install::install(
        &cluster,
        objects::installation(),
        &options(),
        &mut second,
    ))
    .await
    .unwrap();
    let log = api.finish();
    assert_eq!(
        store.lock().unwrap().objects(),
        after_first,
        "nothing new, nothing lost"
    );
    assert_eq!(after_first.len(), PATHS.len());
    assert_eq!(report.applied.len(), PATHS.len());
    // The same requests, in the same order.
    let lines: Vec<String> = log.iter().map(Seen::line).collect();
    assert_eq!(lines[..requests_first], lines[requests_first..]);
    assert_eq!(first, second, "the same report both times");
}

#[tokio::test(start_paused = true)]
async fn a_field_manager_conflict_names_the_owner_and_the_way_out() {
    let mut api = ApiServer::new();
    api.once(Method::GET, "/version", Reply::fixture("version.json"));
    for path in &PATHS[..6] {
        api.always(Method::PATCH, path, Reply::applied(false));
    }
    api.always(
        Method::GET,
        PATHS[0],
        Reply::fixture("crd-virtualservices-established.json"),
    );
    api.once(
        Method::PATCH,
        PATHS[6],
        Reply::status(409, fixture("conflict-deployment-replicas.json")),
    );
    let cluster = api.start();
    let err = bounded(install::install(
        &cluster,
        objects::installation(),
        &options(),
        &mut Vec::new(),
    ))
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot apply Deployment mesh-system/mesh-control: \"kubectl-client-side-apply\" (using apps/v1) owns .spec.replicas and .spec.template.spec.containers[name=\"discovery\"].image that meshctl sets; rerun with --force-conflicts to take them over, or change the other owner so it stops setting them"
    );
    let log = api.finish();
    assert!(
        !log.iter().any(|s| s.path == PATHS[7]),
        "no webhook is applied after a failure"
    );
}

#[tokio::test(start_paused = true)]
async fn force_conflicts_sends_force() {
    let mut api = ApiServer::new();
    plan_install(&mut api, 0);
    let cluster = api.start();
    let options = Options {
        force_conflicts: true,
        ..options()
    };
    bounded(install::install(
        &cluster,
        objects::installation(),
        &options,
        &mut Vec::new(),
    ))
    .await
    .unwrap();
    for patch in patches(&api.finish()) {
        assert_eq!(
            patch.param("force").as_deref(),
            Some("true"),
            "{}",
            patch.line()
        );
        assert_eq!(patch.param("fieldManager").as_deref(), Some("meshctl"));
    }
}

#[tokio::test(start_paused = true)]
async fn a_forbidden_apply_names_the_verb_resource_and_namespace() {
    let mut api = ApiServer::new();
    api.once(Method::GET, "/version", Reply::fixture("version.json"));
    for path in &PATHS[..6] {
        api.always(Method::PATCH, path, Reply::applied(false));
    }
    api.always(
        Method::GET,
        PATHS[0],
        Reply::fixture("crd-virtualservices-established.json"),
    );
    api.once(
        Method::PATCH,
        PATHS[6],
        Reply::status(403, fixture("forbidden-patch-deployments.json")),
    );
    let cluster = api.start();
    let err = bounded(install::install(
        &cluster,
        objects::installation(),
        &options(),
        &mut Vec::new(),
    ))
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "permission denied: patch deployments.apps \"mesh-control\" in namespace mesh-system is not allowed (deployments.apps \"mesh-control\" is forbidden: User \"jane@example.com\" cannot patch resource \"deployments\" in API group \"apps\" in the namespace \"mesh-system\"); ask for a role that grants create and patch on deployments.apps in namespace mesh-system; `meshctl precheck` lists every permission install needs"
    );
    api.finish();
}

#[tokio::test(start_paused = true)]
async fn a_terminating_namespace_says_to_wait() {
    let mut api = ApiServer::new();
    api.once(Method::GET, "/version", Reply::fixture("version.json"));
    api.always(Method::PATCH, PATHS[0], Reply::applied(false));
    api.always(Method::PATCH, PATHS[1], Reply::applied(false));
    api.always(
        Method::GET,
        PATHS[0],
        Reply::fixture("crd-virtualservices-established.json"),
    );
    api.once(
        Method::PATCH,
        PATHS[2],
        Reply::status(403, fixture("namespace-terminating-forbidden.json")),
    );
    let cluster = api.start();
    let err = bounded(install::install(
        &cluster,
        objects::installation(),
        &options(),
        &mut Vec::new(),
    ))
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("because it is being terminated"), "{err}");
    assert!(err.contains("wait until the namespace is gone"), "{err}");
    api.finish();
}

#[tokio::test(start_paused = true)]
async fn a_rollout_that_times_out_says_why_and_where_to_look() {
    let mut api = ApiServer::new();
    api.once(Method::GET, "/version", Reply::fixture("version.json"));
    for path in &PATHS[..7] {
        api.once(Method::PATCH, path, Reply::applied(true));
    }
    api.always(
        Method::GET,
        PATHS[0],
        Reply::fixture("crd-virtualservices-established.json"),
    );
    // The Deployment never becomes available.
    api.always(
        Method::GET,
        PATHS[6],
        Reply::fixture("deployment-mesh-control-progressing.json"),
    );
    api.once(
        Method::GET,
        "/api/v1/namespaces/mesh-system/pods?labelSelector=app%3Dmesh-control",
        Reply::fixture("pods-mesh-control-imagepullbackoff.json"),
    );
    let cluster = api.start();
    let options = Options {
        timeout: Duration::from_secs(30),
        ..options()
    };
    let mut out = Vec::new();
    let started = tokio::time::Instant::now();
    let err = bounded(install::install(
        &cluster,
        objects::installation(),
        &options,
        &mut out,
    ))
    .await
    .unwrap_err();
    let waited = started.elapsed();
    assert!(
        (Duration::from_secs(30)..Duration::from_secs(32)).contains(&waited),
        "{waited:?}"
    );
    assert_eq!(
        err.to_string(),
        "deployment mesh-system/mesh-control did not roll out within 30s: 0/1 available; Available=False (MinimumReplicasUnavailable): Deployment does not have minimum availability.\n  \
         pod mesh-control-6f9c8d7b54-q8w7n: container discovery is waiting: ImagePullBackOff (Back-off pulling image \"ghcr.io/mesh/mesh-control:0.1.0\"): the image ghcr.io/mesh/mesh-control:0.1.0 cannot be pulled: load it into the cluster (`kind load docker-image ghcr.io/mesh/mesh-control:0.1.0`, `minikube image load ghcr.io/mesh/mesh-control:0.1.0`) or install from a registry that has it: `meshctl install --set hub=REGISTRY`\n\
         see `kubectl -n mesh-system describe pods -l app=mesh-control`"
    );
    // Progress was shown while waiting, at most every 2 s (here: when unchanged, every 10 s).
    let out = String::from_utf8(out).unwrap();
    let waits = out
        .matches("… waiting for deployment mesh-system/mesh-control: 0/1 available")
        .count();
    assert!(
        (3..=4).contains(&waits),
        "{waits} progress lines in:\n{out}"
    );
    let log = api.finish();
    assert!(
        !log.iter().any(|s| s.path == PATHS[7]),
        "no webhooks after a failed rollout"
    );
}

#[tokio::test(start_paused = true)]
async fn a_progress_deadline_exceeded_fails_without_waiting_for_the_timeout() {
    let mut api = ApiServer::new();
    api.once(Method::GET, "/version", Reply::fixture("version.json"));
    for path in &PATHS[..7] {
        api.once(Method::PATCH, path, Reply::applied(true));
    }
    api.always(
        Method::GET,
        PATHS[0],
        Reply::fixture("crd-virtualservices-established.json"),
    );
    api.once(
        Method::GET,
        PATHS[6],
        Reply::fixture("deployment-mesh-control-deadline-exceeded.json"),
    );
    api.once(
        Method::GET,
        "/api/v1/namespaces/mesh-system/pods?labelSelector=app%3Dmesh-control",
        Reply::fixture("pods-mesh-control-imagepullbackoff.json"),
    );
    let cluster = api.start();
    let started = tokio::time::Instant::now();
    let err = bounded(install::install(
        &cluster,
        objects::installation(),
        &options(),
        &mut Vec::new(),
    ))
    .await
    .unwrap_err()
    .to_string();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(
        err.starts_with("deployment mesh-system/mesh-control cannot roll out: 0/1 available; Progressing=False (ProgressDeadlineExceeded): ReplicaSet \"mesh-control-6f9c8d7b54\" has timed out progressing.\n  pod mesh-control-6f9c8d7b54-q8w7n: container discovery is waiting: ImagePullBackOff"),
        "{err}"
    );
    assert!(
        err.ends_with("see `kubectl -n mesh-system describe pods -l app=mesh-control`"),
        "{err}"
    );
    api.finish();
}

#[tokio::test(start_paused = true)]
async fn a_crd_that_is_never_established_times_out() {
    let mut api = ApiServer::new();
    api.once(Method::GET, "/version", Reply::fixture("version.json"));
    api.once(Method::PATCH, PATHS[0], Reply::applied(true));
    api.always(
        Method::GET,
        PATHS[0],
        Reply::fixture("crd-virtualservices-installing.json"),
    );
    let cluster = api.start();
    let options = Options {
        timeout: Duration::from_secs(10),
        ..options()
    };
    let err = bounded(install::install(
        &cluster,
        objects::installation(),
        &options,
        &mut Vec::new(),
    ))
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "1 of 1 CRDs were not established within 10s: virtualservices.networking.mesh.dev: Established=False (Installing)\n\
         see `kubectl get crds -l app.kubernetes.io/part-of=mesh`; rerun with a longer --timeout"
    );
    let log = api.finish();
    assert_eq!(patches(&log).len(), 1, "nothing but the CRD was applied");
}

#[tokio::test(start_paused = true)]
async fn an_old_cluster_is_refused_before_anything_is_applied() {
    let mut api = ApiServer::new();
    api.once(
        Method::GET,
        "/version",
        Reply::fixture("version-1.31-eks.json"),
    );
    let cluster = api.start();
    let err = bounded(install::install(
        &cluster,
        objects::installation(),
        &options(),
        &mut Vec::new(),
    ))
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Kubernetes v1.31.4-eks-2d5f260 is older than 1.32, the oldest release the mesh supports; upgrade the cluster (or use local mode, which needs no cluster)"
    );
    assert_eq!(api.finish().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_cluster_is_named_with_its_context() {
    let mut api = ApiServer::new();
    api.once(Method::GET, "/version", Reply::Refused);
    let cluster = api.start();
    let err = bounded(install::install(
        &cluster,
        objects::installation(),
        &options(),
        &mut Vec::new(),
    ))
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("cannot reach the Kubernetes API server at https://127.0.0.1:6443 (context kind-mesh) to get the server version (/version): "),
        "{err}"
    );
    assert!(err.contains("Connection refused"), "{err}");
    assert!(err.ends_with("is the cluster up and is this the right context? (`kubectl cluster-info --context kind-mesh`)"), "{err}");
    api.finish();
}

#[tokio::test(start_paused = true)]
async fn rejected_credentials_say_to_log_in_again() {
    let mut api = ApiServer::new();
    api.once(
        Method::GET,
        "/version",
        Reply::status(401, fixture("unauthorized.json")),
    );
    let cluster = api.start();
    let err = bounded(install::install(
        &cluster,
        objects::installation(),
        &options(),
        &mut Vec::new(),
    ))
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the Kubernetes API server at https://127.0.0.1:6443 (context kind-mesh) rejected the credentials (Unauthorized); log in again (the token may have expired) or pick another --context"
    );
    api.finish();
}

#[tokio::test(start_paused = true)]
async fn a_kind_outside_the_table_is_found_by_discovery() {
    let mut api = ApiServer::new();
    api.once(
        Method::GET,
        "/apis/scheduling.k8s.io/v1",
        Reply::fixture("apis-scheduling-v1.json"),
    );
    api.once(
        Method::PATCH,
        "/apis/scheduling.k8s.io/v1/priorityclasses/mesh-critical?fieldManager=meshctl",
        Reply::applied(true),
    );
    let cluster = api.start();
    let options = Options {
        skip_precheck: true,
        ..options()
    };
    let mut out = Vec::new();
    bounded(install::install(
        &cluster,
        vec![objects::priority_class()],
        &options,
        &mut out,
    ))
    .await
    .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains("✔ control plane applied (PriorityClass)"),
        "{out}"
    );
    assert_eq!(api.finish().len(), 2, "no /version with --skip-precheck");
}
