//! Which traces are recorded: parent-based, then a percentage of new traces.
//!
//! A request whose context carries a sampling decision keeps it (W3C `sampled` flag, B3
//! `x-b3-sampled` / `b3`), so every proxy on a trace records it or none does. A request that
//! starts a trace, or whose B3 context defers the decision, is sampled when its trace id's
//! low 64 bits fall below `percent` of the range — the OpenTelemetry `TraceIdRatioBased`
//! idea: deterministic per trace, so two proxies deciding for the same trace id agree, and
//! no random number is drawn on the request path.

use super::Error;
use super::context::TraceId;

/// The default percentage of new traces recorded: 1 %, as Istio's default.
pub const DEFAULT_PERCENT: f64 = 1.0;

/// Decides which traces are recorded; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampler {
    percent: f64,
    threshold: Threshold,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Threshold {
    Never,
    Always,
    /// Sampled when the trace id's low 64 bits are below this.
    Below(u64),
}

impl Sampler {
    /// Records `percent` (0 to 100) of new traces.
    pub fn new(percent: f64) -> Result<Self, Error> {
        if !percent.is_finite() || !(0.0..=100.0).contains(&percent) {
            return Err(Error::InvalidSampling(percent.to_string()));
        }
        Ok(Self {
            percent,
            threshold: threshold(percent),
        })
    }

    /// The configured percentage.
    pub fn percent(&self) -> f64 {
        self.percent
    }

    /// Whether a trace is recorded: the parent's decision if there is one, else the ratio.
    pub fn sample(&self, parent: Option<bool>, trace_id: TraceId) -> bool {
        parent.unwrap_or_else(|| self.sample_new(trace_id))
    }

    /// Whether a new trace (no decision yet) is recorded.
    pub fn sample_new(&self, trace_id: TraceId) -> bool {
        match self.threshold {
            Threshold::Never => false,
            Threshold::Always => true,
            Threshold::Below(t) => trace_id.low_u64() < t,
        }
    }
}

impl Default for Sampler {
    fn default() -> Self {
        Self {
            percent: DEFAULT_PERCENT,
            threshold: threshold(DEFAULT_PERCENT),
        }
    }
}

/// The threshold for a percentage already checked to be in 0..=100.
fn threshold(percent: f64) -> Threshold {
    if percent <= 0.0 {
        Threshold::Never
    } else if percent >= 100.0 {
        Threshold::Always
    } else {
        // 2^64 * percent / 100; percent < 100 keeps it below 2^64 (and the cast saturates).
        Threshold::Below((percent / 100.0 * 18_446_744_073_709_551_616.0) as u64)
    }
}

/// Parses a `--trace-sampling` value: a number of percent from 0 to 100 (`1`, `0.5`,
/// `100`; a trailing `%` is allowed).
pub fn parse_percent(s: &str) -> Result<f64, Error> {
    let t = s.trim();
    let t = t.strip_suffix('%').unwrap_or(t).trim_end();
    let p: f64 = t
        .parse()
        .map_err(|_| Error::InvalidSampling(s.to_string()))?;
    Sampler::new(p).map_err(|_| Error::InvalidSampling(s.to_string()))?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(low: u64) -> TraceId {
        let mut b = [0u8; 16];
        b[0] = 1;
        b[8..].copy_from_slice(&low.to_be_bytes());
        TraceId::from_bytes(b)
    }

    #[test]
    fn parent_decision_wins() {
        let never = Sampler::new(0.0).unwrap();
        let always = Sampler::new(100.0).unwrap();
        assert!(never.sample(Some(true), id(u64::MAX)));
        assert!(!always.sample(Some(false), id(0)));
        assert!(!never.sample(None, id(0)));
        assert!(always.sample(None, id(u64::MAX)));
    }

    #[test]
    fn ratio_reads_the_low_bits() {
        let half = Sampler::new(50.0).unwrap();
        assert!(half.sample_new(id(0)));
        assert!(half.sample_new(id((1 << 63) - 1)));
        assert!(!half.sample_new(id(1 << 63)));
        assert!(!half.sample_new(id(u64::MAX)));
    }

    #[test]
    fn ratio_samples_about_the_share() {
        fastrand::seed(11);
        let s = Sampler::new(10.0).unwrap();
        let n = 100_000;
        let hits = (0..n).filter(|_| s.sample_new(TraceId::random())).count();
        let share = hits as f64 / f64::from(n);
        assert!((0.09..0.11).contains(&share), "share {share}");
        let one = Sampler::default();
        assert_eq!(one.percent(), 1.0);
        let hits = (0..n).filter(|_| one.sample_new(TraceId::random())).count();
        assert!((700..1300).contains(&hits), "hits {hits}");
    }

    #[test]
    fn percent_parsing() {
        assert_eq!(parse_percent("1").unwrap(), 1.0);
        assert_eq!(parse_percent("0.5").unwrap(), 0.5);
        assert_eq!(parse_percent("100%").unwrap(), 100.0);
        assert_eq!(parse_percent(" 0 ").unwrap(), 0.0);
        for bad in ["", "abc", "-1", "100.1", "NaN", "inf", "1e400"] {
            let err = parse_percent(bad).unwrap_err().to_string();
            assert!(err.contains("from 0 to 100"), "{bad}: {err}");
        }
    }
}
