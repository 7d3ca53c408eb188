//! The balancer's randomness: fastrand's thread-local generator in production (no shared
//! state between cores), or a seeded, shareable SplitMix64 stream for deterministic tests.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// SplitMix64's increment (2⁶⁴/φ, odd).
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// A source of uniform random numbers usable from many threads without locks.
#[derive(Debug)]
pub(super) enum Rng {
    /// `fastrand`'s per-thread generator.
    Thread,
    /// SplitMix64 (Steele, Lea & Flood, "Fast splittable pseudorandom number generators",
    /// OOPSLA 2014) over an atomic counter: each draw takes the next counter value, so
    /// concurrent draws never repeat, and a single thread's sequence is fixed by the seed.
    Seeded(AtomicU64),
}

impl Rng {
    pub(super) fn seeded(seed: u64) -> Self {
        Self::Seeded(AtomicU64::new(seed))
    }

    /// A uniform integer in `0..n`; `n` must be positive.
    pub(super) fn below(&self, n: u64) -> u64 {
        debug_assert!(n > 0);
        match self {
            Self::Thread => fastrand::u64(..n),
            Self::Seeded(state) => {
                let mut z = state.fetch_add(GAMMA, Relaxed).wrapping_add(GAMMA);
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^= z >> 31;
                // Lemire's multiply-shift; its bias, at most n/2⁶⁴, is irrelevant here.
                ((u128::from(z) * u128::from(n)) >> 64) as u64
            }
        }
    }

    /// A uniform index in `0..n`; `n` must be positive.
    pub(super) fn index(&self, n: usize) -> usize {
        self.below(n as u64) as usize
    }
}
