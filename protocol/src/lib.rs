//! The ZooKeeper 3.8 client-port wire protocol: jute records, their encoding (bytes) and decoding (nom),
//! and the 4-byte length-prefixed frame codec. No I/O, and no ZooKeeper semantics beyond the records.
//!
//! Layers, bottom up:
//! - `frame`: bytes to frame bodies (`split_frame`, `FrameCodec`); the only place that waits for
//!   more bytes, and where `jute.maxbuffer` is enforced.
//! - `jute`: the primitives and the `Encode`/`Decode` traits.
//! - `codes`, `records`: ZooKeeper's numbers and the owned records; `wire` implements the traits.
//! - `message`: whole bodies (`decode_request`, `encode_reply`, ...), the API servers and clients use.
pub mod codes;
pub mod error;
pub mod frame;
pub mod jute;
pub mod message;
pub mod records;
pub mod wire;

#[cfg(test)]
mod proptests;

pub use codes::*;
pub use error::{DecodeError, FrameError};
pub use frame::{encode_frame, split_frame, CodecError, FrameCodec, JUTE_MAXBUFFER};
pub use jute::{decode_record, Decode, Encode};
pub use message::*;
pub use records::*;
