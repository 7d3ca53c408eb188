//! The Kubernetes registry against a mocked API server.
//!
//! Each test is a [`Scenario`]: for every resource the registry watches, the replies an
//! API server gives to its list and watch requests, replayed from JSON recorded in the
//! shapes a real apiserver sends (`tests/fixtures/kube/`: lists with
//! `metadata.resourceVersion`, newline-delimited watch events with BOOKMARKs and a `410
//! Expired` ERROR, a `403` Status, the `404` of a missing CRD). Resources a scenario does
//! not mention list empty and then watch quietly (a watch that never answers). Any request
//! the scenario did not plan for fails the test with its URL.
//!
//! Every wait is bounded by [`TIMEOUT`].

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    time::Duration,
};

use http::{Request, Response, StatusCode};
use kube::client::Body;
use mesh_api::{
    config::{Resource, ResourceKind, WorkloadEntry},
    model::{Node, ProxyMode},
    spiffe::SpiffeId,
};
use mesh_control::{
    index::{Index, Settings},
    registry::kube::{
        ENDPOINTSLICE_SERVICE_LABEL, INJECT_LABEL, KubeRegistry, NamespaceLabels, Options,
        RegistryEvent, WatchErrors, Watched,
    },
};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
    time::timeout,
};

/// The bound on every wait.
const TIMEOUT: Duration = Duration::from_secs(10);

const FORBIDDEN_PODS: &str = "mesh-control may not list/watch pods (403 Forbidden): apply deploy/ RBAC or check the ClusterRole";

// === Scenario: the mocked API server ===

/// The API path of a watched resource (cluster-wide).
fn path(w: Watched) -> &'static str {
    match w {
        Watched::Services => "/api/v1/services",
        Watched::EndpointSlices => "/apis/discovery.k8s.io/v1/endpointslices",
        Watched::Pods => "/api/v1/pods",
        Watched::Namespaces => "/api/v1/namespaces",
        Watched::VirtualServices => "/apis/networking.mesh.dev/v1alpha1/virtualservices",
        Watched::DestinationRules => "/apis/networking.mesh.dev/v1alpha1/destinationrules",
        Watched::Gateways => "/apis/networking.mesh.dev/v1alpha1/gateways",
        Watched::ServiceEntries => "/apis/networking.mesh.dev/v1alpha1/serviceentries",
        Watched::WorkloadEntries => "/apis/networking.mesh.dev/v1alpha1/workloadentries",
        Watched::PeerAuthentications => "/apis/security.mesh.dev/v1alpha1/peerauthentications",
        Watched::AuthorizationPolicies => "/apis/security.mesh.dev/v1alpha1/authorizationpolicies",
        Watched::HttpRoutes => "/apis/gateway.networking.k8s.io/v1/httproutes",
        Watched::GrpcRoutes => "/apis/gateway.networking.k8s.io/v1/grpcroutes",
        Watched::KubeGateways => "/apis/gateway.networking.k8s.io/v1/gateways",
    }
}

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kube")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One reply of the mocked API server.
#[derive(Debug, Clone)]
enum Reply {
    /// A status with a body of a content type.
    Body(StatusCode, &'static str, String),
    /// No answer (yet): a quiet watch.
    Pending,
}

impl Reply {
    fn json(body: String) -> Self {
        Self::Body(StatusCode::OK, "application/json", body)
    }

    /// An error as the apiserver sends it: a JSON `Status`, or the text of Go's
    /// `http.NotFound` for an unknown API group.
    fn error(status: u16, fixture_name: &str) -> Self {
        let content_type = if fixture_name.ends_with(".txt") {
            "text/plain; charset=utf-8"
        } else {
            "application/json"
        };
        Self::Body(
            StatusCode::from_u16(status).unwrap(),
            content_type,
            fixture(fixture_name),
        )
    }
}

/// The replies planned for one (path, list-or-watch), in order; then `then`, for every
/// further request (or a failure naming the URL when `None`).
#[derive(Debug, Default)]
struct Route {
    replies: VecDeque<Reply>,
    then: Option<Reply>,
}

/// What the mocked API server answers, per (path, is-watch).
#[derive(Debug)]
struct Scenario {
    routes: HashMap<(String, bool), Route>,
    options: Options,
}

impl Scenario {
    /// Every resource lists empty once, then watches quietly.
    fn new() -> Self {
        let mut routes = HashMap::new();
        for w in Watched::ALL {
            let empty = format!(
                r#"{{"kind":"{}List","apiVersion":"v1","metadata":{{"resourceVersion":"48213"}},"items":[]}}"#,
                w.kind()
            );
            routes.insert(
                (path(w).to_owned(), false),
                Route {
                    replies: VecDeque::from([Reply::json(empty)]),
                    then: None,
                },
            );
            routes.insert(
                (path(w).to_owned(), true),
                Route {
                    replies: VecDeque::new(),
                    then: Some(Reply::Pending),
                },
            );
        }
        Self {
            routes,
            options: Options::default(),
        }
    }

    fn route(&mut self, w: Watched, watch: bool) -> &mut Route {
        self.routes
            .get_mut(&(path(w).to_owned(), watch))
            .expect("a route")
    }

    /// The first list of `w` returns the fixture.
    fn list(mut self, w: Watched, fixture_name: &str) -> Self {
        self.route(w, false).replies = VecDeque::from([Reply::json(fixture(fixture_name))]);
        self
    }

    /// The next list of `w` (after a failure or a `410`) returns the fixture.
    fn then_list(mut self, w: Watched, fixture_name: &str) -> Self {
        let route = self.route(w, false);
        route.replies.push_back(Reply::json(fixture(fixture_name)));
        self
    }

    /// The first list of `w` fails with `status` and the fixture's body.
    fn list_fails(mut self, w: Watched, status: u16, fixture_name: &str) -> Self {
        self.route(w, false).replies = VecDeque::from([Reply::error(status, fixture_name)]);
        self
    }

    /// Every list of `w` fails with `status` and the fixture's body.
    fn list_always_fails(mut self, w: Watched, status: u16, fixture_name: &str) -> Self {
        let route = self.route(w, false);
        route.replies.clear();
        route.then = Some(Reply::error(status, fixture_name));
        self
    }

    /// The next watch of `w` streams the fixture's events, then ends (the watcher
    /// re-watches from the last resource version, which then stays quiet).
    fn watch(mut self, w: Watched, fixture_name: &str) -> Self {
        let route = self.route(w, true);
        route.replies.push_back(Reply::json(fixture(fixture_name)));
        self
    }

    /// No reply is planned for `w` at all.
    fn without(mut self, w: Watched) -> Self {
        self.routes.remove(&(path(w).to_owned(), false));
        self.routes.remove(&(path(w).to_owned(), true));
        self
    }

    fn options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// Starts the mocked API server and the registry on it.
    fn start(self) -> Running {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "default");
        let (requests_tx, requests) = watch::channel(Vec::new());
        let server = tokio::spawn(serve(handle, self.routes, requests_tx));
        let registry = KubeRegistry::new(client, self.options);
        let errors = registry.watch_errors();
        let namespaces = registry.namespace_labels();
        let (tx, events) = mpsc::channel(64);
        let registry = tokio::spawn(registry.run(tx));
        Running {
            events,
            server,
            registry,
            requests,
            errors,
            namespaces,
        }
    }
}

/// The mocked API server: answers each request from its route, logs its URL.
async fn serve(
    mut handle: tower_test::mock::Handle<Request<Body>, Response<Body>>,
    mut routes: HashMap<(String, bool), Route>,
    requests: watch::Sender<Vec<String>>,
) {
    // Unanswered requests: quiet watches.
    let mut pending = Vec::new();
    while let Some((request, respond)) = handle.next_request().await {
        let url = request.uri().to_string();
        let method = request.method().clone();
        requests.send_modify(|log| log.push(url.clone()));
        assert_eq!(
            method,
            http::Method::GET,
            "unexpected request: {method} {url}: the registry only reads"
        );
        let is_watch = request
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .any(|kv| kv == "watch=true");
        let what = if is_watch { "watch" } else { "list" };
        let Some(route) = routes.get_mut(&(request.uri().path().to_owned(), is_watch)) else {
            panic!("unexpected request: {method} {url}: the scenario plans no {what} of this path");
        };
        let Some(reply) = route.replies.pop_front().or_else(|| route.then.clone()) else {
            panic!(
                "unexpected request: {method} {url}: the scenario plans no further {what} of this path"
            );
        };
        match reply {
            Reply::Pending => pending.push(respond),
            Reply::Body(status, content_type, body) => respond.send_response(
                Response::builder()
                    .status(status)
                    .header(http::header::CONTENT_TYPE, content_type)
                    .body(Body::from(body.into_bytes()))
                    .unwrap(),
            ),
        }
    }
}

/// A running registry on a mocked API server.
struct Running {
    events: mpsc::Receiver<RegistryEvent>,
    server: JoinHandle<()>,
    registry: JoinHandle<()>,
    requests: watch::Receiver<Vec<String>>,
    errors: WatchErrors,
    namespaces: NamespaceLabels,
}

impl Running {
    /// The next event; fails the test with the server's panic if it had one.
    async fn next(&mut self) -> RegistryEvent {
        let Self { events, server, .. } = self;
        let next = async {
            tokio::select! {
                biased;
                done = server => match done {
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    _ => panic!("the mocked API server stopped"),
                },
                event = events.recv() => event.expect("the registry stopped"),
            }
        };
        match timeout(TIMEOUT, next).await {
            Ok(event) => event,
            Err(_) => panic!(
                "no registry event within {TIMEOUT:?}; requests so far: {:#?}",
                self.requests.borrow()
            ),
        }
    }

    /// The events up to `Synced` (excluded).
    async fn until_synced(&mut self) -> Vec<RegistryEvent> {
        let mut out = Vec::new();
        loop {
            match self.next().await {
                RegistryEvent::Synced => return out,
                event => out.push(event),
            }
        }
    }

    /// The next `n` events.
    async fn take(&mut self, n: usize) -> Vec<RegistryEvent> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.next().await);
        }
        out
    }

    /// Waits until a request URL contains every one of `parts`.
    async fn requested(&mut self, parts: &[&str]) -> String {
        let matches = |u: &String| parts.iter().all(|p| u.contains(p));
        let found = timeout(
            TIMEOUT,
            self.requests.wait_for(|log| log.iter().any(matches)),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .and_then(|log| log.iter().find(|u| matches(u)).cloned());
        found.unwrap_or_else(|| {
            panic!(
                "no request with {parts:?} within {TIMEOUT:?}; requests: {:#?}",
                self.requests.borrow()
            )
        })
    }

    /// Asserts no event is waiting now.
    fn assert_quiet(&mut self) {
        match self.events.try_recv() {
            Err(mpsc::error::TryRecvError::Empty) => {}
            other => panic!("expected no further event, got {other:?}"),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.registry.abort();
        self.server.abort();
    }
}

// === Event helpers ===

fn applied(events: &[RegistryEvent], kind: ResourceKind, ns: &str, name: &str) -> Resource {
    events
        .iter()
        .rev()
        .find_map(|e| match e {
            RegistryEvent::Apply(r)
                if r.kind() == kind && r.namespace() == ns && r.name() == name =>
            {
                Some(r.clone())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no Apply of {kind:?} {ns}/{name} in {:#?}", summary(events)))
}

fn workload(events: &[RegistryEvent], name: &str) -> WorkloadEntry {
    match applied(events, ResourceKind::WorkloadEntry, "default", name) {
        Resource::WorkloadEntry(we) => we,
        other => panic!("not a WorkloadEntry: {other:?}"),
    }
}

fn service(events: &[RegistryEvent], ns: &str, name: &str) -> k8s_openapi::api::core::v1::Service {
    match applied(events, ResourceKind::Service, ns, name) {
        Resource::Service(s) => s,
        other => panic!("not a Service: {other:?}"),
    }
}

fn problems(events: &[RegistryEvent]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match e {
            RegistryEvent::Problem(p) => Some(p.as_str()),
            _ => None,
        })
        .collect()
}

/// Events as short lines, for assertions on order and for failure messages.
fn summary(events: &[RegistryEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            RegistryEvent::Apply(r) => {
                format!("apply {} {}/{}", r.kind().kind(), r.namespace(), r.name())
            }
            RegistryEvent::Delete {
                kind,
                namespace,
                name,
            } => format!("delete {} {namespace}/{name}", kind.kind()),
            RegistryEvent::Synced => "synced".to_owned(),
            RegistryEvent::Problem(p) => format!("problem {p}"),
        })
        .collect()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

const REVIEWS_V1: &str = "reviews-v1-6d8f7c9b4-x2x7k";
const REVIEWS_V2: &str = "reviews-v2-7b9f5c8d6-m4kzp";
const REVIEWS_V3: &str = "reviews-v3-5f7b9d4c8-tn6vb";
const LEGACY_CLIENT: &str = "legacy-client-5c9d8f6b7-q8w4n";

/// The scenario of a small cluster: Bookinfo's `reviews`, a selector-less `legacy-db`
/// with manual endpoints, a pod without sidecar, a VirtualService.
fn cluster() -> Scenario {
    Scenario::new()
        .list(Watched::Services, "services.list.json")
        .list(Watched::Pods, "pods.list.json")
        .list(Watched::EndpointSlices, "endpointslices.list.json")
        .list(Watched::Namespaces, "namespaces.list.json")
        .list(Watched::VirtualServices, "virtualservices.list.json")
}

// === Tests ===

#[tokio::test]
async fn initial_lists_become_resources_then_synced() {
    let mut running = cluster().start();
    let events = running.until_synced().await;
    assert_eq!(problems(&events), Vec::<&str>::new());

    // Services: stripped; a selector-less one selects its EndpointSlice addresses.
    let reviews = service(&events, "default", "reviews");
    assert_eq!(reviews.metadata.managed_fields, None);
    assert_eq!(
        reviews.metadata.annotations, None,
        "last-applied is dropped"
    );
    assert_eq!(reviews.status, None);
    let spec = reviews.spec.unwrap();
    assert_eq!(spec.selector, Some(labels(&[("app", "reviews")])));
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.12.7"));
    let legacy_db = service(&events, "default", "legacy-db");
    assert_eq!(
        legacy_db.spec.unwrap().selector,
        Some(labels(&[(ENDPOINTSLICE_SERVICE_LABEL, "legacy-db")]))
    );
    service(&events, "default", "kubernetes");
    let kube_dns = service(&events, "kube-system", "kube-dns");
    assert_eq!(
        kube_dns.metadata.annotations.unwrap().len(),
        2,
        "other annotations stay"
    );

    // A ready pod with a sidecar: in the mesh, named app ports only.
    let v1 = workload(&events, REVIEWS_V1);
    assert_eq!(v1.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(v1.spec.address, "10.244.1.17");
    assert_eq!(v1.spec.service_account.as_deref(), Some("bookinfo-reviews"));
    assert_eq!(v1.spec.ports, BTreeMap::from([("http".to_owned(), 9080)]));
    assert_eq!(
        v1.spec.labels,
        labels(&[
            ("app", "reviews"),
            ("pod-template-hash", "6d8f7c9b4"),
            ("version", "v1")
        ])
    );

    // A pod without a sidecar: out of the mesh; no named ports.
    let legacy = workload(&events, LEGACY_CLIENT);
    assert_eq!(legacy.spec.address, "10.244.2.5");
    assert_eq!(
        legacy.spec.labels.get(INJECT_LABEL).map(String::as_str),
        Some("false")
    );
    assert!(legacy.spec.ports.is_empty());
    assert_eq!(legacy.spec.service_account.as_deref(), Some("default"));

    // The EndpointSlice of the selector-less service: its ready address only.
    let db = workload(&events, "legacy-db-x7k2p-0");
    assert_eq!(db.spec.address, "10.0.5.10");
    assert_eq!(
        db.spec.ports,
        BTreeMap::from([("postgres".to_owned(), 5432)])
    );
    assert_eq!(
        db.spec.labels,
        labels(&[
            (ENDPOINTSLICE_SERVICE_LABEL, "legacy-db"),
            (INJECT_LABEL, "false")
        ])
    );

    // Our CRDs pass through, stripped.
    let Resource::VirtualService(vs) =
        applied(&events, ResourceKind::VirtualService, "default", "reviews")
    else {
        unreachable!()
    };
    assert_eq!(vs.metadata.managed_fields, None);
    assert_eq!(vs.spec.hosts, ["reviews"]);

    // Exactly these, nothing for the pending pod or the controller-managed slice.
    let mut got = summary(&events);
    got.sort();
    assert_eq!(
        got,
        [
            "apply Service default/kubernetes",
            "apply Service default/legacy-db",
            "apply Service default/reviews",
            "apply Service kube-system/kube-dns",
            "apply VirtualService default/reviews",
            "apply WorkloadEntry default/legacy-client-5c9d8f6b7-q8w4n",
            "apply WorkloadEntry default/legacy-db-x7k2p-0",
            "apply WorkloadEntry default/reviews-v1-6d8f7c9b4-x2x7k",
        ]
    );

    // Namespaces only feed the label map.
    assert_eq!(running.namespaces.len(), 4);
    assert_eq!(
        running
            .namespaces
            .get("bookinfo")
            .unwrap()
            .get("mesh-injection")
            .map(String::as_str),
        Some("enabled")
    );
    assert!(running.errors.iter().all(|(_, n)| n == 0));
}

#[tokio::test]
async fn watch_events_add_modify_and_delete() {
    let mut running = cluster()
        .watch(Watched::Pods, "pods.watch.jsonl")
        .watch(Watched::Services, "services.watch.jsonl")
        .start();
    running.until_synced().await;
    let events = running.take(6).await;
    let lines = summary(&events);
    let of = |kind: &str| -> Vec<&str> {
        lines
            .iter()
            .filter(|l| l.contains(kind))
            .map(String::as_str)
            .collect()
    };
    assert_eq!(
        of("WorkloadEntry"),
        [
            "apply WorkloadEntry default/reviews-v2-7b9f5c8d6-m4kzp",
            "apply WorkloadEntry default/reviews-v1-6d8f7c9b4-x2x7k",
            "delete WorkloadEntry default/legacy-client-5c9d8f6b7-q8w4n",
        ]
    );
    assert_eq!(
        of("Service"),
        [
            "apply Service default/ratings",
            "apply Service default/reviews",
            "delete Service default/legacy-db",
        ]
    );
    assert_eq!(workload(&events, REVIEWS_V2).spec.address, "10.244.1.23");
    assert_eq!(
        workload(&events, REVIEWS_V1)
            .spec
            .labels
            .get("track")
            .map(String::as_str),
        Some("stable")
    );
    let ports = service(&events, "default", "reviews")
        .spec
        .unwrap()
        .ports
        .unwrap();
    assert_eq!(ports.len(), 2);

    // The watcher resumes from the BOOKMARK's resource version.
    running
        .requested(&["/api/v1/pods?", "watch=true", "resourceVersion=48377"])
        .await;
    running.assert_quiet();
}

#[tokio::test]
async fn a_pod_that_stops_being_ready_is_deleted() {
    let mut running = cluster()
        .watch(Watched::Pods, "pods-readiness.watch.jsonl")
        .start();
    running.until_synced().await;
    let events = running.take(3).await;
    assert_eq!(
        summary(&events),
        [
            // Its readiness probe fails: no traffic.
            "delete WorkloadEntry default/reviews-v1-6d8f7c9b4-x2x7k",
            // It recovers.
            "apply WorkloadEntry default/reviews-v1-6d8f7c9b4-x2x7k",
            // It terminates (deletionTimestamp), still Running and Ready.
            "delete WorkloadEntry default/reviews-v1-6d8f7c9b4-x2x7k",
        ]
    );
    // Its final DELETED event has nothing left to delete: once the watcher has moved
    // past it (re-watching from its resource version), no event is waiting.
    running
        .requested(&["/api/v1/pods?", "watch=true", "resourceVersion=48342"])
        .await;
    running.assert_quiet();
}

#[tokio::test]
async fn gone_relists_and_deletes_what_vanished() {
    let mut running = cluster()
        .watch(Watched::Pods, "pods-expired.watch.jsonl")
        .then_list(Watched::Pods, "pods-relisted.list.json")
        .start();
    let initial = running.until_synced().await;
    workload(&initial, REVIEWS_V1);

    // 410 Expired → re-list: the legacy client is still there, v3 is new, v1 vanished
    // during the gap.
    let events = running.take(3).await;
    assert_eq!(
        summary(&events),
        [
            "apply WorkloadEntry default/legacy-client-5c9d8f6b7-q8w4n",
            "apply WorkloadEntry default/reviews-v3-5f7b9d4c8-tn6vb",
            "delete WorkloadEntry default/reviews-v1-6d8f7c9b4-x2x7k",
        ]
    );
    assert_eq!(workload(&events, REVIEWS_V3).spec.address, "10.244.2.31");

    // Watching again from the re-list; no second `Synced`, no problem for a routine 410.
    running
        .requested(&["/api/v1/pods?", "watch=true", "resourceVersion=49004"])
        .await;
    running.assert_quiet();
    assert_eq!(running.errors.get(Watched::Pods), 1);
}

#[tokio::test]
async fn forbidden_names_the_resource_and_the_fix_and_holds_sync() {
    let mut running = cluster()
        .list_fails(Watched::Pods, 403, "forbidden-pods.json")
        .then_list(Watched::Pods, "pods.list.json")
        .start();
    let events = running.until_synced().await;
    let lines = summary(&events);
    let at = |line: &str| {
        lines
            .iter()
            .position(|l| l == line)
            .unwrap_or_else(|| panic!("no {line:?} in {lines:#?}"))
    };
    let problem = at(&format!("problem {FORBIDDEN_PODS}"));
    assert_eq!(problems(&events), [FORBIDDEN_PODS], "reported once");
    // The other watchers went on...
    at("apply Service default/reviews");
    at("apply WorkloadEntry default/legacy-db-x7k2p-0");
    // ...but `Synced` waited for the pods (the events end with it), which came after the
    // backoff.
    assert!(at("apply WorkloadEntry default/reviews-v1-6d8f7c9b4-x2x7k") > problem);
    assert_eq!(running.errors.get(Watched::Pods), 1);
    assert_eq!(running.errors.get(Watched::Services), 0);
}

#[tokio::test]
async fn missing_crds_do_not_block_sync() {
    let mut running = cluster()
        // Gateway API not installed (the group is unknown: Go's text 404), except that
        // HTTPRoute appears later.
        .list_fails(Watched::HttpRoutes, 404, "not-found-group.txt")
        .then_list(Watched::HttpRoutes, "httproutes.list.json")
        .list_always_fails(Watched::KubeGateways, 404, "not-found-group.txt")
        // The group is served but has no such resource: a JSON `NotFound` Status.
        .list_always_fails(Watched::GrpcRoutes, 404, "not-found-resource.json")
        // One of ours missing.
        .list_always_fails(Watched::PeerAuthentications, 404, "not-found-resource.json")
        .start();
    let mut events = running.until_synced().await;
    let mut got = problems(&events);
    got.sort_unstable();
    assert_eq!(
        got,
        [
            "GRPCRoute CRD (grpcroutes.gateway.networking.k8s.io) not installed; install the Gateway API CRDs (standard channel) to use it; GRPCRoute ignored until it appears",
            "Gateway CRD (gateways.gateway.networking.k8s.io) not installed; install the Gateway API CRDs (standard channel) to use it; Gateway ignored until it appears",
            "HTTPRoute CRD (httproutes.gateway.networking.k8s.io) not installed; install the Gateway API CRDs (standard channel) to use it; HTTPRoute ignored until it appears",
            "PeerAuthentication CRD (peerauthentications.security.mesh.dev) not installed; run `meshctl install`; PeerAuthentication ignored until it appears",
        ]
    );
    // Everything else synced as usual.
    workload(&events, REVIEWS_V1);

    // The watchers keep retrying: the HTTPRoute CRD appears and its route is applied
    // (the repeated 404s of the others are not reported again).
    if !summary(&events)
        .iter()
        .any(|l| l.starts_with("apply HTTPRoute"))
    {
        events.push(running.next().await);
    }
    let Resource::HttpRoute(route) = applied(
        &events,
        ResourceKind::HttpRoute,
        "default",
        "reviews-canary",
    ) else {
        unreachable!()
    };
    assert_eq!(route.status, None, "status is dropped");
    assert_eq!(route.metadata.managed_fields, None);
    assert_eq!(route.spec.parent_refs.unwrap()[0].name, "reviews");
    assert!(running.errors.get(Watched::HttpRoutes) >= 1);
}

#[tokio::test]
async fn events_feed_the_index_into_a_proxy_config() {
    let mut running = cluster().start();
    let mut index = Index::new(Settings::default());
    loop {
        match running.next().await {
            RegistryEvent::Apply(r) => index.apply(r),
            RegistryEvent::Delete {
                kind,
                namespace,
                name,
            } => index.delete(kind, &namespace, &name),
            RegistryEvent::Synced => break,
            RegistryEvent::Problem(p) => panic!("unexpected problem: {p}"),
        }
    }
    let warnings: Vec<String> = index.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "Service kube-system/kube-dns: spec.ports[0]: protocol UDP is not supported (the mesh carries TCP); port skipped"
        ]
    );

    let node = Node {
        id: format!("sidecar~10.244.1.17~{REVIEWS_V1}.default"),
        pod_name: REVIEWS_V1.to_owned(),
        namespace: "default".to_owned(),
        ip: "10.244.1.17".parse().unwrap(),
        identity: SpiffeId::new("cluster.local", "default", "bookinfo-reviews").unwrap(),
        labels: BTreeMap::new(),
        mode: ProxyMode::Sidecar,
        proxy_version: String::new(),
    };
    let config = index.proxy_config(&node);

    // The proxy knows its own workload (the pod), by name and identity.
    let own = config.workload.as_ref().expect("its own workload");
    assert_eq!(own.address.to_string(), "10.244.1.17");
    assert_eq!(own.canonical_service, "reviews");

    let endpoints = |host: &str| {
        config
            .endpoints
            .iter()
            .find(|e| e.hostname == host)
            .unwrap_or_else(|| panic!("no endpoints for {host}"))
            .endpoints
            .iter()
            .map(|e| (e.workload.address.to_string(), e.workload.in_mesh))
            .collect::<Vec<_>>()
    };
    assert!(
        config
            .services
            .iter()
            .any(|s| s.hostname == "reviews.default.svc.cluster.local")
    );
    // The pod behind its service, in the mesh.
    assert_eq!(
        endpoints("reviews.default.svc.cluster.local"),
        [("10.244.1.17".to_owned(), true)]
    );
    // The selector-less service: its EndpointSlice's ready address, out of the mesh.
    assert_eq!(
        endpoints("legacy-db.default.svc.cluster.local"),
        [("10.0.5.10".to_owned(), false)]
    );
}

#[tokio::test]
async fn ignored_namespaces_are_neither_requested_nor_applied() {
    let mut running = cluster()
        .options(Options {
            ignore_namespaces: ["kube-system".to_owned()].into(),
        })
        .start();
    // The mocked server ignores field selectors and sends kube-dns anyway.
    let events = running.until_synced().await;
    assert!(
        !summary(&events).iter().any(|l| l.contains("kube-system/")),
        "{:#?}",
        summary(&events)
    );
    let selector = "fieldSelector=metadata.namespace%21%3Dkube-system";
    running.requested(&["/api/v1/services?", selector]).await;
    running
        .requested(&[
            "/apis/networking.mesh.dev/v1alpha1/virtualservices?",
            selector,
        ])
        .await;
    let namespaces = running.requested(&["/api/v1/namespaces?"]).await;
    assert!(!namespaces.contains("fieldSelector"), "{namespaces}");
}

#[tokio::test]
#[should_panic(
    expected = "unexpected request: GET /apis/networking.mesh.dev/v1alpha1/destinationrules?"
)]
async fn unplanned_requests_fail_naming_the_url() {
    let mut running = cluster().without(Watched::DestinationRules).start();
    running.until_synced().await;
}
