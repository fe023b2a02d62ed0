//! The session task: one tokio task per `Client` that owns the TCP connection, writes batched
//! requests, matches replies to requests by xid, pings, and moves the session to the next server
//! when a connection is lost.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use protocol::{
    decode_connect_response, decode_reply, decode_reply_header, encode_frame, split_frame, xid,
    AddWatchMode, ConnectRequest, ErrorCode, EventType, KeeperState, OpCode, Request,
    RequestHeader, Response,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{sleep_until, timeout, Instant};

use super::watches::WatchRegistry;
use super::{ClientError, ClientOptions, Reply, State, WatchedEvent};

/// One request handed to the session task.
pub(crate) struct Submit {
    pub req: Request,
    /// `None` for fire-and-forget requests (addauth, as the Java client sends it).
    pub reply: Option<oneshot::Sender<Result<Reply, ClientError>>>,
}

/// What a reply must do to the watch registry when it succeeds.
enum WatchReg {
    Data(String),
    /// exists with watch: a data watch if the node exists, an exist watch if not.
    Exists(String),
    Child(String),
    Persistent(String, AddWatchMode),
}

struct Pending {
    xid: i32,
    op: OpCode,
    reg: Option<WatchReg>,
    reply: Option<oneshot::Sender<Result<Reply, ClientError>>>,
}

/// How a served connection ended.
enum End {
    /// closeSession answered, or every `Client` handle dropped: the task stops.
    Closed,
    /// The connection broke; the session may live on at another server (a server answering the
    /// reconnect with timeout 0 says it expired).
    Lost(String),
}

/// Largest number of bytes queued for writing before the task stops taking new requests.
const WRITE_HIGH_WATER: usize = 256 * 1024;
/// Requests taken from the queue in one go before the task writes and reads again.
const BATCH: usize = 512;

pub(crate) struct Session {
    pub opts: ClientOptions,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    /// Negotiated timeout in milliseconds (0 before the first connect).
    pub timeout_ms: i32,
    pub last_zxid: i64,
    pub next_xid: i32,
    pub watches: Arc<Mutex<WatchRegistry>>,
    pub auth: Vec<(String, Vec<u8>)>,
    pub events: mpsc::UnboundedSender<WatchedEvent>,
    pub state: watch::Sender<State>,
    pub info: Arc<Mutex<super::SessionInfo>>,
}

impl Session {
    /// Runs the session until it is closed or expires. `rx` closing (every handle dropped) closes
    /// the session too.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Submit>) {
        let mut next_host = 0usize;
        let mut backoff = Duration::from_millis(10);
        loop {
            let stream = match self.connect_round(&mut next_host).await {
                Ok(Some(s)) => s,
                Ok(None) => {
                    // Nobody answered this round: wait a little and try again, as the Java client
                    // does forever; `Client::connect` bounds how long its caller waits.
                    if rx.is_closed() {
                        self.finish(State::Closed);
                        return;
                    }
                    // As the Java client fails its queued packets when a connect attempt fails.
                    while let Ok(s) = rx.try_recv() {
                        if let Some(r) = s.reply {
                            let _ = r.send(Err(ClientError::ConnectionLoss));
                        }
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
                Err(()) => {
                    self.expired(&mut rx);
                    return;
                }
            };
            backoff = Duration::from_millis(10);
            match self.serve(stream, &mut rx).await {
                End::Closed => {
                    // The event first: whoever waits for the state then finds the event queued.
                    self.event(KeeperState::Closed, EventType::None, None);
                    self.finish(State::Closed);
                    return;
                }
                End::Lost(why) => {
                    tracing::debug!(%why, "connection lost; trying the next server");
                    let _ = self.state.send(State::Connecting);
                    self.event(KeeperState::Disconnected, EventType::None, None);
                }
            }
        }
    }

    fn event(&self, state: KeeperState, event_type: EventType, path: Option<String>) {
        let _ = self.events.send(WatchedEvent {
            state,
            event_type,
            path,
        });
    }

    fn finish(&self, state: State) {
        let _ = self.state.send(state);
    }

    fn expired(&mut self, rx: &mut mpsc::Receiver<Submit>) {
        self.event(KeeperState::Expired, EventType::None, None);
        self.finish(State::Closed);
        rx.close();
        while let Ok(s) = rx.try_recv() {
            if let Some(r) = s.reply {
                let _ = r.send(Err(ClientError::SessionExpired));
            }
        }
    }

    /// Tries every host once, starting at `next_host`. `Ok(None)`: none answered; `Err(())`: a
    /// server said the session has expired.
    async fn connect_round(&mut self, next_host: &mut usize) -> Result<Option<TcpStream>, ()> {
        let n = self.opts.hosts.len();
        let per_host = Duration::from_millis(
            (self.opts.session_timeout_ms.max(1) as u64 / n.max(1) as u64).max(100),
        );
        for _ in 0..n {
            let host = self.opts.hosts[*next_host % n].clone();
            *next_host = (*next_host + 1) % n;
            let _ = self.state.send(State::Connecting);
            match timeout(per_host, self.handshake(&host)).await {
                Ok(Ok(Some(stream))) => return Ok(Some(stream)),
                Ok(Ok(None)) => return Err(()),
                Ok(Err(e)) => tracing::debug!(%host, error = %e, "cannot connect"),
                Err(_) => tracing::debug!(%host, "connect timed out"),
            }
        }
        Ok(None)
    }

    /// Connects to `host` and exchanges ConnectRequest/ConnectResponse. `Ok(None)`: the server
    /// answered with timeout 0, ZooKeeper's way of saying the session expired.
    async fn handshake(&mut self, host: &str) -> Result<Option<TcpStream>, ClientError> {
        let mut stream = TcpStream::connect(host).await?;
        stream.set_nodelay(true)?;
        let req = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: self.last_zxid,
            timeout: self.opts.session_timeout_ms,
            session_id: self.session_id,
            passwd: if self.passwd.is_empty() {
                vec![0; 16]
            } else {
                self.passwd.clone()
            },
            read_only: Some(self.opts.read_only),
        };
        let mut out = BytesMut::new();
        encode_frame(&req, &mut out);
        stream.write_all(&out).await?;
        let mut buf = BytesMut::with_capacity(64);
        let body = loop {
            if let Some(body) = split_frame(&mut buf, protocol::JUTE_MAXBUFFER)? {
                break body;
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(ClientError::ConnectionLoss);
            }
        };
        let rsp = decode_connect_response(&body)?;
        if rsp.timeout <= 0 {
            return Ok(None);
        }
        self.session_id = rsp.session_id;
        self.passwd = rsp.passwd;
        self.timeout_ms = rsp.timeout;
        let read_only = rsp.read_only == Some(true);
        {
            let mut info = self.info.lock().unwrap_or_else(|e| e.into_inner());
            info.session_id = self.session_id;
            info.passwd = self.passwd.clone();
            info.timeout_ms = self.timeout_ms;
            info.server = host.to_owned();
        }
        let _ = self.state.send(if read_only {
            State::ConnectedReadOnly
        } else {
            State::Connected
        });
        self.event(
            if read_only {
                KeeperState::ConnectedReadOnly
            } else {
                KeeperState::SyncConnected
            },
            EventType::None,
            None,
        );
        Ok(Some(stream))
    }

    /// Serves one connection: requests out in batches, replies and notifications in.
    async fn serve(&mut self, stream: TcpStream, rx: &mut mpsc::Receiver<Submit>) -> End {
        let (mut rd, mut wr) = stream.into_split();
        let mut rbuf = BytesMut::with_capacity(64 * 1024);
        let mut wbuf = BytesMut::with_capacity(64 * 1024);
        let mut pending: VecDeque<Pending> = VecDeque::new();
        let timeout = Duration::from_millis(self.timeout_ms.max(1) as u64);
        let ping_every = timeout / 3;
        let read_timeout = timeout * 2 / 3;
        let mut last_send = Instant::now();
        let mut last_recv = Instant::now();
        let mut closing = false;

        // Re-arm watches and credentials on the new connection, as the Java client's
        // primeConnection does: setWatches first, then every addauth.
        {
            let watches = self.watches.lock().unwrap_or_else(|e| e.into_inner());
            if !watches.is_empty() {
                let sw = watches.to_set_watches(self.last_zxid);
                let h = RequestHeader {
                    xid: xid::SET_WATCHES,
                    op: OpCode::SetWatches2.as_i32(),
                };
                encode_frame(&(h, Request::SetWatches2(sw)), &mut wbuf);
            }
        }
        for (scheme, auth) in &self.auth {
            let h = RequestHeader {
                xid: xid::AUTH,
                op: OpCode::Auth.as_i32(),
            };
            let req = Request::Auth(protocol::AuthPacket {
                auth_type: 0,
                scheme: scheme.clone(),
                auth: auth.clone(),
            });
            encode_frame(&(h, req), &mut wbuf);
        }

        let end = loop {
            let can_take =
                !closing && pending.len() < self.opts.max_pending && wbuf.len() < WRITE_HIGH_WATER;
            tokio::select! {
                biased;
                r = rd.read_buf(&mut rbuf) => {
                    match r {
                        Ok(0) => break End::Lost("server closed the connection".into()),
                        Ok(_) => {}
                        Err(e) => break End::Lost(e.to_string()),
                    }
                    last_recv = Instant::now();
                    match self.on_frames(&mut rbuf, &mut pending) {
                        Ok(true) => break End::Closed,
                        Ok(false) => {}
                        Err(e) => break End::Lost(e),
                    }
                }
                r = wr.write_buf(&mut wbuf), if !wbuf.is_empty() => {
                    if let Err(e) = r {
                        break End::Lost(e.to_string());
                    }
                    last_send = Instant::now();
                }
                s = rx.recv(), if can_take => {
                    let Some(first) = s else {
                        // Every handle dropped: close the session politely.
                        closing = true;
                        self.enqueue(Submit { req: Request::CloseSession, reply: None }, &mut wbuf, &mut pending);
                        continue;
                    };
                    self.enqueue(first, &mut wbuf, &mut pending);
                    for _ in 1..BATCH {
                        if wbuf.len() >= WRITE_HIGH_WATER || pending.len() >= self.opts.max_pending {
                            break;
                        }
                        match rx.try_recv() {
                            Ok(s) => self.enqueue(s, &mut wbuf, &mut pending),
                            Err(_) => break,
                        }
                    }
                }
                _ = sleep_until(last_send + ping_every), if wbuf.is_empty() => {
                    let h = RequestHeader { xid: xid::PING, op: OpCode::Ping.as_i32() };
                    encode_frame(&(h, Request::Ping), &mut wbuf);
                    last_send = Instant::now();
                }
                _ = sleep_until(last_recv + read_timeout) => {
                    break End::Lost(format!("no answer from the server for {read_timeout:?}"));
                }
            }
        };
        let failure = ClientError::ConnectionLoss;
        for p in pending.drain(..) {
            if let Some(r) = p.reply {
                let _ = r.send(if p.op == OpCode::CloseSession {
                    Ok(Reply {
                        zxid: self.last_zxid,
                        err: 0,
                        response: Some(Response::Empty),
                    })
                } else {
                    Err(failure.clone())
                });
            }
        }
        end
    }

    /// Encodes one request into the write buffer and records what its reply must do.
    fn enqueue(&mut self, s: Submit, wbuf: &mut BytesMut, pending: &mut VecDeque<Pending>) {
        let op = s.req.op_code();
        if let Request::Auth(a) = &s.req {
            // Fire and forget; remembered so a reconnect can send it again.
            self.auth.push((a.scheme.clone(), a.auth.clone()));
            let h = RequestHeader {
                xid: xid::AUTH,
                op: op.as_i32(),
            };
            encode_frame(&(h, &s.req), wbuf);
            if let Some(r) = s.reply {
                let _ = r.send(Ok(Reply {
                    zxid: self.last_zxid,
                    err: 0,
                    response: Some(Response::Empty),
                }));
            }
            return;
        }
        let reg = match &s.req {
            Request::GetData(r) if r.watch => Some(WatchReg::Data(r.path.clone())),
            Request::Exists(r) if r.watch => Some(WatchReg::Exists(r.path.clone())),
            Request::GetChildren(r) | Request::GetChildren2(r) if r.watch => {
                Some(WatchReg::Child(r.path.clone()))
            }
            Request::AddWatch(r) => Some(WatchReg::Persistent(r.path.clone(), r.mode)),
            _ => None,
        };
        self.next_xid = if self.next_xid >= i32::MAX - 1 {
            1
        } else {
            self.next_xid + 1
        };
        let h = RequestHeader {
            xid: self.next_xid,
            op: op.as_i32(),
        };
        encode_frame(&(h, &s.req), wbuf);
        pending.push_back(Pending {
            xid: self.next_xid,
            op,
            reg,
            reply: s.reply,
        });
    }

    /// Handles every complete frame in `rbuf`. `Ok(true)`: the closeSession reply arrived.
    fn on_frames(
        &mut self,
        rbuf: &mut BytesMut,
        pending: &mut VecDeque<Pending>,
    ) -> Result<bool, String> {
        loop {
            let body = match split_frame(rbuf, self.opts.max_frame) {
                Ok(Some(b)) => b,
                Ok(None) => return Ok(false),
                Err(e) => return Err(e.to_string()),
            };
            let (header, _) = decode_reply_header(&body).map_err(|e| e.to_string())?;
            if header.zxid > 0 {
                self.last_zxid = header.zxid;
            }
            match header.xid {
                xid::NOTIFICATION => self.on_notification(&body)?,
                xid::PING | xid::SET_WATCHES => {}
                xid::AUTH => {
                    if header.err != 0 {
                        let _ = self.state.send(State::AuthFailed);
                        self.event(KeeperState::AuthFailed, EventType::None, None);
                    }
                }
                _ => {
                    let Some(p) = pending.pop_front() else {
                        return Err(format!("reply with xid {} to no request", header.xid));
                    };
                    if p.xid != header.xid {
                        return Err(format!(
                            "reply xid {} out of order (expected {})",
                            header.xid, p.xid
                        ));
                    }
                    if self.on_reply(p, &body)? {
                        return Ok(true);
                    }
                }
            }
        }
    }

    fn on_notification(&mut self, body: &[u8]) -> Result<(), String> {
        let (_, rsp) = decode_reply(OpCode::Notification, body).map_err(|e| e.to_string())?;
        let Some(Response::Notification(ev)) = rsp else {
            return Err("notification without an event".into());
        };
        let (Some(event_type), Some(state)) = (
            EventType::from_i32(ev.event_type),
            KeeperState::from_i32(ev.state),
        ) else {
            tracing::warn!(
                event_type = ev.event_type,
                state = ev.state,
                "unknown watch event ignored"
            );
            return Ok(());
        };
        self.watches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .on_event(event_type, &ev.path);
        self.event(state, event_type, Some(ev.path));
        Ok(())
    }

    /// Completes one request. `Ok(true)`: it was the closeSession.
    fn on_reply(&mut self, p: Pending, body: &[u8]) -> Result<bool, String> {
        let decoded = if p.op == OpCode::AddWatch {
            // ZooKeeper 3.8 answers addWatch with an `ErrorResponse { err: 0 }` body (4 bytes),
            // which `decode_reply` does not expect; the header says all there is to say.
            decode_reply_header(body).map(|(h, _)| (h, (h.err == 0).then_some(Response::Empty)))
        } else {
            decode_reply(p.op, body)
        };
        let (header, response) = match decoded {
            Ok(d) => d,
            Err(e) => {
                let msg = format!("bad reply to opcode {:?}: {e}", p.op);
                if let Some(r) = p.reply {
                    let _ = r.send(Err(ClientError::Decode(e)));
                }
                return Err(msg);
            }
        };
        if let Some(reg) = p.reg {
            let mut w = self.watches.lock().unwrap_or_else(|e| e.into_inner());
            match reg {
                WatchReg::Data(path) if header.err == 0 => {
                    w.data.insert(path);
                }
                WatchReg::Exists(path) if header.err == 0 => {
                    w.data.insert(path);
                }
                WatchReg::Exists(path) if header.err == ErrorCode::NoNode.as_i32() => {
                    w.exist.insert(path);
                }
                WatchReg::Child(path) if header.err == 0 => {
                    w.child.insert(path);
                }
                WatchReg::Persistent(path, mode) if header.err == 0 => {
                    w.add_persistent(&path, mode)
                }
                _ => {}
            }
        }
        let closed = p.op == OpCode::CloseSession;
        if let Some(r) = p.reply {
            let _ = r.send(Ok(Reply {
                zxid: header.zxid,
                err: header.err,
                response,
            }));
        }
        if header.err == ErrorCode::SessionExpired.as_i32() && !closed {
            return Err("session expired".into());
        }
        Ok(closed)
    }
}
