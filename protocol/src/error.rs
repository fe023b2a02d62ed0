//! The crate's typed errors: `FrameError` for the length prefix, `DecodeError` for a frame's body.

use thiserror::Error;

use crate::records::RequestHeader;

/// Why a frame could not be split off the read buffer. Either one closes the connection, as
/// ZooKeeper's `NIOServerCnxn.readLength` does ("Len error").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The 4-byte length prefix is negative.
    #[error("negative frame length {0}")]
    Negative(i32),
    /// The length prefix exceeds the configured maximum. `len` is the prefix as read, so a server
    /// can still recognise a four-letter word (`ruok` is 0x72756f6b) in a connection's first bytes.
    #[error("frame length {len} exceeds the maximum {max} (jute.maxbuffer)")]
    TooLarge { len: i32, max: usize },
}

/// Why a complete frame body is not a valid record. The body is complete (it came out of
/// `split_frame`), so running short inside it is `Truncated`, never "need more bytes".
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// A fixed-size field runs past the end of the body.
    #[error("record truncated")]
    Truncated,
    /// A buffer, string or vector length is below -1 (-1 is jute's null) or longer than the rest of
    /// the body could hold. Checked before anything is allocated.
    #[error("bad length {len} with {remaining} bytes left")]
    BadLength { len: i32, remaining: usize },
    /// A `ustring` is not valid UTF-8.
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// A request carries a null path (jute length -1).
    #[error("null path")]
    NullPath,
    /// A jute boolean byte other than 0 or 1.
    #[error("invalid boolean byte {0:#04x}")]
    InvalidBool(u8),
    /// Bytes remain after the record ended.
    #[error("{0} trailing bytes after the record")]
    TrailingBytes(usize),
    /// The request header names an opcode that is not a client request (unknown number, or 0, -1,
    /// -10). The header is kept so the server can answer `xid` with `ErrorCode::Unimplemented`, as
    /// ZooKeeper's `UnimplementedRequestProcessor` does (it then closes the session).
    #[error("unknown request opcode {} (xid {})", header.op, header.xid)]
    UnknownOpCode { header: RequestHeader },
    /// `decode_reply` was asked to decode the answer to an opcode that has none.
    #[error("opcode {0} has no reply record")]
    NoReplyFor(i32),
    /// A multi header names an operation type that cannot appear there.
    #[error("invalid operation type {0} inside a multi")]
    InvalidMultiOp(i32),
    /// An enumerated int field (watcher type, addWatch mode) holds an undefined value.
    #[error("invalid value {value} for {field}")]
    InvalidValue { field: &'static str, value: i32 },
}

impl<'a> nom::error::ParseError<&'a [u8]> for DecodeError {
    fn from_error_kind(_input: &'a [u8], _kind: nom::error::ErrorKind) -> Self {
        // Only `take`/number parsers running out of input produce nom's own errors here.
        DecodeError::Truncated
    }

    fn append(_input: &'a [u8], _kind: nom::error::ErrorKind, other: Self) -> Self {
        other
    }
}
