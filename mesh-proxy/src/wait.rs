//! `mesh-proxy wait`: blocks until the proxy next to it is ready (`GET /healthz/ready` on
//! the health port answers 200), or fails after `--timeout`.
//!
//! For classic sidecars (Kubernetes without native sidecars): injection gives the proxy
//! container a `postStart` hook running this command, and the kubelet starts the next
//! containers — the application's — only when the hook returns, so the application never
//! starts before its proxy has a certificate and config (Istio's
//! `holdApplicationUntilProxyStarts`). A plain HTTP/1.1 client on std sockets: no runtime,
//! nothing to configure, bounded in time.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::bail;

/// How often readiness is asked.
const POLL: Duration = Duration::from_millis(200);
/// Each attempt's connect and read bound.
const ATTEMPT: Duration = Duration::from_secs(1);

/// Arguments of `mesh-proxy wait`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The proxy's health server.
    #[arg(long, default_value = "127.0.0.1:15021")]
    pub health: SocketAddr,
    /// Give up after this long (e.g. `90s`, `2m`).
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    pub timeout: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    mesh_api::duration::parse(s).map_err(|e| e.to_string())
}

/// What one readiness request said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 200.
    Ready,
    /// Another status, with the body's first line (the proxy says why it is not ready).
    NotReady(String),
    /// No answer (not listening yet, or a broken exchange).
    Unreachable(String),
}

/// Asks the health server once.
pub fn ask(health: SocketAddr) -> Answer {
    let exchange = || -> std::io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&health, ATTEMPT)?;
        stream.set_read_timeout(Some(ATTEMPT))?;
        stream.set_write_timeout(Some(ATTEMPT))?;
        stream.write_all(
            b"GET /healthz/ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )?;
        let mut response = Vec::new();
        stream.take(64 * 1024).read_to_end(&mut response)?;
        Ok(String::from_utf8_lossy(&response).into_owned())
    };
    match exchange() {
        Err(e) => Answer::Unreachable(e.to_string()),
        Ok(text) => {
            let status = text
                .lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .unwrap_or("");
            if status == "200" {
                return Answer::Ready;
            }
            let body = text
                .split_once("\r\n\r\n")
                .map(|(_, b)| b.lines().next().unwrap_or("").trim().to_owned())
                .unwrap_or_default();
            Answer::NotReady(format!("{status} {body}").trim().to_owned())
        }
    }
}

/// Runs `mesh-proxy wait`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut last;
    loop {
        last = ask(args.health);
        if last == Answer::Ready {
            eprintln!(
                "mesh-proxy is ready after {:.1}s",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if started.elapsed() + POLL > args.timeout {
            break;
        }
        std::thread::sleep(POLL);
    }
    let why = match last {
        Answer::Ready => unreachable!("returned above"),
        Answer::NotReady(s) => format!("it answers {s}"),
        Answer::Unreachable(e) => format!("nothing answers on {} ({e})", args.health),
    };
    bail!(
        "mesh-proxy is not ready after {:?}: {why}; see the proxy's log (`kubectl logs POD -c mesh-proxy`)",
        args.timeout
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A health server answering each connection with the next of `answers`.
    fn server(answers: Vec<&'static str>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for answer in answers {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                s.write_all(answer.as_bytes()).unwrap();
            }
        });
        addr
    }

    const NOT_READY: &str = "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 38\r\n\r\nwaiting for a certificate from the CA\n";
    const READY: &str = "HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nready\n";

    #[test]
    fn waits_through_not_ready_until_ready() {
        let addr = server(vec![NOT_READY, NOT_READY, READY]);
        let args = Args {
            health: addr,
            timeout: Duration::from_secs(10),
        };
        run(&args).expect("ready on the third answer");
    }

    #[test]
    fn times_out_saying_why() {
        let addr = server(vec![NOT_READY; 20]);
        let args = Args {
            health: addr,
            timeout: Duration::from_millis(500),
        };
        let err = run(&args).unwrap_err().to_string();
        assert!(
            err.contains("503 waiting for a certificate from the CA"),
            "{err}"
        );
        assert!(err.contains("kubectl logs"), "{err}");

        // Nothing listening.
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let args = Args {
            health: closed,
            timeout: Duration::from_millis(300),
        };
        let err = run(&args).unwrap_err().to_string();
        assert!(err.contains("nothing answers on"), "{err}");
    }
}
