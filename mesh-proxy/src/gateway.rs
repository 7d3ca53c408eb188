//! The ingress gateway: `mesh-proxy gateway`, a standalone proxy with no capture and no
//! application of its own.
//!
//! It takes its config like a sidecar (the discovery stream, or a static file), as a
//! gateway-mode node: the control plane sends it [`Listener`]s, one per server port of the
//! `Gateway`s selecting its labels, each with the virtual hosts of the VirtualServices
//! bound there. The proxy binds each listener's bind port (a server on 80 behind a Service
//! mapping 80→8080 listens on 8080), or the address `--listen PORT=ADDR` gives for that
//! server port, and follows config updates: listeners that appear are bound, listeners that
//! disappear stop accepting (their open connections finish).
//!
//! A request is matched by its host (case-insensitive, port ignored, made canonical by
//! [`crate::canon::host`]) to a virtual host — exact, then the longest `*.suffix`, then
//! `*` — and then by that virtual host's routes exactly as a sidecar's outbound side does
//! ([`crate::outbound::forward`]: splits, retries, timeouts, faults, mirrors), to mesh
//! services over mutual TLS. An unknown host gets 404 with `x-mesh-error` naming the hosts
//! served on that port. Requests are metered and logged as the sidecar's outbound side
//! (`reporter="source"`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use mesh_api::model::Listener;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

use crate::http::{self as mhttp, Body, ProxyError};
use crate::meter::{Meter, Side};
use crate::outbound::forward::{self, Reply};
use crate::proxy::Proxy;
use crate::state::Snapshot;

/// `mesh-proxy gateway`: the options of `mesh-proxy run` (config source, identity,
/// admin/metrics/health, telemetry) plus where the gateway's listeners bind.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The proxy's options, as for `mesh-proxy run` (the capture and inbound listeners are
    /// not opened in gateway mode).
    #[command(flatten)]
    pub run: crate::app::Args,
    /// The address listeners of the config bind on, with their bind port.
    #[arg(long, env = "MESH_GATEWAY_LISTEN_HOST", default_value = "0.0.0.0")]
    pub listen_host: IpAddr,
    /// Serves gateway server port PORT on ADDR instead of on its bind port (local mode,
    /// tests with port 0), e.g. `80=127.0.0.1:18080`. Bound at start. Repeatable.
    #[arg(long = "listen", value_name = "PORT=ADDR", value_parser = parse_listen)]
    pub listen: Vec<(u16, SocketAddr)>,
}

fn parse_listen(s: &str) -> Result<(u16, SocketAddr), String> {
    let (port, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected PORT=ADDR, e.g. 80=127.0.0.1:18080"))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{port:?} is not a gateway server port (1-65535)"))?;
    let addr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an address like 127.0.0.1:18080"))?;
    Ok((port, addr))
}

/// Serves the gateway's listeners until `stop` turns true: the `explicit` ones (server
/// port, bound listener) for the whole run, the others as the config declares them, on
/// `host` and their bind port.
pub async fn serve(
    proxy: Arc<Proxy>,
    explicit: Vec<(u16, TcpListener)>,
    host: IpAddr,
    stop: watch::Receiver<bool>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    let fixed: Vec<u16> = explicit.iter().map(|(p, _)| *p).collect();
    for (port, listener) in explicit {
        tasks.spawn(serve_listener(
            listener,
            proxy.clone(),
            port,
            stopped(stop.clone()),
        ));
    }
    // Server port → (bind address, what stops its accept loop).
    let mut dynamic: HashMap<u16, (SocketAddr, oneshot::Sender<()>)> = HashMap::new();
    let mut updates = proxy.state.subscribe();
    updates.mark_changed();
    let mut stop_wait = stop.clone();
    loop {
        tokio::select! {
            _ = stop_wait.wait_for(|s| *s) => break,
            changed = updates.changed() => if changed.is_err() { break },
        }
        let Some(snap) = proxy.state.snapshot() else {
            continue;
        };
        let wanted: HashMap<u16, SocketAddr> = snap
            .config
            .listeners()
            .iter()
            .filter(|l| !fixed.contains(&l.port))
            .map(|l| (l.port, SocketAddr::new(host, l.bind_port())))
            .collect();
        dynamic.retain(|port, (addr, _)| {
            let keep = wanted.get(port) == Some(addr);
            if !keep {
                tracing::info!(port, %addr, "gateway listener removed");
            }
            keep // dropping the sender stops the accept loop
        });
        for (port, addr) in wanted {
            if dynamic.contains_key(&port) {
                continue;
            }
            match TcpListener::bind(addr).await {
                Ok(listener) => {
                    tracing::info!(port, %addr, "gateway listener bound");
                    let (tx, rx) = oneshot::channel();
                    let stop = stopped(stop.clone());
                    let until = async move {
                        tokio::select! {
                            _ = rx => {}
                            () = stop => {}
                        }
                    };
                    tasks.spawn(serve_listener(listener, proxy.clone(), port, until));
                    dynamic.insert(port, (addr, tx));
                }
                Err(e) => tracing::error!(
                    port,
                    %addr,
                    error = %e,
                    "cannot bind the gateway listener: is another program using the port? \
                     (or give --listen {port}=ADDR)"
                ),
            }
        }
    }
    drop(dynamic);
    while tasks.join_next().await.is_some() {}
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Accepts connections for gateway server port `port` until `shutdown` resolves.
async fn serve_listener(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    port: u16,
    shutdown: impl std::future::Future<Output = ()>,
) {
    crate::proxy::accept_loop(listener, "gateway", shutdown, move |stream, client| {
        let proxy = proxy.clone();
        async move {
            if let Err(e) = serve_conn(proxy, stream, client, port).await {
                tracing::debug!(%client, error = %e, "gateway connection ended with an error");
            }
        }
    })
    .await;
}

async fn serve_conn(
    proxy: Arc<Proxy>,
    stream: TcpStream,
    client: SocketAddr,
    port: u16,
) -> anyhow::Result<()> {
    let svc_proxy = proxy.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let proxy = svc_proxy.clone();
        async move { Ok::<Response<Body>, Infallible>(handle(&proxy, port, client, req).await) }
    });
    let conn = proxy
        .http_server()
        .serve_connection(TokioIo::new(stream), service)
        .into_owned();
    proxy
        .serve_conn(conn)
        .await
        .map_err(|e| anyhow::anyhow!("serving http: {e}"))
}

/// Handles one request on gateway server port `port`, always producing a response.
pub async fn handle(
    proxy: &Arc<Proxy>,
    port: u16,
    client: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let grpc = mhttp::is_grpc(req.headers());
    let Some(snap) = proxy.state.snapshot() else {
        let err = ProxyError::NoHealthyUpstream("this gateway (no config yet)".into());
        return mhttp::error_response(&err, grpc);
    };
    let mut meter = Meter::start(proxy, &snap, Side::Outbound, &req, grpc);
    meter.set_peer_address(client);
    match route(proxy, &snap, port, req, &mut meter).await {
        Ok(Reply::Upstream(res)) => meter.respond(res),
        Ok(Reply::Local(res)) => meter.respond_local(res),
        Err(err) => meter.respond_error(&err, grpc),
    }
}

async fn route(
    proxy: &Arc<Proxy>,
    snap: &Arc<Snapshot>,
    port: u16,
    mut req: Request<Incoming>,
    meter: &mut Meter,
) -> Result<Reply, ProxyError> {
    mhttp::canonicalize(&mut req)?;
    let authority = mhttp::authority(&req).unwrap_or_default();
    let host = crate::canon::host(authority)
        .map_err(|e| ProxyError::BadRequest(format!("host {authority:?}: {e}")))?
        .into_owned();
    let Some(table) = snap.config.virtual_host(port, &host) else {
        return Err(ProxyError::NoVirtualHost {
            served: served(snap.config.listener(port), port),
            host,
            port,
        });
    };
    forward::route_in_table(proxy, snap, table, req, host, None, meter).await
}

/// What a port serves, in words, for the 404 of an unknown host.
fn served(listener: Option<&Listener>, port: u16) -> String {
    let Some(l) = listener else {
        return format!("no Gateway server selecting this gateway has port {port}");
    };
    let hosts: Vec<&str> = l.hostnames().collect();
    if hosts.is_empty() {
        "it serves no hosts (no VirtualService bound to its Gateway matches the server's hosts)"
            .to_owned()
    } else {
        format!("it serves {}", hosts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_listen;

    #[test]
    fn listen_flags_name_a_server_port_and_an_address() {
        assert_eq!(
            parse_listen("80=127.0.0.1:18080").unwrap(),
            (80, "127.0.0.1:18080".parse().unwrap())
        );
        assert!(
            parse_listen("0=127.0.0.1:1")
                .unwrap_err()
                .contains("server port")
        );
        assert!(parse_listen("80").unwrap_err().contains("PORT=ADDR"));
        assert!(
            parse_listen("80=localhost")
                .unwrap_err()
                .contains("address")
        );
    }
}
