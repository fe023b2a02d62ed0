//! One client connection: the connect handshake, then a reader that turns frames into ordered
//! commands and a writer that sends replies and notifications in the order the node queued them.
//!
//! Invariant: a session's requests are submitted in the order received, and the node answers them
//! in that order, so replies leave in xid order. Pings are answered at once (clients match them by
//! their reserved xid, not by order). A malformed frame closes this connection only.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use protocol::{xid, ConnectResponse, Encode, ErrorCode, ReplyHeader, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify, Semaphore};

use super::four_letter::{self, Prefix};
use super::stats::ConnStats;
use super::{Context, Slot};
use crate::node::{Destination, Node, NodeError, Outbound, Route, Undelivered};
use crate::zk::{Command, Op, SessionId};

/// The xid of the createSession/reconnect command a handshake orders; never a client's xid.
const CONNECT_XID: i32 = i32::MIN + 1;
/// Replies are written in batches of up to this many bytes per write call.
const WRITE_BATCH: usize = 64 * 1024;
/// How long a closing connection waits for its last replies to be written.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How long a handshake waits for this replica to reach the zxid its client has already seen.
const CATCH_UP_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed frame: {0}")]
    Frame(#[from] protocol::FrameError),
    #[error("malformed request: {0}")]
    Decode(#[from] protocol::DecodeError),
    #[error("connection closed inside a frame")]
    Truncated,
    #[error("no ConnectRequest within {0:?}")]
    ConnectTimeout(Duration),
    #[error("session {0:#x} is expired or unknown")]
    SessionExpired(SessionId),
    #[error("the node stopped")]
    NodeStopped,
    #[error("client has seen zxid {seen:#x}, this server only {ours:#x}: client must try another server")]
    BehindClient { seen: i64, ours: i64 },
    #[error("ordering failed: {0}")]
    Node(#[from] NodeError),
}

/// Reads length-prefixed frames; "need more bytes" is never an error, a bad prefix is.
struct FrameReader {
    rd: OwnedReadHalf,
    buf: BytesMut,
    max: usize,
}

impl FrameReader {
    /// Reads until at least `n` bytes are buffered; `false` when the peer closed before that.
    async fn fill(&mut self, n: usize) -> Result<bool, ConnError> {
        while self.buf.len() < n {
            if self.rd.read_buf(&mut self.buf).await? == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The next frame body, or `None` when the peer closed cleanly between frames.
    async fn next(&mut self) -> Result<Option<Bytes>, ConnError> {
        loop {
            if let Some(frame) = protocol::split_frame(&mut self.buf, self.max)? {
                return Ok(Some(frame));
            }
            if self.rd.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(ConnError::Truncated)
                };
            }
        }
    }
}

/// Appends one length-prefixed frame whose body `body` writes.
fn put_frame(out: &mut BytesMut, body: impl FnOnce(&mut BytesMut)) {
    let at = out.len();
    out.put_i32(0);
    body(out);
    let len = (out.len() - at - 4) as i32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

fn put_outbound(out: &mut BytesMut, msg: &Outbound) {
    match msg {
        Outbound::Reply {
            xid,
            zxid,
            err,
            response,
        } => put_frame(out, |b| {
            let header = ReplyHeader {
                xid: *xid,
                zxid: *zxid,
                err: *err,
            };
            protocol::encode_reply(&header, response.as_ref(), b)
        }),
        Outbound::Encoded {
            xid,
            zxid,
            err,
            body,
        } => put_frame(out, |b| {
            ReplyHeader {
                xid: *xid,
                zxid: *zxid,
                err: *err,
            }
            .encode(b);
            b.extend_from_slice(body);
        }),
        Outbound::Notification(event) | Outbound::RemoteNotification(event) => {
            put_frame(out, |b| protocol::encode_notification(event, b))
        }
        Outbound::Close | Outbound::Reconnect => {}
    }
}

/// A request read and not yet answered, in the order the replies will come back.
struct Pending {
    xid: i32,
    op: i32,
    received: Instant,
    /// Submitted to this server's partition while multi-partition requests were still in flight
    /// ([`ReadSide::wait_for_group`]): its reply may come before theirs.
    after_globals: bool,
}

/// Serves one client until it closes, its session ends, or it sends something malformed. A
/// connection whose first four bytes are a four-letter word gets its answer and is closed.
pub async fn serve(
    socket: TcpStream,
    addr: SocketAddr,
    slot: Slot,
    ctx: Arc<Context>,
) -> Result<(), ConnError> {
    let me = slot.stats.clone();
    let result = serve_conn(socket, addr, slot, &ctx, &me).await;
    // Requests this connection never got answers for are no longer outstanding.
    let left = me.outstanding.swap(0, Ordering::Relaxed);
    ctx.stats.outstanding.fetch_sub(left, Ordering::Relaxed);
    result
}

async fn serve_conn(
    socket: TcpStream,
    addr: SocketAddr,
    slot: Slot,
    ctx: &Arc<Context>,
    me: &Arc<ConnStats>,
) -> Result<(), ConnError> {
    let node = &ctx.node;
    let limits = &ctx.limits;
    let (rd, mut wr) = socket.into_split();
    let mut reader = FrameReader {
        rd,
        buf: BytesMut::with_capacity(4096),
        max: limits.max_frame,
    };
    let first = tokio::time::timeout(limits.connect_timeout, async {
        if !reader.fill(4).await? {
            return if reader.buf.is_empty() {
                Ok(None)
            } else {
                Err(ConnError::Truncated)
            };
        }
        let prefix: [u8; 4] = reader.buf[..4].try_into().expect("four bytes buffered");
        match four_letter::classify(&prefix) {
            Prefix::Word(word) => Ok(Some(Err(word))),
            Prefix::TelnetClose => Ok(None),
            Prefix::Frame => Ok(reader.next().await?.map(Ok)),
        }
    })
    .await;
    let first = match first {
        Ok(r) => r?,
        Err(_) => return Err(ConnError::ConnectTimeout(limits.connect_timeout)),
    };
    let first = match first {
        None => return Ok(()),
        Some(Err(word)) => return answer_four_letter(&mut reader, wr, word, addr, ctx, me).await,
        Some(Ok(frame)) => frame,
    };
    count_received(ctx, me, first.len());
    let connect = ignoring_trailing_bytes(&first, protocol::decode_connect_request)?;
    // ZooKeeper's rule: a server behind what the client has seen refuses it, and the client tries
    // another server. A replica still replaying or catching up gets a moment first.
    // With partitions zxids are Lamport clocks per partition, not one sequence: a client may have
    // seen a larger zxid from another partition, and every read is ordered anyway.
    let caught_up = Instant::now() + CATCH_UP_WAIT;
    while !node.partitioned() && connect.last_zxid_seen > node.last_zxid() {
        if Instant::now() >= caught_up {
            return Err(ConnError::BehindClient {
                seen: connect.last_zxid_seen,
                ours: node.last_zxid(),
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let (tx, mut rx) = mpsc::unbounded_channel();
    let timeout = limits.negotiate_timeout(connect.timeout);
    let client_ip = addr.ip().to_string();
    let (session, passwd, op) = if connect.session_id == 0 {
        let id = node.new_session_id();
        let passwd = node.password(id);
        let op = Op::CreateSession {
            timeout_ms: timeout,
            passwd: passwd.clone(),
            client_ip,
        };
        (id, passwd, op)
    } else {
        let op = Op::ReconnectSession {
            passwd: connect.passwd.clone(),
            client_ip,
        };
        (connect.session_id, connect.passwd.clone(), op)
    };
    let undelivered = Arc::new(Undelivered::default());
    if let Some(old) = node.attach(
        session,
        Route {
            conn: slot.id,
            tx: tx.clone(),
            undelivered: undelivered.clone(),
        },
    ) {
        if old.conn != slot.id {
            let _ = old.tx.send(Outbound::Close);
        }
    }
    node.submit(
        &Command {
            session,
            xid: CONNECT_XID,
            time_ms: 0,
            op,
        },
        slot.id,
    )
    .await?;

    let mut early = Vec::new();
    let err = loop {
        match rx.recv().await {
            Some(n @ (Outbound::Notification(_) | Outbound::RemoteNotification(_))) => {
                early.push(n)
            }
            Some(r @ (Outbound::Reply { .. } | Outbound::Encoded { .. })) => {
                if let Some((CONNECT_XID, _, err)) = reply_of(&r) {
                    break err;
                }
            }
            Some(Outbound::Close | Outbound::Reconnect) | None => {
                // On Reconnect the session's createSession may have been lost with the leader.
                node.detach(session, slot.id);
                return Err(ConnError::NodeStopped);
            }
        }
    };
    let read_only = connect.read_only.map(|_| false);
    let mut out = BytesMut::with_capacity(4096);
    if err != ErrorCode::Ok.as_i32() {
        node.detach(session, slot.id);
        let refused = ConnectResponse {
            protocol_version: 0,
            timeout: 0,
            session_id: 0,
            passwd: vec![0; 16],
            read_only,
        };
        put_frame(&mut out, |b| refused.encode(b));
        wr.write_all(&out).await?;
        let _ = wr.shutdown().await;
        return Err(ConnError::SessionExpired(session));
    }
    node.sessions()
        .set_timeout(session, timeout, Instant::now());
    let accepted = ConnectResponse {
        protocol_version: 0,
        timeout,
        session_id: session,
        passwd,
        read_only,
    };
    put_frame(&mut out, |b| accepted.encode(b));
    for n in &early {
        put_outbound(&mut out, n);
    }
    wr.write_all(&out).await?;
    me.session.store(session, Ordering::Relaxed);
    me.timeout_ms.store(i64::from(timeout), Ordering::Relaxed);
    count_sent(ctx, me, 1 + early.len() as u64);
    tracing::debug!(client = %addr, session = format_args!("{session:#x}"), timeout, "session established");

    let max_outstanding = limits.max_outstanding.min(Semaphore::MAX_PERMITS) as u32;
    let permits = Arc::new(Semaphore::new(max_outstanding as usize));
    let (pending_tx, pending_rx) = mpsc::unbounded_channel();
    let drained = Arc::new(Notify::new());
    let mut writer = tokio::spawn(write_loop(
        wr,
        rx,
        permits.clone(),
        Accounting {
            ctx: ctx.clone(),
            me: me.clone(),
            pending: pending_rx,
            drained: drained.clone(),
        },
    ));
    let conn = ReadSide {
        session,
        id: slot.id,
        node,
        tx: &tx,
        pending: pending_tx,
        drained,
        last_group: std::sync::atomic::AtomicU64::new(NO_GROUP),
        undelivered,
        reach_own_partition: AtomicBool::new(true),
        after_globals: AtomicBool::new(false),
        permits: &permits,
        max_outstanding,
        ctx,
        me,
    };
    let ended = tokio::select! {
        r = read_loop(&mut reader, &conn) => r,
        _ = &mut writer => Ok(Ended::WriterDone),
    };
    if matches!(ended, Ok(Ended::Closing)) {
        // The node answers the closeSession and then closes the route; wait for that.
        if tokio::time::timeout(CLOSE_GRACE, &mut writer)
            .await
            .is_err()
        {
            writer.abort();
        }
    }
    node.detach(session, slot.id);
    drop(tx);
    if !writer.is_finished()
        && tokio::time::timeout(CLOSE_GRACE, &mut writer)
            .await
            .is_err()
    {
        writer.abort();
    }
    ended.map(|_| ())
}

/// Why the reader stopped without an error.
enum Ended {
    /// The client closed the socket; its session lives on until it reconnects or expires.
    Eof,
    /// The client sent closeSession; nothing after it is read.
    Closing,
    /// The writer stopped: the session ended or another connection took it over.
    WriterDone,
}

/// Answers a four-letter word and closes the connection (ZooKeeper counts the word as one packet
/// received and its answer as one sent).
async fn answer_four_letter(
    reader: &mut FrameReader,
    mut wr: OwnedWriteHalf,
    word: &'static str,
    addr: SocketAddr,
    ctx: &Context,
    me: &ConnStats,
) -> Result<(), ConnError> {
    count_received(ctx, me, 0);
    let text = if ctx.limits.whitelist.allows(word) {
        tracing::info!(command = word, client = %addr, "processing four-letter word");
        let arg = if word == "stmk" {
            let got = tokio::time::timeout(ctx.limits.connect_timeout, reader.fill(12)).await;
            match got {
                Ok(Ok(true)) => Some(i64::from_be_bytes(
                    reader.buf[4..12].try_into().expect("twelve bytes buffered"),
                )),
                _ => None,
            }
        } else {
            None
        };
        four_letter::answer(ctx, word, arg).await
    } else {
        tracing::debug!(command = word, "four-letter word not in the whitelist");
        format!("{word} is not executed because it is not in the whitelist.\n")
    };
    wr.write_all(text.as_bytes()).await?;
    count_sent(ctx, me, 1);
    let _ = wr.shutdown().await;
    Ok(())
}

fn count_received(ctx: &Context, me: &ConnStats, frame_len: usize) {
    ctx.stats.packets_received.fetch_add(1, Ordering::Relaxed);
    ctx.stats
        .bytes_received
        .fetch_add(frame_len as u64 + 4, Ordering::Relaxed);
    me.packets_received.fetch_add(1, Ordering::Relaxed);
}

fn count_sent(ctx: &Context, me: &ConnStats, packets: u64) {
    ctx.stats.packets_sent.fetch_add(packets, Ordering::Relaxed);
    me.packets_sent.fetch_add(packets, Ordering::Relaxed);
}

/// `ReadSide::last_group` before the session's first request.
const NO_GROUP: u64 = u64::MAX;

/// What the reader of an established session works with.
struct ReadSide<'a> {
    session: SessionId,
    /// This connection's id: its commands are answered only here.
    id: u64,
    node: &'a Node,
    tx: &'a mpsc::UnboundedSender<Outbound>,
    /// Requests in the order their replies will come back, for the writer's latency accounting.
    pending: mpsc::UnboundedSender<Pending>,
    /// Signalled when the last outstanding reply has been written.
    drained: Arc<Notify>,
    /// The group of the requests in flight ([`NO_GROUP`] before the first).
    last_group: std::sync::atomic::AtomicU64,
    /// The multi-partition requests in flight that this server's replica has not delivered yet.
    undelivered: Arc<Undelivered>,
    /// Every multi-partition request in flight includes this server's partition.
    reach_own_partition: AtomicBool,
    /// The requests in flight to this server's partition went before the multi-partition ones
    /// ahead of them were answered.
    after_globals: AtomicBool,
    permits: &'a Arc<Semaphore>,
    max_outstanding: u32,
    ctx: &'a Context,
    me: &'a ConnStats,
}

impl ReadSide<'_> {
    /// Notes the request as outstanding and submits it, in order with the session's requests in
    /// flight ([`ReadSide::wait_for_group`]).
    async fn submit_after_drain(
        &self,
        cmd: Command,
        received: Instant,
        op: i32,
    ) -> Result<(), ConnError> {
        let dest = self.node.destination(&cmd);
        let after_globals = self.wait_for_group(&cmd, dest).await;
        self.expect_reply(cmd.xid, op, received, after_globals);
        self.node.submit_to(&cmd, self.id, dest).await?;
        Ok(())
    }

    /// Keeps the session's requests in order across groups, which order independently: when
    /// `cmd` goes to another group than the requests in flight, it waits until they are answered.
    /// One case waits less: from multi-partition requests that all include this server's
    /// partition to that partition's group, it waits until this server's replica has delivered
    /// them, which orders `cmd` after them in the partition ([`Undelivered`]); every other
    /// partition executes them before the partition does (execution atomicity), so no other
    /// session can see `cmd`'s effect without theirs. True when `cmd` went that way, or follows
    /// one that did in the same group.
    async fn wait_for_group(&self, cmd: &Command, dest: Destination) -> bool {
        if !self.node.partitioned() {
            return false;
        }
        let group = u64::from(dest.group);
        let last = self.last_group.load(Ordering::Relaxed);
        let layout = self.node.layout();
        let global = u64::from(layout.global_group());
        if last != group {
            let early = last == global
                && self.reach_own_partition.load(Ordering::Relaxed)
                && dest.group == layout.partition();
            if early {
                self.wait_delivered().await;
            } else {
                self.wait_answered().await;
            }
            self.after_globals.store(early, Ordering::Relaxed);
            self.last_group.store(group, Ordering::Relaxed);
        }
        if group == global {
            if !dest.includes_own_partition {
                self.reach_own_partition.store(false, Ordering::Relaxed);
            }
            self.undelivered.add(cmd.xid);
        }
        self.after_globals.load(Ordering::Relaxed)
    }

    /// Waits until every request in flight is answered.
    async fn wait_answered(&self) {
        loop {
            let drained = self.drained.notified();
            if self.me.outstanding.load(Ordering::Acquire) == 0 {
                break;
            }
            drained.await;
        }
        self.undelivered.clear();
        self.reach_own_partition.store(true, Ordering::Relaxed);
    }

    /// Waits until this server's replica has delivered every multi-partition request in flight,
    /// or all are answered (one it never delivers, as when a checkpoint covered it, is forgotten
    /// then).
    async fn wait_delivered(&self) {
        loop {
            let drained = self.drained.notified();
            if self.me.outstanding.load(Ordering::Acquire) == 0 {
                self.undelivered.clear();
                break;
            }
            if self.undelivered.is_empty() {
                break;
            }
            tokio::select! {
                _ = drained => {}
                _ = self.undelivered.emptied() => {}
            }
        }
    }

    /// Notes that request `xid` of `op` awaits a reply in order.
    fn expect_reply(&self, xid: i32, op: i32, received: Instant, after_globals: bool) {
        self.me.outstanding.fetch_add(1, Ordering::Relaxed);
        self.ctx.stats.outstanding.fetch_add(1, Ordering::Relaxed);
        let _ = self.pending.send(Pending {
            xid,
            op,
            received,
            after_globals,
        });
    }
}

async fn read_loop(reader: &mut FrameReader, conn: &ReadSide<'_>) -> Result<Ended, ConnError> {
    let ReadSide {
        session,
        node,
        tx,
        permits,
        max_outstanding,
        ..
    } = *conn;
    while let Some(frame) = reader.next().await? {
        let received = Instant::now();
        count_received(conn.ctx, conn.me, frame.len());
        node.sessions().touch(session, received);
        let (header, rest) = protocol::decode_request_header(&frame)?;
        let decoded = ignoring_trailing_bytes(rest, |b| protocol::decode_request_body(header, b));
        let request = match decoded {
            Ok(r) => r,
            Err(e) => {
                // ZooKeeper answers an unknown opcode with Unimplemented and closes the connection,
                // and a malformed body of a known one with MarshallingError, keeping the session.
                let unknown = matches!(e, protocol::DecodeError::UnknownOpCode { .. });
                tracing::info!(xid = header.xid, op = header.op, error = %e, "bad request");
                let err = if unknown {
                    ErrorCode::Unimplemented
                } else {
                    ErrorCode::MarshallingError
                };
                conn.expect_reply(header.xid, header.op, received, false);
                answer_in_order(tx, permits, max_outstanding, header.xid, err).await;
                if unknown {
                    let _ = tx.send(Outbound::Close);
                    return Ok(Ended::WriterDone);
                }
                continue;
            }
        };
        let op = match request {
            Request::Ping => {
                let zxid = node.last_zxid();
                let pong = Outbound::Reply {
                    xid: header.xid,
                    zxid,
                    err: 0,
                    response: None,
                };
                let latency = received.elapsed();
                conn.ctx.stats.answered(header.op, latency, 0);
                conn.me.answered(header.op, header.xid, zxid, latency);
                if tx.send(pong).is_err() {
                    return Ok(Ended::WriterDone);
                }
                continue;
            }
            Request::Auth(auth) => Op::AddAuth {
                scheme: auth.scheme,
                auth: auth.auth,
            },
            Request::CloseSession => {
                let close = Command {
                    session,
                    xid: header.xid,
                    time_ms: 0,
                    op: Op::CloseSession,
                };
                conn.submit_after_drain(close, received, header.op).await?;
                return Ok(Ended::Closing);
            }
            request => {
                permits
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| ConnError::NodeStopped)?
                    .forget();
                Op::Request(request)
            }
        };
        let cmd = Command {
            session,
            xid: header.xid,
            time_ms: 0,
            op,
        };
        conn.submit_after_drain(cmd, received, header.op).await?;
    }
    Ok(Ended::Eof)
}

/// Decodes a record as ZooKeeper's jute deserializers do: bytes after the record are ignored, not
/// an error (a ConnectRequest or request body with extra bytes is accepted).
fn ignoring_trailing_bytes<T>(
    body: &[u8],
    decode: impl Fn(&[u8]) -> Result<T, protocol::DecodeError>,
) -> Result<T, protocol::DecodeError> {
    match decode(body) {
        Err(protocol::DecodeError::TrailingBytes(n)) if n <= body.len() => {
            decode(&body[..body.len() - n])
        }
        r => r,
    }
}

/// Sends an error reply of the front end's own after every reply still owed to the client, so
/// replies stay in xid order: it waits until the writer has taken all outstanding replies.
async fn answer_in_order(
    tx: &mpsc::UnboundedSender<Outbound>,
    permits: &Arc<Semaphore>,
    max_outstanding: u32,
    xid: i32,
    err: ErrorCode,
) {
    let Ok(drained) = permits.acquire_many(max_outstanding).await else {
        return;
    };
    let _ = tx.send(Outbound::Reply {
        xid,
        zxid: -1,
        err: err.as_i32(),
        response: None,
    });
    // The writer returns a permit for every reply it takes, this one included: keep one back so
    // the count stays at `max_outstanding` minus the replies still owed.
    drained.forget();
    permits.add_permits(max_outstanding.saturating_sub(1) as usize);
}

/// The xid, zxid and error of a reply.
fn reply_of(msg: &Outbound) -> Option<(i32, i64, i32)> {
    match msg {
        Outbound::Reply { xid, zxid, err, .. } | Outbound::Encoded { xid, zxid, err, .. } => {
            Some((*xid, *zxid, *err))
        }
        _ => None,
    }
}

/// Appends one message to `out` and does its accounting; true when the connection must close
/// after it.
fn write_one(
    out: &mut BytesMut,
    msg: &Outbound,
    acct: &mut Accounting,
    queue: &mut VecDeque<Pending>,
    permits: &Semaphore,
    frames: &mut u64,
) -> bool {
    let mut close = false;
    match msg {
        Outbound::Close => close = true,
        Outbound::Reply { .. } | Outbound::Encoded { .. } => {
            let (xid, zxid, err) = reply_of(msg).expect("a reply");
            acct.replied(queue, xid, zxid, err);
            if xid == xid::AUTH && err == ErrorCode::AuthFailed.as_i32() {
                close = true;
            } else if xid != xid::PING && xid != xid::AUTH {
                permits.add_permits(1);
            }
        }
        Outbound::Notification(_) | Outbound::RemoteNotification(_) => {}
        Outbound::Reconnect => {
            if acct.me.outstanding.load(Ordering::Relaxed) > 0 {
                tracing::info!("requests in flight may have been lost; closing the connection");
                close = true;
            }
        }
    }
    let before = out.len();
    put_outbound(out, msg);
    if out.len() > before {
        *frames += 1;
        if reply_of(msg).is_some() {
            acct.ctx.stats.response_size(out.len() - before - 4);
        }
    }
    close
}

/// The writer's side of the statistics: it matches replies to the requests the reader noted.
struct Accounting {
    ctx: Arc<Context>,
    me: Arc<ConnStats>,
    pending: mpsc::UnboundedReceiver<Pending>,
    drained: Arc<Notify>,
}

impl Accounting {
    /// Records the reply to `xid`. Replies come back in request order, except pings, which the
    /// reader answers at once and accounts for itself.
    /// Moves the requests the reader noted since into `queue`.
    fn take_pending(&mut self, queue: &mut VecDeque<Pending>) {
        while let Ok(p) = self.pending.try_recv() {
            queue.push_back(p);
        }
    }

    fn replied(&mut self, queue: &mut VecDeque<Pending>, xid: i32, zxid: i64, err: i32) {
        self.take_pending(queue);
        if queue.front().is_none_or(|p| p.xid != xid) {
            return;
        }
        let Some(p) = queue.pop_front() else { return };
        let latency = p.received.elapsed();
        self.ctx.stats.answered(p.op, latency, err);
        self.me.answered(p.op, xid, zxid, latency);
        if self.me.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.drained.notify_one();
        }
        self.ctx.stats.outstanding.fetch_sub(1, Ordering::Relaxed);
        if p.op == protocol::OpCode::Auth as i32 && err == ErrorCode::AuthFailed.as_i32() {
            self.ctx.stats.auth_failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What the writer holds back. Replies leave in request order: requests to different groups, or
/// multi-partition requests, finish in any order. An event from this server's replica that comes
/// after the reply to a request sent ahead of multi-partition ones ([`Pending::after_globals`])
/// while that reply is held leaves after it: the replica sends replies and events in its execution
/// order, and the event may fire a watch that reply sets, which a client drops if the event comes
/// first. Events from other partitions are not held (as when nothing is).
#[derive(Default)]
struct Held {
    /// Early replies to other requests, by xid.
    early: HashMap<i32, VecDeque<Outbound>>,
    /// Early replies to `after_globals` requests and this replica's events behind them, in the
    /// order they came.
    behind: VecDeque<Outbound>,
}

impl Held {
    /// `msg` if it may be written now; otherwise it is held. `queue`: the requests awaiting a
    /// reply, oldest first.
    fn admit(&mut self, msg: Outbound, queue: &VecDeque<Pending>) -> Option<Outbound> {
        match &msg {
            Outbound::Notification(_) if !self.behind.is_empty() => {
                self.behind.push_back(msg);
                None
            }
            _ => match reply_of(&msg) {
                Some((xid, _, _))
                    if xid != xid::PING && queue.front().is_some_and(|p| p.xid != xid) =>
                {
                    match queue.iter().find(|p| p.xid == xid) {
                        Some(p) if p.after_globals => self.behind.push_back(msg),
                        Some(_) => self.early.entry(xid).or_default().push_back(msg),
                        None => return Some(msg),
                    }
                    None
                }
                _ => Some(msg),
            },
        }
    }

    /// A held message that may be written now, after those written so far.
    fn next_ready(&mut self, queue: &VecDeque<Pending>) -> Option<Outbound> {
        let head = queue.front().map(|p| p.xid);
        if let Some(x) = head {
            if let Some(q) = self.early.get_mut(&x) {
                let msg = q.pop_front();
                if q.is_empty() {
                    self.early.remove(&x);
                }
                return msg;
            }
        }
        let writable = match self.behind.front()? {
            Outbound::Notification(_) => true,
            msg => reply_of(msg).is_some_and(|(xid, _, _)| Some(xid) == head),
        };
        if writable {
            self.behind.pop_front()
        } else {
            None
        }
    }
}

async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Outbound>,
    permits: Arc<Semaphore>,
    mut acct: Accounting,
) -> Result<(), ConnError> {
    let mut out = BytesMut::with_capacity(WRITE_BATCH);
    let mut queue = VecDeque::new();
    let mut held = Held::default();
    while let Some(msg) = rx.recv().await {
        let mut close = false;
        let mut next = Some(msg);
        let mut frames = 0;
        while let Some(msg) = next.take() {
            acct.take_pending(&mut queue);
            let mut ready = held.admit(msg, &queue);
            while let Some(msg) = ready.take() {
                close |= write_one(&mut out, &msg, &mut acct, &mut queue, &permits, &mut frames);
                ready = held.next_ready(&queue);
            }
            if close || out.len() >= WRITE_BATCH {
                break;
            }
            next = rx.try_recv().ok();
        }
        wr.write_all(&out).await?;
        count_sent(&acct.ctx, &acct.me, frames);
        out.clear();
        if close {
            break;
        }
    }
    let _ = wr.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::WatcherEvent;

    fn pending(xid: i32, after_globals: bool) -> Pending {
        Pending {
            xid,
            op: 0,
            received: Instant::now(),
            after_globals,
        }
    }

    fn reply(xid: i32) -> Outbound {
        Outbound::Reply {
            xid,
            zxid: 0,
            err: 0,
            response: None,
        }
    }

    fn event(path: &str) -> WatcherEvent {
        WatcherEvent {
            event_type: 3,
            state: 3,
            path: path.into(),
        }
    }

    /// What the writer sends of `arrivals`, for requests `queue`: each written reply leaves the
    /// queue as `Accounting::replied` takes it.
    fn written(mut queue: VecDeque<Pending>, arrivals: Vec<Outbound>) -> Vec<String> {
        let mut held = Held::default();
        let mut out = Vec::new();
        for msg in arrivals {
            let mut ready = held.admit(msg, &queue);
            while let Some(msg) = ready.take() {
                out.push(match &msg {
                    Outbound::Notification(e) => format!("event {}", e.path),
                    Outbound::RemoteNotification(e) => format!("remote {}", e.path),
                    m => {
                        let (xid, _, _) = reply_of(m).expect("a reply");
                        if queue.front().is_some_and(|p| p.xid == xid) {
                            queue.pop_front();
                        }
                        format!("reply {xid}")
                    }
                });
                ready = held.next_ready(&queue);
            }
        }
        out
    }

    #[test]
    fn replies_leave_in_request_order() {
        let queue = VecDeque::from([pending(1, false), pending(2, false), pending(3, false)]);
        let out = written(queue, vec![reply(3), reply(2), reply(1)]);
        assert_eq!(out, ["reply 1", "reply 2", "reply 3"]);
    }

    /// Requests 3 and 4 went to this server's partition before the multi-partition 1 and 2 were
    /// answered: this replica's event after reply 3 (it may fire the watch reply 3 sets) waits for
    /// it; one before reply 4 goes before reply 4; other partitions' events are not held.
    #[test]
    fn this_replicas_events_stay_behind_a_held_reply_that_came_before_them() {
        let queue = VecDeque::from([
            pending(1, false),
            pending(2, false),
            pending(3, true),
            pending(4, true),
        ]);
        let arrivals = vec![
            reply(2),
            Outbound::Notification(event("/before")),
            reply(3),
            Outbound::Notification(event("/watched-by-3")),
            Outbound::RemoteNotification(event("/remote")),
            reply(4),
            Outbound::Notification(event("/after-4")),
            reply(1),
            Outbound::Notification(event("/late")),
        ];
        let out = written(queue, arrivals);
        assert_eq!(
            out,
            [
                "event /before",
                "remote /remote",
                "reply 1",
                "reply 2",
                "reply 3",
                "event /watched-by-3",
                "reply 4",
                "event /after-4",
                "event /late",
            ]
        );
    }

    #[test]
    fn nothing_is_held_when_replies_come_in_order() {
        let queue = VecDeque::from([pending(1, false), pending(2, true)]);
        let arrivals = vec![
            reply(1),
            Outbound::Notification(event("/a")),
            reply(2),
            Outbound::Notification(event("/b")),
        ];
        let out = written(queue, arrivals);
        assert_eq!(out, ["reply 1", "event /a", "reply 2", "event /b"]);
    }
}
