//! One ZooKeeper session over TCP: the handshake, and plain request/reply calls for setup and
//! cleanup. The measured load loop (`load`) takes the socket over once the session is up.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use protocol::{
    decode_connect_response, decode_reply, encode_frame, encode_request, split_frame,
    ConnectRequest, ErrorCode, ReplyHeader, Request, RequestHeader, Response, JUTE_MAXBUFFER,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::BenchError;

/// How long a setup or cleanup reply may take before the bench gives up.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A connected session.
///
/// Invariant: the handshake is done; `rbuf` holds bytes read past the last frame consumed; `xid`
/// is the last xid sent (replies come back in xid order).
#[derive(Debug)]
pub struct Conn {
    pub addr: SocketAddr,
    pub stream: TcpStream,
    pub rbuf: BytesMut,
    pub session_id: i64,
    pub timeout_ms: i32,
    pub xid: i32,
}

impl Conn {
    /// Connects to `addr` and creates a session asking for `timeout_ms`.
    pub async fn connect(
        addr: SocketAddr,
        timeout_ms: i32,
        limit: Duration,
    ) -> Result<Conn, BenchError> {
        let fut = async {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|source| BenchError::Connect { addr, source })?;
            stream.set_nodelay(true)?;
            let mut conn = Conn {
                addr,
                stream,
                rbuf: BytesMut::with_capacity(64 * 1024),
                session_id: 0,
                timeout_ms: 0,
                xid: 0,
            };
            let req = ConnectRequest {
                protocol_version: 0,
                last_zxid_seen: 0,
                timeout: timeout_ms,
                session_id: 0,
                passwd: vec![0; 16],
                read_only: Some(false),
            };
            let mut out = BytesMut::new();
            encode_frame(&req, &mut out);
            conn.stream.write_all(&out).await?;
            let body = conn.read_frame().await?;
            let rsp = decode_connect_response(&body)?;
            if rsp.timeout <= 0 || rsp.session_id == 0 {
                return Err(BenchError::Handshake {
                    addr,
                    reason: format!("session refused (timeout {})", rsp.timeout),
                });
            }
            conn.session_id = rsp.session_id;
            conn.timeout_ms = rsp.timeout;
            Ok(conn)
        };
        tokio::time::timeout(limit, fut)
            .await
            .map_err(|_| BenchError::Handshake {
                addr,
                reason: format!("no session within {limit:?}"),
            })?
    }

    /// Reads the next frame body.
    pub async fn read_frame(&mut self) -> Result<Bytes, BenchError> {
        loop {
            if let Some(body) = split_frame(&mut self.rbuf, JUTE_MAXBUFFER)? {
                return Ok(body);
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return Err(BenchError::Closed(self.addr));
            }
        }
    }

    pub fn next_xid(&mut self) -> i32 {
        self.xid = if self.xid >= i32::MAX - 1 {
            1
        } else {
            self.xid + 1
        };
        self.xid
    }

    /// Sends `reqs` keeping at most `window` outstanding and returns each reply's error code, in
    /// order. Notifications are skipped.
    pub async fn pipeline(
        &mut self,
        reqs: Vec<Request>,
        window: usize,
    ) -> Result<Vec<(i32, Option<Response>)>, BenchError> {
        let fut = async {
            let mut results = Vec::with_capacity(reqs.len());
            let mut sent: std::collections::VecDeque<(i32, protocol::OpCode)> = Default::default();
            let mut reqs = reqs.into_iter().peekable();
            let mut out = BytesMut::new();
            while reqs.peek().is_some() || !sent.is_empty() {
                while sent.len() < window.max(1) {
                    let Some(req) = reqs.next() else { break };
                    let xid = self.next_xid();
                    let header = RequestHeader {
                        xid,
                        op: req.op_code().as_i32(),
                    };
                    let start = out.len();
                    out.extend_from_slice(&[0; 4]);
                    encode_request(&header, &req, &mut out);
                    let len = i32::try_from(out.len() - start - 4).unwrap_or(i32::MAX);
                    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
                    sent.push_back((xid, req.op_code()));
                }
                if !out.is_empty() {
                    self.stream.write_all(&out).await?;
                    out.clear();
                }
                let Some(&(xid, op)) = sent.front() else {
                    break;
                };
                let body = self.read_frame().await?;
                let (header, rsp): (ReplyHeader, _) = decode_reply(op, &body)?;
                if header.xid == protocol::xid::NOTIFICATION {
                    continue;
                }
                if header.xid != xid {
                    return Err(BenchError::Protocol(format!(
                        "{}: reply xid {} while {} was expected",
                        self.addr, header.xid, xid
                    )));
                }
                sent.pop_front();
                results.push((header.err, rsp));
            }
            Ok(results)
        };
        tokio::time::timeout(CALL_TIMEOUT, fut)
            .await
            .map_err(|_| BenchError::Timeout("a setup or cleanup reply"))?
    }

    /// One request, its error code and reply.
    pub async fn call(&mut self, req: Request) -> Result<(i32, Option<Response>), BenchError> {
        let mut r = self.pipeline(vec![req], 1).await?;
        r.pop()
            .ok_or(BenchError::Protocol("no reply to a call".into()))
    }

    /// Closes the session (closeSession, then the socket); errors are ignored, the server expires
    /// the session otherwise.
    pub async fn close(mut self) {
        let _ =
            tokio::time::timeout(Duration::from_secs(2), self.call(Request::CloseSession)).await;
    }
}

/// The name of a ZooKeeper error code, e.g. `NoNode`.
pub fn error_name(code: i32) -> String {
    match ErrorCode::from_i32(code) {
        Some(c) => format!("{c:?}"),
        None => format!("code{code}"),
    }
}

/// Sends the four-letter word `cmd` to `addr` and returns everything the server wrote before
/// closing the connection.
pub async fn four_letter(
    addr: SocketAddr,
    cmd: &str,
    limit: Duration,
) -> Result<String, BenchError> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(cmd.as_bytes()).await?;
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&out).into_owned())
    };
    match tokio::time::timeout(limit, exchange).await {
        Ok(Ok(text)) => Ok(text),
        Ok(Err(source)) => Err(BenchError::Connect { addr, source }),
        Err(_) => Err(BenchError::Handshake {
            addr,
            reason: format!("no answer to {cmd} within {limit:?}"),
        }),
    }
}
