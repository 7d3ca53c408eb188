//! A minimal blocking HTTP/1.1 client for the load generator: one keep-alive connection,
//! one request at a time (no pipelining), response heads parsed with `httparse`, bodies
//! (`Content-Length`, chunked, or until close) read and discarded but counted.
//!
//! Blocking sockets on dedicated threads keep the client's own overhead small and, above
//! all, let each thread send at a precise instant (see [`super::load`]); an async runtime's
//! millisecond timer wheel would add up to a millisecond of scheduling error to every
//! request. Every read and write has a timeout and every size a limit, so nothing here can
//! hang or grow without bound.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest response body accepted.
const MAX_BODY: usize = 16 << 20;
/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4096;

/// What the load generator needs to know about a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Response {
    /// Status code.
    pub(crate) status: u16,
    /// Body length in bytes (after de-chunking).
    pub(crate) body_len: usize,
    /// Whether the connection may carry another request.
    pub(crate) keep_alive: bool,
}

/// A `GET` request with `Host`, as the bytes sent for every request of a run.
pub(crate) fn get_request(host: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: xtask-bench\r\n\r\n").into_bytes()
}

/// One client connection.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl Conn {
    /// Connects with `timeout` for the connect and for every later read and write.
    pub(crate) fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Self {
            stream,
            buf: vec![0; 16 * 1024],
            start: 0,
            end: 0,
        })
    }

    /// Sends `request` and reads the whole response.
    pub(crate) fn roundtrip(&mut self, request: &[u8]) -> io::Result<Response> {
        self.stream.write_all(request)?;
        self.read_response()
    }

    /// Reads more bytes into the buffer (compacting or growing it first); fails on EOF,
    /// timeout, or when more than `limit` unconsumed bytes would be needed.
    fn fill(&mut self, limit: usize) -> io::Result<()> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            if self.buf.len() >= limit {
                return Err(invalid(format!("response part larger than {limit} bytes")));
            }
            let grown = (self.buf.len() * 2).min(limit.max(self.buf.len()));
            self.buf.resize(grown, 0);
        }
        let n = self.stream.read(&mut self.buf[self.end..])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed mid-response",
            ));
        }
        self.end += n;
        Ok(())
    }

    fn read_response(&mut self) -> io::Result<Response> {
        let head = loop {
            // Each pass either parses the head or reads at least one more byte (bounded by
            // MAX_HEAD and the read timeout).
            if let Some(head) = parse_head(&self.buf[self.start..self.end])? {
                break head;
            }
            self.fill(MAX_HEAD)?;
        };
        self.start += head.len;
        let body_len = match head.body {
            Body::Empty => 0,
            Body::Length(n) => {
                if n > MAX_BODY {
                    return Err(invalid(format!("body of {n} bytes")));
                }
                self.skip(n)?;
                n
            }
            Body::Chunked => self.read_chunked()?,
            Body::UntilClose => self.read_until_close()?,
        };
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        Ok(Response {
            status: head.status,
            body_len,
            keep_alive: head.keep_alive && head.body != Body::UntilClose,
        })
    }

    /// Consumes exactly `n` body bytes.
    fn skip(&mut self, mut n: usize) -> io::Result<()> {
        while n > 0 {
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
                self.fill(self.buf.len())?;
            }
            let take = n.min(self.end - self.start);
            self.start += take;
            n -= take;
        }
        Ok(())
    }

    /// Reads one CRLF-terminated line (without the CRLF).
    fn line(&mut self) -> io::Result<String> {
        loop {
            let avail = &self.buf[self.start..self.end];
            if let Some(i) = avail.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&avail[..i]).into_owned();
                self.start += i + 2;
                return Ok(line);
            }
            self.fill(MAX_LINE)?;
        }
    }

    fn read_chunked(&mut self) -> io::Result<usize> {
        let mut total = 0usize;
        // Bounded: every chunk is at least one byte and the total is capped by MAX_BODY.
        loop {
            let line = self.line()?;
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| invalid(format!("bad chunk size {size_text:?}")))?;
            if size == 0 {
                // Trailers, up to the empty line.
                for _ in 0..64 {
                    if self.line()?.is_empty() {
                        return Ok(total);
                    }
                }
                return Err(invalid("too many trailer lines"));
            }
            total = total.saturating_add(size);
            if total > MAX_BODY {
                return Err(invalid(format!("chunked body over {MAX_BODY} bytes")));
            }
            self.skip(size)?;
            if !self.line()?.is_empty() {
                return Err(invalid("chunk not followed by CRLF"));
            }
        }
    }

    fn read_until_close(&mut self) -> io::Result<usize> {
        let mut total = self.end - self.start;
        self.start = 0;
        self.end = 0;
        loop {
            let n = self.stream.read(&mut self.buf)?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
            if total > MAX_BODY {
                return Err(invalid(format!("body over {MAX_BODY} bytes")));
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Empty,
    Length(usize),
    Chunked,
    UntilClose,
}

#[derive(Debug)]
struct Head {
    len: usize,
    status: u16,
    body: Body,
    keep_alive: bool,
}

/// Parses a response head from the start of `bytes`: `None` when more bytes are needed.
fn parse_head(bytes: &[u8]) -> io::Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let mut res = httparse::Response::new(&mut headers);
    let len = match res.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(invalid(format!("bad response head: {e}"))),
    };
    let status = res.code.unwrap_or(0);
    let http10 = res.version == Some(0);
    let mut length = None;
    let mut chunked = false;
    let mut keep_alive = !http10;
    for h in res.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            let n: usize = value
                .parse()
                .map_err(|_| invalid(format!("bad content-length {value:?}")))?;
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    let body = if (100..200).contains(&status) || status == 204 || status == 304 {
        Body::Empty
    } else if chunked {
        Body::Chunked
    } else if let Some(n) = length {
        Body::Length(n)
    } else {
        Body::UntilClose
    };
    Ok(Some(Head {
        len,
        status,
        body,
        keep_alive,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Serves `replies` (raw bytes, one per request) on one connection and returns the
    /// client side.
    fn serve(replies: Vec<Vec<u8>>) -> (Conn, std::thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 4096];
            for reply in replies {
                // Read one request head (small, so one read is enough on loopback in
                // practice; loop until the blank line to be safe).
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).unwrap();
                    assert!(n > 0);
                    got.extend_from_slice(&buf[..n]);
                }
                // Write in two parts to exercise partial reads.
                let (a, b) = reply.split_at(reply.len() / 2);
                s.write_all(a).unwrap();
                s.flush().unwrap();
                std::thread::sleep(Duration::from_millis(5));
                s.write_all(b).unwrap();
            }
        });
        let conn = Conn::connect(addr, Duration::from_secs(5)).unwrap();
        (conn, server)
    }

    #[test]
    fn reads_length_chunked_and_close_delimited_bodies() {
        let body = vec![b'x'; 1024];
        let mut fixed = b"HTTP/1.1 200 OK\r\ncontent-length: 1024\r\n\r\n".to_vec();
        fixed.extend_from_slice(&body);
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n400;x=y\r\n".to_vec();
        let mut chunked = chunked;
        chunked.extend_from_slice(&body);
        chunked.extend_from_slice(b"\r\n3\r\nabc\r\n0\r\ntrailer: 1\r\n\r\n");
        let no_content = b"HTTP/1.1 204 No Content\r\n\r\n".to_vec();
        let mut close = b"HTTP/1.1 503 Busy\r\nConnection: close\r\n\r\n".to_vec();
        close.extend_from_slice(b"gone");
        let (mut conn, server) = serve(vec![fixed, chunked, no_content, close]);
        let req = get_request("bench", "/");
        let ok = |body_len| Response {
            status: 200,
            body_len,
            keep_alive: true,
        };
        assert_eq!(conn.roundtrip(&req).unwrap(), ok(1024));
        assert_eq!(conn.roundtrip(&req).unwrap(), ok(1027));
        assert_eq!(
            conn.roundtrip(&req).unwrap(),
            Response {
                status: 204,
                body_len: 0,
                keep_alive: true
            }
        );
        // The server closes after writing: the body is read to EOF.
        let last = conn.roundtrip(&req);
        server.join().unwrap();
        assert_eq!(
            last.unwrap(),
            Response {
                status: 503,
                body_len: 4,
                keep_alive: false
            }
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_head(b"NOT HTTP\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Le")
                .unwrap()
                .is_none()
        );
    }
}
