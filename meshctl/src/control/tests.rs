//! Address checks, answer decoding and messages of the debug API client.

use super::*;

fn response(status: u16, content_type: &str, body: &str) -> client::Response {
    client::Response {
        status: StatusCode::from_u16(status).unwrap(),
        content_type: Some(content_type.to_owned()),
        body: bytes::Bytes::copy_from_slice(body.as_bytes()),
    }
}

fn local() -> Location {
    Location::Local("127.0.0.1:15014".into())
}

#[test]
fn checks_addresses() {
    assert_eq!(parse_addr("127.0.0.1:15014").unwrap(), "127.0.0.1:15014");
    assert_eq!(parse_addr("[::1]:15014").unwrap(), "[::1]:15014");
    assert_eq!(
        parse_addr("mesh-control.local:15014").unwrap(),
        "mesh-control.local:15014"
    );
    assert!(parse_addr("localhost").unwrap_err().contains("no port"));
    assert!(parse_addr(":15014").unwrap_err().contains("no host"));
    assert!(parse_addr("host:http").unwrap_err().contains("\"http\""));
    assert!(parse_addr("::1:15014").unwrap_err().contains("brackets"));
    assert!(parse_addr("host:0").is_err());
}

#[test]
fn decodes_and_explains_bad_answers() {
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        #[allow(dead_code, reason = "only decoding is tested")]
        a: u32,
    }
    let ok: Doc = decode(
        local(),
        "/x",
        response(200, "application/json", r#"{"a": 1}"#),
    )
    .unwrap();
    assert_eq!(ok.a, 1);

    let err = decode::<Doc>(
        local(),
        "/debug/config?proxy=x",
        response(404, "text/plain", "no proxy matches \"x\"\n"),
    )
    .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
    assert_eq!(
        err.to_string(),
        "the control plane at 127.0.0.1:15014 answered GET /debug/config?proxy=x with 404 Not Found: no proxy matches \"x\""
    );

    let err = decode::<Doc>(
        local(),
        "/x",
        response(200, "text/html", "<!DOCTYPE html><p>hi</p>"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("not JSON (content-type text/html"), "{err}");
    assert!(err.contains("<!DOCTYPE html>"), "{err}");
    assert!(
        err.contains("is 127.0.0.1:15014 the debug address"),
        "{err}"
    );

    let err = decode::<Doc>(local(), "/x", response(200, "application/json", "{\"a\": "))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not JSON"), "{err}");

    let err = decode::<Doc>(
        local(),
        "/x",
        response(200, "application/json", r#"{"a": 1, "b": 2}"#),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("cannot read the control plane's answer to GET /x: unknown field `b`"),
        "{err}"
    );
    assert!(
        err.contains("may not match mesh-control's version"),
        "{err}"
    );
}

#[test]
fn cuts_long_bodies() {
    assert_eq!(excerpt(b"  short \n", 10), "short");
    assert_eq!(excerpt(b"", 10), "(empty body)");
    assert_eq!(excerpt("ééééé".as_bytes(), 3), "ééé…");
}

#[test]
fn names_the_pod_once_known() {
    let mut at = Location::Pod {
        namespace: "mesh-system".into(),
        pod: None,
    };
    assert_eq!(at.to_string(), "namespace mesh-system");
    at = Location::Pod {
        namespace: "mesh-system".into(),
        pod: Some("mesh-control-7d9".into()),
    };
    assert_eq!(
        at.to_string(),
        "pod mesh-system/mesh-control-7d9 (port-forward to 15014)"
    );
    assert_eq!(at.hint(), "");
    assert!(config_path("a b").ends_with("proxy=a%20b"));
    assert_eq!(
        secrets_path("sidecar~10.0.0.5~a.b"),
        "/debug/secrets?proxy=sidecar~10.0.0.5~a.b"
    );
}
