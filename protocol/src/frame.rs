//! Frames: a 4-byte big-endian length, then that many bytes of body. Only this layer may say
//! "need more bytes"; a body that comes out of it is complete.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;
use tokio_util::codec::{Decoder, Encoder};

use crate::error::FrameError;
use crate::jute::Encode;

/// ZooKeeper 3.8's default `jute.maxbuffer`: 0xfffff bytes, one byte short of 1 MiB
/// (`BinaryInputArchive.maxBuffer`).
///
/// The server (`NIOServerCnxn.readLength`, `NettyServerCnxn`) closes the connection when a frame's
/// length prefix is negative or greater than `jute.maxbuffer`; there is no slack at the frame level.
/// The slack `zookeeper.jute.maxbuffer.extrasize` (default: `jute.maxbuffer` itself, at least 1024)
/// applies only to a single buffer or string inside a record (`BinaryInputArchive.checkLength`),
/// which a frame of at most `jute.maxbuffer` bytes can never exceed; so `split_frame`'s `max` is
/// exactly `jute.maxbuffer`.
pub const JUTE_MAXBUFFER: usize = 0xfffff;

/// The smallest `zookeeper.jute.maxbuffer.extrasize` ZooKeeper accepts.
pub const JUTE_MAXBUFFER_EXTRASIZE_MIN: usize = 1024;

/// Size of the length prefix.
pub const LENGTH_PREFIX: usize = 4;

/// Splits one frame body off the front of `buf`.
///
/// `Ok(None)`: fewer than 4 bytes, or the body has not fully arrived yet (capacity for it is then
/// reserved). The length prefix is checked as soon as its 4 bytes are there, before any of the body
/// is buffered: a negative length is `FrameError::Negative`, one above `max` is
/// `FrameError::TooLarge`, and `buf` is left untouched in both cases.
pub fn split_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, FrameError> {
    let Some(prefix) = buf.first_chunk::<LENGTH_PREFIX>() else {
        return Ok(None);
    };
    let len = i32::from_be_bytes(*prefix);
    let Ok(body_len) = usize::try_from(len) else {
        return Err(FrameError::Negative(len));
    };
    if body_len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let total = LENGTH_PREFIX + body_len;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    buf.advance(LENGTH_PREFIX);
    Ok(Some(buf.split_to(body_len).freeze()))
}

/// Appends `msg` to `out` as one frame: a 4-byte length, then the body. The length is patched in
/// after encoding, so it is right even if `encoded_len` were not.
pub fn encode_frame<T: Encode + ?Sized>(msg: &T, out: &mut BytesMut) {
    let start = out.len();
    out.reserve(LENGTH_PREFIX + msg.encoded_len());
    out.put_i32(0);
    msg.encode(out);
    let body = out.len() - start - LENGTH_PREFIX;
    let len = i32::try_from(body).unwrap_or(i32::MAX);
    out[start..start + LENGTH_PREFIX].copy_from_slice(&len.to_be_bytes());
}

/// An I/O or framing failure of `FrameCodec`.
#[derive(Debug, Error)]
pub enum CodecError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// tokio-util codec for ZooKeeper frames. Decoding yields frame bodies (`split_frame` with
/// `max_frame`); encoding accepts any `Encode` value, e.g. `(ReplyHeader, Option<Response>)`.
/// Outgoing frames are not checked against `max_frame` (ZooKeeper's server does not check its own
/// replies either; the peer enforces its own limit).
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    max_frame: usize,
}

impl FrameCodec {
    pub fn new(max_frame: usize) -> FrameCodec {
        FrameCodec { max_frame }
    }

    pub fn max_frame(&self) -> usize {
        self.max_frame
    }
}

impl Default for FrameCodec {
    /// `JUTE_MAXBUFFER`.
    fn default() -> FrameCodec {
        FrameCodec::new(JUTE_MAXBUFFER)
    }
}

impl Decoder for FrameCodec {
    type Item = Bytes;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, CodecError> {
        Ok(split_frame(src, self.max_frame)?)
    }
}

impl<T: Encode> Encoder<T> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, item: T, dst: &mut BytesMut) -> Result<(), CodecError> {
        encode_frame(&item, dst);
        Ok(())
    }
}
