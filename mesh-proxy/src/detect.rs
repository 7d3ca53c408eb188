//! Protocol detection for connections whose port does not declare a protocol.
//!
//! The port's declared protocol (port name / `appProtocol`, carried in the model as
//! [`AppProtocol`]) decides when present. Otherwise the proxy peeks at the first bytes the
//! client sends, for at most [`SNIFF_TIMEOUT`]: the HTTP/2 preface, an HTTP/1 request line,
//! or a TLS handshake. A client that sends nothing in time is speaking a server-first
//! protocol (SMTP, MySQL, a banner) and gets opaque TCP — the proxy never waits longer, so
//! such protocols do not hang. Well-known server-first ports are opaque without sniffing.

use std::time::Duration;

use mesh_api::model::AppProtocol;
use tokio::net::TcpStream;

/// The longest the proxy waits for a client's first bytes before treating the connection
/// as opaque TCP.
pub const SNIFF_TIMEOUT: Duration = Duration::from_millis(100);

/// Ports of server-first (or otherwise unsniffable) protocols, opaque unless declared:
/// SMTP, submission, MySQL, PostgreSQL, Redis, memcached, MongoDB, AMQP, Kafka, ZooKeeper.
pub const OPAQUE_PORTS: &[u16] = &[
    25, 587, 3306, 5432, 6379, 11211, 27017, 5672, 9092, 2181, 4222,
];

/// What the proxy does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.x or HTTP/2 (prior knowledge); hyper's auto server tells them apart.
    Http,
    /// Bytes, forwarded as they come.
    Opaque,
}

/// The HTTP/2 client connection preface.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// HTTP/1 methods a request line may start with.
const METHODS: &[&[u8]] = &[
    b"GET ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"HEAD ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
];

/// Classifies the first bytes of a connection. `None`: not enough bytes to tell yet.
pub fn classify(prefix: &[u8]) -> Option<Protocol> {
    if prefix.is_empty() {
        return None;
    }
    let n = prefix.len().min(H2_PREFACE.len());
    if prefix[..n] == H2_PREFACE[..n] {
        return (n == H2_PREFACE.len()).then_some(Protocol::Http);
    }
    let mut undecided = false;
    for m in METHODS {
        let k = prefix.len().min(m.len());
        if prefix[..k] == m[..k] {
            if k == m.len() {
                return Some(Protocol::Http);
            }
            undecided = true;
        }
    }
    if undecided {
        None
    } else {
        // TLS (0x16 0x03 ..) and everything else: opaque. TLS originated by the app is
        // forwarded untouched.
        Some(Protocol::Opaque)
    }
}

/// Decides how to handle a connection to a port with `declared` protocol: by declaration,
/// by well-known port, or by peeking at the client's first bytes.
pub async fn detect(stream: &TcpStream, declared: AppProtocol, port: u16) -> Protocol {
    match declared {
        AppProtocol::Http | AppProtocol::Http2 | AppProtocol::Grpc => return Protocol::Http,
        AppProtocol::Tcp | AppProtocol::Tls => return Protocol::Opaque,
        AppProtocol::Unknown => {}
    }
    if OPAQUE_PORTS.contains(&port) {
        return Protocol::Opaque;
    }
    let deadline = tokio::time::Instant::now() + SNIFF_TIMEOUT;
    let mut buf = [0u8; 24];
    loop {
        let peeked = tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await;
        match peeked {
            // Timed out: a server-first protocol.
            Err(_) => return Protocol::Opaque,
            // Closed or failed: whatever we do next will see it; opaque is the cheap path.
            Ok(Err(_)) | Ok(Ok(0)) => return Protocol::Opaque,
            Ok(Ok(n)) => {
                if let Some(p) = classify(&buf[..n]) {
                    return p;
                }
                if n == buf.len() {
                    return Protocol::Opaque;
                }
                // `peek` returns at once while data is buffered: wait for more to arrive.
                if tokio::time::timeout_at(deadline, stream.readable())
                    .await
                    .is_err()
                {
                    return Protocol::Opaque;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_prefixes() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(Protocol::Http));
        assert_eq!(classify(b"POST /x"), Some(Protocol::Http));
        assert_eq!(classify(H2_PREFACE), Some(Protocol::Http));
        assert_eq!(classify(b"PRI * HT"), None);
        assert_eq!(classify(b"GE"), None);
        assert_eq!(classify(b"\x16\x03\x01\x02\x00"), Some(Protocol::Opaque));
        assert_eq!(classify(b"*1\r\n$4\r\nPING\r\n"), Some(Protocol::Opaque));
        assert_eq!(classify(b"GEX"), Some(Protocol::Opaque));
        assert_eq!(classify(b""), None);
    }

    #[tokio::test]
    async fn server_first_protocols_do_not_wait_past_the_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (server_side, _) = listener.accept().await.unwrap();
        let started = std::time::Instant::now();
        let p = detect(&server_side, AppProtocol::Unknown, 9999).await;
        assert_eq!(p, Protocol::Opaque);
        // Bounded by the sniff timeout (generous margin for a loaded machine).
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn sniffs_http_and_honours_declarations() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let (server_side, _) = listener.accept().await.unwrap();
        assert_eq!(
            detect(&server_side, AppProtocol::Unknown, 8080).await,
            Protocol::Http
        );
        assert_eq!(
            detect(&server_side, AppProtocol::Tcp, 8080).await,
            Protocol::Opaque
        );
        assert_eq!(
            detect(&server_side, AppProtocol::Unknown, 6379).await,
            Protocol::Opaque
        );
        assert_eq!(
            detect(&server_side, AppProtocol::Grpc, 6379).await,
            Protocol::Http
        );
    }
}
