//! What the front end counts: ZooKeeper's `ServerStats` (packets, request latency, outstanding
//! requests), per-operation counts and latencies, and per-connection statistics for `cons`.
//!
//! Invariant: every update on the request path is a relaxed atomic operation on memory the
//! connection already holds (`Arc`s taken at accept time); only accepting and closing a
//! connection take the registry's lock.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::node::metrics::Histogram;

/// ZooKeeper's default trace mask (`ZooTrace`: request, client ping and session traces), as `gtmk`
/// reports it.
pub const DEFAULT_TRACE_MASK: i64 = 306;

/// Operations the front end tells apart: `(opcode, metric label, ZooKeeper's lastOp for cons)`.
pub const OPS: &[(i32, &str, &str)] = &[
    (1, "create", "CREA"),
    (2, "delete", "DELE"),
    (3, "exists", "EXIS"),
    (4, "getData", "GETD"),
    (5, "setData", "SETD"),
    (6, "getACL", "GETA"),
    (7, "setACL", "SETA"),
    (8, "getChildren", "GETC"),
    (9, "sync", "SYNC"),
    (11, "ping", "PING"),
    (12, "getChildren2", "GETC"),
    (13, "check", "CHEC"),
    (14, "multi", "MULT"),
    (15, "create2", "CREA"),
    (16, "reconfig", "RECO"),
    (17, "checkWatches", "CHKW"),
    (18, "removeWatches", "REMW"),
    (19, "createContainer", "CREA"),
    (20, "deleteContainer", "DELE"),
    (21, "createTTL", "CREA"),
    (22, "multiRead", "MLTR"),
    (100, "auth", "AUTH"),
    (101, "setWatches", "SETW"),
    (102, "sasl", "SASL"),
    (103, "getEphemerals", "GETE"),
    (104, "getAllChildrenNumber", "GETACN"),
    (105, "setWatches2", "STW2"),
    (106, "addWatch", "ADDW"),
    (107, "whoAmI", "HOMI"),
    (-10, "createSession", "SESS"),
    (-11, "closeSession", "CLOS"),
];

/// Index of `opcode` in [`OPS`].
pub fn op_index(opcode: i32) -> Option<usize> {
    OPS.iter().position(|(code, _, _)| *code == opcode)
}

/// Whether ZooKeeper counts the operation as an update (a txn) rather than a read.
pub fn is_update(opcode: i32) -> bool {
    matches!(
        opcode,
        1 | 2 | 5 | 7 | 13 | 14 | 15 | 16 | 19 | 20 | 21 | -10 | -11
    )
}

/// One operation's count and latency.
#[derive(Debug, Default)]
pub struct OpStats {
    pub latency: Histogram,
    pub errors: AtomicU64,
}

/// Server-wide statistics.
#[derive(Debug)]
pub struct ServerStats {
    started: Instant,
    pub packets_received: AtomicU64,
    pub packets_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    /// Every answered request, pings included (`ServerStats.requestLatency`).
    pub latency: Histogram,
    pub read_latency: Histogram,
    pub update_latency: Histogram,
    /// Requests submitted but not yet answered, over all connections.
    pub outstanding: AtomicI64,
    pub ops: Vec<OpStats>,
    pub auth_failed: AtomicU64,
    pub connections_rejected: AtomicU64,
    pub trace_mask: AtomicI64,
    /// Largest and smallest reply sizes, and the last one (`BufferStats`); -1 until one was sent.
    pub last_response_size: AtomicI64,
    pub min_response_size: AtomicI64,
    pub max_response_size: AtomicI64,
}

impl Default for ServerStats {
    fn default() -> ServerStats {
        ServerStats {
            started: Instant::now(),
            packets_received: AtomicU64::new(0),
            packets_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            latency: Histogram::default(),
            read_latency: Histogram::default(),
            update_latency: Histogram::default(),
            outstanding: AtomicI64::new(0),
            ops: OPS.iter().map(|_| OpStats::default()).collect(),
            auth_failed: AtomicU64::new(0),
            connections_rejected: AtomicU64::new(0),
            trace_mask: AtomicI64::new(DEFAULT_TRACE_MASK),
            last_response_size: AtomicI64::new(-1),
            min_response_size: AtomicI64::new(-1),
            max_response_size: AtomicI64::new(-1),
        }
    }
}

impl ServerStats {
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Records an answered request of `opcode` that took `latency`.
    pub fn answered(&self, opcode: i32, latency: Duration, err: i32) {
        self.latency.record(latency);
        if is_update(opcode) {
            self.update_latency.record(latency);
        } else if opcode != 11 {
            self.read_latency.record(latency);
        }
        if let Some(i) = op_index(opcode) {
            self.ops[i].latency.record(latency);
            if err != 0 {
                self.ops[i].errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn response_size(&self, size: usize) {
        let size = size as i64;
        self.last_response_size.store(size, Ordering::Relaxed);
        self.max_response_size.fetch_max(size, Ordering::Relaxed);
        let _ = self
            .min_response_size
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| {
                (m < 0 || size < m).then_some(size)
            });
    }

    /// `srst`: latency, packet counters and response sizes start again (`ServerStats.reset`).
    pub fn reset(&self) {
        self.latency.reset();
        self.read_latency.reset();
        self.update_latency.reset();
        self.packets_received.store(0, Ordering::Relaxed);
        self.packets_sent.store(0, Ordering::Relaxed);
        self.last_response_size.store(-1, Ordering::Relaxed);
        self.min_response_size.store(-1, Ordering::Relaxed);
        self.max_response_size.store(-1, Ordering::Relaxed);
    }
}

/// One connection's statistics (`ServerCnxn`'s counters), shared by its reader and writer.
#[derive(Debug)]
pub struct ConnStats {
    pub id: u64,
    pub addr: SocketAddr,
    /// Milliseconds since the epoch when the connection was accepted.
    pub established_ms: i64,
    pub packets_received: AtomicU64,
    pub packets_sent: AtomicU64,
    /// Requests read and not yet answered (`queued=`).
    pub outstanding: AtomicI64,
    /// 0 until a session is established.
    pub session: AtomicI64,
    pub timeout_ms: AtomicI64,
    /// Index into [`OPS`] + 1 of the last answered operation; 0 for none ("NA").
    pub last_op: AtomicU8,
    /// -1 until a request was answered.
    pub last_cxid: AtomicI64,
    pub last_zxid: AtomicI64,
    pub last_response_ms: AtomicI64,
    pub latency: Histogram,
    /// Last latency in milliseconds.
    pub last_latency_ms: AtomicI64,
}

pub fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl ConnStats {
    pub fn new(id: u64, addr: SocketAddr) -> ConnStats {
        ConnStats {
            id,
            addr,
            established_ms: wall_ms(),
            packets_received: AtomicU64::new(0),
            packets_sent: AtomicU64::new(0),
            outstanding: AtomicI64::new(0),
            session: AtomicI64::new(0),
            timeout_ms: AtomicI64::new(0),
            last_op: AtomicU8::new(0),
            last_cxid: AtomicI64::new(-1),
            last_zxid: AtomicI64::new(-1),
            last_response_ms: AtomicI64::new(0),
            latency: Histogram::default(),
            last_latency_ms: AtomicI64::new(0),
        }
    }

    /// Records the answer to request `xid` of `opcode` (`ServerCnxn.updateStatsForResponse`).
    pub fn answered(&self, opcode: i32, xid: i32, zxid: i64, latency: Duration) {
        if let Some(i) = op_index(opcode) {
            self.last_op.store(i as u8 + 1, Ordering::Relaxed);
        }
        if xid >= 0 {
            self.last_cxid.store(i64::from(xid), Ordering::Relaxed);
        }
        self.last_zxid.store(zxid, Ordering::Relaxed);
        self.last_response_ms.store(wall_ms(), Ordering::Relaxed);
        self.last_latency_ms
            .store(latency.as_millis() as i64, Ordering::Relaxed);
        self.latency.record(latency);
    }

    pub fn last_op_name(&self) -> &'static str {
        match self.last_op.load(Ordering::Relaxed) {
            0 => "NA",
            i => OPS.get(i as usize - 1).map_or("NA", |o| o.2),
        }
    }

    /// `crst`: this connection's counters start again (`ServerCnxn.resetStats`).
    pub fn reset(&self) {
        self.packets_received.store(0, Ordering::Relaxed);
        self.packets_sent.store(0, Ordering::Relaxed);
        self.last_cxid.store(-1, Ordering::Relaxed);
        self.last_zxid.store(-1, Ordering::Relaxed);
        self.last_response_ms.store(0, Ordering::Relaxed);
        self.last_latency_ms.store(0, Ordering::Relaxed);
        self.last_op.store(0, Ordering::Relaxed);
        self.latency.reset();
    }
}

/// The open connections, for `cons`, `stat`, `dump` and `crst`.
#[derive(Debug, Default)]
pub struct Registry {
    conns: Mutex<BTreeMap<u64, Arc<ConnStats>>>,
}

impl Registry {
    pub fn add(&self, c: Arc<ConnStats>) {
        self.conns
            .lock()
            .expect("registry poisoned")
            .insert(c.id, c);
    }

    pub fn remove(&self, id: u64) {
        self.conns.lock().expect("registry poisoned").remove(&id);
    }

    /// The open connections in the order they were accepted.
    pub fn list(&self) -> Vec<Arc<ConnStats>> {
        self.conns
            .lock()
            .expect("registry poisoned")
            .values()
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.conns.lock().expect("registry poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
