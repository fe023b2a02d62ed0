//! The bytes of an ordered command: what the multicast layer carries and the acceptors persist.
//!
//! Layout: the origin `server: u32, conn: u64`, then `kind: u8, session: i64, xid: i32`, then per kind: CreateSession `timeout: i32, passwd,
//! ip`; ReconnectSession `passwd, ip`; CloseSession nothing; AddAuth `scheme, auth`; Request the
//! request exactly as the client sent it (jute `RequestHeader` + body), so the log holds ZooKeeper's
//! own encoding; DeleteContainer `path`. Buffers and strings are jute-style: an i32 length, then the bytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use protocol::Encode;

use crate::zk::{Command, Op};

const CREATE_SESSION: u8 = 0;
const RECONNECT_SESSION: u8 = 1;
const CLOSE_SESSION: u8 = 2;
const ADD_AUTH: u8 = 3;
const REQUEST: u8 = 4;
const DELETE_CONTAINER: u8 = 5;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    #[error("command truncated")]
    Truncated,
    #[error("unknown command kind {0}")]
    UnknownKind(u8),
    #[error("invalid UTF-8 in command")]
    Utf8,
    #[error("request in command: {0}")]
    Request(String),
}

/// Where a command was submitted: only that server answers it, and only on that connection (a
/// session that moved to another connection or server does not get replies to its old requests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    pub server: u32,
    pub conn: u64,
}

const ORIGIN_LEN: usize = 12;

/// Encodes a command for ordering. `time_ms` is not carried: the coordinator stamps each batch.
pub fn encode(cmd: &Command, origin: Origin) -> Bytes {
    let body = match &cmd.op {
        Op::Request(req) => protocol::wire::REQUEST_HEADER_LEN + req.encoded_len(),
        _ => 64,
    };
    let mut out = BytesMut::with_capacity(ORIGIN_LEN + 13 + body);
    out.put_u32(origin.server);
    out.put_u64(origin.conn);
    let kind = match &cmd.op {
        Op::CreateSession { .. } => CREATE_SESSION,
        Op::ReconnectSession { .. } => RECONNECT_SESSION,
        Op::CloseSession => CLOSE_SESSION,
        Op::AddAuth { .. } => ADD_AUTH,
        Op::Request(_) => REQUEST,
        Op::DeleteContainer { .. } => DELETE_CONTAINER,
    };
    out.put_u8(kind);
    out.put_i64(cmd.session);
    out.put_i32(cmd.xid);
    match &cmd.op {
        Op::CreateSession {
            timeout_ms,
            passwd,
            client_ip,
        } => {
            out.put_i32(*timeout_ms);
            put_buf(&mut out, passwd);
            put_buf(&mut out, client_ip.as_bytes());
        }
        Op::ReconnectSession { passwd, client_ip } => {
            put_buf(&mut out, passwd);
            put_buf(&mut out, client_ip.as_bytes());
        }
        Op::CloseSession => {}
        Op::AddAuth { scheme, auth } => {
            put_buf(&mut out, scheme.as_bytes());
            put_buf(&mut out, auth);
        }
        Op::DeleteContainer { path } => put_buf(&mut out, path.as_bytes()),
        Op::Request(req) => {
            let header = protocol::RequestHeader {
                xid: cmd.xid,
                op: req.op_code().as_i32(),
            };
            protocol::encode_request(&header, req, &mut out)
        }
    }
    out.freeze()
}

/// Decodes a command delivered by the multicast layer, stamping it with its batch's time.
pub fn decode(mut b: &[u8], time_ms: i64) -> Result<(Origin, Command), CommandError> {
    if b.remaining() < ORIGIN_LEN + 13 {
        return Err(CommandError::Truncated);
    }
    let origin = Origin {
        server: b.get_u32(),
        conn: b.get_u64(),
    };
    let kind = b.get_u8();
    let session = b.get_i64();
    let xid = b.get_i32();
    let op = match kind {
        CREATE_SESSION => {
            if b.remaining() < 4 {
                return Err(CommandError::Truncated);
            }
            let timeout_ms = b.get_i32();
            let passwd = get_buf(&mut b)?;
            let client_ip = get_string(&mut b)?;
            Op::CreateSession {
                timeout_ms,
                passwd,
                client_ip,
            }
        }
        RECONNECT_SESSION => {
            let passwd = get_buf(&mut b)?;
            let client_ip = get_string(&mut b)?;
            Op::ReconnectSession { passwd, client_ip }
        }
        CLOSE_SESSION => Op::CloseSession,
        ADD_AUTH => {
            let scheme = get_string(&mut b)?;
            let auth = get_buf(&mut b)?;
            Op::AddAuth { scheme, auth }
        }
        REQUEST => {
            let (_, req) =
                protocol::decode_request(b).map_err(|e| CommandError::Request(e.to_string()))?;
            Op::Request(req)
        }
        DELETE_CONTAINER => Op::DeleteContainer {
            path: get_string(&mut b)?,
        },
        k => return Err(CommandError::UnknownKind(k)),
    };
    Ok((
        origin,
        Command {
            session,
            xid,
            time_ms,
            op,
        },
    ))
}

fn put_buf(out: &mut BytesMut, b: &[u8]) {
    out.put_i32(b.len() as i32);
    out.put_slice(b);
}

fn get_buf(b: &mut &[u8]) -> Result<Vec<u8>, CommandError> {
    if b.remaining() < 4 {
        return Err(CommandError::Truncated);
    }
    let n = b.get_i32();
    let n = usize::try_from(n).map_err(|_| CommandError::Truncated)?;
    if b.remaining() < n {
        return Err(CommandError::Truncated);
    }
    let v = b[..n].to_vec();
    b.advance(n);
    Ok(v)
}

fn get_string(b: &mut &[u8]) -> Result<String, CommandError> {
    String::from_utf8(get_buf(b)?).map_err(|_| CommandError::Utf8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{PathWatchRequest, Request, SetDataRequest};

    fn round_trip(op: Op) {
        let cmd = Command {
            session: 0x0102_0304_0506_0708,
            xid: 42,
            time_ms: 7,
            op,
        };
        let origin = Origin {
            server: 3,
            conn: 0x0a0b_0c0d_0e0f,
        };
        let bytes = encode(&cmd, origin);
        assert_eq!(decode(&bytes, 7), Ok((origin, cmd)));
    }

    #[test]
    fn every_kind_round_trips() {
        round_trip(Op::CreateSession {
            timeout_ms: 30000,
            passwd: vec![1; 16],
            client_ip: "127.0.0.1".into(),
        });
        round_trip(Op::ReconnectSession {
            passwd: vec![2; 16],
            client_ip: "10.0.0.1".into(),
        });
        round_trip(Op::CloseSession);
        round_trip(Op::DeleteContainer { path: "/c".into() });
        round_trip(Op::AddAuth {
            scheme: "digest".into(),
            auth: b"u:p".to_vec(),
        });
        round_trip(Op::Request(Request::GetData(PathWatchRequest {
            path: "/a".into(),
            watch: true,
        })));
        round_trip(Op::Request(Request::SetData(SetDataRequest {
            path: "/a/b".into(),
            data: Some(vec![0, 1, 2]),
            version: -1,
        })));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(decode(&[], 0), Err(CommandError::Truncated));
        assert_eq!(decode(&[9; 25], 0), Err(CommandError::UnknownKind(9)));
        let mut b = encode(
            &Command {
                session: 1,
                xid: 1,
                time_ms: 0,
                op: Op::AddAuth {
                    scheme: "digest".into(),
                    auth: vec![1, 2, 3],
                },
            },
            Origin::default(),
        )
        .to_vec();
        b.truncate(b.len() - 1);
        assert_eq!(decode(&b, 0), Err(CommandError::Truncated));
    }
}
