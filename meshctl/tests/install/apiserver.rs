//! A scripted Kubernetes API server behind a `tower-test` mock: each test plans the
//! requests it expects (method, path, a piece of the query) and the answers, replayed from
//! `tests/fixtures/apiserver/` (JSON in the shapes a real apiserver sends), and afterwards
//! reads the log of every request (method, path, query, content type, body) to assert on.
//!
//! A request no rule matches is answered with a 500 `Status` naming it and recorded;
//! [`ApiServer::finish`] fails the test on it, and on any `once` answer never asked for.
//!
//! [`FakeCluster`] is a tiny in-memory apiserver (apply, get, list with selectors, delete,
//! access reviews) for end-to-end runs over the real rendered manifests, whose objects a
//! scripted plan cannot know in advance.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use kube::client::Body;
use meshctl::cluster::Cluster;
use serde_json::{Value, json};
use tower_test::mock;

/// The server URL the clusters of tests claim.
pub(crate) const SERVER: &str = "https://127.0.0.1:6443";
/// The context the clusters of tests claim.
pub(crate) const CONTEXT: &str = "kind-mesh";

/// A fixture file's text.
pub(crate) fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/apiserver")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A fixture file as JSON.
pub(crate) fn fixture_json(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    /// The method.
    pub(crate) method: Method,
    /// The path.
    pub(crate) path: String,
    /// The raw query (empty when none).
    pub(crate) query: String,
    /// The content type (empty when none).
    pub(crate) content_type: String,
    /// The body as JSON (`Null` when empty or not JSON).
    pub(crate) body: Value,
}

impl Seen {
    /// `PATCH /apis/apps/v1/...`.
    pub(crate) fn line(&self) -> String {
        if self.query.is_empty() {
            format!("{} {}", self.method, self.path)
        } else {
            format!("{} {}?{}", self.method, self.path, self.query)
        }
    }

    /// The decoded value of query parameter `key`.
    pub(crate) fn param(&self, key: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == key).then(|| decode(v))
        })
    }
}

/// Decodes `%XX` and `+` of a query value.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if s.get(i + 1..i + 3).is_some() => {
                let hex = &s[i + 1..i + 3];
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// An answer computed from the request: status and body.
type Responder = Box<dyn FnMut(&Seen) -> (u16, String) + Send>;

/// An answer.
pub(crate) enum Reply {
    /// A status and a body (JSON unless the fixture is `.txt`).
    Body(u16, String),
    /// A transport failure (the connection is refused).
    Refused,
    /// Computed from the request.
    With(Responder),
}

impl Reply {
    /// 200 with `body`.
    pub(crate) fn ok(body: impl Into<String>) -> Self {
        Self::Body(200, body.into())
    }

    /// `status` with `body`.
    pub(crate) fn status(status: u16, body: impl Into<String>) -> Self {
        Self::Body(status, body.into())
    }

    /// 200 with a fixture.
    pub(crate) fn fixture(name: &str) -> Self {
        Self::Body(200, fixture(name))
    }

    /// Computed from the request.
    pub(crate) fn with(f: impl FnMut(&Seen) -> (u16, String) + Send + 'static) -> Self {
        Self::With(Box::new(f))
    }

    /// What a server-side apply answers: the applied object back, with server fields
    /// (`201` when `created`).
    pub(crate) fn applied(created: bool) -> Self {
        Self::with(move |seen| {
            let mut obj = seen.body.clone();
            obj["metadata"]["uid"] = json!("00000000-0000-4000-8000-000000000001");
            obj["metadata"]["resourceVersion"] = json!("1");
            obj["metadata"]["generation"] = json!(1);
            (if created { 201 } else { 200 }, obj.to_string())
        })
    }
}

/// A planned answer to requests matching method, path and query pieces.
struct Rule {
    method: Method,
    path: String,
    query: Vec<String>,
    reply: Reply,
    /// `Some(false)`: answers once, not yet used; `Some(true)`: used; `None`: always.
    once: Option<bool>,
}

impl Rule {
    fn matches(&self, seen: &Seen) -> bool {
        self.method == seen.method
            && self.path == seen.path
            && self.query.iter().all(|q| seen.query.contains(q.as_str()))
            && self.once != Some(true)
    }
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    log: Vec<Seen>,
    unexpected: Vec<String>,
}

/// The plan of a scripted API server.
pub(crate) struct ApiServer {
    state: Arc<Mutex<State>>,
    fallback: Option<Arc<Mutex<FakeCluster>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ApiServer {
    /// A server with no plan yet.
    pub(crate) fn new() -> Self {
        Self {
            state: Arc::default(),
            fallback: None,
            task: None,
        }
    }

    fn add(&mut self, method: Method, target: &str, reply: Reply, once: Option<bool>) {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let query = query
            .split('&')
            .filter(|q| !q.is_empty())
            .map(str::to_owned)
            .collect();
        self.state.lock().unwrap().rules.push(Rule {
            method,
            path: path.to_owned(),
            query,
            reply,
            once,
        });
    }

    /// Answers the next matching request (`target` is a path, optionally with `?` and
    /// query pieces that must all appear) once; [`finish`](Self::finish) fails if it
    /// never came. Rules are tried in the order planned.
    pub(crate) fn once(&mut self, method: Method, target: &str, reply: Reply) -> &mut Self {
        self.add(method, target, reply, Some(false));
        self
    }

    /// Answers every matching request not answered by an earlier rule.
    pub(crate) fn always(&mut self, method: Method, target: &str, reply: Reply) -> &mut Self {
        self.add(method, target, reply, None);
        self
    }

    /// Answers requests no rule matches from an in-memory cluster.
    pub(crate) fn fallback(&mut self, cluster: Arc<Mutex<FakeCluster>>) -> &mut Self {
        self.fallback = Some(cluster);
        self
    }

    /// Starts serving: the [`Cluster`] to hand to the code under test.
    pub(crate) fn start(&mut self) -> Cluster {
        let (svc, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
        let state = self.state.clone();
        let fallback = self.fallback.clone();
        self.task = Some(tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let (parts, body) = req.into_parts();
                let bytes = body.collect().await.unwrap().to_bytes();
                let seen = Seen {
                    method: parts.method.clone(),
                    path: parts.uri.path().to_owned(),
                    query: parts.uri.query().unwrap_or_default().to_owned(),
                    content_type: parts
                        .headers
                        .get(http::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned(),
                    body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                };
                let answer = {
                    let mut state = state.lock().unwrap();
                    state.log.push(seen.clone());
                    let rule = state.rules.iter_mut().find(|r| r.matches(&seen));
                    match rule {
                        Some(rule) => {
                            if rule.once == Some(false) {
                                rule.once = Some(true);
                            }
                            match &mut rule.reply {
                                Reply::Body(status, body) => Some((*status, body.clone())),
                                Reply::With(f) => Some(f(&seen)),
                                Reply::Refused => None,
                            }
                        }
                        None => match &fallback {
                            Some(cluster) => Some(cluster.lock().unwrap().serve(&seen)),
                            None => {
                                state.unexpected.push(seen.line());
                                Some((
                                    500,
                                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": format!("unexpected request {}", seen.line()), "reason": "InternalError", "code": 500}).to_string(),
                                ))
                            }
                        },
                    }
                };
                match answer {
                    Some((status, body)) => {
                        let content_type = if body.trim_start().starts_with(['{', '[']) {
                            "application/json"
                        } else {
                            "text/plain; charset=utf-8"
                        };
                        send.send_response(
                            Response::builder()
                                .status(StatusCode::from_u16(status).unwrap())
                                .header("content-type", content_type)
                                .body(Body::from(body.into_bytes()))
                                .unwrap(),
                        );
                    }
                    None => send.send_error(std::io::Error::new(
                        std::io::ErrorKind::ConnectionRefused,
                        "tcp connect error: Connection refused (os error 111)",
                    )),
                }
            }
        }));
        Cluster::new(
            kube::Client::new(svc, "default"),
            SERVER,
            Some(CONTEXT.to_owned()),
        )
    }

    /// Every request seen so far.
    pub(crate) fn log(&self) -> Vec<Seen> {
        self.state.lock().unwrap().log.clone()
    }

    /// Fails the test on unexpected requests or `once` answers never asked for; returns
    /// the log.
    pub(crate) fn finish(self) -> Vec<Seen> {
        let state = self.state.lock().unwrap();
        assert!(
            state.unexpected.is_empty(),
            "unexpected requests: {:#?}\nlog: {:#?}",
            state.unexpected,
            state.log.iter().map(Seen::line).collect::<Vec<_>>()
        );
        let unused: Vec<String> = state
            .rules
            .iter()
            .filter(|r| r.once == Some(false))
            .map(|r| format!("{} {}?{}", r.method, r.path, r.query.join("&")))
            .collect();
        assert!(
            unused.is_empty(),
            "planned requests never made: {unused:#?}\nlog: {:#?}",
            state.log.iter().map(Seen::line).collect::<Vec<_>>()
        );
        state.log.clone()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

// === FakeCluster: an in-memory apiserver ===

/// Where an object lives: API path prefix (`/apis/apps/v1`), plural, namespace, name.
type Key = (String, String, Option<String>, String);

/// A request path taken apart.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    prefix: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (prefix, rest) = match *segs.first()? {
        "api" => (format!("/api/{}", segs.get(1)?), &segs[2..]),
        "apis" => (
            format!("/apis/{}/{}", segs.get(1)?, segs.get(2)?),
            &segs[3..],
        ),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, tail @ ..] => (Some((*ns).to_owned()), {
            let mut v = vec![*plural];
            v.extend_from_slice(tail);
            v
        }),
        other => (None, other.to_vec()),
    };
    Some(Target {
        prefix,
        plural: rest.first()?.to_string(),
        namespace,
        name: rest.get(1).map(|s| (*s).to_owned()),
    })
}

/// An in-memory cluster: what server-side apply stored, with the status a healthy cluster
/// soon reports (CRDs established, Deployments available, webhooks given a caBundle).
#[derive(Debug, Default)]
pub(crate) struct FakeCluster {
    objects: BTreeMap<Key, Value>,
    version: u64,
}

impl FakeCluster {
    /// An empty cluster.
    pub(crate) fn new() -> Arc<Mutex<Self>> {
        Arc::default()
    }

    /// The objects stored, as `Kind namespace/name`.
    pub(crate) fn objects(&self) -> Vec<String> {
        self.objects
            .iter()
            .map(|((_, _, ns, name), obj)| {
                let kind = obj["kind"].as_str().unwrap_or("?");
                match ns {
                    Some(ns) => format!("{kind} {ns}/{name}"),
                    None => format!("{kind} {name}"),
                }
            })
            .collect()
    }

    fn status(code: u16, reason: &str, message: String) -> (u16, String) {
        (
            code,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}).to_string(),
        )
    }

    fn serve(&mut self, seen: &Seen) -> (u16, String) {
        if seen.path == "/version" {
            return (200, fixture("version.json"));
        }
        if seen.path.ends_with("/selfsubjectaccessreviews") {
            let mut review = fixture_json("ssar-allowed.json");
            review["spec"] = seen.body["spec"].clone();
            return (201, review.to_string());
        }
        let Some(t) = parse_path(&seen.path) else {
            return Self::status(404, "NotFound", format!("no route {}", seen.path));
        };
        match (&seen.method, &t.name) {
            (&Method::PATCH, Some(name)) => self.apply(&t, name, seen),
            (&Method::GET, Some(name)) => {
                match self.objects.get(&(
                    t.prefix.clone(),
                    t.plural.clone(),
                    t.namespace.clone(),
                    name.clone(),
                )) {
                    Some(obj) => (200, obj.to_string()),
                    None => Self::status(
                        404,
                        "NotFound",
                        format!("{} \"{name}\" not found", t.plural),
                    ),
                }
            }
            (&Method::GET, None) => self.list(&t, seen),
            (&Method::DELETE, Some(name)) => {
                match self.objects.remove(&(t.prefix.clone(), t.plural.clone(), t.namespace.clone(), name.clone())) {
                    Some(_) => (
                        200,
                        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": {"name": name, "kind": t.plural}}).to_string(),
                    ),
                    None => Self::status(404, "NotFound", format!("{} \"{name}\" not found", t.plural)),
                }
            }
            _ => Self::status(
                405,
                "MethodNotAllowed",
                format!("{} {}", seen.method, seen.path),
            ),
        }
    }

    fn apply(&mut self, t: &Target, name: &str, seen: &Seen) -> (u16, String) {
        assert_eq!(
            seen.content_type,
            "application/apply-patch+yaml",
            "{}",
            seen.line()
        );
        assert_eq!(
            seen.param("fieldManager").as_deref(),
            Some("meshctl"),
            "{}",
            seen.line()
        );
        self.version += 1;
        let key = (
            t.prefix.clone(),
            t.plural.clone(),
            t.namespace.clone(),
            name.to_owned(),
        );
        let created = !self.objects.contains_key(&key);
        let mut obj = seen.body.clone();
        // Keep what others set (mesh-control's caBundle) as server-side apply does.
        if let Some(old) = self.objects.get(&key)
            && let Some(hooks) = old["webhooks"].as_array()
        {
            for (i, hook) in hooks.iter().enumerate() {
                if let Some(b) = hook.pointer("/clientConfig/caBundle") {
                    obj["webhooks"][i]["clientConfig"]["caBundle"] = b.clone();
                }
            }
        }
        obj["metadata"]["resourceVersion"] = json!(self.version.to_string());
        obj["metadata"]["uid"] = json!(format!("00000000-0000-4000-8000-{:012}", self.version));
        obj["metadata"]["generation"] = json!(1);
        match obj["kind"].as_str() {
            Some("CustomResourceDefinition") => {
                obj["status"] = json!({"conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found"},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"}
                ]});
            }
            Some("Deployment") => {
                let replicas = obj
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                obj["status"] = json!({"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas, "conditions": [
                    {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability."},
                    {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "message": "ReplicaSet has successfully progressed."}
                ]});
            }
            Some("MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration") => {
                // mesh-control sets the caBundle as soon as it sees the configuration.
                if let Some(hooks) = obj["webhooks"].as_array_mut() {
                    for hook in hooks {
                        hook["clientConfig"]["caBundle"] =
                            json!("LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==");
                    }
                }
            }
            _ => {}
        }
        self.objects.insert(key, obj.clone());
        (if created { 201 } else { 200 }, obj.to_string())
    }

    fn list(&self, t: &Target, seen: &Seen) -> (u16, String) {
        let labels = seen.param("labelSelector").unwrap_or_default();
        let fields = seen.param("fieldSelector").unwrap_or_default();
        let items: Vec<Value> = self
            .objects
            .iter()
            .filter(|((prefix, plural, ns, _), _)| {
                *prefix == t.prefix
                    && *plural == t.plural
                    && (t.namespace.is_none() || *ns == t.namespace)
            })
            .filter(|(_, obj)| selects(&labels, &obj["metadata"]["labels"]))
            .filter(|((_, _, _, name), _)| {
                fields
                    .strip_prefix("metadata.name=")
                    .is_none_or(|want| want == name)
            })
            .map(|(_, obj)| obj.clone())
            .collect();
        (
            200,
            json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": self.version.to_string()}, "items": items}).to_string(),
        )
    }
}

/// Whether equality-based `selector` (`a=b,c=d`) selects `labels`.
fn selects(selector: &str, labels: &Value) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let (k, v) = term.split_once('=').unwrap_or((term, ""));
        labels.get(k).and_then(Value::as_str) == Some(v)
    })
}

#[test]
fn takes_paths_apart() {
    assert_eq!(
        parse_path("/apis/apps/v1/namespaces/mesh-system/deployments/mesh-control"),
        Some(Target {
            prefix: "/apis/apps/v1".into(),
            plural: "deployments".into(),
            namespace: Some("mesh-system".into()),
            name: Some("mesh-control".into()),
        })
    );
    assert_eq!(
        parse_path("/api/v1/namespaces/mesh-system"),
        Some(Target {
            prefix: "/api/v1".into(),
            plural: "namespaces".into(),
            namespace: None,
            name: Some("mesh-system".into()),
        })
    );
    assert_eq!(
        parse_path("/api/v1/configmaps"),
        Some(Target {
            prefix: "/api/v1".into(),
            plural: "configmaps".into(),
            namespace: None,
            name: None,
        })
    );
    assert!(selects(
        "app.kubernetes.io/part-of=mesh",
        &json!({"app.kubernetes.io/part-of": "mesh"})
    ));
    assert!(!selects("app.kubernetes.io/part-of=mesh", &json!({})));
    assert_eq!(
        decode("app.kubernetes.io%2Fpart-of%3Dmesh"),
        "app.kubernetes.io/part-of=mesh"
    );
}
