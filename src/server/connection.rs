//! One client connection: the connect handshake, then a reader that turns frames into ordered
//! commands and a writer that sends replies and notifications in the order the node queued them.
//!
//! Invariant: a session's requests are submitted in the order received, and the node answers them
//! in that order, so replies leave in xid order. Pings are answered at once (clients match them by
//! their reserved xid, not by order). A malformed frame closes this connection only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use protocol::{xid, ConnectResponse, Encode, ErrorCode, ReplyHeader, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};

use super::{Limits, Slot};
use crate::node::{Node, NodeError, Outbound, Route};
use crate::zk::{Command, Op, SessionId};

/// The xid of the createSession/reconnect command a handshake orders; never a client's xid.
const CONNECT_XID: i32 = i32::MIN + 1;
/// Replies are written in batches of up to this many bytes per write call.
const WRITE_BATCH: usize = 64 * 1024;
/// How long a closing connection waits for its last replies to be written.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

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
        Outbound::Notification(event) => {
            put_frame(out, |b| protocol::encode_notification(event, b))
        }
        Outbound::Close => {}
    }
}

/// Serves one client until it closes, its session ends, or it sends something malformed.
pub async fn serve(
    socket: TcpStream,
    addr: SocketAddr,
    slot: Slot,
    node: Node,
    limits: Arc<Limits>,
) -> Result<(), ConnError> {
    let (rd, mut wr) = socket.into_split();
    let mut reader = FrameReader {
        rd,
        buf: BytesMut::with_capacity(4096),
        max: limits.max_frame,
    };
    let first = match tokio::time::timeout(limits.connect_timeout, reader.next()).await {
        Ok(r) => r?,
        Err(_) => return Err(ConnError::ConnectTimeout(limits.connect_timeout)),
    };
    let Some(first) = first else { return Ok(()) };
    let connect = ignoring_trailing_bytes(&first, protocol::decode_connect_request)?;

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
    if let Some(old) = node.attach(
        session,
        Route {
            conn: slot.id,
            tx: tx.clone(),
        },
    ) {
        if old.conn != slot.id {
            let _ = old.tx.send(Outbound::Close);
        }
    }
    node.submit(&Command {
        session,
        xid: CONNECT_XID,
        time_ms: 0,
        op,
    })
    .await?;

    let mut early = Vec::new();
    let err = loop {
        match rx.recv().await {
            Some(Outbound::Reply {
                xid: CONNECT_XID,
                err,
                ..
            }) => break err,
            Some(n @ Outbound::Notification(_)) => early.push(n),
            Some(Outbound::Reply { .. }) => {}
            Some(Outbound::Close) | None => {
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
    tracing::debug!(client = %addr, session = format_args!("{session:#x}"), timeout, "session established");

    let max_outstanding = limits.max_outstanding.min(Semaphore::MAX_PERMITS) as u32;
    let permits = Arc::new(Semaphore::new(max_outstanding as usize));
    let mut writer = tokio::spawn(write_loop(wr, rx, permits.clone()));
    let ended = tokio::select! {
        r = read_loop(&mut reader, session, &node, &tx, &permits, max_outstanding) => r,
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

async fn read_loop(
    reader: &mut FrameReader,
    session: SessionId,
    node: &Node,
    tx: &mpsc::UnboundedSender<Outbound>,
    permits: &Arc<Semaphore>,
    max_outstanding: u32,
) -> Result<Ended, ConnError> {
    while let Some(frame) = reader.next().await? {
        node.sessions().touch(session, Instant::now());
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
                let pong = Outbound::Reply {
                    xid: header.xid,
                    zxid: node.last_zxid(),
                    err: 0,
                    response: None,
                };
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
                node.submit(&close).await?;
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
        node.submit(&Command {
            session,
            xid: header.xid,
            time_ms: 0,
            op,
        })
        .await?;
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

async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Outbound>,
    permits: Arc<Semaphore>,
) -> Result<(), ConnError> {
    let mut out = BytesMut::with_capacity(WRITE_BATCH);
    while let Some(msg) = rx.recv().await {
        let mut close = false;
        let mut next = Some(msg);
        while let Some(msg) = next.take() {
            match &msg {
                Outbound::Close => close = true,
                Outbound::Reply { xid, err, .. } => {
                    if *xid == xid::AUTH && *err == ErrorCode::AuthFailed.as_i32() {
                        close = true;
                    } else if *xid != xid::PING && *xid != xid::AUTH {
                        permits.add_permits(1);
                    }
                }
                Outbound::Notification(_) => {}
            }
            put_outbound(&mut out, &msg);
            if close || out.len() >= WRITE_BATCH {
                break;
            }
            next = rx.try_recv().ok();
        }
        wr.write_all(&out).await?;
        out.clear();
        if close {
            break;
        }
    }
    let _ = wr.shutdown().await;
    Ok(())
}
