//! Session liveness on this node: the deadline of every open session, renewed by its connection's
//! traffic. Expiry is decided here and then *ordered* as a closeSession like any command, so every
//! replica removes the session's ephemerals at the same point of the order.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::zk::SessionId;

#[derive(Debug)]
struct Tracked {
    timeout: Duration,
    deadline: Instant,
    /// A closeSession for it has been submitted; never submitted twice.
    closing: bool,
}

/// Invariant: a session is tracked from the moment its createSession executes until its
/// closeSession executes; `closing` sessions are not handed out for expiry again.
#[derive(Debug, Default)]
pub struct SessionTracker {
    sessions: Mutex<HashMap<SessionId, Tracked>>,
}

impl SessionTracker {
    /// Starts (or restarts) tracking with a fresh deadline.
    pub fn add(&self, id: SessionId, timeout_ms: i32, now: Instant) {
        let timeout = Duration::from_millis(timeout_ms.max(0) as u64);
        let mut s = self.sessions.lock().expect("session tracker poisoned");
        s.insert(
            id,
            Tracked {
                timeout,
                deadline: now + timeout,
                closing: false,
            },
        );
    }

    /// Renews the deadline; a session being closed stays closing.
    pub fn touch(&self, id: SessionId, now: Instant) {
        let mut s = self.sessions.lock().expect("session tracker poisoned");
        if let Some(t) = s.get_mut(&id) {
            t.deadline = now + t.timeout;
        }
    }

    /// Renews every deadline: a new leader grants every session a full timeout, since it cannot
    /// know when the old leader last heard of them.
    pub fn touch_all(&self, now: Instant) {
        let mut s = self.sessions.lock().expect("session tracker poisoned");
        for t in s.values_mut() {
            t.deadline = now + t.timeout;
        }
    }

    /// Sets a new negotiated timeout (a reconnect may change it) and renews the deadline.
    pub fn set_timeout(&self, id: SessionId, timeout_ms: i32, now: Instant) {
        let mut s = self.sessions.lock().expect("session tracker poisoned");
        if let Some(t) = s.get_mut(&id) {
            t.timeout = Duration::from_millis(timeout_ms.max(0) as u64);
            t.deadline = now + t.timeout;
        }
    }

    pub fn remove(&self, id: SessionId) {
        self.sessions
            .lock()
            .expect("session tracker poisoned")
            .remove(&id);
    }

    pub fn contains(&self, id: SessionId) -> bool {
        self.sessions
            .lock()
            .expect("session tracker poisoned")
            .contains_key(&id)
    }

    /// Sessions whose deadline has passed, marked closing so each is returned once.
    pub fn take_expired(&self, now: Instant) -> Vec<SessionId> {
        let mut s = self.sessions.lock().expect("session tracker poisoned");
        let mut out: Vec<SessionId> = s
            .iter_mut()
            .filter(|(_, t)| !t.closing && t.deadline <= now)
            .map(|(id, t)| {
                t.closing = true;
                *id
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// Every tracked session with its timeout and deadline, by id (for `dump`).
    pub fn list(&self) -> Vec<(SessionId, Duration, Instant)> {
        let s = self.sessions.lock().expect("session tracker poisoned");
        let mut out: Vec<_> = s
            .iter()
            .map(|(id, t)| (*id, t.timeout, t.deadline))
            .collect();
        out.sort_unstable_by_key(|e| e.0);
        out
    }

    pub fn len(&self) -> usize {
        self.sessions
            .lock()
            .expect("session tracker poisoned")
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_once_and_touch_defers() {
        let t = SessionTracker::default();
        let t0 = Instant::now();
        t.add(1, 1000, t0);
        t.add(2, 1000, t0);
        t.touch(2, t0 + Duration::from_millis(900));
        assert_eq!(
            t.take_expired(t0 + Duration::from_millis(500)),
            Vec::<i64>::new()
        );
        assert_eq!(t.take_expired(t0 + Duration::from_millis(1000)), vec![1]);
        assert_eq!(
            t.take_expired(t0 + Duration::from_millis(1100)),
            Vec::<i64>::new()
        );
        assert_eq!(t.take_expired(t0 + Duration::from_millis(1900)), vec![2]);
        t.remove(1);
        assert!(!t.contains(1));
        assert!(t.contains(2));
    }

    #[test]
    fn a_closing_session_is_not_renewed_into_expiry_again() {
        let t = SessionTracker::default();
        let t0 = Instant::now();
        t.add(7, 100, t0);
        assert_eq!(t.take_expired(t0 + Duration::from_millis(100)), vec![7]);
        t.touch(7, t0 + Duration::from_millis(150));
        assert_eq!(
            t.take_expired(t0 + Duration::from_millis(500)),
            Vec::<i64>::new()
        );
    }
}
