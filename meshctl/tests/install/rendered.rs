//! End to end over the real `manifest::render` output, for every profile, against the
//! in-memory [`FakeCluster`]: precheck passes on an empty cluster, install applies every
//! rendered object (CRDs first, webhook configurations last), precheck then sees an
//! upgrade, and `uninstall --purge` leaves nothing behind (twice: the second finds
//! everything gone).

use http::Method;
use meshctl::manifest::{self, Profile, ValuesArgs};
use meshctl::{install, precheck, uninstall};

use crate::apiserver::{ApiServer, FakeCluster, Seen};
use crate::{bounded, options};

fn is_webhook_patch(s: &Seen) -> bool {
    s.method == Method::PATCH
        && (s.path.contains("/mutatingwebhookconfigurations/")
            || s.path.contains("/validatingwebhookconfigurations/"))
}

#[tokio::test(start_paused = true)]
async fn every_profile_installs_and_uninstalls_cleanly() {
    for profile in [Profile::Minimal, Profile::Default, Profile::Demo] {
        let values = ValuesArgs {
            profile,
            set: vec![],
        }
        .values()
        .unwrap();
        let objects = manifest::render(&values).unwrap();
        let kinds: Vec<&str> = objects
            .iter()
            .filter_map(|o| o.types.as_ref().map(|t| t.kind.as_str()))
            .collect();
        for kind in [
            "CustomResourceDefinition",
            "Namespace",
            "Deployment",
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration",
        ] {
            assert!(
                kinds.contains(&kind),
                "{profile:?} renders no {kind}: {kinds:?}"
            );
        }
        let store = FakeCluster::new();
        let mut api = ApiServer::new();
        api.fallback(store.clone());
        let cluster = api.start();

        let before = bounded(precheck::precheck(
            &cluster,
            objects.clone(),
            &values.namespace,
            &mut Vec::new(),
        ))
        .await
        .unwrap();
        assert!(before.passed(), "{profile:?}: {:?}", before.failures);

        let start = api.log().len();
        let mut out = Vec::new();
        let report = bounded(install::install(
            &cluster,
            objects.clone(),
            &options(),
            &mut out,
        ))
        .await
        .unwrap_or_else(|e| panic!("{profile:?}: {e:#}"));
        assert_eq!(report.applied.len(), objects.len(), "{profile:?}");
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains(&format!(
                "✔ the mesh is installed in namespace mesh-system ({} objects applied)",
                objects.len()
            )),
            "{profile:?}: {out}"
        );
        assert_eq!(
            store.lock().unwrap().objects().len(),
            objects.len(),
            "{profile:?}"
        );

        // CRDs before anything else; webhook configurations after every rollout poll.
        let log = api.log()[start..].to_vec();
        let patches: Vec<&Seen> = log.iter().filter(|s| s.method == Method::PATCH).collect();
        let first_other = patches
            .iter()
            .position(|s| !s.path.contains("/customresourcedefinitions/"));
        let last_crd = patches
            .iter()
            .rposition(|s| s.path.contains("/customresourcedefinitions/"));
        if let (Some(first_other), Some(last_crd)) = (first_other, last_crd) {
            assert!(last_crd < first_other, "{profile:?}: CRDs first");
        }
        let last_rollout_poll = log
            .iter()
            .rposition(|s| s.method == Method::GET && s.path.contains("/deployments/"));
        let first_webhook = log.iter().position(is_webhook_patch);
        if let (Some(poll), Some(hook)) = (last_rollout_poll, first_webhook) {
            assert!(poll < hook, "{profile:?}: webhooks after the rollout");
        }
        if let Some(hook) = first_webhook {
            assert!(
                log[hook..]
                    .iter()
                    .filter(|s| s.method == Method::PATCH)
                    .all(is_webhook_patch),
                "{profile:?}: webhooks last"
            );
        }

        let after = bounded(precheck::precheck(
            &cluster,
            objects.clone(),
            &values.namespace,
            &mut Vec::new(),
        ))
        .await
        .unwrap();
        assert!(after.passed(), "{profile:?}: {:?}", after.failures);

        let opts = uninstall::Options {
            namespace: values.namespace.clone(),
            purge: true,
        };
        let everything = uninstall::rendered(&values.namespace).unwrap();
        let removed = bounded(uninstall::uninstall(
            &cluster,
            everything.clone(),
            &opts,
            &mut Vec::new(),
        ))
        .await
        .unwrap();
        assert_eq!(
            store.lock().unwrap().objects(),
            Vec::<String>::new(),
            "{profile:?}: nothing left"
        );
        assert_eq!(removed.deleted.len(), objects.len(), "{profile:?}");
        let again = bounded(uninstall::uninstall(
            &cluster,
            everything,
            &opts,
            &mut Vec::new(),
        ))
        .await
        .unwrap();
        assert!(again.deleted.is_empty(), "{profile:?}: {again:?}");
        api.finish();
    }
}
