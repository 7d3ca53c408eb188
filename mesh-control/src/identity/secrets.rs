//! The certificates issued per proxy, for the debug API (`GET /debug/secrets`) and
//! `meshctl proxy-config <proxy> secret`. Only the latest issuance per proxy id is kept;
//! entries whose certificate has expired are dropped as new ones come.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use mesh_api::status::ProxySecret;

/// The latest certificate of each proxy. A cheap, shared handle.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    inner: Arc<Mutex<Records>>,
}

#[derive(Debug, Default)]
struct Records {
    by_proxy: BTreeMap<String, ProxySecret>,
    /// Entries after the last pruning: prune again when this doubles.
    pruned_at: usize,
}

impl Secrets {
    /// Records `secret` as its proxy's latest.
    pub fn record(&self, secret: ProxySecret, now_unix_s: i64) {
        let mut r = self.inner.lock().expect("secrets poisoned");
        r.by_proxy.insert(secret.proxy.clone(), secret);
        if r.by_proxy.len() > (r.pruned_at * 2).max(64) {
            r.by_proxy.retain(|_, s| {
                s.chain
                    .first()
                    .is_some_and(|leaf| leaf.not_after > now_unix_s)
            });
            r.pruned_at = r.by_proxy.len();
        }
    }

    /// Every record, ordered by proxy id.
    pub fn all(&self) -> Vec<ProxySecret> {
        self.inner
            .lock()
            .expect("secrets poisoned")
            .by_proxy
            .values()
            .cloned()
            .collect()
    }

    /// The records whose proxy `query` names, by the rule of
    /// [`mesh_api::status::select_proxies`]: a proxy id is `<pod>.<namespace>`, its
    /// namespace the identity's.
    pub fn select(&self, query: &str) -> Vec<ProxySecret> {
        let all = self.all();
        let keyed: Vec<(String, String, &ProxySecret)> = all
            .iter()
            .map(|s| {
                let ns = s
                    .identity
                    .parse::<mesh_api::spiffe::SpiffeId>()
                    .map(|id| id.namespace().to_owned())
                    .unwrap_or_default();
                // Proxy ids are `sidecar~<ip>~<pod>.<ns>`; the part after the last `~`.
                let name = s.proxy.rsplit('~').next().unwrap_or(&s.proxy);
                let pod = name
                    .strip_suffix(&format!(".{ns}"))
                    .filter(|_| !ns.is_empty())
                    .unwrap_or(name)
                    .to_owned();
                (pod, ns, s)
            })
            .collect();
        mesh_api::status::select_proxies(&keyed, query, |(pod, ns, s)| {
            (s.proxy.as_str(), pod.as_str(), ns.as_str())
        })
        .into_iter()
        .map(|(_, _, s)| (*s).clone())
        .collect()
    }
}
