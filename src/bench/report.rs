//! The results of one run: merged histograms, the table printed on stdout and the JSON document.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::conn::error_name;
use super::load::{new_histogram, SessionStats};
use super::workload::OpKind;

/// Percentiles of the latency CDF written to JSON (for charts).
const CDF_PERCENTILES: &[f64] = &[
    0.0, 1.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 75.0, 80.0, 85.0, 90.0, 92.5, 95.0,
    97.0, 98.0, 99.0, 99.5, 99.7, 99.9, 99.95, 99.99, 100.0,
];

/// Latency in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// One row of the table: an operation kind, or the total.
#[derive(Debug, Clone, Serialize)]
pub struct OpSummary {
    pub op: String,
    pub count: u64,
    pub ops_per_sec: f64,
    pub errors: u64,
    pub latency_ms: Latency,
}

/// Replies with one error code for one operation (code 0: a malformed reply).
#[derive(Debug, Clone, Serialize)]
pub struct ErrorCount {
    pub op: OpKind,
    pub code: i32,
    pub name: String,
    pub count: u64,
}

/// CPU time used during the measured window by a set of processes.
#[derive(Debug, Clone, Serialize)]
pub struct CpuUse {
    pub pids: Vec<u32>,
    pub cpu_seconds: f64,
    /// CPU microseconds per completed operation.
    pub us_per_op: f64,
    /// CPU seconds per wall second (1.0 = one core busy).
    pub cores: f64,
    /// CPU seconds of each process, in `pids` order.
    pub per_pid_seconds: Vec<f64>,
}

/// How the run was set up.
#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    pub label: String,
    pub servers: Vec<String>,
    pub sessions: usize,
    pub outstanding: usize,
    /// Offered operations per second over all sessions, if paced.
    pub rate: Option<f64>,
    pub value_size: usize,
    pub mix: String,
    /// Share of operations that are global in Volery (creates and their deletes).
    pub global_share: f64,
    pub keys: u32,
    pub warmup_secs: f64,
    pub duration_secs: f64,
    pub seed: u64,
}

/// A whole run, as written by `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub config: RunConfig,
    /// The measured window as it really lasted.
    pub window_secs: f64,
    pub total: OpSummary,
    pub ops: Vec<OpSummary>,
    pub errors: Vec<ErrorCount>,
    pub sessions_failed: usize,
    pub failures: Vec<String>,
    pub server_cpu: Option<CpuUse>,
    pub client_cpu: Option<CpuUse>,
    /// Replies per second during the window, one value per progress tick.
    pub timeline_ops_per_sec: Vec<f64>,
    /// (percentile, latency ms) of all operations together.
    pub latency_cdf_ms: Vec<(f64, f64)>,
    pub interrupted: bool,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn latency(h: &Histogram<u64>) -> Latency {
    if h.is_empty() {
        return Latency {
            mean: 0.0,
            p50: 0.0,
            p90: 0.0,
            p99: 0.0,
            p999: 0.0,
            max: 0.0,
        };
    }
    Latency {
        mean: h.mean() / 1000.0,
        p50: ms(h.value_at_quantile(0.50)),
        p90: ms(h.value_at_quantile(0.90)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
    }
}

/// Merged measurements of every session.
#[derive(Debug)]
pub struct Merged {
    pub latency: Vec<Histogram<u64>>,
    pub total: Histogram<u64>,
    pub errors: BTreeMap<(OpKind, i32), u64>,
    pub failures: Vec<String>,
}

pub fn merge(stats: Vec<SessionStats>) -> Merged {
    let mut m = Merged {
        latency: (0..OpKind::COUNT).map(|_| new_histogram()).collect(),
        total: new_histogram(),
        errors: BTreeMap::new(),
        failures: Vec::new(),
    };
    for s in stats {
        for (acc, h) in m.latency.iter_mut().zip(&s.latency) {
            // Same bounds everywhere: adding cannot fail.
            let _ = acc.add(h);
            let _ = m.total.add(h);
        }
        for (k, n) in s.errors {
            *m.errors.entry(k).or_default() += n;
        }
        m.failures.extend(s.failure);
    }
    m
}

impl Merged {
    fn summary(&self, op: &str, h: &Histogram<u64>, errors: u64, window: f64) -> OpSummary {
        OpSummary {
            op: op.to_string(),
            count: h.len(),
            ops_per_sec: if window > 0.0 {
                h.len() as f64 / window
            } else {
                0.0
            },
            errors,
            latency_ms: latency(h),
        }
    }

    /// Per-kind rows (kinds that completed at least one request) and the total row.
    pub fn rows(&self, window: f64) -> (Vec<OpSummary>, OpSummary) {
        let rows = OpKind::ALL
            .iter()
            .filter(|k| !self.latency[k.index()].is_empty())
            .map(|&k| {
                let errors = self
                    .errors
                    .iter()
                    .filter(|((op, _), _)| *op == k)
                    .map(|(_, n)| n)
                    .sum();
                self.summary(k.name(), &self.latency[k.index()], errors, window)
            })
            .collect();
        let errors = self.errors.values().sum();
        (rows, self.summary("total", &self.total, errors, window))
    }

    pub fn error_counts(&self) -> Vec<ErrorCount> {
        self.errors
            .iter()
            .map(|(&(op, code), &count)| ErrorCount {
                op,
                code,
                name: if code == 0 {
                    "MalformedReply".into()
                } else {
                    error_name(code)
                },
                count,
            })
            .collect()
    }

    pub fn cdf(&self) -> Vec<(f64, f64)> {
        if self.total.is_empty() {
            return Vec::new();
        }
        CDF_PERCENTILES
            .iter()
            .map(|&p| (p, ms(self.total.value_at_percentile(p))))
            .collect()
    }
}

impl Report {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let c = &self.config;
        let mut t = String::new();
        let _ = writeln!(
            t,
            "volery bench{}: {} | {} sessions x {} outstanding{} | {} B values | mix {} ({:.0}% global) | {} keys",
            if c.label.is_empty() { String::new() } else { format!(" [{}]", c.label) },
            c.servers.join(","),
            c.sessions,
            c.outstanding,
            c.rate.map(|r| format!(" at {r:.0} ops/s offered")).unwrap_or_default(),
            c.value_size,
            c.mix,
            c.global_share * 100.0,
            c.keys
        );
        let _ = writeln!(
            t,
            "window {:.2} s after {:.1} s warm-up{}",
            self.window_secs,
            c.warmup_secs,
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            t,
            "{:<8} {:>10} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
            "op",
            "count",
            "ops/s",
            "mean ms",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "errors"
        );
        for r in self.ops.iter().chain(std::iter::once(&self.total)) {
            let l = &r.latency_ms;
            let _ = writeln!(
                t,
                "{:<8} {:>10} {:>11.1} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>7}",
                r.op, r.count, r.ops_per_sec, l.mean, l.p50, l.p90, l.p99, l.p999, l.max, r.errors
            );
        }
        for e in &self.errors {
            let _ = writeln!(t, "error {} {}({}): {}", e.op, e.name, e.code, e.count);
        }
        if self.sessions_failed > 0 {
            let _ = writeln!(t, "sessions failed: {}", self.sessions_failed);
            for f in self.failures.iter().take(5) {
                let _ = writeln!(t, "  {f}");
            }
        }
        for (who, cpu) in [("server", &self.server_cpu), ("client", &self.client_cpu)] {
            if let Some(cpu) = cpu {
                let _ = writeln!(
                    t,
                    "{who} CPU: {:.2} s ({:.2} cores) over pids {:?}: {:.1} us/op",
                    cpu.cpu_seconds, cpu.cores, cpu.pids, cpu.us_per_op
                );
                if cpu.pids.len() > 1 {
                    let each: Vec<String> = cpu
                        .pids
                        .iter()
                        .zip(&cpu.per_pid_seconds)
                        .map(|(p, s)| format!("{p}: {s:.2} s"))
                        .collect();
                    let _ = writeln!(t, "  per pid: {}", each.join(", "));
                }
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_rows_count_every_session() {
        let mut a = SessionStatsBuilder::default();
        a.record(OpKind::Set, &[1000, 2000, 3000]);
        a.error(OpKind::Set, -101);
        let mut b = SessionStatsBuilder::default();
        b.record(OpKind::Get, &[500]);
        b.failure = Some("closed".into());
        let m = merge(vec![a.build(), b.build()]);
        let (rows, total) = m.rows(2.0);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].op, "set");
        assert_eq!(rows[0].count, 3);
        assert_eq!(rows[0].errors, 1);
        assert_eq!(rows[1].op, "get");
        assert_eq!(total.count, 4);
        assert_eq!(total.ops_per_sec, 2.0);
        assert!((total.latency_ms.max - 3.0).abs() < 0.01);
        assert!((rows[0].latency_ms.p50 - 2.0).abs() < 0.01);
        assert_eq!(m.failures, ["closed"]);
        let errs = m.error_counts();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].name, "NoNode");
        let cdf = m.cdf();
        assert_eq!(cdf.first().map(|c| c.0), Some(0.0));
        assert!(cdf.windows(2).all(|w| w[0].1 <= w[1].1), "CDF is monotone");
    }

    #[derive(Default)]
    struct SessionStatsBuilder {
        samples: Vec<(OpKind, u64)>,
        errors: Vec<(OpKind, i32)>,
        failure: Option<String>,
    }

    impl SessionStatsBuilder {
        fn record(&mut self, k: OpKind, us: &[u64]) {
            self.samples.extend(us.iter().map(|&u| (k, u)));
        }
        fn error(&mut self, k: OpKind, code: i32) {
            self.errors.push((k, code));
        }
        fn build(self) -> SessionStats {
            let mut latency: Vec<_> = (0..OpKind::COUNT).map(|_| new_histogram()).collect();
            for (k, us) in self.samples {
                latency[k.index()].record(us).unwrap();
            }
            let mut errors = BTreeMap::new();
            for e in self.errors {
                *errors.entry(e).or_default() += 1;
            }
            SessionStats {
                latency,
                errors,
                failure: self.failure,
            }
        }
    }
}
