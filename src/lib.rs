//! Volery: a ZooKeeper-compatible coordination server built on Scalable State Machine Replication.
//!
//! Layers, from the wire inwards:
//! - [`server`]: client front end (listener, connections, sessions, watch delivery).
//! - [`node`]: wires ordering, execution and sessions together; the only layer doing their I/O.
//!   Its replica executes ordered commands: the one-partition case of the S-SMR engine, which a
//!   partitioned `ssmr` module will generalise (oracle, signals, state exchange).
//! - [`peer`]: the servers' TCP transport (peer port), moving opaque frames between numbered nodes.
//! - [`multicast`]: atomic multicast built from Paxos groups; orders opaque commands.
//! - [`zk`]: the ZooKeeper service as a deterministic state machine.
//! - [`bench`]: `volery bench`, a load generator speaking the wire protocol (not a server layer).
//! - [`client`] and [`shell`]: a ZooKeeper client connection and the zkCli-style `volery shell`.
pub mod bench;
pub mod client;
pub mod config;
pub mod cpu;
pub mod multicast;
pub mod node;
pub mod peer;
pub mod rng;
pub mod server;
pub mod shell;
pub mod ssmr;
#[cfg(test)]
mod testkit;
pub mod zk;
