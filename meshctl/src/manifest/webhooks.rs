//! The admission webhook configurations, both served by mesh-control on port 15017:
//! `mesh-sidecar-injector` (sidecar injection into pods of namespaces labelled
//! `mesh-injection=enabled`) and `mesh-validator` (validation of our CRDs).
//!
//! Neither sets `caBundle`: mesh-control fills it in at start from its own CA (its RBAC
//! allows patching exactly these two objects), and leaving the field out of the applied
//! manifest keeps a re-apply from owning or clearing it. They are applied last, once the
//! Service they point at exists. Pods opt out of injection with the annotation
//! `sidecar.mesh.dev/inject: "false"`, which the injector itself honours, so there is no
//! object selector.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference,
    ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::{CONTROL, INJECTOR_CONFIG, VALIDATOR_CONFIG, Values, WEBHOOK_PORT, meta};

/// The namespace label that turns injection on (DESIGN.md "injection").
pub const INJECTION_LABEL: (&str, &str) = ("mesh-injection", "enabled");
/// The injection webhook's name.
pub const INJECTOR_WEBHOOK: &str = "sidecar-injector.mesh.dev";
/// The validation webhook's name.
pub const VALIDATOR_WEBHOOK: &str = "validation.mesh.dev";
/// mesh-control's injection path.
pub const INJECT_PATH: &str = "/inject";
/// mesh-control's validation path.
pub const VALIDATE_PATH: &str = "/validate";

fn client_config(values: &Values, path: &str) -> WebhookClientConfig {
    WebhookClientConfig {
        service: Some(ServiceReference {
            namespace: values.namespace.clone(),
            name: CONTROL.to_owned(),
            path: Some(path.to_owned()),
            port: Some(i32::from(WEBHOOK_PORT)),
        }),
        ..WebhookClientConfig::default()
    }
}

fn strings(s: &[&str]) -> Option<Vec<String>> {
    Some(s.iter().map(|s| (*s).to_owned()).collect())
}

/// MutatingWebhookConfiguration `mesh-sidecar-injector`: pod creation in labelled
/// namespaces.
pub(super) fn injector(values: &Values) -> MutatingWebhookConfiguration {
    MutatingWebhookConfiguration {
        metadata: meta(INJECTOR_CONFIG, None, []),
        webhooks: Some(vec![MutatingWebhook {
            name: INJECTOR_WEBHOOK.to_owned(),
            client_config: client_config(values, INJECT_PATH),
            rules: Some(vec![RuleWithOperations {
                operations: strings(&["CREATE"]),
                api_groups: strings(&[""]),
                api_versions: strings(&["v1"]),
                resources: strings(&["pods"]),
                ..RuleWithOperations::default()
            }]),
            namespace_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    INJECTION_LABEL.0.to_owned(),
                    INJECTION_LABEL.1.to_owned(),
                )])),
                ..LabelSelector::default()
            }),
            failure_policy: Some(values.webhook.failure_policy.as_str().to_owned()),
            timeout_seconds: Some(values.webhook.timeout_seconds),
            side_effects: "None".to_owned(),
            admission_review_versions: vec!["v1".to_owned()],
            reinvocation_policy: Some("Never".to_owned()),
            match_policy: Some("Equivalent".to_owned()),
            ..MutatingWebhook::default()
        }]),
    }
}

/// ValidatingWebhookConfiguration `mesh-validator`: creation and update of every resource
/// of our API groups.
pub(super) fn validator(values: &Values) -> ValidatingWebhookConfiguration {
    ValidatingWebhookConfiguration {
        metadata: meta(VALIDATOR_CONFIG, None, []),
        webhooks: Some(vec![ValidatingWebhook {
            name: VALIDATOR_WEBHOOK.to_owned(),
            client_config: client_config(values, VALIDATE_PATH),
            rules: Some(vec![RuleWithOperations {
                operations: strings(&["CREATE", "UPDATE"]),
                api_groups: strings(&["networking.mesh.dev", "security.mesh.dev"]),
                api_versions: strings(&["v1alpha1"]),
                resources: strings(&["*"]),
                ..RuleWithOperations::default()
            }]),
            failure_policy: Some(values.webhook.failure_policy.as_str().to_owned()),
            timeout_seconds: Some(values.webhook.timeout_seconds),
            side_effects: "None".to_owned(),
            admission_review_versions: vec!["v1".to_owned()],
            match_policy: Some("Equivalent".to_owned()),
            ..ValidatingWebhook::default()
        }]),
    }
}
