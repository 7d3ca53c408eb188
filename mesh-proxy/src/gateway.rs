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
//!
//! A listener with TLS (an HTTPS server) terminates it first, with certificates the
//! gateway reads itself from `--credentials-dir` ([`tls`]: the design, reloads, errors), and
//! then routes the same way. A TLS listener none of whose credentials load is not bound
//! (a `--listen` one closes its connections instead) and counts in
//! `mesh_gateway_listeners_unavailable`; plain connections to a TLS listener fail the
//! handshake. Each accepted connection reads its listener's current mode from an
//! [`ArcSwap`] (no lock); config changes and credential reloads replace it.

pub mod tls;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use mesh_api::model::Listener;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use crate::http::{self as mhttp, Body, ProxyError};
use crate::meter::{Meter, Side};
use crate::outbound::forward::{self, Reply};
use crate::proxy::Proxy;
use crate::state::Snapshot;

/// `mesh-proxy gateway`: the options of `mesh-proxy run` (config source, identity,
/// admin/metrics/health, telemetry) plus where the gateway's listeners bind.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "gateway")]
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
    /// Where TLS credentials are: `DIR/NAME/tls.crt` and `DIR/NAME/tls.key` for a server's
    /// `tls.credentialName: NAME` (in Kubernetes, `kubernetes.io/tls` Secrets mounted at
    /// `DIR/NAME`). Re-read every few seconds. Without it HTTPS servers are not served.
    #[arg(long, env = "MESH_GATEWAY_CREDENTIALS_DIR", value_name = "DIR")]
    pub credentials_dir: Option<PathBuf>,
}

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a listener does with a connection now.
enum Mode {
    /// Serves plain HTTP.
    Plain,
    /// Terminates TLS, then serves HTTP.
    Tls(tokio_rustls::TlsAcceptor),
    /// A TLS listener without a loadable credential: connections are closed.
    Unavailable,
}

/// A listener's current mode, replaced as config and credentials change.
type Slot = Arc<ArcSwap<Mode>>;

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
/// `host` and their bind port; TLS ones with certificates from `credentials`.
pub async fn serve(
    proxy: Arc<Proxy>,
    explicit: Vec<(u16, TcpListener)>,
    host: IpAddr,
    credentials: tls::Credentials,
    stop: watch::Receiver<bool>,
) {
    let plain = Arc::new(Mode::Plain);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tasks = tokio::task::JoinSet::new();
    let mut fixed: HashMap<u16, Slot> = HashMap::new();
    for (port, listener) in explicit {
        let slot = Arc::new(ArcSwap::new(plain.clone()));
        fixed.insert(port, slot.clone());
        tasks.spawn(serve_listener(
            listener,
            proxy.clone(),
            port,
            slot,
            stopped(stop.clone()),
        ));
    }
    // Server port → (bind address, mode, what stops its accept loop).
    let mut dynamic: HashMap<u16, (SocketAddr, Slot, oneshot::Sender<()>)> = HashMap::new();
    // Server port → what its TLS mode was built from, and the mode.
    let mut built: HashMap<u16, (tls::Source, Arc<Mode>)> = HashMap::new();
    let mut updates = proxy.state.subscribe();
    updates.mark_changed();
    let mut reload = tokio::time::interval(tls::RELOAD_INTERVAL);
    reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stop_wait = stop.clone();
    loop {
        tokio::select! {
            _ = stop_wait.wait_for(|s| *s) => break,
            changed = updates.changed() => if changed.is_err() { break },
            _ = reload.tick() => {}
        }
        let Some(snap) = proxy.state.snapshot() else {
            continue;
        };
        // Every listener's mode: plain, or TLS rebuilt when its credentials changed.
        let mut modes: HashMap<u16, Arc<Mode>> = HashMap::new();
        for l in snap.config.listeners() {
            let mode = match &l.tls {
                None => plain.clone(),
                Some(t) => {
                    let source = tls::Source::read(&credentials, t).await;
                    match built.get(&l.port) {
                        Some((old, mode)) if old.same(&source) => mode.clone(),
                        _ => {
                            let mode = Arc::new(tls_mode(l, &source, &provider));
                            built.insert(l.port, (source, mode.clone()));
                            mode
                        }
                    }
                }
            };
            modes.insert(l.port, mode);
        }
        built.retain(|port, _| modes.contains_key(port));
        let unavailable = modes
            .values()
            .filter(|m| matches!(***m, Mode::Unavailable))
            .count();
        proxy
            .metrics
            .set_gateway_listeners_unavailable(i64::try_from(unavailable).unwrap_or(i64::MAX));
        for (port, slot) in &fixed {
            let mode = modes.get(port).unwrap_or(&plain);
            if !Arc::ptr_eq(&slot.load(), mode) {
                slot.store(mode.clone());
            }
        }
        let wanted: HashMap<u16, (SocketAddr, Arc<Mode>)> = snap
            .config
            .listeners()
            .iter()
            .filter(|l| !fixed.contains_key(&l.port))
            .filter_map(|l| {
                let mode = modes.get(&l.port)?;
                (!matches!(**mode, Mode::Unavailable))
                    .then(|| (l.port, (SocketAddr::new(host, l.bind_port()), mode.clone())))
            })
            .collect();
        dynamic.retain(|port, (addr, slot, _)| {
            let Some((_, mode)) = wanted.get(port).filter(|(a, _)| a == addr) else {
                tracing::info!(port, %addr, "gateway listener removed");
                return false; // dropping the sender stops the accept loop
            };
            if !Arc::ptr_eq(&slot.load(), mode) {
                slot.store(mode.clone());
            }
            true
        });
        for (port, (addr, mode)) in wanted {
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
                    let slot = Arc::new(ArcSwap::new(mode));
                    tasks.spawn(serve_listener(
                        listener,
                        proxy.clone(),
                        port,
                        slot.clone(),
                        until,
                    ));
                    dynamic.insert(port, (addr, slot, tx));
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

/// Builds the TLS mode of listener `l` from `source`, logging what did not load.
fn tls_mode(
    l: &Listener,
    source: &tls::Source,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Mode {
    let built = source.build(provider);
    for e in &built.errors {
        tracing::error!(port = l.port, error = %e, "gateway TLS credential not loaded");
    }
    match built.config {
        Some(config) => {
            tracing::info!(port = l.port, "gateway TLS certificates loaded");
            Mode::Tls(tokio_rustls::TlsAcceptor::from(config))
        }
        None => {
            tracing::error!(
                port = l.port,
                "gateway TLS listener not served: none of its credentials loaded (see above)"
            );
            Mode::Unavailable
        }
    }
}

/// Accepts connections for gateway server port `port` until `shutdown` resolves, serving
/// each as its listener's mode says at accept time.
async fn serve_listener(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    port: u16,
    mode: Slot,
    shutdown: impl std::future::Future<Output = ()>,
) {
    crate::proxy::accept_loop(listener, "gateway", shutdown, move |stream, client| {
        let proxy = proxy.clone();
        let mode = mode.load_full();
        async move {
            let served = match &*mode {
                Mode::Plain => serve_conn(proxy, stream, client, port).await,
                Mode::Tls(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => serve_conn(proxy, tls, client, port).await,
                        Ok(Err(e)) => Err(anyhow::anyhow!("TLS handshake: {e}")),
                        Err(_) => Err(anyhow::anyhow!(
                            "TLS handshake not done within {HANDSHAKE_TIMEOUT:?}"
                        )),
                    }
                }
                Mode::Unavailable => Err(anyhow::anyhow!(
                    "connection closed: no TLS credential of port {port} loaded"
                )),
            };
            if let Err(e) = served {
                tracing::debug!(%client, error = %e, "gateway connection ended with an error");
            }
        }
    })
    .await;
}

async fn serve_conn<S>(
    proxy: Arc<Proxy>,
    stream: S,
    client: SocketAddr,
    port: u16,
) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
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
