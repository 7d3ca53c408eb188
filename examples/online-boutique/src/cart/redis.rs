//! A minimal Redis client (RESP2 over one TCP connection) for the cart store: the few
//! commands it needs (`PING`, `HGET`, `HSET`, `EXPIRE`), sent one at a time. The
//! connection is opened on first use and reopened after an I/O error, so the cart service
//! starts before Redis and survives Redis restarts.

use std::time::Duration;

use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::TcpStream,
    sync::Mutex,
};

/// How long one command (connecting included) may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest bulk reply accepted (Redis' own limit is 512 MiB; carts are tiny).
const MAX_BULK: usize = 64 * 1024 * 1024;

/// Redis errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Connecting, reading or writing failed.
    #[error("cannot reach Redis at {addr} (REDIS_ADDR): {source}")]
    Io {
        /// The server address.
        addr: String,
        /// The failure.
        source: std::io::Error,
    },
    /// The command took longer than the timeout.
    #[error("Redis at {addr} (REDIS_ADDR) did not answer within {COMMAND_TIMEOUT:?}")]
    Timeout {
        /// The server address.
        addr: String,
    },
    /// Redis answered with an error.
    #[error("Redis error: {0}")]
    Server(String),
    /// The reply was not what the command returns.
    #[error("unexpected reply from Redis: {0}")]
    Protocol(String),
}

/// A reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Simple(String),
    /// `:1`.
    Integer(i64),
    /// `$3\r\nabc`, or `$-1` (nil).
    Bulk(Option<Vec<u8>>),
}

/// A client for one Redis server.
#[derive(Debug)]
pub struct Client {
    addr: String,
    conn: Mutex<Option<BufReader<TcpStream>>>,
}

// === impl Client ===

impl Client {
    /// A client for `addr` (`host:port`); nothing is connected yet.
    pub fn new(addr: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            conn: Mutex::new(None),
        }
    }

    /// The server address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends one command (its arguments as bulk strings) and reads its reply. A reused
    /// connection that fails is replaced and the command retried once.
    pub async fn command(&self, args: &[&[u8]]) -> Result<Reply, Error> {
        let mut conn = self.conn.lock().await;
        let reused = conn.is_some();
        match self.attempt(&mut conn, args).await {
            Err(Error::Io { .. }) if reused => self.attempt(&mut conn, args).await,
            other => other,
        }
    }

    async fn attempt(
        &self,
        conn: &mut Option<BufReader<TcpStream>>,
        args: &[&[u8]],
    ) -> Result<Reply, Error> {
        let io = |source| Error::Io {
            addr: self.addr.clone(),
            source,
        };
        let result = tokio::time::timeout(COMMAND_TIMEOUT, async {
            if conn.is_none() {
                let stream = TcpStream::connect(&self.addr).await.map_err(io)?;
                let _ = stream.set_nodelay(true);
                *conn = Some(BufReader::new(stream));
            }
            let stream = conn.as_mut().expect("connected above");
            stream
                .get_mut()
                .write_all(&encode(args))
                .await
                .map_err(io)?;
            read_reply(stream).await.map_err(|e| match e {
                ReadError::Io(source) => io(source),
                ReadError::Protocol(what) => Error::Protocol(what),
                ReadError::Server(msg) => Error::Server(msg),
            })
        })
        .await
        .unwrap_or_else(|_| {
            Err(Error::Timeout {
                addr: self.addr.clone(),
            })
        });
        // After anything but a clean reply (or a Redis error reply, which leaves the
        // stream in sync), the stream's state is unknown: start over next time.
        if matches!(
            result,
            Err(Error::Io { .. } | Error::Timeout { .. } | Error::Protocol(_))
        ) {
            *conn = None;
        }
        result
    }

    /// `PING`: checks the server answers.
    pub async fn ping(&self) -> Result<(), Error> {
        match self.command(&[b"PING"]).await? {
            Reply::Simple(s) if s == "PONG" => Ok(()),
            other => Err(Error::Protocol(format!("{other:?} to PING"))),
        }
    }

    /// `HGET key field`.
    pub async fn hget(&self, key: &str, field: &str) -> Result<Option<Vec<u8>>, Error> {
        match self
            .command(&[b"HGET", key.as_bytes(), field.as_bytes()])
            .await?
        {
            Reply::Bulk(value) => Ok(value),
            other => Err(Error::Protocol(format!("{other:?} to HGET"))),
        }
    }

    /// `HSET key field value`.
    pub async fn hset(&self, key: &str, field: &str, value: &[u8]) -> Result<(), Error> {
        match self
            .command(&[b"HSET", key.as_bytes(), field.as_bytes(), value])
            .await?
        {
            Reply::Integer(_) => Ok(()),
            other => Err(Error::Protocol(format!("{other:?} to HSET"))),
        }
    }

    /// `EXPIRE key seconds`.
    pub async fn expire(&self, key: &str, seconds: u64) -> Result<(), Error> {
        let seconds = seconds.to_string();
        match self
            .command(&[b"EXPIRE", key.as_bytes(), seconds.as_bytes()])
            .await?
        {
            Reply::Integer(_) => Ok(()),
            other => Err(Error::Protocol(format!("{other:?} to EXPIRE"))),
        }
    }
}

/// A command as a RESP array of bulk strings.
fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

enum ReadError {
    Io(std::io::Error),
    Protocol(String),
    Server(String),
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// Reads one reply (arrays are not used by the commands above and are refused).
async fn read_reply<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Result<Reply, ReadError> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).await?;
    if line.is_empty() {
        return Err(ReadError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    let Some(body) = line.strip_suffix(b"\r\n").filter(|b| !b.is_empty()) else {
        return Err(ReadError::Protocol(
            "an empty reply line or one without CRLF".into(),
        ));
    };
    let text = String::from_utf8_lossy(&body[1..]).into_owned();
    let int = |t: &str| {
        t.parse::<i64>()
            .map_err(|_| ReadError::Protocol(format!("bad integer {t:?}")))
    };
    match body[0] {
        b'+' => Ok(Reply::Simple(text)),
        b'-' => Err(ReadError::Server(text)),
        b':' => Ok(Reply::Integer(int(&text)?)),
        b'$' => {
            let len = int(&text)?;
            if len < 0 {
                return Ok(Reply::Bulk(None));
            }
            let len = usize::try_from(len).expect("non-negative");
            if len > MAX_BULK {
                return Err(ReadError::Protocol(format!("a {len}-byte bulk reply")));
            }
            let mut value = vec![0; len + 2];
            r.read_exact(&mut value).await?;
            if !value.ends_with(b"\r\n") {
                return Err(ReadError::Protocol("a bulk reply without CRLF".into()));
            }
            value.truncate(len);
            Ok(Reply::Bulk(Some(value)))
        }
        other => Err(ReadError::Protocol(format!(
            "unsupported reply type {:?}",
            char::from(other)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8]) -> Result<Reply, ReadError> {
        read_reply(&mut &bytes[..]).await
    }

    #[test]
    fn encodes_commands_as_bulk_string_arrays() {
        assert_eq!(
            encode(&[b"HGET", b"user", b"cart"]),
            b"*3\r\n$4\r\nHGET\r\n$4\r\nuser\r\n$4\r\ncart\r\n"
        );
    }

    #[tokio::test]
    async fn reads_replies() {
        assert!(matches!(parse(b"+PONG\r\n").await, Ok(Reply::Simple(s)) if s == "PONG"));
        assert!(matches!(parse(b":12\r\n").await, Ok(Reply::Integer(12))));
        assert!(matches!(parse(b"$-1\r\n").await, Ok(Reply::Bulk(None))));
        assert!(
            matches!(parse(b"$5\r\na\r\nbc\r\n").await, Ok(Reply::Bulk(Some(v))) if v == b"a\r\nbc")
        );
        assert!(
            matches!(parse(b"-ERR wrong\r\n").await, Err(ReadError::Server(m)) if m == "ERR wrong")
        );
        assert!(matches!(
            parse(b"*1\r\n").await,
            Err(ReadError::Protocol(_))
        ));
        assert!(matches!(parse(b"$5\r\nab").await, Err(ReadError::Io(_))));
        assert!(matches!(parse(b"").await, Err(ReadError::Io(_))));
    }
}
