//! The benchmark's results: the JSON document written to `bench-results/data-plane.json`,
//! and the plain-text tables printed on stdout, with the targets next to the numbers.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Targets for the mesh (DESIGN.md, "Benchmarks").
pub(crate) mod targets {
    /// Added p50 latency over direct, µs.
    pub(crate) const ADDED_P50_US: f64 = 90.0;
    /// CPU seconds per 10k requests, both proxies together.
    pub(crate) const CPU_PER_10K: f64 = 0.8;
    /// Idle resident memory per proxy, MiB.
    pub(crate) const IDLE_RSS_MIB: f64 = 10.0;
    /// Spawn to `/healthz/ready`, ms.
    pub(crate) const READY_MS: f64 = 50.0;
}

/// The whole report.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Report {
    /// Seconds since the Unix epoch when the run finished.
    pub(crate) generated_unix: u64,
    /// `git rev-parse HEAD` of the workspace, if available (`+dirty` when it has changes).
    pub(crate) git_commit: Option<String>,
    /// The machine.
    pub(crate) machine: Machine,
    /// The run's settings.
    pub(crate) settings: Settings,
    /// The targets the mesh row is checked against.
    pub(crate) targets: Targets,
    /// Caveats that apply to these numbers.
    pub(crate) notes: Vec<String>,
    /// One entry per setup.
    pub(crate) setups: Vec<SetupReport>,
}

/// Where the run happened.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Machine {
    /// Logical CPUs available.
    pub(crate) cpus: usize,
    /// `/proc/cpuinfo` model name.
    pub(crate) cpu_model: Option<String>,
    /// Kernel release.
    pub(crate) kernel: Option<String>,
    /// `haproxy -v`, when installed.
    pub(crate) haproxy: Option<String>,
    /// `/proc/loadavg` (1, 5, 15 min) when the run started: other work on the machine.
    pub(crate) load_average_before: String,
    /// The same when it ended.
    pub(crate) load_average_after: String,
}

/// The run's settings.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Settings {
    /// Fixed-rate phase: requests per second.
    pub(crate) rate: u32,
    /// Fixed-rate phase: recorded seconds.
    pub(crate) duration_s: f64,
    /// Fixed-rate phase: warm-up seconds (same rate, not recorded).
    pub(crate) warmup_s: f64,
    /// Fixed-rate phase: keep-alive connections.
    pub(crate) connections: u32,
    /// Max-throughput phase: closed-loop connections.
    pub(crate) max_connections: u32,
    /// Max-throughput phase: counted seconds.
    pub(crate) max_duration_s: f64,
    /// Each phase is split into this many rounds, alternating between setups.
    pub(crate) rounds: u32,
    /// Response body size.
    pub(crate) body_bytes: usize,
    /// CPU placement, e.g. "proxies on CPU 1; load generator and backend on CPU 0".
    pub(crate) cpu_placement: String,
    /// Clock ticks per second used for `/proc/<pid>/stat`.
    pub(crate) clk_tck: u64,
}

/// Targets, as numbers.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Targets {
    /// Added p50, µs.
    pub(crate) added_p50_us: f64,
    /// CPU-s per 10k requests for the pair.
    pub(crate) cpu_seconds_per_10k: f64,
    /// Idle RSS per proxy, MiB.
    pub(crate) idle_rss_mib: f64,
    /// Time to ready, ms.
    pub(crate) ready_ms: f64,
}

impl Default for Targets {
    fn default() -> Self {
        Self {
            added_p50_us: targets::ADDED_P50_US,
            cpu_seconds_per_10k: targets::CPU_PER_10K,
            idle_rss_mib: targets::IDLE_RSS_MIB,
            ready_ms: targets::READY_MS,
        }
    }
}

/// Latency percentiles in µs.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Percentiles {
    /// Median.
    pub(crate) p50: f64,
    /// 90th percentile.
    pub(crate) p90: f64,
    /// 99th percentile.
    pub(crate) p99: f64,
    /// 99.9th percentile.
    pub(crate) p999: f64,
    /// Largest.
    pub(crate) max: f64,
    /// Mean.
    pub(crate) mean: f64,
    /// Samples.
    pub(crate) count: u64,
}

impl Percentiles {
    /// From a histogram of nanoseconds.
    pub(crate) fn of(h: &Histogram<u64>) -> Self {
        let us = |ns: u64| ns as f64 / 1000.0;
        Self {
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            mean: h.mean() / 1000.0,
            count: h.len(),
        }
    }
}

/// Latency added over the direct setup, µs.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Added {
    /// p50 difference.
    pub(crate) p50: f64,
    /// p99 difference.
    pub(crate) p99: f64,
    /// p99.9 difference.
    pub(crate) p999: f64,
}

impl Added {
    /// `setup − direct`, percentile by percentile.
    pub(crate) fn between(setup: &Percentiles, direct: &Percentiles) -> Self {
        Self {
            p50: setup.p50 - direct.p50,
            p99: setup.p99 - direct.p99,
            p999: setup.p999 - direct.p999,
        }
    }
}

/// One proxy process.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProcessReport {
    /// Its name (`mesh-client`, `haproxy-server`, …).
    pub(crate) name: String,
    /// Spawn to ready, ms.
    pub(crate) ready_ms: f64,
    /// `VmRSS` after ready, before any load, MiB.
    pub(crate) idle_rss_mib: f64,
    /// `VmHWM` after both load phases, MiB.
    pub(crate) peak_rss_mib: f64,
    /// CPU seconds during the fixed-rate window.
    pub(crate) cpu_seconds: f64,
}

/// The fixed-rate phase's outcome.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FixedReport {
    /// Latency from the intended send time, µs.
    pub(crate) latency_us: Percentiles,
    /// The generator's own send lag (requests whose connection was free in time), µs.
    pub(crate) send_lag_us: Percentiles,
    /// Requests scheduled in the window.
    pub(crate) scheduled: u64,
    /// Successes.
    pub(crate) ok: u64,
    /// Failures.
    pub(crate) errors: u64,
    /// Never sent (deadline).
    pub(crate) unsent: u64,
    /// Successes per second.
    pub(crate) achieved_rps: f64,
    /// The first error, if any.
    pub(crate) first_error: Option<String>,
    /// Each round on its own, in order: shows how much the machine's background load moved
    /// the numbers.
    pub(crate) rounds: Vec<RoundReport>,
}

/// One fixed-rate round of one setup.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RoundReport {
    /// Latency from the intended send time, µs.
    pub(crate) latency_us: Percentiles,
    /// The generator's own send lag, p99, µs.
    pub(crate) send_lag_p99_us: f64,
}

/// One setup's results.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SetupReport {
    /// `direct`, `mesh` or `haproxy`.
    pub(crate) name: String,
    /// The path requests take.
    pub(crate) path: String,
    /// `ok`, or why the setup did not run.
    pub(crate) status: String,
    /// Proxies on the path.
    pub(crate) hops: u32,
    /// Fixed-rate results.
    pub(crate) fixed: Option<FixedReport>,
    /// Latency added over direct.
    pub(crate) added_us: Option<Added>,
    /// Closed-loop requests per second.
    pub(crate) max_rps: Option<f64>,
    /// Closed-loop failures.
    pub(crate) max_errors: Option<u64>,
    /// CPU seconds of all proxies of the setup per 10k successful requests.
    pub(crate) cpu_seconds_per_10k: Option<f64>,
    /// The load generator's and backend's CPU seconds in the same window (the xtask
    /// process), for context.
    pub(crate) loadgen_backend_cpu_seconds: Option<f64>,
    /// Requests the backend answered during the whole setup (probe, warm-up, both phases):
    /// more than the load generator sent would mean the proxies retried or duplicated.
    pub(crate) backend_requests: Option<u64>,
    /// Requests the load generator sent to the setup (probe, warm-ups, both phases).
    pub(crate) loadgen_requests: Option<u64>,
    /// The proxies.
    pub(crate) processes: Vec<ProcessReport>,
}

impl SetupReport {
    /// A setup that did not run.
    pub(crate) fn skipped(name: &str, path: &str, hops: u32, status: &str) -> Self {
        Self {
            name: name.into(),
            path: path.into(),
            status: status.into(),
            hops,
            fixed: None,
            added_us: None,
            max_rps: None,
            max_errors: None,
            cpu_seconds_per_10k: None,
            loadgen_backend_cpu_seconds: None,
            backend_requests: None,
            loadgen_requests: None,
            processes: Vec::new(),
        }
    }
}

/// `12.3µs`, `1.23ms`, `1.23s`: three significant digits, at most.
pub(crate) fn fmt_us(us: f64) -> String {
    let a = us.abs();
    if a >= 1_000_000.0 {
        format!("{:.2}s", us / 1_000_000.0)
    } else if a >= 10_000.0 {
        format!("{:.1}ms", us / 1000.0)
    } else if a >= 1000.0 {
        format!("{:.2}ms", us / 1000.0)
    } else if a >= 100.0 {
        format!("{us:.0}µs")
    } else {
        format!("{us:.1}µs")
    }
}

/// Like [`fmt_us`] with an explicit sign.
pub(crate) fn fmt_added_us(us: f64) -> String {
    if us < 0.0 {
        format!("-{}", fmt_us(-us))
    } else {
        format!("+{}", fmt_us(us))
    }
}

/// `min–max` of some µs values (`-` when empty).
fn range(values: impl Iterator<Item = f64>) -> String {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if lo > hi {
        "-".into()
    } else {
        format!("{}–{}", fmt_us(lo), fmt_us(hi))
    }
}

fn mark(ok: bool) -> &'static str {
    if ok { " ✓" } else { " ✗" }
}

/// Lays out rows in columns separated by two spaces (width counted in chars). The last
/// cell of a row shorter than the widest spans the remaining columns (it does not widen its
/// column).
pub(crate) fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter(|r| r.len() == cols || c + 1 < r.len())
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let pad = widths[c].saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The main table: latency, added latency, throughput, CPU, RSS, readiness; the mesh row
/// carries ✓/✗ against the targets.
pub(crate) fn summary_table(setups: &[SetupReport]) -> String {
    let mut rows = vec![
        [
            "setup",
            "hops",
            "p50",
            "p99",
            "p99.9",
            "max",
            "added p50",
            "added p99",
            "added p99.9",
            "max rps",
            "CPU-s/10k",
            "idle RSS MiB",
            "ready ms",
        ]
        .map(String::from)
        .to_vec(),
        [
            "target",
            "",
            "",
            "",
            "",
            "",
            "≤ +90µs",
            "",
            "",
            "",
            "≤ 0.8 (pair)",
            "≤ 10 each",
            "≤ 50 each",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for s in setups {
        let check = s.name == "mesh";
        let Some(fixed) = &s.fixed else {
            rows.push(vec![s.name.clone(), s.hops.to_string(), s.status.clone()]);
            continue;
        };
        let l = &fixed.latency_us;
        let added = |f: fn(&Added) -> f64, target: Option<f64>| match &s.added_us {
            Some(a) => {
                let v = f(a);
                let m = match target {
                    Some(t) if check => mark(v <= t),
                    _ => "",
                };
                format!("{}{m}", fmt_added_us(v))
            }
            None => "-".into(),
        };
        let per_proc = |f: fn(&ProcessReport) -> f64, digits: usize, target: f64| {
            if s.processes.is_empty() {
                return "-".to_owned();
            }
            let text = s
                .processes
                .iter()
                .map(|p| format!("{:.digits$}", f(p)))
                .collect::<Vec<_>>()
                .join("/");
            let worst = s.processes.iter().map(f).fold(f64::MIN, f64::max);
            if check {
                format!("{text}{}", mark(worst <= target))
            } else {
                text
            }
        };
        rows.push(vec![
            s.name.clone(),
            s.hops.to_string(),
            fmt_us(l.p50),
            fmt_us(l.p99),
            fmt_us(l.p999),
            fmt_us(l.max),
            added(|a| a.p50, Some(targets::ADDED_P50_US)),
            added(|a| a.p99, None),
            added(|a| a.p999, None),
            s.max_rps.map_or("-".into(), |r| format!("{r:.0}")),
            s.cpu_seconds_per_10k.map_or("-".into(), |c| {
                let m = if check {
                    mark(c <= targets::CPU_PER_10K)
                } else {
                    ""
                };
                format!("{c:.3}{m}")
            }),
            per_proc(|p| p.idle_rss_mib, 1, targets::IDLE_RSS_MIB),
            per_proc(|p| p.ready_ms, 1, targets::READY_MS),
        ]);
    }
    table(&rows)
}

/// The detail table: what the load generator did, per setup.
pub(crate) fn detail_table(setups: &[SetupReport]) -> String {
    let mut rows = vec![
        [
            "setup",
            "sent/scheduled",
            "achieved rps",
            "errors",
            "unsent",
            "p90",
            "mean",
            "p50 per round",
            "p99 per round",
            "gen lag p99",
            "peak RSS MiB",
            "max-phase errors",
            "backend/sent",
            "loadgen+backend CPU-s",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for s in setups {
        let Some(f) = &s.fixed else { continue };
        rows.push(vec![
            s.name.clone(),
            format!("{}/{}", f.ok + f.errors, f.scheduled),
            format!("{:.1}", f.achieved_rps),
            f.errors.to_string(),
            f.unsent.to_string(),
            fmt_us(f.latency_us.p90),
            fmt_us(f.latency_us.mean),
            range(f.rounds.iter().map(|r| r.latency_us.p50)),
            range(f.rounds.iter().map(|r| r.latency_us.p99)),
            fmt_us(f.send_lag_us.p99),
            if s.processes.is_empty() {
                "-".into()
            } else {
                s.processes
                    .iter()
                    .map(|p| format!("{:.1}", p.peak_rss_mib))
                    .collect::<Vec<_>>()
                    .join("/")
            },
            s.max_errors.map_or("-".into(), |e| e.to_string()),
            match (s.backend_requests, s.loadgen_requests) {
                (Some(b), Some(l)) => format!("{b}/{l}"),
                _ => "-".into(),
            },
            s.loadgen_backend_cpu_seconds
                .map_or("-".into(), |c| format!("{c:.2}")),
        ]);
    }
    table(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_format_with_three_significant_digits() {
        assert_eq!(fmt_us(0.4), "0.4µs");
        assert_eq!(fmt_us(45.26), "45.3µs");
        assert_eq!(fmt_us(123.4), "123µs");
        assert_eq!(fmt_us(1234.0), "1.23ms");
        assert_eq!(fmt_us(45_600.0), "45.6ms");
        assert_eq!(fmt_us(2_500_000.0), "2.50s");
        assert_eq!(fmt_added_us(52.04), "+52.0µs");
        assert_eq!(fmt_added_us(-3.0), "-3.0µs");
        assert_eq!(fmt_added_us(0.0), "+0.0µs");
    }

    #[test]
    fn percentiles_come_from_the_histogram_in_microseconds() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        // 1000 samples: 1..=1000 µs.
        for us in 1..=1000u64 {
            h.record(us * 1000).unwrap();
        }
        let p = Percentiles::of(&h);
        // Three significant digits: within 0.1% of the exact value.
        let near = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 0.001;
        assert!(near(p.p50, 500.0), "{p:?}");
        assert!(near(p.p90, 900.0), "{p:?}");
        assert!(near(p.p99, 990.0), "{p:?}");
        assert!(near(p.p999, 999.0), "{p:?}");
        assert!(near(p.max, 1000.0), "{p:?}");
        assert_eq!(p.count, 1000);
        let direct = Percentiles { p50: 400.0, ..p };
        assert!((Added::between(&p, &direct).p50 - (p.p50 - 400.0)).abs() < 1e-9);
    }

    #[test]
    fn tables_align_on_characters_not_bytes() {
        let t = table(&[
            vec!["a".into(), "µµ".into(), "z".into()],
            vec!["bbb".into(), "c".into(), "".into()],
        ]);
        assert_eq!(t, "a    µµ  z\nbbb  c\n");
        // A short row's last cell spans: it does not widen the column.
        let t = table(&[
            vec!["a".into(), "b".into(), "c".into()],
            vec!["x".into(), "a long status".into()],
        ]);
        assert_eq!(t, "a  b  c\nx  a long status\n");
    }
}
