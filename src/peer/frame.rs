//! Bytes on a peer connection: the handshake and length-prefixed frames. No I/O here.

use bytes::{Buf, Bytes, BytesMut};

use super::{LinkError, PeerId};

/// First bytes of every handshake.
pub(super) const MAGIC: [u8; 4] = *b"VLRY";
/// The peer protocol version; both ends must speak the same one.
pub(super) const VERSION: u16 = 1;
/// Bytes in a handshake: magic, version u16, sender's id u32 (big-endian).
pub(super) const HELLO_LEN: usize = 10;
/// Bytes in a frame's length prefix.
pub(super) const LEN_PREFIX: usize = 4;

/// The handshake `id` sends when it dials, and the acceptor sends back once it accepted it.
pub(super) fn hello(id: PeerId) -> [u8; HELLO_LEN] {
    let mut h = [0u8; HELLO_LEN];
    h[..4].copy_from_slice(&MAGIC);
    h[4..6].copy_from_slice(&VERSION.to_be_bytes());
    h[6..].copy_from_slice(&id.to_be_bytes());
    h
}

/// The sender's id, if `h` is a handshake of this protocol version.
pub(super) fn parse_hello(h: &[u8; HELLO_LEN]) -> Result<PeerId, LinkError> {
    if h[..4] != MAGIC {
        return Err(LinkError::BadMagic([h[0], h[1], h[2], h[3]]));
    }
    let version = u16::from_be_bytes([h[4], h[5]]);
    if version != VERSION {
        return Err(LinkError::BadVersion(version));
    }
    Ok(u32::from_be_bytes([h[6], h[7], h[8], h[9]]))
}

/// Appends `frame` with its length prefix.
///
/// Invariant: `frame.len() <= u32::MAX` (callers reject frames above `max_frame`, which the
/// configuration bounds by `u32::MAX`).
pub(super) fn put_frame(out: &mut Vec<u8>, frame: &[u8]) {
    debug_assert!(frame.len() <= u32::MAX as usize);
    out.extend_from_slice(&(frame.len() as u32).to_be_bytes());
    out.extend_from_slice(frame);
}

/// Takes the next whole frame off the front of `buf`, sharing its memory.
///
/// `Ok(None)`: not enough bytes yet. A length above `max` is an error decided from the prefix
/// alone, before the body is buffered.
pub(super) fn split_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, LinkError> {
    let Some(len) = peek_len(buf) else {
        return Ok(None);
    };
    if len > max {
        return Err(LinkError::FrameTooLarge { len, max });
    }
    if buf.len() < LEN_PREFIX + len {
        return Ok(None);
    }
    buf.advance(LEN_PREFIX);
    Ok(Some(buf.split_to(len).freeze()))
}

/// Bytes still missing from the frame at the front of `buf` (0 when its length is unknown yet
/// or it is complete).
pub(super) fn missing(buf: &BytesMut) -> usize {
    peek_len(buf).map_or(0, |len| (LEN_PREFIX + len).saturating_sub(buf.len()))
}

fn peek_len(buf: &BytesMut) -> Option<usize> {
    let prefix: [u8; LEN_PREFIX] = buf.get(..LEN_PREFIX)?.try_into().ok()?;
    Some(u32::from_be_bytes(prefix) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trip_and_rejections() {
        assert_eq!(parse_hello(&hello(7)).unwrap(), 7);
        let mut bad = hello(7);
        bad[0] = b'X';
        assert!(matches!(parse_hello(&bad), Err(LinkError::BadMagic(_))));
        let mut bad = hello(7);
        bad[5] = 9;
        assert!(matches!(parse_hello(&bad), Err(LinkError::BadVersion(9))));
    }

    #[test]
    fn split_frame_waits_for_whole_frames() {
        let mut out = Vec::new();
        put_frame(&mut out, b"hello");
        put_frame(&mut out, b"");
        put_frame(&mut out, b"xyz");
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        // Feed one byte at a time: every frame comes out once it is complete, never earlier.
        for b in out {
            buf.extend_from_slice(&[b]);
            while let Some(f) = split_frame(&mut buf, 16).unwrap() {
                frames.push(f);
            }
        }
        assert_eq!(frames, vec![&b"hello"[..], &b""[..], &b"xyz"[..]]);
        assert!(buf.is_empty());
    }

    #[test]
    fn split_frame_rejects_lengths_above_max_from_the_prefix() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 17][..]);
        assert!(matches!(
            split_frame(&mut buf, 16),
            Err(LinkError::FrameTooLarge { len: 17, max: 16 })
        ));
        let mut buf = BytesMut::from(&[0u8, 0, 0, 16, 1][..]);
        assert_eq!(split_frame(&mut buf, 16).unwrap(), None);
        assert_eq!(missing(&buf), 15);
    }
}
