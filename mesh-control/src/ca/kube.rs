//! The CA in Kubernetes: material in Secrets of the control-plane namespace, and the trust
//! bundle published as a ConfigMap in every namespace.
//!
//! - A plug-in CA is Istio's Secret `cacerts` (keys `ca-cert.pem`, `ca-key.pem`,
//!   `root-cert.pem`, `cert-chain.pem`); it is only read, never written, and wins when
//!   present. Replacing its content is a rotation (see the `rotation` module).
//! - Otherwise the CA's own root is in Secret `mesh-ca` (keys `root-cert.pem`,
//!   `root-key.pem`, and the rotation files). The first replica to start creates it; a
//!   replica that loses the race gets `409 AlreadyExists` and loads the winner's root, so
//!   two replicas always end up with one root. Every later change is a `replace` with the
//!   `resourceVersion` read, so concurrent replicas never interleave a rotation step.
//!   With a plug-in CA, `mesh-ca` only carries `rotation.json`.
//! - [`publish_bundle`] server-side-applies ConfigMap `mesh-root-cert` (key
//!   `root-cert.pem`: the whole bundle, PEM) in every namespace, when a namespace appears
//!   and whenever the bundle changes (field manager `mesh-control`).
//!
//! Key material is never logged: errors name Secrets and keys, never values.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use tokio::sync::watch;

use super::store::{Files, Op};
use super::{Bundle, Error, names};

/// Istio's plug-in CA Secret.
pub const PLUG_IN_SECRET: &str = "cacerts";
/// The Secret of the CA's own root and rotation state.
pub const CA_SECRET: &str = "mesh-ca";
/// The ConfigMap holding the trust bundle in every namespace.
pub const BUNDLE_CONFIGMAP: &str = "mesh-root-cert";
/// The field manager of server-side applies.
pub const FIELD_MANAGER: &str = "mesh-control";

const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "mesh-control");

/// The keys of the plug-in Secret.
const PLUG_IN_KEYS: [&str; 4] = [
    names::CA_CERT,
    names::CA_KEY,
    names::CERT_CHAIN,
    names::ROOT_CERT,
];

/// CA material in Secrets.
#[derive(Clone)]
pub struct KubeStore {
    client: kube::Client,
    namespace: String,
    plug_in: Arc<AtomicBool>,
}

impl std::fmt::Debug for KubeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeStore")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

fn api_error(e: kube::Error, what: &str, namespace: &str) -> Error {
    match &e {
        kube::Error::Api(s) if s.code == 409 => Error::Conflict,
        kube::Error::Api(s) if s.code == 403 => Error::Kube(format!(
            "{what} in namespace {namespace}: forbidden ({}); mesh-control's Role must allow get/create/update on secrets there (apply deploy/ RBAC)",
            s.message
        )),
        _ => Error::Kube(format!("{what} in namespace {namespace}: {e}")),
    }
}

fn data_of(secret: &Secret) -> BTreeMap<String, ByteString> {
    let mut data = secret.data.clone().unwrap_or_default();
    // `stringData` is write-only in the API, but accept it in case a fixture carries it.
    for (k, v) in secret.string_data.clone().unwrap_or_default() {
        data.entry(k).or_insert_with(|| ByteString(v.into_bytes()));
    }
    data
}

impl KubeStore {
    /// The store in `namespace` (the control-plane namespace).
    pub fn new(client: kube::Client, namespace: impl Into<String>) -> Self {
        Self {
            client,
            namespace: namespace.into(),
            plug_in: Arc::new(AtomicBool::new(false)),
        }
    }

    fn api(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    async fn get(&self, name: &str) -> Result<Option<Secret>, Error> {
        self.api()
            .get_opt(name)
            .await
            .map_err(|e| api_error(e, &format!("reading Secret {name}"), &self.namespace))
    }

    pub(crate) async fn read(&self) -> Result<Files, Error> {
        let plug_in = self.get(PLUG_IN_SECRET).await?;
        let ours = self.get(CA_SECRET).await?;
        let mut files = Files::default();
        let ours_data = ours.as_ref().map(data_of).unwrap_or_default();
        match &plug_in {
            Some(secret) => {
                let data = data_of(secret);
                for key in PLUG_IN_KEYS {
                    if let Some(v) = data.get(key) {
                        files.insert(key, v.0.clone());
                    }
                }
                if let Some(v) = ours_data.get(names::ROTATION) {
                    files.insert(names::ROTATION, v.0.clone());
                }
            }
            None => {
                for name in names::ALL {
                    if let Some(v) = ours_data.get(name) {
                        files.insert(name, v.0.clone());
                    }
                }
            }
        }
        self.plug_in.store(plug_in.is_some(), Ordering::Relaxed);
        files.version = ours
            .and_then(|s| s.metadata.resource_version)
            .unwrap_or_default();
        Ok(files)
    }

    /// Applies `ops` to Secret `mesh-ca` if it is still at the version read.
    pub(crate) async fn apply(&self, files: &Files, ops: &[Op]) -> Result<(), Error> {
        let current = self.get(CA_SECRET).await?;
        let version = current
            .as_ref()
            .and_then(|s| s.metadata.resource_version.clone())
            .unwrap_or_default();
        if version != files.version {
            return Err(Error::Conflict);
        }
        let mut data = current.as_ref().map(data_of).unwrap_or_default();
        for op in ops {
            match op {
                Op::Write { name, data: v } => {
                    data.insert((*name).to_owned(), ByteString(v.clone()));
                }
                Op::Remove(name) => {
                    data.remove(*name);
                }
                Op::Rename { from, to } => {
                    if let Some(v) = data.remove(*from) {
                        data.insert((*to).to_owned(), v);
                    }
                }
            }
        }
        match current {
            Some(mut secret) => {
                secret.data = Some(data);
                secret.string_data = None;
                self.api()
                    .replace(CA_SECRET, &PostParams::default(), &secret)
                    .await
                    .map_err(|e| {
                        api_error(e, &format!("updating Secret {CA_SECRET}"), &self.namespace)
                    })?;
            }
            None => {
                self.create(data).await?;
            }
        }
        Ok(())
    }

    async fn create(&self, data: BTreeMap<String, ByteString>) -> Result<(), Error> {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(CA_SECRET.to_owned()),
                namespace: Some(self.namespace.clone()),
                labels: Some(BTreeMap::from([(
                    MANAGED_BY.0.to_owned(),
                    MANAGED_BY.1.to_owned(),
                )])),
                ..Default::default()
            },
            type_: Some("Opaque".to_owned()),
            data: Some(data),
            ..Default::default()
        };
        self.api()
            .create(&PostParams::default(), &secret)
            .await
            .map_err(|e| api_error(e, &format!("creating Secret {CA_SECRET}"), &self.namespace))?;
        Ok(())
    }

    /// Creates Secret `mesh-ca` with a root; `Conflict` when another replica was first.
    pub(crate) async fn create_root(&self, cert_pem: &str, key_pem: &str) -> Result<(), Error> {
        match self.get(CA_SECRET).await? {
            Some(existing) if data_of(&existing).contains_key(names::ROOT_CERT) => {
                Err(Error::Conflict)
            }
            Some(existing) => {
                // The Secret exists (rotation state only): add the root to it.
                let mut files = Files::default();
                files.version = existing.metadata.resource_version.unwrap_or_default();
                self.apply(
                    &files,
                    &[
                        Op::Write {
                            name: names::ROOT_KEY,
                            data: key_pem.as_bytes().to_vec(),
                        },
                        Op::Write {
                            name: names::ROOT_CERT,
                            data: cert_pem.as_bytes().to_vec(),
                        },
                    ],
                )
                .await
            }
            None => {
                self.create(BTreeMap::from([
                    (
                        names::ROOT_CERT.to_owned(),
                        ByteString(cert_pem.as_bytes().to_vec()),
                    ),
                    (
                        names::ROOT_KEY.to_owned(),
                        ByteString(key_pem.as_bytes().to_vec()),
                    ),
                ]))
                .await
            }
        }
    }

    pub(crate) fn locate(&self, name: &str) -> String {
        let secret = if self.plug_in.load(Ordering::Relaxed) && name != names::ROTATION {
            PLUG_IN_SECRET
        } else {
            CA_SECRET
        };
        format!("Secret {}/{secret} key {name}", self.namespace)
    }

    pub(crate) fn describe(&self, plug_in: bool) -> String {
        let secret = if plug_in { PLUG_IN_SECRET } else { CA_SECRET };
        format!("kubernetes:{}/{secret}", self.namespace)
    }
}

// === the trust bundle ConfigMaps ===

/// The server-side-apply body of ConfigMap `mesh-root-cert` in `namespace`.
fn bundle_configmap(namespace: &str, pem: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(BUNDLE_CONFIGMAP.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([(
                MANAGED_BY.0.to_owned(),
                MANAGED_BY.1.to_owned(),
            )])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            names::ROOT_CERT.to_owned(),
            pem.to_owned(),
        )])),
        ..Default::default()
    }
}

/// Applies the bundle ConfigMap in `namespace`.
pub async fn apply_bundle(client: &kube::Client, namespace: &str, pem: &str) -> Result<(), Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let mut body = serde_json::to_value(bundle_configmap(namespace, pem))
        .map_err(|e| Error::Kube(format!("encoding ConfigMap {BUNDLE_CONFIGMAP}: {e}")))?;
    // Server-side apply needs the type.
    body["apiVersion"] = "v1".into();
    body["kind"] = "ConfigMap".into();
    api.patch(
        BUNDLE_CONFIGMAP,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await
    .map_err(|e| match &e {
        kube::Error::Api(s) if s.code == 403 => Error::Kube(format!(
            "applying ConfigMap {BUNDLE_CONFIGMAP} in namespace {namespace}: forbidden ({}); mesh-control's ClusterRole must allow patch on configmaps (apply deploy/ RBAC)",
            s.message
        )),
        _ => Error::Kube(format!(
            "applying ConfigMap {BUNDLE_CONFIGMAP} in namespace {namespace}: {e}"
        )),
    })?;
    Ok(())
}

/// Which bundle each namespace has (by bundle version), shared for tests and status.
pub type Applied = Arc<Mutex<HashMap<String, u64>>>;

/// Keeps ConfigMap `mesh-root-cert` current in every namespace until `stop` resolves:
/// watches namespaces, applies the bundle to each new one and to all of them when the
/// bundle changes; failures are retried every `retry`.
pub async fn publish_bundle(
    client: kube::Client,
    mut bundle: watch::Receiver<Arc<Bundle>>,
    applied: Applied,
    retry: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut events = watcher::watcher(namespaces, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut known: BTreeMap<String, bool> = BTreeMap::new(); // name → active
    let mut ticker = tokio::time::interval(retry);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = ticker.tick() => {}
            changed = bundle.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            event = events.next() => match event {
                Some(Ok(watcher::Event::Apply(ns) | watcher::Event::InitApply(ns))) => {
                    let name = ns.metadata.name.clone().unwrap_or_default();
                    let active = ns.metadata.deletion_timestamp.is_none()
                        && ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating");
                    known.insert(name, active);
                }
                Some(Ok(watcher::Event::Delete(ns))) => {
                    let name = ns.metadata.name.clone().unwrap_or_default();
                    known.remove(&name);
                    applied.lock().expect("applied poisoned").remove(&name);
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "watching namespaces for the trust bundle ConfigMaps failed; retrying");
                    continue;
                }
                None => return,
            },
        }
        let current = bundle.borrow().clone();
        let due: Vec<String> = {
            let done = applied.lock().expect("applied poisoned");
            known
                .iter()
                .filter(|(ns, active)| **active && done.get(*ns) != Some(&current.version))
                .map(|(ns, _)| ns.clone())
                .collect()
        };
        if due.is_empty() {
            continue;
        }
        let pem = current.pem();
        let results: Vec<(String, Result<(), Error>)> = futures_util::stream::iter(due)
            .map(|ns| {
                let client = client.clone();
                let pem = pem.clone();
                async move {
                    let r = apply_bundle(&client, &ns, &pem).await;
                    (ns, r)
                }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        let mut done = applied.lock().expect("applied poisoned");
        for (ns, result) in results {
            match result {
                Ok(()) => {
                    tracing::debug!(namespace = %ns, roots = current.roots.len(), "trust bundle ConfigMap applied");
                    done.insert(ns, current.version);
                }
                Err(e) => tracing::warn!(namespace = %ns, "{e}; retrying"),
            }
        }
    }
}
