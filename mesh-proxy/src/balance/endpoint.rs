//! [`EndpointState`]: the lock-free runtime state of one upstream endpoint — in-flight
//! requests, the peak-EWMA latency estimate, outlier-detection counters and ejection.
//!
//! One `EndpointState` exists per dialled address and outlives balancer rebuilds: the caller
//! carries it over by address (see [`super::Balancer::states`]), so a config update keeps
//! the endpoint's latency history, its in-flight count and its ejection.
//!
//! # Time
//!
//! Time is passed in (`now: Instant`) — the clock is read here only to date a new state —
//! so that the caller reads it once per request and tests are deterministic. Instants are stored as nanoseconds since
//! the state's creation in `AtomicU64`s; an instant before the creation counts as the
//! creation.
//!
//! # Peak EWMA
//!
//! The algorithm is described in the parent module's docs.
//!
//! The estimate (`f64` bits) and the time of the last update live in two `AtomicU64`s.
//! Updates are a compare-and-swap loop on the estimate, then a `fetch_max` on the
//! timestamp. A racing reader or writer may pair one's estimate with the other's timestamp
//! for an instant, which skews one decay weight by the few nanoseconds between the two
//! stores: a benign race for an estimate that exists to rank endpoints.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use serde::Serialize;

/// The latency estimate of an endpoint with no samples yet (linkerd2-proxy's default).
pub const DEFAULT_RTT: Duration = Duration::from_millis(30);

/// The time constant `τ` of the peak-EWMA decay (linkerd2-proxy's default).
pub const DECAY: Duration = Duration::from_secs(10);

/// Runtime state of one upstream endpoint, shared (in an [`Arc`]) by every balancer
/// generation that contains the same address.
///
/// All operations are wait-free atomics except the estimate update, a lock-free CAS loop.
#[derive(Debug)]
pub struct EndpointState {
    addr: SocketAddr,
    /// What stored nanosecond timestamps count from.
    epoch: Instant,
    outstanding: AtomicUsize,
    /// Latency estimate in nanoseconds, as `f64` bits; [`UNSAMPLED`] until the first
    /// sample.
    ewma_ns: AtomicU64,
    /// When `ewma_ns` was last updated (nanoseconds since `epoch`).
    ewma_at: AtomicU64,
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    /// Ejected while `now < ejected_until` (nanoseconds since `epoch`); 0 if never ejected.
    ejected_until: AtomicU64,
    /// How many base ejection times the next ejection lasts, before decay (see
    /// [`super::outlier`]).
    ejection_multiplier: AtomicU32,
    ejections_total: AtomicU64,
    requests_total: AtomicU64,
    failures_total: AtomicU64,
}

/// A snapshot of an [`EndpointState`] for the admin `/clusters` dump.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointStats {
    /// The dialled address.
    pub addr: SocketAddr,
    /// Requests in flight.
    pub outstanding: usize,
    /// The decayed peak-EWMA latency estimate, in milliseconds.
    pub ewma_ms: f64,
    /// Upstream failures (any kind) since the last success.
    pub consecutive_5xx: u32,
    /// Gateway errors, connect failures, resets and timeouts since the last success or
    /// other 5xx.
    pub consecutive_gateway_errors: u32,
    /// Milliseconds until the endpoint returns from ejection; `None` when not ejected.
    pub ejected_remaining_ms: Option<u64>,
    /// Times the endpoint was ejected.
    pub ejections_total: u64,
    /// Requests sent to the endpoint (every pick, including cancelled ones).
    pub requests_total: u64,
    /// Requests that ended in an upstream failure (everything but success, a local
    /// error or cancellation).
    pub failures_total: u64,
}

// === impl EndpointState ===

impl EndpointState {
    /// A fresh state for `addr`, the address the proxy dials (the peer's `ip:15008` for
    /// mesh peers, `ip:target_port` otherwise).
    pub fn new(addr: SocketAddr) -> Arc<Self> {
        Self::new_at(addr, Instant::now())
    }

    /// A fresh state whose clock starts at `epoch` (tests pin it).
    pub(super) fn new_at(addr: SocketAddr, epoch: Instant) -> Arc<Self> {
        Arc::new(Self {
            addr,
            epoch,
            outstanding: AtomicUsize::new(0),
            ewma_ns: AtomicU64::new(UNSAMPLED),
            ewma_at: AtomicU64::new(0),
            consecutive_5xx: AtomicU32::new(0),
            consecutive_gateway: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejection_multiplier: AtomicU32::new(0),
            ejections_total: AtomicU64::new(0),
            requests_total: AtomicU64::new(0),
            failures_total: AtomicU64::new(0),
        })
    }

    /// The dialled address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests in flight (picked, neither finished nor dropped).
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Relaxed)
    }

    /// The peak-EWMA latency estimate at `now`, decayed towards zero since its last update.
    pub fn ewma_latency(&self, now: Instant) -> Duration {
        Duration::from_nanos(self.ewma_ns(now) as u64)
    }

    /// Whether outlier detection has ejected the endpoint at `now`.
    pub fn is_ejected(&self, now: Instant) -> bool {
        self.ejected_until.load(Relaxed) > self.ticks(now)
    }

    /// A snapshot for the admin dump.
    pub fn stats(&self, now: Instant) -> EndpointStats {
        let now_t = self.ticks(now);
        let until = self.ejected_until.load(Relaxed);
        EndpointStats {
            addr: self.addr,
            outstanding: self.outstanding(),
            ewma_ms: self.ewma_ns(now) / 1e6,
            consecutive_5xx: self.consecutive_5xx.load(Relaxed),
            consecutive_gateway_errors: self.consecutive_gateway.load(Relaxed),
            ejected_remaining_ms: (until > now_t).then(|| (until - now_t).div_ceil(1_000_000)),
            ejections_total: self.ejections_total.load(Relaxed),
            requests_total: self.requests_total.load(Relaxed),
            failures_total: self.failures_total.load(Relaxed),
        }
    }

    // --- crate-internal: the balancer's accounting ---

    /// The endpoint was picked: one more request in flight.
    pub(super) fn start(&self) {
        self.outstanding.fetch_add(1, Relaxed);
        self.requests_total.fetch_add(1, Relaxed);
    }

    /// A picked request ended (finished or cancelled).
    pub(super) fn end(&self) {
        self.outstanding.fetch_sub(1, Relaxed);
    }

    /// The decayed estimate in nanoseconds.
    pub(super) fn ewma_ns(&self, now: Instant) -> f64 {
        let (est, _) = estimate(self.ewma_ns.load(Relaxed));
        let at = self.ewma_at.load(Relaxed);
        est * decay_weight(self.ticks(now).saturating_sub(at))
    }

    /// The decayed estimate in nanoseconds, or `None` before the first sample.
    pub(super) fn sampled_ewma_ns(&self, now: Instant) -> Option<f64> {
        let (est, sampled) = estimate(self.ewma_ns.load(Relaxed));
        sampled.then(|| {
            let at = self.ewma_at.load(Relaxed);
            est * decay_weight(self.ticks(now).saturating_sub(at))
        })
    }

    /// Feeds a latency sample observed at `now`.
    ///
    /// With `peak_only`, the sample may raise the estimate but never lower it: failures
    /// report their latency this way so that an endpoint failing fast does not look fast
    /// and attract more traffic.
    pub(super) fn observe(&self, rtt: Duration, now: Instant, peak_only: bool) {
        let sample = nanos_f64(rtt);
        let now_t = self.ticks(now);
        let mut cur_bits = self.ewma_ns.load(Relaxed);
        loop {
            let (est, sampled) = estimate(cur_bits);
            let w = decay_weight(now_t.saturating_sub(self.ewma_at.load(Relaxed)));
            let next = if sample > est * w {
                sample
            } else if !sampled && !peak_only {
                // The first sample replaces the default.
                sample
            } else if peak_only {
                return;
            } else {
                est * w + sample * (1.0 - w)
            };
            match self
                .ewma_ns
                .compare_exchange_weak(cur_bits, next.to_bits(), Relaxed, Relaxed)
            {
                Ok(_) => break,
                Err(actual) => cur_bits = actual,
            }
        }
        self.ewma_at.fetch_max(now_t, Relaxed);
    }

    /// Counts an upstream failure for the failure total.
    pub(super) fn count_failure(&self) {
        self.failures_total.fetch_add(1, Relaxed);
    }

    pub(super) fn consecutive_5xx(&self) -> &AtomicU32 {
        &self.consecutive_5xx
    }

    pub(super) fn consecutive_gateway(&self) -> &AtomicU32 {
        &self.consecutive_gateway
    }

    pub(super) fn ejected_until(&self) -> &AtomicU64 {
        &self.ejected_until
    }

    pub(super) fn ejection_multiplier(&self) -> &AtomicU32 {
        &self.ejection_multiplier
    }

    pub(super) fn ejections_total(&self) -> &AtomicU64 {
        &self.ejections_total
    }

    /// `now` as nanoseconds since the state's epoch (0 for earlier instants).
    pub(super) fn ticks(&self, now: Instant) -> u64 {
        nanos(now.saturating_duration_since(self.epoch))
    }
}

/// The bits of the estimate before the first sample (a NaN, never computed).
const UNSAMPLED: u64 = u64::MAX;

/// The estimate in nanoseconds (the default before the first sample), and whether it
/// comes from samples.
fn estimate(bits: u64) -> (f64, bool) {
    if bits == UNSAMPLED {
        (nanos_f64(DEFAULT_RTT), false)
    } else {
        (f64::from_bits(bits), true)
    }
}

/// `d` in whole nanoseconds, saturating (after 584 years).
pub(super) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn nanos_f64(d: Duration) -> f64 {
    d.as_secs_f64() * 1e9
}

/// `exp(−elapsed/τ)`: how much of the old estimate survives `elapsed_ns`.
fn decay_weight(elapsed_ns: u64) -> f64 {
    if elapsed_ns == 0 {
        1.0
    } else {
        (-(elapsed_ns as f64) / nanos_f64(DECAY)).exp()
    }
}
