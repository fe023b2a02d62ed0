//! A minimal ZooKeeper wire-protocol client for what `zookeeper-client` hides: exact error codes for
//! paths the crate rejects locally, per-op multi results, the order of frames on the wire (events
//! before replies), duplicate notifications, and connections dropped without closeSession.
//!
//! Invariant: `buf` holds the bytes received but not yet returned as frames, so a timed-out
//! [`RawConn::next_frame`] loses nothing (reads are cancel-safe `read_buf` calls).

use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Operation codes (zookeeper.jute / ZooDefs.OpCode).
pub mod op {
    pub const CREATE: i32 = 1;
    pub const DELETE: i32 = 2;
    pub const EXISTS: i32 = 3;
    pub const GET_DATA: i32 = 4;
    pub const SET_DATA: i32 = 5;
    pub const GET_ACL: i32 = 6;
    pub const SET_ACL: i32 = 7;
    pub const GET_CHILDREN: i32 = 8;
    pub const SYNC: i32 = 9;
    pub const PING: i32 = 11;
    pub const GET_CHILDREN2: i32 = 12;
    pub const CHECK: i32 = 13;
    pub const MULTI: i32 = 14;
    pub const CREATE2: i32 = 15;
    pub const CHECK_WATCHES: i32 = 17;
    pub const REMOVE_WATCHES: i32 = 18;
    pub const CREATE_CONTAINER: i32 = 19;
    pub const CREATE_TTL: i32 = 21;
    pub const MULTI_READ: i32 = 22;
    pub const AUTH: i32 = 100;
    pub const SET_WATCHES: i32 = 101;
    pub const SET_WATCHES2: i32 = 105;
    pub const GET_EPHEMERALS: i32 = 103;
    pub const GET_ALL_CHILDREN_NUMBER: i32 = 104;
    pub const ADD_WATCH: i32 = 106;
    pub const CLOSE_SESSION: i32 = -11;
    pub const ERROR: i32 = -1;
}

/// Error codes (KeeperException.Code).
pub mod err {
    pub const OK: i32 = 0;
    pub const RUNTIME_INCONSISTENCY: i32 = -2;
    pub const MARSHALLING_ERROR: i32 = -5;
    pub const UNIMPLEMENTED: i32 = -6;
    pub const BAD_ARGUMENTS: i32 = -8;
    pub const NO_NODE: i32 = -101;
    pub const NO_AUTH: i32 = -102;
    pub const BAD_VERSION: i32 = -103;
    pub const NO_CHILDREN_FOR_EPHEMERALS: i32 = -108;
    pub const NODE_EXISTS: i32 = -110;
    pub const NOT_EMPTY: i32 = -111;
    pub const SESSION_EXPIRED: i32 = -112;
    pub const INVALID_ACL: i32 = -114;
    pub const AUTH_FAILED: i32 = -115;
    pub const NO_WATCHER: i32 = -121;
}

/// Watch event types (Watcher.Event.EventType).
pub mod event {
    pub const NODE_CREATED: i32 = 1;
    pub const NODE_DELETED: i32 = 2;
    pub const NODE_DATA_CHANGED: i32 = 3;
    pub const NODE_CHILDREN_CHANGED: i32 = 4;
    /// KeeperState.SyncConnected.
    pub const STATE_SYNC_CONNECTED: i32 = 3;
}

/// How long a reply may take before a call panics.
const REPLY_WAIT: Duration = Duration::from_secs(15);

/// A reply frame: header plus the undecoded body (empty when `err != 0`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub xid: i32,
    pub zxid: i64,
    pub err: i32,
    pub body: Vec<u8>,
}

/// A watch notification (xid -1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: i32,
    pub state: i32,
    pub path: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Reply(Reply),
    Event(Event),
    /// The server closed the connection.
    Closed,
}

/// One TCP connection carrying one session.
pub struct RawConn {
    stream: TcpStream,
    buf: BytesMut,
    next_xid: i32,
    pub session_id: i64,
    pub password: Vec<u8>,
    pub timeout_ms: i32,
}

impl RawConn {
    /// Opens a new session asking for `timeout_ms`.
    pub async fn connect(addr: &str, timeout_ms: i32) -> RawConn {
        RawConn::resume(addr, timeout_ms, 0, &[0; 16]).await
    }

    /// Opens a connection presenting `session_id`/`password`; a `session_id` of 0 in the result means
    /// the server refused the session (expired or wrong password).
    pub async fn resume(addr: &str, timeout_ms: i32, session_id: i64, password: &[u8]) -> RawConn {
        RawConn::try_resume(addr, timeout_ms, session_id, password)
            .await
            .expect("connection closed before the connect response")
    }

    /// Like [`RawConn::resume`]; `None` if the server closes the connection instead of answering.
    pub async fn try_resume(
        addr: &str,
        timeout_ms: i32,
        session_id: i64,
        password: &[u8],
    ) -> Option<RawConn> {
        let stream = tokio::time::timeout(REPLY_WAIT, TcpStream::connect(addr))
            .await
            .expect("tcp connect timed out")
            .ok()?; // a server refusing connections may accept and reset at once
                    // Fails only if the server already reset the connection, which the write below reports.
        let _ = stream.set_nodelay(true);
        let mut conn = RawConn {
            stream,
            buf: BytesMut::new(),
            next_xid: 1,
            session_id: 0,
            password: Vec::new(),
            timeout_ms: 0,
        };
        let mut body = Jute::new();
        body.i32(0)
            .i64(0)
            .i32(timeout_ms)
            .i64(session_id)
            .buffer(password)
            .bool(false);
        let mut frame = (body.0.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body.0);
        // A server refusing the connection may reset it before or while we write.
        conn.stream.write_all(&frame).await.ok()?;
        let frame = tokio::time::timeout(REPLY_WAIT, conn.read_frame())
            .await
            .expect("connect response timed out")?;
        let mut r = Reader::new(&frame);
        let _protocol_version = r.i32();
        conn.timeout_ms = r.i32();
        conn.session_id = r.i64();
        conn.password = r.buffer().unwrap_or_default();
        Some(conn)
    }

    /// Sends a ping (xid -2) and waits for its reply, returning the events that arrived before it.
    pub async fn ping(&mut self) -> Vec<Event> {
        self.send_with_xid(-2, op::PING, &[]).await;
        let mut events = Vec::new();
        loop {
            match self.next_frame(REPLY_WAIT).await {
                Some(Frame::Event(e)) => events.push(e),
                Some(Frame::Reply(r)) if r.xid == -2 => {
                    assert_eq!(r.err, err::OK, "ping reply");
                    return events;
                }
                other => panic!("expected ping reply, got {other:?}"),
            }
        }
    }

    /// Sends a request and returns its xid.
    pub async fn send(&mut self, op: i32, body: &[u8]) -> i32 {
        let xid = self.next_xid;
        self.next_xid += 1;
        self.send_with_xid(xid, op, body).await;
        xid
    }

    pub async fn send_with_xid(&mut self, xid: i32, op: i32, body: &[u8]) {
        let mut frame = Jute::new();
        frame.i32(xid).i32(op);
        frame.0.extend_from_slice(body);
        self.write_frame(&frame.0).await;
    }

    /// Sends a request and waits for its reply, returning the events that arrived before it.
    pub async fn call(&mut self, op: i32, body: &[u8]) -> (Vec<Event>, Reply) {
        let xid = self.send(op, body).await;
        let mut events = Vec::new();
        loop {
            match self.next_frame(REPLY_WAIT).await {
                Some(Frame::Event(e)) => events.push(e),
                Some(Frame::Reply(r)) if r.xid == xid => return (events, r),
                Some(Frame::Reply(r)) if r.xid == -2 => continue, // ping reply
                Some(other) => panic!("expected reply to xid {xid}, got {other:?}"),
                None => panic!("no reply to xid {xid} (op {op}) within {REPLY_WAIT:?}"),
            }
        }
    }

    /// Like [`RawConn::call`], asserting no event arrived first.
    pub async fn request(&mut self, op: i32, body: &[u8]) -> Reply {
        let (events, reply) = self.call(op, body).await;
        assert!(
            events.is_empty(),
            "unexpected events before reply to op {op}: {events:?}"
        );
        reply
    }

    /// The next frame, or `None` if nothing complete arrives within `wait`.
    pub async fn next_frame(&mut self, wait: Duration) -> Option<Frame> {
        let frame = match tokio::time::timeout(wait, self.read_frame()).await {
            Err(_) => return None,
            Ok(None) => return Some(Frame::Closed),
            Ok(Some(frame)) => frame,
        };
        let mut r = Reader::new(&frame);
        let xid = r.i32();
        let zxid = r.i64();
        let err = r.i32();
        if xid == -1 {
            let kind = r.i32();
            let state = r.i32();
            let path = r.string().unwrap_or_default();
            return Some(Frame::Event(Event { kind, state, path }));
        }
        Some(Frame::Reply(Reply {
            xid,
            zxid,
            err,
            body: r.rest().to_vec(),
        }))
    }

    /// Collects the events arriving within `wait` (replies other than pings are a test failure).
    pub async fn events_within(&mut self, wait: Duration) -> Vec<Event> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut events = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_frame(left).await {
                None => return events,
                Some(Frame::Event(e)) => events.push(e),
                Some(Frame::Reply(r)) if r.xid == -2 => {}
                Some(other) => panic!("expected only events, got {other:?}"),
            }
        }
    }

    /// Sends closeSession and waits for its reply.
    pub async fn close_session(mut self) {
        let reply = self.request(op::CLOSE_SESSION, &[]).await;
        assert_eq!(reply.err, err::OK);
    }

    /// Whether the server has closed this connection (waits up to `wait`).
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_frame(left).await {
                None => return false,
                Some(Frame::Closed) => return true,
                Some(_) => {}
            }
        }
    }

    /// Writes `bytes` as they are: a frame prefix, part of a frame, or garbage.
    pub async fn write_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write raw bytes");
    }

    /// Closes the sending direction only (a TCP half-close); replies can still be read.
    pub async fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown().await;
    }

    async fn write_frame(&mut self, body: &[u8]) {
        let mut out = Vec::with_capacity(body.len() + 4);
        out.extend_from_slice(&(body.len() as i32).to_be_bytes());
        out.extend_from_slice(body);
        self.stream.write_all(&out).await.expect("write frame");
    }

    /// Cancel-safe: partial frames stay in `buf`. `None` when the peer closed the connection.
    async fn read_frame(&mut self) -> Option<Vec<u8>> {
        loop {
            if self.buf.len() >= 4 {
                let len = i32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
                assert!(len >= 0, "negative frame length {len}");
                let len = len as usize;
                if self.buf.len() >= 4 + len {
                    self.buf.advance(4);
                    return Some(self.buf.split_to(len).to_vec());
                }
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
}

/// Jute encoder: big-endian integers, length-prefixed buffers and strings, one-byte booleans.
#[derive(Default)]
pub struct Jute(pub Vec<u8>);

impl Jute {
    pub fn new() -> Jute {
        Jute(Vec::new())
    }
    pub fn i32(&mut self, v: i32) -> &mut Jute {
        self.0.put_i32(v);
        self
    }
    pub fn i64(&mut self, v: i64) -> &mut Jute {
        self.0.put_i64(v);
        self
    }
    pub fn bool(&mut self, v: bool) -> &mut Jute {
        self.0.put_u8(u8::from(v));
        self
    }
    pub fn buffer(&mut self, v: &[u8]) -> &mut Jute {
        self.0.put_i32(v.len() as i32);
        self.0.extend_from_slice(v);
        self
    }
    pub fn string(&mut self, v: &str) -> &mut Jute {
        self.buffer(v.as_bytes())
    }
    /// A vector of ACLs `(perms, scheme, id)`.
    pub fn acls(&mut self, acls: &[(i32, &str, &str)]) -> &mut Jute {
        self.i32(acls.len() as i32);
        for (perms, scheme, id) in acls {
            self.i32(*perms).string(scheme).string(id);
        }
        self
    }
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// `world:anyone` with all permissions.
pub const OPEN_ACL: &[(i32, &str, &str)] = &[(31, "world", "anyone")];

/// Body of create/create2/createContainer: path, data, acl, flags.
pub fn create_body(path: &str, data: &[u8], flags: i32) -> Vec<u8> {
    let mut j = Jute::new();
    j.string(path).buffer(data).acls(OPEN_ACL).i32(flags);
    j.0
}

/// Body of createTTL: path, data, acl, flags, ttl.
pub fn create_ttl_body(path: &str, data: &[u8], flags: i32, ttl: i64) -> Vec<u8> {
    let mut j = Jute::new();
    j.string(path)
        .buffer(data)
        .acls(OPEN_ACL)
        .i32(flags)
        .i64(ttl);
    j.0
}

/// Body of a request carrying a path and a watch flag (exists, getData, getChildren[2]).
pub fn path_watch_body(path: &str, watch: bool) -> Vec<u8> {
    let mut j = Jute::new();
    j.string(path).bool(watch);
    j.0
}

/// Body of a request carrying only a path (sync, getACL, getEphemerals, getAllChildrenNumber).
pub fn path_body(path: &str) -> Vec<u8> {
    let mut j = Jute::new();
    j.string(path);
    j.0
}

/// Body of delete or check: path, version.
pub fn path_version_body(path: &str, version: i32) -> Vec<u8> {
    let mut j = Jute::new();
    j.string(path).i32(version);
    j.0
}

/// Body of setData: path, data, version.
pub fn set_data_body(path: &str, data: &[u8], version: i32) -> Vec<u8> {
    let mut j = Jute::new();
    j.string(path).buffer(data).i32(version);
    j.0
}

/// Body of removeWatches/checkWatches (type 1 children, 2 data, 3 any) and addWatch (mode 0
/// persistent, 1 persistent-recursive): path, int.
pub fn path_int_body(path: &str, v: i32) -> Vec<u8> {
    let mut j = Jute::new();
    j.string(path).i32(v);
    j.0
}

/// A multi/multiRead body from `(op, body)` pairs, terminated by `{-1, true, -1}`.
pub fn multi_body(ops: &[(i32, Vec<u8>)]) -> Vec<u8> {
    let mut j = Jute::new();
    for (op, body) in ops {
        j.i32(*op).bool(false).i32(-1);
        j.0.extend_from_slice(body);
    }
    j.i32(-1).bool(true).i32(-1);
    j.0
}

/// One entry of a multi reply: its header type, header err, and decoded payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MultiResult {
    Create { path: String },
    Create2 { path: String, stat: Stat },
    SetData { stat: Stat },
    Delete,
    Check,
    GetData { data: Vec<u8>, stat: Stat },
    GetChildren { children: Vec<String> },
    Error { err: i32 },
}

/// Decodes a multi or multiRead reply body.
pub fn parse_multi(body: &[u8]) -> Vec<MultiResult> {
    let mut r = Reader::new(body);
    let mut out = Vec::new();
    loop {
        let kind = r.i32();
        let done = r.bool();
        let header_err = r.i32();
        if done {
            assert_eq!((kind, header_err), (-1, -1), "multi terminator");
            assert!(r.rest().is_empty(), "bytes after the multi terminator");
            return out;
        }
        out.push(match kind {
            op::CREATE => MultiResult::Create {
                path: r.string().expect("path"),
            },
            op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL => MultiResult::Create2 {
                path: r.string().expect("path"),
                stat: r.stat(),
            },
            op::SET_DATA => MultiResult::SetData { stat: r.stat() },
            op::DELETE => MultiResult::Delete,
            op::CHECK => MultiResult::Check,
            op::GET_DATA => MultiResult::GetData {
                data: r.buffer().unwrap_or_default(),
                stat: r.stat(),
            },
            op::GET_CHILDREN => MultiResult::GetChildren {
                children: r.strings(),
            },
            op::ERROR => {
                let err = r.i32();
                assert_eq!(err, header_err, "multi error header and body disagree");
                MultiResult::Error { err }
            }
            other => panic!("unexpected multi result type {other}"),
        });
    }
}

/// The Stat record in wire order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub data_length: i32,
    pub num_children: i32,
    pub pzxid: i64,
}

/// Jute decoder over a complete body; running short is a test failure.
pub struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub fn new(b: &'a [u8]) -> Reader<'a> {
        Reader(b)
    }
    pub fn i32(&mut self) -> i32 {
        assert!(self.0.len() >= 4, "body too short for i32");
        self.0.get_i32()
    }
    pub fn i64(&mut self) -> i64 {
        assert!(self.0.len() >= 8, "body too short for i64");
        self.0.get_i64()
    }
    pub fn bool(&mut self) -> bool {
        assert!(!self.0.is_empty(), "body too short for bool");
        self.0.get_u8() != 0
    }
    /// `None` for a null (-1 length) buffer.
    pub fn buffer(&mut self) -> Option<Vec<u8>> {
        let len = self.i32();
        if len < 0 {
            return None;
        }
        let len = len as usize;
        assert!(self.0.len() >= len, "body too short for buffer of {len}");
        let v = self.0[..len].to_vec();
        self.0.advance(len);
        Some(v)
    }
    pub fn string(&mut self) -> Option<String> {
        self.buffer()
            .map(|b| String::from_utf8(b).expect("utf-8 string"))
    }
    pub fn strings(&mut self) -> Vec<String> {
        let n = self.i32();
        (0..n.max(0))
            .map(|_| self.string().expect("string in vector"))
            .collect()
    }
    pub fn stat(&mut self) -> Stat {
        Stat {
            czxid: self.i64(),
            mzxid: self.i64(),
            ctime: self.i64(),
            mtime: self.i64(),
            version: self.i32(),
            cversion: self.i32(),
            aversion: self.i32(),
            ephemeral_owner: self.i64(),
            data_length: self.i32(),
            num_children: self.i32(),
            pzxid: self.i64(),
        }
    }
    pub fn rest(&self) -> &'a [u8] {
        self.0
    }
}

/// Body of setWatches (`persistent` `None`, opcode 101) or setWatches2 (`Some((persistent,
/// persistent_recursive))`, opcode 105): relativeZxid, then the path lists.
pub fn set_watches_body(
    relative_zxid: i64,
    data: &[&str],
    exist: &[&str],
    child: &[&str],
    persistent: Option<(&[&str], &[&str])>,
) -> Vec<u8> {
    let mut j = Jute::new();
    j.i64(relative_zxid);
    let mut lists = vec![data, exist, child];
    if let Some((p, r)) = persistent {
        lists.push(p);
        lists.push(r);
    }
    for list in lists {
        j.i32(list.len() as i32);
        for path in list {
            j.string(path);
        }
    }
    j.0
}
