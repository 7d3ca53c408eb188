use std::time::UNIX_EPOCH;

use serde_json::{Value, json};

use super::*;

fn record() -> AccessRecord {
    AccessRecord {
        start_time: UNIX_EPOCH + Duration::from_millis(1_709_251_199_250),
        duration: Duration::from_micros(12_900),
        method: "POST".into(),
        path: "/hipstershop.CartService/GetCart?x=\"1\"".into(),
        protocol: version_str(Version::HTTP_2).into(),
        authority: "reviews.default.svc.cluster.local:9080".into(),
        response_code: 503,
        grpc_status: Some(14),
        response_flags: ResponseFlag::UpstreamConnectionFailure,
        bytes_received: 12,
        bytes_sent: 95,
        upstream_host: "10.0.0.7:15008".into(),
        upstream_cluster: "outbound|9080|v2|reviews.default.svc.cluster.local".into(),
        route_name: "reviews-v2".into(),
        request_id: "8d3b-41".into(),
        user_agent: "grpc-go/1.6\u{7}".into(),
        source_principal: "spiffe://cluster.local/ns/default/sa/productpage".into(),
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        ..AccessRecord::new(Reporter::Source)
    }
}

async fn logged(f: impl FnOnce(&AccessLog)) -> (Vec<Value>, Counter) {
    let dropped = Counter::default();
    let (log, task) = AccessLog::spawn(Vec::new(), 16, dropped.clone());
    f(&log);
    drop(log);
    let out = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("writer finishes once handles drop")
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'), "{text:?}");
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (lines, dropped)
}

#[tokio::test]
async fn http_record_is_one_json_line_with_every_field() {
    let (lines, dropped) = logged(|log| log.log(&record())).await;
    assert_eq!(dropped.get(), 0);
    assert_eq!(
        lines,
        [json!({
            "start_time": "2024-02-29T23:59:59.250Z",
            "duration_ms": 12,
            "reporter": "source",
            "method": "POST",
            "path": "/hipstershop.CartService/GetCart?x=\"1\"",
            "protocol": "HTTP/2",
            "authority": "reviews.default.svc.cluster.local:9080",
            "response_code": 503,
            "grpc_status": 14,
            "response_flags": "UF",
            "bytes_received": 12,
            "bytes_sent": 95,
            "upstream_host": "10.0.0.7:15008",
            "upstream_cluster": "outbound|9080|v2|reviews.default.svc.cluster.local",
            "route_name": "reviews-v2",
            "request_id": "8d3b-41",
            "user_agent": "grpc-go/1.6\u{7}",
            "source_principal": "spiffe://cluster.local/ns/default/sa/productpage",
            "destination_principal": null,
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        })]
    );
}

#[tokio::test]
async fn empty_record_has_nulls_and_defaults() {
    let (lines, _) = logged(|log| {
        let mut r = AccessRecord::new(Reporter::Destination);
        r.protocol = version_str(Version::HTTP_11).into();
        log.log(&r);
    })
    .await;
    let l = &lines[0];
    assert_eq!(l["reporter"], "destination");
    assert_eq!(l["protocol"], "HTTP/1.1");
    assert_eq!(l["response_code"], 0);
    assert_eq!(l["response_flags"], "-");
    assert_eq!(l["method"], "");
    for k in [
        "grpc_status",
        "upstream_host",
        "upstream_cluster",
        "request_id",
        "user_agent",
        "source_principal",
        "destination_principal",
        "trace_id",
        "route_name",
    ] {
        assert!(l[k].is_null(), "{k}: {l}");
    }
    assert_eq!(l.as_object().unwrap().len(), 20);
}

#[tokio::test]
async fn tcp_record_line() {
    let (lines, _) = logged(|log| {
        let r = TcpRecord {
            start_time: UNIX_EPOCH,
            duration: Duration::from_secs(3),
            downstream_remote_address: "10.0.0.9:40000".into(),
            bytes_received: 100,
            bytes_sent: 2000,
            upstream_host: "127.0.0.1:5432".into(),
            response_flags: ResponseFlag::DownstreamConnectionTermination,
            ..TcpRecord::new(Reporter::Destination)
        };
        log.log_tcp(&r);
    })
    .await;
    assert_eq!(
        lines,
        [json!({
            "start_time": "1970-01-01T00:00:00.000Z",
            "duration_ms": 3000,
            "reporter": "destination",
            "protocol": "TCP",
            "downstream_remote_address": "10.0.0.9:40000",
            "response_flags": "DC",
            "bytes_received": 100,
            "bytes_sent": 2000,
            "upstream_host": "127.0.0.1:5432",
            "upstream_cluster": null,
            "route_name": null,
            "source_principal": null,
            "destination_principal": null,
        })]
    );
}

#[tokio::test]
async fn many_records_arrive_in_order() {
    let (lines, dropped) = logged(|log| {
        for i in 0..10 {
            log.log(&AccessRecord {
                path: format!("/{i}"),
                ..AccessRecord::new(Reporter::Source)
            });
        }
    })
    .await;
    assert_eq!(dropped.get(), 0);
    let paths: Vec<_> = lines.iter().map(|l| l["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        ["/0", "/1", "/2", "/3", "/4", "/5", "/6", "/7", "/8", "/9"]
    );
}

/// A current-thread runtime does not run the writer until the test yields, so a channel of
/// 2 takes exactly 2 records and drops the rest.
#[tokio::test(flavor = "current_thread")]
async fn full_channel_drops_and_counts() {
    let dropped = Counter::default();
    let (log, task) = AccessLog::spawn(Vec::new(), 2, dropped.clone());
    for i in 0..5 {
        log.log(&AccessRecord {
            path: format!("/{i}"),
            ..AccessRecord::new(Reporter::Source)
        });
    }
    assert_eq!(dropped.get(), 3);
    drop(log);
    let out = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(String::from_utf8(out).unwrap().lines().count(), 2);
}

#[tokio::test]
async fn write_errors_count_as_drops() {
    struct Broken;
    impl AsyncWrite for Broken {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            std::task::Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }
    let dropped = Counter::default();
    let (log, task) = AccessLog::spawn(Broken, 16, dropped.clone());
    log.log(&record());
    log.log(&record());
    drop(log);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dropped.get(), 2);
}

#[test]
fn disabled_log_does_nothing() {
    let log = AccessLog::disabled();
    assert!(!log.is_enabled());
    // No runtime needed, nothing happens.
    log.log(&record());
    log.log_tcp(&TcpRecord::new(Reporter::Source));
    assert!(!AccessLog::default().is_enabled());
}
