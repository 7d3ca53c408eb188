//! Interoperability with another gRPC implementation: a Python grpcio client, generated at
//! test time from `proto/demo.proto` with `python3 -m grpc_tools.protoc` (Debian:
//! `python3-grpc-tools`), calls `ListProducts` on our catalog and `Convert` on our
//! currency service, proving the proto and the HTTP/2 framing match what upstream's own
//! clients speak. Without grpc_tools it prints SKIPPED, and fails when `MESH_E2E=require`.

use std::{net::SocketAddr, path::Path, process::Command};

use online_boutique::{currency, productcatalog, server::Server};

/// The Python client: prints what it got, one fact per line.
const CLIENT: &str = r#"
import sys
import grpc
import demo_pb2
import demo_pb2_grpc

catalog_addr, currency_addr = sys.argv[1], sys.argv[2]
with grpc.insecure_channel(catalog_addr) as channel:
    catalog = demo_pb2_grpc.ProductCatalogServiceStub(channel)
    products = catalog.ListProducts(demo_pb2.Empty(), timeout=10).products
    print("products", len(products))
    mug = [p for p in products if p.id == "6E92ZMYYFZ"][0]
    print("mug", mug.name, mug.price_usd.currency_code, mug.price_usd.units, mug.price_usd.nanos)
    try:
        catalog.GetProduct(demo_pb2.GetProductRequest(id="NOPE"), timeout=10)
    except grpc.RpcError as e:
        print("missing", e.code().name)
with grpc.insecure_channel(currency_addr) as channel:
    currency = demo_pb2_grpc.CurrencyServiceStub(channel)
    money = currency.Convert(
        demo_pb2.CurrencyConversionRequest(
            **{"from": demo_pb2.Money(currency_code="EUR", units=10, nanos=500000000)},
            to_code="JPY",
        ),
        timeout=10,
    )
    print("converted", money.currency_code, money.units, money.nanos)
"#;

/// A Python with grpc_tools and grpcio, or `None`.
fn python() -> Option<String> {
    let candidates = std::env::var("PYTHON")
        .into_iter()
        .chain(["python3".to_string(), "/usr/bin/python3".to_string()]);
    candidates.into_iter().find(|python| {
        Command::new(python)
            .args(["-c", "import grpc, grpc_tools.protoc"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

async fn start(router: online_boutique::server::Router) -> SocketAddr {
    let server = Server::bind(SocketAddr::from(([127, 0, 0, 1], 0)), router)
        .await
        .unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.run());
    addr
}

#[tokio::test]
async fn python_grpcio_client_reaches_our_services() {
    let Some(python) = python() else {
        let required = std::env::var("MESH_E2E").is_ok_and(|v| v == "require");
        assert!(
            !required,
            "python3 with grpcio and grpc_tools not found (install python3-grpc-tools) and \
             MESH_E2E=require"
        );
        println!("SKIPPED: python3 with grpcio and grpc_tools (python3-grpc-tools) not found");
        return;
    };

    let out = tempfile::tempdir().unwrap();
    let proto_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    let protoc = Command::new(&python)
        .args(["-m", "grpc_tools.protoc"])
        .arg(format!("-I{}", proto_dir.display()))
        .arg(format!("--python_out={}", out.path().display()))
        .arg(format!("--grpc_python_out={}", out.path().display()))
        .arg(proto_dir.join("demo.proto"))
        .output()
        .unwrap();
    assert!(
        protoc.status.success(),
        "grpc_tools.protoc failed: {}",
        String::from_utf8_lossy(&protoc.stderr)
    );
    let script = out.path().join("client.py");
    std::fs::write(&script, CLIENT).unwrap();

    let catalog = start(productcatalog::router(&productcatalog::Config::default())).await;
    let currency = start(currency::router()).await;
    let run = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(catalog.to_string())
        .arg(currency.to_string())
        .current_dir(out.path())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), run)
        .await
        .expect("the Python client finishes within 60 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the Python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "products 9",
            "mug Mug USD 8 990000000",
            "missing NOT_FOUND",
            // 10.5 EUR × 126.40 = 1327.2 JPY.
            "converted JPY 1327 200000000",
        ]
    );
}
