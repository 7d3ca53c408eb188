//! Per-request load balancing over one cluster's endpoints, with passive outlier detection.
//!
//! The outbound proxy builds one [`Balancer`] per cluster from the cluster's
//! [`LoadBalancer`] and [`OutlierDetection`] settings and its current endpoints, and
//! rebuilds it on every config update. The per-endpoint runtime state ([`EndpointState`]:
//! in-flight requests, latency estimate, failure counters, ejection) lives in `Arc`s that
//! the caller carries over by address ([`Balancer::states`]), so a rebuild is cheap and
//! forgets nothing. For each request, [`Balancer::pick`] returns a [`Pick`] that counts the
//! request as in flight until it is [finished](Pick::finish) with an [`Outcome`] and a
//! latency, which feed the latency estimate and outlier detection; dropping a `Pick`
//! unfinished counts as a cancellation.
//!
//! This is the request hot path: picking and finishing take no lock and allocate nothing
//! (one `Arc` reference-count increment per pick); all shared state is atomics. The sets
//! of healthy endpoints and their cumulative weights are precomputed when the balancer is
//! built; ejection, which changes with time, is checked per candidate.
//!
//! # Eligibility and panic mode
//!
//! An endpoint is *available* when its [`Health`] is `Healthy` and outlier detection has
//! not ejected it (ejections count only while the cluster has outlier detection). The
//! algorithm runs over the available endpoints; if none is available, over the healthy
//! ones, ejected or not; if none is healthy, over all endpoints, `Unhealthy` and
//! `Draining` included. This is Envoy's *panic mode* with a threshold of 100 %: when
//! everything looks bad, spreading load beats failing every request. [`Balancer::pick`]
//! therefore returns `None` only for a cluster without endpoints, and [`Pick::is_fallback`]
//! tells the caller (for a response flag or a metric) that the pick came from a fallback.
//!
//! # Algorithms
//!
//! - [`LoadBalancer::P2cEwma`] (default): *power of two choices* over *peak-EWMA* latency,
//!   linkerd2-proxy's balancer (tower's `p2c` with `load::PeakEwma`, after Finagle). Two
//!   distinct endpoints are drawn uniformly at random and the one with the lower cost
//!   `ewma_latency · (outstanding + 1) / weight` wins (the first drawn on a tie). Two random
//!   choices avoid the herding of "always the least loaded" on stale data while being
//!   exponentially better than one (Mitzenmacher, "The Power of Two Choices in Randomized
//!   Load Balancing", 2001).
//! - [`LoadBalancer::LeastRequest`]: the same two choices, cost `(outstanding + 1) /
//!   weight` (Envoy's least-request balancer with an active-request bias of 1).
//!
//!   In both P2C variants the weight is a capacity: an endpoint of weight 3 with three
//!   requests in flight counts as loaded as one of weight 1 with one. Under concurrency,
//!   traffic splits by weight; a lone sequential client goes to the cheapest endpoint.
//! - [`LoadBalancer::RoundRobin`]: weighted round robin with one shared atomic counter. The
//!   counter value `c` maps to the point `c · step mod W` of the endpoints' cumulative
//!   weights (total `W`, weights divided by their common divisor), where `step` is coprime
//!   to `W` and close to `W/φ`: every `W` consecutive picks give each endpoint exactly its
//!   weight, interleaved rather than in runs (the golden-ratio sequence spreads its points
//!   evenly, as in Fibonacci hashing). The counter starts at a random value so that
//!   proxies do not move in lockstep. An unavailable endpoint's turns go to the next
//!   available one.
//! - [`LoadBalancer::Random`]: weighted random, a binary search of a uniform draw in the
//!   cumulative weights.
//!
//! Draws reject unavailable (ejected) candidates and retry a few times; if that fails —
//! many ejected endpoints — one scan over the pool makes an exact draw among the
//! available ones.
//!
//! # Peak EWMA
//!
//! Finagle's `PeakEwma` as ported to tower (`tower/src/load/peak_ewma.rs`), lock-free and
//! a pure function of the passed-in time (see [`EndpointState::ewma_latency`]):
//!
//! - The estimate starts at [`DEFAULT_RTT`] (30 ms, linkerd2-proxy's default), which the
//!   first sample replaces. In a P2C comparison, though, an endpoint without samples is
//!   taken to be as fast as the other candidate, so a backend that just joined gets
//!   traffic at once (by outstanding requests) instead of starving until the default
//!   decays below its peers'.
//! - A sample above the current estimate replaces it at once (the *peak*): an endpoint
//!   that slows down is penalised immediately.
//! - A lower sample `s` arriving `Δt` after the last update moves the estimate `e` towards
//!   itself with a time-based weight, `e' = e·w + s·(1 − w)` with `w = exp(−Δt/τ)` and
//!   `τ` = [`DECAY`] (10 s, linkerd2-proxy's default): the longer since the last update,
//!   the more the new sample counts, whatever the request rate.
//! - Reads see the estimate decayed towards zero, `e·exp(−Δt/τ)`, as tower's `load()` does,
//!   so an endpoint that stopped getting traffic because it looked slow is tried again
//!   after a while instead of starving. The decay is multiplicative, so reads need not write
//!   it back (two reads decay exactly as one), and they never contend.
//! - A successful response feeds its latency; a failure may raise the estimate (a timeout
//!   is a long sample) but never lower it, so an endpoint that fails fast does not look
//!   fast. A local error or a cancellation feeds nothing.
//!
//! # Outlier detection
//!
//! A subset of Envoy's outlier detector (what Istio's `outlierDetection` configures),
//! evaluated inline when a request finishes, with no background task:
//!
//! - Every upstream failure ([`Outcome::is_upstream_failure`]) counts towards
//!   `consecutive_5xx`; gateway errors, connect failures, resets and timeouts also towards
//!   `consecutive_gateway_errors`, which another 5xx resets. A success resets both. A
//!   counter reaching its non-zero threshold resets and makes the endpoint a candidate for
//!   ejection.
//! - An ejection lasts `base_ejection_time × multiplier`, capped at
//!   `max(`[`MAX_EJECTION_TIME`]` (300 s), base_ejection_time)`. The multiplier grows by
//!   one per ejection and shrinks by one per `interval` spent back in service (Envoy's
//!   decrement on each sweep, computed lazily at the next ejection; the only use of
//!   `interval`). Return to service is purely time based.
//! - At most `max_ejection_percent` of the cluster's endpoints are ejected at once
//!   (`100·(ejected + 1)/n ≤ max`), except that one endpoint may always be ejected in a
//!   cluster of two or more, so that small clusters eject at all under Istio's usual 10 %.
//!   A cap of 0 % never ejects.
//!
//! Details and the concurrency argument are in `balance/outlier.rs`.
//!
//! # Retries
//!
//! [`Balancer::pick_excluding`] prefers an endpoint other than the one a failed attempt
//! went to, but not at the price of leaving the eligibility tier: like Envoy's
//! `previous_hosts` retry predicate, it retries the same endpoint rather than an ejected or
//! unhealthy one.

use std::{
    collections::HashMap,
    fmt,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use mesh_api::model::{Health, LoadBalancer, OutlierDetection};
use serde::Serialize;

mod endpoint;
mod outlier;
mod rng;
#[cfg(test)]
mod tests;

pub use self::{
    endpoint::{DECAY, DEFAULT_RTT, EndpointState, EndpointStats},
    outlier::MAX_EJECTION_TIME,
};
use self::{outlier::Detector, rng::Rng};

/// Random draws tried before scanning for an available candidate.
const DRAWS: usize = 4;

/// One cluster's load balancer. Cloning is cheap (one `Arc`).
pub struct Balancer<T> {
    inner: Arc<Inner<T>>,
}

/// An endpoint of a [`Balancer`].
#[derive(Debug, Clone)]
pub struct Member<T> {
    /// The runtime state, shared with other balancer generations with the same address.
    pub state: Arc<EndpointState>,
    /// The relative weight ([`mesh_api::model::Endpoint::weight`]); 0 counts as 1.
    pub weight: u32,
    /// Whether it may receive new requests (see the module docs on panic mode).
    pub health: Health,
    /// What the proxy needs to reach it (workload metadata, target port, TLS identity, …).
    pub meta: T,
}

/// The endpoint chosen for one request, counted in flight until finished or dropped.
///
/// Owns what it needs (`'static` and `Send` when `T: Send + Sync`), so it can be held
/// across `.await`s while the request is in flight. Dropping it without
/// [`finish`](Pick::finish) counts as a cancellation: the request leaves the in-flight
/// count and gives neither a latency sample nor an outlier signal.
#[must_use = "a Pick counts as in flight until finished or dropped"]
pub struct Pick<T> {
    inner: Arc<Inner<T>>,
    index: usize,
    fallback: bool,
}

/// How a request to an endpoint ended, for the latency estimate and outlier detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A response other than a 5xx (a 4xx is the client's problem, not the endpoint's).
    Success,
    /// A 5xx response other than 502, 503 and 504.
    ServerError(u16),
    /// A 502, 503 or 504 response.
    GatewayError(u16),
    /// The connection (TCP or TLS) could not be established.
    ConnectFailure,
    /// The connection or stream was reset before the response completed.
    Reset,
    /// The request timed out waiting for the endpoint.
    Timeout,
    /// The proxy itself failed (e.g. a local resource limit): no signal about the endpoint.
    LocalError,
}

/// One member's line of the admin `/clusters` dump: [`EndpointStats`] plus the member's
/// weight and health.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberStats {
    /// The member's weight.
    pub weight: u32,
    /// The member's health as discovered.
    pub health: Health,
    /// The runtime state.
    #[serde(flatten)]
    pub endpoint: EndpointStats,
}

struct Inner<T> {
    lb: LoadBalancer,
    detector: Option<Detector>,
    members: Box<[Member<T>]>,
    /// Members whose health is `Healthy`.
    healthy: Pool,
    /// All members (panic mode).
    all: Pool,
    /// The round-robin counter.
    rr: AtomicU64,
    rng: Rng,
}

/// A set of members with precomputed cumulative weights.
#[derive(Debug)]
struct Pool {
    /// Indices into `members`.
    idx: Box<[usize]>,
    /// `cum[p]` = the weights of `idx[..=p]` (divided by their common divisor) summed.
    cum: Box<[u64]>,
    /// The round-robin stride: coprime to the total weight, about total/φ.
    step: u64,
}

/// Which endpoints an algorithm may pick from, in order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tier {
    /// Healthy and not ejected.
    Available,
    /// Healthy (ejected or not).
    Healthy,
    /// Everything.
    All,
}

// === impl Balancer ===

impl<T> Balancer<T> {
    /// A balancer over `endpoints` with the cluster's algorithm and outlier detection
    /// (`None` disables ejection; the error counters are still kept for the stats).
    ///
    /// Endpoints' [`EndpointState`]s should be reused by address from the previous
    /// generation (see [`Balancer::states`]).
    pub fn new(
        lb: LoadBalancer,
        outlier: Option<OutlierDetection>,
        endpoints: Vec<Member<T>>,
    ) -> Self {
        Self::build(lb, outlier, endpoints, Rng::Thread, fastrand::u64(..))
    }

    /// Like [`Balancer::new`], but with a deterministic random sequence (for tests and
    /// simulations). Its generator is shared by all threads through one atomic, so
    /// production code should use [`Balancer::new`].
    pub fn with_seed(
        lb: LoadBalancer,
        outlier: Option<OutlierDetection>,
        endpoints: Vec<Member<T>>,
        seed: u64,
    ) -> Self {
        let rng = Rng::seeded(seed);
        let rr_start = rng.below(u64::MAX);
        Self::build(lb, outlier, endpoints, rng, rr_start)
    }

    fn build(
        lb: LoadBalancer,
        outlier: Option<OutlierDetection>,
        endpoints: Vec<Member<T>>,
        rng: Rng,
        rr_start: u64,
    ) -> Self {
        let members = endpoints.into_boxed_slice();
        let healthy = Pool::new(&members, |m| m.health == Health::Healthy);
        let all = Pool::new(&members, |_| true);
        Self {
            inner: Arc::new(Inner {
                lb,
                detector: outlier.as_ref().map(Detector::new),
                members,
                healthy,
                all,
                rr: AtomicU64::new(rr_start),
                rng,
            }),
        }
    }

    /// Picks an endpoint for a request starting at `now`.
    ///
    /// Returns `None` only when the balancer has no endpoints; when none is available, the
    /// pick falls back as described in the module docs.
    pub fn pick(&self, now: Instant) -> Option<Pick<T>> {
        self.pick_inner(now, None)
    }

    /// Picks an endpoint for a retry of a request that went to `exclude`: another endpoint
    /// when one is as eligible, else `exclude` again.
    pub fn pick_excluding(&self, now: Instant, exclude: SocketAddr) -> Option<Pick<T>> {
        self.pick_inner(now, Some(exclude))
    }

    /// Picks the first endpoint for which `wanted` holds, whatever its load or health: for
    /// destinations that name one endpoint (a headless service's pod address). `None` when
    /// no endpoint qualifies.
    pub fn pick_matching(&self, wanted: impl Fn(&Member<T>) -> bool) -> Option<Pick<T>> {
        let index = self.inner.members.iter().position(wanted)?;
        self.inner.members[index].state.start();
        Some(Pick {
            inner: self.inner.clone(),
            index,
            fallback: false,
        })
    }

    fn pick_inner(&self, now: Instant, exclude: Option<SocketAddr>) -> Option<Pick<T>> {
        let (index, tier) = self.inner.choose(now, exclude)?;
        self.inner.members[index].state.start();
        Some(Pick {
            inner: self.inner.clone(),
            index,
            fallback: tier != Tier::Available,
        })
    }

    /// The number of endpoints.
    pub fn len(&self) -> usize {
        self.inner.members.len()
    }

    /// Whether there are no endpoints.
    pub fn is_empty(&self) -> bool {
        self.inner.members.is_empty()
    }

    /// The endpoints, in the order given.
    pub fn members(&self) -> &[Member<T>] {
        &self.inner.members
    }

    /// The algorithm.
    pub fn load_balancer(&self) -> LoadBalancer {
        self.inner.lb
    }

    /// The endpoint states by address, to carry over into the next generation:
    /// `states.remove(&addr).unwrap_or_else(|| EndpointState::new(addr))`.
    pub fn states(&self) -> HashMap<SocketAddr, Arc<EndpointState>> {
        self.inner
            .members
            .iter()
            .map(|m| (m.state.addr(), m.state.clone()))
            .collect()
    }

    /// A snapshot of every member, for the admin dump.
    pub fn stats(&self, now: Instant) -> Vec<MemberStats> {
        self.inner
            .members
            .iter()
            .map(|m| MemberStats {
                weight: m.weight,
                health: m.health,
                endpoint: m.state.stats(now),
            })
            .collect()
    }
}

impl<T> Clone for Balancer<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Balancer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balancer")
            .field("lb", &self.inner.lb)
            .field("detector", &self.inner.detector)
            .field("members", &self.inner.members)
            .finish_non_exhaustive()
    }
}

// === impl Member ===

impl<T> Member<T> {
    /// A healthy member of weight 1.
    pub fn new(state: Arc<EndpointState>, meta: T) -> Self {
        Self {
            state,
            weight: 1,
            health: Health::Healthy,
            meta,
        }
    }

    /// The weight the algorithms use: at least 1.
    fn weight(&self) -> u64 {
        u64::from(self.weight.max(1))
    }
}

// === impl Pick ===

impl<T> Pick<T> {
    /// The chosen member.
    pub fn member(&self) -> &Member<T> {
        &self.inner.members[self.index]
    }

    /// The address to dial.
    pub fn addr(&self) -> SocketAddr {
        self.member().state.addr()
    }

    /// Whether no endpoint was available, so the pick came from the ejected or unhealthy
    /// ones (panic mode).
    pub fn is_fallback(&self) -> bool {
        self.fallback
    }

    /// Ends the request: `outcome` and its `latency` (from sending the request to the end
    /// of the response headers, or to the failure) at `now`.
    ///
    /// A success feeds the latency estimate; an upstream failure may only raise it (see
    /// [`Outcome::is_upstream_failure`]) and counts towards outlier detection; a local
    /// error does neither.
    pub fn finish(self, outcome: Outcome, latency: Duration, now: Instant) {
        let state = &self.member().state;
        if outcome == Outcome::Success {
            state.observe(latency, now, false);
        } else if outcome.is_upstream_failure() {
            state.count_failure();
            state.observe(latency, now, true);
        }
        match &self.inner.detector {
            Some(detector) => {
                detector.record(&self.inner.members, self.index, outcome, now);
            }
            None => {
                outlier::count(state, outcome, 0, 0);
            }
        }
        // Drop ends the request.
    }
}

impl<T> Drop for Pick<T> {
    fn drop(&mut self) {
        self.inner.members[self.index].state.end();
    }
}

impl<T: fmt::Debug> fmt::Debug for Pick<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pick")
            .field("member", self.member())
            .field("fallback", &self.fallback)
            .finish()
    }
}

// === impl Outcome ===

impl Outcome {
    /// Classifies an HTTP response status: 502–504 are gateway errors, other 5xx server
    /// errors, anything else a success.
    pub fn from_status(status: u16) -> Self {
        match status {
            502..=504 => Self::GatewayError(status),
            500..=599 => Self::ServerError(status),
            _ => Self::Success,
        }
    }

    /// Whether the endpoint failed: every outcome but [`Outcome::Success`] and
    /// [`Outcome::LocalError`]. These count towards `consecutive_5xx`; gateway errors,
    /// connect failures, resets and timeouts also towards `consecutive_gateway_errors`.
    pub fn is_upstream_failure(self) -> bool {
        !matches!(self, Self::Success | Self::LocalError)
    }
}

// === impl Inner ===

impl<T> Inner<T> {
    /// The member to pick and the tier it came from.
    fn choose(&self, now: Instant, exclude: Option<SocketAddr>) -> Option<(usize, Tier)> {
        // One round-robin turn per pick, however many tiers are tried.
        let turn = if self.lb == LoadBalancer::RoundRobin {
            self.rr.fetch_add(1, Relaxed)
        } else {
            0
        };
        for tier in [Tier::Available, Tier::Healthy, Tier::All] {
            if tier == Tier::Healthy && self.detector.is_none() {
                // Without outlier detection, the same as `Available`.
                continue;
            }
            let pool = if tier == Tier::All {
                &self.all
            } else {
                &self.healthy
            };
            if pool.is_empty() {
                continue;
            }
            if let Some(addr) = exclude {
                let ok = |i: usize| {
                    self.members[i].state.addr() != addr && self.is_eligible(i, tier, now)
                };
                if let Some(i) = self.select(pool, ok, now, turn) {
                    return Some((i, tier));
                }
            }
            if let Some(i) = self.select(pool, |i| self.is_eligible(i, tier, now), now, turn) {
                return Some((i, tier));
            }
        }
        None
    }

    fn is_eligible(&self, i: usize, tier: Tier, now: Instant) -> bool {
        let m = &self.members[i];
        match tier {
            Tier::Available => {
                m.health == Health::Healthy && (self.detector.is_none() || !m.state.is_ejected(now))
            }
            Tier::Healthy => m.health == Health::Healthy,
            Tier::All => true,
        }
    }

    /// Runs the algorithm over the members of `pool` that satisfy `ok`; `turn` is the
    /// round-robin counter value of this pick.
    fn select(
        &self,
        pool: &Pool,
        ok: impl Fn(usize) -> bool,
        now: Instant,
        turn: u64,
    ) -> Option<usize> {
        match self.lb {
            LoadBalancer::P2cEwma => self.p2c(pool, &ok, |a, b| {
                // An endpoint without samples yet (just added) is assumed as fast as the
                // one it is compared with, so outstanding requests decide: it is tried at
                // once instead of waiting for the 30 ms default to decay below its peers'
                // estimates (half a minute against a 1 ms peer).
                let (ea, eb) = match (a.state.sampled_ewma_ns(now), b.state.sampled_ewma_ns(now)) {
                    (Some(x), Some(y)) => (x, y),
                    (Some(x), None) => (x, x),
                    (None, Some(y)) => (y, y),
                    (None, None) => (1.0, 1.0),
                };
                let cost = |e: f64, m: &Member<T>| {
                    e * (m.state.outstanding() as f64 + 1.0) / m.weight() as f64
                };
                cost(eb, b) < cost(ea, a)
            }),
            LoadBalancer::LeastRequest => self.p2c(pool, &ok, |a, b| {
                let cost = |m: &Member<T>| (m.state.outstanding() as f64 + 1.0) / m.weight() as f64;
                cost(b) < cost(a)
            }),
            LoadBalancer::RoundRobin => self.round_robin(pool, &ok, turn),
            LoadBalancer::Random => self.weighted(pool, &ok),
        }
    }

    /// Power of two choices: the better of two distinct uniform draws (`b_better(a, b)`
    /// says whether the second is cheaper).
    fn p2c(
        &self,
        pool: &Pool,
        ok: &impl Fn(usize) -> bool,
        b_better: impl Fn(&Member<T>, &Member<T>) -> bool,
    ) -> Option<usize> {
        let a = self.uniform(pool, ok, None)?;
        let Some(b) = self.uniform(pool, ok, Some(a)) else {
            return Some(pool.idx[a]);
        };
        let (a, b) = (pool.idx[a], pool.idx[b]);
        if b_better(&self.members[a], &self.members[b]) {
            Some(b)
        } else {
            Some(a)
        }
    }

    /// A uniformly drawn position in `pool` whose member satisfies `ok`, other than `skip`.
    fn uniform(
        &self,
        pool: &Pool,
        ok: &impl Fn(usize) -> bool,
        skip: Option<usize>,
    ) -> Option<usize> {
        let n = pool.len();
        let choices = n - usize::from(skip.is_some());
        if choices == 0 {
            return None;
        }
        let usable = |p: &usize| Some(*p) != skip && ok(pool.idx[*p]);
        for _ in 0..DRAWS {
            let mut p = self.rng.index(choices);
            if skip.is_some_and(|s| p >= s) {
                p += 1;
            }
            if ok(pool.idx[p]) {
                return Some(p);
            }
        }
        let count = (0..n).filter(usable).count();
        if count == 0 {
            return None;
        }
        (0..n).filter(usable).nth(self.rng.index(count))
    }

    /// A member of `pool` satisfying `ok`, drawn with probability proportional to weight.
    fn weighted(&self, pool: &Pool, ok: &impl Fn(usize) -> bool) -> Option<usize> {
        for _ in 0..DRAWS {
            let i = pool.idx[pool.position(self.rng.below(pool.total()))];
            if ok(i) {
                return Some(i);
            }
        }
        let weight = |i: usize| self.members[i].weight();
        let total: u64 = pool
            .idx
            .iter()
            .filter(|&&i| ok(i))
            .map(|&i| weight(i))
            .sum();
        if total == 0 {
            return None;
        }
        let mut r = self.rng.below(total);
        for &i in pool.idx.iter().filter(|&&i| ok(i)) {
            let w = weight(i);
            if r < w {
                return Some(i);
            }
            r -= w;
        }
        None
    }

    /// The member whose round-robin `turn` it is, or the next one satisfying `ok`.
    fn round_robin(&self, pool: &Pool, ok: &impl Fn(usize) -> bool, turn: u64) -> Option<usize> {
        let total = pool.total();
        let c = turn % total;
        let point = (u128::from(c) * u128::from(pool.step) % u128::from(total)) as u64;
        let start = pool.position(point);
        let n = pool.len();
        (0..n).map(|k| pool.idx[(start + k) % n]).find(|&i| ok(i))
    }
}

// === impl Pool ===

impl Pool {
    fn new<T>(members: &[Member<T>], include: impl Fn(&Member<T>) -> bool) -> Self {
        let idx: Box<[usize]> = (0..members.len())
            .filter(|&i| include(&members[i]))
            .collect();
        // Weights divided by their greatest common divisor: equal weights make a plain
        // round robin whatever their value.
        let weight = |i: usize| members[i].weight();
        let divisor = idx.iter().fold(0, |g, &i| gcd(g, weight(i))).max(1);
        let cum: Box<[u64]> = idx
            .iter()
            .scan(0u64, |sum, &i| {
                *sum += weight(i) / divisor;
                Some(*sum)
            })
            .collect();
        let total = cum.last().copied().unwrap_or(0);
        Self {
            idx,
            cum,
            step: golden_step(total),
        }
    }

    fn len(&self) -> usize {
        self.idx.len()
    }

    fn is_empty(&self) -> bool {
        self.idx.is_empty()
    }

    fn total(&self) -> u64 {
        self.cum.last().copied().unwrap_or(0)
    }

    /// The position whose cumulative-weight interval holds `point` (`< total`).
    fn position(&self, point: u64) -> usize {
        self.cum.partition_point(|&c| c <= point)
    }
}

/// The largest stride at most `total/φ` that is coprime to `total`, so that
/// `c · step mod total` visits every point of `0..total` once per `total` steps.
fn golden_step(total: u64) -> u64 {
    const INV_PHI: f64 = 0.618_033_988_749_895;
    let mut step = ((total as f64 * INV_PHI) as u64).max(1);
    while gcd(step, total) != 1 {
        step -= 1;
    }
    step
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}
