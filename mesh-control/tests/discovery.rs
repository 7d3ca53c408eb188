//! The discovery server end to end, in process: `mesh-control` in local mode on port 0, a
//! raw protocol client (the generated tonic client over a TLS HTTP/2 connection, with a
//! certificate from the control plane's CA) playing the proxy, and the debug API read over
//! HTTP. Covers subscriptions, incremental pushes, ACK/NACK bookkeeping as `proxy-status`
//! shows it, reconnection with `initial_resource_versions`, the rule that nothing is
//! pushed before the config sources have loaded, and that the stream requires a client
//! certificate whose identity is the node's.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use mesh_api::model::ResourceKind;
use mesh_api::proto::discovery::v1 as pb;
use mesh_api::status::{ProxyStatusList, SyncState};
use support::{H2, http_get, write};
use tokio::sync::mpsc;

const DEADLINE: Duration = Duration::from_secs(10);

const SERVICE: &str = "
apiVersion: v1
kind: Service
metadata:
  name: reviews
  namespace: default
spec:
  clusterIP: 10.96.0.10
  selector:
    app: reviews
  ports:
  - name: http
    port: 9080
";

fn workload(name: &str, ip: &str) -> String {
    format!(
        "
apiVersion: networking.mesh.dev/v1alpha1
kind: WorkloadEntry
metadata:
  name: {name}
  namespace: default
spec:
  address: {ip}
  labels:
    app: reviews
  serviceAccount: reviews
"
    )
}

const IDENTITY: &str = "spiffe://cluster.local/ns/default/sa/reviews";

struct ControlPlane {
    inner: support::ControlPlane,
    bound: mesh_control::app::Bound,
    _state: tempfile::TempDir,
}

impl ControlPlane {
    async fn start(dir: &Path) -> Self {
        let state = tempfile::tempdir().unwrap();
        let inner = support::ControlPlane::start(dir, state.path(), &[]).await;
        Self {
            bound: inner.bound,
            inner,
            _state: state,
        }
    }

    async fn stop(self) {
        self.inner.stop().await;
    }

    async fn proxies(&self) -> ProxyStatusList {
        let body = http_get(self.bound.debug, "/debug/proxies").await;
        serde_json::from_str(&body).expect("ProxyStatusList JSON")
    }

    /// Waits until the one connected proxy is in `state`.
    async fn wait_sync(&self, state: SyncState) -> ProxyStatusList {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let list = self.proxies().await;
            if list.proxies.len() == 1 && list.proxies[0].sync == state {
                return list;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "proxy not {state:?} in time: {list:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A client over TLS with a certificate for `identity`.
    async fn client(&self, identity: Option<&str>) -> pb::discovery_client::DiscoveryClient<H2> {
        let creds = identity.map(|id| self.inner.credentials(id));
        let h2 = self
            .inner
            .connect(creds.as_ref())
            .await
            .expect("TLS connection");
        let uri: http::Uri = "https://mesh-control".parse().unwrap();
        pb::discovery_client::DiscoveryClient::with_origin(h2, uri)
    }
}

/// A raw protocol client playing one proxy.
struct Proxy {
    tx: mpsc::Sender<pb::DiscoveryRequest>,
    rx: tonic::Streaming<pb::DiscoveryResponse>,
    /// What it holds: kind → name → version.
    held: BTreeMap<String, BTreeMap<String, String>>,
}

fn node() -> pb::Node {
    pb::Node {
        id: "sidecar~10.0.0.1~reviews-1.default".into(),
        pod_name: "reviews-1".into(),
        namespace: "default".into(),
        ip: vec![10, 0, 0, 1],
        identity: IDENTITY.into(),
        labels: Default::default(),
        mode: pb::ProxyMode::Sidecar.into(),
        proxy_version: "test".into(),
    }
}

impl Proxy {
    async fn connect(cp: &ControlPlane, held: BTreeMap<String, BTreeMap<String, String>>) -> Self {
        Self::connect_as(cp, node(), IDENTITY, held).await
    }

    /// Connects as `node`, with a certificate for `identity`.
    async fn connect_as(
        cp: &ControlPlane,
        node: pb::Node,
        identity: &str,
        held: BTreeMap<String, BTreeMap<String, String>>,
    ) -> Self {
        let mut client = cp.client(Some(identity)).await;
        let (tx, rx) = mpsc::channel(32);
        let mut first = true;
        for kind in ResourceKind::ALL {
            let req = pb::DiscoveryRequest {
                node: first.then(|| node.clone()),
                type_url: kind.type_url().into(),
                initial_resource_versions: held
                    .get(kind.type_url())
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
                ..Default::default()
            };
            first = false;
            tx.send(req).await.unwrap();
        }
        let requests = futures_util::stream::unfold(rx, |mut rx: mpsc::Receiver<_>| async move {
            rx.recv().await.map(|r| (r, rx))
        });
        let rx = client
            .stream(requests)
            .await
            .expect("open stream")
            .into_inner();
        Self { tx, rx, held }
    }

    async fn recv(&mut self) -> pb::DiscoveryResponse {
        tokio::time::timeout(DEADLINE, self.rx.message())
            .await
            .expect("a response in time")
            .expect("stream ok")
            .expect("stream open")
    }

    /// Receives one response, applies it to `held`, and ACKs it.
    async fn recv_ack(&mut self) -> pb::DiscoveryResponse {
        let r = self.recv().await;
        let held = self.held.entry(r.type_url.clone()).or_default();
        for res in &r.resources {
            held.insert(res.name.clone(), res.version.clone());
        }
        for name in &r.removed_resources {
            held.remove(name);
        }
        self.answer(&r, None).await;
        r
    }

    async fn answer(&self, r: &pb::DiscoveryResponse, nack: Option<&str>) {
        self.tx
            .send(pb::DiscoveryRequest {
                type_url: r.type_url.clone(),
                response_nonce: r.nonce.clone(),
                error_detail: nack.map(|m| pb::ErrorDetail {
                    code: 3,
                    message: m.into(),
                }),
                ..Default::default()
            })
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_push_ack_nack_and_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "svc.yaml", SERVICE);
    write(dir.path(), "w1.yaml", &workload("reviews-1", "10.0.0.1"));
    let cp = ControlPlane::start(dir.path()).await;

    // Initial sync: one response per kind, in dependency order, each answered.
    let mut proxy = Proxy::connect(&cp, BTreeMap::new()).await;
    let mut kinds = Vec::new();
    for _ in ResourceKind::ALL {
        let r = proxy.recv_ack().await;
        kinds.push(r.type_url.clone());
    }
    let expected: Vec<String> = ResourceKind::ALL
        .iter()
        .map(|k| k.type_url().to_owned())
        .collect();
    assert_eq!(
        kinds, expected,
        "initial responses come in dependency order"
    );
    let services = &proxy.held["mesh.discovery.v1.Service"];
    assert!(
        services.contains_key("reviews.default.svc.cluster.local"),
        "{services:?}"
    );
    assert!(
        proxy.held["mesh.discovery.v1.Workload"].contains_key("default/reviews-1"),
        "the proxy's own workload: {:?}",
        proxy.held
    );
    let list = cp.wait_sync(SyncState::Synced).await;
    let status = &list.proxies[0];
    assert_eq!(status.pod_name, "reviews-1");
    assert_eq!(status.acked_version, list.control_plane.config_version);
    assert_eq!(status.resources["Service"], 1);

    // A new backend: only its endpoint set changes, incrementally.
    write(dir.path(), "w2.yaml", &workload("reviews-2", "10.0.0.2"));
    let r = proxy.recv_ack().await;
    assert_eq!(r.type_url, "mesh.discovery.v1.EndpointSet");
    assert_eq!(r.resources.len(), 1);
    assert!(r.removed_resources.is_empty());
    let eps = match &r.resources[0].body {
        Some(pb::resource::Body::EndpointSet(e)) => e,
        other => panic!("not an endpoint set: {other:?}"),
    };
    assert_eq!(eps.endpoints.len(), 2);
    cp.wait_sync(SyncState::Synced).await;

    // A NACK is recorded with its reason; the proxy shows NACKED.
    write(dir.path(), "w3.yaml", &workload("reviews-3", "10.0.0.3"));
    let r = proxy.recv().await;
    assert_eq!(r.type_url, "mesh.discovery.v1.EndpointSet");
    proxy
        .answer(&r, Some("endpoint set rejected for the test"))
        .await;
    let list = cp.wait_sync(SyncState::Nacked).await;
    let nack = list.proxies[0].last_nack.as_ref().expect("a NACK");
    assert_eq!(nack.message, "endpoint set rejected for the test");
    assert_eq!(nack.type_url, "mesh.discovery.v1.EndpointSet");

    // The next change re-sends what was refused, and an ACK clears the NACK.
    write(dir.path(), "w4.yaml", &workload("reviews-4", "10.0.0.4"));
    let r = proxy.recv_ack().await;
    let eps = match &r.resources[0].body {
        Some(pb::resource::Body::EndpointSet(e)) => e,
        other => panic!("not an endpoint set: {other:?}"),
    };
    assert_eq!(
        eps.endpoints.len(),
        4,
        "both the refused and the new backend"
    );
    cp.wait_sync(SyncState::Synced).await;

    // A broken file is rejected: nothing is pushed, the proxy stays SYNCED, and the
    // registry names the file and line.
    write(
        dir.path(),
        "broken.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  ports: [{port: 99999}]\n",
    );
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let registry = loop {
        let body = http_get(cp.bound.debug, "/debug/registry").await;
        let r: mesh_api::status::RegistryStatus = serde_json::from_str(&body).unwrap();
        if !r.rejected.is_empty() {
            break r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not rejected: {r:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        registry
            .rejected
            .iter()
            .any(|l| l.contains("broken.yaml:6")),
        "the rejection names file and line: {:#?}",
        registry.rejected
    );
    assert_eq!(cp.proxies().await.proxies[0].sync, SyncState::Synced);
    std::fs::remove_file(dir.path().join("broken.yaml")).unwrap();

    // Reconnect holding everything: each subscription is answered, with nothing in it.
    let held = std::mem::take(&mut proxy.held);
    drop(proxy);
    let mut proxy = Proxy::connect(&cp, held.clone()).await;
    for _ in ResourceKind::ALL {
        let r = proxy.recv_ack().await;
        assert!(
            r.resources.is_empty() && r.removed_resources.is_empty(),
            "an unchanged proxy is sent nothing: {r:?}"
        );
    }
    // Reconnect holding a stale and an unknown resource: exactly those are fixed.
    drop(proxy);
    let mut stale = held.clone();
    let eps = stale.get_mut("mesh.discovery.v1.EndpointSet").unwrap();
    for v in eps.values_mut() {
        *v = "stale".into();
    }
    stale
        .get_mut("mesh.discovery.v1.Service")
        .unwrap()
        .insert("gone.default.svc.cluster.local".into(), "1".into());
    let mut proxy = Proxy::connect(&cp, stale).await;
    let mut changed = BTreeMap::new();
    for _ in ResourceKind::ALL {
        let r = proxy.recv_ack().await;
        changed.insert(
            r.type_url.clone(),
            (r.resources.len(), r.removed_resources.clone()),
        );
    }
    assert_eq!(changed["mesh.discovery.v1.EndpointSet"].0, 1);
    assert_eq!(
        changed["mesh.discovery.v1.Service"],
        (0, vec!["gone.default.svc.cluster.local".to_owned()])
    );
    assert_eq!(proxy.held, held);
    drop(proxy);
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_pushed_before_the_sources_load() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "svc.yaml", SERVICE);
    write(dir.path(), "broken.yaml", "kind: [unterminated\n");
    let cp = ControlPlane::start(dir.path()).await;

    let mut proxy = Proxy::connect(&cp, BTreeMap::new()).await;
    // Connected, subscribed, and waiting: not synced, nothing sent.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let list = cp.proxies().await;
        if list.proxies.len() == 1 {
            assert!(!list.control_plane.synced);
            assert_eq!(list.proxies[0].sent_version, "");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "proxy not listed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ready = http_get(cp.bound.debug, "/healthz/ready").await;
    assert!(ready.contains("not ready"), "{ready}");

    // Fixing the file syncs the control plane and answers the subscriptions.
    std::fs::remove_file(dir.path().join("broken.yaml")).unwrap();
    for _ in ResourceKind::ALL {
        proxy.recv_ack().await;
    }
    assert!(
        proxy.held["mesh.discovery.v1.Service"].contains_key("reviews.default.svc.cluster.local")
    );
    cp.wait_sync(SyncState::Synced).await;
    drop(proxy);
    cp.stop().await;
}

/// Opens a stream with a node claiming `IDENTITY`; the status the server answers with.
async fn open_stream_status(
    client: &mut pb::discovery_client::DiscoveryClient<H2>,
) -> tonic::Status {
    let first = pb::DiscoveryRequest {
        node: Some(node()),
        type_url: ResourceKind::ALL[0].type_url().into(),
        ..Default::default()
    };
    let requests = futures_util::StreamExt::chain(
        futures_util::stream::iter([first]),
        futures_util::stream::pending(),
    );
    match client.stream(requests).await {
        Err(status) => status,
        Ok(response) => {
            let mut rx = response.into_inner();
            match tokio::time::timeout(DEADLINE, rx.message()).await {
                Ok(Err(status)) => status,
                other => panic!("the stream was not refused: {other:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_requires_a_certificate_of_the_nodes_identity() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "svc.yaml", SERVICE);
    let cp = ControlPlane::start(dir.path()).await;

    // No certificate: refused before anything is read.
    let mut anonymous = cp.client(None).await;
    let status = open_stream_status(&mut anonymous).await;
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert!(
        status
            .message()
            .contains("a proxy must obtain a certificate with Certify first"),
        "{status:?}"
    );

    // A certificate of another identity than the node claims.
    let mut other = cp
        .client(Some("spiffe://cluster.local/ns/default/sa/ratings"))
        .await;
    let status = open_stream_status(&mut other).await;
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains(IDENTITY)
            && status
                .message()
                .contains("spiffe://cluster.local/ns/default/sa/ratings"),
        "names both identities: {status:?}"
    );
    assert!(cp.proxies().await.proxies.is_empty());
    cp.stop().await;
}

/// A Gateway selecting the ingress gateway, and a VirtualService bound to it.
const GATEWAY: &str = "
apiVersion: networking.mesh.dev/v1alpha1
kind: Gateway
metadata:
  name: public
  namespace: default
spec:
  selector:
    mesh: ingressgateway
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [\"*.example.com\"]
---
apiVersion: networking.mesh.dev/v1alpha1
kind: VirtualService
metadata:
  name: shop
  namespace: default
spec:
  hosts: [shop.example.com]
  gateways: [public]
  http:
  - route:
    - destination: {host: reviews}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_proxy_receives_the_listeners_of_the_gateways_selecting_it() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "svc.yaml", SERVICE);
    write(dir.path(), "w1.yaml", &workload("reviews-1", "10.0.0.1"));
    write(dir.path(), "gateway.yaml", GATEWAY);
    let cp = ControlPlane::start(dir.path()).await;

    let identity = "spiffe://cluster.local/ns/default/sa/ingress";
    let gateway = pb::Node {
        id: "router~10.0.0.9~ingress-1.default".into(),
        pod_name: "ingress-1".into(),
        ip: vec![10, 0, 0, 9],
        identity: identity.into(),
        labels: [("mesh".to_owned(), "ingressgateway".to_owned())].into(),
        mode: pb::ProxyMode::Gateway.into(),
        ..node()
    };
    let mut proxy = Proxy::connect_as(&cp, gateway, identity, BTreeMap::new()).await;
    let mut listener = None;
    for _ in ResourceKind::ALL {
        let r = proxy.recv_ack().await;
        if r.type_url == ResourceKind::Listener.type_url() {
            listener = r.resources.into_iter().next();
        }
    }
    let listener = listener.expect("a listener resource");
    assert_eq!(listener.name, "http.80");
    let Some(pb::resource::Body::Listener(l)) = listener.body else {
        panic!("not a listener: {listener:?}");
    };
    assert_eq!(l.port, 80);
    assert_eq!(l.virtual_hosts.len(), 1, "{l:?}");
    assert_eq!(l.virtual_hosts[0].hostnames, ["shop.example.com"]);
    assert!(
        proxy.held["mesh.discovery.v1.RouteTable"].is_empty(),
        "a gateway gets no sidecar route tables: {:?}",
        proxy.held
    );

    // The same config gives a sidecar no listener and no route for the gateway's host.
    let mut sidecar = Proxy::connect(&cp, BTreeMap::new()).await;
    for _ in ResourceKind::ALL {
        let r = sidecar.recv_ack().await;
        if r.type_url == ResourceKind::Listener.type_url() {
            assert!(r.resources.is_empty(), "{r:?}");
        }
    }
    assert!(sidecar.held["mesh.discovery.v1.RouteTable"].is_empty());
    cp.stop().await;
}
