use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use mesh_api::model::{Health, LoadBalancer, OutlierDetection, Percent};

use super::*;

const ALL_LBS: [LoadBalancer; 4] = [
    LoadBalancer::P2cEwma,
    LoadBalancer::LeastRequest,
    LoadBalancer::RoundRobin,
    LoadBalancer::Random,
];

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, n], 8080))
}

/// Member `n` (meta `n`, address 10.0.0.n) whose clock starts at `t0`.
fn mk(t0: Instant, n: u8, weight: u32, health: Health) -> Member<u8> {
    Member {
        state: EndpointState::new_at(addr(n), t0),
        weight,
        health,
        meta: n,
    }
}

/// `n` healthy members of weight 1, numbered from 1.
fn mk_n(t0: Instant, n: u8) -> Vec<Member<u8>> {
    (1..=n).map(|i| mk(t0, i, 1, Health::Healthy)).collect()
}

fn od(consecutive_5xx: u32, consecutive_gateway_errors: u32, max: f64) -> OutlierDetection {
    OutlierDetection {
        consecutive_5xx,
        consecutive_gateway_errors,
        interval: Duration::from_secs(10),
        base_ejection_time: Duration::from_secs(30),
        max_ejection_percent: Percent::new(max).unwrap(),
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A pick of `members[i]`, as if the algorithm had chosen it.
fn pick_of<T>(b: &Balancer<T>, i: usize) -> Pick<T> {
    b.inner.members[i].state.start();
    Pick {
        inner: b.inner.clone(),
        index: i,
        fallback: false,
    }
}

/// Finishes `times` requests to `members[i]` with `outcome`.
fn finish_n<T>(b: &Balancer<T>, i: usize, outcome: Outcome, times: usize, now: Instant) {
    for _ in 0..times {
        pick_of(b, i).finish(outcome, ms(1), now);
    }
}

/// How often each member (by meta) is picked in `n` picks, each dropped at once.
fn shares(b: &Balancer<u8>, n: usize, now: Instant) -> HashMap<u8, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let pick = b.pick(now).expect("endpoints exist");
        *counts.entry(pick.member().meta).or_default() += 1;
    }
    counts
}

fn ejected(b: &Balancer<u8>, i: usize, now: Instant) -> bool {
    b.members()[i].state.is_ejected(now)
}

fn assert_close(actual: Duration, expected_ns: f64) {
    let actual = actual.as_nanos() as f64;
    assert!(
        (actual - expected_ns).abs() <= 2.0,
        "{actual} ns, expected {expected_ns} ns"
    );
}

// === Peak EWMA ===

#[test]
fn ewma_starts_at_default_and_decays_towards_zero_when_idle() {
    let t0 = Instant::now();
    let s = EndpointState::new_at(addr(1), t0);
    assert_eq!(s.ewma_latency(t0), DEFAULT_RTT);
    assert_close(s.ewma_latency(t0 + DECAY), 30e6 * (-1.0f64).exp());
    // Reading does not write: the estimate at t0 is unchanged.
    assert_eq!(s.ewma_latency(t0), DEFAULT_RTT);
    assert!(s.ewma_latency(t0 + secs(100)) < Duration::from_micros(2));
}

#[test]
fn ewma_takes_peaks_at_once_and_decays_towards_lower_samples() {
    let t0 = Instant::now();
    let s = EndpointState::new_at(addr(1), t0);
    s.observe(ms(100), t0 + secs(1), false);
    assert_eq!(s.ewma_latency(t0 + secs(1)), ms(100));

    // 5 s later a 10 ms sample: e·w + s·(1 − w), w = exp(−0.5).
    s.observe(ms(10), t0 + secs(6), false);
    let w = (-0.5f64).exp();
    let expected = 100e6 * w + 10e6 * (1.0 - w);
    assert_close(s.ewma_latency(t0 + secs(6)), expected);

    // A sample in the same instant carries no weight against the estimate...
    s.observe(ms(1), t0 + secs(6), false);
    assert_close(s.ewma_latency(t0 + secs(6)), expected);
    // ...but a higher one is a new peak.
    s.observe(ms(200), t0 + secs(6), false);
    assert_eq!(s.ewma_latency(t0 + secs(6)), ms(200));
}

#[test]
fn failures_raise_the_estimate_but_never_lower_it() {
    let t0 = Instant::now();
    let b = Balancer::new(LoadBalancer::P2cEwma, None, mk_n(t0, 1));
    let later = t0 + secs(5);
    let before = b.members()[0].state.ewma_latency(later);
    for outcome in [
        Outcome::ConnectFailure,
        Outcome::Reset,
        Outcome::GatewayError(503),
        Outcome::ServerError(500),
    ] {
        pick_of(&b, 0).finish(outcome, ms(1), later);
        assert_eq!(
            b.members()[0].state.ewma_latency(later),
            before,
            "{outcome:?}"
        );
    }
    pick_of(&b, 0).finish(Outcome::Timeout, secs(5), later);
    assert_eq!(b.members()[0].state.ewma_latency(later), secs(5));
    // A local error says nothing about the endpoint.
    pick_of(&b, 0).finish(Outcome::LocalError, secs(60), later);
    assert_eq!(b.members()[0].state.ewma_latency(later), secs(5));
}

// === P2C ===

#[test]
fn p2c_ewma_prefers_the_faster_endpoint() {
    let t0 = Instant::now();
    let b = Balancer::with_seed(LoadBalancer::P2cEwma, None, mk_n(t0, 4), 7);
    for (i, m) in b.members().iter().enumerate() {
        let rtt = if i == 0 { ms(5) } else { ms(50) };
        m.state.observe(rtt, t0, false);
    }
    // The fast endpoint wins whenever it is one of the two candidates: half the pairs of
    // four (uniform would give it a quarter).
    let counts = shares(&b, 10_000, t0);
    let fast = counts[&1] as f64 / 10_000.0;
    assert!((0.47..0.53).contains(&fast), "fast share {fast}");

    // With two endpoints both are always candidates: the fast one gets everything.
    let b = Balancer::with_seed(LoadBalancer::P2cEwma, None, mk_n(t0, 2), 7);
    b.members()[0].state.observe(ms(5), t0, false);
    b.members()[1].state.observe(ms(50), t0, false);
    assert_eq!(shares(&b, 10_000, t0).get(&2), None);
}

#[test]
fn p2c_ewma_tries_a_new_endpoint_at_once() {
    let t0 = Instant::now();
    let b = Balancer::with_seed(LoadBalancer::P2cEwma, None, mk_n(t0, 2), 3);
    // A fast, sampled endpoint and one that just joined (no samples: the 30 ms default).
    b.members()[0].state.observe(ms(1), t0, false);
    let counts = shares(&b, 1000, t0);
    let new = counts.get(&2).copied().unwrap_or(0);
    assert!(new > 300, "the new endpoint got {new} of 1000 picks");
    // Its first sample decides from then on.
    b.members()[1].state.observe(ms(50), t0, false);
    assert_eq!(shares(&b, 1000, t0).get(&2), None);
}

#[test]
fn p2c_ewma_weighs_latency_by_outstanding_requests() {
    let t0 = Instant::now();
    let b = Balancer::with_seed(LoadBalancer::P2cEwma, None, mk_n(t0, 2), 1);
    b.members()[0].state.observe(ms(3), t0, false);
    b.members()[1].state.observe(ms(50), t0, false);
    // Costs 3·(n+1) against 50·(m+1) (never equal below 50 picks): the fast endpoint takes
    // 16, the slow one the 17th (51 > 50), then the fast one the rest up to 33 in flight.
    let held: Vec<_> = (0..30).map(|_| b.pick(t0).unwrap()).collect();
    assert_eq!(b.members()[0].state.outstanding(), 29);
    assert_eq!(b.members()[1].state.outstanding(), 1);
    assert_eq!(held[16].member().meta, 2);
}

#[test]
fn least_request_prefers_fewer_outstanding() {
    let t0 = Instant::now();
    let b = Balancer::with_seed(LoadBalancer::LeastRequest, None, mk_n(t0, 2), 3);
    let mut held: Vec<_> = (0..10).map(|_| b.pick(t0).unwrap()).collect();
    assert_eq!(b.members()[0].state.outstanding(), 5);
    assert_eq!(b.members()[1].state.outstanding(), 5);
    // The first endpoint's requests complete: it gets the next five.
    held.retain(|p| p.member().meta == 2);
    assert_eq!(b.members()[0].state.outstanding(), 0);
    let next: Vec<_> = (0..5).map(|_| b.pick(t0).unwrap()).collect();
    assert!(next.iter().all(|p| p.member().meta == 1));
}

#[test]
fn least_request_splits_concurrent_load_by_weight() {
    let t0 = Instant::now();
    let members = vec![mk(t0, 1, 1, Health::Healthy), mk(t0, 2, 3, Health::Healthy)];
    let b = Balancer::with_seed(LoadBalancer::LeastRequest, None, members, 5);
    let _held: Vec<_> = (0..400).map(|_| b.pick(t0).unwrap()).collect();
    let light = b.members()[0].state.outstanding();
    assert!(light.abs_diff(100) <= 1, "{light} in flight on weight 1");
    assert_eq!(b.members()[1].state.outstanding(), 400 - light);
}

// === Random and round robin ===

#[test]
fn random_shares_follow_weights() {
    let t0 = Instant::now();
    let members = vec![
        mk(t0, 1, 1, Health::Healthy),
        mk(t0, 2, 2, Health::Healthy),
        mk(t0, 3, 7, Health::Healthy),
    ];
    let b = Balancer::with_seed(LoadBalancer::Random, None, members, 11);
    let counts = shares(&b, 100_000, t0);
    for (meta, expected) in [(1, 0.1), (2, 0.2), (3, 0.7)] {
        let share = counts[&meta] as f64 / 100_000.0;
        assert!((share - expected).abs() < 0.01, "{meta}: {share}");
    }
}

#[test]
fn round_robin_gives_each_its_weight_in_every_cycle() {
    let t0 = Instant::now();
    for (weights, cycle) in [
        (&[1, 1, 1, 1, 1][..], 5),
        (&[1, 3][..], 4),
        (&[5, 3, 2][..], 10),
        // Equal weights above one are a plain round robin.
        (&[4, 4, 4][..], 3),
    ] {
        let members = (1..)
            .zip(weights)
            .map(|(n, &w)| mk(t0, n, w, Health::Healthy))
            .collect();
        let b = Balancer::with_seed(LoadBalancer::RoundRobin, None, members, 13);
        let seq: Vec<u8> = (0..cycle * 20)
            .map(|_| b.pick(t0).unwrap().member().meta)
            .collect();
        let divisor = weights
            .iter()
            .copied()
            .reduce(|a, b| gcd(a.into(), b.into()) as u32);
        for window in seq.windows(cycle) {
            for (n, &w) in (1..).zip(weights) {
                let got = window.iter().filter(|&&m| m == n).count();
                assert_eq!(got as u32, w / divisor.unwrap(), "{weights:?}: {window:?}");
            }
        }
    }
}

#[test]
fn round_robin_interleaves_heavy_endpoints() {
    let t0 = Instant::now();
    let members = vec![
        mk(t0, 1, 5, Health::Healthy),
        mk(t0, 2, 3, Health::Healthy),
        mk(t0, 3, 2, Health::Healthy),
    ];
    let b = Balancer::with_seed(LoadBalancer::RoundRobin, None, members, 17);
    let seq: Vec<u8> = (0..100)
        .map(|_| b.pick(t0).unwrap().member().meta)
        .collect();
    // A run-length schedule would send the weight-5 endpoint five requests in a row.
    let longest = seq.chunk_by(|a, b| a == b).map(<[u8]>::len).max().unwrap();
    assert!(longest <= 2, "{seq:?}");
}

#[test]
fn golden_step_is_a_permutation() {
    for total in 1..200u64 {
        let step = golden_step(total);
        let mut seen = vec![false; total as usize];
        for c in 0..total {
            seen[(c * step % total) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s), "total {total}, step {step}");
    }
    assert_eq!(golden_step(10), 3);
    assert_eq!(golden_step(0), 1);
}

// === Eligibility and panic mode ===

#[test]
fn unhealthy_and_draining_endpoints_are_not_picked() {
    let t0 = Instant::now();
    for lb in ALL_LBS {
        let members = vec![
            mk(t0, 1, 1, Health::Draining),
            mk(t0, 2, 1, Health::Healthy),
            mk(t0, 3, 1, Health::Unhealthy),
        ];
        let b = Balancer::with_seed(lb, Some(od(5, 5, 50.0)), members, 19);
        for _ in 0..1_000 {
            let pick = b.pick(t0).unwrap();
            assert_eq!(pick.member().meta, 2, "{lb:?}");
            assert!(!pick.is_fallback());
        }
    }
}

#[test]
fn panic_mode_when_nothing_is_available() {
    let t0 = Instant::now();
    for lb in ALL_LBS {
        // Nothing healthy: all endpoints share the load.
        let members = vec![
            mk(t0, 1, 1, Health::Draining),
            mk(t0, 2, 1, Health::Unhealthy),
        ];
        let b = Balancer::with_seed(lb, None, members, 23);
        assert!(b.pick(t0).unwrap().is_fallback());
        assert_eq!(shares(&b, 1_000, t0).len(), 2, "{lb:?}");

        // Everything healthy ejected: still picked.
        let b = Balancer::with_seed(lb, Some(od(0, 1, 100.0)), mk_n(t0, 2), 23);
        finish_n(&b, 0, Outcome::ConnectFailure, 1, t0);
        finish_n(&b, 1, Outcome::ConnectFailure, 1, t0);
        assert!(ejected(&b, 0, t0) && ejected(&b, 1, t0));
        assert!(b.pick(t0).unwrap().is_fallback());
        assert_eq!(shares(&b, 1_000, t0).len(), 2, "{lb:?}");

        // Ejected but healthy beats not ejected but unhealthy.
        let members = vec![
            mk(t0, 1, 1, Health::Unhealthy),
            mk(t0, 2, 1, Health::Healthy),
        ];
        let b = Balancer::with_seed(lb, Some(od(0, 1, 100.0)), members, 23);
        finish_n(&b, 1, Outcome::ConnectFailure, 1, t0);
        assert!(ejected(&b, 1, t0));
        assert_eq!(shares(&b, 1_000, t0)[&2], 1_000, "{lb:?}");
    }
}

#[test]
fn empty_balancer_picks_nothing() {
    let b = Balancer::<()>::new(LoadBalancer::P2cEwma, None, Vec::new());
    assert!(b.is_empty());
    assert!(b.pick(Instant::now()).is_none());
    assert!(b.pick_excluding(Instant::now(), addr(1)).is_none());
}

// === Pick accounting ===

#[test]
fn dropping_or_finishing_a_pick_ends_the_request() {
    let t0 = Instant::now();
    let b = Balancer::new(LoadBalancer::P2cEwma, None, mk_n(t0, 1));
    let state = b.members()[0].state.clone();
    let p1 = b.pick(t0).unwrap();
    let p2 = b.pick(t0).unwrap();
    assert_eq!(state.outstanding(), 2);
    drop(p1);
    assert_eq!(state.outstanding(), 1);
    p2.finish(Outcome::Success, ms(10), t0);
    assert_eq!(state.outstanding(), 0);
    let stats = state.stats(t0);
    assert_eq!(stats.requests_total, 2);
    assert_eq!(stats.failures_total, 0);
    // The cancelled request gave no sample; the finished one gave the first.
    assert_eq!(state.ewma_latency(t0), ms(10));
}

#[test]
fn pick_is_owned_and_send() {
    fn assert_send_static<T: Send + 'static>() {}
    assert_send_static::<Pick<String>>();
    assert_send_static::<Balancer<String>>();
}

#[test]
fn pick_excluding_avoids_the_previous_endpoint() {
    let t0 = Instant::now();
    for lb in ALL_LBS {
        let b = Balancer::with_seed(lb, Some(od(5, 5, 50.0)), mk_n(t0, 3), 29);
        for _ in 0..1_000 {
            let pick = b.pick_excluding(t0, addr(2)).unwrap();
            assert_ne!(pick.addr(), addr(2), "{lb:?}");
        }
        // The other endpoints are only unhealthy: retry the same one.
        let members = vec![
            mk(t0, 1, 1, Health::Unhealthy),
            mk(t0, 2, 1, Health::Healthy),
        ];
        let b = Balancer::with_seed(lb, None, members, 29);
        assert_eq!(b.pick_excluding(t0, addr(2)).unwrap().addr(), addr(2));
        // Only one endpoint.
        let b = Balancer::with_seed(lb, None, mk_n(t0, 1), 29);
        assert_eq!(b.pick_excluding(t0, addr(1)).unwrap().addr(), addr(1));
    }
}

// === Outlier detection ===

#[test]
fn ejects_after_consecutive_gateway_errors() {
    let t0 = Instant::now();
    let b = Balancer::with_seed(LoadBalancer::P2cEwma, Some(od(0, 3, 50.0)), mk_n(t0, 4), 31);
    finish_n(&b, 0, Outcome::GatewayError(503), 2, t0);
    assert!(!ejected(&b, 0, t0));
    assert_eq!(b.members()[0].state.stats(t0).consecutive_gateway_errors, 2);
    finish_n(&b, 0, Outcome::GatewayError(502), 1, t0);
    assert!(ejected(&b, 0, t0));

    let stats = b.members()[0].state.stats(t0);
    assert_eq!(stats.ejected_remaining_ms, Some(30_000));
    assert_eq!(stats.ejections_total, 1);
    assert_eq!(stats.failures_total, 3);
    assert_eq!(stats.consecutive_gateway_errors, 0);

    for _ in 0..1_000 {
        let pick = b.pick(t0).unwrap();
        assert_ne!(pick.member().meta, 1);
        assert!(!pick.is_fallback());
    }
}

#[test]
fn connect_failures_resets_and_timeouts_are_gateway_errors() {
    let t0 = Instant::now();
    let b = Balancer::new(LoadBalancer::P2cEwma, Some(od(0, 3, 50.0)), mk_n(t0, 2));
    finish_n(&b, 0, Outcome::ConnectFailure, 1, t0);
    finish_n(&b, 0, Outcome::Reset, 1, t0);
    assert!(!ejected(&b, 0, t0));
    pick_of(&b, 0).finish(Outcome::Timeout, secs(1), t0);
    assert!(ejected(&b, 0, t0));
}

#[test]
fn other_server_errors_count_only_towards_consecutive_5xx() {
    let t0 = Instant::now();
    // Gateway detector only: a 500 breaks the run of gateway errors.
    let b = Balancer::new(LoadBalancer::P2cEwma, Some(od(0, 3, 50.0)), mk_n(t0, 2));
    finish_n(&b, 0, Outcome::GatewayError(503), 2, t0);
    finish_n(&b, 0, Outcome::ServerError(500), 1, t0);
    finish_n(&b, 0, Outcome::GatewayError(503), 1, t0);
    assert!(!ejected(&b, 0, t0));
    let stats = b.members()[0].state.stats(t0);
    assert_eq!(stats.consecutive_gateway_errors, 1);
    assert_eq!(stats.consecutive_5xx, 4);

    // 5xx detector: every kind of failure counts.
    let b = Balancer::new(LoadBalancer::P2cEwma, Some(od(3, 0, 50.0)), mk_n(t0, 2));
    finish_n(&b, 0, Outcome::GatewayError(503), 1, t0);
    finish_n(&b, 0, Outcome::ConnectFailure, 1, t0);
    assert!(!ejected(&b, 0, t0));
    finish_n(&b, 0, Outcome::ServerError(500), 1, t0);
    assert!(ejected(&b, 0, t0));
}

#[test]
fn success_resets_the_counters() {
    let t0 = Instant::now();
    let b = Balancer::new(LoadBalancer::P2cEwma, Some(od(3, 3, 50.0)), mk_n(t0, 2));
    finish_n(&b, 0, Outcome::GatewayError(503), 2, t0);
    finish_n(&b, 0, Outcome::Success, 1, t0);
    let stats = b.members()[0].state.stats(t0);
    assert_eq!(
        (stats.consecutive_5xx, stats.consecutive_gateway_errors),
        (0, 0)
    );
    finish_n(&b, 0, Outcome::GatewayError(503), 2, t0);
    assert!(!ejected(&b, 0, t0));
    finish_n(&b, 0, Outcome::GatewayError(503), 1, t0);
    assert!(ejected(&b, 0, t0));
}

#[test]
fn local_errors_and_cancellations_give_no_signal() {
    let t0 = Instant::now();
    let b = Balancer::new(LoadBalancer::P2cEwma, Some(od(1, 1, 100.0)), mk_n(t0, 2));
    finish_n(&b, 0, Outcome::LocalError, 10, t0);
    for _ in 0..10 {
        drop(pick_of(&b, 0));
    }
    assert!(!ejected(&b, 0, t0));
    let stats = b.members()[0].state.stats(t0);
    assert_eq!((stats.consecutive_5xx, stats.failures_total), (0, 0));
    assert_eq!(stats.requests_total, 20);
}

#[test]
fn ejection_ends_after_its_time_and_backs_off() {
    let t0 = Instant::now();
    let b = Balancer::with_seed(
        LoadBalancer::RoundRobin,
        Some(od(0, 1, 50.0)),
        mk_n(t0, 4),
        37,
    );
    let fail = |at: Instant| finish_n(&b, 0, Outcome::ConnectFailure, 1, at);

    fail(t0);
    assert!(ejected(&b, 0, t0 + secs(30) - Duration::from_nanos(1)));
    assert!(!ejected(&b, 0, t0 + secs(30)));
    assert_eq!(shares(&b, 4, t0 + secs(30))[&1], 1, "back in the rotation");

    // Failing again at once: twice the base time.
    fail(t0 + secs(30));
    assert!(ejected(&b, 0, t0 + secs(89)));
    assert!(!ejected(&b, 0, t0 + secs(90)));

    // Two intervals (20 s) in service take the multiplier from 2 back to 0: 30 s again.
    fail(t0 + secs(110));
    assert_eq!(
        b.members()[0]
            .state
            .stats(t0 + secs(110))
            .ejected_remaining_ms,
        Some(30_000)
    );
    assert_eq!(b.members()[0].state.stats(t0).ejections_total, 3);
}

#[test]
fn ejection_time_is_capped() {
    let t0 = Instant::now();
    let od = OutlierDetection {
        base_ejection_time: secs(100),
        ..od(0, 1, 50.0)
    };
    let b = Balancer::new(LoadBalancer::P2cEwma, Some(od), mk_n(t0, 2));
    let mut now = t0;
    for expected in [100, 200, 300, 300] {
        finish_n(&b, 0, Outcome::ConnectFailure, 1, now);
        let remaining = b.members()[0].state.stats(now).ejected_remaining_ms;
        assert_eq!(remaining, Some(expected * 1_000));
        now += secs(expected);
    }
}

#[test]
fn max_ejection_percent_is_respected() {
    let t0 = Instant::now();
    // 25 % of four: one.
    let b = Balancer::new(LoadBalancer::P2cEwma, Some(od(0, 1, 25.0)), mk_n(t0, 4));
    finish_n(&b, 0, Outcome::ConnectFailure, 1, t0);
    finish_n(&b, 1, Outcome::ConnectFailure, 1, t0);
    assert!(ejected(&b, 0, t0));
    assert!(!ejected(&b, 1, t0));
    // Once the first is back, the second may go.
    finish_n(&b, 1, Outcome::ConnectFailure, 1, t0 + secs(30));
    assert!(ejected(&b, 1, t0 + secs(30)));

    // 50 % of four: two.
    let b = Balancer::new(LoadBalancer::P2cEwma, Some(od(0, 1, 50.0)), mk_n(t0, 4));
    for i in 0..4 {
        finish_n(&b, i, Outcome::ConnectFailure, 1, t0);
    }
    let count = (0..4).filter(|&i| ejected(&b, i, t0)).count();
    assert_eq!(count, 2);

    // 10 % of three: still one, so that small clusters eject at all.
    let b = Balancer::new(LoadBalancer::P2cEwma, Some(od(0, 1, 10.0)), mk_n(t0, 3));
    for i in 0..3 {
        finish_n(&b, i, Outcome::ConnectFailure, 1, t0);
    }
    assert_eq!((0..3).filter(|&i| ejected(&b, i, t0)).count(), 1);

    // 0 %: never; and a lone endpoint only under 100 %.
    let b = Balancer::new(LoadBalancer::P2cEwma, Some(od(0, 1, 0.0)), mk_n(t0, 3));
    finish_n(&b, 0, Outcome::ConnectFailure, 1, t0);
    assert!(!ejected(&b, 0, t0));
    let b = Balancer::new(LoadBalancer::P2cEwma, Some(od(0, 1, 99.0)), mk_n(t0, 1));
    finish_n(&b, 0, Outcome::ConnectFailure, 1, t0);
    assert!(!ejected(&b, 0, t0));
}

#[test]
fn may_eject_rule() {
    assert!(may_eject_for_test(1, 10, 10.0));
    assert!(!may_eject_for_test(2, 10, 10.0));
    assert!(may_eject_for_test(1, 2, 10.0));
    assert!(!may_eject_for_test(1, 1, 10.0));
    assert!(may_eject_for_test(1, 1, 100.0));
    assert!(!may_eject_for_test(1, 5, 0.0));
    assert!(may_eject_for_test(3, 4, 75.0));
    assert!(!may_eject_for_test(4, 4, 75.0));
}

fn may_eject_for_test(ejected: usize, total: usize, max: f64) -> bool {
    outlier::may_eject(ejected, total, max)
}

#[test]
fn without_outlier_detection_errors_are_counted_but_never_eject() {
    let t0 = Instant::now();
    let b = Balancer::with_seed(LoadBalancer::P2cEwma, Some(od(0, 1, 50.0)), mk_n(t0, 2), 41);
    finish_n(&b, 0, Outcome::ConnectFailure, 1, t0);
    assert!(ejected(&b, 0, t0));

    // Rebuilt without outlier detection: the old ejection no longer applies.
    let mut states = b.states();
    let members = (1..=2)
        .map(|n| Member::new(states.remove(&addr(n)).unwrap(), n))
        .collect();
    let b = Balancer::with_seed(LoadBalancer::P2cEwma, None, members, 41);
    assert_eq!(shares(&b, 1_000, t0).len(), 2);
    finish_n(&b, 1, Outcome::ConnectFailure, 10, t0);
    assert!(!ejected(&b, 1, t0));
    assert_eq!(
        b.members()[1].state.stats(t0).consecutive_gateway_errors,
        10
    );
}

// === Rebuilds and stats ===

#[test]
fn rebuilds_keep_endpoint_state() {
    let t0 = Instant::now();
    let b1 = Balancer::new(LoadBalancer::LeastRequest, None, mk_n(t0, 2));
    let held = pick_of(&b1, 0);
    let mut states = b1.states();
    let members = vec![
        Member::new(states.remove(&addr(1)).unwrap(), 1),
        mk(t0, 3, 1, Health::Healthy),
    ];
    let b2 = Balancer::new(LoadBalancer::LeastRequest, None, members);
    assert_eq!(b2.members()[0].state.outstanding(), 1);
    // The old generation's pick still ends the request on the shared state.
    drop(b1);
    held.finish(Outcome::Success, ms(1), t0);
    assert_eq!(b2.members()[0].state.outstanding(), 0);
}

#[test]
fn stats_serialize_for_the_admin_dump() {
    let t0 = Instant::now();
    let members = vec![mk(t0, 1, 2, Health::Draining)];
    let b = Balancer::new(LoadBalancer::Random, Some(od(0, 1, 100.0)), members);
    let _held = pick_of(&b, 0);
    finish_n(&b, 0, Outcome::GatewayError(503), 1, t0);
    let json = serde_json::to_value(b.stats(t0 + secs(10))).unwrap();
    let expected_ewma = 30.0 * (-1.0f64).exp();
    assert_eq!(
        json,
        serde_json::json!([{
            "weight": 2,
            "health": "draining",
            "addr": "10.0.0.1:8080",
            "outstanding": 1,
            "ewma_ms": json[0]["ewma_ms"],
            "consecutive_5xx": 0,
            "consecutive_gateway_errors": 0,
            "ejected_remaining_ms": 20_000,
            "ejections_total": 1,
            "requests_total": 2,
            "failures_total": 1,
        }])
    );
    let ewma = json[0]["ewma_ms"].as_f64().unwrap();
    assert!((ewma - expected_ewma).abs() < 1e-6, "{ewma}");
}

#[test]
fn outcomes_from_status() {
    assert_eq!(Outcome::from_status(200), Outcome::Success);
    assert_eq!(Outcome::from_status(404), Outcome::Success);
    assert_eq!(Outcome::from_status(500), Outcome::ServerError(500));
    assert_eq!(Outcome::from_status(502), Outcome::GatewayError(502));
    assert_eq!(Outcome::from_status(504), Outcome::GatewayError(504));
    assert_eq!(Outcome::from_status(505), Outcome::ServerError(505));
    assert!(!Outcome::LocalError.is_upstream_failure());
    assert!(Outcome::Reset.is_upstream_failure());
}

#[test]
fn seeded_balancers_are_deterministic() {
    let t0 = Instant::now();
    let run = || {
        let b = Balancer::with_seed(LoadBalancer::P2cEwma, None, mk_n(t0, 5), 43);
        (0..100)
            .map(|_| b.pick(t0).unwrap().member().meta)
            .collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

#[test]
fn shared_state_is_arc() {
    // Members hand out the same state the caller passed in.
    let t0 = Instant::now();
    let state = EndpointState::new_at(addr(9), t0);
    let b = Balancer::new(
        LoadBalancer::Random,
        None,
        vec![Member::new(state.clone(), ())],
    );
    assert!(Arc::ptr_eq(&b.members()[0].state, &state));
    let _p = b.pick(t0).unwrap();
    assert_eq!(state.outstanding(), 1);
}

#[test]
fn the_first_sample_replaces_the_default() {
    let t0 = Instant::now();
    let s = EndpointState::new_at(addr(1), t0);
    // A failure below the default is not a sample...
    s.observe(ms(1), t0, true);
    assert_eq!(s.ewma_latency(t0), DEFAULT_RTT);
    // ...a success is, even in the same instant.
    s.observe(ms(4), t0, false);
    assert_eq!(s.ewma_latency(t0), ms(4));
    // From then on, a lower sample in the same instant carries no weight.
    s.observe(ms(1), t0, false);
    assert_eq!(s.ewma_latency(t0), ms(4));
}

#[test]
fn concurrent_picks_keep_the_books_and_the_cap() {
    let t0 = Instant::now();
    for lb in ALL_LBS {
        let b = Balancer::new(lb, Some(od(2, 2, 50.0)), mk_n(t0, 10));
        std::thread::scope(|scope| {
            for thread in 0..8u64 {
                let b = &b;
                scope.spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(thread);
                    let mut held = Vec::new();
                    for i in 0..5_000u32 {
                        let pick = b.pick(t0).unwrap();
                        match rng.u8(..4) {
                            0 => drop(pick),
                            1 => held.push(pick),
                            2 => pick.finish(Outcome::Success, ms(u64::from(i % 7)), t0),
                            _ => pick.finish(Outcome::GatewayError(503), ms(1), t0),
                        }
                        if held.len() > 16 {
                            held.clear();
                        }
                    }
                });
            }
        });
        let stats = b.stats(t0);
        assert!(stats.iter().all(|s| s.endpoint.outstanding == 0), "{lb:?}");
        let requests: u64 = stats.iter().map(|s| s.endpoint.requests_total).sum();
        assert_eq!(requests, 40_000, "{lb:?}");
        let ejected = stats
            .iter()
            .filter(|s| s.endpoint.ejected_remaining_ms.is_some())
            .count();
        assert!((1..=5).contains(&ejected), "{lb:?}: {ejected} ejected");
    }
}

#[test]
fn zero_weight_counts_as_one() {
    let t0 = Instant::now();
    for lb in ALL_LBS {
        let members = vec![mk(t0, 1, 0, Health::Healthy), mk(t0, 2, 1, Health::Healthy)];
        let b = Balancer::with_seed(lb, None, members, 47);
        let counts = shares(&b, 10_000, t0);
        let zero = counts.get(&1).copied().unwrap_or(0);
        assert!(zero.abs_diff(5_000) < 300, "{lb:?}: {zero}");
    }
}
