//! ZooKeeper's four-letter words: a connection whose first four bytes spell a known command gets
//! that command's text and is closed, exactly as ZooKeeper 3.8's `NIOServerCnxn.checkFourLetterWord`
//! answers (formats from `org.apache.zookeeper.server.command`). Only whitelisted words run
//! (`4lw.commands.whitelist`, default `srvr`); any other known word gets ZooKeeper's refusal line.
//!
//! Every value comes from atomics ([`ServerStats`], [`ConnStats`]) or from one short
//! [`Node::inspect`](crate::node::Node::inspect) on the executor; nothing here touches the request path.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::stats::{wall_ms, ConnStats};
use super::Context;

/// Every word ZooKeeper 3.8 knows (`FourLetterCommands.cmd2String`), "telnet close" aside.
pub const KNOWN: &[&str] = &[
    "conf", "cons", "crst", "dirs", "dump", "envi", "gtmk", "ruok", "stmk", "srst", "srvr", "stat",
    "wchc", "wchp", "wchs", "mntr", "isro", "hash",
];

/// The bytes telnet sends when it closes; ZooKeeper knows them as a command and answers nothing.
const TELNET_CLOSE: [u8; 4] = [0xff, 0xf4, 0xff, 0xfd];

/// The version string ZooKeeper tools parse (`zk_version`, `Zookeeper version:`): the ZooKeeper
/// release whose behaviour Volery follows, then Volery's own version.
pub fn version() -> String {
    format!(
        "3.8.0-volery-{}, built on unknown",
        env!("CARGO_PKG_VERSION")
    )
}

/// Which words run (`FourLetterCommands.isEnabled`).
///
/// Invariant: `srvr` is always enabled (zkServer.sh depends on it), as in ZooKeeper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Whitelist {
    words: BTreeSet<String>,
}

impl Default for Whitelist {
    fn default() -> Whitelist {
        Whitelist::parse("")
    }
}

impl Whitelist {
    /// A comma-separated list; `*` enables every known word; blanks are ignored.
    pub fn parse(list: &str) -> Whitelist {
        let mut words = BTreeSet::new();
        for w in list.split(',').map(str::trim) {
            if w == "*" {
                words.extend(KNOWN.iter().map(|k| k.to_string()));
                break;
            }
            if !w.is_empty() {
                words.insert(w.to_string());
            }
        }
        words.insert("srvr".to_string());
        Whitelist { words }
    }

    pub fn allows(&self, word: &str) -> bool {
        self.words.contains(word)
    }

    /// The list as configuration text, `*` when every known word is enabled.
    pub fn to_setting(&self) -> String {
        if KNOWN.iter().all(|k| self.words.contains(*k)) {
            "*".to_string()
        } else {
            self.words.iter().cloned().collect::<Vec<_>>().join(",")
        }
    }
}

/// What the first four bytes of a connection are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Word(&'static str),
    TelnetClose,
    /// A length prefix: a ZooKeeper client.
    Frame,
}

pub fn classify(first: &[u8; 4]) -> Prefix {
    if *first == TELNET_CLOSE {
        return Prefix::TelnetClose;
    }
    KNOWN
        .iter()
        .find(|w| w.as_bytes() == first)
        .map_or(Prefix::Frame, |w| Prefix::Word(w))
}

/// Static facts `conf`, `dirs` and `envi` report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    pub client_port: u16,
    pub data_dir: PathBuf,
    pub data_log_dir: PathBuf,
    pub tick_time_ms: u32,
    pub max_client_cnxns: u32,
    pub min_session_timeout_ms: u32,
    pub max_session_timeout_ms: u32,
    pub server_id: u64,
}

/// The answer to `word` (already known to be whitelisted). `stmk_arg` is the 8-byte mask that
/// follows `stmk`.
pub async fn answer(ctx: &Context, word: &str, stmk_arg: Option<i64>) -> String {
    match word {
        "ruok" => "imok".to_string(),
        "isro" => "rw".to_string(),
        "hash" => String::new(),
        "gtmk" => ctx.stats.trace_mask.load(Ordering::Relaxed).to_string(),
        "stmk" => {
            if let Some(mask) = stmk_arg {
                ctx.stats.trace_mask.store(mask, Ordering::Relaxed);
            }
            ctx.stats.trace_mask.load(Ordering::Relaxed).to_string()
        }
        "srvr" => server_summary(ctx, false).await,
        "stat" => server_summary(ctx, true).await,
        "mntr" => mntr(ctx).await,
        "conf" => conf(&ctx.limits.info).await,
        "dirs" => {
            let info = ctx.limits.info.clone();
            let (d, l) = dir_sizes(&info).await;
            format!("datadir_size: {d}\nlogdir_size: {l}\n")
        }
        "cons" => {
            let mut out = String::new();
            for c in ctx.conns.registry.list() {
                connection_info(&mut out, &c, false);
                out.push('\n');
            }
            out.push('\n');
            out
        }
        "crst" => {
            for c in ctx.conns.registry.list() {
                c.reset();
            }
            "Connection stats reset.\n".to_string()
        }
        "srst" => {
            ctx.stats.reset();
            "Server stats reset.\n".to_string()
        }
        "envi" => envi(),
        "wchs" | "wchc" | "wchp" => watches(ctx, word).await,
        "dump" => dump(ctx).await,
        _ => String::new(),
    }
}

/// Java's `Double.toString` for the values ZooKeeper prints (rounded to 4 decimals first, as
/// `AvgMinMaxCounter.getAvg` does).
pub fn java_double(v: f64) -> String {
    let v = (v * 10_000.0).round() / 10_000.0;
    if v == 0.0 {
        return "0.0".to_string();
    }
    if v.abs() < 1e-3 {
        // Java switches to computerized scientific notation below 10^-3.
        let exp = v.abs().log10().floor() as i32;
        let mantissa = v / 10f64.powi(exp);
        let m = format!("{mantissa}");
        let m = if m.contains('.') { m } else { format!("{m}.0") };
        return format!("{m}E{exp}");
    }
    let s = format!("{v}");
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

/// ZooKeeper's latency figures in milliseconds: integer min and max, fractional average.
fn latency_ms(ctx: &Context) -> (u64, String, u64) {
    let s = ctx.stats.latency.snapshot();
    (
        s.min_us / 1000,
        java_double(s.avg_us() / 1000.0),
        s.max_us / 1000,
    )
}

struct TreeFacts {
    nodes: usize,
    watches: usize,
    ephemerals: usize,
    data_size: u64,
}

async fn tree_facts(ctx: &Context) -> TreeFacts {
    ctx.node
        .inspect(|zk| TreeFacts {
            nodes: zk.zk_node_count(),
            watches: zk.watch_count(),
            ephemerals: zk.ephemerals_count(),
            data_size: zk.approximate_data_size(),
        })
        .await
        .unwrap_or(TreeFacts {
            nodes: 0,
            watches: 0,
            ephemerals: 0,
            data_size: 0,
        })
}

/// `srvr` and `stat` (`StatCommand`): `stat` adds the client list.
async fn server_summary(ctx: &Context, with_clients: bool) -> String {
    let mut out = format!("Zookeeper version: {}\n", version());
    if with_clients {
        out.push_str("Clients:\n");
        for c in ctx.conns.registry.list() {
            connection_info(&mut out, &c, true);
            out.push('\n');
        }
        out.push('\n');
    }
    let (min, avg, max) = latency_ms(ctx);
    let facts = tree_facts(ctx).await;
    let _ = write!(
        out,
        "Latency min/avg/max: {min}/{avg}/{max}\nReceived: {}\nSent: {}\nConnections: {}\nOutstanding: {}\nZxid: 0x{:x}\nMode: {}\nNode count: {}\n",
        ctx.stats.packets_received.load(Ordering::Relaxed),
        ctx.stats.packets_sent.load(Ordering::Relaxed),
        ctx.conns.registry.len(),
        ctx.stats.outstanding.load(Ordering::Relaxed).max(0),
        ctx.node.last_zxid(),
        ctx.node.mode(),
        facts.nodes,
    );
    out
}

/// Java's `InetSocketAddress.toString` for a resolved literal address: `/ip:port`, IPv6 in full.
fn java_addr(addr: &SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("/{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => {
            let segs: Vec<String> = a.ip().segments().iter().map(|s| format!("{s:x}")).collect();
            format!("/{}:{}", segs.join(":"), a.port())
        }
    }
}

/// `ServerCnxn.dumpConnectionInfo`.
pub fn connection_info(out: &mut String, c: &ConnStats, brief: bool) {
    let session = c.session.load(Ordering::Relaxed);
    let _ = write!(
        out,
        " {}[{}](queued={},recved={},sent={}",
        java_addr(&c.addr),
        if session != 0 { "1" } else { "0" },
        c.outstanding.load(Ordering::Relaxed).max(0),
        c.packets_received.load(Ordering::Relaxed),
        c.packets_sent.load(Ordering::Relaxed),
    );
    if !brief && session != 0 {
        let lat = c.latency.snapshot();
        let _ = write!(
            out,
            ",sid=0x{session:x},lop={},est={},to={}",
            c.last_op_name(),
            c.established_ms,
            c.timeout_ms.load(Ordering::Relaxed)
        );
        let cxid = c.last_cxid.load(Ordering::Relaxed);
        if cxid >= 0 {
            let _ = write!(out, ",lcxid=0x{cxid:x}");
        }
        let _ = write!(
            out,
            ",lzxid=0x{:x},lresp={},llat={},minlat={},avglat={},maxlat={}",
            c.last_zxid.load(Ordering::Relaxed),
            c.last_response_ms.load(Ordering::Relaxed),
            c.last_latency_ms.load(Ordering::Relaxed),
            lat.min_us / 1000,
            lat.sum_us.checked_div(lat.count).unwrap_or(0) / 1000,
            lat.max_us / 1000,
        );
    }
    out.push(')');
}

fn dir_size(p: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(p) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

async fn dir_sizes(info: &ServerInfo) -> (u64, u64) {
    let (d, l) = (info.data_dir.clone(), info.data_log_dir.clone());
    tokio::task::spawn_blocking(move || {
        let ds = dir_size(&d);
        let ls = if l == d { ds } else { dir_size(&l) };
        (ds, ls)
    })
    .await
    .unwrap_or((0, 0))
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// `ZooKeeperServer.dumpConf`.
async fn conf(info: &ServerInfo) -> String {
    let (d, l) = dir_sizes(info).await;
    format!(
        "clientPort={}\nsecureClientPort=-1\ndataDir={}\ndataDirSize={d}\ndataLogDir={}\ndataLogSize={l}\ntickTime={}\nmaxClientCnxns={}\nminSessionTimeout={}\nmaxSessionTimeout={}\nclientPortListenBacklog=-1\nserverId={}\n",
        info.client_port,
        absolute(&info.data_dir).display(),
        absolute(&info.data_log_dir).display(),
        info.tick_time_ms,
        info.max_client_cnxns,
        info.min_session_timeout_ms,
        info.max_session_timeout_ms,
        info.server_id,
    )
}

/// `EnvCommand`, with the entries that describe a Rust process (the `java.*` ones do not exist).
fn envi() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "<NA>".to_string());
    let os_version = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "<NA>".to_string());
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        a => a,
    };
    let os = match std::env::consts::OS {
        "linux" => "Linux",
        "macos" => "Mac OS X",
        o => o,
    };
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| "<NA>".to_string());
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| user_name_of_uid().unwrap_or_else(|| "<NA>".to_string()));
    let dir = std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_else(|_| "<NA>".to_string());
    let mut out = String::from("Environment:\n");
    for (k, v) in [
        ("zookeeper.version", version()),
        ("host.name", host),
        ("os.name", os.to_string()),
        ("os.arch", arch.to_string()),
        ("os.version", os_version),
        ("user.name", user),
        ("user.home", var("HOME")),
        ("user.dir", dir),
    ] {
        let _ = writeln!(out, "{k}={v}");
    }
    out
}

/// This process's user name from /etc/passwd.
fn user_name_of_uid() -> Option<String> {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() }.to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.get(2) == Some(&uid.as_str())).then(|| f[0].to_string())
    })
}

/// `wchs`, `wchc`, `wchp`: ZooKeeper lists the data (and exists) watches only.
async fn watches(ctx: &Context, word: &str) -> String {
    let word = word.to_string();
    ctx.node
        .inspect(move |zk| {
            let mut out = String::new();
            match word.as_str() {
                "wchs" => {
                    let by_s = zk.data_watches_by_session();
                    let total: usize = by_s.values().map(BTreeSet::len).sum();
                    let _ = write!(
                        out,
                        "{} connections watching {} paths\nTotal watches:{total}",
                        by_s.len(),
                        zk.data_watches_by_path().len()
                    );
                }
                "wchp" => {
                    for (path, sessions) in zk.data_watches_by_path() {
                        let _ = writeln!(out, "{path}");
                        for s in sessions {
                            let _ = writeln!(out, "\t0x{s:x}");
                        }
                    }
                }
                _ => {
                    for (s, paths) in zk.data_watches_by_session() {
                        let _ = writeln!(out, "0x{s:x}");
                        for p in paths {
                            let _ = writeln!(out, "\t{p}");
                        }
                    }
                }
            }
            out.push('\n');
            out
        })
        .await
        .unwrap_or_default()
}

/// Java's `Date.toString` in UTC: `Wed Nov 25 18:37:35 UTC 2026`.
pub fn java_date(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} UTC {}",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        year
    )
}

/// `ExpiryQueue.dump`: entries bucketed by deadline rounded up to the next tick, as ZooKeeper's
/// expiry queues round them.
fn expiry_sets(out: &mut String, tick_ms: i64, entries: &[(i64, String)]) {
    let tick = tick_ms.max(1);
    let mut sets: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
    for (deadline, what) in entries {
        sets.entry((deadline / tick + 1) * tick)
            .or_default()
            .push(what);
    }
    let _ = writeln!(out, "Sets ({})/({}):", sets.len(), entries.len());
    for (at, items) in sets {
        let _ = writeln!(out, "{} expire at {}:", items.len(), java_date(at));
        for i in items {
            let _ = writeln!(out, "\t{i}");
        }
    }
}

/// `DumpCommand`: sessions by expiry, ephemerals by session, connections by expiry.
async fn dump(ctx: &Context) -> String {
    let tick = i64::from(ctx.limits.info.tick_time_ms);
    let now = Instant::now();
    let now_ms = wall_ms();
    let to_wall = |deadline: Instant| {
        now_ms + deadline.saturating_duration_since(now).as_millis() as i64
            - now.saturating_duration_since(deadline).as_millis() as i64
    };
    let sessions = ctx.node.sessions().list();
    let deadlines: BTreeMap<i64, i64> = sessions
        .iter()
        .map(|(id, _, d)| (*id, to_wall(*d)))
        .collect();
    let mut out = String::from("SessionTracker dump:\nSession ");
    let entries: Vec<(i64, String)> = sessions
        .iter()
        .map(|(id, _, d)| (to_wall(*d), format!("0x{id:x}")))
        .collect();
    expiry_sets(&mut out, tick, &entries);
    out.push_str("ephemeral nodes dump:\n");
    let ephemerals = ctx
        .node
        .inspect(|zk| zk.ephemerals())
        .await
        .unwrap_or_default();
    let _ = writeln!(out, "Sessions with Ephemerals ({}):", ephemerals.len());
    for (s, paths) in ephemerals {
        let _ = writeln!(out, "0x{s:x}:");
        for p in paths {
            let _ = writeln!(out, "\t{p}");
        }
    }
    out.push_str("Connections dump:\nConnections ");
    let entries: Vec<(i64, String)> = ctx
        .conns
        .registry
        .list()
        .iter()
        .map(|c| {
            let session = c.session.load(Ordering::Relaxed);
            let deadline = deadlines.get(&session).copied().unwrap_or(now_ms);
            (
                deadline,
                format!("ip: {} sessionId: 0x{session:x}", java_addr(&c.addr)),
            )
        })
        .collect();
    expiry_sets(&mut out, tick, &entries);
    out
}

/// `mntr` (`MonitorCommand`): ZooKeeper's keys, tab-separated, the gauges in the order ZooKeeper
/// 3.8 prints them, then the summaries Volery measures.
async fn mntr(ctx: &Context) -> String {
    let facts = tree_facts(ctx).await;
    let s = &ctx.stats;
    let (min, avg, max) = latency_ms(ctx);
    let fds = open_fds();
    let max_fds = max_fds();
    let sessions = ctx.node.sessions().len();
    let mut out = String::new();
    let mut kv = |k: &str, v: String| {
        let _ = writeln!(out, "zk_{k}\t{v}");
    };
    kv("version", version());
    kv("server_state", ctx.node.mode().into());
    if let Some(followers) = ctx.node.followers() {
        // As ZooKeeper's leader reports them; a follower heard from is in sync through catch-up.
        kv("followers", followers.to_string());
        kv("synced_followers", followers.to_string());
        kv("pending_syncs", "0".into());
    }
    if ctx.node.partitioned() {
        // Volery's own: which partition this server replicates (S-SMR).
        let layout = ctx.node.layout();
        kv("partition", layout.partition().to_string());
        kv("partitions", layout.partitions.to_string());
    }
    kv("ephemerals_count", facts.ephemerals.to_string());
    kv(
        "num_alive_connections",
        ctx.conns.registry.len().to_string(),
    );
    kv("avg_latency", avg);
    kv(
        "outstanding_requests",
        s.outstanding.load(Ordering::Relaxed).max(0).to_string(),
    );
    kv("znode_count", facts.nodes.to_string());
    kv("global_sessions", sessions.to_string());
    kv(
        "last_client_response_size",
        s.last_response_size.load(Ordering::Relaxed).to_string(),
    );
    kv(
        "packets_sent",
        s.packets_sent.load(Ordering::Relaxed).to_string(),
    );
    kv(
        "packets_received",
        s.packets_received.load(Ordering::Relaxed).to_string(),
    );
    kv(
        "max_client_response_size",
        s.max_response_size.load(Ordering::Relaxed).to_string(),
    );
    kv("connection_drop_probability", "0.0".into());
    kv("watch_count", facts.watches.to_string());
    kv(
        "auth_failed_count",
        s.auth_failed.load(Ordering::Relaxed).to_string(),
    );
    kv("min_latency", min.to_string());
    kv("max_file_descriptor_count", max_fds.to_string());
    kv("approximate_data_size", facts.data_size.to_string());
    kv("open_file_descriptor_count", fds.to_string());
    kv("local_sessions", "0".into());
    kv("uptime", s.uptime().as_millis().to_string());
    kv("max_latency", max.to_string());
    kv(
        "min_client_response_size",
        s.min_response_size.load(Ordering::Relaxed).to_string(),
    );
    kv(
        "connection_rejected",
        s.connections_rejected.load(Ordering::Relaxed).to_string(),
    );
    kv(
        "bytes_received_count",
        s.bytes_received.load(Ordering::Relaxed).to_string(),
    );
    let node = ctx.node.metrics();
    for (name, _, value) in node.counters() {
        kv(name, value.to_string());
    }
    for (name, h, percentiles) in [
        ("fsynctime", &node.fsync, false),
        ("sync_processor_batch_size", &node.fsync_batch, false),
        ("readlatency", &s.read_latency, true),
        ("updatelatency", &s.update_latency, true),
    ] {
        // Batch sizes are counts, recorded as "microseconds": no unit conversion for them.
        let div = if name == "sync_processor_batch_size" {
            1
        } else {
            1000
        };
        let snap = h.snapshot();
        kv(
            &format!("avg_{name}"),
            java_double(snap.avg_us() / div as f64),
        );
        kv(&format!("min_{name}"), (snap.min_us / div).to_string());
        kv(&format!("max_{name}"), (snap.max_us / div).to_string());
        kv(&format!("cnt_{name}"), snap.count.to_string());
        kv(&format!("sum_{name}"), (snap.sum_us / div).to_string());
        if percentiles {
            for (label, q) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("p999", 0.999)] {
                kv(
                    &format!("{label}_{name}"),
                    (snap.quantile_us(q) / div).to_string(),
                );
            }
        }
    }
    out
}

/// Open file descriptors of this process (`UnixOperatingSystemMXBean.getOpenFileDescriptorCount`).
pub fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// The soft limit on file descriptors (`getMaxFileDescriptorCount`).
pub fn max_fds() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own and reads nothing else.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if rc == 0 {
        #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every target
        let cur = lim.rlim_cur as u64;
        cur
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitelist_as_zookeeper_reads_it() {
        let default = Whitelist::default();
        assert!(default.allows("srvr"));
        assert!(!default.allows("ruok"));
        let some = Whitelist::parse(" ruok , mntr,,");
        assert!(some.allows("ruok") && some.allows("mntr") && some.allows("srvr"));
        assert!(!some.allows("dump"));
        let all = Whitelist::parse("stat, *");
        assert!(KNOWN.iter().all(|w| all.allows(w)));
        assert_eq!(all.to_setting(), "*");
    }

    #[test]
    fn prefixes() {
        assert_eq!(classify(b"ruok"), Prefix::Word("ruok"));
        assert_eq!(classify(b"mntr"), Prefix::Word("mntr"));
        assert_eq!(classify(&[0, 0, 0, 45]), Prefix::Frame);
        assert_eq!(classify(&TELNET_CLOSE), Prefix::TelnetClose);
    }

    #[test]
    fn doubles_print_as_java_does() {
        assert_eq!(java_double(0.0), "0.0");
        assert_eq!(java_double(2.571428), "2.5714");
        assert_eq!(java_double(3.0), "3.0");
        assert_eq!(java_double(0.0001), "1.0E-4");
        assert_eq!(java_double(0.01), "0.01");
    }

    #[test]
    fn dates_print_as_java_does_in_utc() {
        assert_eq!(java_date(0), "Thu Jan 01 00:00:00 UTC 1970");
        assert_eq!(java_date(1_795_631_855_000), "Wed Nov 25 18:37:35 UTC 2026");
        assert_eq!(java_date(951_782_400_000), "Tue Feb 29 00:00:00 UTC 2000");
    }

    #[test]
    fn addresses_print_as_java_does() {
        assert_eq!(
            java_addr(&"127.0.0.1:2181".parse().unwrap()),
            "/127.0.0.1:2181"
        );
        assert_eq!(
            java_addr(&"[::1]:80".parse().unwrap()),
            "/0:0:0:0:0:0:0:1:80"
        );
    }
}
