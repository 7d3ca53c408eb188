//! The discovery server (`mesh.discovery.v1.Discovery`, port 15012): streams each proxy its
//! config, incrementally, with versions, nonces and ACK/NACK tracking.
//!
//! - [`Publisher`] is the single writer: the registry loop hands it each new index view
//!   and it publishes a [`Generation`] through a `watch` channel. Until the registry has
//!   synced once, the channel holds `None` and no stream is answered: a control plane that
//!   just restarted must not push empty endpoint sets over the ones proxies hold (they
//!   keep serving what they have, and are brought up to date when the state is complete).
//! - Every stream is one task (see `stream`); it wakes on its proxy's messages and on
//!   generation changes, computes what changed for its proxy and sends it.
//!   Translations shared by many proxies are computed once per generation
//!   (`snapshot`), so thousands of streams cost little more than their sockets.
//! - [`clients::Clients`] is what the debug API reads for `proxy-status`.
//!
//! The stream is served over TLS by [`crate::grpc`] and requires a client certificate: the
//! proxy's identity is its certificate's, and a `Node` claiming another is refused.

pub mod clients;
mod snapshot;
mod stream;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use mesh_api::model::Node;
use mesh_api::proto::discovery::v1 as pb;
use pb::discovery_server::{Discovery, DiscoveryServer};
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status, Streaming};

pub use self::clients::Clients;
pub use self::snapshot::Generation;
use crate::grpc::Peer;
use crate::index::View;
use crate::metrics::Metrics;

/// Publishes generations to every stream.
#[derive(Debug)]
pub struct Publisher {
    tx: watch::Sender<Option<Arc<Generation>>>,
    epoch: String,
    last_version: Option<u64>,
}

impl Publisher {
    /// A publisher with nothing published (not synced).
    pub fn new() -> Self {
        // Versions say which start of the control plane made them, so a restarted control
        // plane's `v1` is not mistaken for the previous one's.
        let epoch = format!("{:x}", clients::unix_ms() / 1000);
        Self {
            tx: watch::channel(None).0,
            epoch,
            last_version: None,
        }
    }

    /// Publishes `view` if its version is new. Returns whether it did.
    pub fn publish(&mut self, view: View) -> bool {
        if self.last_version == Some(view.version()) {
            return false;
        }
        self.last_version = Some(view.version());
        let previous = self.tx.borrow().clone();
        if let Some(p) = &previous {
            p.release_previous();
        }
        let version = format!("{}-{}", self.epoch, view.version());
        let generation = Arc::new(Generation::new(view, version, previous));
        self.tx.send_replace(Some(generation));
        true
    }

    /// The current generation (`None` before the first publish).
    pub fn current(&self) -> Option<Arc<Generation>> {
        self.tx.borrow().clone()
    }

    /// A receiver of generations (for streams and the debug API).
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Generation>>> {
        self.tx.subscribe()
    }
}

impl Default for Publisher {
    fn default() -> Self {
        Self::new()
    }
}

/// The `Discovery` service.
#[derive(Debug, Clone)]
pub struct DiscoveryService {
    generations: watch::Receiver<Option<Arc<Generation>>>,
    clients: Clients,
    metrics: Arc<Metrics>,
}

impl DiscoveryService {
    /// A service streaming `generations` and recording streams in `clients`.
    pub fn new(
        generations: watch::Receiver<Option<Arc<Generation>>>,
        clients: Clients,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            generations,
            clients,
            metrics,
        }
    }

    /// The tonic server of this service.
    pub fn server(self) -> DiscoveryServer<Self> {
        DiscoveryServer::new(self)
            // A full config of a large mesh is big; proxies accept up to 64 MiB too.
            .max_decoding_message_size(4 * 1024 * 1024)
            .max_encoding_message_size(64 * 1024 * 1024)
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<pb::DiscoveryResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Discovery for DiscoveryService {
    type StreamStream = ResponseStream;

    async fn stream(
        &self,
        request: Request<Streaming<pb::DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let (peer, verified) = match request.extensions().get::<Peer>() {
            Some(p) => (p.addr.to_string(), p.identity.clone()),
            None => ("unknown".to_owned(), None),
        };
        let Some(verified) = verified else {
            tracing::info!(%peer, "discovery stream without a client certificate refused");
            return Err(Status::unauthenticated(
                "no client certificate: a proxy must obtain a certificate with Certify first (mesh.identity.v1.Identity on this port) and present it on the discovery connection",
            ));
        };
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(Duration::from_secs(30), inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no request within 30s of opening the stream"))??
            .ok_or_else(|| {
                Status::invalid_argument("the stream closed before its first request")
            })?;
        let node: Node = first
            .node
            .clone()
            .ok_or_else(|| {
                Status::invalid_argument(
                    "the first request of a stream must carry `node` (the proxy's id, pod name, namespace and identity)",
                )
            })?
            .try_into()
            .map_err(|e: mesh_api::model::Invalid| {
                Status::invalid_argument(format!("invalid node: {e}"))
            })?;
        if node.identity != verified {
            tracing::warn!(proxy = %node.id, %peer, claimed = %node.identity, certificate = %verified, "discovery stream refused: the node claims another identity");
            return Err(Status::permission_denied(format!(
                "the node claims identity {} but the client certificate is {verified}",
                node.identity
            )));
        }
        tracing::info!(proxy = %node.id, %peer, identity = %node.identity, "proxy connected");

        let (tx, rx) = mpsc::channel(16);
        let reg = self
            .clients
            .register(clients::ConnState::new(node.clone(), peer));
        let metrics = self.metrics.clone();
        metrics.connected(1);
        let conn = stream::Conn::new(node, reg, metrics.clone(), tx);
        let generations = self.generations.clone();
        tokio::spawn(async move {
            conn.run(first, inbound, generations).await;
            metrics.connected(-1);
        });
        let out = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(Response::new(Box::pin(out)))
    }
}
