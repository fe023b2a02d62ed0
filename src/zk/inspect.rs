//! Read-only views of the state for the operator's surface (four-letter words, metrics), in the
//! units ZooKeeper's `DataTree` reports them. None of this is replicated state or reaches a reply.

use std::collections::{BTreeMap, BTreeSet};

use super::{SessionId, Zk};

impl Zk {
    /// `DataTree.getNodeCount`: ZooKeeper keeps the root under two keys, `""` and `"/"`, and counts
    /// both, so a fresh server reports 5.
    pub fn zk_node_count(&self) -> usize {
        self.tree.len() + 1
    }

    /// `DataTree.approximateDataSize`: the length of every key plus the length of its data, with
    /// the root counted under both its keys (`""` adds no characters, `"/"` one).
    pub fn approximate_data_size(&self) -> u64 {
        let root = self.tree.get("/").map_or(0, |n| n.data_len() as u64);
        root + self
            .tree
            .nodes()
            .map(|(path, n)| path.len() as u64 + n.data_len() as u64)
            .sum::<u64>()
    }

    /// Ephemeral nodes (not containers or TTL nodes) by owning session (`DataTree.ephemerals`).
    pub fn ephemerals(&self) -> BTreeMap<SessionId, Vec<String>> {
        self.sessions
            .keys()
            .filter_map(|s| {
                let paths: Vec<String> = self.tree.ephemerals_of(*s).cloned().collect();
                (!paths.is_empty()).then_some((*s, paths))
            })
            .collect()
    }

    /// `DataTree.getEphemeralsCount`.
    pub fn ephemerals_count(&self) -> usize {
        self.sessions
            .keys()
            .map(|s| self.tree.ephemerals_of(*s).count())
            .sum()
    }

    /// Data (and exists) watches by path, as `wchp` lists them (ZooKeeper lists data watches only).
    pub fn data_watches_by_path(&self) -> &BTreeMap<String, BTreeSet<SessionId>> {
        self.data_watches.by_path()
    }

    /// Data (and exists) watches by session, as `wchc` lists them.
    pub fn data_watches_by_session(&self) -> &BTreeMap<SessionId, BTreeSet<String>> {
        self.data_watches.by_session()
    }
}
