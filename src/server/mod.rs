//! The client front end: accepts ZooKeeper clients, runs one task per connection, and turns their
//! frames into ordered commands on the [`Node`](crate::node::Node).

pub mod connection;
pub mod four_letter;
pub mod metrics;
pub mod stats;

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::node::Node;
use four_letter::{ServerInfo, Whitelist};
use stats::{ConnStats, Registry, ServerStats};

/// The front end's bounds, taken from the validated [`Config`].
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest frame body accepted (jute.maxbuffer).
    pub max_frame: usize,
    /// Connections allowed per client address (maxClientCnxns); 0 means no limit.
    pub max_client_cnxns: u32,
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// Requests in flight per connection before the server stops reading from it.
    pub max_outstanding: usize,
    /// How long a new connection may take to send its ConnectRequest.
    pub connect_timeout: Duration,
    /// Four-letter words that run (`4lw.commands.whitelist`).
    pub whitelist: Whitelist,
    /// What `conf`, `dirs` and `dump` report.
    pub info: ServerInfo,
}

impl Limits {
    pub fn from_config(cfg: &Config) -> Limits {
        Limits {
            max_frame: cfg.max_buffer,
            max_client_cnxns: cfg.max_client_cnxns,
            min_session_timeout_ms: cfg.min_session_timeout_ms as i32,
            max_session_timeout_ms: cfg.max_session_timeout_ms as i32,
            max_outstanding: cfg.max_outstanding,
            connect_timeout: Duration::from_millis(cfg.tick_time_ms as u64 * 5),
            whitelist: cfg.four_letter_whitelist.clone(),
            info: ServerInfo {
                client_port: cfg.client_addr.port(),
                data_dir: cfg.data_dir.clone(),
                data_log_dir: cfg
                    .data_log_dir
                    .clone()
                    .unwrap_or_else(|| cfg.data_dir.clone()),
                tick_time_ms: cfg.tick_time_ms,
                max_client_cnxns: cfg.max_client_cnxns,
                min_session_timeout_ms: cfg.min_session_timeout_ms,
                max_session_timeout_ms: cfg.max_session_timeout_ms,
                server_id: cfg.server_id,
            },
        }
    }

    /// The session timeout the server grants for a requested one (ZooKeeper clamps it).
    pub fn negotiate_timeout(&self, requested: i32) -> i32 {
        requested.clamp(self.min_session_timeout_ms, self.max_session_timeout_ms)
    }
}

/// Everything the front end's tasks share: the node, the bounds, and the statistics.
pub struct Context {
    pub node: Node,
    pub limits: Limits,
    pub stats: ServerStats,
    pub conns: Arc<Connections>,
}

impl Context {
    pub fn new(node: Node, limits: Limits) -> Arc<Context> {
        Arc::new(Context {
            node,
            limits,
            stats: ServerStats::default(),
            conns: Arc::new(Connections::default()),
        })
    }
}

/// Connections per client address, for maxClientCnxns, and every open connection's statistics.
///
/// Connection ids start at the start time in microseconds, so an id is never reused across a
/// restart (replies to an old connection may still arrive from other servers).
pub struct Connections {
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    next_id: AtomicU64,
    pub registry: Registry,
}

/// Releases a connection's slot of its address, and its registry entry, when dropped.
pub struct Slot {
    conns: Arc<Connections>,
    ip: IpAddr,
    pub id: u64,
    pub stats: Arc<ConnStats>,
}

impl Default for Connections {
    fn default() -> Connections {
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        Connections {
            per_ip: Mutex::default(),
            next_id: AtomicU64::new(start),
            registry: Registry::default(),
        }
    }
}

impl Connections {
    /// Takes a slot for a connection from `addr`, or `None` when its address is at its limit.
    pub fn admit(self: &Arc<Self>, addr: SocketAddr, limit: u32) -> Option<Slot> {
        let ip = addr.ip();
        {
            let mut per_ip = self.per_ip.lock().expect("connections poisoned");
            let n = per_ip.entry(ip).or_insert(0);
            if limit > 0 && *n >= limit {
                return None;
            }
            *n += 1;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let stats = Arc::new(ConnStats::new(id, addr));
        self.registry.add(stats.clone());
        Some(Slot {
            conns: self.clone(),
            ip,
            id,
            stats,
        })
    }

    pub fn count(&self) -> u32 {
        self.per_ip
            .lock()
            .expect("connections poisoned")
            .values()
            .sum()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.conns.registry.remove(self.id);
        let mut per_ip = self.conns.per_ip.lock().expect("connections poisoned");
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// Accepts clients until `shutdown` completes. Accept errors back off instead of spinning.
pub async fn run(listener: TcpListener, node: Node, limits: Limits, shutdown: impl Future) {
    serve_clients(listener, Context::new(node, limits), shutdown).await
}

/// [`run`] with a context the caller shares (with the metrics endpoint).
pub async fn serve_clients(listener: TcpListener, ctx: Arc<Context>, shutdown: impl Future) {
    let limits = &ctx.limits;
    let conns = ctx.conns.clone();
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => return,
        };
        let (socket, addr) = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(5);
                a
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Some(slot) = conns.admit(addr, limits.max_client_cnxns) else {
            ctx.stats
                .connections_rejected
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                client = %addr.ip(),
                max = limits.max_client_cnxns,
                "too many connections from this address; closing"
            );
            drop(socket);
            continue;
        };
        let _ = socket.set_nodelay(true);
        let ctx = ctx.clone();
        tokio::spawn(async move {
            if let Err(e) = connection::serve(socket, addr, slot, ctx).await {
                tracing::info!(client = %addr, error = %e, "connection closed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_client_cnxns_per_address() {
        let conns = Arc::new(Connections::default());
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "127.0.0.2:1000".parse().unwrap();
        let s1 = conns.admit(a, 2).unwrap();
        let _s2 = conns.admit(a, 2).unwrap();
        assert!(conns.admit(a, 2).is_none());
        let _s3 = conns.admit(b, 2).unwrap();
        assert_eq!(conns.registry.len(), 3);
        drop(s1);
        assert_eq!(
            conns.registry.len(),
            2,
            "a closed connection leaves the registry"
        );
        assert!(conns.admit(a, 2).is_some());
        assert!(conns.admit(a, 0).is_some(), "0 means unlimited");
    }

    #[test]
    fn timeouts_are_clamped() {
        let cfg = Config::default();
        let l = Limits::from_config(&cfg);
        assert_eq!(l.negotiate_timeout(100), 4000);
        assert_eq!(l.negotiate_timeout(10_000), 10_000);
        assert_eq!(l.negotiate_timeout(1_000_000), 40_000);
    }
}
