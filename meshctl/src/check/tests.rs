//! The CA's health judgement and the reading of webhook `caBundle`s.

use mesh_api::status::{CertInfo, RetiringRoot, RotationStatus};
use serde_json::json;

use super::*;

const NOW_MS: u64 = 1_741_082_400_000;
const NOW: i64 = (NOW_MS / 1000) as i64;
const DAY: i64 = 86_400;

fn cert(subject: &str, serial: &str, days_left: i64) -> CertInfo {
    CertInfo {
        subject: subject.to_owned(),
        issuer: subject.to_owned(),
        serial: serial.to_owned(),
        not_before: NOW - 365 * DAY,
        not_after: NOW + days_left * DAY,
        spiffe_id: None,
        is_ca: true,
    }
}

fn ca(signing_days: i64) -> CaStatus {
    let root = cert("CN=mesh root", "01", signing_days);
    CaStatus {
        now_unix_ms: NOW_MS,
        trust_domain: "cluster.local".to_owned(),
        source: "kubernetes:mesh-system/mesh-ca".to_owned(),
        plug_in: false,
        signing: root.clone(),
        intermediates: vec![],
        trust_bundle: vec![root],
        rotation: RotationStatus {
            phase: RotationPhase::Stable,
            next: None,
            switch_at_unix_ms: None,
            retiring: vec![],
        },
        workload_cert_ttl_seconds: 86_400,
        problems: vec![],
    }
}

#[test]
fn a_long_lived_stable_ca_is_healthy() {
    let verdict = ca_verdict(&ca(3650));
    assert!(verdict.failures.is_empty() && verdict.warnings.is_empty());
    assert_eq!(
        verdict.summary,
        "signing with CN=mesh root (expires in 3650 days), 1 root trusted, rotation stable"
    );
}

#[test]
fn a_root_expiring_within_30_days_fails_with_how_to_rotate() {
    assert_eq!(
        ca_verdict(&ca(12)).failures,
        [
            "the signing certificate CN=mesh root expires in 12 days: rotate the root: `mesh-control ca rotate` (see its --help)"
        ]
    );
    assert!(ca_verdict(&ca(30)).failures.is_empty());
    assert_eq!(
        ca_verdict(&ca(-1)).failures,
        [
            "the signing certificate CN=mesh root has expired: rotate the root: `mesh-control ca rotate` (see its --help)"
        ]
    );

    // A plug-in CA: the intermediate signs, the root is in the bundle; either expiring fails.
    let mut plug_in = ca(3650);
    plug_in.plug_in = true;
    plug_in.signing = cert("CN=mesh intermediate", "02", 20);
    plug_in.trust_bundle = vec![cert("CN=corp root", "03", 10)];
    let failures = ca_verdict(&plug_in).failures;
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(failures[0].starts_with("the signing certificate CN=mesh intermediate expires in 20 days: replace the plug-in CA (Secret cacerts)"));
    assert!(failures[1].starts_with("the root CN=corp root expires in 10 days"));
}

#[test]
fn a_rotation_past_its_time_is_stuck() {
    let mut announced = ca(3650);
    announced.rotation.phase = RotationPhase::Announced;
    announced.rotation.next = Some(cert("CN=next root", "09", 7300));
    announced.rotation.switch_at_unix_ms = Some(NOW_MS - 60_000);
    assert!(
        ca_verdict(&announced).failures.is_empty(),
        "a minute late is in time"
    );
    announced.rotation.switch_at_unix_ms = Some(NOW_MS - 3_600_000);
    assert_eq!(
        ca_verdict(&announced).failures,
        [
            "root rotation is stuck: the announced root should have started signing 60 minutes ago; see mesh-control's logs"
        ]
    );

    // Draining: a retiring root expiring soon is expected; overstaying its drop time is not.
    let mut draining = ca(3650);
    draining.rotation.phase = RotationPhase::Draining;
    let old = cert("CN=old root", "07", 5);
    draining.trust_bundle.push(old.clone());
    draining.rotation.retiring = vec![RetiringRoot {
        root: old,
        drop_after_unix_ms: NOW_MS + 3_600_000,
    }];
    let verdict = ca_verdict(&draining);
    assert!(verdict.failures.is_empty(), "{:?}", verdict.failures);
    assert!(
        verdict
            .summary
            .ends_with("2 roots trusted, rotation draining")
    );
    draining.rotation.retiring[0].drop_after_unix_ms = NOW_MS - 2 * 3_600_000;
    assert_eq!(
        ca_verdict(&draining).failures,
        [
            "root rotation is stuck: the retired root CN=old root should have left the trust bundle 120 minutes ago; see mesh-control's logs"
        ]
    );
}

#[test]
fn problems_the_ca_works_around_are_warnings() {
    let mut status = ca(3650);
    status.problems = vec!["next-root-cert.pem is not a CA certificate; ignored".to_owned()];
    let verdict = ca_verdict(&status);
    assert!(verdict.failures.is_empty());
    assert_eq!(verdict.warnings, status.problems);
}

fn pem() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::default();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.self_signed(&key).unwrap().pem()
}

fn b64(bytes: &[u8]) -> serde_json::Value {
    serde_json::to_value(ByteString(bytes.to_vec())).unwrap()
}

#[test]
fn reads_a_ca_bundle_and_the_name_the_api_server_expects() {
    let pem = pem();
    let hook = json!({"name": "inject.sidecar.mesh.dev", "clientConfig": {
        "service": {"name": "mesh-control", "namespace": "mesh", "path": "/inject", "port": 15017},
        "caBundle": b64(pem.as_bytes()),
    }});
    let bundle = ca_bundle(&hook, "mesh-system").unwrap();
    assert_eq!(bundle.certs.len(), 1);
    assert_eq!(
        bundle.server_name, "mesh-control.mesh.svc",
        "the service's namespace wins"
    );

    let no_service = json!({"clientConfig": {"caBundle": b64(format!("{pem}{pem}").as_bytes())}});
    let bundle = ca_bundle(&no_service, "mesh-system").unwrap();
    assert_eq!(bundle.certs.len(), 2);
    assert_eq!(bundle.server_name, "mesh-control.mesh-system.svc");
}

#[test]
fn says_what_is_wrong_with_a_ca_bundle() {
    let err = |hook: serde_json::Value| ca_bundle(&hook, "mesh-system").unwrap_err();
    assert_eq!(err(json!({"clientConfig": {}})), "it has no caBundle");
    assert_eq!(
        err(json!({"clientConfig": {"caBundle": ""}})),
        "it has no caBundle"
    );
    assert!(
        err(json!({"clientConfig": {"caBundle": "not base64!"}}))
            .starts_with("its caBundle is not base64"),
    );
    assert_eq!(
        err(json!({"clientConfig": {"caBundle": b64(b"hello")}})),
        "its caBundle: no PEM certificate in it"
    );
    assert!(
        err(json!({"clientConfig": {"caBundle": b64(b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n")}}))
            .starts_with("its caBundle: not PEM certificates ("),
    );
}
