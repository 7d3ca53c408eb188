//! In-process tests of `mesh-proxy gateway`: an ingress gateway with a static config routes
//! by host to a backend behind a sidecar over mutual TLS, answers 404 for hosts it does not
//! serve, and reports `reporter="source"` metrics. Loopback network `127.97.0.0/16`.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use mesh_api::model::*;
use support::*;

const NET: u8 = 97;

/// GET `/` through the gateway listener `addr` with `Host: host`.
async fn get_host(addr: SocketAddr, host: &str) -> (StatusCode, String, http::HeaderMap) {
    let req = Request::builder()
        .uri(format!("http://{addr}/"))
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(10), http1_client().request(req))
        .await
        .expect("request within 10s")
        .expect("request succeeds at the HTTP level");
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned(), headers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_routes_by_host_to_a_sidecar_over_mtls_and_404s_unknown_hosts() {
    let server = workload("reviews-v1", ip(NET, 2), "reviews", "v1", true);
    let services = vec![service(9080, 8080, AppProtocol::Http)];
    let eps = vec![endpoints(vec![server.clone()])];
    let backend = backend(SocketAddr::new(ip(NET, 2), 8080), "v1", Behavior::default()).await;
    let server_proxy = proxy(
        server.address,
        &spec(
            server.clone(),
            services.clone(),
            eps.clone(),
            Vec::new(),
            Vec::new(),
        ),
        &[],
    )
    .await;

    let me = workload("ingress-1", ip(NET, 1), "mesh-ingressgateway", "v1", true);
    let mut gw = spec(me.clone(), services, eps, Vec::new(), Vec::new());
    gw.mode = ProxyMode::Gateway;
    gw.listeners = vec![Listener {
        name: Listener::name_for(80),
        port: 80,
        bind_port: Some(8080),
        virtual_hosts: vec![RouteTable {
            name: "shop/shop:80".into(),
            hostnames: vec!["shop.example.com".into()],
            port: 80,
            http: vec![catch_all(
                "shop",
                HttpAction::Forward(forward(vec![(ClusterKey::new(HOST, 9080), 1)])),
            )],
            tcp: Vec::new(),
        }],
    }];
    let gateway = gateway_proxy(me.address, &gw, &[80]).await;
    let (port, listen) = gateway.bound.gateway[0];
    assert_eq!(port, 80);

    // Host matching ignores case and the port.
    for host in ["shop.example.com", "SHOP.Example.com:80"] {
        let (status, body, _) = get_host(listen, host).await;
        assert_eq!(status, StatusCode::OK, "{host}: {body}");
        assert!(body.starts_with("v1 "), "{host}: {body}");
    }
    assert_eq!(
        backend.requests.load(std::sync::atomic::Ordering::Relaxed),
        2
    );

    let (status, _, headers) = get_host(listen, "unknown.example.com").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let why = headers
        .get("x-mesh-error")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        why.contains("unknown.example.com") && why.contains("it serves shop.example.com"),
        "{why:?}"
    );

    // The gateway reports as the source, naming itself and the destination service…
    let (_, metrics, _) = get(&http1_client(), gateway.bound.metrics, "/metrics", &[]).await;
    let ok = metrics.lines().find(|l| {
        l.starts_with("mesh_requests_total{")
            && l.contains("reporter=\"source\"")
            && l.contains("response_code=\"200\"")
    });
    let ok = ok.unwrap_or_else(|| panic!("no 200 series in:\n{metrics}"));
    assert!(ok.contains("source_workload=\"ingress-1\""), "{ok}");
    assert!(ok.contains("source_app=\"mesh-ingressgateway\""), "{ok}");
    assert!(
        ok.contains(&format!("destination_service=\"{HOST}\"")),
        "{ok}"
    );
    assert!(ok.ends_with(" 2"), "{ok}");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("mesh_requests_total{")
                && l.contains("reporter=\"source\"")
                && l.contains("response_code=\"404\"")),
        "{metrics}"
    );
    // …and the sidecar saw the gateway's mesh identity over mutual TLS.
    let (_, server_metrics, _) =
        get(&http1_client(), server_proxy.bound.metrics, "/metrics", &[]).await;
    assert!(
        server_metrics
            .lines()
            .any(|l| l.starts_with("mesh_requests_total{")
                && l.contains("reporter=\"destination\"")
                && l.contains("connection_security_policy=\"mutual_tls\"")
                && l.contains(
                    "source_principal=\"spiffe://cluster.local/ns/default/sa/mesh-ingressgateway\""
                )),
        "{server_metrics}"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_binds_config_listeners_on_their_bind_port() {
    // No `--listen`: the listener of server port 80 binds its bind port on the listen host.
    let me = workload("ingress-2", ip(NET, 5), "mesh-ingressgateway", "v1", true);
    let mut gw = spec(me.clone(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    gw.mode = ProxyMode::Gateway;
    let bind = {
        // A free port on this test's own address.
        let l = std::net::TcpListener::bind(SocketAddr::new(me.address, 0)).unwrap();
        l.local_addr().unwrap().port()
    };
    gw.listeners = vec![Listener {
        name: Listener::name_for(80),
        port: 80,
        bind_port: Some(bind),
        virtual_hosts: Vec::new(),
    }];
    let gateway = gateway_proxy(me.address, &gw, &[]).await;
    let addr = SocketAddr::new(me.address, bind);
    let mut answered = None;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            answered = Some(get_host(addr, "shop.example.com").await);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _, headers) = answered.expect("the gateway binds its listener within 5s");
    assert_eq!(status, StatusCode::NOT_FOUND);
    let why = headers.get("x-mesh-error").unwrap().to_str().unwrap();
    assert!(why.contains("serves no hosts"), "{why}");
    gateway.stop().await;
}
