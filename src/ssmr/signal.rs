//! [`Signal`]: what a partition's replica tells the other partitions of a multi-partition command,
//! and its binary encoding for the peer port.
//!
//! Layout, all big-endian (32 bytes, then the facts):
//!
//! | field | encoding |
//! | --- | --- |
//! | `cmd.group` | u32 |
//! | `cmd.instance` | u64 |
//! | `cmd.index` | u32 |
//! | `from` | u32 |
//! | `clock` | i64: the clock itself, or `-1 - clock` when it is relative to `base` |
//! | `base` | only when relative: u32 group, u64 instance, u32 index |
//! | `facts` | u32 length, then the bytes |
//!
//! Invariant: a signal decodes only if its encoding is consumed exactly; the facts' length is
//! checked against the bytes that remain, so garbage never panics and never allocates. Decoded
//! facts share the input's memory.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{CmdId, Error, PartitionId};

/// Bytes before the facts of a signal without `base`.
const HEADER_LEN: usize = 4 + 8 + 4 + 4 + 8 + 4;
/// Bytes `base` adds.
const BASE_LEN: usize = 4 + 8 + 4;

/// `signal(C)` of Algorithm 1, carrying the state exchange and the Lamport clock.
///
/// Invariant: every replica of partition `from` sends the same clock for `cmd`: the
/// partition's clock just before `cmd` executes there (given outright, or as `base`'s zxid plus
/// `clock`), and `facts` is [`super::Service::facts`] evaluated on the state `cmd` executes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signal {
    /// The multi-partition command this signal is for.
    pub cmd: CmdId,
    /// The sender's partition.
    pub from: PartitionId,
    /// The sender partition's clock (last zxid) when `cmd` executes there; with `base`, that
    /// clock minus `base`'s zxid.
    pub clock: i64,
    /// A multi-partition command before `cmd` whose destination holds every partition of `cmd`'s,
    /// so each receiver knows its zxid by the time it executes `cmd`: a signal prefetched while
    /// `base` still waits for its own signals (state prefetching across multi-partition commands).
    pub base: Option<CmdId>,
    /// The sender partition's state that `cmd` reads.
    pub facts: Bytes,
}

impl Signal {
    /// Bytes [`Signal::encode_into`] appends.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.base.map_or(0, |_| BASE_LEN) + self.facts.len()
    }

    /// Appends the encoding to `out`.
    pub fn encode_into(&self, out: &mut BytesMut) {
        out.reserve(self.encoded_len());
        out.put_u32(self.cmd.group);
        out.put_u64(self.cmd.instance);
        out.put_u32(self.cmd.index);
        out.put_u32(self.from);
        match self.base {
            None => out.put_i64(self.clock),
            Some(base) => {
                out.put_i64(-1 - self.clock);
                out.put_u32(base.group);
                out.put_u64(base.instance);
                out.put_u32(base.index);
            }
        }
        // Facts over 4 GiB cannot be framed; a service never produces them.
        let len = u32::try_from(self.facts.len()).expect("signal facts exceed 4 GiB");
        out.put_u32(len);
        out.put_slice(&self.facts);
    }

    /// The encoding as one buffer.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out.freeze()
    }

    /// Decodes a whole signal; the facts share `buf`'s memory.
    pub fn decode(mut buf: Bytes) -> Result<Signal, Error> {
        if buf.len() < HEADER_LEN {
            return Err(Error::MalformedSignal("shorter than its header"));
        }
        let group = buf.get_u32();
        let instance = buf.get_u64();
        let index = buf.get_u32();
        let from = buf.get_u32();
        let mut clock = buf.get_i64();
        let mut base = None;
        if clock < 0 {
            if buf.len() < BASE_LEN + 4 {
                return Err(Error::MalformedSignal("shorter than its header"));
            }
            clock = -1 - clock;
            base = Some(CmdId::new(buf.get_u32(), buf.get_u64(), buf.get_u32()));
        }
        let len = buf.get_u32() as usize;
        if buf.len() != len {
            return Err(Error::MalformedSignal(if buf.len() < len {
                "facts run past the end"
            } else {
                "trailing bytes"
            }));
        }
        Ok(Signal {
            cmd: CmdId::new(group, instance, index),
            from,
            clock,
            base,
            facts: buf,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Signal {
        Signal {
            cmd: CmdId::new(7, 1 << 40, 3),
            from: 2,
            clock: 5,
            base: None,
            facts: Bytes::from_static(b"facts!"),
        }
    }

    #[test]
    fn round_trips_and_shares_memory() {
        let s = sample();
        let enc = s.encode();
        assert_eq!(enc.len(), s.encoded_len());
        assert_eq!(enc.len(), 32 + 6);
        let dec = Signal::decode(enc.clone()).unwrap();
        assert_eq!(dec, s);
        assert_eq!(dec.facts.as_ptr(), enc[32..].as_ptr());
        let empty = Signal {
            facts: Bytes::new(),
            ..s
        };
        assert_eq!(Signal::decode(empty.encode()).unwrap(), empty);
        let relative = Signal {
            base: Some(CmdId::new(7, 9, 1)),
            clock: 0,
            ..sample()
        };
        let enc = relative.encode();
        assert_eq!(enc.len(), relative.encoded_len());
        assert_eq!(Signal::decode(enc.clone()).unwrap(), relative);
        for cut in 0..enc.len() {
            assert!(Signal::decode(enc.slice(..cut)).is_err());
        }
    }

    #[test]
    fn rejects_truncation_and_trailing_bytes() {
        let enc = sample().encode();
        for cut in 0..enc.len() {
            assert!(
                Signal::decode(enc.slice(..cut)).is_err(),
                "prefix of {cut} bytes decoded"
            );
        }
        let mut long = BytesMut::from(&enc[..]);
        long.put_u8(0);
        assert_eq!(
            Signal::decode(long.freeze()),
            Err(Error::MalformedSignal("trailing bytes"))
        );
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u64 = 0x1234_5678;
        for n in 0..2000usize {
            let len = n % 80;
            let mut v = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                v.push(x as u8);
            }
            // A length field pointing at the real remainder must decode; anything else fails.
            let _ = Signal::decode(Bytes::from(v));
        }
        let mut max_len = BytesMut::from(&sample().encode()[..HEADER_LEN - 4]);
        max_len.put_u32(u32::MAX);
        assert!(Signal::decode(max_len.freeze()).is_err());
    }
}
