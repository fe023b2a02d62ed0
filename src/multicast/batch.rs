//! The value of one instance: a timestamped batch of opaque commands.

use std::sync::Arc;

use bytes::{Buf, Bytes};

use super::Error;

/// The value decided in one instance. An empty batch is a skip.
///
/// `time_ms` is stamped by the coordinator that closed the batch: max(previous + 1, wall clock).
/// Cloning is cheap (the command list is shared).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Milliseconds since the Unix epoch, as the closing coordinator saw them.
    pub time_ms: u64,
    /// The commands, in proposal order.
    pub commands: Arc<[Bytes]>,
}

impl Batch {
    /// A batch of commands.
    pub fn new(time_ms: u64, commands: Vec<Bytes>) -> Batch {
        Batch {
            time_ms,
            commands: commands.into(),
        }
    }

    /// A skip: an instance decided with no command.
    pub fn skip(time_ms: u64) -> Batch {
        Batch::new(time_ms, Vec::new())
    }

    /// True for a skip.
    pub fn is_skip(&self) -> bool {
        self.commands.is_empty()
    }

    /// Bytes [`Batch::encode_into`] appends.
    pub fn encoded_len(&self) -> usize {
        12 + self.commands.iter().map(|c| 4 + c.len()).sum::<usize>()
    }

    /// Appends the encoding: time_ms u64, count u32, then per command a u32 length and the bytes
    /// (all big-endian).
    ///
    /// Commands longer than `u32::MAX` bytes cannot be encoded; the driver bounds command sizes far
    /// below that, and a longer one is a bug (debug assertion; in release its length is truncated).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        out.extend_from_slice(&self.time_ms.to_be_bytes());
        out.extend_from_slice(&(self.commands.len() as u32).to_be_bytes());
        for c in self.commands.iter() {
            debug_assert!(c.len() <= u32::MAX as usize);
            out.extend_from_slice(&(c.len() as u32).to_be_bytes());
            out.extend_from_slice(c);
        }
    }

    /// Decodes [`Batch::encode_into`]; the commands share `buf`'s memory.
    pub fn decode(mut buf: Bytes) -> Result<Batch, Error> {
        if buf.len() < 12 {
            return Err(Error::MalformedBatch("header too short"));
        }
        let time_ms = buf.get_u64();
        let count = buf.get_u32() as usize;
        // Each command takes at least 4 bytes, so `count` is bounded by the input size.
        if count > buf.len() / 4 {
            return Err(Error::MalformedBatch("command count exceeds the input"));
        }
        let mut commands = Vec::with_capacity(count);
        for _ in 0..count {
            if buf.len() < 4 {
                return Err(Error::MalformedBatch("command length missing"));
            }
            let len = buf.get_u32() as usize;
            if buf.len() < len {
                return Err(Error::MalformedBatch("command truncated"));
            }
            commands.push(buf.split_to(len));
        }
        if !buf.is_empty() {
            return Err(Error::MalformedBatch("trailing bytes"));
        }
        Ok(Batch::new(time_ms, commands))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn encode_decode_round_trip(time_ms: u64, cmds in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..20)) {
            let b = Batch::new(time_ms, cmds.into_iter().map(Bytes::from).collect());
            let mut out = Vec::new();
            b.encode_into(&mut out);
            prop_assert_eq!(out.len(), b.encoded_len());
            prop_assert_eq!(Batch::decode(Bytes::from(out)).unwrap(), b);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Batch::decode(Bytes::from(bytes));
        }
    }

    #[test]
    fn decode_rejects_truncation_and_trailing_bytes() {
        let b = Batch::new(7, vec![Bytes::from_static(b"abc")]);
        let mut out = Vec::new();
        b.encode_into(&mut out);
        for cut in 0..out.len() {
            assert!(
                Batch::decode(Bytes::copy_from_slice(&out[..cut])).is_err(),
                "cut {cut}"
            );
        }
        out.push(0);
        assert_eq!(
            Batch::decode(Bytes::from(out)),
            Err(Error::MalformedBatch("trailing bytes"))
        );
    }
}
