//! The ZooKeeper 3.8 client-port wire protocol: jute records, their encoding (bytes) and decoding (nom),
//! and the 4-byte length-prefixed frame codec. No I/O, and no ZooKeeper semantics beyond the records.
pub mod codes;
pub mod records;

pub use codes::*;
pub use records::*;
