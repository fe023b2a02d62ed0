//! `volery bench`: a closed-loop load generator speaking the ZooKeeper wire protocol directly, for
//! Volery and Apache ZooKeeper alike.
//!
//! A run: one setup session creates `<root>/run-<id>` and its keys; N sessions connect, spread
//! round-robin over the servers; each keeps M requests outstanding (`load`) through a warm-up and a
//! measured window; replies in the window go into per-session HDR histograms, merged at the end
//! (`report`); the CPU time of the server processes is read from /proc around the window (`cpu`);
//! a cleanup session removes everything the run created.
//!
//! - `workload`: the mix, the znode layout, request frames encoded once.
//! - `conn`: the handshake and plain calls for setup and cleanup.
//! - `load`: the measured loop of one session.
//! - `report`: the table and the JSON document.

pub mod conn;
pub mod cpu;
pub mod load;
pub mod report;
pub mod workload;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::{
    CreateMode, CreateRequest, DeleteRequest, ErrorCode, OpCode, PathWatchRequest, Request,
    Response,
};
use thiserror::Error;

use conn::{error_name, Conn};
use load::{phase, Shared};
use report::{CpuUse, Report, RunConfig};
use workload::{key_path, open_acl, Mix, Workload};

/// Arguments of `volery bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Servers to load, comma separated; sessions are spread over them round-robin.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:2181")]
    pub servers: Vec<String>,
    /// Number of sessions (one TCP connection each).
    #[arg(long, default_value_t = 32)]
    pub sessions: usize,
    /// Requests each session keeps in flight.
    #[arg(long, default_value_t = 25)]
    pub outstanding: usize,
    /// Offered load in operations per second over all sessions (each session sends at most its
    /// share, still bounded by --outstanding); unset: as fast as replies come (closed loop).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Operation mix: OP=WEIGHT,... with OP among set, get, exists, create (a create then its
    /// delete; both global in Volery), multi (two setData in one multi).
    #[arg(long, default_value = "set=100")]
    pub mix: Mix,
    /// Value size in bytes for setData, create and the keys read by getData.
    #[arg(long, default_value_t = 1000)]
    pub size: usize,
    /// Number of keys (znodes) that set, get, exists and multi pick from uniformly.
    #[arg(long, default_value_t = 1000)]
    pub keys: u32,
    /// Warm-up before the measured window (e.g. 5s, 500ms, 1m).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Length of the measured window.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// PIDs of the server processes whose CPU time is reported per operation (comma separated).
    #[arg(long, value_delimiter = ',')]
    pub server_pids: Vec<u32>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// A name for the target, printed and written to JSON (e.g. zookeeper-3).
    #[arg(long, default_value = "")]
    pub label: String,
    /// Parent of the per-run znode; created if missing and removed after if empty.
    #[arg(long, default_value = "/volery-bench")]
    pub root: String,
    /// Session timeout to ask for, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub session_timeout: i32,
    /// Seed of key and operation choice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Worker threads of the load generator (default: the number of CPUs).
    #[arg(long)]
    pub threads: Option<usize>,
    /// No per-second progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Local commands only (the paper's clients): each session's set, get, exists and multi pick
    /// among the keys of the partition its server replicates (asked with `mntr`), so none is
    /// multi-partition; create/delete stay global.
    #[arg(long)]
    pub local: bool,
}

/// Why a bench run failed.
#[derive(Debug, Error)]
pub enum BenchError {
    #[error("invalid arguments: {0}")]
    Args(String),
    #[error("cannot resolve server {0}")]
    Resolve(String),
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("session with {addr} not established: {reason}")]
    Handshake { addr: SocketAddr, reason: String },
    #[error("connection to {0} closed by the server")]
    Closed(SocketAddr),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Frame(#[from] protocol::FrameError),
    #[error("malformed reply: {0}")]
    Decode(#[from] protocol::DecodeError),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    #[error("{op} {path} failed: {name} ({code})")]
    Setup {
        op: &'static str,
        path: String,
        code: i32,
        name: String,
    },
    #[error("cannot read CPU time of pid {pid}: {reason}")]
    Proc { pid: u32, reason: String },
    #[error("cannot write {path}: {reason}")]
    Output { path: PathBuf, reason: String },
}

/// Parses `5s`, `500ms`, `1m`, `1.5s` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}`: expected a number and a unit (ms, s, m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (ms, s, m)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("`{s}`: {e}"))
}

/// How long sessions may take to answer what they sent before the window closed.
const DRAIN: Duration = Duration::from_secs(10);
/// How long one session may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests kept in flight by the setup and cleanup sessions.
const SETUP_WINDOW: usize = 200;

/// Runs `volery bench` to completion on its own tokio runtime; prints the table on stdout.
pub fn run(args: BenchArgs) -> Result<(), BenchError> {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = rt.enable_all().build()?;
    let report = rt.block_on(run_async(args.clone()))?;
    print!("{}", report.table());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| BenchError::Output {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        std::fs::write(path, text + "\n").map_err(|e| BenchError::Output {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    }
    Ok(())
}

fn validate(args: &BenchArgs) -> Result<Vec<SocketAddr>, BenchError> {
    if args.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err(BenchError::Args("--rate must be a positive number".into()));
    }
    if args.sessions == 0 || args.outstanding == 0 {
        return Err(BenchError::Args(
            "--sessions and --outstanding must be at least 1".into(),
        ));
    }
    if args.keys == 0 || u64::from(args.keys) > 10u64.pow(workload::KEY_DIGITS as u32) {
        return Err(BenchError::Args("--keys must be in 1..=10^8".into()));
    }
    if args.size >= protocol::JUTE_MAXBUFFER - 1024 {
        return Err(BenchError::Args(format!(
            "--size must stay below jute.maxbuffer ({} bytes) with room for the request",
            protocol::JUTE_MAXBUFFER
        )));
    }
    if !args.root.starts_with('/') || args.root.ends_with('/') || args.root.contains("//") {
        return Err(BenchError::Args(format!(
            "--root {}: an absolute znode path other than /",
            args.root
        )));
    }
    if args.duration.is_zero() {
        return Err(BenchError::Args("--duration must be positive".into()));
    }
    let mut addrs = Vec::new();
    for s in args
        .servers
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        let addr = s
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| BenchError::Resolve(s.to_string()))?;
        addrs.push(addr);
    }
    if addrs.is_empty() {
        return Err(BenchError::Args("--servers is empty".into()));
    }
    Ok(addrs)
}

async fn run_async(args: BenchArgs) -> Result<Report, BenchError> {
    let addrs = validate(&args)?;
    let run_id = format!(
        "run-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    let run_path = format!("{}/{}", args.root, run_id);
    let mut workload = Workload::new(args.mix.clone(), args.keys, args.size, run_path.clone());
    if args.local {
        workload.key_sets = Some(local_key_sets(&addrs, args.keys, &run_path).await?);
    }
    let workload = Arc::new(workload);

    setup(addrs[0], &args, &workload).await?;
    let result = measure(&addrs, &args, &workload).await;
    let cleaned = cleanup(addrs[0], &args, &run_path).await;
    let report = result?;
    if let Err(e) = cleaned {
        tracing::warn!("cleanup of {run_path} incomplete: {e}");
        eprintln!("bench: cleanup of {run_path} incomplete: {e}");
    }
    Ok(report)
}

/// Per server, the keys of the partition it replicates (its `mntr` `zk_partition` of
/// `zk_partitions`; a server that answers `mntr` without them holds the whole tree). A server
/// that does not answer `mntr` is an error: spreading the keys instead would measure something
/// else than asked.
async fn local_key_sets(
    addrs: &[SocketAddr],
    keys: u32,
    run_path: &str,
) -> Result<Vec<Arc<[u64]>>, BenchError> {
    let mut sets = Vec::with_capacity(addrs.len());
    for &addr in addrs {
        let mntr = conn::four_letter(addr, "mntr", CONNECT_TIMEOUT).await?;
        let field = |name: &str| -> Option<u32> {
            mntr.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        };
        let (p, k) = match (field("zk_partition\t"), field("zk_partitions\t")) {
            (Some(p), Some(k)) if p < k => (p, k),
            _ if mntr.contains("zk_server_state") => (0, 1),
            _ => {
                return Err(BenchError::Args(format!(
                    "--local asks each server's partition with mntr, and {addr} did not answer it \
                     (add mntr to 4lw.commands.whitelist): {}",
                    mntr.trim()
                )))
            }
        };
        let set: Arc<[u64]> = (0..u64::from(keys))
            .filter(|&i| crate::ssmr::partition_of(&key_path(run_path, i), k) == p)
            .collect();
        if set.is_empty() {
            return Err(BenchError::Args(format!(
                "--local: no key of the {keys} falls in partition {p} of {k} ({addr}); use more --keys"
            )));
        }
        sets.push(set);
    }
    Ok(sets)
}

fn check(op: &'static str, path: &str, code: i32, allowed: &[ErrorCode]) -> Result<(), BenchError> {
    if code == 0 || allowed.iter().any(|c| c.as_i32() == code) {
        return Ok(());
    }
    Err(BenchError::Setup {
        op,
        path: path.to_string(),
        code,
        name: error_name(code),
    })
}

fn create(path: &str, data: Option<Vec<u8>>) -> Request {
    Request::Create {
        op: OpCode::Create,
        req: CreateRequest {
            path: path.to_string(),
            data,
            acl: open_acl(),
            flags: CreateMode::Persistent.as_i32(),
            ttl: None,
        },
    }
}

/// Creates the root's ancestors and itself (existing ones are fine), the run node and every key.
async fn setup(addr: SocketAddr, args: &BenchArgs, w: &Workload) -> Result<(), BenchError> {
    let mut conn = Conn::connect(addr, args.session_timeout, CONNECT_TIMEOUT).await?;
    let mut prefix = String::new();
    for part in args.root.split('/').filter(|p| !p.is_empty()) {
        prefix.push('/');
        prefix.push_str(part);
        let (code, _) = conn.call(create(&prefix, None)).await?;
        check("create", &prefix, code, &[ErrorCode::NodeExists])?;
    }
    let (code, _) = conn.call(create(&w.run_path, None)).await?;
    check("create", &w.run_path, code, &[])?;
    let keys: Vec<Request> = (0..u64::from(w.keys))
        .map(|i| create(&key_path(&w.run_path, i), Some(w.value.clone())))
        .collect();
    for (i, (code, _)) in conn
        .pipeline(keys, SETUP_WINDOW)
        .await?
        .into_iter()
        .enumerate()
    {
        check("create", &key_path(&w.run_path, i as u64), code, &[])?;
    }
    conn.close().await;
    Ok(())
}

/// Deletes every child of the run node, the run node, and the root if nothing else is left in it.
async fn cleanup(addr: SocketAddr, args: &BenchArgs, run_path: &str) -> Result<(), BenchError> {
    let mut conn = Conn::connect(addr, args.session_timeout, CONNECT_TIMEOUT).await?;
    let (code, rsp) = conn
        .call(Request::GetChildren(PathWatchRequest {
            path: run_path.to_string(),
            watch: false,
        }))
        .await?;
    check("getChildren", run_path, code, &[])?;
    let children = match rsp {
        Some(Response::GetChildren { children }) => children,
        other => {
            return Err(BenchError::Protocol(format!(
                "getChildren {run_path} answered {other:?}"
            )))
        }
    };
    let delete = |path: String| {
        Request::Delete(DeleteRequest {
            path: path.to_string(),
            version: -1,
        })
    };
    let paths: Vec<String> = children.iter().map(|c| format!("{run_path}/{c}")).collect();
    let results = conn
        .pipeline(paths.iter().cloned().map(delete).collect(), SETUP_WINDOW)
        .await?;
    for (path, (code, _)) in paths.iter().zip(results) {
        check("delete", path, code, &[ErrorCode::NoNode])?;
    }
    let (code, _) = conn.call(delete(run_path.to_string())).await?;
    check("delete", run_path, code, &[])?;
    // The root (and its ancestors) go only when empty: other runs may share them.
    let mut root = args.root.clone();
    while !root.is_empty() {
        let (code, _) = conn.call(delete(root.clone())).await?;
        if code != 0 {
            break;
        }
        root.truncate(root.rfind('/').unwrap_or(0));
    }
    conn.close().await;
    Ok(())
}

/// Connects every session, runs the warm-up and the window, and gathers the results.
async fn measure(
    addrs: &[SocketAddr],
    args: &BenchArgs,
    workload: &Arc<Workload>,
) -> Result<Report, BenchError> {
    let conns = futures::future::try_join_all((0..args.sessions).map(|i| {
        Conn::connect(
            addrs[i % addrs.len()],
            args.session_timeout,
            CONNECT_TIMEOUT,
        )
    }))
    .await?;
    let shared = Arc::new(Shared::default());
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, conn)| {
            tokio::spawn(load::run_session(
                i as u64,
                conn,
                workload.clone(),
                shared.clone(),
                load::Offered {
                    outstanding: args.outstanding,
                    per_sec: args.rate.map(|r| r / args.sessions as f64),
                },
                args.seed,
                DRAIN,
            ))
        })
        .collect();

    let started = Instant::now();
    let mut progress = Progress::new(&shared, args.sessions, args.quiet);
    let mut interrupted = progress.run_until(started + args.warmup, "warmup").await;

    let server_before = cpu::each_cpu(&args.server_pids);
    let client_before = cpu::each_cpu(&[std::process::id()]);
    let before_replies = shared.replies.load(Ordering::Relaxed);
    shared.phase.store(phase::MEASURE, Ordering::Relaxed);
    let window_start = Instant::now();
    progress.timeline.clear();
    if !interrupted {
        interrupted = progress
            .run_until(window_start + args.duration, "measure")
            .await;
    }
    shared.phase.store(phase::STOP, Ordering::Relaxed);
    let window = window_start.elapsed();
    let server_after = cpu::each_cpu(&args.server_pids);
    let client_after = cpu::each_cpu(&[std::process::id()]);
    let window_replies = shared.replies.load(Ordering::Relaxed) - before_replies;

    let mut stats = Vec::with_capacity(tasks.len());
    for t in tasks {
        match t.await {
            Ok(s) => stats.push(s),
            Err(e) => return Err(BenchError::Protocol(format!("a session task failed: {e}"))),
        }
    }
    let merged = report::merge(stats);
    let secs = window.as_secs_f64();
    let (ops, total) = merged.rows(secs);
    let ops_done = total.count.max(1) as f64;
    let cpu_use = |pids: Vec<u32>,
                   before: Result<Vec<Duration>, BenchError>,
                   after: Result<Vec<Duration>, BenchError>| match (before, after)
    {
        (Ok(b), Ok(a)) => {
            let each: Vec<Duration> = a
                .iter()
                .zip(&b)
                .map(|(a, b)| a.saturating_sub(*b))
                .collect();
            let used: Duration = each.iter().sum();
            Some(CpuUse {
                pids,
                cpu_seconds: used.as_secs_f64(),
                us_per_op: used.as_secs_f64() * 1e6 / ops_done,
                cores: used.as_secs_f64() / secs.max(1e-9),
                per_pid_seconds: each.iter().map(Duration::as_secs_f64).collect(),
            })
        }
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("bench: {e}");
            None
        }
    };
    let server_cpu = if args.server_pids.is_empty() {
        None
    } else {
        cpu_use(args.server_pids.clone(), server_before, server_after)
    };
    let client_cpu = cpu_use(vec![std::process::id()], client_before, client_after);
    tracing::debug!(window_replies, recorded = total.count, "window closed");
    Ok(Report {
        config: RunConfig {
            label: args.label.clone(),
            servers: addrs.iter().map(|a| a.to_string()).collect(),
            sessions: args.sessions,
            outstanding: args.outstanding,
            rate: args.rate,
            value_size: args.size,
            mix: args.mix.to_string(),
            global_share: args.mix.global_share(),
            keys: args.keys,
            warmup_secs: args.warmup.as_secs_f64(),
            duration_secs: args.duration.as_secs_f64(),
            seed: args.seed,
        },
        window_secs: secs,
        errors: merged.error_counts(),
        sessions_failed: merged.failures.len(),
        failures: merged.failures.clone(),
        latency_cdf_ms: merged.cdf(),
        total,
        ops,
        server_cpu,
        client_cpu,
        timeline_ops_per_sec: progress.timeline,
        interrupted,
    })
}

/// The per-second progress line and the throughput timeline of the window.
struct Progress<'a> {
    shared: &'a Shared,
    sessions: usize,
    quiet: bool,
    started: Instant,
    last: (Instant, u64, u64, u64),
    timeline: Vec<f64>,
}

impl<'a> Progress<'a> {
    fn new(shared: &'a Shared, sessions: usize, quiet: bool) -> Progress<'a> {
        let now = Instant::now();
        Progress {
            shared,
            sessions,
            quiet,
            started: now,
            last: (now, 0, 0, 0),
            timeline: Vec::new(),
        }
    }

    /// Prints a line every second until `until`; true if ctrl-c came first.
    async fn run_until(&mut self, until: Instant, label: &str) -> bool {
        loop {
            let now = Instant::now();
            if now >= until {
                return false;
            }
            let next = (self.last.0 + Duration::from_secs(1)).min(until);
            tokio::select! {
                _ = tokio::time::sleep_until(next.into()) => {}
                _ = tokio::signal::ctrl_c() => return true,
            }
            // A tick every second, and one at the end of the phase unless it is a mere sliver.
            let now = Instant::now();
            let since = now.duration_since(self.last.0);
            if since >= Duration::from_secs(1)
                || (now >= until && since >= Duration::from_millis(200))
            {
                self.tick(label);
            }
        }
    }

    fn tick(&mut self, label: &str) {
        let now = Instant::now();
        let replies = self.shared.replies.load(Ordering::Relaxed);
        let errors = self.shared.errors.load(Ordering::Relaxed);
        let lat = self.shared.latency_us.load(Ordering::Relaxed);
        let (t0, r0, e0, l0) = self.last;
        let dt = now.duration_since(t0).as_secs_f64().max(1e-9);
        let n = replies - r0;
        let rate = n as f64 / dt;
        self.timeline.push(rate);
        self.last = (now, replies, errors, lat);
        if self.quiet {
            return;
        }
        let mean_ms = if n > 0 {
            (lat - l0) as f64 / n as f64 / 1000.0
        } else {
            0.0
        };
        let failed = self.shared.failed.load(Ordering::Relaxed) as usize;
        eprintln!(
            "bench {:>5.1}s {:<7} {:>10.0} ops/s  mean {:>7.3} ms  errors {:>6}  sessions {}/{}",
            now.duration_since(self.started).as_secs_f64(),
            label,
            rate,
            mean_ms,
            errors - e0,
            self.sessions - failed,
            self.sessions
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn arguments_parse_as_main_passes_them() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            bench: BenchArgs,
        }
        let cli = Cli::try_parse_from([
            "bench",
            "--servers",
            "127.0.0.1:1,127.0.0.1:2",
            "--mix",
            "set=50,get=50",
            "--server-pids",
            "10,20",
            "--warmup",
            "1s",
        ])
        .unwrap();
        assert_eq!(cli.bench.servers.len(), 2);
        assert_eq!(cli.bench.server_pids, [10, 20]);
        assert_eq!(cli.bench.mix.to_string(), "set=50,get=50");
        assert_eq!(cli.bench.warmup, Duration::from_secs(1));
        assert_eq!(cli.bench.outstanding, 25);
        assert!(validate(&cli.bench).is_ok());
        let bad = Cli::try_parse_from(["bench", "--root", "/"]).unwrap();
        assert!(matches!(validate(&bad.bench), Err(BenchError::Args(_))));
    }
}
