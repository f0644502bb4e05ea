//! A latency histogram with bounded memory: log-linear buckets over microseconds, exact below
//! 128 us and within 1/64 (1.6 %) above, up to about 12 days. 2,304 counters, mergeable.

const LINEAR: u64 = 128;
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
const MAX_EXP: u32 = 40;
const BUCKETS: usize = LINEAR as usize + ((MAX_EXP - 7 + 1) as usize) * SUB as usize;

#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    sum_us: u128,
    max_us: u64,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("total", &self.total)
            .field("p50_us", &self.percentile(50.0))
            .field("p99_us", &self.percentile(99.0))
            .finish()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

fn index(us: u64) -> usize {
    if us < LINEAR {
        return us as usize;
    }
    let exp = (63 - us.leading_zeros()).min(MAX_EXP);
    let us = us.min((1u64 << (MAX_EXP + 1)) - 1);
    let sub = (us >> (exp - SUB_BITS)) & (SUB - 1);
    LINEAR as usize + ((exp - 7) as usize) * SUB as usize + sub as usize
}

/// The smallest value that falls in bucket `i`.
fn lower_bound(i: usize) -> u64 {
    if (i as u64) < LINEAR {
        return i as u64;
    }
    let j = i as u64 - LINEAR;
    let exp = (j / SUB) as u32 + 7;
    let sub = j % SUB;
    (1u64 << exp) + (sub << (exp - SUB_BITS))
}

impl Histogram {
    pub fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            sum_us: 0,
            max_us: 0,
        }
    }

    pub fn record_us(&mut self, us: u64) {
        self.counts[index(us)] += 1;
        self.total += 1;
        self.sum_us += us as u128;
        self.max_us = self.max_us.max(us);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max_us(&self) -> u64 {
        self.max_us
    }

    pub fn mean_us(&self) -> Option<f64> {
        (self.total > 0).then(|| self.sum_us as f64 / self.total as f64)
    }

    /// The value below which `p` percent of the samples fall (the lower bound of the bucket
    /// holding the sample of that rank), `None` when empty.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((p / 100.0) * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(lower_bound(i).min(self.max_us));
            }
        }
        Some(self.max_us)
    }

    pub fn merge(&mut self, other: &Histogram) {
        if other.total == 0 {
            return;
        }
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
        self.sum_us += other.sum_us;
        self.max_us = self.max_us.max(other.max_us);
    }

    pub fn clear(&mut self) {
        if self.total > 0 {
            self.counts.fill(0);
        }
        self.total = 0;
        self.sum_us = 0;
        self.max_us = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_bounded() {
        let mut last = 0;
        for us in (0..200_000u64).chain([1 << 30, 1 << 40, u64::MAX]) {
            let i = index(us);
            assert!(i < BUCKETS);
            assert!(i >= last || us > 200_000, "monotonic at {us}");
            last = i;
            assert!(lower_bound(i) <= us.min((1 << 41) - 1), "{us}");
            if (LINEAR..(1 << 41)).contains(&us) {
                // Relative error of the lower bound within 1/64.
                assert!((us - lower_bound(i)) as f64 <= us as f64 / 64.0, "{us}");
            }
        }
        for i in 0..BUCKETS {
            assert_eq!(index(lower_bound(i)), i);
        }
    }

    #[test]
    fn percentiles() {
        let mut h = Histogram::new();
        assert_eq!(h.percentile(50.0), None);
        for us in 1..=100 {
            h.record_us(us);
        }
        assert_eq!(h.percentile(50.0), Some(50));
        assert_eq!(h.percentile(99.0), Some(99));
        assert_eq!(h.percentile(100.0), Some(100));
        assert_eq!(h.percentile(0.0), Some(1));
        assert_eq!(h.count(), 100);
        assert_eq!(h.mean_us(), Some(50.5));

        // 990 samples at 1 ms and 10 at 50 ms: p50 is 1 ms, p99 1 ms, p99.5 about 50 ms.
        let mut h = Histogram::new();
        for _ in 0..990 {
            h.record_us(1_000);
        }
        for _ in 0..10 {
            h.record_us(50_000);
        }
        let p = |x| h.percentile(x).unwrap();
        assert!((984..=1_000).contains(&p(50.0)), "{}", p(50.0));
        assert!((984..=1_000).contains(&p(99.0)));
        assert!((49_200..=50_000).contains(&p(99.5)), "{}", p(99.5));
        assert_eq!(h.max_us(), 50_000);
    }

    #[test]
    fn merge_and_clear() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        for us in 0..50 {
            a.record_us(us);
            b.record_us(us + 50);
        }
        a.merge(&b);
        assert_eq!(a.count(), 100);
        assert_eq!(a.percentile(50.0), Some(49));
        assert_eq!(a.max_us(), 99);
        a.clear();
        assert_eq!(a.count(), 0);
        assert_eq!(a.percentile(50.0), None);
    }
}
