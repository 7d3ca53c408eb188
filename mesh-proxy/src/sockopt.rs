//! Socket options the proxy needs beyond tokio's API, through `socket2` (no `unsafe` here).

use std::io;
use std::net::SocketAddr;

use socket2::SockRef;
use tokio::net::TcpStream;

/// The destination a captured connection was originally sent to (`SO_ORIGINAL_DST`, set by
/// the `REDIRECT` rules `mesh-proxy init` installs).
pub fn original_dst(stream: &TcpStream) -> io::Result<SocketAddr> {
    let sock = SockRef::from(stream);
    let local = stream.local_addr()?;
    let addr = if local.is_ipv6() && !local.ip().to_canonical().is_ipv4() {
        sock.original_dst_v6()?
    } else {
        sock.original_dst_v4()?
    };
    addr.as_socket().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "SO_ORIGINAL_DST returned a non-IP address",
        )
    })
}
