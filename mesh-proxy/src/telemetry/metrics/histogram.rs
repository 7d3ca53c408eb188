//! A lock-free histogram with fixed buckets, encoded through `prometheus_client`.

use std::{
    fmt,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
};

use prometheus_client::encoding::{MetricEncoder, NoLabelSet};

/// Per-bucket counts (atomics) and a sum kept as an integer in `1/scale` units of the
/// exposed value (microseconds for a millisecond histogram), so observing is a few relaxed
/// atomic adds. A scrape may see an observation's bucket before its sum; the count is the
/// total of the buckets, so buckets and count always agree.
#[derive(Debug)]
pub(super) struct Histogram {
    bounds: &'static [f64],
    /// `bounds.len() + 1` counts; the last is `+Inf`.
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
    scale: f64,
}

impl Histogram {
    /// A histogram with upper bounds `bounds` (sorted ascending) whose sum is observed in
    /// units of `1/scale`.
    pub(super) fn new(bounds: &'static [f64], scale: f64) -> Self {
        debug_assert!(bounds.is_sorted());
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            scale,
        }
    }

    /// Observes `value` (in the exposed unit), adding `raw` (in `1/scale` units) to the sum.
    pub(super) fn observe(&self, value: f64, raw: u64) {
        // The first bucket whose upper bound is >= value (`le` semantics).
        let i = self.bounds.partition_point(|b| *b < value);
        self.counts[i].fetch_add(1, Relaxed);
        self.sum.fetch_add(raw, Relaxed);
    }

    /// The number of observations.
    pub(super) fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// Writes `_sum`, `_count` and the cumulative `_bucket`s.
    pub(super) fn encode(&self, mut encoder: MetricEncoder<'_>) -> fmt::Result {
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.counts.iter().map(|c| c.load(Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.sum.load(Relaxed) as f64 / self.scale;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }
}
