//! Lock-free measurements shared by the node's tasks and read by the operator's surface (four-letter
//! words, the Prometheus endpoint). Every update is a handful of relaxed atomic operations, so the
//! request path and the vote writer never take a lock for them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Sub-buckets per power of two: quantiles are exact to within 1/4 of their power of two.
const SUB: u32 = 4;
/// Values up to 2^40 µs (about 12 days) get their own bucket; larger ones share the last.
const BUCKETS: usize = (41 * SUB) as usize;

/// A latency histogram in microseconds with count, sum, min and max.
///
/// Invariant: `count` is the number of recorded values and equals the sum of `buckets` once no
/// `record` is running; `min` is `u64::MAX` exactly while nothing was recorded since the last reset.
#[derive(Debug)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    count: AtomicU64,
    sum_us: AtomicU64,
    min_us: AtomicU64,
    max_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
            min_us: AtomicU64::new(u64::MAX),
            max_us: AtomicU64::new(0),
        }
    }
}

/// A consistent-enough copy of a [`Histogram`] (each field read once, relaxed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramSnapshot {
    pub count: u64,
    pub sum_us: u64,
    /// 0 when `count` is 0.
    pub min_us: u64,
    pub max_us: u64,
    buckets: Vec<u64>,
}

fn bucket_of(us: u64) -> usize {
    if us < u64::from(SUB) {
        return us as usize;
    }
    let log = 63 - us.leading_zeros();
    let sub = (us >> (log + 1 - SUB.trailing_zeros() - 1)) as u32 & (SUB - 1);
    let i = ((log - SUB.trailing_zeros() + 1) * SUB + sub) as usize;
    i.min(BUCKETS - 1)
}

/// The largest value that falls in bucket `i`.
fn bucket_upper(i: usize) -> u64 {
    let i = i as u32;
    if i < SUB {
        return u64::from(i);
    }
    let shift = SUB.trailing_zeros();
    let log = i / SUB + shift - 1;
    let sub = u64::from(i % SUB);
    let step = 1u64 << (log - shift);
    (1u64 << log) + (sub + 1) * step - 1
}

impl Histogram {
    pub fn record(&self, d: Duration) {
        self.record_us(d.as_micros().min(u128::from(u64::MAX)) as u64);
    }

    pub fn record_us(&self, us: u64) {
        self.buckets[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.min_us.fetch_min(us, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    /// Forgets everything recorded (ZooKeeper's `srst`); records racing with it may survive.
    pub fn reset(&self) {
        for b in &self.buckets {
            b.store(0, Ordering::Relaxed);
        }
        self.count.store(0, Ordering::Relaxed);
        self.sum_us.store(0, Ordering::Relaxed);
        self.min_us.store(u64::MAX, Ordering::Relaxed);
        self.max_us.store(0, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let count = self.count.load(Ordering::Relaxed);
        let min = self.min_us.load(Ordering::Relaxed);
        HistogramSnapshot {
            count,
            sum_us: self.sum_us.load(Ordering::Relaxed),
            min_us: if min == u64::MAX { 0 } else { min },
            max_us: self.max_us.load(Ordering::Relaxed),
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

impl HistogramSnapshot {
    /// The mean in microseconds; 0 when empty.
    pub fn avg_us(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_us as f64 / self.count as f64
        }
    }

    /// An upper estimate of quantile `q` (0..=1) in microseconds, never above the maximum seen.
    pub fn quantile_us(&self, q: f64) -> u64 {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bucket_upper(i).min(self.max_us).max(self.min_us);
            }
        }
        self.max_us
    }
}

/// What the node measures about itself.
#[derive(Debug, Default)]
pub struct NodeMetrics {
    /// Duration of each synced vote write (ZooKeeper's `fsynctime`).
    pub fsync: Histogram,
    /// Commands accepted by each synced vote write (ZooKeeper's `sync_processor_batch_size`).
    pub fsync_batch: Histogram,
    /// Decided instances delivered to the replica from this partition's group.
    pub local: Deliveries,
    /// Decided instances delivered to the replica from the global group (`g_all`).
    pub global: Deliveries,
    /// Signals this replica sent, one per destination partition (paper section 4).
    pub signals_sent: AtomicU64,
    /// Signal frames sent: one per destination partition per delivered instance that had signals.
    pub signal_frames_sent: AtomicU64,
    /// Signals received from other partitions' replicas.
    pub signals_received: AtomicU64,
}

impl NodeMetrics {
    /// Commands delivered to the replica for execution, from both kinds of group.
    pub fn commands_executed(&self) -> u64 {
        self.local.commands.load(Ordering::Relaxed) + self.global.commands.load(Ordering::Relaxed)
    }

    /// The S-SMR counters by their `mntr` / Prometheus names (with `_total` added there), so that an
    /// operator can see batching (commands per instance) and signal traffic under their load.
    pub fn counters(&self) -> [(&'static str, &'static str, u64); 9] {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (l, g) = (&self.local, &self.global);
        [
            (
                "local_instances_delivered",
                "Instances of the partition's group delivered",
                n(&l.instances),
            ),
            (
                "local_skips_delivered",
                "Skips (instances without commands) of the partition's group delivered",
                n(&l.skips),
            ),
            (
                "local_commands_delivered",
                "Commands of the partition's group delivered",
                n(&l.commands),
            ),
            (
                "global_instances_delivered",
                "Instances of the global group delivered",
                n(&g.instances),
            ),
            (
                "global_skips_delivered",
                "Skips of the global group delivered",
                n(&g.skips),
            ),
            (
                "global_commands_delivered",
                "Commands of the global group delivered",
                n(&g.commands),
            ),
            (
                "signals_sent",
                "Signals sent to other partitions, one per destination partition",
                n(&self.signals_sent),
            ),
            (
                "signal_frames_sent",
                "Frames of signals sent, one per destination partition and instance",
                n(&self.signal_frames_sent),
            ),
            (
                "signals_received",
                "Signals received from other partitions",
                n(&self.signals_received),
            ),
        ]
    }
}

/// What one kind of group delivered: instances, skips (instances without commands) and commands.
/// Commands per non-skip instance is the group's batching under the load it sees.
#[derive(Debug, Default)]
pub struct Deliveries {
    pub instances: AtomicU64,
    pub skips: AtomicU64,
    pub commands: AtomicU64,
}

impl Deliveries {
    pub fn record(&self, commands: usize) {
        self.instances.fetch_add(1, Ordering::Relaxed);
        if commands == 0 {
            self.skips.fetch_add(1, Ordering::Relaxed);
        }
        self.commands.fetch_add(commands as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_cover_their_values() {
        let mut last = 0;
        for us in [0u64, 1, 3, 4, 5, 7, 8, 9, 15, 16, 100, 1000, 12345, 1 << 30] {
            let b = bucket_of(us);
            assert!(b >= last, "{us}");
            last = b;
            assert!(bucket_upper(b) >= us, "{us} in bucket {b}");
            if b > 0 {
                assert!(bucket_upper(b - 1) < us, "{us} above bucket {}", b - 1);
            }
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_min_max_avg() {
        let h = Histogram::default();
        assert_eq!(h.snapshot().quantile_us(0.5), 0);
        assert_eq!(h.snapshot().min_us, 0);
        for us in 1..=100 {
            h.record_us(us);
        }
        let s = h.snapshot();
        assert_eq!((s.count, s.min_us, s.max_us, s.sum_us), (100, 1, 100, 5050));
        assert!((s.avg_us() - 50.5).abs() < 1e-9);
        let p50 = s.quantile_us(0.5);
        assert!((50..=63).contains(&p50), "{p50}");
        assert_eq!(s.quantile_us(1.0), 100);
        h.reset();
        assert_eq!(h.snapshot().count, 0);
    }
}
