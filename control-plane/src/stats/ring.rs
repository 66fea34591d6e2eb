//! The windows of one series: at most [`WINDOWS`] of them, each the merge of every report
//! that arrived during it. A window older than the ring is dropped when a newer one
//! arrives, so a series costs at most `WINDOWS` windows whatever the traffic.

use std::collections::VecDeque;

use super::sparse::Sparse;

/// 90 windows of 10 s: the last 15 minutes.
pub const WINDOWS: u64 = 90;

/// What one series counted during one window.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Counts {
    pub requests: u64,
    pub successes: u64,
    pub latency: Sparse,
}

impl Counts {
    pub(crate) fn absorb(&mut self, other: &Counts) {
        self.requests = self.requests.saturating_add(other.requests);
        self.successes = self.successes.saturating_add(other.successes);
        self.latency = self.latency.merge(&other.latency);
    }
}

#[derive(Debug, Default)]
pub(crate) struct Ring {
    /// (window index, counts), oldest first, indexes increasing.
    windows: VecDeque<(u64, Counts)>,
}

impl Ring {
    /// Adds a report to window `index` (the current one, as reports arrive).
    pub(crate) fn add(&mut self, index: u64, counts: &Counts) {
        match self.windows.iter_mut().rev().find(|(i, _)| *i <= index) {
            Some((i, window)) if *i == index => window.absorb(counts),
            _ => {
                let at = self.windows.partition_point(|(i, _)| *i < index);
                self.windows.insert(at, (index, counts.clone()));
            }
        }
        self.expire(index);
    }

    /// Drops the windows that fell out of the ring by window `now`.
    pub(crate) fn expire(&mut self, now: u64) {
        while let Some((i, _)) = self.windows.front() {
            if i + WINDOWS > now {
                break;
            }
            self.windows.pop_front();
        }
    }

    /// The index of the oldest window held.
    pub(crate) fn oldest(&self) -> Option<u64> {
        self.windows.front().map(|(i, _)| *i)
    }

    /// Drops the oldest window if it is window `index`.
    pub(crate) fn drop_oldest_if(&mut self, index: u64) {
        if self.oldest() == Some(index) {
            self.windows.pop_front();
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// The windows with index in `from..=to`.
    pub(crate) fn between(&self, from: u64, to: u64) -> impl Iterator<Item = (u64, &Counts)> {
        self.windows
            .iter()
            .filter(move |(i, _)| (from..=to).contains(i))
            .map(|(i, c)| (*i, c))
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.windows.capacity() * std::mem::size_of::<(u64, Counts)>()
            + self
                .windows
                .iter()
                .map(|(_, c)| c.latency.heap_bytes())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(requests: u64) -> Counts {
        Counts {
            requests,
            successes: requests,
            latency: Sparse::default(),
        }
    }

    #[test]
    fn merges_per_window_and_keeps_the_last_ninety() {
        let mut ring = Ring::default();
        ring.add(5, &counts(1));
        ring.add(5, &counts(2));
        ring.add(3, &counts(4));
        ring.add(7, &counts(8));
        let got: Vec<(u64, u64)> = ring.between(0, 100).map(|(i, c)| (i, c.requests)).collect();
        assert_eq!(got, [(3, 4), (5, 3), (7, 8)]);
        assert_eq!(ring.between(4, 6).count(), 1);
        ring.add(3 + WINDOWS, &counts(1));
        let got: Vec<u64> = ring.between(0, 1000).map(|(i, _)| i).collect();
        assert_eq!(got, [5, 7, 93], "window 3 fell out");
        ring.expire(7 + WINDOWS + 1);
        assert_eq!(ring.between(0, 1000).count(), 1);
    }
}
