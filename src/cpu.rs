//! The CPU budget a server runs under, for sizing its runtime: the CPUs it may run on, lowered
//! by the CFS quota of its cgroup (v2 `cpu.max`, v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`,
//! the cgroup's own and its parents'), rounded up. A server in a container limited to half a CPU
//! then runs one worker thread, as the JVM sizes its pools there: two workers under such a quota
//! only hand work to each other and wake each other up.

use std::path::{Path, PathBuf};

/// Worker threads for the server's runtime: `configured` if set, else the CPU budget.
pub fn worker_threads(configured: Option<usize>) -> usize {
    if let Some(n) = configured {
        return n.max(1);
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let limit = read_to_string("/proc/self/cgroup")
        .and_then(|cgroups| cgroup_limit(&cgroups, &read_to_string("/proc/self/mountinfo")?));
    budget(cpus, limit)
}

/// `cpus`, lowered to the quota `limit` (in CPUs) rounded up; at least 1.
pub fn budget(cpus: usize, limit: Option<f64>) -> usize {
    let cpus = cpus.max(1);
    match limit {
        Some(l) if l > 0.0 => (l.ceil() as usize).clamp(1, cpus),
        _ => cpus,
    }
}

fn read_to_string(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The lowest CFS quota, in CPUs, on the way from this process's cgroup up to its hierarchy's
/// root, from `/proc/self/cgroup` and `/proc/self/mountinfo`; `None` when there is none.
fn cgroup_limit(cgroups: &str, mountinfo: &str) -> Option<f64> {
    let (mount, v2) = cpu_mount(mountinfo)?;
    let own = cgroups.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let wanted = if v2 {
            controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == "cpu")
        };
        wanted.then(|| path.to_string())
    })?;
    let (mount_point, mount_root) = mount;
    let relative = own.strip_prefix(&mount_root).unwrap_or(&own);
    let mut dir = mount_point.join(relative.trim_start_matches('/'));
    let mut lowest: Option<f64> = None;
    loop {
        let here = if v2 {
            read_to_string(dir.join("cpu.max")).and_then(|s| quota_v2(&s))
        } else {
            read_to_string(dir.join("cpu.cfs_quota_us"))
                .and_then(|q| quota_v1(&q, &read_to_string(dir.join("cpu.cfs_period_us"))?))
        };
        if let Some(q) = here {
            lowest = Some(lowest.map_or(q, |l| l.min(q)));
        }
        if dir == mount_point || !dir.pop() || !dir.starts_with(&mount_point) {
            return lowest;
        }
    }
}

/// The mount of the hierarchy holding the cpu controller: (mount point, root of the mount), and
/// whether it is cgroup v2. A v1 `cpu` mount wins over the unified one.
fn cpu_mount(mountinfo: &str) -> Option<((PathBuf, String), bool)> {
    let mut unified = None;
    for line in mountinfo.lines() {
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = before.split(' ').collect();
        let rest: Vec<&str> = after.split(' ').collect();
        let (Some(root), Some(point), Some(fstype)) = (fields.get(3), fields.get(4), rest.first())
        else {
            continue;
        };
        let mount = (PathBuf::from(unescape(point)), unescape(root));
        match *fstype {
            "cgroup"
                if rest
                    .get(2)
                    .is_some_and(|o| o.split(',').any(|o| o == "cpu")) =>
            {
                return Some((mount, false));
            }
            "cgroup2" if unified.is_none() => unified = Some(mount),
            _ => {}
        }
    }
    unified.map(|m| (m, true))
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// `cpu.max`: "QUOTA PERIOD" or "max PERIOD".
fn quota_v2(text: &str) -> Option<f64> {
    let mut it = text.split_whitespace();
    let (quota, period) = (it.next()?, it.next()?);
    ratio(quota.parse().ok()?, period.parse().ok()?)
}

/// `cpu.cfs_quota_us` (-1 for none) and `cpu.cfs_period_us`.
fn quota_v1(quota: &str, period: &str) -> Option<f64> {
    ratio(quota.trim().parse().ok()?, period.trim().parse().ok()?)
}

fn ratio(quota: i64, period: i64) -> Option<f64> {
    (quota > 0 && period > 0).then(|| quota as f64 / period as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quota_lowers_the_budget_rounded_up() {
        assert_eq!(budget(8, None), 8);
        assert_eq!(budget(8, Some(0.15)), 1);
        assert_eq!(budget(8, Some(2.5)), 3);
        assert_eq!(budget(2, Some(16.0)), 2);
        assert_eq!(budget(0, None), 1);
        assert_eq!(worker_threads(Some(3)), 3);
        assert_eq!(worker_threads(Some(0)), 1);
        assert!(worker_threads(None) >= 1);
    }

    #[test]
    fn quota_files_parse() {
        assert_eq!(quota_v2("150000 100000\n"), Some(1.5));
        assert_eq!(quota_v2("max 100000\n"), None);
        assert_eq!(quota_v2("garbage"), None);
        assert_eq!(quota_v1("1500\n", "10000\n"), Some(0.15));
        assert_eq!(quota_v1("-1\n", "100000\n"), None);
    }

    #[test]
    fn the_cpu_hierarchy_is_found_in_mountinfo() {
        let v1 = "30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755\n\
                  31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                  32 30 0:28 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n";
        assert_eq!(
            cpu_mount(v1),
            Some((
                (PathBuf::from("/sys/fs/cgroup/cpu"), "/".to_string()),
                false
            ))
        );
        let v2 = "35 24 0:30 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cpu_mount(v2),
            Some((
                (PathBuf::from("/sys/fs/cgroup"), "/docker/abc".to_string()),
                true
            ))
        );
        assert_eq!(cpu_mount("garbage\n"), None);
    }

    #[test]
    fn the_limit_is_read_from_the_process_cgroup_and_its_parents() {
        let dir = std::env::temp_dir().join(format!("volery-cpu-test-{}", std::process::id()));
        let leaf = dir.join("kubepods/pod1");
        std::fs::create_dir_all(&leaf).unwrap();
        std::fs::write(dir.join("kubepods/cpu.max"), "300000 100000\n").unwrap();
        std::fs::write(leaf.join("cpu.max"), "max 100000\n").unwrap();
        let mountinfo = format!("35 24 0:30 / {} rw - cgroup2 cgroup2 rw\n", dir.display());
        assert_eq!(cgroup_limit("0::/kubepods/pod1\n", &mountinfo), Some(3.0));
        std::fs::write(leaf.join("cpu.max"), "50000 100000\n").unwrap();
        assert_eq!(cgroup_limit("0::/kubepods/pod1\n", &mountinfo), Some(0.5));
        assert_eq!(cgroup_limit("0::/elsewhere\n", &mountinfo), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
