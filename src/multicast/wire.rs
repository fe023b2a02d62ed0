//! The binary encoding of [`PaxosMsg`] that servers exchange over the peer port.
//!
//! Layout: one tag byte naming the variant, then its fields in declaration order, all big-endian:
//!
//! | field | encoding |
//! | --- | --- |
//! | `GroupId` | u32 |
//! | `Instance` | u64 |
//! | [`Ballot`] | [`Ballot::to_bytes`] (round u64, node u32) |
//! | `Option<Ballot>` | u8 0 (none) or 1 followed by the ballot; any other byte is invalid |
//! | [`Batch`] | u32 length, then [`Batch::encode_into`] |
//! | a list | u32 count, then the items |
//! | a command | u32 length, then the bytes |
//!
//! Invariant: a message decodes only if its encoding is consumed exactly (no trailing bytes).
//! Every count and length is checked against the bytes that remain before anything is allocated,
//! so garbage input costs at most a small allocation and never panics. Decoded commands share the
//! input's memory ([`Bytes::slice`]), with no copy.

use bytes::{Buf, Bytes};

use super::{Ballot, Batch, Error, GroupId, Instance, PaxosMsg};

const TAG_PREPARE: u8 = 1;
const TAG_PROMISE: u8 = 2;
const TAG_ACCEPT: u8 = 3;
const TAG_ACCEPTED: u8 = 4;
const TAG_NACK: u8 = 5;
const TAG_DECISION: u8 = 6;
const TAG_HEARTBEAT: u8 = 7;
const TAG_FORWARD: u8 = 8;
const TAG_CATCH_UP: u8 = 9;
const TAG_TRIMMED: u8 = 10;
const TAG_SKIP_NEEDED: u8 = 11;
const TAG_DECIDED: u8 = 12;

/// Smallest encoding of one `Promise::accepted` entry: instance, ballot, batch length and an
/// empty batch (time_ms u64, count u32).
const MIN_ACCEPTED_ENTRY: usize = 8 + Ballot::ENCODED_LEN + 4 + 12;

impl PaxosMsg {
    /// Bytes [`PaxosMsg::encode_into`] appends.
    pub fn encoded_len(&self) -> usize {
        const G: usize = 4;
        const I: usize = 8;
        const B: usize = Ballot::ENCODED_LEN;
        1 + match self {
            PaxosMsg::Prepare { .. } => G + B + I,
            PaxosMsg::Promise { accepted, .. } => {
                G + B
                    + I
                    + 4
                    + accepted
                        .iter()
                        .map(|(_, _, v)| I + B + batch_len(v))
                        .sum::<usize>()
            }
            PaxosMsg::Accept { value, .. } => G + B + I + batch_len(value),
            PaxosMsg::Accepted { .. } => G + B + I,
            PaxosMsg::Nack { .. } => G + B + B,
            PaxosMsg::Decision { value, .. } => G + I + B + batch_len(value),
            PaxosMsg::Decided { .. } => G + I + B,
            PaxosMsg::Heartbeat { leading, .. } => G + 1 + leading.map_or(0, |_| B) + I + I,
            PaxosMsg::Forward { commands, .. } => {
                G + 4 + commands.iter().map(|c| 4 + c.len()).sum::<usize>()
            }
            PaxosMsg::CatchUp { .. } | PaxosMsg::Trimmed { .. } | PaxosMsg::SkipNeeded { .. } => {
                G + I
            }
        }
    }

    /// Appends the encoding described in the module documentation.
    ///
    /// Lengths and counts above `u32::MAX` cannot be encoded; the driver bounds batches and
    /// commands far below that (debug assertion).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        match self {
            PaxosMsg::Prepare {
                group,
                ballot,
                from,
            } => {
                out.push(TAG_PREPARE);
                put_u32(out, *group);
                put_ballot(out, *ballot);
                put_u64(out, *from);
            }
            PaxosMsg::Promise {
                group,
                ballot,
                low,
                accepted,
            } => {
                out.push(TAG_PROMISE);
                put_u32(out, *group);
                put_ballot(out, *ballot);
                put_u64(out, *low);
                put_len(out, accepted.len());
                for (instance, ballot, value) in accepted {
                    put_u64(out, *instance);
                    put_ballot(out, *ballot);
                    put_batch(out, value);
                }
            }
            PaxosMsg::Accept {
                group,
                ballot,
                instance,
                value,
            } => {
                out.push(TAG_ACCEPT);
                put_u32(out, *group);
                put_ballot(out, *ballot);
                put_u64(out, *instance);
                put_batch(out, value);
            }
            PaxosMsg::Accepted {
                group,
                ballot,
                instance,
            } => {
                out.push(TAG_ACCEPTED);
                put_u32(out, *group);
                put_ballot(out, *ballot);
                put_u64(out, *instance);
            }
            PaxosMsg::Nack {
                group,
                ballot,
                promised,
            } => {
                out.push(TAG_NACK);
                put_u32(out, *group);
                put_ballot(out, *ballot);
                put_ballot(out, *promised);
            }
            PaxosMsg::Decision {
                group,
                instance,
                ballot,
                value,
            } => {
                out.push(TAG_DECISION);
                put_u32(out, *group);
                put_u64(out, *instance);
                put_ballot(out, *ballot);
                put_batch(out, value);
            }
            PaxosMsg::Decided {
                group,
                instance,
                ballot,
            } => {
                out.push(TAG_DECIDED);
                put_u32(out, *group);
                put_u64(out, *instance);
                put_ballot(out, *ballot);
            }
            PaxosMsg::Heartbeat {
                group,
                leading,
                delivered,
                checkpointed,
            } => {
                out.push(TAG_HEARTBEAT);
                put_u32(out, *group);
                match leading {
                    None => out.push(0),
                    Some(b) => {
                        out.push(1);
                        put_ballot(out, *b);
                    }
                }
                put_u64(out, *delivered);
                put_u64(out, *checkpointed);
            }
            PaxosMsg::Forward { group, commands } => {
                out.push(TAG_FORWARD);
                put_u32(out, *group);
                put_len(out, commands.len());
                for c in commands {
                    put_len(out, c.len());
                    out.extend_from_slice(c);
                }
            }
            PaxosMsg::CatchUp { group, from } => {
                out.push(TAG_CATCH_UP);
                put_u32(out, *group);
                put_u64(out, *from);
            }
            PaxosMsg::Trimmed { group, low } => {
                out.push(TAG_TRIMMED);
                put_u32(out, *group);
                put_u64(out, *low);
            }
            PaxosMsg::SkipNeeded { group, until_ms } => {
                out.push(TAG_SKIP_NEEDED);
                put_u32(out, *group);
                put_u64(out, *until_ms);
            }
        }
    }

    /// Decodes [`PaxosMsg::encode_into`]; commands share `buf`'s memory.
    pub fn decode(buf: Bytes) -> Result<PaxosMsg, Error> {
        let mut r = Reader { buf };
        let msg = match r.u8()? {
            TAG_PREPARE => PaxosMsg::Prepare {
                group: r.group()?,
                ballot: r.ballot()?,
                from: r.instance()?,
            },
            TAG_PROMISE => {
                let group = r.group()?;
                let ballot = r.ballot()?;
                let low = r.instance()?;
                let count = r.count(MIN_ACCEPTED_ENTRY)?;
                let mut accepted = Vec::with_capacity(count);
                for _ in 0..count {
                    accepted.push((r.instance()?, r.ballot()?, r.batch()?));
                }
                PaxosMsg::Promise {
                    group,
                    ballot,
                    low,
                    accepted,
                }
            }
            TAG_ACCEPT => PaxosMsg::Accept {
                group: r.group()?,
                ballot: r.ballot()?,
                instance: r.instance()?,
                value: r.batch()?,
            },
            TAG_ACCEPTED => PaxosMsg::Accepted {
                group: r.group()?,
                ballot: r.ballot()?,
                instance: r.instance()?,
            },
            TAG_NACK => PaxosMsg::Nack {
                group: r.group()?,
                ballot: r.ballot()?,
                promised: r.ballot()?,
            },
            TAG_DECISION => PaxosMsg::Decision {
                group: r.group()?,
                instance: r.instance()?,
                ballot: r.ballot()?,
                value: r.batch()?,
            },
            TAG_DECIDED => PaxosMsg::Decided {
                group: r.group()?,
                instance: r.instance()?,
                ballot: r.ballot()?,
            },
            TAG_HEARTBEAT => PaxosMsg::Heartbeat {
                group: r.group()?,
                leading: match r.u8()? {
                    0 => None,
                    1 => Some(r.ballot()?),
                    _ => return Err(Error::MalformedMessage("invalid option flag")),
                },
                delivered: r.instance()?,
                checkpointed: r.instance()?,
            },
            TAG_FORWARD => {
                let group = r.group()?;
                let count = r.count(4)?;
                let mut commands = Vec::with_capacity(count);
                for _ in 0..count {
                    let len = r.u32()? as usize;
                    commands.push(r.take(len)?);
                }
                PaxosMsg::Forward { group, commands }
            }
            TAG_CATCH_UP => PaxosMsg::CatchUp {
                group: r.group()?,
                from: r.instance()?,
            },
            TAG_TRIMMED => PaxosMsg::Trimmed {
                group: r.group()?,
                low: r.instance()?,
            },
            TAG_SKIP_NEEDED => PaxosMsg::SkipNeeded {
                group: r.group()?,
                until_ms: r.u64()?,
            },
            _ => return Err(Error::MalformedMessage("unknown message tag")),
        };
        if !r.buf.is_empty() {
            return Err(Error::MalformedMessage("trailing bytes"));
        }
        Ok(msg)
    }
}

fn batch_len(b: &Batch) -> usize {
    4 + b.encoded_len()
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    debug_assert!(len <= u32::MAX as usize, "length {len} does not fit a u32");
    put_u32(out, len as u32);
}

fn put_ballot(out: &mut Vec<u8>, b: Ballot) {
    out.extend_from_slice(&b.to_bytes());
}

fn put_batch(out: &mut Vec<u8>, b: &Batch) {
    put_len(out, b.encoded_len());
    b.encode_into(out);
}

/// A cursor over the undecoded rest of a message. Every read checks the remaining length first.
struct Reader {
    buf: Bytes,
}

impl Reader {
    fn need(&self, n: usize) -> Result<(), Error> {
        if self.buf.len() < n {
            Err(Error::MalformedMessage("message truncated"))
        } else {
            Ok(())
        }
    }

    fn u8(&mut self) -> Result<u8, Error> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }

    fn u32(&mut self) -> Result<u32, Error> {
        self.need(4)?;
        Ok(self.buf.get_u32())
    }

    fn group(&mut self) -> Result<GroupId, Error> {
        self.u32()
    }

    fn u64(&mut self) -> Result<u64, Error> {
        self.need(8)?;
        Ok(self.buf.get_u64())
    }

    fn instance(&mut self) -> Result<Instance, Error> {
        self.u64()
    }

    fn ballot(&mut self) -> Result<Ballot, Error> {
        let b = self.take(Ballot::ENCODED_LEN)?;
        Ballot::from_bytes(&b).ok_or(Error::MalformedMessage("ballot"))
    }

    /// The next `len` bytes, sharing the input's memory.
    fn take(&mut self, len: usize) -> Result<Bytes, Error> {
        self.need(len)?;
        Ok(self.buf.split_to(len))
    }

    /// A list count whose items take at least `min_item` bytes each, so that the count can be
    /// trusted to size an allocation.
    fn count(&mut self, min_item: usize) -> Result<usize, Error> {
        let count = self.u32()? as usize;
        if count > self.buf.len() / min_item {
            return Err(Error::MalformedMessage("count exceeds the input"));
        }
        Ok(count)
    }

    fn batch(&mut self) -> Result<Batch, Error> {
        let len = self.u32()? as usize;
        Batch::decode(self.take(len)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn ballot() -> impl Strategy<Value = Ballot> {
        (any::<u64>(), any::<u32>()).prop_map(|(r, n)| Ballot::new(r, n))
    }

    fn command() -> impl Strategy<Value = Bytes> {
        vec(any::<u8>(), 0..24).prop_map(Bytes::from)
    }

    fn batch() -> impl Strategy<Value = Batch> {
        (any::<u64>(), vec(command(), 0..6)).prop_map(|(t, c)| Batch::new(t, c))
    }

    fn msg() -> impl Strategy<Value = PaxosMsg> {
        prop_oneof![
            (any::<u32>(), ballot(), any::<u64>()).prop_map(|(group, ballot, from)| {
                PaxosMsg::Prepare {
                    group,
                    ballot,
                    from,
                }
            }),
            (
                any::<u32>(),
                ballot(),
                any::<u64>(),
                vec((any::<u64>(), ballot(), batch()), 0..5)
            )
                .prop_map(|(group, ballot, low, accepted)| PaxosMsg::Promise {
                    group,
                    ballot,
                    low,
                    accepted,
                }),
            (any::<u32>(), ballot(), any::<u64>(), batch()).prop_map(
                |(group, ballot, instance, value)| PaxosMsg::Accept {
                    group,
                    ballot,
                    instance,
                    value,
                }
            ),
            (any::<u32>(), ballot(), any::<u64>()).prop_map(|(group, ballot, instance)| {
                PaxosMsg::Accepted {
                    group,
                    ballot,
                    instance,
                }
            }),
            (any::<u32>(), ballot(), ballot()).prop_map(|(group, ballot, promised)| {
                PaxosMsg::Nack {
                    group,
                    ballot,
                    promised,
                }
            }),
            (any::<u32>(), any::<u64>(), ballot(), batch()).prop_map(
                |(group, instance, ballot, value)| PaxosMsg::Decision {
                    group,
                    instance,
                    ballot,
                    value,
                }
            ),
            (any::<u32>(), any::<u64>(), ballot()).prop_map(|(group, instance, ballot)| {
                PaxosMsg::Decided {
                    group,
                    instance,
                    ballot,
                }
            }),
            (
                any::<u32>(),
                proptest::option::of(ballot()),
                any::<u64>(),
                any::<u64>()
            )
                .prop_map(|(group, leading, delivered, checkpointed)| {
                    PaxosMsg::Heartbeat {
                        group,
                        leading,
                        delivered,
                        checkpointed,
                    }
                }),
            (any::<u32>(), vec(command(), 0..8))
                .prop_map(|(group, commands)| PaxosMsg::Forward { group, commands }),
            (any::<u32>(), any::<u64>())
                .prop_map(|(group, from)| PaxosMsg::CatchUp { group, from }),
            (any::<u32>(), any::<u64>()).prop_map(|(group, low)| PaxosMsg::Trimmed { group, low }),
            (any::<u32>(), any::<u64>())
                .prop_map(|(group, until_ms)| PaxosMsg::SkipNeeded { group, until_ms }),
        ]
    }

    fn encode(m: &PaxosMsg) -> Vec<u8> {
        let mut out = Vec::new();
        m.encode_into(&mut out);
        out
    }

    proptest! {
        #[test]
        fn round_trip(m in msg()) {
            let out = encode(&m);
            prop_assert_eq!(out.len(), m.encoded_len());
            prop_assert_eq!(PaxosMsg::decode(Bytes::from(out)), Ok(m));
        }

        #[test]
        fn every_strict_prefix_fails(m in msg()) {
            let out = Bytes::from(encode(&m));
            for cut in 0..out.len() {
                prop_assert!(PaxosMsg::decode(out.slice(..cut)).is_err(), "prefix of {} bytes decoded", cut);
            }
        }

        #[test]
        fn trailing_bytes_fail(m in msg(), extra in vec(any::<u8>(), 1..8)) {
            let mut out = encode(&m);
            out.extend_from_slice(&extra);
            prop_assert_eq!(
                PaxosMsg::decode(Bytes::from(out)),
                Err(Error::MalformedMessage("trailing bytes"))
            );
        }

        #[test]
        fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..128)) {
            let _ = PaxosMsg::decode(Bytes::from(bytes));
        }

        /// Garbage after a valid tag exercises the field decoders rather than the tag check.
        #[test]
        fn random_bodies_never_panic(tag in 0u8..=10, body in vec(any::<u8>(), 0..128)) {
            let mut bytes = vec![tag];
            bytes.extend_from_slice(&body);
            let _ = PaxosMsg::decode(Bytes::from(bytes));
        }
    }

    #[test]
    fn huge_counts_are_rejected_before_allocating() {
        // A Forward claiming u32::MAX commands in a 9-byte message.
        let mut bytes = vec![TAG_FORWARD];
        bytes.extend_from_slice(&7u32.to_be_bytes());
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            PaxosMsg::decode(Bytes::from(bytes)),
            Err(Error::MalformedMessage("count exceeds the input"))
        );
        // A Promise claiming more entries than its remaining bytes can hold.
        let mut bytes = vec![TAG_PROMISE];
        bytes.extend_from_slice(&[0; 4 + Ballot::ENCODED_LEN + 8]);
        bytes.extend_from_slice(&2u32.to_be_bytes());
        bytes.extend_from_slice(&[0; MIN_ACCEPTED_ENTRY * 2 - 1]);
        assert_eq!(
            PaxosMsg::decode(Bytes::from(bytes)),
            Err(Error::MalformedMessage("count exceeds the input"))
        );
    }

    #[test]
    fn invalid_tags_and_flags_are_rejected() {
        assert_eq!(
            PaxosMsg::decode(Bytes::from_static(&[0])),
            Err(Error::MalformedMessage("unknown message tag"))
        );
        assert_eq!(
            PaxosMsg::decode(Bytes::new()),
            Err(Error::MalformedMessage("message truncated"))
        );
        let mut hb = encode(&PaxosMsg::Heartbeat {
            group: 1,
            leading: None,
            delivered: 2,
            checkpointed: 3,
        });
        hb[5] = 2;
        assert_eq!(
            PaxosMsg::decode(Bytes::from(hb)),
            Err(Error::MalformedMessage("invalid option flag"))
        );
    }

    #[test]
    fn decoded_commands_share_the_input() {
        let m = PaxosMsg::Forward {
            group: 3,
            commands: vec![Bytes::from_static(b"hello"), Bytes::from_static(b"world")],
        };
        let input = Bytes::from(encode(&m));
        let range = input.as_ptr_range();
        let PaxosMsg::Forward { commands, .. } = PaxosMsg::decode(input.clone()).unwrap() else {
            panic!("not a Forward");
        };
        for c in &commands {
            assert!(range.contains(&c.as_ptr()), "command was copied");
        }
        let m = PaxosMsg::Decision {
            group: 1,
            instance: 9,
            ballot: Ballot::new(2, 1),
            value: Batch::new(5, vec![Bytes::from_static(b"abc")]),
        };
        let input = Bytes::from(encode(&m));
        let range = input.as_ptr_range();
        let PaxosMsg::Decision { value, .. } = PaxosMsg::decode(input.clone()).unwrap() else {
            panic!("not a Decision");
        };
        assert!(range.contains(&value.commands[0].as_ptr()));
    }
}
