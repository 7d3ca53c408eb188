//! The load generator: a fixed-rate, open-loop phase that is aware of coordinated omission,
//! and a closed-loop maximum-throughput phase.
//!
//! ## Fixed rate (open loop)
//!
//! The run has a global schedule: request slot `s` is *intended* to start at
//! `start + s / rate`. With `N` keep-alive connections, connection `i` owns the slots
//! `i, i + N, i + 2N, …` ([`slot_offset`]), so the whole run sends evenly spaced requests at
//! exactly `rate`, whatever the responses do. Each connection is a thread with a blocking
//! socket; it sleeps until the intended instant of its next slot (with the thread's timer
//! slack set to 1 ns and a short spin at the end, so it wakes within microseconds), sends,
//! and reads the response.
//!
//! Latency is measured from the **intended** start, not from when the request was actually
//! written: if a response is late, the next request on that connection goes out late, and
//! that wait is counted as latency (the "coordinated omission" correction that wrk2 and
//! HdrHistogram describe). A stalled system under test therefore shows up as large latencies,
//! never as fewer, faster samples. Slots that could not be sent before a hard deadline are
//! reported as `unsent`, never silently dropped.
//!
//! To show that the generator itself keeps time, every request whose connection was idle
//! before its intended instant records its *send lag* (actual write minus intended) in a
//! separate histogram; its p99 should be a few microseconds.
//!
//! The first `warmup` seconds are sent but not recorded. Latencies go into an HDR histogram
//! (nanoseconds, 3 significant digits) per thread, merged at the end.
//!
//! ## Maximum throughput (closed loop)
//!
//! `N` connections each send the next request as soon as the previous response is read;
//! completions after a short warm-up are counted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::http1::{Conn, Response};

/// Timeout for connect, every read and every write.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The last stretch before an intended instant is spun (yielding) instead of slept: on a
/// VM a sleeping thread wakes ~30 µs late (measured here: p50 30 µs with a plain sleep,
/// under 1 µs with a 50 µs spin), which would otherwise be counted as latency.
const SPIN: Duration = Duration::from_micros(50);
/// Highest latency the histograms track.
const MAX_TRACKED: Duration = Duration::from_secs(60);

/// Where and what to send.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The address connections go to.
    pub(crate) addr: SocketAddr,
    /// The request bytes, sent as-is for every request.
    pub(crate) request: Arc<[u8]>,
    /// The body length a correct response has.
    pub(crate) body_len: usize,
}

impl Target {
    fn is_ok(&self, res: &Response) -> bool {
        res.status == 200 && res.body_len == self.body_len
    }
}

/// The offset from the run's start of connection `conn`'s `k`-th request.
pub(crate) fn slot_offset(rate: u32, conns: u32, conn: u32, k: u64) -> Duration {
    let slot = u128::from(k) * u128::from(conns) + u128::from(conn);
    let nanos = slot * 1_000_000_000 / u128::from(rate.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// How many of connection `conn`'s slots start before `span` (offsets `< span`).
pub(crate) fn slots_before(rate: u32, conns: u32, conn: u32, span: Duration) -> u64 {
    // floor(s * 1e9 / rate) < S  <=>  s * 1e9 < S * rate  (S an integer)  <=>  s < ceil(S * rate / 1e9).
    let span_ns = span.as_nanos();
    let total = (span_ns * u128::from(rate)).div_ceil(1_000_000_000);
    let (n, i) = (u128::from(conns.max(1)), u128::from(conn));
    let mine = if total > i {
        (total - i).div_ceil(n)
    } else {
        0
    };
    u64::try_from(mine).unwrap_or(u64::MAX)
}

fn histogram() -> Histogram<u64> {
    let max = u64::try_from(MAX_TRACKED.as_nanos()).unwrap_or(u64::MAX);
    Histogram::new_with_bounds(1, max, 3).expect("valid histogram bounds")
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1));
}

/// Sleeps until `t` with microsecond precision: a plain sleep for all but the last
/// [`SPIN`], then yielding spins. Returns at once if `t` has passed.
fn wait_until(t: Instant) {
    // Bounded: each pass either returns or sleeps/yields while time advances toward `t`.
    loop {
        let now = Instant::now();
        let Some(left) = t.checked_duration_since(now).filter(|d| !d.is_zero()) else {
            return;
        };
        if left > SPIN {
            std::thread::sleep(left - SPIN);
        } else {
            std::thread::yield_now();
        }
    }
}

/// Sub-microsecond sleeps need a tiny timer slack (the default is 50 µs). Per thread.
fn precise_timers() {
    let _ = nix::sys::prctl::set_timerslack(1);
}

/// Settings of the fixed-rate phase.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FixedRate {
    /// Requests per second, over all connections.
    pub(crate) rate: u32,
    /// Keep-alive connections.
    pub(crate) connections: u32,
    /// Sent at the same rate first, not recorded.
    pub(crate) warmup: Duration,
    /// Recorded.
    pub(crate) duration: Duration,
}

/// What the fixed-rate phase measured (the recorded window only).
#[derive(Debug)]
pub(crate) struct FixedResult {
    /// Latency from intended start to the end of the response, in ns (successes only).
    pub(crate) latency: Histogram<u64>,
    /// Send lag (actual write minus intended start) of requests whose connection was idle
    /// in time, in ns: the generator's own timing error.
    pub(crate) send_lag: Histogram<u64>,
    /// Slots in the window.
    pub(crate) scheduled: u64,
    /// Successful responses (200 with the expected body) for slots in the window.
    pub(crate) ok: u64,
    /// Failed requests (I/O error, other status, wrong body) for slots in the window.
    pub(crate) errors: u64,
    /// Slots in the window never sent (the hard deadline passed first).
    pub(crate) unsent: u64,
    /// Successful responses that *completed* inside the window (any slot): what CPU time
    /// measured over the window is divided by.
    pub(crate) completed_in_window: u64,
    /// Successes per second: `ok` over the time from the window's start to the last
    /// response of a window slot (at least the window).
    pub(crate) achieved_rps: f64,
    /// The denominator of `achieved_rps`.
    pub(crate) span: Duration,
    /// Requests sent, warm-up included (to compare with what the backend saw).
    pub(crate) sent_total: u64,
    /// The first I/O or protocol error seen, for the report.
    pub(crate) first_error: Option<String>,
}

impl FixedResult {
    /// Nothing measured yet.
    pub(crate) fn empty() -> Self {
        Self {
            latency: histogram(),
            send_lag: histogram(),
            scheduled: 0,
            ok: 0,
            errors: 0,
            unsent: 0,
            completed_in_window: 0,
            achieved_rps: 0.0,
            span: Duration::ZERO,
            sent_total: 0,
            first_error: None,
        }
    }

    /// Adds another window's results (a later round of the same setup).
    pub(crate) fn merge(&mut self, other: Self) {
        self.latency
            .add(&other.latency)
            .expect("same histogram bounds");
        self.send_lag
            .add(&other.send_lag)
            .expect("same histogram bounds");
        self.scheduled += other.scheduled;
        self.ok += other.ok;
        self.errors += other.errors;
        self.unsent += other.unsent;
        self.completed_in_window += other.completed_in_window;
        self.span += other.span;
        self.sent_total += other.sent_total;
        self.achieved_rps = if self.span.is_zero() {
            0.0
        } else {
            self.ok as f64 / self.span.as_secs_f64()
        };
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

#[derive(Debug)]
struct WorkerOut {
    latency: Histogram<u64>,
    send_lag: Histogram<u64>,
    scheduled: u64,
    ok: u64,
    errors: u64,
    unsent: u64,
    completed_in_window: u64,
    sent_total: u64,
    last_done: Option<Instant>,
    first_error: Option<String>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    begin: Instant,
    end: Instant,
    deadline: Instant,
}

/// Sends one request on `conn`, connecting first if needed; drops the connection after an
/// error or when the server closes it.
fn roundtrip(conn: &mut Option<Conn>, target: &Target) -> Result<Response, String> {
    if conn.is_none() {
        *conn = Some(
            Conn::connect(target.addr, IO_TIMEOUT)
                .map_err(|e| format!("connect {}: {e}", target.addr))?,
        );
    }
    let c = conn.as_mut().expect("connected above");
    match c.roundtrip(&target.request) {
        Ok(res) => {
            if !res.keep_alive {
                *conn = None;
            }
            Ok(res)
        }
        Err(e) => {
            *conn = None;
            Err(format!("request to {}: {e}", target.addr))
        }
    }
}

fn fixed_worker(target: &Target, cfg: FixedRate, idx: u32, w: Window) -> WorkerOut {
    precise_timers();
    let mut out = WorkerOut {
        latency: histogram(),
        send_lag: histogram(),
        scheduled: 0,
        ok: 0,
        errors: 0,
        unsent: 0,
        completed_in_window: 0,
        sent_total: 0,
        last_done: None,
        first_error: None,
    };
    let slots = slots_before(cfg.rate, cfg.connections, idx, cfg.warmup + cfg.duration);
    let mut conn: Option<Conn> = None;
    let mut prev_done = w.start;
    // Bounded by the slot count, and by the hard deadline in time.
    for k in 0..slots {
        let intended = w.start + slot_offset(cfg.rate, cfg.connections, idx, k);
        let in_window = intended >= w.begin;
        if in_window {
            out.scheduled += 1;
        }
        if Instant::now() >= w.deadline {
            // Count this and every later window slot as unsent.
            let rest = (k..slots)
                .filter(|&j| w.start + slot_offset(cfg.rate, cfg.connections, idx, j) >= w.begin)
                .count() as u64;
            out.unsent += rest;
            out.scheduled += rest.saturating_sub(u64::from(in_window));
            break;
        }
        let idle_in_time = prev_done <= intended;
        wait_until(intended);
        let sent = Instant::now();
        if in_window && idle_in_time {
            record(&mut out.send_lag, sent - intended);
        }
        let result = roundtrip(&mut conn, target);
        out.sent_total += 1;
        let done = Instant::now();
        prev_done = done;
        let ok = match &result {
            Ok(res) if target.is_ok(res) => true,
            Ok(res) => {
                out.first_error.get_or_insert_with(|| {
                    format!(
                        "status {} with a {}-byte body (expected 200, {} bytes)",
                        res.status, res.body_len, target.body_len
                    )
                });
                false
            }
            Err(e) => {
                out.first_error.get_or_insert_with(|| e.clone());
                false
            }
        };
        if ok && done >= w.begin && done < w.end {
            out.completed_in_window += 1;
        }
        if in_window {
            out.last_done = Some(done);
            if ok {
                out.ok += 1;
                record(&mut out.latency, done - intended);
            } else {
                out.errors += 1;
            }
        }
    }
    out
}

/// Runs the fixed-rate phase against `target`. `sample` is called at the start and at the
/// end of the recorded window (for CPU readings); both results are returned.
pub(crate) fn run_fixed<S>(
    target: &Target,
    cfg: FixedRate,
    mut sample: impl FnMut() -> S,
) -> (FixedResult, S, S) {
    // Leave the threads a moment to start before the first slot.
    let start = Instant::now() + Duration::from_millis(20);
    let begin = start + cfg.warmup;
    let end = begin + cfg.duration;
    let w = Window {
        start,
        begin,
        end,
        // Late slots may still go out a while after the window (a stall shows as latency),
        // but not forever.
        deadline: end + cfg.duration.min(Duration::from_secs(10)),
    };
    let (outs, at_begin, at_end) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..cfg.connections)
            .map(|i| {
                std::thread::Builder::new()
                    .name(format!("load-{i}"))
                    .spawn_scoped(scope, move || fixed_worker(target, cfg, i, w))
                    .expect("spawn a load thread")
            })
            .collect();
        wait_until(begin);
        let at_begin = sample();
        wait_until(end);
        let at_end = sample();
        let outs: Vec<WorkerOut> = handles
            .into_iter()
            .map(|h| h.join().expect("load thread panicked"))
            .collect();
        (outs, at_begin, at_end)
    });
    let mut result = FixedResult::empty();
    let mut last_done = end;
    for o in outs {
        result
            .latency
            .add(&o.latency)
            .expect("same histogram bounds");
        result
            .send_lag
            .add(&o.send_lag)
            .expect("same histogram bounds");
        result.scheduled += o.scheduled;
        result.ok += o.ok;
        result.errors += o.errors;
        result.unsent += o.unsent;
        result.completed_in_window += o.completed_in_window;
        result.sent_total += o.sent_total;
        if let Some(d) = o.last_done {
            last_done = last_done.max(d);
        }
        if result.first_error.is_none() {
            result.first_error = o.first_error;
        }
    }
    result.span = (last_done - begin).max(cfg.duration);
    result.achieved_rps = result.ok as f64 / result.span.as_secs_f64();
    (result, at_begin, at_end)
}

/// What the closed-loop phase measured.
#[derive(Debug, Clone)]
pub(crate) struct MaxResult {
    /// Successful responses per second in the window.
    pub(crate) rps: f64,
    /// Successful responses in the window.
    pub(crate) ok: u64,
    /// Failed requests in the window.
    pub(crate) errors: u64,
    /// Requests sent, warm-up included (to compare with what the backend saw).
    pub(crate) sent_total: u64,
    /// The counted time.
    pub(crate) span: Duration,
    /// The first error seen.
    pub(crate) first_error: Option<String>,
}

impl MaxResult {
    /// Nothing measured yet.
    pub(crate) fn empty() -> Self {
        Self {
            rps: 0.0,
            ok: 0,
            errors: 0,
            sent_total: 0,
            span: Duration::ZERO,
            first_error: None,
        }
    }

    /// Adds another round's results.
    pub(crate) fn merge(&mut self, other: Self) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.sent_total += other.sent_total;
        self.span += other.span;
        self.rps = if self.span.is_zero() {
            0.0
        } else {
            self.ok as f64 / self.span.as_secs_f64()
        };
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// Runs `connections` closed-loop connections for `warmup` (not counted) then `duration`.
pub(crate) fn run_max(
    target: &Target,
    connections: u32,
    warmup: Duration,
    duration: Duration,
) -> MaxResult {
    let begin = Instant::now() + warmup;
    let end = begin + duration;
    let outs: Vec<(u64, u64, u64, Option<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..connections)
            .map(|i| {
                std::thread::Builder::new()
                    .name(format!("max-{i}"))
                    .spawn_scoped(scope, move || {
                        let (mut ok, mut errors, mut sent, mut first_error) =
                            (0u64, 0u64, 0u64, None);
                        let mut conn = None;
                        // Bounded by time (each request by the I/O timeout) and by count.
                        for _ in 0..50_000_000u64 {
                            if Instant::now() >= end {
                                break;
                            }
                            let result = roundtrip(&mut conn, target);
                            sent += 1;
                            let done = Instant::now();
                            let counted = done >= begin && done < end;
                            match result {
                                Ok(res) if target.is_ok(&res) => ok += u64::from(counted),
                                Ok(res) => {
                                    errors += u64::from(counted);
                                    first_error.get_or_insert(format!("status {}", res.status));
                                }
                                Err(e) => {
                                    errors += u64::from(counted);
                                    first_error.get_or_insert(e);
                                    // Do not spin on a refused connect.
                                    std::thread::sleep(Duration::from_millis(1));
                                }
                            }
                        }
                        (ok, errors, sent, first_error)
                    })
                    .expect("spawn a load thread")
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("load thread panicked"))
            .collect()
    });
    let ok = outs.iter().map(|o| o.0).sum::<u64>();
    MaxResult {
        rps: ok as f64 / duration.as_secs_f64(),
        ok,
        errors: outs.iter().map(|o| o.1).sum(),
        sent_total: outs.iter().map(|o| o.2).sum(),
        span: duration,
        first_error: outs.into_iter().find_map(|o| o.3),
    }
}

/// One request, for checking a setup before loading it.
pub(crate) fn probe(target: &Target) -> Result<(), String> {
    let mut conn = None;
    let res = roundtrip(&mut conn, target)?;
    if target.is_ok(&res) {
        Ok(())
    } else {
        Err(format!(
            "status {} with a {}-byte body (expected 200 and {} bytes)",
            res.status, res.body_len, target.body_len
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_evenly_spaced_across_connections() {
        // 1000 rps over 8 connections: slot s at s ms; connection i owns i, i+8, ...
        assert_eq!(slot_offset(1000, 8, 0, 0), Duration::ZERO);
        assert_eq!(slot_offset(1000, 8, 3, 0), Duration::from_millis(3));
        assert_eq!(slot_offset(1000, 8, 3, 2), Duration::from_millis(19));
        // Non-integer spacing: 3 rps puts slot 1 at 333.333333 ms (floored to ns).
        assert_eq!(slot_offset(3, 1, 0, 1), Duration::from_nanos(333_333_333));
        // Merged over connections, the offsets are exactly s / rate for s = 0, 1, 2, ...
        let (rate, n) = (700u32, 6u32);
        let mut all: Vec<Duration> = (0..n)
            .flat_map(|i| {
                (0..slots_before(rate, n, i, Duration::from_secs(1)))
                    .map(move |k| slot_offset(rate, n, i, k))
            })
            .collect();
        all.sort();
        assert_eq!(all.len(), 700);
        for (s, d) in all.iter().enumerate() {
            assert_eq!(*d, Duration::from_nanos(s as u64 * 1_000_000_000 / 700));
        }
    }

    #[test]
    fn slot_counts_match_the_rate_for_any_span() {
        for (rate, n) in [(1000u32, 8u32), (1000, 16), (997, 7), (1, 4), (50_000, 3)] {
            for span_ms in [0u64, 1, 999, 1000, 2500, 12_000] {
                let span = Duration::from_millis(span_ms);
                let total: u64 = (0..n).map(|i| slots_before(rate, n, i, span)).sum();
                // Slots with offset < span: ceil(span * rate).
                let expected = (u128::from(span_ms) * u128::from(rate)).div_ceil(1000) as u64;
                assert_eq!(total, expected, "rate {rate}, {n} conns, {span_ms} ms");
                for i in 0..n {
                    let k = slots_before(rate, n, i, span);
                    // The last counted slot is inside the span, the next one is not.
                    if k > 0 {
                        assert!(slot_offset(rate, n, i, k - 1) < span);
                    }
                    assert!(slot_offset(rate, n, i, k) >= span);
                }
            }
        }
    }

    #[test]
    fn wait_until_is_precise_and_never_early() {
        precise_timers();
        let mut worst = Duration::ZERO;
        for _ in 0..20 {
            let t = Instant::now() + Duration::from_micros(700);
            wait_until(t);
            let late = Instant::now() - t;
            worst = worst.max(late);
        }
        // Generous bound for a loaded CI machine; typically a few microseconds.
        assert!(worst < Duration::from_millis(20), "{worst:?} late");
    }
}
