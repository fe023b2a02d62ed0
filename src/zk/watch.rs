//! ZooKeeper 3.8's default `WatchManager`, one instance for data (and exists) watches and one for
//! child watches, with sessions standing in for connections. Local to a replica: never snapshotted.

use protocol::ErrorCode;
use std::collections::{BTreeMap, BTreeSet};

use protocol::EventType;

use super::path;
use super::SessionId;

/// `WatcherMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One-shot, fired only for its own path.
    Standard,
    /// Fired for its own path, every time.
    Persistent,
    /// Fired for its path and every descendant, every time, except NodeChildrenChanged.
    PersistentRecursive,
}

/// Invariant: `table[p]` contains `s` iff `by_session[s]` contains `p`; `modes` holds only
/// non-standard modes, and `recursive` counts its `PersistentRecursive` entries.
#[derive(Debug, Default, Clone)]
pub struct Manager {
    table: BTreeMap<String, BTreeSet<SessionId>>,
    by_session: BTreeMap<SessionId, BTreeSet<String>>,
    modes: BTreeMap<SessionId, BTreeMap<String, Mode>>,
    recursive: usize,
    /// Set on a partitioned tree: a standard watch leaves a recursive one on the same path in place.
    /// 3.8's replacement (ZOOKEEPER-4466, fixed in 3.9) would drop the recursive watch only in the
    /// path's own partition while the others kept firing for their descendants.
    recursive_outlives_standard: bool,
}

impl Manager {
    fn mode(&self, session: SessionId, path: &str) -> Mode {
        self.modes
            .get(&session)
            .and_then(|m| m.get(path))
            .copied()
            .unwrap_or(Mode::Standard)
    }

    /// `WatcherModeManager.setWatcherMode`, as `WatchManager.addWatch` calls it: the new mode
    /// replaces the old one (3.8 keeps one mode per session and path), except that on a
    /// partitioned tree a standard watch leaves a recursive one in place.
    fn set_mode(&mut self, session: SessionId, path: &str, mode: Mode) {
        if mode == Mode::Standard
            && self.recursive_outlives_standard
            && self.mode(session, path) == Mode::PersistentRecursive
        {
            return;
        }
        self.replace_mode(session, path, mode);
    }

    /// Sets the session's mode on `path`, keeping `modes` free of standard entries and `recursive`
    /// counting the recursive ones. A removed watch gets `Mode::Standard`.
    fn replace_mode(&mut self, session: SessionId, path: &str, mode: Mode) {
        let old = if mode == Mode::Standard {
            let old = self.modes.get_mut(&session).and_then(|m| m.remove(path));
            if self.modes.get(&session).is_some_and(|m| m.is_empty()) {
                self.modes.remove(&session);
            }
            old
        } else {
            self.modes
                .entry(session)
                .or_default()
                .insert(path.to_string(), mode)
        };
        let was = old == Some(Mode::PersistentRecursive);
        let is = mode == Mode::PersistentRecursive;
        if was && !is {
            self.recursive -= 1;
        } else if is && !was {
            self.recursive += 1;
        }
    }

    /// See [`Manager::recursive_outlives_standard`]'s field.
    pub fn keep_recursive_under_standard(&mut self) {
        self.recursive_outlives_standard = true;
    }

    /// `WatchManager.addWatch`.
    pub fn add(&mut self, path: &str, session: SessionId, mode: Mode) {
        self.table
            .entry(path.to_string())
            .or_default()
            .insert(session);
        self.by_session
            .entry(session)
            .or_default()
            .insert(path.to_string());
        self.set_mode(session, path, mode);
    }

    /// `WatchManager.removeWatcher(watcher)`: drops every watch of the session.
    pub fn remove_session(&mut self, session: SessionId) {
        let Some(paths) = self.by_session.remove(&session) else {
            return;
        };
        for p in paths {
            if let Some(set) = self.table.get_mut(&p) {
                set.remove(&session);
                if set.is_empty() {
                    self.table.remove(&p);
                }
            }
            self.replace_mode(session, &p, Mode::Standard);
        }
    }

    /// `WatchManager.removeWatcher(path, watcher)`.
    pub fn remove(&mut self, path: &str, session: SessionId) -> bool {
        let Some(paths) = self.by_session.get_mut(&session) else {
            return false;
        };
        if !paths.remove(path) {
            return false;
        }
        if paths.is_empty() {
            self.by_session.remove(&session);
        }
        let Some(set) = self.table.get_mut(path) else {
            return false;
        };
        if !set.remove(&session) {
            return false;
        }
        if set.is_empty() {
            self.table.remove(path);
        }
        self.replace_mode(session, path, Mode::Standard);
        true
    }

    /// `WatchManager.containsWatcher` as 3.8 has it: true if *any* session watches exactly `path`,
    /// or this session's own mode on `path` is recursive. Its `PathParentIterator` cuts each path
    /// at its last '/', which throws on a segment without one; ZooKeeper answers that exception
    /// with `MarshallingError`.
    pub fn contains(&self, path: &str, session: SessionId) -> Result<bool, ErrorCode> {
        if path.is_empty() {
            return Ok(false);
        }
        if !path.contains('/') {
            return Err(ErrorCode::MarshallingError);
        }
        if self.table.get(path).is_some_and(|s| !s.is_empty())
            || self.mode(session, path) == Mode::PersistentRecursive
        {
            return Ok(true);
        }
        if self.recursive > 0 && !path.starts_with('/') {
            return Err(ErrorCode::MarshallingError);
        }
        Ok(false)
    }

    /// `WatchManager.triggerWatch`: the sessions whose watches match an event of type `ty` on `path`,
    /// ascending; one-shot watches on `path` are consumed.
    pub fn trigger(&mut self, path: &str, ty: EventType) -> BTreeSet<SessionId> {
        let mut matched = BTreeSet::new();
        let depth = if self.recursive == 0 { 1 } else { usize::MAX };
        for (level, local) in path::self_and_ancestors(path).take(depth).enumerate() {
            let Some(sessions) = self.table.get(local) else {
                continue;
            };
            let mut consumed = Vec::new();
            for &s in sessions {
                match self.mode(s, local) {
                    Mode::PersistentRecursive if ty == EventType::NodeChildrenChanged => {}
                    Mode::PersistentRecursive => {
                        matched.insert(s);
                    }
                    mode if level == 0 => {
                        matched.insert(s);
                        if mode == Mode::Standard {
                            consumed.push(s);
                        }
                    }
                    _ => {}
                }
            }
            for s in consumed {
                let set = self.table.get_mut(local).expect("present");
                set.remove(&s);
                if set.is_empty() {
                    self.table.remove(local);
                }
                if let Some(paths) = self.by_session.get_mut(&s) {
                    paths.remove(local);
                    if paths.is_empty() {
                        self.by_session.remove(&s);
                    }
                }
            }
        }
        matched
    }

    /// Watching sessions by path (`WatchManager.watchTable`).
    pub fn by_path(&self) -> &BTreeMap<String, BTreeSet<SessionId>> {
        &self.table
    }

    /// Watched paths by session (`WatchManager.watch2Paths`).
    pub fn by_session(&self) -> &BTreeMap<SessionId, BTreeSet<String>> {
        &self.by_session
    }

    /// The number of (session, path) watches.
    pub fn len(&self) -> usize {
        self.by_session.values().map(BTreeSet::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_watch_fires_once() {
        let mut m = Manager::default();
        m.add("/a", 1, Mode::Standard);
        m.add("/a", 2, Mode::Standard);
        assert_eq!(
            m.trigger("/a", EventType::NodeDataChanged),
            BTreeSet::from([1, 2])
        );
        assert!(m.trigger("/a", EventType::NodeDataChanged).is_empty());
        assert_eq!(m.len(), 0);
    }

    #[test]
    fn persistent_watch_stays_and_ignores_descendants() {
        let mut m = Manager::default();
        m.add("/a", 1, Mode::Persistent);
        assert_eq!(
            m.trigger("/a", EventType::NodeChildrenChanged),
            BTreeSet::from([1])
        );
        assert_eq!(
            m.trigger("/a", EventType::NodeDataChanged),
            BTreeSet::from([1])
        );
        assert!(m.trigger("/a/b", EventType::NodeCreated).is_empty());
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn recursive_watch_covers_descendants_but_not_child_events() {
        let mut m = Manager::default();
        m.add("/a", 1, Mode::PersistentRecursive);
        m.add("/a/b", 2, Mode::Standard);
        assert_eq!(
            m.trigger("/a/b/c", EventType::NodeCreated),
            BTreeSet::from([1])
        );
        assert_eq!(
            m.trigger("/a/b", EventType::NodeDataChanged),
            BTreeSet::from([1, 2])
        );
        assert!(m.trigger("/a", EventType::NodeChildrenChanged).is_empty());
        assert_eq!(m.trigger("/a", EventType::NodeDeleted), BTreeSet::from([1]));
        assert!(m.trigger("/ab", EventType::NodeCreated).is_empty());
    }

    #[test]
    fn standard_watch_leaves_recursive_mode_on_a_partitioned_tree() {
        let mut m = Manager::default();
        m.keep_recursive_under_standard();
        m.add("/a", 1, Mode::PersistentRecursive);
        m.add("/a", 1, Mode::Standard);
        assert_eq!(
            m.trigger("/a", EventType::NodeDataChanged),
            BTreeSet::from([1])
        );
        assert_eq!(
            m.trigger("/a/b", EventType::NodeCreated),
            BTreeSet::from([1])
        );
        assert_eq!(
            m.trigger("/a", EventType::NodeDataChanged),
            BTreeSet::from([1])
        );
    }

    #[test]
    fn standard_watch_replaces_persistent_mode() {
        let mut m = Manager::default();
        m.add("/a", 1, Mode::PersistentRecursive);
        m.add("/a", 1, Mode::Standard);
        assert_eq!(m.recursive, 0);
        assert_eq!(
            m.trigger("/a", EventType::NodeDataChanged),
            BTreeSet::from([1])
        );
        assert!(m.trigger("/a", EventType::NodeDataChanged).is_empty());
    }

    #[test]
    fn remove_and_contains() {
        let mut m = Manager::default();
        m.add("/a", 1, Mode::Standard);
        assert_eq!(
            m.contains("/a", 2),
            Ok(true),
            "3.8 answers for any watcher on the path"
        );
        assert_eq!(m.contains("/b", 1), Ok(false));
        assert!(!m.remove("/a", 2));
        assert!(m.remove("/a", 1));
        assert!(!m.remove("/a", 1));
        assert_eq!(m.contains("/a", 1), Ok(false));
        m.add("/x", 3, Mode::PersistentRecursive);
        m.add("/y", 3, Mode::Standard);
        m.remove_session(3);
        assert_eq!(m.len(), 0);
        assert_eq!(m.recursive, 0);
        assert!(m.trigger("/x/y", EventType::NodeCreated).is_empty());
    }

    /// On a partitioned tree a standard watch leaves a recursive one in place, but removing the
    /// recursive watch (removeWatches, a closed session) forgets its mode: a later standard watch
    /// is one-shot and blind to descendants again.
    #[test]
    fn removed_recursive_watch_leaves_no_mode_on_a_partitioned_tree() {
        for remove_session in [false, true] {
            let mut m = Manager::default();
            m.keep_recursive_under_standard();
            m.add("/a", 1, Mode::PersistentRecursive);
            m.add("/a", 1, Mode::Standard);
            assert_eq!(m.mode(1, "/a"), Mode::PersistentRecursive);
            if remove_session {
                m.remove_session(1);
            } else {
                assert!(m.remove("/a", 1));
            }
            assert_eq!(m.recursive, 0);
            assert_eq!(m.contains("/a", 1), Ok(false));
            m.add("/a", 1, Mode::Standard);
            assert!(m.trigger("/a/b", EventType::NodeCreated).is_empty());
            assert_eq!(
                m.trigger("/a", EventType::NodeDataChanged),
                BTreeSet::from([1])
            );
            assert!(m.trigger("/a", EventType::NodeDataChanged).is_empty());
        }
    }
}
