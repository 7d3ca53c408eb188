use serde_json::json;

use super::*;

fn review_json(kind: &str, resource: &str, operation: &str, object: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": kind},
            "resource": {"group": "", "version": "v1", "resource": resource},
            "namespace": "shop",
            "operation": operation,
            "userInfo": {"username": "admin"},
            "object": object,
            "oldObject": null,
            "dryRun": false,
        }
    })
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "web-"},
        "spec": {"containers": [{"name": "web", "image": "nginx"}]},
    })
}

fn answer(body: &Value) -> Value {
    let out = review(&serde_json::to_vec(body).unwrap(), &Context::default()).unwrap();
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn unparsable_bodies_are_errors() {
    let ctx = Context::default();
    assert!(matches!(review(b"{not json", &ctx), Err(Error::Parse(_))));
    assert!(matches!(
        review(br#"{"apiVersion":"v1","kind":"Pod"}"#, &ctx),
        Err(Error::Kind(k)) if k == "Pod"
    ));
    assert!(matches!(
        review(
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
            &ctx
        ),
        Err(Error::NoRequest)
    ));
}

#[test]
fn other_kinds_and_operations_are_allowed_untouched() {
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}});
    for body in [
        review_json("Service", "services", "CREATE", service),
        review_json("Pod", "pods", "UPDATE", pod()),
        review_json("Pod", "pods", "DELETE", Value::Null),
    ] {
        let out = answer(&body);
        let response = &out["response"];
        assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert_eq!(response["allowed"], true);
        assert!(response.get("patch").is_none(), "{out}");
        assert!(response.get("patchType").is_none(), "{out}");
        assert_eq!(out["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(out["kind"], "AdmissionReview");
    }
}

#[test]
fn a_pod_create_is_patched_with_base64_json_patch() {
    let out = answer(&review_json("Pod", "pods", "CREATE", pod()));
    let response = &out["response"];
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");
    assert!(response["patch"].is_string(), "{out}");
}

#[test]
fn an_unreadable_pod_is_denied() {
    let bad = json!({"metadata": {"labels": "not-a-map"}, "spec": {"containers": []}});
    let out = answer(&review_json("Pod", "pods", "CREATE", bad));
    assert_eq!(out["response"]["allowed"], false);
    assert_eq!(out["response"]["status"]["code"], 400);
    let no_object = answer(&review_json("Pod", "pods", "CREATE", Value::Null));
    assert_eq!(no_object["response"]["allowed"], false);
}

#[test]
fn host_network_pods_are_allowed_with_a_warning() {
    let mut p = pod();
    p["spec"]["hostNetwork"] = json!(true);
    let out = answer(&review_json("Pod", "pods", "CREATE", p));
    assert_eq!(out["response"]["allowed"], true);
    assert!(out["response"].get("patch").is_none());
    let warning = out["response"]["warnings"][0].as_str().unwrap();
    assert!(warning.contains("hostNetwork"), "{warning}");
}

// === HTTP ===

fn request(method: Method, path: &str, content_type: Option<&str>, body: Bytes) -> Request<Body> {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(ct) = content_type {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    req.body(Full::new(body)).unwrap()
}

async fn status_of(req: Request<Body>) -> StatusCode {
    handle(req, &Settings::default()).await.status()
}

#[tokio::test]
async fn routes_methods_and_media_types() {
    let empty = Bytes::new;
    assert_eq!(
        status_of(request(Method::GET, "/healthz", None, empty())).await,
        StatusCode::OK
    );
    assert_eq!(
        status_of(request(Method::POST, "/healthz", None, empty())).await,
        StatusCode::METHOD_NOT_ALLOWED
    );
    let wrong = handle(
        request(Method::GET, "/inject", None, empty()),
        &Settings::default(),
    )
    .await;
    assert_eq!(wrong.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong.headers()[header::ALLOW], "POST");
    assert_eq!(
        status_of(request(Method::GET, "/other", None, empty())).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status_of(request(
            Method::POST,
            "/inject",
            Some("text/plain"),
            empty()
        ))
        .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    assert_eq!(
        status_of(request(
            Method::POST,
            "/inject",
            Some("application/json"),
            Bytes::from_static(b"[]")
        ))
        .await,
        StatusCode::BAD_REQUEST
    );
    let body = serde_json::to_vec(&review_json("Pod", "pods", "CREATE", pod())).unwrap();
    assert_eq!(
        status_of(request(
            Method::POST,
            "/inject",
            Some("application/json; charset=utf-8"),
            Bytes::from(body)
        ))
        .await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_without_a_content_length() {
    // No Content-Length header: the limit on the body itself answers.
    let big = Bytes::from(vec![b' '; MAX_BODY + 1]);
    let req = request(Method::POST, "/inject", Some("application/json"), big);
    assert!(req.headers().get(header::CONTENT_LENGTH).is_none());
    assert_eq!(status_of(req).await, StatusCode::PAYLOAD_TOO_LARGE);
    // Exactly the limit is read (and is not a review).
    let at_limit = Bytes::from(vec![b' '; MAX_BODY]);
    let req = request(Method::POST, "/inject", Some("application/json"), at_limit);
    assert_eq!(status_of(req).await, StatusCode::BAD_REQUEST);
}

// === flags ===

#[test]
fn quantities_are_checked_as_kubernetes_reads_them() {
    for ok in [
        "10m",
        "0.5",
        "64Mi",
        "1Gi",
        "128974848",
        "1e3",
        "1E+3",
        "100k",
        "+1",
    ] {
        assert!(valid_quantity(ok), "{ok}");
    }
    for bad in [
        "", "lots", "10 m", "1.2.3", "Mi", "10mb", "1e", "10KiB", "-",
    ] {
        assert!(!valid_quantity(bad), "{bad}");
    }
}

#[test]
fn native_sidecars_follow_the_flag_then_the_cluster() {
    use clap::Parser as _;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        webhook: Args,
    }
    let settings = |argv: &[&str], cluster: bool| {
        let cli = Cli::try_parse_from(std::iter::once("mesh-control").chain(argv.iter().copied()))
            .unwrap();
        cli.webhook
            .settings("example.org", "mesh", cluster)
            .unwrap()
    };
    assert!(settings(&[], true).inject.native_sidecars);
    assert!(!settings(&[], false).inject.native_sidecars);
    assert!(
        settings(&["--native-sidecars", "always"], false)
            .inject
            .native_sidecars
    );
    assert!(
        !settings(&["--native-sidecars", "never"], true)
            .inject
            .native_sidecars
    );

    let s = settings(&[], true);
    assert_eq!(s.inject.control_plane_addr, "mesh-control.mesh.svc:15012");
    assert_eq!(
        s.inject.control_plane_identity.unwrap().as_str(),
        "spiffe://example.org/ns/mesh/sa/mesh-control"
    );
    assert_eq!(s.validation.trust_domain, "example.org");
}
