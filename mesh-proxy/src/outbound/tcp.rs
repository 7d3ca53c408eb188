//! Opaque TCP on the client side: one endpoint per connection, bytes both ways.
//!
//! The endpoint comes from the service's TCP routes (weighted backends) or, without routes,
//! the service's default cluster, picked by the cluster's load balancer. To an endpoint with
//! a proxy, the bytes ride an HTTP/2 `CONNECT` stream on the shared mesh connection; to one
//! without, a plain TCP connection. Half-closes are forwarded: when one side finishes
//! sending, the other side's write half is shut down and the rest still flows.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use mesh_api::model::ClusterKey;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::Destination;
use crate::balance::Outcome;
use crate::meter::{Side, TcpMeter};
use crate::proxy::Proxy;
use crate::transport;

/// Forwards an opaque connection to the destination service.
pub async fn forward(
    proxy: &Arc<Proxy>,
    client: TcpStream,
    _client_addr: SocketAddr,
    dest: &Destination,
) -> anyhow::Result<()> {
    let Some(snap) = proxy.state.snapshot() else {
        anyhow::bail!("no config yet: closing the connection");
    };
    let Some(service) = dest.service.as_deref() else {
        anyhow::bail!("not a service");
    };
    let key = snap
        .config
        .route_table(service, dest.port)
        .and_then(|t| {
            let labels = snap.config.workload().map(|w| &w.labels);
            t.tcp.iter().find(|r| tcp_route_matches(r, labels))
        })
        .and_then(|r| super::forward::pick_backend(&r.backends))
        .map(|b| b.cluster.clone())
        .unwrap_or_else(|| ClusterKey::new(service, dest.port));
    let Some(cluster) = snap.cluster(&key).cloned() else {
        anyhow::bail!("no cluster {key} for tcp traffic");
    };
    let mut meter = TcpMeter::start(proxy, &snap, Side::Outbound);
    meter.set_cluster(&cluster);
    let now = Instant::now();
    let pick = match dest.pinned {
        // A headless service's pod: that endpoint and no other.
        Some(pinned) => cluster
            .balancer
            .pick_matching(|m| m.meta.target.ip() == pinned.ip()),
        None => cluster.balancer.pick(now),
    };
    let Some(pick) = pick else {
        meter.fail(crate::telemetry::metrics::ResponseFlag::NoHealthyUpstream);
        anyhow::bail!("no healthy upstream for {service}:{}", dest.port);
    };
    let ep = pick.member().meta.clone();
    meter.set_upstream(&ep, pick.member().state.addr());
    let started = Instant::now();
    match &ep.mesh {
        Some(conn) => {
            let mut headers = http::HeaderMap::new();
            headers.insert(crate::http::PEER, snap.local_header.clone());
            headers.insert(crate::http::SERVICE, cluster.service_header.clone());
            let upstream = conn.tunnel(&ep.target.to_string(), headers).await;
            relay(client, upstream, pick, started, &mut meter).await
        }
        None => {
            let timeout = cluster.cluster.connection_pool.connect_timeout;
            let upstream = transport::connect_tcp(ep.target, timeout).await;
            relay(client, upstream, pick, started, &mut meter).await
        }
    }
}

/// Reports how connecting to the chosen endpoint went, then relays the bytes.
async fn relay<U, E>(
    mut client: TcpStream,
    upstream: Result<U, E>,
    pick: crate::balance::Pick<crate::state::EndpointMeta>,
    started: Instant,
    meter: &mut TcpMeter,
) -> anyhow::Result<()>
where
    U: AsyncRead + AsyncWrite + Unpin,
    E: std::error::Error + Send + Sync + 'static,
{
    match upstream {
        Ok(mut upstream) => {
            pick.finish(Outcome::Success, started.elapsed(), Instant::now());
            meter.opened();
            copy(&mut client, &mut upstream, meter).await
        }
        Err(e) => {
            pick.finish(Outcome::ConnectFailure, started.elapsed(), Instant::now());
            meter.fail(crate::telemetry::metrics::ResponseFlag::UpstreamConnectionFailure);
            Err(e.into())
        }
    }
}

/// Passes a captured connection to a non-service address straight through.
pub async fn passthrough(
    proxy: &Arc<Proxy>,
    mut client: TcpStream,
    original: SocketAddr,
) -> anyhow::Result<()> {
    let timeout = proxy.config.connect_timeout;
    let mut upstream = transport::connect_tcp(original, timeout).await?;
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    Ok(())
}

/// Copies both ways until both sides are done, counting bytes into the meter.
pub(crate) async fn copy<A, B>(a: &mut A, b: &mut B, meter: &mut TcpMeter) -> anyhow::Result<()>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::io::copy_bidirectional(a, b).await {
        Ok((sent, received)) => {
            meter.closed(sent, received);
            Ok(())
        }
        Err(e) => {
            meter.closed(0, 0);
            Err(e.into())
        }
    }
}

/// Whether a TCP route applies to this proxy's connections: no conditions, or a condition
/// whose source labels the local workload carries. Conditions on TLS SNI names need the
/// client's handshake, which opaque forwarding does not read, so they never match here.
fn tcp_route_matches(
    route: &mesh_api::model::TcpRoute,
    labels: Option<&std::collections::BTreeMap<String, String>>,
) -> bool {
    route.matches.is_empty()
        || route.matches.iter().any(|m| {
            m.sni_hosts.is_empty()
                && m.source_labels
                    .iter()
                    .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        })
}
