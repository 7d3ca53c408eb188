//! Outlier detection: consecutive-error counting and time-based ejection, a subset of
//! Envoy's outlier detector (what Istio's `DestinationRule.trafficPolicy.outlierDetection`
//! configures), evaluated inline when a request finishes — no background sweep.
//!
//! # Counting (Envoy's `consecutive_5xx` and `consecutive_gateway_failure`)
//!
//! - Every upstream failure ([`Outcome::is_upstream_failure`]) increments
//!   `consecutive_5xx`; gateway errors (502/503/504), connect failures, resets and
//!   timeouts also increment `consecutive_gateway_errors`, while another 5xx resets it
//!   (the gateway errors are no longer consecutive).
//! - A success resets both. A local error or a cancelled request changes neither.
//! - When a counter reaches its threshold (0 disables it), it is reset to zero — like
//!   Envoy, whether or not the ejection is then allowed, so a refused ejection needs a
//!   fresh run of failures — and the endpoint is considered for ejection.
//!
//! # Ejection
//!
//! - An endpoint already ejected is not ejected again.
//! - `max_ejection_percent` caps the share of the cluster's endpoints (all of them,
//!   whatever their health, as Envoy counts) ejected at once: ejecting is allowed when
//!   `100·(ejected + 1)/n ≤ max_ejection_percent`, Envoy's current rule. So that small
//!   clusters can eject at all under Istio's usual 10 %, one endpoint may always be
//!   ejected when none is and the cluster has at least two (Envoy's behaviour before it
//!   counted the host being ejected; `always_eject_one_host` today). A cap of 0 % never
//!   ejects; a lone endpoint is ejected only under a 100 % cap (and panic mode still
//!   picks it).
//! - The ejection lasts `base_ejection_time × multiplier`, capped at
//!   `max(300 s, base_ejection_time)` (Envoy's default `max_ejection_time`). The
//!   multiplier grows by one per ejection (and stops growing at the cap) and shrinks by one
//!   per `interval` the endpoint has spent back in service since its last ejection ended —
//!   Envoy decrements it on each interval sweep; we compute the same thing lazily at the
//!   next ejection. That is the only use of `interval`.
//! - Return to service is purely time based: an endpoint is ejected while
//!   `now < ejected_until`.
//!
//! # Concurrency
//!
//! Ejection is rare, so it may scan the cluster (to count ejected endpoints) but still
//! takes no lock. A compare-and-swap on the endpoint's `ejected_until` makes one thread
//! the ejector of an endpoint. Two threads ejecting *different* endpoints at the same
//! instant could together overshoot the cap, so each ejector re-counts after publishing
//! its ejection (both sequentially consistent) and rolls it back if the cap is exceeded:
//! racing ejections may both be refused (the endpoints' next runs of failures retry), but
//! the cap holds. Endpoint
//! states shared with another balancer generation of a different size are counted by the
//! generation that finishes the request.

use std::{
    sync::atomic::{
        AtomicU32, Ordering,
        Ordering::{Relaxed, SeqCst},
    },
    time::{Duration, Instant},
};

use mesh_api::model::OutlierDetection;

use super::{
    Member, Outcome,
    endpoint::{EndpointState, nanos},
};

/// The longest ejection, unless `base_ejection_time` is longer (Envoy's default
/// `max_ejection_time`).
pub const MAX_EJECTION_TIME: Duration = Duration::from_secs(300);

/// [`OutlierDetection`] prepared for the request path.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Detector {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    interval_ns: u64,
    base_ns: u64,
    max_ns: u64,
    max_multiplier: u32,
    max_percent: f64,
}

// === impl Detector ===

impl Detector {
    pub(super) fn new(od: &OutlierDetection) -> Self {
        let base_ns = nanos(od.base_ejection_time);
        let max_ns = nanos(MAX_EJECTION_TIME).max(base_ns);
        let max_multiplier = if base_ns == 0 {
            1
        } else {
            u32::try_from(max_ns.div_ceil(base_ns)).unwrap_or(u32::MAX)
        };
        Self {
            consecutive_5xx: od.consecutive_5xx,
            consecutive_gateway: od.consecutive_gateway_errors,
            interval_ns: nanos(od.interval),
            base_ns,
            max_ns,
            max_multiplier,
            max_percent: od.max_ejection_percent.get(),
        }
    }

    /// Records `outcome` for `members[index]`, ejecting it if it crossed a threshold.
    /// Returns whether it was ejected.
    pub(super) fn record<T>(
        &self,
        members: &[Member<T>],
        index: usize,
        outcome: Outcome,
        now: Instant,
    ) -> bool {
        let crossed = count(
            &members[index].state,
            outcome,
            self.consecutive_5xx,
            self.consecutive_gateway,
        );
        crossed && self.try_eject(members, index, now)
    }

    /// Ejects `members[index]` if it is not ejected yet and the cap allows it.
    fn try_eject<T>(&self, members: &[Member<T>], index: usize, now: Instant) -> bool {
        let state = &members[index].state;
        let now_t = state.ticks(now);
        let until = state.ejected_until();
        let prev = until.load(Relaxed);
        if prev > now_t || self.base_ns == 0 {
            return false;
        }
        let n = members.len();
        let others = count_ejected(members, now, Relaxed);
        if !may_eject(others + 1, n, self.max_percent) {
            return false;
        }

        // The multiplier decays by one per interval spent in service since the last
        // ejection ended (`prev`, 0 if never ejected).
        let mut multiplier = state.ejection_multiplier().load(Relaxed);
        if prev != 0 && self.interval_ns != 0 {
            let intervals = (now_t - prev) / self.interval_ns;
            multiplier = multiplier.saturating_sub(u32::try_from(intervals).unwrap_or(u32::MAX));
        }
        let multiplier = (multiplier + 1).min(self.max_multiplier);
        let duration = self
            .base_ns
            .saturating_mul(u64::from(multiplier))
            .min(self.max_ns);
        let next = now_t.saturating_add(duration);
        // SeqCst on the publication and the re-count below: of two racing ejectors, at
        // least one sees the other's ejection (store-buffering is ruled out).
        if until.compare_exchange(prev, next, SeqCst, Relaxed).is_err() {
            // Another thread ejected it first.
            return false;
        }
        if !may_eject(count_ejected(members, now, SeqCst), n, self.max_percent) {
            // A concurrent ejection of another endpoint took the last slot.
            let _ = until.compare_exchange(next, prev, Relaxed, Relaxed);
            return false;
        }
        state.ejection_multiplier().store(multiplier, Relaxed);
        state.ejections_total().fetch_add(1, Relaxed);
        reset(state.consecutive_5xx());
        reset(state.consecutive_gateway());
        tracing::debug!(
            addr = %state.addr(),
            ejection_ms = duration / 1_000_000,
            multiplier,
            "ejected outlier endpoint",
        );
        true
    }
}

/// Updates `state`'s consecutive-error counters for `outcome` (without outlier detection,
/// for the stats only: thresholds 0). Returns whether a counter crossed its threshold.
pub(super) fn count(state: &EndpointState, outcome: Outcome, t5xx: u32, tgw: u32) -> bool {
    let c5xx = state.consecutive_5xx();
    let cgw = state.consecutive_gateway();
    match outcome {
        Outcome::Success => {
            reset(c5xx);
            reset(cgw);
            false
        }
        Outcome::LocalError => false,
        Outcome::ServerError(_) => {
            reset(cgw);
            bump(c5xx, t5xx)
        }
        Outcome::GatewayError(_) | Outcome::ConnectFailure | Outcome::Reset | Outcome::Timeout => {
            // Bump both: each counter reaching its threshold resets itself.
            let a = bump(c5xx, t5xx);
            let b = bump(cgw, tgw);
            a || b
        }
    }
}

/// Whether `ejected` endpoints out of `total` (counting the candidate) respect the cap.
pub(super) fn may_eject(ejected: usize, total: usize, max_percent: f64) -> bool {
    if max_percent <= 0.0 || total == 0 {
        return false;
    }
    ejected as f64 * 100.0 <= max_percent * total as f64 || (ejected == 1 && total >= 2)
}

fn count_ejected<T>(members: &[Member<T>], now: Instant, order: Ordering) -> usize {
    members
        .iter()
        .filter(|m| m.state.ejected_until().load(order) > m.state.ticks(now))
        .count()
}

/// Increments `counter`; if it reaches a non-zero `threshold`, resets it and returns true.
fn bump(counter: &AtomicU32, threshold: u32) -> bool {
    let n = counter.fetch_add(1, Relaxed).saturating_add(1);
    if threshold != 0 && n >= threshold {
        counter.store(0, Relaxed);
        true
    } else {
        false
    }
}

/// Zeroes `counter`, skipping the write (and the cache-line transfer) when already zero.
fn reset(counter: &AtomicU32) {
    if counter.load(Relaxed) != 0 {
        counter.store(0, Relaxed);
    }
}
