//! Whole frame bodies: what a server decodes from a client and encodes back, and the reverse for
//! clients. Every decoder consumes the body exactly; leftover bytes are `DecodeError::TrailingBytes`.

use bytes::BytesMut;

use crate::codes::{xid, OpCode};
use crate::error::DecodeError;
use crate::jute::{decode_record, finish, into_error, Decode, Encode};
use crate::records::*;
use crate::wire::{decode_request_body as body_by_op, decode_response_body};

/// `ReplyHeader::zxid` of a watch notification: ZooKeeper 3.8 sends -1, not the zxid of the change.
pub const NOTIFICATION_ZXID: i64 = -1;

/// A connection's first frame. The trailing readOnly byte is optional (older clients omit it):
/// `read_only` is `None` then. Anything after it is `TrailingBytes`.
pub fn decode_connect_request(body: &[u8]) -> Result<ConnectRequest, DecodeError> {
    decode_record(body)
}

/// The answer to the first frame; readOnly optional as in `decode_connect_request`.
pub fn decode_connect_response(body: &[u8]) -> Result<ConnectResponse, DecodeError> {
    decode_record(body)
}

/// The `RequestHeader` of a request frame and the bytes after it.
pub fn decode_request_header(body: &[u8]) -> Result<(RequestHeader, &[u8]), DecodeError> {
    let (rest, h) = RequestHeader::decode(body).map_err(into_error)?;
    Ok((h, rest))
}

/// The request after `header`; `rest` must be consumed exactly.
///
/// An opcode that is not a client request (unknown, or notification 0, error -1, createSession
/// -10) is `DecodeError::UnknownOpCode` carrying the header: ZooKeeper answers it with
/// `ErrorCode::Unimplemented` and closes the session. Any other error means a malformed body for a
/// known opcode, which ZooKeeper answers with `ErrorCode::MarshallingError` keeping the
/// session; a server that wants to do the same calls `decode_request_header` and this function
/// separately so it still has the header.
pub fn decode_request_body(header: RequestHeader, rest: &[u8]) -> Result<Request, DecodeError> {
    let Some(r) = body_by_op(header.op, rest) else {
        return Err(DecodeError::UnknownOpCode { header });
    };
    let (rest, req) = r.map_err(into_error)?;
    finish(rest)?;
    Ok(req)
}

/// A request frame (every frame after the connect, client to server).
pub fn decode_request(body: &[u8]) -> Result<(RequestHeader, Request), DecodeError> {
    let (header, rest) = decode_request_header(body)?;
    let req = decode_request_body(header, rest)?;
    Ok((header, req))
}

/// Appends a request body: `header` then `req`. `header.op` should be `req.op_code()` (the caller
/// picks the xid, and reserved xids such as `xid::PING` for pings).
pub fn encode_request(header: &RequestHeader, req: &Request, out: &mut BytesMut) {
    debug_assert_eq!(
        header.op,
        req.op_code().as_i32(),
        "header opcode vs request"
    );
    header.encode(out);
    req.encode(out);
}

/// The `ReplyHeader` of a reply frame and the bytes after it. A client reads this first to find
/// the request (by xid) whose opcode `decode_reply` needs.
pub fn decode_reply_header(body: &[u8]) -> Result<(ReplyHeader, &[u8]), DecodeError> {
    let (rest, h) = ReplyHeader::decode(body).map_err(into_error)?;
    Ok((h, rest))
}

/// A reply frame (server to client) answering a request with opcode `op`.
///
/// - xid -1 is a notification whatever `op` is: `Some(Response::Notification(_))`.
/// - `err == 0`: the body for `op` (`Response::Empty` for opcodes without one).
/// - `err != 0`: no body, `None` — except that a multi/multiRead body is decoded when present
///   (ZooKeeper 3.8 reports a failed multi with `err == 0` and per-op `MultiResult::Error`s; only
///   a request that failed as a whole, e.g. a marshalling error, gets a bare error header).
pub fn decode_reply(
    op: OpCode,
    body: &[u8],
) -> Result<(ReplyHeader, Option<Response>), DecodeError> {
    let (header, rest) = decode_reply_header(body)?;
    let op = if header.xid == xid::NOTIFICATION {
        OpCode::Notification
    } else {
        op
    };
    let has_body = header.err == 0
        || header.xid == xid::NOTIFICATION
        || (matches!(op, OpCode::Multi | OpCode::MultiRead) && !rest.is_empty());
    if !has_body {
        finish(rest)?;
        return Ok((header, None));
    }
    let Some(r) = decode_response_body(op, rest) else {
        return Err(DecodeError::NoReplyFor(op.as_i32()));
    };
    let (rest, rsp) = r.map_err(into_error)?;
    finish(rest)?;
    Ok((header, Some(rsp)))
}

/// Appends a reply body: `header`, then `rsp` if any. ZooKeeper sends no body when `err != 0`
/// (multi excepted, see `decode_reply`); the caller passes `None` then.
pub fn encode_reply(header: &ReplyHeader, rsp: Option<&Response>, out: &mut BytesMut) {
    header.encode(out);
    if let Some(rsp) = rsp {
        rsp.encode(out);
    }
}

/// Appends a watch notification body: `ReplyHeader { xid: -1, zxid: -1, err: 0 }` then the event,
/// as ZooKeeper 3.8's `ServerCnxn.process(WatchedEvent)` sends it.
pub fn encode_notification(event: &WatcherEvent, out: &mut BytesMut) {
    notification_header().encode(out);
    event.encode(out);
}

/// The header ZooKeeper 3.8 puts before every `WatcherEvent`.
pub fn notification_header() -> ReplyHeader {
    ReplyHeader {
        xid: xid::NOTIFICATION,
        zxid: NOTIFICATION_ZXID,
        err: 0,
    }
}
