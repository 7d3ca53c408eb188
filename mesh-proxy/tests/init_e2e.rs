//! End-to-end tests of `mesh-proxy init`: the real binary installs its rules inside testbed
//! pods (network namespaces, see `mesh-testbed`) and real connections prove what is captured.
//!
//! Test servers stand in for the proxy's capture listeners and for apps: each answers every
//! connection with one line, `<tag> <original destination>`, the destination read with
//! `SO_ORIGINAL_DST` (what the proxy does), so a client learns both who answered and where
//! the kernel says it meant to go. Clients run in-process (uid 0) or as `python3` under a
//! chosen uid/gid (`Pod::command_as`), because capture depends on the socket's owner.
//!
//! Every wait is bounded; traffic stays inside the testbed's namespaces. The flag-validation
//! test needs no testbed (it always passes `--dry-run`, so nothing could be changed even if a
//! bad value slipped through).

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mesh_testbed::{Pod, Testbed};
use socket2::{Domain, SockRef, Socket, Type};

const BIN: &str = env!("CARGO_BIN_EXE_mesh-proxy");
const PYTHON: &str = "/usr/bin/python3";

/// Connect and read bounds for every client.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// A test server stops by itself after this long, even if the test never stops it.
const SERVER_LIFETIME: Duration = Duration::from_secs(120);

/// An app uid/gid: captured.
const APP: u32 = 1000;
/// The proxy's uid/gid: never captured.
const PROXY: u32 = 1337;

/// A "service VIP" outside the testbed subnet: uncaptured, the bridge refuses it at once.
const VIP: &str = "10.96.0.10:80";

/// A unique-local IPv6 prefix for the IPv6 test (the namespaces isolate it).
const V6_PREFIX: &str = "fd00:6d65:7368";

// === the tests ===

#[test]
fn outbound_is_captured_except_for_the_proxy() {
    let Some(tb) = mesh_testbed::testbed_or_skip(Testbed::builder().pods(2)) else {
        return;
    };
    let (a, b) = (&tb.pods()[0], &tb.pods()[1]);
    let b_app = sock(b.ip(), 8080);
    let _b_server = Server::start(b, b_app, "b-app");
    let capture = Server::start(a, sock([0, 0, 0, 0], 15001), "a-outbound");

    // Before init nothing is captured.
    assert_eq!(
        ask_as(a, APP, APP, b_app).unwrap(),
        format!("b-app {b_app}")
    );

    let out = init(a, &[]);
    assert!(out.contains("applied IPv4 rules"), "{out}");

    // An app (uid 1000) and root are captured; the server sees the original destination.
    assert_eq!(
        ask_as(a, APP, APP, b_app).unwrap(),
        format!("a-outbound {b_app}")
    );
    assert_eq!(ask_in(a, b_app).unwrap(), format!("a-outbound {b_app}"));
    // A service VIP nobody serves is captured too: that is how the proxy sees service calls.
    let vip: SocketAddr = VIP.parse().unwrap();
    assert_eq!(
        ask_as(a, APP, APP, vip).unwrap(),
        format!("a-outbound {vip}")
    );
    assert_eq!(capture.seen(), vec![b_app, b_app, vip]);

    // The proxy's uid goes out untouched and reaches the real listener.
    assert_eq!(
        ask_as(a, PROXY, PROXY, b_app).unwrap(),
        format!("b-app {b_app}")
    );
    // The uid alone is enough...
    assert_eq!(
        ask_as(a, PROXY, APP, b_app).unwrap(),
        format!("b-app {b_app}")
    );
    // ...and so is the gid alone.
    assert_eq!(
        ask_as(a, APP, PROXY, b_app).unwrap(),
        format!("b-app {b_app}")
    );
    // Uncaptured, the VIP is refused by the bridge: proof that the proxy uid bypassed capture.
    let err = ask_as(a, PROXY, PROXY, vip).unwrap_err();
    assert!(err.contains("ConnectionRefusedError"), "{err}");
    assert_eq!(
        capture.seen().len(),
        3,
        "the proxy's connections were captured"
    );
}

#[test]
fn inbound_is_captured_except_for_the_proxy_ports() {
    let Some(tb) = mesh_testbed::testbed_or_skip(Testbed::builder().pods(2)) else {
        return;
    };
    let (a, b) = (&tb.pods()[0], &tb.pods()[1]);
    let any = [0, 0, 0, 0];
    let inbound = Server::start(b, sock(any, 15006), "b-inbound");
    let _servers = [
        Server::start(b, sock(b.ip(), 8080), "b-app"),
        Server::start(b, sock(b.ip(), 8081), "b-app"),
        Server::start(b, sock(any, 15008), "b-mesh"),
        Server::start(b, sock(any, 15020), "b-metrics"),
        Server::start(b, sock(any, 15021), "b-health"),
        Server::start(b, sock(any, 9090), "b-excluded"),
        Server::start(b, sock([127, 0, 0, 1], 15000), "b-admin"),
    ];

    init(b, &["--exclude-inbound-ports", "9090,9100-9200"]);

    // App ports are captured (from another pod: the client is in pod a, without rules).
    for port in [8080, 8081] {
        let to = sock(b.ip(), port);
        assert_eq!(ask_in(a, to).unwrap(), format!("b-inbound {to}"));
    }
    assert_eq!(inbound.seen(), vec![sock(b.ip(), 8080), sock(b.ip(), 8081)]);
    // The proxy's own ports and the excluded port are reached directly.
    for (port, tag) in [
        (15008, "b-mesh"),
        (15020, "b-metrics"),
        (15021, "b-health"),
        (9090, "b-excluded"),
    ] {
        let to = sock(b.ip(), port);
        assert_eq!(ask_in(a, to).unwrap(), format!("{tag} {to}"), "port {port}");
    }
    // The admin port is not captured either: it listens on localhost, so a peer is refused
    // instead of being forwarded to it through the inbound capture port.
    let err = ask_in(a, sock(b.ip(), 15000)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    // An excluded range: nobody listens on 9150, so it is refused rather than captured.
    let err = ask_in(a, sock(b.ip(), 9150)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    assert_eq!(inbound.seen().len(), 2, "excluded ports were captured");
}

#[test]
fn loopback_and_own_pod_address() {
    let Some(tb) = mesh_testbed::testbed_or_skip(Testbed::builder().pods(1)) else {
        return;
    };
    let a = &tb.pods()[0];
    let loopback = sock([127, 0, 0, 1], 7000);
    let loopback6 = SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 7002);
    let app = sock(a.ip(), 7001);
    let mesh = sock(a.ip(), 15008);
    let any = [0, 0, 0, 0];
    let _servers = [
        Server::start(a, loopback, "a-loopback"),
        Server::start(a, loopback6, "a-loopback6"),
        Server::start(a, app, "a-app"),
        Server::start(a, sock(any, 15008), "a-mesh"),
    ];
    let outbound = Server::start(a, sock(any, 15001), "a-outbound");
    let inbound = Server::start(a, sock(any, 15006), "a-inbound");

    let out = init(a, &[]);
    assert!(out.contains("applied IPv6 rules"), "{out}");

    // Loopback destinations are never captured, for anyone.
    assert_eq!(
        ask_in(a, loopback).unwrap(),
        format!("a-loopback {loopback}")
    );
    assert_eq!(
        ask_as(a, APP, APP, loopback).unwrap(),
        format!("a-loopback {loopback}")
    );
    assert_eq!(
        ask_as(a, PROXY, PROXY, loopback).unwrap(),
        format!("a-loopback {loopback}")
    );
    assert_eq!(
        ask_in(a, loopback6).unwrap(),
        format!("a-loopback6 {loopback6}")
    );
    // An app calling its own pod's address is not captured.
    assert_eq!(ask_as(a, APP, APP, app).unwrap(), format!("a-app {app}"));
    assert_eq!(ask_in(a, app).unwrap(), format!("a-app {app}"));
    // The proxy calling its own pod's address takes the inbound path (Istio's `-o lo` rule)...
    assert_eq!(
        ask_as(a, PROXY, PROXY, app).unwrap(),
        format!("a-inbound {app}")
    );
    // ...except to its own mesh port, and except from the passthrough source 127.0.0.6.
    assert_eq!(
        ask_as(a, PROXY, PROXY, mesh).unwrap(),
        format!("a-mesh {mesh}")
    );
    assert_eq!(
        ask_from(a, PROXY, PROXY, "127.0.0.6", app).unwrap(),
        format!("a-app {app}")
    );
    assert_eq!(inbound.seen(), vec![app]);
    assert_eq!(outbound.seen(), Vec::<SocketAddr>::new());
}

#[test]
fn ipv6_outbound_is_captured() {
    let Some(tb) = mesh_testbed::testbed_or_skip(Testbed::builder().pods(2)) else {
        return;
    };
    let (a, b) = (&tb.pods()[0], &tb.pods()[1]);
    let a6: Ipv6Addr = format!("{V6_PREFIX}::2").parse().unwrap();
    let b6: Ipv6Addr = format!("{V6_PREFIX}::3").parse().unwrap();
    for (pod, addr) in [(a, a6), (b, b6)] {
        // `nodad`: usable at once, no duplicate address detection delay.
        run_ok(
            pod,
            "ip",
            &[
                "-6",
                "addr",
                "add",
                &format!("{addr}/64"),
                "dev",
                "eth0",
                "nodad",
            ],
        );
    }
    let b_app = SocketAddr::new(b6.into(), 8080);
    let _b_server = Server::start(b, b_app, "b-app6");
    let capture = Server::start(
        a,
        SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 15001),
        "a-outbound6",
    );
    // Reachable before init (bounded: neighbour discovery needs a moment).
    a.wait_for_tcp(b_app, Duration::from_secs(10)).unwrap();

    let out = init(a, &[]);
    assert!(out.contains("applied IPv6 rules"), "{out}");
    assert_eq!(ask_in(a, b_app).unwrap(), format!("a-outbound6 {b_app}"));
    assert_eq!(
        ask_as(a, APP, APP, b_app).unwrap(),
        format!("a-outbound6 {b_app}")
    );
    assert_eq!(
        ask_as(a, PROXY, PROXY, b_app).unwrap(),
        format!("b-app6 {b_app}")
    );
    assert_eq!(capture.seen(), vec![b_app, b_app]);

    // Without IPv6 rules (`--ipv6 off` after a clean) IPv6 goes straight out: the flag works.
    init(a, &["--clean"]);
    let out = init(a, &["--ipv6", "off"]);
    assert!(!out.contains("applied IPv6 rules"), "{out}");
    assert_eq!(ask_in(a, b_app).unwrap(), format!("b-app6 {b_app}"));
}

#[test]
fn init_is_idempotent_and_clean_removes_everything() {
    let Some(tb) = mesh_testbed::testbed_or_skip(Testbed::builder().pods(1)) else {
        return;
    };
    let a = &tb.pods()[0];
    // Somebody else's rules: they must survive everything init does.
    let foreign = "-A OUTPUT -p udp -m udp --dport 53 -j RETURN";
    run_ok(a, "iptables", &["-t", "nat", "-N", "OTHER"]);
    run_ok(
        a,
        "iptables",
        &[
            "-t", "nat", "-A", "OUTPUT", "-p", "udp", "--dport", "53", "-j", "RETURN",
        ],
    );
    let pristine = (save(a, "iptables-save"), save(a, "ip6tables-save"));

    // --dry-run prints the ruleset and changes nothing.
    let out = init(a, &["--dry-run"]);
    assert!(out.contains("dry run"), "{out}");
    assert!(out.contains("-A OUTPUT -p tcp -j MESH_OUTPUT"), "{out}");
    assert!(out.contains("-d ::1/128"), "{out}");
    assert_eq!(
        (save(a, "iptables-save"), save(a, "ip6tables-save")),
        pristine
    );

    init(a, &[]);
    let once = save(a, "iptables-save");
    let once6 = save(a, "ip6tables-save");
    init(a, &[]);
    assert_eq!(
        save(a, "iptables-save"),
        once,
        "a second run changed the rules"
    );
    assert_eq!(save(a, "ip6tables-save"), once6);
    for text in [&once, &once6] {
        assert_unique_rules(text);
        assert_eq!(
            count(text, "-A PREROUTING -p tcp -j MESH_INBOUND"),
            1,
            "{text}"
        );
        assert_eq!(count(text, "-A OUTPUT -p tcp -j MESH_OUTPUT"), 1, "{text}");
        assert_eq!(count(text, "-j REDIRECT --to-ports 15001"), 1, "{text}");
        assert_eq!(count(text, "-j REDIRECT --to-ports 15006"), 1, "{text}");
    }
    assert!(once.contains(foreign), "{once}");
    assert!(once.contains(":OTHER"), "{once}");

    // A duplicate jump and a chain of an older version are cleaned up by the next run.
    run_ok(
        a,
        "iptables",
        &[
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-p",
            "tcp",
            "-j",
            "MESH_OUTPUT",
        ],
    );
    run_ok(a, "iptables", &["-t", "nat", "-N", "MESH_OLD"]);
    run_ok(
        a,
        "iptables",
        &["-t", "nat", "-I", "PREROUTING", "-j", "MESH_OLD"],
    );
    let out = init(a, &[]);
    assert!(out.contains("-X MESH_OLD"), "{out}");
    let after = save(a, "iptables-save");
    assert_eq!(after, once, "duplicates or leftovers survived");

    // Changed flags replace the rules instead of adding to them.
    init(a, &["--exclude-outbound-ports", "5432"]);
    let changed = save(a, "iptables-save");
    assert_unique_rules(&changed);
    assert_eq!(count(&changed, "--dport 5432 -j RETURN"), 1, "{changed}");
    assert_eq!(
        count(&changed, "-A OUTPUT -p tcp -j MESH_OUTPUT"),
        1,
        "{changed}"
    );

    // --clean --dry-run shows the plan and changes nothing.
    let out = init(a, &["--clean", "--dry-run"]);
    assert!(out.contains("would remove IPv4 rules"), "{out}");
    assert_eq!(save(a, "iptables-save"), changed);

    // --clean removes every MESH_ chain and jump, in both families, and nothing else.
    let out = init(a, &["--clean"]);
    assert!(out.contains("removed IPv4 rules"), "{out}");
    assert!(out.contains("removed IPv6 rules"), "{out}");
    assert_eq!(
        (save(a, "iptables-save"), save(a, "ip6tables-save")),
        pristine
    );
    // ...and is a no-op the second time.
    let out = init(a, &["--clean"]);
    assert!(out.contains("nothing to clean"), "{out}");
    assert_eq!(
        (save(a, "iptables-save"), save(a, "ip6tables-save")),
        pristine
    );
}

#[test]
fn legacy_backend_is_detected_and_used() {
    let Some(tb) = mesh_testbed::testbed_or_skip(Testbed::builder().pods(1)) else {
        return;
    };
    let a = &tb.pods()[0];
    let capture = Server::start(a, sock([0, 0, 0, 0], 15001), "a-outbound");

    let out = init(a, &["--iptables-mode", "legacy"]);
    assert!(out.contains("iptables-legacy-restore"), "{out}");
    let legacy = save(a, "iptables-legacy-save");
    assert_eq!(
        count(&legacy, "-A OUTPUT -p tcp -j MESH_OUTPUT"),
        1,
        "{legacy}"
    );
    assert!(!save(a, "iptables-nft-save").contains("MESH_"));

    // Auto mode follows the rules already there (legacy), whatever the system default is.
    let out = init(a, &[]);
    assert!(out.contains("iptables backend legacy"), "{out}");
    assert_eq!(save(a, "iptables-legacy-save"), legacy);
    assert!(!save(a, "iptables-nft-save").contains("MESH_"));

    // The legacy rules capture.
    let vip: SocketAddr = VIP.parse().unwrap();
    assert_eq!(
        ask_as(a, APP, APP, vip).unwrap(),
        format!("a-outbound {vip}")
    );
    assert_eq!(capture.seen(), vec![vip]);

    let out = init(a, &["--clean"]);
    assert!(out.contains("removed IPv4 rules (legacy)"), "{out}");
    assert!(!save(a, "iptables-legacy-save").contains("MESH_"));
    assert!(!save(a, "ip6tables-legacy-save").contains("MESH_"));
}

#[test]
fn init_without_privileges_fails_with_a_hint() {
    let Some(tb) = mesh_testbed::testbed_or_skip(Testbed::builder().pods(1)) else {
        return;
    };
    let a = &tb.pods()[0];
    let out = output(a.command_as(BIN, APP, APP).arg("init"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "init succeeded as uid {APP}");
    assert!(stderr.contains("mesh-proxy: error:"), "{stderr}");
    assert!(stderr.contains("iptables"), "{stderr}");
    assert!(stderr.contains("NET_ADMIN"), "{stderr}");
    assert!(!save(a, "iptables-save").contains("MESH_"));
}

/// Flag validation happens before anything touches iptables. Every case also passes
/// `--dry-run`, so this runs anywhere, without root and without a testbed.
#[test]
fn bad_flags_fail_with_clear_errors() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--exclude-inbound-ports", "80,80a"],
            &[
                "--exclude-inbound-ports",
                "\"80a\" is not a port number (1-65535)",
            ],
        ),
        (
            &["--exclude-outbound-ports", "9000-8000"],
            &[
                "--exclude-outbound-ports",
                "\"9000-8000\" is not a port range",
            ],
        ),
        (
            &["--outbound-port", "0"],
            &["--outbound-port", "\"0\" is not a port number"],
        ),
        (
            &["--inbound-port", "65536"],
            &["--inbound-port", "\"65536\" is not a port number"],
        ),
        (
            &["--include-inbound-ports", "80,*"],
            &["--include-inbound-ports", "mixes \"*\""],
        ),
        (
            &["--exclude-outbound-cidrs", "10.0.0.0/33"],
            &["--exclude-outbound-cidrs", "\"10.0.0.0/33\" is not a CIDR"],
        ),
        (
            &["--include-outbound-cidrs", "example.com"],
            &[
                "--include-outbound-cidrs",
                "\"example.com\" is not an IP address",
            ],
        ),
        (
            &["--exclude-uids", "root"],
            &["--exclude-uids", "\"root\" is not a numeric uid/gid"],
        ),
        (&["--proxy-uid=-5"], &["--proxy-uid", "-5"]),
        (
            &["--iptables-mode", "nftables"],
            &["--iptables-mode", "nftables", "auto, nft, legacy"],
        ),
        (&["--ipv6", "maybe"], &["--ipv6", "maybe"]),
        (
            &["--inbound-port", "15001"],
            &["--outbound-port and --inbound-port must differ (both are 15001)"],
        ),
        (
            &["--outbound-port", "15021"],
            &["--outbound-port: 15021 is the proxy's health port"],
        ),
    ];
    for (args, expected) in cases {
        let mut cmd = std::process::Command::new(BIN);
        cmd.arg("init").args(*args).arg("--dry-run");
        let out = output(&mut cmd);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{args:?} was accepted:\n{stdout}");
        for needle in *expected {
            assert!(
                stderr.contains(needle),
                "{args:?}: {needle:?} not in:\n{stderr}"
            );
        }
        assert!(
            !stdout.contains("*nat"),
            "{args:?} rendered rules:\n{stdout}"
        );
    }

    // Environment fallbacks are parsed the same way...
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["init", "--dry-run"])
        .env("MESH_INIT_EXCLUDE_INBOUND_PORTS", "9999, 7000-7001");
    let out = output(&mut cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("-A MESH_INBOUND -p tcp --dport 9999 -j RETURN"),
        "{stdout}"
    );
    assert!(
        stdout.contains("-A MESH_INBOUND -p tcp --dport 7000:7001 -j RETURN"),
        "{stdout}"
    );
    // ...and rejected the same way.
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["init", "--dry-run"])
        .env("MESH_INIT_EXCLUDE_INBOUND_PORTS", "http");
    let out = output(&mut cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--exclude-inbound-ports") && stderr.contains("\"http\""),
        "{stderr}"
    );
}

// === helpers: running things in pods ===

fn sock(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

fn output(cmd: &mut std::process::Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs `mesh-proxy init <args>` as root in `pod`; panics with its output on failure.
fn init(pod: &Pod, args: &[&str]) -> String {
    let out = output(pod.command(BIN).arg("init").args(args));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "mesh-proxy init {args:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs a helper program as root in `pod`; panics on failure.
fn run_ok(pod: &Pod, program: &str, args: &[&str]) {
    let out = output(pod.command(program).args(args));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `<program> -t nat` inside `pod` (an `iptables-save` variant), without comment lines
/// (they carry timestamps).
fn save(pod: &Pod, program: &str) -> String {
    let out = output(pod.command(program).args(["-t", "nat"]));
    assert!(
        out.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn count(text: &str, line: &str) -> usize {
    text.lines().filter(|l| l.contains(line)).count()
}

fn assert_unique_rules(save: &str) {
    let rules: Vec<&str> = save.lines().filter(|l| l.starts_with("-A ")).collect();
    for rule in &rules {
        assert_eq!(
            rules.iter().filter(|r| *r == rule).count(),
            1,
            "{rule:?} appears more than once in:\n{save}"
        );
    }
}

// === helpers: clients ===

/// Connects from inside `pod` in-process (as root) and returns the server's line.
fn ask_in(pod: &Pod, to: SocketAddr) -> std::io::Result<String> {
    pod.run_in(|| {
        let stream = TcpStream::connect_timeout(&to, IO_TIMEOUT)?;
        read_line(stream)
    })
    .expect("enter the pod's namespace")
}

fn read_line(stream: TcpStream) -> std::io::Result<String> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    Ok(line.trim_end().to_owned())
}

/// Connects from inside `pod` as `uid`/`gid` (a `python3` child) and returns the server's
/// line, or the client's error (the Python exception) as text.
fn ask_as(pod: &Pod, uid: u32, gid: u32, to: SocketAddr) -> Result<String, String> {
    ask_from(pod, uid, gid, "", to)
}

/// As [`ask_as`], binding the client socket to `source` first (empty: any).
fn ask_from(pod: &Pod, uid: u32, gid: u32, source: &str, to: SocketAddr) -> Result<String, String> {
    const CLIENT: &str = "\
import socket, sys
host, port, source, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
src = (source, 0) if source else None
s = socket.create_connection((host, port), timeout=timeout, source_address=src)
sys.stdout.write(s.makefile('rb').readline().decode())
";
    let out = output(
        pod.command_as(PYTHON, uid, gid)
            .args(["-I", "-c", CLIENT])
            .arg(to.ip().to_string())
            .arg(to.port().to_string())
            .arg(source)
            .arg(IO_TIMEOUT.as_secs().to_string()),
    );
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

// === helpers: servers ===

/// A TCP server inside a pod answering every connection with `<tag> <original dst>` and
/// recording the original destinations it saw. Stops when dropped (or after
/// [`SERVER_LIFETIME`]).
struct Server {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<SocketAddr>>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(pod: &Pod, addr: SocketAddr, tag: &str) -> Self {
        let listener = pod
            .run_in(|| bind(addr))
            .expect("enter the pod's namespace")
            .unwrap_or_else(|e| panic!("bind {addr} in {}: {e}", pod.name()));
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, seen, tag) = (stop.clone(), seen.clone(), tag.to_owned());
            std::thread::spawn(move || serve(&listener, &tag, &stop, &seen))
        };
        Self {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// The original destinations of the connections accepted so far.
    fn seen(&self) -> Vec<SocketAddr> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Binds a listener; IPv6 listeners are IPv6-only so they never shadow an IPv4 one.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(64)?;
    Ok(socket.into())
}

fn serve(listener: &TcpListener, tag: &str, stop: &AtomicBool, seen: &Mutex<Vec<SocketAddr>>) {
    let deadline = Instant::now() + SERVER_LIFETIME;
    let v6 = listener.local_addr().is_ok_and(|a| a.is_ipv6());
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let mut stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(e) => panic!("accept: {e}"),
        };
        let sock = SockRef::from(&stream);
        let original = if v6 {
            sock.original_dst_v6()
        } else {
            sock.original_dst_v4()
        };
        // Without NAT conntrack still knows the tuple; fall back to the local address.
        let original = original
            .ok()
            .and_then(|a| a.as_socket())
            .or_else(|| stream.local_addr().ok())
            .expect("a destination address");
        seen.lock().unwrap().push(original);
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
        let _ = writeln!(stream, "{tag} {original}");
    }
}
