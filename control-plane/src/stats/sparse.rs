//! A latency histogram as the control plane stores it: only the buckets that counted
//! something, as (value, count) pairs sorted by value, each pair two LEB128 varints (the
//! value as a delta from the previous one). A window of a typical edge holds a few
//! hundred buckets in about 2 bytes each, where a full HDR histogram (1 µs to 100 s at 3
//! significant digits) is an array of 18,000 counters; and merging two of these is a
//! merge of two sorted lists, with no histogram allocated.
//!
//! The values are the highest equivalent value of each bucket, so recording them back
//! into a histogram of the same precision puts every count in its original bucket: the
//! percentiles of a merge are exactly those of the union.

use hdrhistogram::{Counter, Histogram};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sparse(Box<[u8]>);

impl Sparse {
    /// The recorded buckets of `histogram`.
    pub(crate) fn of<T: Counter>(histogram: &Histogram<T>) -> Sparse {
        Sparse::from_sorted(
            histogram
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value().as_u64())),
        )
    }

    /// Pairs sorted by value, with no value twice.
    fn from_sorted(pairs: impl Iterator<Item = (u64, u64)>) -> Sparse {
        let mut bytes = Vec::new();
        let mut previous = 0;
        for (value, count) in pairs.filter(|(_, count)| *count > 0) {
            put_varint(&mut bytes, value - previous);
            put_varint(&mut bytes, count);
            previous = value;
        }
        Sparse(bytes.into_boxed_slice())
    }

    pub(crate) fn iter(&self) -> Pairs<'_> {
        Pairs {
            bytes: &self.0,
            value: 0,
        }
    }

    /// The union of the two: counts of the same value added.
    pub(crate) fn merge(&self, other: &Sparse) -> Sparse {
        // The common case of a first window, a first edge: a copy, no re-encoding.
        if self.0.is_empty() {
            return other.clone();
        }
        if other.0.is_empty() {
            return self.clone();
        }
        let (mut a, mut b) = (self.iter().peekable(), other.iter().peekable());
        let merged = std::iter::from_fn(move || match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x.0 == y.0 => {
                let (x, y) = (a.next()?, b.next()?);
                Some((x.0, x.1.saturating_add(y.1)))
            }
            (Some(x), Some(y)) if x.0 < y.0 => a.next(),
            (Some(_), Some(_)) => b.next(),
            (Some(_), None) => a.next(),
            (None, _) => b.next(),
        });
        Sparse::from_sorted(merged)
    }

    /// Adds every count to `into` (which should have the precision the values came from).
    #[cfg(test)]
    pub(crate) fn add_to(&self, into: &mut Histogram<u64>) {
        for (value, count) in self.iter() {
            into.saturating_record_n(value, count);
        }
    }

    /// Bytes held, for the memory accounting.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.0.len()
    }
}

pub(crate) struct Pairs<'a> {
    bytes: &'a [u8],
    value: u64,
}

impl Iterator for Pairs<'_> {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        let delta = take_varint(&mut self.bytes)?;
        let count = take_varint(&mut self.bytes)?;
        self.value += delta;
        Some((self.value, count))
    }
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn take_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        n |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(n);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(values: &[u64]) -> Histogram<u64> {
        let mut h = Histogram::new_with_bounds(1, 100_000_000, 3).unwrap();
        for v in values {
            h.record(*v).unwrap();
        }
        h
    }

    #[test]
    fn round_trips_and_merges_exactly() {
        let a = histogram(&[1, 5, 5, 1_000, 123_456, 99_000_000]);
        let b = histogram(&[5, 700, 123_456, 123_457, 4_000_000]);
        let merged = Sparse::of(&a).merge(&Sparse::of(&b));
        let mut rebuilt = Histogram::new_with_bounds(1, 100_000_000, 3).unwrap();
        merged.add_to(&mut rebuilt);
        let mut union = a.clone();
        union.add(&b).unwrap();
        assert_eq!(rebuilt.len(), union.len());
        for q in [0.0, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(
                rebuilt.value_at_quantile(q),
                union.value_at_quantile(q),
                "q {q}"
            );
        }
        assert_eq!(rebuilt.max(), union.max());
        assert_eq!(Sparse::of(&a).iter().map(|(_, c)| c).sum::<u64>(), 6);
        assert_eq!(Sparse::default().merge(&Sparse::of(&a)), Sparse::of(&a));
    }

    #[test]
    fn is_small() {
        // 1,000 samples over 1-100 ms: a few hundred buckets, about 2 bytes each.
        let values: Vec<u64> = (0..1_000).map(|i| 1_000 + i * 97).collect();
        let sparse = Sparse::of(&histogram(&values));
        assert!(sparse.heap_bytes() < 3 * 1_000, "{}", sparse.heap_bytes());
    }
}
