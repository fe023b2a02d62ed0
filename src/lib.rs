//! Volery: a ZooKeeper-compatible coordination server built on Scalable State Machine Replication.
//!
//! Layers, from the wire inwards:
//! - [`server`]: client front end (listener, connections, sessions, watch delivery).
//! - [`ssmr`]: the S-SMR engine that executes ordered commands on the service.
//! - [`multicast`]: atomic multicast built from Paxos groups; orders opaque commands.
//! - [`zk`]: the ZooKeeper service as a deterministic state machine.
//! - [`node`]: tokio drivers that run the pure cores with real I/O (RocksDB, timers).
pub mod multicast;
pub mod node;
pub mod server;
pub mod ssmr;
pub mod zk;
