//! RocksDB stores.
