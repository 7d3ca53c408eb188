//! `cargo xtask bench`: data-plane latency, throughput, CPU and memory of the mesh, against a
//! direct connection and a reference proxy (HAProxy), in the same run, on loopback.
//!
//! First every setup ([`setups`]) is started, one after the other (measuring spawn →
//! `/healthz/ready`, then idle RSS, then one checked request). Then the fixed-rate phase
//! ([`load::run_fixed`]: open loop, latency from the intended send time, the proxies' CPU
//! sampled from `/proc` at each window's edges) and the closed-loop max-throughput phase
//! ([`load::run_max`]) run in rounds that alternate between the setups (the order rotates
//! every round), so that background load on a shared machine hits every setup alike. Then
//! peak RSS is read, the proxies are stopped, a table is printed (added latency is
//! setup − direct) and `bench-results/data-plane.json` is written.
//!
//! On a machine with two or more CPUs the proxies run on CPU 1 and the xtask (load generator
//! and backend) on CPU 0, so the generator's own work neither steals from nor is counted
//! for the proxies; `--no-pin` turns this off. Every phase is bounded in time; every child
//! process is stopped on every exit path ([`procs::Proc`]); all traffic is on `127.0.0.0/8`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};

mod backend;
pub(crate) mod cp;
mod http1;
mod load;
mod procfs;
mod procs;
mod report;
mod setups;

use load::{FixedRate, Target};
use report::{Added, FixedReport, Percentiles, ProcessReport, Report, SetupReport};

/// Response body size.
const BODY_BYTES: usize = 1024;
/// The request path.
const PATH: &str = "/bench";
/// Set when the bench runs in the release build it re-ran itself as.
const IN_RELEASE_ENV: &str = "XTASK_BENCH_RELEASE";
/// What the haproxy row says when HAProxy is missing.
const HAPROXY_MISSING: &str = "not installed (apt-get install -y haproxy)";

/// Options of `cargo xtask bench`.
#[derive(Debug, Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct Args {
    /// Another benchmark instead of the data plane's.
    #[command(subcommand)]
    pub(crate) other: Option<Other>,
    /// Fixed-rate phase: requests per second (all connections together).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) rate: u32,
    /// Fixed-rate phase: how long to record, after the warm-up.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) duration: Duration,
    /// Fixed-rate phase: how long to send at the same rate before recording.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub(crate) warmup: Duration,
    /// Fixed-rate phase: keep-alive HTTP/1.1 connections.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub(crate) connections: u32,
    /// Max-throughput phase: closed-loop connections.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub(crate) max_connections: u32,
    /// Max-throughput phase: how long to count (after a 1 s warm-up).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub(crate) max_duration: Duration,
    /// Split each phase into this many rounds, alternating between the setups.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub(crate) rounds: u32,
    /// Smoke check: 1 s warm-up and 2 s per phase (in 2 rounds).
    #[arg(long)]
    pub(crate) quick: bool,
    /// Fail when HAProxy is not installed (instead of reporting the row as missing).
    #[arg(long)]
    pub(crate) require_haproxy: bool,
    /// Setups to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "direct,mesh,haproxy")]
    pub(crate) setups: Vec<SetupKind>,
    /// Do not run `cargo build --release -p mesh-proxy` first.
    #[arg(long)]
    pub(crate) no_build: bool,
    /// The mesh-proxy binary (default: the workspace's release build).
    #[arg(long, value_name = "PATH")]
    pub(crate) proxy_bin: Option<PathBuf>,
    /// The HAProxy binary (default: `haproxy` on PATH or in /usr/sbin); a path that does
    /// not exist counts as not installed.
    #[arg(long, value_name = "PATH")]
    pub(crate) haproxy_bin: Option<PathBuf>,
    /// Do not pin proxies and load generator to separate CPUs.
    #[arg(long)]
    pub(crate) no_pin: bool,
    /// Where to write the JSON results (relative to the workspace root).
    #[arg(long, default_value = "bench-results/data-plane.json")]
    pub(crate) out: PathBuf,
}

/// Benchmarks other than the data plane's.
#[derive(Debug, Clone, clap::Subcommand)]
pub(crate) enum Other {
    /// Control plane: push latency and memory with many proxies in a large mesh.
    Cp(cp::Args),
}

/// One of the compared setups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SetupKind {
    /// Load generator → backend.
    Direct,
    /// Load generator → client sidecar → server sidecar → backend.
    Mesh,
    /// Load generator → HAProxy → HAProxy → backend.
    Haproxy,
}

impl SetupKind {
    fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Mesh => "mesh",
            Self::Haproxy => "haproxy",
        }
    }

    fn hops(self) -> u32 {
        match self {
            Self::Direct => 0,
            Self::Mesh | Self::Haproxy => 2,
        }
    }

    fn path(self) -> &'static str {
        match self {
            Self::Direct => "load -> backend",
            Self::Mesh => {
                "load -HTTP/1.1-> client sidecar -HTTP/2 (plaintext)-> server sidecar :15008 -HTTP/1.1-> backend"
            }
            Self::Haproxy => {
                "load -HTTP/1.1-> haproxy #1 -HTTP/2 (plaintext, proto h2)-> haproxy #2 -HTTP/1.1-> backend"
            }
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = mesh_api::duration::parse(s).map_err(|e| e.to_string())?;
    if d.is_zero() || d > Duration::from_secs(600) {
        return Err(format!("{s:?}: expected between 1ms and 10m"));
    }
    Ok(d)
}

/// The phases' settings after `--quick`.
#[derive(Debug, Clone, Copy)]
struct Plan {
    fixed: FixedRate,
    max_connections: u32,
    max_warmup: Duration,
    max_duration: Duration,
    rounds: u32,
}

impl Plan {
    fn of(args: &Args) -> anyhow::Result<Self> {
        let (warmup, duration, max_warmup, max_duration) = if args.quick {
            (
                Duration::from_secs(1),
                Duration::from_secs(2),
                Duration::from_millis(500),
                Duration::from_secs(2),
            )
        } else {
            (
                args.warmup,
                args.duration,
                Duration::from_secs(1),
                args.max_duration,
            )
        };
        if args.connections > args.rate {
            bail!(
                "--connections {} is more than --rate {}: some connections would never send",
                args.connections,
                args.rate
            );
        }
        Ok(Self {
            fixed: FixedRate {
                rate: args.rate,
                connections: args.connections,
                warmup,
                duration,
            },
            max_connections: args.max_connections,
            max_warmup,
            max_duration,
            rounds: if args.quick { 2 } else { args.rounds },
        })
    }
}

/// A started setup and what has been measured on it so far.
#[derive(Debug)]
struct Live {
    kind: SetupKind,
    running: setups::Running,
    target: Target,
    idle_rss_kib: Vec<u64>,
    fixed: load::FixedResult,
    /// CPU ticks of each proxy over all fixed-rate windows (None: unreadable).
    proc_ticks: Vec<Option<u64>>,
    /// CPU ticks of the xtask (load generator + backend) over the same windows.
    own_ticks: Option<u64>,
    max: load::MaxResult,
    /// Requests the backend answered while this setup was loaded.
    backend_requests: u64,
    /// Requests the load generator sent to this setup (probe, warm-ups, both phases).
    loadgen_requests: u64,
    /// Each fixed-rate round on its own.
    rounds: Vec<report::RoundReport>,
}

/// Runs the benchmark from the workspace root.
pub(crate) fn run(root: &Path, args: &Args) -> anyhow::Result<()> {
    if cfg!(debug_assertions) && std::env::var_os(IN_RELEASE_ENV).is_none() {
        return rerun_in_release(root);
    }
    if let Some(Other::Cp(cp)) = &args.other {
        return cp::run(root, cp);
    }
    let plan = Plan::of(args)?;
    let results_dir = root.join("bench-results");
    let work_dir = results_dir.join("data-plane");

    let wants = |k: SetupKind| args.setups.contains(&k);
    let proxy_bin = match &args.proxy_bin {
        Some(p) => p.clone(),
        None => target_dir(root).join("release").join("mesh-proxy"),
    };
    if wants(SetupKind::Mesh) {
        if !args.no_build {
            build_proxy(root)?;
        }
        if !proxy_bin.is_file() {
            bail!(
                "{} not found: run `cargo build --release -p mesh-proxy` (or pass --proxy-bin)",
                proxy_bin.display()
            );
        }
    }
    let haproxy = match &args.haproxy_bin {
        Some(p) => p.is_file().then(|| p.clone()),
        None => procs::which("haproxy"),
    };
    if haproxy.is_none() && args.require_haproxy {
        bail!("haproxy is {HAPROXY_MISSING}");
    }

    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    // (children's CPU, xtask's CPU)
    let pin = (!args.no_pin && cpus >= 2).then_some((1usize, 0usize));
    let placement = match pin {
        Some((c, h)) => format!(
            "proxies on CPU {c} (all of a setup's proxies share it); load generator and \
             backend on CPU {h}"
        ),
        None => "not pinned".to_owned(),
    };
    if let Some((_, home)) = pin {
        // Before any thread exists: the backend and load threads inherit it.
        procs::pin_current_thread(home)?;
    }
    let clk_tck = procfs::clk_tck();
    let load_before = load_average();

    let backend = backend::Backend::start(&setups::backend_addrs(), BODY_BYTES)?;
    let launcher = procs::Launcher::new(&work_dir, pin)?;
    eprintln!(
        "== bench: {} rps × {:?} (+ warm-up) over {} connections, then {} closed-loop \
         connections × {:?}; each phase in {} rounds, setups interleaved; {placement}; \
         load average {load_before}",
        plan.fixed.rate,
        plan.fixed.duration,
        plan.fixed.connections,
        plan.max_connections,
        plan.max_duration,
        plan.rounds,
    );

    // Start every setup first (each measured while the others are idle), so the load
    // phases can alternate between them.
    let mut lives: Vec<Live> = Vec::new();
    let mut skipped: Vec<SetupReport> = Vec::new();
    for kind in [SetupKind::Direct, SetupKind::Mesh, SetupKind::Haproxy] {
        if !wants(kind) {
            continue;
        }
        let running = match kind {
            SetupKind::Direct => setups::Running {
                entry: setups::DIRECT_BACKEND,
                procs: Vec::new(),
                ready: Vec::new(),
            },
            SetupKind::Mesh => setups::start_mesh(&launcher, &proxy_bin).context("start mesh")?,
            SetupKind::Haproxy => match &haproxy {
                Some(bin) => setups::start_haproxy(&launcher, bin).context("start haproxy")?,
                None => {
                    eprintln!("== haproxy: {HAPROXY_MISSING}; skipped");
                    skipped.push(SetupReport::skipped(
                        kind.name(),
                        kind.path(),
                        kind.hops(),
                        HAPROXY_MISSING,
                    ));
                    continue;
                }
            },
        };
        lives.push(start_live(kind, running, &backend)?);
    }

    let per_round = |d: Duration| d / plan.rounds;
    let later_warmup = |w: Duration| w.min(ROUND_WARMUP);
    for round in 0..plan.rounds {
        eprintln!("== fixed rate, round {}/{}", round + 1, plan.rounds);
        let n = lives.len();
        for i in 0..n {
            let live = &mut lives[(i + round as usize) % n];
            let cfg = FixedRate {
                warmup: if round == 0 {
                    plan.fixed.warmup
                } else {
                    later_warmup(plan.fixed.warmup)
                },
                duration: per_round(plan.fixed.duration),
                ..plan.fixed
            };
            fixed_round(live, cfg, &backend)?;
        }
    }
    for round in 0..plan.rounds {
        eprintln!("== max throughput, round {}/{}", round + 1, plan.rounds);
        let n = lives.len();
        for i in 0..n {
            let live = &mut lives[(i + round as usize) % n];
            let warmup = if round == 0 {
                plan.max_warmup
            } else {
                later_warmup(plan.max_warmup)
            };
            let before = backend.served();
            let max = load::run_max(
                &live.target,
                plan.max_connections,
                warmup,
                per_round(plan.max_duration),
            );
            live.backend_requests += backend.served() - before;
            live.loadgen_requests += max.sent_total;
            eprintln!(
                "   {:<8} {:.0} rps, {} errors",
                live.kind.name(),
                max.rps,
                max.errors
            );
            if let Some(e) = &max.first_error {
                eprintln!("            first error: {e}");
            }
            live.max.merge(max);
            for p in &mut live.running.procs {
                p.check_alive()?;
            }
        }
    }

    let mut reports: Vec<SetupReport> = Vec::new();
    for live in lives {
        reports.push(finish_live(live, clk_tck)?);
    }
    reports.extend(skipped);
    drop(backend);
    let load_after = load_average();

    // Added latency: against the direct row of this same run.
    let direct = reports
        .iter()
        .find(|r| r.name == "direct")
        .and_then(|r| r.fixed.as_ref())
        .map(|f| f.latency_us);
    for r in &mut reports {
        if r.name == "direct" {
            continue;
        }
        if let (Some(d), Some(f)) = (&direct, &r.fixed) {
            r.added_us = Some(Added::between(&f.latency_us, d));
        }
    }

    let mut notes = vec![
        "mesh: HTTP/2 over mutual TLS 1.3 between the proxies (certificates from `mesh-control \
         ca issue`; one pooled connection, so the cost is encryption, not handshakes); \
         HAProxy runs cleartext, so the comparison favours it."
            .to_owned(),
        "haproxy: two chained instances (client side, server side), HTTP/2 cleartext \
         (`proto h2`) between them, HTTP/1.1 keep-alive on both ends, http-reuse always, no \
         logging; thread count left to HAProxy (one per CPU it may use)."
            .to_owned(),
        format!(
            "latency is measured from each request's intended send time on a fixed schedule \
             (coordinated omission corrected); `added` is setup minus direct, same run; the \
             phases alternate between setups in {} rounds so that background load hits all \
             of them alike.",
            plan.rounds
        ),
        format!(
            "CPU: utime+stime of the proxy processes over the recorded windows \
             (/proc/<pid>/stat, CLK_TCK {clk_tck}), divided by the successful requests \
             completed in them; resolution ±{:.3} CPU-s per 10k at this rate and duration.",
            2.0 * plan.rounds as f64
                / clk_tck as f64
                / (plan.fixed.rate as f64 * plan.fixed.duration.as_secs_f64())
                * 10_000.0
        ),
        format!("CPU placement: {placement}."),
        format!("load average (1/5/15 min) before: {load_before}; after: {load_after}."),
    ];
    let worst_lag = reports
        .iter()
        .filter_map(|r| r.fixed.as_ref())
        .map(|f| f.send_lag_us.p99)
        .fold(0.0, f64::max);
    if worst_lag > NOISY_LAG_US {
        notes.push(format!(
            "NOISY: the load generator itself started requests up to {} late at p99 (it \
             should be a few µs): the machine was busy (load average {load_before} → \
             {load_after}). Compare setups within this run only; absolute numbers are high.",
            report::fmt_us(worst_lag)
        ));
    }
    let report = Report {
        generated_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        git_commit: git_commit(root),
        machine: report::Machine {
            cpus,
            cpu_model: cpu_model(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|s| s.trim().to_owned()),
            haproxy: haproxy.as_deref().and_then(setups::haproxy_version),
            load_average_before: load_before,
            load_average_after: load_after,
        },
        settings: report::Settings {
            rate: plan.fixed.rate,
            duration_s: plan.fixed.duration.as_secs_f64(),
            warmup_s: plan.fixed.warmup.as_secs_f64(),
            connections: plan.fixed.connections,
            max_connections: plan.max_connections,
            max_duration_s: plan.max_duration.as_secs_f64(),
            rounds: plan.rounds,
            body_bytes: BODY_BYTES,
            cpu_placement: placement,
            clk_tck,
        },
        targets: report::Targets::default(),
        notes,
        setups: reports,
    };

    println!();
    print!("{}", report::summary_table(&report.setups));
    println!();
    print!("{}", report::detail_table(&report.setups));
    println!();
    for note in &report.notes {
        println!("note: {note}");
    }
    let out = root.join(&args.out);
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    std::fs::write(&out, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("write {}", out.display()))?;
    println!("\nresults: {}", out.display());
    println!("proxy configs and logs: {}", launcher.log_dir.display());
    Ok(())
}

/// Warm-up of every round after a setup's first (it was loaded moments ago).
const ROUND_WARMUP: Duration = Duration::from_millis(250);
/// Generator send lag p99 above which the run is flagged as noisy, µs.
const NOISY_LAG_US: f64 = 100.0;

/// Reads idle RSS and checks one request through a started setup.
fn start_live(
    kind: SetupKind,
    mut running: setups::Running,
    backend: &backend::Backend,
) -> anyhow::Result<Live> {
    let name = kind.name();
    for (p, r) in running.procs.iter().zip(&running.ready) {
        eprintln!(
            "== {name}: {} ready in {:.1} ms (pid {})",
            p.name,
            ms(*r),
            p.pid()
        );
    }
    let idle_rss_kib = running
        .procs
        .iter()
        .map(|p| procfs::memory_kib(p.pid()).map(|(rss, _)| rss))
        .collect::<Result<_, _>>()
        .context("read idle RSS")?;
    let target = Target {
        addr: running.entry,
        request: http1::get_request(&setups::host_header(), PATH).into(),
        body_len: BODY_BYTES,
    };
    let before = backend.served();
    let probes =
        check_path(&target, &mut running).with_context(|| format!("{name}: first request"))?;
    let n = running.procs.len();
    Ok(Live {
        kind,
        running,
        target,
        idle_rss_kib,
        fixed: load::FixedResult::empty(),
        proc_ticks: vec![Some(0); n],
        own_ticks: Some(0),
        max: load::MaxResult::empty(),
        backend_requests: backend.served() - before,
        loadgen_requests: probes,
        rounds: Vec::new(),
    })
}

/// One fixed-rate round on `live`, CPU sampled at the window's edges.
fn fixed_round(live: &mut Live, cfg: FixedRate, backend: &backend::Backend) -> anyhow::Result<()> {
    let pids: Vec<u32> = live.running.procs.iter().map(|p| p.pid()).collect();
    let own = std::process::id();
    let sample = || -> Vec<Option<u64>> {
        pids.iter()
            .chain([&own])
            .map(|&pid| procfs::cpu_ticks(pid).ok())
            .collect()
    };
    let before = backend.served();
    let (fixed, at_begin, at_end) = load::run_fixed(&live.target, cfg, sample);
    live.backend_requests += backend.served() - before;
    live.loadgen_requests += fixed.sent_total;
    for p in &mut live.running.procs {
        p.check_alive()?;
    }
    let delta = |i: usize| -> Option<u64> {
        let (a, b) = (at_begin.get(i).copied()??, at_end.get(i).copied()??);
        Some(b.saturating_sub(a))
    };
    for (i, acc) in live.proc_ticks.iter_mut().enumerate() {
        *acc = acc.zip(delta(i)).map(|(a, d)| a + d);
    }
    live.own_ticks = live.own_ticks.zip(delta(pids.len())).map(|(a, d)| a + d);
    let lat = Percentiles::of(&fixed.latency);
    eprintln!(
        "   {:<8} p50 {} p99 {} max {}; {} ok, {} errors, {} unsent; gen lag p99 {}",
        live.kind.name(),
        report::fmt_us(lat.p50),
        report::fmt_us(lat.p99),
        report::fmt_us(lat.max),
        fixed.ok,
        fixed.errors,
        fixed.unsent,
        report::fmt_us(Percentiles::of(&fixed.send_lag).p99),
    );
    if let Some(e) = &fixed.first_error {
        eprintln!("            first error: {e}");
    }
    live.rounds.push(report::RoundReport {
        latency_us: lat,
        send_lag_p99_us: Percentiles::of(&fixed.send_lag).p99,
    });
    live.fixed.merge(fixed);
    Ok(())
}

/// Reads peak RSS, stops the setup's processes and builds its report.
fn finish_live(live: Live, clk_tck: u64) -> anyhow::Result<SetupReport> {
    let Live {
        kind,
        running,
        idle_rss_kib,
        fixed,
        proc_ticks,
        own_ticks,
        max,
        backend_requests,
        loadgen_requests,
        rounds,
        ..
    } = live;
    let secs = |t: Option<u64>| t.map(|t| t as f64 / clk_tck as f64);
    let mut processes = Vec::new();
    for (i, p) in running.procs.iter().enumerate() {
        let (_, peak) = procfs::memory_kib(p.pid()).context("read peak RSS")?;
        processes.push(ProcessReport {
            name: p.name.clone(),
            ready_ms: ms(running.ready[i]),
            idle_rss_mib: idle_rss_kib[i] as f64 / 1024.0,
            peak_rss_mib: peak as f64 / 1024.0,
            cpu_seconds: secs(proc_ticks[i]).unwrap_or(f64::NAN),
        });
    }
    drop(running);
    let cpu_per_10k = if processes.is_empty() || fixed.completed_in_window == 0 {
        None
    } else {
        proc_ticks
            .iter()
            .map(|&t| secs(t))
            .sum::<Option<f64>>()
            .map(|total| total / fixed.completed_in_window as f64 * 10_000.0)
    };
    let status = if fixed.ok == 0 {
        "failed: no successful request".to_owned()
    } else {
        "ok".to_owned()
    };
    Ok(SetupReport {
        name: kind.name().into(),
        path: kind.path().into(),
        status,
        hops: kind.hops(),
        fixed: Some(FixedReport {
            latency_us: Percentiles::of(&fixed.latency),
            send_lag_us: Percentiles::of(&fixed.send_lag),
            scheduled: fixed.scheduled,
            ok: fixed.ok,
            errors: fixed.errors,
            unsent: fixed.unsent,
            achieved_rps: fixed.achieved_rps,
            first_error: fixed.first_error,
            rounds,
        }),
        added_us: None,
        max_rps: Some(max.rps),
        max_errors: Some(max.errors),
        cpu_seconds_per_10k: cpu_per_10k,
        loadgen_backend_cpu_seconds: secs(own_ticks),
        backend_requests: Some(backend_requests),
        loadgen_requests: Some(loadgen_requests),
        processes,
    })
}

/// `/proc/loadavg`'s first three fields.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| {
            s.split_ascii_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "unknown".into())
}

/// One request must succeed before the load starts (the first one through the mesh also
/// opens the HTTP/2 connection between the proxies); retried briefly.
/// Returns how many requests it took.
fn check_path(target: &Target, running: &mut setups::Running) -> anyhow::Result<u64> {
    let mut last = String::new();
    for attempt in 1..=50 {
        match load::probe(target) {
            Ok(()) => return Ok(attempt),
            Err(e) => last = e,
        }
        for p in &mut running.procs {
            p.check_alive()?;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("GET {PATH} via {} keeps failing: {last}", target.addr)
}

/// The load generator and backend must be optimized (a debug hyper costs tens of µs per
/// request and would cap the max-throughput phase), while `cargo xtask` is a dev build:
/// re-run the same command line from a release build of the xtask.
fn rerun_in_release(root: &Path) -> anyhow::Result<()> {
    eprintln!("== cargo run --release -p xtask -- (the same arguments)");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["run", "--release", "--quiet", "-p", "xtask", "--"])
        .args(std::env::args_os().skip(1))
        .env(IN_RELEASE_ENV, "1")
        .status()
        .context("run the release xtask")?;
    if !status.success() {
        bail!("the release bench failed ({status})");
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Builds the proxy, and mesh-control, whose CA issues the sidecars' certificates.
fn build_proxy(root: &Path) -> anyhow::Result<()> {
    build_package(root, "mesh-proxy")?;
    build_package(root, "mesh-control")
}

/// `cargo build --release -p <package>`.
fn build_package(root: &Path, package: &str) -> anyhow::Result<()> {
    eprintln!("== cargo build --release -p {package}");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--release", "-p", package])
        .status()
        .context("run cargo build")?;
    if !status.success() {
        bail!("cargo build --release -p {package} failed ({status})");
    }
    Ok(())
}

fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => root.join(d),
        None => root.join("target"),
    }
}

fn git_commit(root: &Path) -> Option<String> {
    let run = |args: &[&str]| {
        Command::new("git")
            .current_dir(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let head = run(&["rev-parse", "HEAD"])?;
    let dirty =
        run(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{head}+dirty") } else { head })
}

fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
}
