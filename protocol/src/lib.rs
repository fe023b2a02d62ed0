//! ZooKeeper 3.8 wire protocol.
