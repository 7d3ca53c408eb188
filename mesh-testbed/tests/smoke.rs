//! Smoke e2e for the testbed itself: pods reach each other over the bridge (in-process TCP,
//! real `python3 -m http.server` and `curl` processes), pods are isolated from the host and
//! from each other's loopback, and teardown removes every namespace — on drop, on panic, on
//! SIGTERM, and by garbage collection after SIGKILL.
//!
//! Needs root; see `MESH_E2E` in the crate docs. Traffic goes only to addresses inside the
//! namespaces these tests create, or to 127.0.0.1 inside a pod.

use std::collections::BTreeSet;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use mesh_testbed::{Testbed, prerequisites_or_skip, testbed_or_skip};

/// An unprivileged uid/gid for app processes (`nobody`/`nogroup` on Debian).
const APP_UID: u32 = 65534;

/// Names listed by `ip netns list` (first word of each line).
fn listed_netns() -> BTreeSet<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("run `ip netns list`");
    assert!(out.status.success(), "`ip netns list` failed: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn assert_gone(names: &[String]) {
    let listed = listed_netns();
    for name in names {
        assert!(!listed.contains(name), "{name} still listed: {listed:?}");
        assert!(
            !Path::new("/run/netns").join(name).exists(),
            "/run/netns/{name} still exists"
        );
    }
}

/// Accepts one connection, polling so the wait is bounded.
fn accept_within(listener: &TcpListener, timeout: Duration) -> io::Result<(TcpStream, SocketAddr)> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + timeout;
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                stream.set_nonblocking(false)?;
                return Ok((stream, peer));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    }
}

#[test]
fn tcp_echo_between_pods() {
    let Some(tb) = testbed_or_skip(Testbed::builder().pod("client").pod("server")) else {
        return;
    };
    let client = tb.pod("client").expect("client pod");
    let server = tb.pod("server").expect("server pod");
    assert_ne!(client.ip(), server.ip());

    // Bound inside the server pod; the socket keeps that namespace on any thread.
    let listener = server
        .run_in(|| TcpListener::bind((server.ip(), 0)))
        .expect("enter server pod")
        .expect("bind in server pod");
    let addr = listener.local_addr().expect("local addr");
    assert_eq!(addr.ip(), server.ip());

    let echo = thread::spawn(move || -> io::Result<SocketAddr> {
        let (mut stream, peer) = accept_within(&listener, Duration::from_secs(10))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf)?;
        stream.write_all(&buf)?;
        Ok(peer)
    });

    let message = format!("hello from {} to {}\n", client.ip(), server.ip());
    let reply = client
        .run_in(|| -> io::Result<Vec<u8>> {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.write_all(message.as_bytes())?;
            s.shutdown(Shutdown::Write)?;
            let mut reply = Vec::new();
            s.read_to_end(&mut reply)?;
            Ok(reply)
        })
        .expect("enter client pod")
        .expect("echo exchange");
    assert_eq!(String::from_utf8_lossy(&reply), message);

    let peer = echo.join().expect("echo thread").expect("echo server");
    // The connection came over the bridge from the client pod's own address.
    assert_eq!(peer.ip(), client.ip());
}

/// A current-thread tokio runtime: built inside the pod thread, its sockets are the pod's.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

#[test]
fn tokio_server_and_client_in_pods() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let Some(tb) = testbed_or_skip(Testbed::builder().pods(2)) else {
        return;
    };
    let (a, b) = (&tb.pods()[0], &tb.pods()[1]);
    let server_ip = b.ip();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    // A long-lived thread in pod b serving one connection, bounded by a timeout.
    let server = b
        .spawn_thread(move || -> io::Result<SocketAddr> {
            runtime().block_on(async move {
                let listener = tokio::net::TcpListener::bind((server_ip, 0)).await?;
                addr_tx
                    .send(listener.local_addr()?)
                    .map_err(|_| io::Error::other("test gone"))?;
                let accepted = tokio::time::timeout(Duration::from_secs(10), listener.accept());
                let (mut stream, peer) = accepted.await??;
                let mut buf = Vec::new();
                stream.read_to_end(&mut buf).await?;
                buf.reverse();
                stream.write_all(&buf).await?;
                Ok(peer)
            })
        })
        .expect("start thread in pod b");
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("server address");

    let reply = a
        .run_in(|| {
            runtime().block_on(async {
                let connect = tokio::net::TcpStream::connect(addr);
                let mut s = tokio::time::timeout(Duration::from_secs(5), connect).await??;
                s.write_all(b"abc").await?;
                s.shutdown().await?;
                let mut reply = Vec::new();
                tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut reply)).await??;
                io::Result::Ok(reply)
            })
        })
        .expect("enter pod a")
        .expect("async exchange");
    assert_eq!(reply, b"cba");
    let peer = server
        .join()
        .expect("server thread")
        .expect("enter pod b")
        .expect("server");
    assert_eq!(peer.ip(), a.ip());
}

#[test]
fn http_between_real_processes() {
    let Some(tb) = testbed_or_skip(Testbed::builder().pods(2)) else {
        return;
    };
    let (a, b) = (&tb.pods()[0], &tb.pods()[1]);

    // World-readable content for the unprivileged server.
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let body = format!("served from {} in testbed {}\n", b.name(), tb.id());
    let file = dir.path().join("hello.txt");
    std::fs::write(&file, &body).expect("write file");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");

    // The interpreter path must be readable by the app uid (not a shim under /root).
    let python = ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("python3");
    let port = 8080;
    let mut cmd = b.command_as(python, APP_UID, APP_UID);
    cmd.args(["-m", "http.server", "--bind"])
        .arg(b.ip().to_string())
        .arg("--directory")
        .arg(dir.path())
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut server = b.spawn(&mut cmd).expect("spawn http.server in pod b");

    let url = format!("http://{}:{port}/hello.txt", b.ip());
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut attempts = 0;
    let fetched = loop {
        attempts += 1;
        let out = a
            .command("curl")
            .args(["-sS", "--fail", "--noproxy", "*", "--max-time", "3"])
            .arg(&url)
            .stdin(Stdio::null())
            .output()
            .expect("run curl in pod a");
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        let exited = server.try_wait().expect("poll server");
        if exited.is_some() || Instant::now() >= deadline {
            server.kill().expect("kill server");
            let mut stderr = String::new();
            if let Some(mut e) = server.child_mut().stderr.take() {
                let _ = e.read_to_string(&mut stderr);
            }
            panic!(
                "curl {url} from pod a failed after {attempts} attempts ({}): {}\n\
                 server exit: {exited:?}; server stderr:\n{stderr}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(fetched, body);

    // The server runs as the app uid: `nsenter` and `setpriv` exec'd it under the same PID.
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.id()))
        .expect("read server status");
    let uids = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .expect("Uid line");
    let uids: Vec<&str> = uids.split_whitespace().collect();
    let app = APP_UID.to_string();
    assert_eq!(
        uids,
        [app.as_str(); 4],
        "server uids (real, effective, saved, fs)"
    );
}

#[test]
fn pods_are_isolated_namespaces() {
    let Some(tb) = testbed_or_skip(Testbed::builder().pods(2)) else {
        return;
    };
    let (a, b) = (&tb.pods()[0], &tb.pods()[1]);

    // B's address exists only inside B: neither the host nor A can bind it.
    let host = TcpListener::bind((b.ip(), 0)).expect_err("host must not have pod b's address");
    assert_eq!(host.kind(), io::ErrorKind::AddrNotAvailable, "{host}");
    let in_a = a
        .run_in(|| TcpListener::bind((b.ip(), 0)).map(drop))
        .expect("enter pod a")
        .expect_err("pod a must not have pod b's address");
    assert_eq!(in_a.kind(), io::ErrorKind::AddrNotAvailable, "{in_a}");
    b.run_in(|| TcpListener::bind((b.ip(), 0)).map(drop))
        .expect("enter pod b")
        .expect("pod b binds its own address");

    // Loopback is per pod: B's 127.0.0.1 listener is reachable in B only.
    let lo = b
        .run_in(|| TcpListener::bind("127.0.0.1:0"))
        .expect("enter pod b")
        .expect("bind loopback in pod b");
    let lo_addr = lo.local_addr().expect("local addr");
    let from_b = b
        .run_in(|| TcpStream::connect_timeout(&lo_addr, Duration::from_secs(2)).map(drop))
        .expect("enter pod b");
    assert!(from_b.is_ok(), "pod b reaches its own loopback: {from_b:?}");
    let from_a = a
        .run_in(|| TcpStream::connect_timeout(&lo_addr, Duration::from_secs(2)).map(drop))
        .expect("enter pod a")
        .expect_err("pod a must not reach pod b's loopback");
    assert_eq!(from_a.kind(), io::ErrorKind::ConnectionRefused, "{from_a}");

    // A pod has exactly lo and eth0, and a default route via the bridge.
    for pod in [a, b] {
        let out = pod
            .command("ip")
            .args(["-o", "link", "show"])
            .output()
            .expect("ip link in pod");
        assert!(out.status.success(), "{out:?}");
        let links: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or("").to_owned())
            .collect();
        assert_eq!(
            links,
            BTreeSet::from(["lo".to_owned(), "eth0".to_owned()]),
            "{}",
            pod.name()
        );
        let out = pod
            .command("ip")
            .args(["route", "show", "default"])
            .output()
            .expect("ip route in pod");
        let routes = String::from_utf8_lossy(&out.stdout);
        assert!(
            routes.contains(&format!("default via {} dev eth0", tb.gateway())),
            "{}: {routes}",
            pod.name()
        );
    }
}

#[test]
fn traffic_outside_the_subnet_is_refused_at_once() {
    let Some(tb) = testbed_or_skip(Testbed::builder().pods(1)) else {
        return;
    };
    let pod = &tb.pods()[0];
    // A "service VIP" no proxy captured: the bridge namespace answers with a RST.
    let vip = SocketAddr::from(([10, 96, 0, 10], 80));
    let err = pod
        .run_in(|| TcpStream::connect_timeout(&vip, Duration::from_secs(5)).map(drop))
        .expect("enter pod")
        .expect_err("nothing listens at the VIP");
    // Refused by the bridge namespace's RST; a hang would end as TimedOut instead.
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
}

#[test]
fn wait_for_tcp_sees_listeners_only() {
    let Some(tb) = testbed_or_skip(Testbed::builder().pods(2)) else {
        return;
    };
    let (a, b) = (&tb.pods()[0], &tb.pods()[1]);
    let listener = b
        .run_in(|| TcpListener::bind((b.ip(), 0)))
        .expect("enter pod b")
        .expect("bind in pod b");
    let open = listener.local_addr().expect("local addr");
    a.wait_for_tcp(open, Duration::from_secs(5))
        .expect("listener in pod b is reachable from pod a");
    // Nothing listens on port 9 in a fresh pod, and 9 is outside the ephemeral range, so a
    // TCP self-connect cannot make it succeed.
    let closed = SocketAddr::from((b.ip(), 9));
    let err = a
        .wait_for_tcp(closed, Duration::from_millis(300))
        .expect_err("nothing listens on port 9");
    assert!(matches!(err, mesh_testbed::Error::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("refused"), "{err}");
}

#[test]
fn drop_removes_namespaces_and_children() {
    let Some(tb) = testbed_or_skip(Testbed::builder().pods(2)) else {
        return;
    };
    let names = tb.netns_names();
    assert_eq!(names.len(), 3);
    let listed = listed_netns();
    for name in &names {
        assert!(listed.contains(name), "{name} not listed: {listed:?}");
        assert!(name.contains(tb.id()), "{name} lacks the testbed id");
    }
    let mut sleep = tb.pods()[0].command("sleep");
    sleep.arg("30");
    let child = tb.pods()[0].spawn(&mut sleep).expect("spawn sleep in pod");
    let proc_dir = format!("/proc/{}", child.id());
    assert!(Path::new(&proc_dir).exists());

    drop(child);
    drop(tb);
    assert!(!Path::new(&proc_dir).exists(), "guarded child survived");
    assert_gone(&names);
}

#[test]
fn explicit_teardown_and_teardown_on_panic() {
    let Some(_prereqs) = prerequisites_or_skip() else {
        return;
    };
    let tb = Testbed::builder().pods(1).build().expect("build");
    let names = tb.netns_names();
    tb.teardown().expect("teardown");
    assert_gone(&names);

    let (tx, rx) = std::sync::mpsc::channel();
    let panicked = thread::spawn(move || {
        let tb = Testbed::builder().pods(1).build().expect("build");
        tx.send(tb.netns_names()).expect("send names");
        panic!("deliberate panic with a live testbed");
    })
    .join();
    assert!(panicked.is_err(), "the thread must have panicked");
    let names = rx.recv().expect("names from the panicking thread");
    assert_gone(&names);
}

/// Runs this test binary's `helper_hold_testbed` in a child process.
fn start_helper(with_child: bool) -> (Child, Vec<String>, Option<u32>) {
    let exe = std::env::current_exe().expect("current exe");
    let mut helper = Command::new(exe)
        .args(["--exact", "helper_hold_testbed", "--ignored", "--nocapture"])
        .env(
            "MTB_SMOKE_HELPER",
            if with_child { "child" } else { "plain" },
        )
        .env("MESH_E2E", "require")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start helper");
    let stdout = helper.stdout.take().expect("helper stdout");
    let mut names = None;
    let mut child = None;
    // Bounded by the helper, which exits within 30 s whatever happens.
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read helper stdout");
        if let Some(rest) = line.strip_prefix("NETNS ") {
            names = Some(rest.split(' ').map(str::to_owned).collect::<Vec<_>>());
        } else if let Some(pid) = line.strip_prefix("CHILD ") {
            child = Some(pid.parse::<u32>().expect("child pid"));
        } else if line == "READY" {
            break;
        }
    }
    let names = names.expect("helper reported no namespaces (see its stderr above)");
    (helper, names, child)
}

fn wait_within(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("poll helper") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("helper did not exit within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Dead means gone or a zombie waiting for its (new) parent to reap it.
fn process_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn sigterm_tears_down() {
    let Some(_prereqs) = prerequisites_or_skip() else {
        return;
    };
    let (mut helper, names, child) = start_helper(true);
    assert_eq!(names.len(), 2, "{names:?}");
    let child = child.expect("helper reported its child");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(helper.id()).expect("pid")),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("send SIGTERM");
    let status = wait_within(&mut helper, Duration::from_secs(10));
    assert_eq!(
        status.signal(),
        Some(15),
        "helper must die of SIGTERM: {status:?}"
    );
    assert_gone(&names);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !process_dead(child) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        process_dead(child),
        "the helper's guarded child {child} survived"
    );
}

#[test]
fn sigkill_leftovers_are_garbage_collected() {
    let Some(_prereqs) = prerequisites_or_skip() else {
        return;
    };
    let (mut helper, names, _) = start_helper(false);
    helper.kill().expect("SIGKILL helper");
    let status = wait_within(&mut helper, Duration::from_secs(10));
    assert_eq!(status.signal(), Some(9), "{status:?}");
    // The helper's PID is dead now; another test process may collect first, which is fine.
    Testbed::collect_garbage();
    assert_gone(&names);

    // A name whose owner can never be alive (above pid_max) goes on the next build.
    let pid_max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .expect("pid_max")
        .trim()
        .parse()
        .expect("pid_max number");
    // Unique per test process (the counter field holds our PID) so parallel runs don't race.
    let stale = format!("mtb-{}-{}-br", pid_max + 1, std::process::id());
    // A concurrent test process may collect the name while `ip netns add` is still setting
    // it up (that is GC working); retry a bounded number of times.
    let mut last = None;
    for _ in 0..10 {
        let out = Command::new("ip")
            .args(["netns", "add", &stale])
            .output()
            .expect("ip netns add");
        if out.status.success() {
            last = None;
            break;
        }
        last = Some(out);
    }
    assert!(last.is_none(), "ip netns add {stale}: {last:?}");
    let tb = Testbed::builder().pods(1).build().expect("build");
    assert_gone(&[stale]);
    drop(tb);
}

/// Not a test: the child process of the signal tests. Builds a testbed, reports its
/// namespaces on stdout and waits (bounded) to be signalled.
#[test]
#[ignore = "helper process for sigterm_tears_down and sigkill_leftovers_are_garbage_collected"]
fn helper_hold_testbed() {
    let Ok(mode) = std::env::var("MTB_SMOKE_HELPER") else {
        return;
    };
    let tb = Testbed::builder()
        .pods(1)
        .build()
        .expect("helper: build testbed");
    let mut out = io::stdout();
    writeln!(out, "NETNS {}", tb.netns_names().join(" ")).expect("write");
    let mut guard = None;
    if mode == "child" {
        let pod = &tb.pods()[0];
        let mut sleep = pod.command("sleep");
        sleep.arg("30");
        let child = pod.spawn(&mut sleep).expect("helper: spawn child");
        writeln!(out, "CHILD {}", child.id()).expect("write");
        guard = Some(child);
    }
    writeln!(out, "READY").expect("write");
    out.flush().expect("flush");
    thread::sleep(Duration::from_secs(30));
    drop(guard);
}
