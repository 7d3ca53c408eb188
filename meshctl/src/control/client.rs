//! The debug API's client: one HTTP/1.1 GET over any byte stream (a TCP connection to a
//! local control plane, or a Kubernetes port-forward). hyper's client connection, no pool:
//! the CLI asks once and exits.

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// The largest answer read; a config dump of a big mesh is a few MiB.
pub(crate) const MAX_BODY: usize = 64 << 20;

/// A complete answer.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub(crate) status: StatusCode,
    pub(crate) content_type: Option<String>,
    pub(crate) body: Bytes,
}

/// Sends `GET path_and_query` with `Host: authority` over `io` and reads the whole answer.
/// Errors are described in lower case, causes included (`connection closed before message
/// completed`).
pub(crate) async fn get<I>(io: I, authority: &str, path_and_query: &str) -> Result<Response, String>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| chain(&e))?;
    // The connection future drives the socket; it ends when the answer was read (we ask
    // the server to close) or the stream breaks, which `send_request` reports as well.
    let conn = tokio::spawn(conn);
    let req = Request::get(path_and_query)
        .header(header::HOST, authority)
        .header(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("meshctl/", env!("CARGO_PKG_VERSION"))),
        )
        .header(header::ACCEPT, "application/json")
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("invalid request {path_and_query:?}: {e}"))?;
    let res = sender.send_request(req).await.map_err(|e| chain(&e))?;
    let (parts, body) = res.into_parts();
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                format!("the answer is larger than {} MiB", MAX_BODY >> 20)
            } else {
                chain(&*e)
            }
        })?
        .to_bytes();
    conn.abort();
    Ok(Response {
        status: parts.status,
        content_type: parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body,
    })
}

/// An error and its causes, `outer: inner: innermost`, skipping a cause whose text the
/// outer message already contains.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// Percent-encodes a query parameter value: everything but RFC 3986's unreserved
/// characters (so `+`, `&`, `=`, `/` and spaces survive any decoder).
pub(crate) fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[test]
    fn encodes_query_values() {
        assert_eq!(
            encode_query_value("reviews-v1.default"),
            "reviews-v1.default"
        );
        assert_eq!(
            encode_query_value("sidecar~10.0.0.1~a b/c+d&e=f"),
            "sidecar~10.0.0.1~a%20b%2Fc%2Bd%26e%3Df"
        );
        assert_eq!(encode_query_value("é"), "%C3%A9");
    }

    /// The request as it goes on the wire, and a raw answer read back.
    #[tokio::test]
    async fn sends_a_plain_get_and_reads_the_answer() {
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let mut buf = vec![0; 4096];
            let mut req = Vec::new();
            while !req.ends_with(b"\r\n\r\n") {
                let n = server.read(&mut buf).await.unwrap();
                assert_ne!(n, 0, "request ended early");
                req.extend_from_slice(&buf[..n]);
            }
            server
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 14\r\n\r\nno such proxy\n",
                )
                .await
                .unwrap();
            String::from_utf8(req).unwrap()
        });
        let res = get(client, "127.0.0.1:15014", "/debug/config?proxy=x")
            .await
            .unwrap();
        assert_eq!(res.status, StatusCode::NOT_FOUND);
        assert_eq!(res.content_type.as_deref(), Some("text/plain"));
        assert_eq!(&res.body[..], b"no such proxy\n");
        let req = server.await.unwrap().to_ascii_lowercase();
        assert!(
            req.starts_with("get /debug/config?proxy=x http/1.1\r\n"),
            "{req}"
        );
        assert!(req.contains("host: 127.0.0.1:15014\r\n"), "{req}");
        assert!(req.contains("accept: application/json\r\n"), "{req}");
    }

    #[tokio::test]
    async fn describes_a_stream_that_is_not_http() {
        let (client, mut server) = tokio::io::duplex(1024);
        tokio::spawn(async move {
            let mut buf = [0; 1024];
            let _ = server.read(&mut buf).await;
            let _ = server.write_all(b"\x15\x03\x01\x00\x02\x02\x50").await;
        });
        let err = get(client, "x", "/debug/proxies").await.unwrap_err();
        assert!(err.contains("invalid HTTP"), "{err}");
    }
}
