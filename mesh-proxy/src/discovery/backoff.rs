//! Reconnect delays: exponential backoff with full jitter (each delay uniformly random
//! below a ceiling that doubles per failure, up to a cap), so a fleet of proxies that lost
//! the control plane together does not reconnect together.

use std::time::Duration;

/// Backoff state of one reconnect loop.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    /// Delays below `base`, then `2 * base`, … never above `cap`.
    pub(crate) fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            failures: 0,
        }
    }

    /// The next delay; each call doubles the ceiling of the following one.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        ceiling.mul_f64(fastrand::f64())
    }

    /// Starts over from `base` (after a stream that lived long enough).
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }

    /// The bound of the next delay.
    pub(crate) fn ceiling(&self) -> Duration {
        self.base
            .saturating_mul(1 << self.failures.min(20))
            .min(self.cap)
    }
}
