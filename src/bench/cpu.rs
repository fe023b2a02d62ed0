//! CPU time of processes from `/proc/<pid>/stat` (utime + stime, all threads), to report what the
//! servers spent per operation.

use std::time::Duration;

use super::BenchError;

/// CPU time (user + system) process `pid` has used so far, all its threads included.
pub fn process_cpu(pid: u32) -> Result<Duration, BenchError> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|source| BenchError::Proc {
        pid,
        reason: source.to_string(),
    })?;
    let ticks = parse_stat_ticks(&text).ok_or_else(|| BenchError::Proc {
        pid,
        reason: format!("unexpected format of {path}"),
    })?;
    Ok(ticks_to_duration(ticks, clock_ticks_per_sec()))
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line. The command name (field 2) is
/// in parentheses and may itself hold spaces and parentheses, so fields are counted after the last
/// `)`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    // After the name: field 3 (state) is the first; utime is field 14, stime field 15.
    let mut fields = after.split_ascii_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn ticks_to_duration(ticks: u64, per_sec: u64) -> Duration {
    Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / per_sec.max(1))
}

/// `sysconf(_SC_CLK_TCK)`, the unit of `/proc/<pid>/stat` times (100 on Linux in practice).
fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf reads a constant of the running system; it has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 {
        n as u64
    } else {
        100
    }
}

/// CPU time of each of several processes, in order.
pub fn each_cpu(pids: &[u32]) -> Result<Vec<Duration>, BenchError> {
    pids.iter().map(|&p| process_cpu(p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_name() {
        let line = "4242 (java (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 37 0 0 20 0 55 0 123 456 789";
        assert_eq!(parse_stat_ticks(line), Some(287));
        assert_eq!(parse_stat_ticks("garbage"), None);
        assert_eq!(ticks_to_duration(287, 100), Duration::from_millis(2870));
    }

    #[test]
    fn own_process_cpu_is_readable_and_grows() {
        let before = process_cpu(std::process::id()).unwrap();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(150) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        let after = process_cpu(std::process::id()).unwrap();
        assert!(
            after > before,
            "{before:?} -> {after:?} after spinning ({x})"
        );
        assert!(process_cpu(u32::MAX).is_err());
    }

    #[test]
    fn each_cpu_keeps_the_order_of_pids_and_fails_on_any_missing() {
        let me = std::process::id();
        let each = each_cpu(&[me, me]).unwrap();
        assert_eq!(each.len(), 2);
        assert!(each[0] <= each[1], "read in order: {each:?}");
        assert!(each_cpu(&[me, u32::MAX]).is_err());
        assert!(each_cpu(&[]).unwrap().is_empty());
    }
}
