//! The connected proxies and what each holds, for the debug API (`proxy-status`) and the
//! config dump. Stream tasks update their entry on every send, ACK and NACK (a few times
//! per config change, never per request); readers take a consistent copy.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use mesh_api::model::{Node, ProxyMode};
use mesh_api::status::{Nack, ProxyStatus, SyncState};

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What the stream task reports about its proxy.
#[derive(Debug, Clone)]
pub(crate) struct ConnState {
    pub(crate) node: Node,
    pub(crate) peer_addr: String,
    pub(crate) connected_unix_ms: u64,
    /// The generation version of the last push (even an empty one).
    pub(crate) sent_version: String,
    /// The generation version last acknowledged with nothing pending.
    pub(crate) acked_version: String,
    pub(crate) last_ack_unix_ms: Option<u64>,
    pub(crate) pending: u32,
    /// Resources held (if every response is acknowledged), by kind.
    pub(crate) resources: BTreeMap<String, u32>,
    /// Rejections in force, by type URL.
    pub(crate) nacks: BTreeMap<String, Nack>,
}

impl ConnState {
    pub(crate) fn new(node: Node, peer_addr: String) -> Self {
        Self {
            node,
            peer_addr,
            connected_unix_ms: unix_ms(),
            sent_version: String::new(),
            acked_version: String::new(),
            last_ack_unix_ms: None,
            pending: 0,
            resources: BTreeMap::new(),
            nacks: BTreeMap::new(),
        }
    }

    /// The status document; `current` is the control plane's config version (`None`
    /// before the registry synced: nothing is due then).
    pub(crate) fn status(&self, current: Option<&str>) -> ProxyStatus {
        let sync = if !self.nacks.is_empty() {
            SyncState::Nacked
        } else if self.pending > 0 || current.is_some_and(|v| v != self.sent_version) {
            SyncState::Stale
        } else {
            SyncState::Synced
        };
        let last_nack = self.nacks.values().max_by_key(|n| n.at_unix_ms).cloned();
        ProxyStatus {
            id: self.node.id.clone(),
            pod_name: self.node.pod_name.clone(),
            namespace: self.node.namespace.clone(),
            identity: self.node.identity.to_string(),
            mode: match self.node.mode {
                ProxyMode::Sidecar => "sidecar",
                ProxyMode::Gateway => "gateway",
            }
            .to_owned(),
            proxy_version: self.node.proxy_version.clone(),
            peer_addr: self.peer_addr.clone(),
            connected_unix_ms: self.connected_unix_ms,
            sync,
            sent_version: self.sent_version.clone(),
            acked_version: self.acked_version.clone(),
            last_ack_unix_ms: self.last_ack_unix_ms,
            pending_responses: self.pending,
            resources: self.resources.clone(),
            last_nack,
        }
    }
}

/// The registry of connected proxies.
#[derive(Debug, Default, Clone)]
pub struct Clients {
    inner: Arc<Mutex<HashMap<u64, Arc<Mutex<ConnState>>>>>,
    next: Arc<AtomicU64>,
}

/// A registered connection; unregisters on drop.
#[derive(Debug)]
pub(crate) struct Registration {
    clients: Clients,
    id: u64,
    pub(crate) state: Arc<Mutex<ConnState>>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.clients
            .inner
            .lock()
            .expect("clients poisoned")
            .remove(&self.id);
    }
}

impl Clients {
    pub(crate) fn register(&self, state: ConnState) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(Mutex::new(state));
        self.inner
            .lock()
            .expect("clients poisoned")
            .insert(id, state.clone());
        Registration {
            clients: self.clone(),
            id,
            state,
        }
    }

    /// How many proxies are connected.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("clients poisoned").len()
    }

    /// Whether no proxy is connected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of every connection's state, ordered by namespace, pod name and id.
    pub(crate) fn snapshot(&self) -> Vec<ConnState> {
        let conns: Vec<Arc<Mutex<ConnState>>> = self
            .inner
            .lock()
            .expect("clients poisoned")
            .values()
            .cloned()
            .collect();
        let mut out: Vec<ConnState> = conns
            .iter()
            .map(|c| c.lock().expect("conn state poisoned").clone())
            .collect();
        out.sort_by(|a, b| {
            (&a.node.namespace, &a.node.pod_name, &a.node.id).cmp(&(
                &b.node.namespace,
                &b.node.pod_name,
                &b.node.id,
            ))
        });
        out
    }
}
