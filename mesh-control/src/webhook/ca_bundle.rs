//! Keeping the webhook configurations' `caBundle` current (Kubernetes mode).
//!
//! `meshctl install` applies `MutatingWebhookConfiguration` `mesh-sidecar-injector` and
//! `ValidatingWebhookConfiguration` `mesh-validator` without a `caBundle`: only
//! mesh-control knows its CA. For each configuration named by `--injector-config` /
//! `--validator-config`, [`keep_current`] watches that one object and, whenever it appears
//! or changes, or the trust bundle changes (a root rotation), sets every webhook's
//! `clientConfig.caBundle` that differs to the bundle's PEM. The patch is a JSON Patch
//! guarded by `test` operations on the webhook names, so a concurrent edit that reorders
//! the webhooks makes it fail (and retry) instead of writing the wrong entry; the
//! installer's server-side apply does not own `caBundle`, so a re-install keeps it.
//! Failures are logged and retried every [`RETRY`].

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::ca::Bundle;

/// How long after a failed patch it is tried again.
pub const RETRY: Duration = Duration::from_secs(10);

/// The JSON Patch that sets the `caBundle` of every webhook of `config` (a webhook
/// configuration as JSON) to `want` (base64), or `None` when all are current.
pub fn patch_for(config: &Value, want: &str) -> Option<Value> {
    let webhooks = config.get("webhooks")?.as_array()?;
    let mut ops = Vec::new();
    for (i, hook) in webhooks.iter().enumerate() {
        let current = hook
            .pointer("/clientConfig/caBundle")
            .and_then(Value::as_str);
        if current == Some(want) {
            continue;
        }
        let name = hook.get("name").cloned().unwrap_or(Value::Null);
        ops.push(json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": name}));
        ops.push(json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": want}));
    }
    (!ops.is_empty()).then_some(Value::Array(ops))
}

/// Keeps the `caBundle` of the webhook configuration `name` (of kind `K`) equal to the
/// trust bundle until `stop` resolves.
pub async fn keep_current<K>(
    client: kube::Client,
    name: String,
    mut bundle: watch::Receiver<Arc<Bundle>>,
    stop: impl std::future::Future<Output = ()>,
) where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug + Send,
    K: 'static,
{
    let kind = K::kind(&());
    let api: Api<K> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher::watcher(api.clone(), config)
        .default_backoff()
        .boxed();
    let mut current: Option<Value> = None;
    let mut retry_at: Option<tokio::time::Instant> = None;
    let mut missing_reported = false;
    tokio::pin!(stop);
    loop {
        let retry = async {
            match retry_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut stop => return,
            changed = bundle.changed() => if changed.is_err() { return },
            () = retry => retry_at = None,
            event = events.next() => match event {
                None => return,
                Some(Ok(Event::Apply(o) | Event::InitApply(o))) => {
                    current = serde_json::to_value(&o).ok();
                }
                Some(Ok(Event::Delete(_))) => current = None,
                Some(Ok(Event::Init)) => continue,
                Some(Ok(Event::InitDone)) => {
                    if current.is_none() && !missing_reported {
                        missing_reported = true;
                        tracing::warn!(%kind, %name, "webhook configuration not found yet; its caBundle is set when it appears (`meshctl install` applies it)");
                    }
                    continue;
                }
                Some(Err(e)) => {
                    tracing::warn!(%kind, %name, error = %e, "watching the webhook configuration");
                    continue;
                }
            },
        }
        let Some(config) = &current else { continue };
        let want = mesh_api::tls::base64(bundle.borrow().pem().as_bytes());
        let Some(ops) = patch_for(config, &want) else {
            continue;
        };
        let patch = match serde_json::from_value::<json_patch::Patch>(ops) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(%kind, %name, error = %e, "building the caBundle patch");
                continue;
            }
        };
        match api
            .patch(&name, &PatchParams::default(), &Patch::Json::<()>(patch))
            .await
        {
            Ok(_) => {
                tracing::info!(%kind, %name, "webhook caBundle set to the mesh's trust bundle");
            }
            Err(e) => {
                let hint = match &e {
                    kube::Error::Api(s) if s.code == 403 => {
                        "; mesh-control's ClusterRole must allow patch on this configuration (re-run `meshctl install`)"
                    }
                    _ => "",
                };
                tracing::error!(%kind, %name, error = %e, "cannot set the webhook caBundle{hint}; retrying in {RETRY:?}");
                retry_at = Some(tokio::time::Instant::now() + RETRY);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_only_stale_webhooks_guarded_by_their_names() {
        let config = json!({
            "webhooks": [
                {"name": "a.mesh.dev", "clientConfig": {"caBundle": "QUJD"}},
                {"name": "b.mesh.dev", "clientConfig": {"service": {"name": "mesh-control"}}},
            ]
        });
        let ops = patch_for(&config, "QUJD").expect("b is stale");
        assert_eq!(
            ops,
            json!([
                {"op": "test", "path": "/webhooks/1/name", "value": "b.mesh.dev"},
                {"op": "add", "path": "/webhooks/1/clientConfig/caBundle", "value": "QUJD"},
            ])
        );
        assert_eq!(
            patch_for(&config, "WFla").map(|v| v.as_array().map(Vec::len)),
            Some(Some(4))
        );
        let current = json!({"webhooks": [{"name": "a", "clientConfig": {"caBundle": "QUJD"}}]});
        assert_eq!(patch_for(&current, "QUJD"), None);
        assert_eq!(patch_for(&json!({}), "QUJD"), None);
    }
}
