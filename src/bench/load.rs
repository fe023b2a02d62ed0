//! The measured loop of one session: keep `outstanding` requests in flight, batch the writes, and
//! record each reply's latency when it arrives inside the measured window.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use hdrhistogram::Histogram;
use protocol::{decode_reply, decode_reply_header, split_frame, xid, OpCode, JUTE_MAXBUFFER};
use protocol::{MultiResult, Response};
use tokio::io::Interest;

use crate::rng::Rng;

use super::conn::Conn;
use super::workload::{OpKind, Workload, NODES_PER_SESSION};

/// Latencies are recorded in microseconds up to this bound (larger ones are clamped to it).
pub const MAX_LATENCY_US: u64 = 60_000_000;

/// The phases every session follows, in order, driven by the controller.
pub mod phase {
    /// Sending, nothing recorded.
    pub const WARMUP: u8 = 0;
    /// Sending, every reply recorded.
    pub const MEASURE: u8 = 1;
    /// No new request; outstanding replies are awaited (not recorded), then the session closes.
    pub const STOP: u8 = 2;
}

/// What the controller and all sessions share.
///
/// Invariant: `phase` only moves forward (WARMUP, MEASURE, STOP); the counters only grow.
#[derive(Debug, Default)]
pub struct Shared {
    pub phase: AtomicU8,
    /// Replies received, every phase.
    pub replies: AtomicU64,
    /// Replies with a non-zero error code (or a malformed body), every phase.
    pub errors: AtomicU64,
    /// Sum of reply latencies in microseconds, every phase (for the progress line's mean).
    pub latency_us: AtomicU64,
    /// Sessions whose loop ended before STOP.
    pub failed: AtomicU64,
}

/// A fresh latency histogram (1 us .. `MAX_LATENCY_US`, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("static histogram bounds are valid")
}

/// What one session measured inside the window.
#[derive(Debug)]
pub struct SessionStats {
    /// Latency per `OpKind::index()`, microseconds.
    pub latency: Vec<Histogram<u64>>,
    /// (operation, error code) -> replies; a malformed reply counts under code 0.
    pub errors: BTreeMap<(OpKind, i32), u64>,
    /// Why the session ended early, if it did.
    pub failure: Option<String>,
}

impl SessionStats {
    fn new() -> SessionStats {
        SessionStats {
            latency: (0..OpKind::COUNT).map(|_| new_histogram()).collect(),
            errors: BTreeMap::new(),
            failure: None,
        }
    }
}

/// A request in flight, in the order sent.
#[derive(Debug, Clone, Copy)]
struct Pending {
    xid: i32,
    kind: OpKind,
    sent: Instant,
    /// The created node's number, for a create (its delete follows) and a delete.
    node: u64,
}

/// The load one session offers: requests kept in flight, and at most how many per second.
#[derive(Clone, Copy, Debug)]
pub struct Offered {
    pub outstanding: usize,
    pub per_sec: Option<f64>,
}

/// An offered rate: by `now` a session may have sent `per_sec` x the time since `start` requests.
struct Pace {
    start: Instant,
    per_sec: f64,
    sent: u64,
}

impl Pace {
    /// Requests this session may send now.
    fn allowed(&self, now: Instant) -> u64 {
        let due = (now.saturating_duration_since(self.start).as_secs_f64() * self.per_sec) as u64;
        due.saturating_sub(self.sent)
    }

    /// When the next request falls due.
    fn next_due(&self) -> Instant {
        self.start + Duration::from_secs_f64((self.sent + 1) as f64 / self.per_sec)
    }
}

/// The loop's own state besides the socket.
struct Session<'a> {
    index: u64,
    workload: &'a Workload,
    shared: &'a Shared,
    outstanding: usize,
    pace: Option<Pace>,
    rng: Rng,
    pending: VecDeque<Pending>,
    /// Nodes created and not yet deleted; each gets its delete as the next request of a free slot.
    to_delete: Vec<u64>,
    next_node: u64,
    /// The last xid sent.
    xid: i32,
    wbuf: BytesMut,
    stats: SessionStats,
}

impl<'a> Session<'a> {
    fn new(
        index: u64,
        workload: &'a Workload,
        shared: &'a Shared,
        offered: Offered,
        seed: u64,
        xid: i32,
    ) -> Session<'a> {
        let outstanding = offered.outstanding;
        Session {
            index,
            workload,
            shared,
            outstanding,
            pace: offered.per_sec.map(|per_sec| Pace {
                start: Instant::now(),
                per_sec,
                sent: 0,
            }),
            rng: Rng(seed ^ index.wrapping_mul(0x2545_f491_4f6c_dd1d)),
            pending: VecDeque::with_capacity(outstanding),
            to_delete: Vec::new(),
            next_node: 0,
            xid,
            wbuf: BytesMut::with_capacity(outstanding * workload.max_frame_len()),
            stats: SessionStats::new(),
        }
    }

    /// A key to set or read: uniform over the run's keys, or over this session's server's
    /// partition with `--local`.
    fn key(&mut self) -> u64 {
        match &self.workload.key_sets {
            Some(sets) => {
                let set = &sets[self.index as usize % sets.len()];
                set[self.rng.below(set.len() as u64) as usize]
            }
            None => self.rng.below(u64::from(self.workload.keys)),
        }
    }

    /// Fills free slots up to `outstanding` with new requests stamped `now`, as far as the pace
    /// allows.
    fn refill(&mut self, now: Instant) {
        let mut allowed = self.pace.as_ref().map_or(u64::MAX, |p| p.allowed(now));
        while self.pending.len() < self.outstanding && allowed > 0 {
            allowed -= 1;
            if let Some(p) = &mut self.pace {
                p.sent += 1;
            }
            let (kind, node) = match self.to_delete.pop() {
                Some(n) => (OpKind::Delete, n),
                None => {
                    let kind = self.workload.mix.pick(self.rng.next_u64());
                    let node = if kind == OpKind::Create {
                        let n = self.index * NODES_PER_SESSION + self.next_node;
                        self.next_node += 1;
                        n
                    } else {
                        0
                    };
                    (kind, node)
                }
            };
            let xid = self.next_xid();
            let (a, b) = match kind {
                OpKind::Create | OpKind::Delete => (node, 0),
                _ => (self.key(), self.key()),
            };
            self.workload.append(kind, xid, a, b, &mut self.wbuf);
            self.pending.push_back(Pending {
                xid,
                kind,
                sent: now,
                node,
            });
        }
    }

    /// Handles every complete frame in `rbuf`. Returns how many replies, errors and
    /// microseconds of latency it saw.
    fn next_xid(&mut self) -> i32 {
        self.xid = if self.xid >= i32::MAX - 1 {
            1
        } else {
            self.xid + 1
        };
        self.xid
    }

    /// Queues the delete of every node created and not yet deleted.
    fn delete_created(&mut self, now: Instant) {
        while let Some(node) = self.to_delete.pop() {
            let xid = self.next_xid();
            self.workload
                .append(OpKind::Delete, xid, node, 0, &mut self.wbuf);
            self.pending.push_back(Pending {
                xid,
                kind: OpKind::Delete,
                sent: now,
                node,
            });
        }
    }

    fn take_replies(
        &mut self,
        rbuf: &mut BytesMut,
        now: Instant,
        measuring: bool,
    ) -> Result<(u64, u64, u64), String> {
        let (mut replies, mut errors, mut latency_sum) = (0, 0, 0);
        while let Some(body) = split_frame(rbuf, JUTE_MAXBUFFER).map_err(|e| e.to_string())? {
            let (header, rest) = decode_reply_header(&body).map_err(|e| e.to_string())?;
            if header.xid == xid::NOTIFICATION || header.xid == xid::PING {
                continue;
            }
            let Some(p) = self.pending.pop_front() else {
                return Err(format!("reply xid {} with nothing outstanding", header.xid));
            };
            if p.xid != header.xid {
                return Err(format!(
                    "reply xid {} while {} was expected",
                    header.xid, p.xid
                ));
            }
            let us = now.saturating_duration_since(p.sent).as_micros() as u64;
            replies += 1;
            latency_sum += us;
            let mut err = header.err;
            if err == 0 && Some(rest.len()) != self.workload.ok_body_len(p.kind) {
                err = multi_error(p.kind, &body).unwrap_or(0);
                // A body of the wrong length is a malformed reply, counted under code 0.
                errors += 1;
                if measuring {
                    *self.stats.errors.entry((p.kind, err)).or_default() += 1;
                }
            } else if err != 0 {
                errors += 1;
                if measuring {
                    *self.stats.errors.entry((p.kind, err)).or_default() += 1;
                }
            }
            if header.err == 0 && p.kind == OpKind::Create {
                self.to_delete.push(p.node);
            }
            if measuring {
                self.stats.latency[p.kind.index()].saturating_record(us.max(1));
            }
        }
        Ok((replies, errors, latency_sum))
    }
}

/// The error a failed multi reports inside its body (the first result that is neither Ok nor
/// RuntimeInconsistency), if `kind` is a multi and the body says so.
fn multi_error(kind: OpKind, body: &[u8]) -> Option<i32> {
    if kind != OpKind::Multi {
        return None;
    }
    match decode_reply(OpCode::Multi, body).ok()?.1? {
        Response::Multi(results) => results.iter().find_map(|r| match r {
            MultiResult::Error { err } if *err != 0 && *err != -2 => Some(*err),
            _ => None,
        }),
        _ => None,
    }
}

/// Runs session `index` on `conn` until the controller says STOP, then waits for the replies still
/// outstanding (at most `drain`) and closes the session.
pub async fn run_session(
    index: u64,
    mut conn: Conn,
    workload: Arc<Workload>,
    shared: Arc<Shared>,
    offered: Offered,
    seed: u64,
    drain: Duration,
) -> SessionStats {
    let mut s = Session::new(index, &workload, &shared, offered, seed, conn.xid);
    let failure = drive(&mut s, &mut conn, drain).await.err();
    conn.xid = s.xid;
    if let Some(f) = &failure {
        tracing::warn!(session = index, addr = %conn.addr, "session ended early: {f}");
        s.shared.failed.fetch_add(1, Ordering::Relaxed);
    } else {
        conn.close().await;
    }
    let mut stats = s.stats;
    stats.failure = failure;
    stats
}

async fn drive(s: &mut Session<'_>, conn: &mut Conn, drain: Duration) -> Result<(), String> {
    let mut drain_deadline: Option<Instant> = None;
    s.refill(Instant::now());
    loop {
        let phase = s.shared.phase.load(Ordering::Relaxed);
        if phase == phase::STOP {
            if s.pending.is_empty() {
                return Ok(());
            }
            let deadline = *drain_deadline.get_or_insert_with(|| Instant::now() + drain);
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} replies still outstanding {drain:?} after the window",
                    s.pending.len()
                ));
            }
        }
        // Write what we can without waiting; wait only for what the socket cannot take yet.
        while !s.wbuf.is_empty() {
            match conn.stream.try_write(&s.wbuf) {
                Ok(n) => s.wbuf.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(format!("write: {e}")),
            }
        }
        let interest = if s.wbuf.is_empty() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        // Wake up now and then so that STOP is seen even when no reply comes, and when a paced
        // request falls due while a slot is free.
        let mut wake = Instant::now() + Duration::from_millis(200);
        if let Some(p) = s.pace.as_ref().filter(|_| s.pending.len() < s.outstanding) {
            wake = wake.min(p.next_due());
        }
        let ready = match tokio::time::timeout_at(wake.into(), conn.stream.ready(interest)).await {
            Ok(r) => r.map_err(|e| format!("poll: {e}"))?,
            Err(_) => {
                if s.shared.phase.load(Ordering::Relaxed) != phase::STOP {
                    s.refill(Instant::now());
                }
                continue;
            }
        };
        if !ready.is_readable() {
            continue;
        }
        match conn.stream.try_read_buf(&mut conn.rbuf) {
            Ok(0) => return Err("connection closed by the server".into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(format!("read: {e}")),
        }
        let now = Instant::now();
        let phase = s.shared.phase.load(Ordering::Relaxed);
        let (replies, errors, latency) =
            s.take_replies(&mut conn.rbuf, now, phase == phase::MEASURE)?;
        if replies > 0 {
            s.shared.replies.fetch_add(replies, Ordering::Relaxed);
            s.shared.latency_us.fetch_add(latency, Ordering::Relaxed);
        }
        if errors > 0 {
            s.shared.errors.fetch_add(errors, Ordering::Relaxed);
        }
        if phase == phase::STOP {
            // Leave nothing half-created: deletes still go out, nothing else does.
            s.delete_created(now);
        } else {
            s.refill(now);
        }
        if conn.rbuf.capacity() - conn.rbuf.len() < 16 * 1024 {
            conn.rbuf.reserve(64 * 1024);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{decode_request, encode_frame, ReplyHeader, Request, Stat};

    /// Splits the session's write buffer into (xid, request) pairs.
    fn sent(s: &mut Session<'_>) -> Vec<(i32, Request)> {
        let mut out = Vec::new();
        while let Some(body) = split_frame(&mut s.wbuf, JUTE_MAXBUFFER).unwrap() {
            let (h, req) = decode_request(&body).unwrap();
            out.push((h.xid, req));
        }
        out
    }

    fn closed(outstanding: usize) -> Offered {
        Offered {
            outstanding,
            per_sec: None,
        }
    }

    fn reply(rbuf: &mut BytesMut, xid: i32, err: i32, rsp: Option<Response>) {
        let header = ReplyHeader { xid, zxid: 1, err };
        encode_frame(&(header, rsp), rbuf);
    }

    #[test]
    fn create_is_followed_by_its_delete_and_errors_are_counted() {
        let w = Workload::new("create=1".parse().unwrap(), 10, 5, "/b/r".into());
        let shared = Shared::default();
        let mut s = Session::new(3, &w, &shared, closed(2), 1, 0);
        let t0 = Instant::now();
        s.refill(t0);
        let reqs = sent(&mut s);
        assert_eq!(reqs.len(), 2);
        let paths: Vec<String> = reqs
            .iter()
            .map(|(_, r)| match r {
                Request::Create { req, .. } => req.path.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(paths, ["/b/r/c0000300000000000", "/b/r/c0000300000000001"]);
        assert_eq!(reqs[0].0 + 1, reqs[1].0);

        // The first create succeeds, the second fails with NodeExists.
        let mut rbuf = BytesMut::new();
        let path = paths[0].clone();
        reply(&mut rbuf, reqs[0].0, 0, Some(Response::Create { path }));
        reply(&mut rbuf, reqs[1].0, -110, None);
        let later = t0 + Duration::from_millis(3);
        let (n, errors, lat) = s.take_replies(&mut rbuf, later, true).unwrap();
        assert_eq!((n, errors, lat), (2, 1, 6000));
        assert_eq!(s.stats.errors.get(&(OpKind::Create, -110)), Some(&1));
        assert_eq!(s.stats.latency[OpKind::Create.index()].len(), 2);

        // The freed slots: the delete of the node created, then a new create.
        s.refill(later);
        let reqs2 = sent(&mut s);
        assert_eq!(
            reqs2[0].1,
            Request::Delete(protocol::DeleteRequest {
                path: paths[0].clone(),
                version: -1
            })
        );
        assert!(matches!(&reqs2[1].1, Request::Create { req, .. } if req.path.ends_with("02")));
    }

    #[test]
    fn a_paced_session_sends_only_what_has_fallen_due() {
        let w = Workload::new("set=1".parse().unwrap(), 10, 5, "/b/r".into());
        let shared = Shared::default();
        let offered = Offered {
            outstanding: 100,
            per_sec: Some(1000.0),
        };
        let mut s = Session::new(0, &w, &shared, offered, 1, 0);
        let start = s.pace.as_ref().unwrap().start;
        s.refill(start + Duration::from_micros(10_500));
        assert_eq!(sent(&mut s).len(), 10);
        assert_eq!(
            s.pace.as_ref().unwrap().next_due(),
            start + Duration::from_millis(11)
        );
        // Nothing more until the next one falls due, however many slots are free.
        s.refill(start + Duration::from_micros(10_900));
        assert!(sent(&mut s).is_empty());
        // A long stall lets it catch up only as far as the free slots.
        s.refill(start + Duration::from_secs(1));
        assert_eq!(sent(&mut s).len(), 90);
    }

    #[test]
    fn replies_out_of_order_or_malformed_are_caught() {
        let w = Workload::new("set=1".parse().unwrap(), 10, 5, "/b/r".into());
        let shared = Shared::default();
        let mut s = Session::new(0, &w, &shared, closed(2), 1, 0);
        s.refill(Instant::now());
        let reqs = sent(&mut s);
        let mut rbuf = BytesMut::new();
        // A notification is skipped; a setData reply without its Stat is malformed.
        reply(&mut rbuf, -1, 0, None);
        reply(&mut rbuf, reqs[0].0, 0, None);
        let (n, errors, _) = s.take_replies(&mut rbuf, Instant::now(), false).unwrap();
        assert_eq!((n, errors), (1, 1));
        assert!(s.stats.errors.is_empty(), "not recorded outside the window");
        assert_eq!(s.stats.latency[OpKind::Set.index()].len(), 0);
        // A reply to an xid that is not the oldest outstanding is a protocol error.
        reply(
            &mut rbuf,
            reqs[1].0 + 5,
            0,
            Some(Response::Stat(Stat::default())),
        );
        assert!(s.take_replies(&mut rbuf, Instant::now(), true).is_err());
    }

    #[test]
    fn rng_is_deterministic_and_spread() {
        let mut a = Rng(7);
        let mut b = Rng(7);
        let xs: Vec<u64> = (0..100).map(|_| a.below(10)).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.below(10)).collect();
        assert_eq!(xs, ys);
        for d in 0..10 {
            assert!(xs.contains(&d), "digit {d} never drawn");
        }
    }
}
