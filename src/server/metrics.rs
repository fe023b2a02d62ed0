//! The Prometheus endpoint (ZooKeeper's `PrometheusMetricsProvider`: `metricsProvider.httpHost`,
//! `metricsProvider.httpPort`, path `/metrics`): a minimal HTTP/1.1 responder that answers each
//! `GET /metrics` with the text exposition format and closes the connection.
//!
//! Metric names are ZooKeeper's where ZooKeeper has the metric (`znode_count`, `watch_count`,
//! `num_alive_connections`, `outstanding_requests`, `avg_latency`, `fsynctime`, ...); Volery's own
//! per-operation figures are `requests_total{op}`, `request_errors_total{op}` and the summary
//! `request_latency_ms{op}`. Latencies are in milliseconds, as ZooKeeper reports them.

use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::four_letter::{max_fds, open_fds};
use super::stats::OPS;
use super::Context;
use crate::node::metrics::HistogramSnapshot;

/// Largest request head read; anything longer is refused.
const MAX_REQUEST: usize = 8 * 1024;
/// How long a scraper may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Scrapes served at once; further connections wait in the accept queue.
const MAX_SCRAPES: usize = 16;

/// Serves `/metrics` on `listener` until `shutdown` completes.
pub async fn serve(listener: TcpListener, ctx: Arc<Context>, shutdown: impl Future) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_SCRAPES));
    tokio::pin!(shutdown);
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => return,
        };
        let (socket, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(socket, &ctx).await {
                tracing::debug!(client = %peer, error = %e, "metrics request failed");
            }
            drop(permit);
        });
    }
}

async fn handle(mut socket: TcpStream, ctx: &Context) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let head_end = tokio::time::timeout(READ_TIMEOUT, async {
        loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Ok::<_, std::io::Error>(Some(i));
            }
            if buf.len() > MAX_REQUEST {
                return Ok(None);
            }
            let mut chunk = [0u8; 1024];
            let n = socket.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request head"))??;
    let Some(head_end) = head_end else {
        return respond(
            &mut socket,
            "400 Bad Request",
            "text/plain",
            "bad request\n",
            true,
        )
        .await;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut words = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let head_only = method == "HEAD";
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let body = render(ctx).await;
            respond(
                &mut socket,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                &body,
                !head_only,
            )
            .await
        }
        ("GET" | "HEAD", _) => {
            respond(
                &mut socket,
                "404 Not Found",
                "text/plain",
                "not found\n",
                !head_only,
            )
            .await
        }
        _ => {
            respond(
                &mut socket,
                "405 Method Not Allowed",
                "text/plain",
                "method not allowed\n",
                true,
            )
            .await
        }
    }
}

async fn respond(
    socket: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
    with_body: bool,
) -> std::io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if with_body {
        out.push_str(body);
    }
    socket.write_all(out.as_bytes()).await?;
    socket.shutdown().await
}

struct Writer {
    out: String,
}

impl Writer {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.header(name, "gauge", help);
        let _ = writeln!(self.out, "{name} {value}");
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.header(name, "counter", help);
        let _ = writeln!(self.out, "{name} {value}");
    }

    /// The samples of one summary (quantiles, `_sum`, `_count`), `labels` like `op="create",`.
    fn summary_samples(&mut self, name: &str, labels: &str, s: &HistogramSnapshot, div: f64) {
        for q in [0.5, 0.9, 0.99] {
            let _ = writeln!(
                self.out,
                "{name}{{{labels}quantile=\"{q}\"}} {}",
                s.quantile_us(q) as f64 / div
            );
        }
        let labels = labels.trim_end_matches(',');
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(self.out, "{name}_sum{braces} {}", s.sum_us as f64 / div);
        let _ = writeln!(self.out, "{name}_count{braces} {}", s.count);
    }

    fn summary(&mut self, name: &str, help: &str, s: &HistogramSnapshot, div: f64) {
        self.header(name, "summary", help);
        self.summary_samples(name, "", s, div);
    }
}

/// The whole exposition text.
pub async fn render(ctx: &Context) -> String {
    let facts = ctx
        .node
        .inspect(|zk| {
            (
                zk.zk_node_count(),
                zk.watch_count(),
                zk.ephemerals_count(),
                zk.approximate_data_size(),
                zk.last_zxid(),
            )
        })
        .await;
    let s = &ctx.stats;
    let lat = s.latency.snapshot();
    let mut w = Writer { out: String::new() };
    if let Some((nodes, watches, ephemerals, size, _)) = facts {
        w.gauge("znode_count", "Number of znodes", nodes as f64);
        w.gauge("watch_count", "Number of watches", watches as f64);
        w.gauge(
            "ephemerals_count",
            "Number of ephemeral nodes",
            ephemerals as f64,
        );
        w.gauge(
            "approximate_data_size",
            "Approximate size of the data tree in bytes (paths and values)",
            size as f64,
        );
    }
    w.gauge(
        "last_zxid",
        "Last zxid executed",
        ctx.node.last_zxid() as f64,
    );
    w.gauge(
        "num_alive_connections",
        "Open client connections",
        ctx.conns.registry.len() as f64,
    );
    w.gauge(
        "global_sessions",
        "Open sessions",
        ctx.node.sessions().len() as f64,
    );
    w.gauge(
        "outstanding_requests",
        "Requests read and not yet answered",
        s.outstanding.load(Ordering::Relaxed).max(0) as f64,
    );
    w.gauge(
        "avg_latency",
        "Average request latency in ms",
        lat.avg_us() / 1000.0,
    );
    w.gauge(
        "min_latency",
        "Minimum request latency in ms",
        (lat.min_us / 1000) as f64,
    );
    w.gauge(
        "max_latency",
        "Maximum request latency in ms",
        (lat.max_us / 1000) as f64,
    );
    w.gauge(
        "uptime",
        "Milliseconds since the server started",
        s.uptime().as_millis() as f64,
    );
    w.gauge(
        "open_file_descriptor_count",
        "Open file descriptors",
        open_fds() as f64,
    );
    w.gauge(
        "max_file_descriptor_count",
        "File descriptor limit",
        max_fds() as f64,
    );
    w.counter(
        "packets_received",
        "Packets received from clients",
        s.packets_received.load(Ordering::Relaxed),
    );
    w.counter(
        "packets_sent",
        "Packets sent to clients",
        s.packets_sent.load(Ordering::Relaxed),
    );
    w.counter(
        "bytes_received_count",
        "Bytes received from clients",
        s.bytes_received.load(Ordering::Relaxed),
    );
    w.counter(
        "auth_failed_count",
        "Failed authentications",
        s.auth_failed.load(Ordering::Relaxed),
    );
    w.counter(
        "connection_rejected",
        "Connections refused by maxClientCnxns",
        s.connections_rejected.load(Ordering::Relaxed),
    );
    let node = ctx.node.metrics();
    w.counter(
        "commands_executed_total",
        "Commands the replica executed",
        node.commands_executed(),
    );
    for (name, help, value) in node.counters() {
        w.counter(&format!("{name}_total"), help, value);
    }
    w.summary(
        "fsynctime",
        "Time of one synced write of the vote log in ms",
        &node.fsync.snapshot(),
        1000.0,
    );
    w.summary(
        "sync_processor_batch_size",
        "Commands made durable by one synced write",
        &node.fsync_batch.snapshot(),
        1.0,
    );
    w.summary(
        "readlatency",
        "Read request latency in ms",
        &s.read_latency.snapshot(),
        1000.0,
    );
    w.summary(
        "updatelatency",
        "Update request latency in ms",
        &s.update_latency.snapshot(),
        1000.0,
    );
    let per_op: Vec<(&str, HistogramSnapshot, u64)> = OPS
        .iter()
        .zip(&s.ops)
        .map(|((_, name, _), st)| {
            (
                *name,
                st.latency.snapshot(),
                st.errors.load(Ordering::Relaxed),
            )
        })
        .filter(|(_, snap, _)| snap.count > 0)
        .collect();
    w.header(
        "requests_total",
        "counter",
        "Requests answered, by operation",
    );
    for (op, snap, _) in &per_op {
        let _ = writeln!(w.out, "requests_total{{op=\"{op}\"}} {}", snap.count);
    }
    w.header(
        "request_errors_total",
        "counter",
        "Requests answered with an error code, by operation",
    );
    for (op, _, errors) in &per_op {
        let _ = writeln!(w.out, "request_errors_total{{op=\"{op}\"}} {errors}");
    }
    w.header(
        "request_latency_ms",
        "summary",
        "Request latency in ms, by operation",
    );
    for (op, snap, _) in &per_op {
        w.summary_samples("request_latency_ms", &format!("op=\"{op}\","), snap, 1000.0);
    }
    w.out
}
