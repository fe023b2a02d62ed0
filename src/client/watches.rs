//! The client's record of the watches it has set, as the Java client's `ZKWatchManager` keeps it:
//! needed to re-arm watches after a reconnect (setWatches) and to answer `removewatches` locally.

use std::collections::BTreeSet;

use protocol::{AddWatchMode, EventType, SetWatches, WatcherType};

/// Paths by kind of watch. A one-shot watch leaves its set when its event arrives; persistent ones
/// stay until removed.
///
/// Invariant: a path is in `data` only after a successful getData with watch, in `exist` only after
/// an exists with watch that found no node, in `child` only after a getChildren with watch.
#[derive(Debug, Default, Clone)]
pub struct WatchRegistry {
    pub data: BTreeSet<String>,
    pub exist: BTreeSet<String>,
    pub child: BTreeSet<String>,
    pub persistent: BTreeSet<String>,
    pub persistent_recursive: BTreeSet<String>,
}

impl WatchRegistry {
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
            && self.exist.is_empty()
            && self.child.is_empty()
            && self.persistent.is_empty()
            && self.persistent_recursive.is_empty()
    }

    pub fn add_persistent(&mut self, path: &str, mode: AddWatchMode) {
        match mode {
            AddWatchMode::Persistent => self.persistent.insert(path.to_owned()),
            AddWatchMode::PersistentRecursive => self.persistent_recursive.insert(path.to_owned()),
        };
    }

    /// Drops the one-shot watches an event of `event_type` on `path` has fired, as ZooKeeper's
    /// server does on its side.
    pub fn on_event(&mut self, event_type: EventType, path: &str) {
        match event_type {
            EventType::NodeCreated | EventType::NodeDataChanged => {
                self.data.remove(path);
                self.exist.remove(path);
            }
            EventType::NodeDeleted => {
                self.data.remove(path);
                self.exist.remove(path);
                self.child.remove(path);
            }
            EventType::NodeChildrenChanged => {
                self.child.remove(path);
            }
            _ => {}
        }
    }

    /// Whether a watch of `kind` is set on `path` (the Java client's `containsWatcher`).
    pub fn contains(&self, path: &str, kind: WatcherType) -> bool {
        let data = self.data.contains(path) || self.exist.contains(path);
        let child = self.child.contains(path);
        let persistent = self.persistent.contains(path) || self.persistent_recursive.contains(path);
        match kind {
            WatcherType::Children => child,
            WatcherType::Data => data,
            WatcherType::Any => data || child || persistent,
        }
    }

    /// Removes the watches of `kind` on `path`; returns the `*WatchRemoved` events the Java client
    /// then delivers, in its order (children, data, persistent).
    pub fn remove(&mut self, path: &str, kind: WatcherType) -> Vec<EventType> {
        let mut events = Vec::new();
        let children = matches!(kind, WatcherType::Children | WatcherType::Any);
        let data = matches!(kind, WatcherType::Data | WatcherType::Any);
        if children && self.child.remove(path) {
            events.push(EventType::ChildWatchRemoved);
        }
        if data {
            let d = self.data.remove(path);
            let e = self.exist.remove(path);
            if d || e {
                events.push(EventType::DataWatchRemoved);
            }
        }
        if kind == WatcherType::Any {
            let p = self.persistent.remove(path);
            let r = self.persistent_recursive.remove(path);
            if p || r {
                events.push(EventType::PersistentWatchRemoved);
            }
        }
        events
    }

    /// The setWatches2 record that re-arms every watch after a reconnect.
    pub fn to_set_watches(&self, relative_zxid: i64) -> SetWatches {
        let v = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>();
        SetWatches {
            relative_zxid,
            data_watches: v(&self.data),
            exist_watches: v(&self.exist),
            child_watches: v(&self.child),
            persistent_watches: v(&self.persistent),
            persistent_recursive_watches: v(&self.persistent_recursive),
        }
    }
}
