//! The discovery client end to end, in-process: a proxy started with `--control-plane`
//! against a scripted [`TestControlPlane`] (the generated discovery server over hyper), a
//! plain HTTP backend behind it, everything on the test's own loopback network.
//!
//! Covered: the first config is applied and the proxy becomes ready and routes; invalid
//! updates are NACKed with a message naming the resource while the proxy keeps routing on
//! its last good config; a restarted control plane gets the versions the proxy holds and
//! needs to send nothing; a control plane that is absent at start is retried until it
//! appears; the command line takes exactly one config source.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use clap::Parser;
use mesh_api::model::*;
use mesh_api::proto::discovery::v1 as pb;
use mesh_proxy::app::Args;
use mesh_proxy::discovery;
use support::control_plane::{TestControlPlane, WAIT};
use support::*;

/// The proxy's own workload on test network `net`.
fn me(net: u8) -> Workload {
    workload("productpage", ip(net, 1), "productpage", "v1", true)
}

/// The backend's workload: plain HTTP (no proxy in front) on `ip(net, 2):8080`.
fn backend_workload(net: u8) -> Workload {
    workload("reviews-v1", ip(net, 2), "reviews", "v1", false)
}

fn cluster_key() -> ClusterKey {
    ClusterKey::new(HOST, 9080)
}

/// A route table for reviews:9080 forwarding to the reviews cluster with `weight`.
fn forward_route(weight: u32) -> RouteTable {
    route_table(
        9080,
        vec![catch_all(
            "all",
            HttpAction::Forward(forward(vec![(cluster_key(), weight)])),
        )],
    )
}

/// A route table for reviews:9080 answering `status` itself.
fn direct_route(status: u16, body: &str) -> RouteTable {
    route_table(
        9080,
        vec![catch_all(
            "direct",
            HttpAction::DirectResponse(DirectResponse {
                status,
                body: Some(body.into()),
            }),
        )],
    )
}

/// One resource of every kind, version "1", by kind.
fn resources(net: u8) -> Vec<(ResourceKind, Resource)> {
    vec![
        (ResourceKind::Workload, Resource::Workload(me(net))),
        (
            ResourceKind::InboundPolicy,
            Resource::InboundPolicy(InboundPolicy::default()),
        ),
        (
            ResourceKind::AuthorizationPolicy,
            Resource::AuthorizationPolicy(AuthorizationPolicy {
                name: "audit-all".into(),
                namespace: "default".into(),
                action: AuthzAction::Audit,
                rules: Vec::new(),
            }),
        ),
        (
            ResourceKind::Service,
            Resource::Service(service(9080, 8080, AppProtocol::Http)),
        ),
        (
            ResourceKind::EndpointSet,
            Resource::EndpointSet(endpoints(vec![backend_workload(net)])),
        ),
        (
            ResourceKind::Cluster,
            Resource::Cluster(mesh_proxy::state::default_cluster(cluster_key())),
        ),
        (
            ResourceKind::RouteTable,
            Resource::RouteTable(forward_route(1)),
        ),
    ]
}

/// A control plane on `ip(net, 9)` holding [`resources`].
async fn control_plane(net: u8) -> TestControlPlane {
    control_plane_at(net, SocketAddr::new(ip(net, 9), 0)).await
}

async fn control_plane_at(net: u8, addr: SocketAddr) -> TestControlPlane {
    let initial = resources(net).into_iter().map(|(_, r)| (r, "1")).collect();
    TestControlPlane::start(addr, initial).await
}

/// A proxy for workload `me(net)` taking its config from `control_plane`, with an explicit
/// upstream listener for reviews:9080.
async fn proxy_for(net: u8, control_plane: SocketAddr) -> TestProxy {
    let unused = ProxyConfigSpec::new(identity("productpage"));
    proxy_with(ip(net, 1), &unused, &[(HOST, 9080)], |args| {
        args.config = None;
        args.discovery = discovery::Args {
            control_plane: Some(control_plane.to_string().parse().unwrap()),
            pod_name: Some("productpage".into()),
            pod_ip: Some(ip(net, 1)),
            service_account: "productpage".into(),
            labels: vec![("app".into(), "productpage".into())],
            ..Default::default()
        };
    })
    .await
}

/// GET `path` on `addr` (status, body).
async fn fetch(addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, body, _) = get(&http1_client(), addr, path, &[]).await;
    (status.as_u16(), body)
}

/// Polls `f` until it returns `Some` (at most [`WAIT`]); panics with `what` and the last
/// value seen.
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let last = match f().await {
            Ok(v) => return v,
            Err(last) => last,
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {WAIT:?}; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_ready(proxy: &TestProxy) {
    let health = proxy.bound.health;
    eventually("the proxy is ready", || async move {
        match fetch(health, "/healthz/ready").await {
            (200, _) => Ok(()),
            (status, body) => Err(format!("{status} {body}")),
        }
    })
    .await;
}

/// The value of the one sample of `name` whose labels include `labels` (`k="v"` pieces).
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let mut found = metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            (n == name && labels.iter().all(|want| rest.contains(want)))
                .then(|| value.parse().ok())?
        });
    let first = found.next();
    assert!(found.next().is_none(), "{name} {labels:?} is ambiguous");
    first
}

async fn metric(proxy: &TestProxy, name: &str, labels: &[&str]) -> Option<f64> {
    let (status, body) = fetch(proxy.bound.metrics, "/metrics").await;
    assert_eq!(status, 200);
    sample(&body, name, labels)
}

async fn wait_metric(proxy: &TestProxy, name: &str, labels: &[&str], want: f64) {
    eventually(&format!("{name}{labels:?} = {want}"), || async move {
        match metric(proxy, name, labels).await {
            Some(v) if v == want => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

async fn config_dump(proxy: &TestProxy) -> serde_json::Value {
    let (status, body) = fetch(proxy.bound.admin, "/config_dump").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// A response of `kind` adding `resources` (each with `version`).
fn response(kind: ResourceKind, resources: &[Resource], version: &str) -> pb::DiscoveryResponse {
    pb::DiscoveryResponse {
        type_url: kind.type_url().into(),
        system_version: format!("test-{version}"),
        nonce: String::new(),
        resources: resources
            .iter()
            .map(|r| pb::Resource::new(r, version))
            .collect(),
        removed_resources: Vec::new(),
    }
}

/// Waits for the answer to `nonce` and checks it is an ACK.
async fn expect_ack(cp: &TestControlPlane, nonce: &str) {
    let answer = cp.answer(nonce).await;
    assert_eq!(answer.error_detail, None, "{nonce} was NACKed: {answer:?}");
}

/// Waits for the answer to `nonce` and checks it is a NACK; returns its message.
async fn expect_nack(cp: &TestControlPlane, nonce: &str) -> String {
    let answer = cp.answer(nonce).await;
    let detail = answer
        .error_detail
        .unwrap_or_else(|| panic!("{nonce} was ACKed, expected a NACK"));
    assert_eq!(detail.code, 3, "{detail:?}");
    detail.message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_config_is_applied_and_the_proxy_becomes_ready() {
    let net = 61;
    let _be = backend(SocketAddr::new(ip(net, 2), 8080), "v1", Behavior::default()).await;
    let cp = control_plane(net).await;
    let proxy = proxy_for(net, cp.addr).await;

    wait_ready(&proxy).await;
    let (status, body) = fetch(proxy.upstream(), "/hello").await;
    assert_eq!((status, body.as_str()), (200, "v1 /hello clean"));

    // One stream, one subscription per kind in dependency order; the first carries the node.
    let subscriptions = cp
        .wait_for("a subscription per kind", |l| {
            let s = l.subscriptions_of(0);
            (s.len() == ResourceKind::ALL.len()).then(|| s.into_iter().cloned().collect::<Vec<_>>())
        })
        .await;
    let urls: Vec<&str> = subscriptions.iter().map(|r| r.type_url.as_str()).collect();
    let want: Vec<&str> = ResourceKind::ALL.iter().map(|k| k.type_url()).collect();
    assert_eq!(urls, want);
    let node = subscriptions[0]
        .node
        .clone()
        .expect("the first request carries the node");
    assert_eq!(
        node.id,
        format!("sidecar~{}~productpage.default", ip(net, 1))
    );
    assert_eq!(node.pod_name, "productpage");
    assert_eq!(node.namespace, "default");
    assert_eq!(node.ip, vec![127, net, 0, 1]);
    assert_eq!(
        node.identity,
        "spiffe://cluster.local/ns/default/sa/productpage"
    );
    assert_eq!(
        node.labels,
        BTreeMap::from([("app".into(), "productpage".into())])
    );
    assert_eq!(node.mode, pb::ProxyMode::Sidecar as i32);
    assert_eq!(node.proxy_version, env!("CARGO_PKG_VERSION"));
    for s in &subscriptions[1..] {
        assert_eq!(s.node, None, "only the first request carries the node");
        assert!(s.initial_resource_versions.is_empty());
    }

    // Every response was ACKed.
    let nonces: Vec<String> = cp.log(|l| l.sent_on(0).iter().map(|r| r.nonce.clone()).collect());
    assert_eq!(nonces.len(), ResourceKind::ALL.len());
    for nonce in &nonces {
        expect_ack(&cp, nonce).await;
    }

    assert_eq!(metric(&proxy, "mesh_proxy_ready", &[]).await, Some(1.0));
    assert_eq!(
        metric(&proxy, "mesh_proxy_control_plane_connected", &[]).await,
        Some(1.0)
    );
    assert_eq!(
        metric(
            &proxy,
            "mesh_proxy_config_updates_total",
            &[r#"result="ack""#]
        )
        .await,
        Some(ResourceKind::ALL.len() as f64),
        "one ACK per kind"
    );
    assert_eq!(
        metric(
            &proxy,
            "mesh_proxy_config_updates_total",
            &[r#"result="nack""#]
        )
        .await,
        Some(0.0)
    );
    let at = metric(
        &proxy,
        "mesh_proxy_config_last_update_timestamp_seconds",
        &[],
    )
    .await
    .unwrap();
    assert!(at > 1.6e9, "{at}");

    let dump = config_dump(&proxy).await;
    assert_eq!(
        dump["control_plane"]["address"],
        cp.addr.to_string(),
        "{dump}"
    );
    assert_eq!(dump["control_plane"]["connected"], true, "{dump}");
    assert_eq!(
        dump["config"]["identity"],
        "spiffe://cluster.local/ns/default/sa/productpage"
    );
    assert_eq!(
        dump["config"]["routes"][0]["name"], "reviews:9080",
        "{dump}"
    );
    assert!(
        dump["version"].as_str().unwrap().starts_with("cp-"),
        "{dump}"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_updates_are_nacked_and_the_last_good_config_stays() {
    let net = 62;
    let _be = backend(SocketAddr::new(ip(net, 2), 8080), "v1", Behavior::default()).await;
    let cp = control_plane(net).await;
    let proxy = proxy_for(net, cp.addr).await;
    wait_ready(&proxy).await;
    let before = config_dump(&proxy).await["version"].clone();

    // A route table whose backend weights are all zero.
    let zero = Resource::RouteTable(forward_route(0));
    let nonce = cp
        .push(response(ResourceKind::RouteTable, &[zero], "2"))
        .await;
    let message = expect_nack(&cp, &nonce).await;
    assert!(
        message.contains(r#"route table "reviews:9080""#)
            && message.contains("weights must not all be zero"),
        "{message}"
    );
    let (status, body) = fetch(proxy.upstream(), "/still").await;
    assert_eq!((status, body.as_str()), (200, "v1 /still clean"));

    // A resource whose name does not match its body.
    let mut misnamed = response(
        ResourceKind::RouteTable,
        &[Resource::RouteTable(direct_route(503, "wrong"))],
        "3",
    );
    misnamed.resources[0].name = "not-reviews".into();
    let nonce = cp.push(misnamed).await;
    let message = expect_nack(&cp, &nonce).await;
    assert!(
        message.contains(r#""not-reviews""#) && message.contains(r#""reviews:9080""#),
        "{message}"
    );

    // A body of another kind than the response's.
    let mut mixed = response(
        ResourceKind::Cluster,
        &[Resource::RouteTable(direct_route(503, "wrong"))],
        "4",
    );
    mixed.system_version = "mixed".into();
    let nonce = cp.push(mixed).await;
    let message = expect_nack(&cp, &nonce).await;
    assert!(
        message.contains("reviews:9080") && message.contains("cluster"),
        "{message}"
    );

    // An unknown kind.
    let unknown = pb::DiscoveryResponse {
        type_url: "mesh.discovery.v1.Nope".into(),
        ..Default::default()
    };
    let nonce = cp.push(unknown).await;
    let message = expect_nack(&cp, &nonce).await;
    assert!(message.contains("mesh.discovery.v1.Nope"), "{message}");

    // Nothing of it was applied.
    let (status, body) = fetch(proxy.upstream(), "/still").await;
    assert_eq!((status, body.as_str()), (200, "v1 /still clean"));
    let dump = config_dump(&proxy).await;
    assert_eq!(dump["version"], before, "{dump}");
    assert!(
        dump["control_plane"]["last_nack"]
            .as_str()
            .is_some_and(|m| m.contains("Nope")),
        "{dump}"
    );
    assert_eq!(
        metric(
            &proxy,
            "mesh_proxy_config_updates_total",
            &[r#"result="nack""#]
        )
        .await,
        Some(4.0)
    );
    assert_eq!(metric(&proxy, "mesh_proxy_ready", &[]).await, Some(1.0));

    // The stream goes on: a valid update is applied.
    let teapot = Resource::RouteTable(direct_route(418, "teapot"));
    let nonce = cp
        .push(response(ResourceKind::RouteTable, &[teapot], "5"))
        .await;
    expect_ack(&cp, &nonce).await;
    assert_eq!(fetch(proxy.upstream(), "/").await, (418, "teapot".into()));
    assert_eq!(config_dump(&proxy).await["version"], "test-5");
    assert_eq!(
        metric(
            &proxy,
            "mesh_proxy_config_updates_total",
            &[r#"result="ack""#]
        )
        .await,
        Some(ResourceKind::ALL.len() as f64 + 1.0),
        "one ACK per kind and one for the update"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_control_plane_gets_the_versions_the_proxy_holds() {
    let net = 63;
    let _be = backend(SocketAddr::new(ip(net, 2), 8080), "v1", Behavior::default()).await;
    let mut cp = control_plane(net).await;
    let proxy = proxy_for(net, cp.addr).await;
    wait_ready(&proxy).await;
    cp.wait_for("every first response answered", |l| {
        let sent = l.sent_on(0);
        (sent.len() == ResourceKind::ALL.len() && sent.iter().all(|r| l.answer(&r.nonce).is_some()))
            .then_some(())
    })
    .await;

    cp.kill();
    wait_metric(&proxy, "mesh_proxy_control_plane_connected", &[], 0.0).await;
    // Still ready, still routing on the last good config.
    assert_eq!(fetch(proxy.bound.health, "/healthz/ready").await.0, 200);
    assert_eq!(
        fetch(proxy.upstream(), "/").await,
        (200, "v1 / clean".into())
    );

    cp.restart().await;
    let subscriptions = cp
        .wait_for("a subscription per kind on a second stream", |l| {
            let s = l.subscriptions_of(1);
            (s.len() == ResourceKind::ALL.len()).then(|| s.into_iter().cloned().collect::<Vec<_>>())
        })
        .await;
    assert!(
        subscriptions[0].node.is_some(),
        "a new stream starts with the node"
    );
    let held = resources(net);
    for (sub, kind) in subscriptions.iter().zip(ResourceKind::ALL) {
        assert_eq!(sub.type_url, kind.type_url());
        // One resource of each kind a sidecar gets (none of the gateway's listeners).
        let want: BTreeMap<String, String> = held
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, r)| (r.name().into_owned(), "1".to_owned()))
            .collect();
        assert_eq!(sub.initial_resource_versions, want, "{kind}");
    }
    // The fake answers each subscription as it arrives: nothing changed, so nothing was
    // sent but the (empty) answer to the one subscription listing nothing, the listeners
    // a sidecar never holds.
    cp.log(|l| {
        let sent = l.sent_on(1);
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(sent[0].type_url, ResourceKind::Listener.type_url());
        assert!(sent[0].resources.is_empty() && sent[0].removed_resources.is_empty());
    });
    wait_metric(&proxy, "mesh_proxy_control_plane_connected", &[], 1.0).await;

    // The new stream carries updates.
    let teapot = Resource::RouteTable(direct_route(418, "teapot"));
    let nonce = cp
        .push(response(ResourceKind::RouteTable, &[teapot], "2"))
        .await;
    expect_ack(&cp, &nonce).await;
    assert_eq!(fetch(proxy.upstream(), "/").await, (418, "teapot".into()));
    assert_eq!(fetch(proxy.bound.health, "/healthz/ready").await.0, 200);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_waits_for_an_absent_control_plane_and_is_ready_once_it_appears() {
    let net = 64;
    let _be = backend(SocketAddr::new(ip(net, 2), 8080), "v1", Behavior::default()).await;
    // Something that accepts connections and closes them at once stands in for a control
    // plane that is not up yet, and counts the proxy's attempts.
    let hole = tokio::net::TcpListener::bind(SocketAddr::new(ip(net, 9), 0))
        .await
        .unwrap();
    let addr = hole.local_addr().unwrap();
    let attempts = Arc::new(AtomicU32::new(0));
    let counted = attempts.clone();
    let hole = tokio::spawn(async move {
        while let Ok((conn, _)) = hole.accept().await {
            counted.fetch_add(1, Ordering::Relaxed);
            drop(conn);
        }
    });
    let proxy = proxy_for(net, addr).await;

    let attempts_seen = attempts.clone();
    eventually("two connection attempts", || {
        let n = attempts_seen.load(Ordering::Relaxed);
        async move { if n >= 2 { Ok(()) } else { Err(format!("{n}")) } }
    })
    .await;
    let (status, body) = fetch(proxy.bound.health, "/healthz/ready").await;
    assert_eq!(status, 503);
    assert_eq!(body.trim(), format!("waiting for config from {addr}"));
    assert_eq!(
        metric(&proxy, "mesh_proxy_control_plane_connected", &[]).await,
        Some(0.0)
    );
    assert_eq!(metric(&proxy, "mesh_proxy_ready", &[]).await, Some(0.0));
    let dump = config_dump(&proxy).await;
    assert!(dump["config"].is_null(), "{dump}");
    assert_eq!(dump["control_plane"]["connected"], false, "{dump}");
    assert!(dump["control_plane"]["last_error"].is_string(), "{dump}");
    // Listeners are up meanwhile: a request gets an answer from the proxy, not a refusal.
    let (status, _) = fetch(proxy.upstream(), "/").await;
    assert_ne!(status, 200);

    hole.abort();
    let _ = hole.await;
    let _cp = control_plane_at(net, addr).await;
    wait_ready(&proxy).await;
    assert_eq!(
        fetch(proxy.upstream(), "/").await,
        (200, "v1 / clean".into())
    );
    proxy.stop().await;
}

/// A TCP relay that can freeze the connections it carries: bytes stop flowing both ways
/// but the sockets stay open, as when the control plane's host drops off the network
/// without a FIN or RST. Connections accepted after a freeze flow normally.
struct Relay {
    addr: SocketAddr,
    epoch: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relay {
    async fn start(listen: SocketAddr, upstream: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (epoch, _) = tokio::sync::watch::channel(0u64);
        let epochs = epoch.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut down, _)) = listener.accept().await {
                let mut epoch = epochs.subscribe();
                let born = *epoch.borrow_and_update();
                conns.spawn(async move {
                    let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => return,
                        _ = epoch.wait_for(|e| *e != born) => {}
                    }
                    // Frozen: hold both sockets open, move nothing.
                    std::future::pending::<()>().await;
                    drop((down, up));
                });
            }
        });
        Self { addr, epoch, task }
    }

    /// Freezes every connection open now.
    fn freeze(&self) {
        self.epoch.send_modify(|e| *e += 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_gone_silent_is_noticed_by_keepalive_and_reconnected() {
    let net = 65;
    let _be = backend(SocketAddr::new(ip(net, 2), 8080), "v1", Behavior::default()).await;
    let cp = control_plane(net).await;
    let relay = Relay::start(SocketAddr::new(ip(net, 8), 0), cp.addr).await;
    let proxy = proxy_for(net, relay.addr).await;
    wait_ready(&proxy).await;
    assert_eq!(cp.log(|l| l.streams), 1);

    relay.freeze();
    // HTTP/2 PINGs every 5 s with a 5 s timeout: the dead stream is noticed in about 10 s
    // and a new one opened (through the relay, whose new connections flow). The bound is
    // generous for a loaded machine; it is a liveness bound, not a latency assertion.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while cp.log(|l| l.subscriptions_of(1).len()) < ResourceKind::ALL.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new stream within 40s of the control plane going silent"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cp.log(|l| {
        for sub in l.subscriptions_of(1) {
            // One resource of each kind a sidecar gets; no gateway listeners.
            let held = usize::from(sub.type_url != ResourceKind::Listener.type_url());
            assert_eq!(sub.initial_resource_versions.len(), held, "{sub:?}");
        }
    });
    wait_metric(&proxy, "mesh_proxy_control_plane_connected", &[], 1.0).await;
    assert_eq!(fetch(proxy.bound.health, "/healthz/ready").await.0, 200);
    assert_eq!(
        fetch(proxy.upstream(), "/").await,
        (200, "v1 / clean".into())
    );
    proxy.stop().await;
}

/// A proxy started while the control plane (and so its CA) is unreachable: it is not
/// ready, says what it waits for, and its mesh port completes no handshake, not even with a
/// client holding a valid mesh certificate: it has no certificate to serve with, and it
/// never falls back to plaintext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_ca_a_new_proxy_is_not_ready_and_serves_nothing() {
    let net = 66;
    let gone = {
        let l = tokio::net::TcpListener::bind(SocketAddr::new(ip(net, 9), 0))
            .await
            .unwrap();
        l.local_addr().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle.pem");
    std::fs::write(&bundle, pki::ca().root_pem()).unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "a-token\n").unwrap();
    let unused = ProxyConfigSpec::new(identity("productpage"));
    let proxy = proxy_with(ip(net, 1), &unused, &[(HOST, 9080)], |args| {
        args.config = None;
        args.identity = mesh_proxy::identity::Args {
            ca_bundle: Some(bundle.clone()),
            token_file: Some(token.clone()),
            ..Default::default()
        };
        args.discovery = discovery::Args {
            control_plane: Some(gone.to_string().parse().unwrap()),
            pod_name: Some("productpage".into()),
            pod_ip: Some(ip(net, 1)),
            service_account: "productpage".into(),
            ..Default::default()
        };
    })
    .await;
    // Give it time to try (and fail) a few times.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, body) = fetch(proxy.bound.health, "/healthz/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains(&format!("waiting for a certificate from {gone}")),
        "{body}"
    );
    let failed = metric(
        &proxy,
        "mesh_proxy_certificate_renewals_total",
        &["result=\"failure\""],
    )
    .await;
    assert!(failed.is_some_and(|n| n >= 1.0), "{failed:?}");
    // A peer with a valid certificate of the same CA gets no handshake.
    let peer_dir = dir.path().join("peer");
    pki::ca().issue_into(&identity("ratings"), &peer_dir);
    let files = mesh_api::tls::FileIdentity::read(&peer_dir).unwrap();
    let certs = mesh_api::tls::CertStore::new();
    certs.store(mesh_api::tls::certified_key(files.chain, files.key).unwrap());
    let client = mesh_api::tls::client_config(
        Some(Arc::new(certs)),
        Arc::new(mesh_api::tls::ServerVerifier::new(
            Arc::new(mesh_api::tls::TrustStore::new(files.bundle)),
            mesh_api::tls::Expected::Exactly(identity("productpage")),
        )),
        &[mesh_api::tls::ALPN_H2],
    );
    let tcp =
        tokio::net::TcpStream::connect(proxy.bound.inbound.expect("a sidecar binds the mesh port"))
            .await
            .unwrap();
    let handshake = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(
            rustls::pki_types::ServerName::try_from("productpage").unwrap(),
            tcp,
        )
        .await;
    assert!(
        handshake.is_err(),
        "the mesh port completed a handshake without a certificate"
    );
    // And plaintext gets no HTTP answer either.
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp =
        tokio::net::TcpStream::connect(proxy.bound.inbound.expect("a sidecar binds the mesh port"))
            .await
            .unwrap();
    let _ = tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out)).await;
    assert!(
        !String::from_utf8_lossy(&out).contains("HTTP/"),
        "plaintext got an HTTP answer: {out:?}"
    );
    proxy.stop().await;
}

/// `mesh-proxy run` arguments parsed as the CLI would.
#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    args: Args,
}

fn parse(argv: &[&str]) -> Result<Args, String> {
    let argv = std::iter::once("mesh-proxy").chain(argv.iter().copied());
    Cli::try_parse_from(argv)
        .map(|c| c.args)
        .map_err(|e| e.to_string())
}

#[test]
fn the_command_line_takes_exactly_one_config_source() {
    let both = parse(&[
        "--config",
        "p.yaml",
        "--control-plane",
        "cp:15012",
        "--pod-name",
        "p",
    ])
    .unwrap_err();
    assert!(
        both.contains("--config") && both.contains("--control-plane"),
        "{both}"
    );
    let neither = parse(&[]).unwrap_err();
    assert!(
        neither.contains("--config") && neither.contains("--control-plane"),
        "{neither}"
    );
    let nameless = parse(&["--control-plane", "cp:15012"]).unwrap_err();
    assert!(nameless.contains("--pod-name"), "{nameless}");

    let args = parse(&[
        "--control-plane",
        "mesh-control.mesh-system.svc:15012",
        "--pod-name",
        "reviews-v1-abc",
        "--pod-ip",
        "10.1.2.3",
        "--label",
        "app=reviews",
        "--label",
        "version=v1",
    ])
    .unwrap();
    assert_eq!(args.config, None);
    let node = args.discovery.node().unwrap();
    assert_eq!(node.id, "sidecar~10.1.2.3~reviews-v1-abc.default");
    assert_eq!(
        node.identity.as_str(),
        "spiffe://cluster.local/ns/default/sa/default"
    );
    assert_eq!(node.labels.len(), 2);
    assert_eq!(node.proxy_version, env!("CARGO_PKG_VERSION"));
    let cp = args.discovery.control_plane.unwrap();
    assert_eq!(
        (cp.host(), cp.port()),
        ("mesh-control.mesh-system.svc", 15012)
    );

    let file = parse(&["--config", "p.yaml"]).unwrap();
    assert_eq!(file.config.as_deref(), Some(std::path::Path::new("p.yaml")));
    assert_eq!(file.discovery.control_plane, None);
}
