//! A bounded map from label sets to series values, with one overflow series per reporter.

use std::{
    collections::HashMap,
    fmt,
    hash::Hash,
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
};

use prometheus_client::{
    encoding::{
        DescriptorEncoder, EncodeLabel as _, EncodeLabelSet, EncodeMetric as _, LabelSetEncoder,
    },
    metrics::{MetricType, counter::ConstCounter},
};

use super::{Histogram, Reporter};

/// A label set whose overflow series keeps `reporter` and sets every other label to
/// `"overflow"`.
pub(super) trait SeriesKey: Clone + Eq + Hash + EncodeLabelSet {
    /// The label names after `reporter`, in the order the label set encodes them.
    const NAMES: &'static [&'static str];

    /// The reporter label.
    fn reporter(&self) -> Reporter;
}

/// At most `max` label sets, each with its values `V`; records with new label sets beyond
/// the cap go to the overflow series of their reporter.
#[derive(Debug)]
pub(super) struct SeriesMap<K, V> {
    map: RwLock<HashMap<K, Arc<V>>>,
    max: usize,
    overflow: [V; 2],
    overflowed: [AtomicU64; 2],
}

impl<K: SeriesKey, V: Default> SeriesMap<K, V> {
    pub(super) fn new(max: usize) -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
            max: max.max(1),
            overflow: Default::default(),
            overflowed: Default::default(),
        }
    }

    /// Runs `f` on the values of `key`'s series (created if new and under the cap, else the
    /// overflow series).
    pub(super) fn with(&self, key: &K, f: impl FnOnce(&V)) {
        let full = {
            let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(v) = map.get(key) {
                f(v);
                return;
            }
            map.len() >= self.max
        };
        if !full {
            let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
            if let Some(v) = map.get(key) {
                f(v);
                return;
            }
            if map.len() < self.max {
                f(map.entry(key.clone()).or_default());
                return;
            }
        }
        let r = key.reporter().index();
        self.overflowed[r].fetch_add(1, Relaxed);
        f(&self.overflow[r]);
    }

    /// How many label sets are held (the overflow series not counted).
    pub(super) fn len(&self) -> usize {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// How many records went to an overflow series.
    pub(super) fn overflowed(&self) -> u64 {
        self.overflowed.iter().map(|n| n.load(Relaxed)).sum()
    }

    /// The current series, copied out under the read lock (reference counts only) so that
    /// encoding does not hold it.
    pub(super) fn snapshot(&self) -> Snapshot<'_, K, V> {
        let entries = self
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Snapshot { entries, map: self }
    }
}

/// The series of a [`SeriesMap`] at one scrape.
pub(super) struct Snapshot<'a, K, V> {
    entries: Vec<(K, Arc<V>)>,
    map: &'a SeriesMap<K, V>,
}

impl<K: SeriesKey, V> Snapshot<'_, K, V> {
    /// The overflow series that were used, with their label sets.
    fn overflow(&self) -> impl Iterator<Item = (Overflow, &V)> {
        [Reporter::Source, Reporter::Destination]
            .into_iter()
            .filter(|r| self.map.overflowed[r.index()].load(Relaxed) > 0)
            .map(|reporter| {
                let labels = Overflow {
                    reporter,
                    names: K::NAMES,
                };
                (labels, &self.map.overflow[reporter.index()])
            })
    }

    /// Encodes one counter family: `value` of every series whose labels pass `filter`, and
    /// of the overflow series when not zero.
    pub(super) fn encode_counter(
        &self,
        enc: &mut DescriptorEncoder<'_>,
        name: &str,
        help: &str,
        value: impl Fn(&V) -> u64,
        filter: impl Fn(&K) -> bool,
    ) -> fmt::Result {
        let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (labels, v) in self.entries.iter().filter(|(l, _)| filter(l)) {
            ConstCounter::new(value(v)).encode(m.encode_family(labels)?)?;
        }
        for (labels, v) in self.overflow() {
            let n = value(v);
            if n > 0 {
                ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }

    /// Encodes one histogram family, the overflow series when not empty.
    pub(super) fn encode_histogram(
        &self,
        enc: &mut DescriptorEncoder<'_>,
        name: &str,
        help: &str,
        histogram: impl Fn(&V) -> &Histogram,
    ) -> fmt::Result {
        let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
        for (labels, v) in &self.entries {
            histogram(v).encode(m.encode_family(labels)?)?;
        }
        for (labels, v) in self.overflow() {
            let h = histogram(v);
            if h.count() > 0 {
                h.encode(m.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// The label set of an overflow series.
pub(super) struct Overflow {
    reporter: Reporter,
    names: &'static [&'static str],
}

impl EncodeLabelSet for Overflow {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> fmt::Result {
        ("reporter", self.reporter).encode(encoder.encode_label())?;
        for name in self.names {
            (*name, "overflow").encode(encoder.encode_label())?;
        }
        Ok(())
    }
}
