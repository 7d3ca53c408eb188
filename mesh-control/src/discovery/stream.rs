//! One proxy's discovery stream: subscriptions in, incremental responses out, ACK/NACK
//! bookkeeping.
//!
//! The task keeps what the proxy holds — for the shared kinds, ideally just a pointer to
//! the scope snapshot it was last brought to (`base`), so a thousand proxies in sync cost a
//! thousand pointers, not a thousand copies; explicit name → version maps (`custom`) only
//! after a reconnect (`initial_resource_versions`) or a NACK. On every new generation it
//! computes the changes per kind and sends them in dependency order: kinds with additions
//! or replacements first (workload … route tables), then kinds with removals only, in
//! reverse (route tables before the clusters they used). Bookkeeping is optimistic —
//! a response counts as held once sent — and a NACK rolls back that one kind, so the next
//! change re-sends what the proxy refused (the server keeps sending newer versions after a
//! NACK; it does not resend the same one in a loop).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use mesh_api::model::{Node, ResourceKind};
use mesh_api::proto::discovery::v1 as pb;
use mesh_api::status::Nack;
use tokio::sync::{mpsc, watch};
use tonic::{Status, Streaming};

use super::clients::{Registration, unix_ms};
use super::snapshot::{
    Generation, Held, KindDelta, OWN_KINDS, SCOPE_KINDS, ScopeResources, own_resources, own_slot,
    scope_slot,
};
use crate::metrics::Metrics;

/// What a response's kind held before it, to roll back on NACK.
#[derive(Debug)]
enum Undo {
    /// An own kind's previous map.
    Own(Held),
    /// A scope kind in `base` mode: the snapshot held before.
    Base(Option<Arc<ScopeResources>>),
    /// A scope kind in `custom` mode: its previous map.
    Custom(Held),
}

#[derive(Debug)]
struct Pending {
    nonce: String,
    kind: ResourceKind,
    system_version: String,
    created: Instant,
    undo: Undo,
}

/// The state of one stream.
pub(crate) struct Conn {
    node: Node,
    /// By [`ResourceKind::ALL`] index.
    subscribed: [bool; ResourceKind::ALL.len()],
    answered: [bool; ResourceKind::ALL.len()],
    own_held: [Held; OWN_KINDS.len()],
    base: Option<Arc<ScopeResources>>,
    custom: Option<[Held; 4]>,
    pending: VecDeque<Pending>,
    nonce: u64,
    reg: Registration,
    metrics: Arc<Metrics>,
    tx: mpsc::Sender<Result<pb::DiscoveryResponse, Status>>,
}

fn all_index(kind: ResourceKind) -> usize {
    ResourceKind::ALL
        .iter()
        .position(|k| *k == kind)
        .expect("every kind is in ALL")
}

impl Conn {
    pub(crate) fn new(
        node: Node,
        reg: Registration,
        metrics: Arc<Metrics>,
        tx: mpsc::Sender<Result<pb::DiscoveryResponse, Status>>,
    ) -> Self {
        Self {
            node,
            subscribed: [false; ResourceKind::ALL.len()],
            answered: [false; ResourceKind::ALL.len()],
            own_held: Default::default(),
            base: None,
            custom: None,
            pending: VecDeque::new(),
            nonce: 0,
            reg,
            metrics,
            tx,
        }
    }

    /// Serves the stream until the proxy goes away. `first` is the request that carried
    /// the node (it may also be a subscription).
    pub(crate) async fn run(
        mut self,
        first: pb::DiscoveryRequest,
        mut inbound: Streaming<pb::DiscoveryRequest>,
        mut generations: watch::Receiver<Option<Arc<Generation>>>,
    ) {
        if let Err(status) = self.on_request(first) {
            let _ = self.tx.send(Err(status)).await;
            return;
        }
        let mut dirty = true;
        loop {
            tokio::select! {
                biased;
                msg = inbound.message() => match msg {
                    Ok(Some(req)) => match self.on_request(req) {
                        Ok(subscribed) => dirty |= subscribed,
                        Err(status) => {
                            let _ = self.tx.send(Err(status)).await;
                            return;
                        }
                    },
                    Ok(None) => {
                        tracing::info!(proxy = %self.node.id, "proxy closed its discovery stream");
                        return;
                    }
                    Err(status) => {
                        tracing::info!(proxy = %self.node.id, error = %status.message(), "discovery stream ended");
                        return;
                    }
                },
                changed = generations.changed() => {
                    if changed.is_err() {
                        return; // the server is shutting down
                    }
                    dirty = true;
                }
                () = std::future::ready(()), if dirty => {
                    dirty = false;
                    let current = generations.borrow_and_update().clone();
                    if let Some(g) = current
                        && self.push(&g).await.is_err()
                    {
                        return; // the proxy is gone
                    }
                }
            }
        }
    }

    /// Handles one request; `Ok(true)` when it was a subscription (a push is due).
    fn on_request(&mut self, req: pb::DiscoveryRequest) -> Result<bool, Status> {
        let Some(kind) = ResourceKind::from_type_url(&req.type_url) else {
            if req.type_url.is_empty() && req.response_nonce.is_empty() {
                return Ok(false); // a node-only first request
            }
            let known: Vec<&str> = ResourceKind::ALL.iter().map(|k| k.type_url()).collect();
            return Err(Status::invalid_argument(format!(
                "unknown type_url {:?}; this control plane serves {}",
                req.type_url,
                known.join(", ")
            )));
        };
        if req.response_nonce.is_empty() {
            self.subscribe(kind, req.initial_resource_versions);
            return Ok(true);
        }
        match req.error_detail {
            None => self.ack(kind, &req.response_nonce),
            Some(e) => self.nack(kind, &req.response_nonce, e.message),
        }
        Ok(false)
    }

    fn subscribe(&mut self, kind: ResourceKind, initial: Held) {
        let i = all_index(kind);
        self.subscribed[i] = true;
        self.answered[i] = false;
        let held = initial;
        if let Some(slot) = own_slot(kind) {
            self.own_held[slot] = held;
        } else if let Some(slot) = scope_slot(kind) {
            let mut custom = self.materialize();
            custom[slot] = held;
            self.custom = Some(custom);
        }
    }

    /// What the proxy holds of the scope kinds, as explicit maps.
    fn materialize(&mut self) -> [Held; 4] {
        match self.custom.take() {
            Some(c) => c,
            None => self.base.as_ref().map(|b| b.held()).unwrap_or_default(),
        }
    }

    /// Pops the pending response `nonce` (and any older ones, which the proxy can only
    /// have skipped by answering out of order).
    fn take_pending(&mut self, nonce: &str) -> Option<Pending> {
        let pos = self.pending.iter().position(|p| p.nonce == nonce)?;
        let mut taken = self.pending.drain(..=pos);
        let last = taken.next_back();
        drop(taken);
        last
    }

    fn ack(&mut self, kind: ResourceKind, nonce: &str) {
        let Some(p) = self.take_pending(nonce) else {
            tracing::debug!(proxy = %self.node.id, nonce, "ACK for an unknown nonce; ignored");
            return;
        };
        self.metrics.push_acked(p.kind, p.created.elapsed());
        let mut st = self.reg.state.lock().expect("conn state poisoned");
        st.nacks.remove(kind.type_url());
        st.last_ack_unix_ms = Some(unix_ms());
        st.pending = self.pending.len() as u32;
        if self.pending.is_empty() {
            st.acked_version = p.system_version;
        }
    }

    fn nack(&mut self, kind: ResourceKind, nonce: &str, message: String) {
        let Some(p) = self.take_pending(nonce) else {
            tracing::debug!(proxy = %self.node.id, nonce, "NACK for an unknown nonce; ignored");
            return;
        };
        tracing::warn!(
            proxy = %self.node.id,
            kind = %kind,
            version = %p.system_version,
            reason = %message,
            "proxy rejected a config update; it keeps serving its last good config"
        );
        self.metrics.push_nacked(p.kind);
        match p.undo {
            Undo::Own(held) => {
                if let Some(slot) = own_slot(p.kind) {
                    self.own_held[slot] = held;
                }
            }
            Undo::Base(before) => {
                let mut custom = self.materialize();
                if let Some(slot) = scope_slot(p.kind) {
                    custom[slot] = before.map(|b| b.held()[slot].clone()).unwrap_or_default();
                }
                self.custom = Some(custom);
            }
            Undo::Custom(held) => {
                let mut custom = self.materialize();
                if let Some(slot) = scope_slot(p.kind) {
                    custom[slot] = held;
                }
                self.custom = Some(custom);
            }
        }
        let mut st = self.reg.state.lock().expect("conn state poisoned");
        st.nacks.insert(
            kind.type_url().to_owned(),
            Nack {
                type_url: kind.type_url().to_owned(),
                version: p.system_version,
                message,
                at_unix_ms: unix_ms(),
            },
        );
        st.pending = self.pending.len() as u32;
    }

    /// Brings the proxy to generation `g`.
    async fn push(&mut self, g: &Arc<Generation>) -> Result<(), ()> {
        if !self.subscribed.iter().any(|s| *s) {
            return Ok(());
        }
        let scope = g.scope(&self.node.namespace, self.node.mode).await;
        let own = own_resources(g.view.own_config(&self.node));
        let all_scope = SCOPE_KINDS.iter().all(|k| self.subscribed[all_index(*k)]);

        // Per kind (ResourceKind::ALL order): the delta, and how to undo it.
        let scope_deltas: [KindDelta; 4] = match (&self.custom, &self.base) {
            (None, Some(base)) if all_scope && base.same(&scope) => Default::default(),
            (None, Some(base)) if all_scope => (*scope.delta_from(base)).clone(),
            (None, None) if all_scope => {
                std::array::from_fn(|s| KindDelta::between_held(&Held::new(), &scope.kinds[s]))
            }
            _ => {
                let custom = self.materialize();
                let deltas =
                    std::array::from_fn(|s| KindDelta::between_held(&custom[s], &scope.kinds[s]));
                self.custom = Some(custom);
                deltas
            }
        };
        let mut planned: Vec<(ResourceKind, KindDelta)> = Vec::new();
        for kind in ResourceKind::ALL {
            let i = all_index(kind);
            if !self.subscribed[i] {
                continue;
            }
            let delta = if let Some(slot) = own_slot(kind) {
                KindDelta::between_held(&self.own_held[slot], &own[slot])
            } else {
                let slot = scope_slot(kind).expect("a scope kind");
                scope_deltas[slot].clone()
            };
            if delta.is_empty() && self.answered[i] {
                continue;
            }
            planned.push((kind, delta));
        }
        // Additions first in dependency order; removal-only kinds after, in reverse.
        let (mut first, removals): (Vec<_>, Vec<_>) = planned
            .into_iter()
            .partition(|(k, d)| !d.upserts.is_empty() || !self.answered[all_index(*k)]);
        first.extend(removals.into_iter().rev());

        let prev_base = self.base.clone();
        for (kind, delta) in first {
            let i = all_index(kind);
            self.answered[i] = true;
            let undo = if let Some(slot) = own_slot(kind) {
                let before = self.own_held[slot].clone();
                apply(&mut self.own_held[slot], &delta);
                Undo::Own(before)
            } else {
                let slot = scope_slot(kind).expect("a scope kind");
                match &mut self.custom {
                    Some(custom) => {
                        let before = custom[slot].clone();
                        apply(&mut custom[slot], &delta);
                        Undo::Custom(before)
                    }
                    None => Undo::Base(prev_base.clone()),
                }
            };
            self.nonce += 1;
            let nonce = self.nonce.to_string();
            let response = pb::DiscoveryResponse {
                type_url: kind.type_url().to_owned(),
                system_version: g.system_version.clone(),
                nonce: nonce.clone(),
                resources: delta.upserts.iter().map(|e| e.resource.clone()).collect(),
                removed_resources: delta.removes,
            };
            self.metrics.pushed(kind, response.resources.len());
            self.pending.push_back(Pending {
                nonce,
                kind,
                system_version: g.system_version.clone(),
                created: g.created,
                undo,
            });
            if self.tx.send(Ok(response)).await.is_err() {
                return Err(());
            }
        }
        if all_scope {
            // Every scope kind now matches the snapshot: share it instead of copies.
            self.custom = None;
            self.base = Some(scope.clone());
        }

        let mut st = self.reg.state.lock().expect("conn state poisoned");
        st.sent_version = g.system_version.clone();
        st.pending = self.pending.len() as u32;
        if self.pending.is_empty() {
            st.acked_version = g.system_version.clone();
        }
        st.resources.clear();
        for (slot, kind) in OWN_KINDS.iter().enumerate() {
            if self.subscribed[all_index(*kind)] {
                st.resources
                    .insert(kind_name(*kind), self.own_held[slot].len() as u32);
            }
        }
        for (slot, kind) in SCOPE_KINDS.iter().enumerate() {
            if self.subscribed[all_index(*kind)] {
                let n = match (&self.custom, &self.base) {
                    (Some(c), _) => c[slot].len(),
                    (None, Some(b)) => b.kinds[slot].len(),
                    (None, None) => 0,
                };
                st.resources.insert(kind_name(*kind), n as u32);
            }
        }
        Ok(())
    }
}

/// The kind's message name, e.g. `RouteTable`.
fn kind_name(kind: ResourceKind) -> String {
    kind.type_url()
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn apply(held: &mut Held, delta: &KindDelta) {
    for e in &delta.upserts {
        held.insert(e.name().to_owned(), e.version().to_owned());
    }
    for name in &delta.removes {
        held.remove(name);
    }
}
