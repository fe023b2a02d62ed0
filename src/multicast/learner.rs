//! The learner: per-group order and the deterministic round-robin merge of groups.

use std::collections::BTreeMap;

use super::{Batch, Error, GroupId, Instance, PaxosMsg};

/// An instance handed to the layer above, in merged order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub group: GroupId,
    pub instance: Instance,
    pub value: Batch,
}

#[derive(Debug)]
struct GroupLane {
    id: GroupId,
    /// The next instance to deliver.
    next: Instance,
    /// Decided instances >= `next`, waiting for their turn.
    buffered: BTreeMap<Instance, Batch>,
    /// Timestamp of the last delivered instance, and whether it was a skip.
    delivered: (u64, bool),
}

impl GroupLane {
    /// Timestamp of the last instance known decided, and whether it is a skip.
    fn horizon(&self) -> (u64, bool) {
        self.buffered
            .values()
            .next_back()
            .map_or(self.delivered, |b| (b.time_ms, b.is_skip()))
    }
}

/// Learns decisions and delivers them: each group in instance order, groups merged by the
/// coordinators' timestamps. Once every group's next instance is decided, the one with the
/// smallest `(time_ms, position of its group)` is delivered, and so on.
///
/// Invariant: each group is delivered in consecutive instance order starting from its first
/// instance; the merged order is a function of the decided values alone, so every learner with
/// the same groups delivers the same sequence, and a learner restarted from any per-group
/// positions of that sequence continues it.
///
/// Why timestamps and not round-robin by instance: with round-robin every group must decide as
/// many instances as the busiest one, and a group whose idle skips ran ahead (or a busy one)
/// makes the others wait behind its backlog one instance at a time. With timestamps an idle group
/// needs one skip whenever commands of another group wait for it ([`Learner::waiting_on`]), and
/// none while everything is idle (the role of Multi-Ring Paxos's rate-based skips).
#[derive(Debug)]
pub struct Learner {
    lanes: Vec<GroupLane>,
    /// Timestamp of the last delivered batch that carried commands, if any was.
    last_command_ms: Option<u64>,
}

impl Learner {
    /// A learner over `groups`, each with the next instance it must deliver (1 when nothing was
    /// delivered yet).
    pub fn new(groups: &[(GroupId, Instance)]) -> Result<Learner, Error> {
        if groups.is_empty() {
            return Err(Error::InvalidPosition("need at least one group"));
        }
        if groups.iter().any(|&(_, next)| next == 0) {
            return Err(Error::InvalidPosition("instances start at 1"));
        }
        Ok(Learner {
            lanes: groups
                .iter()
                .map(|&(id, next)| GroupLane {
                    id,
                    next,
                    buffered: BTreeMap::new(),
                    delivered: (0, true),
                })
                .collect(),
            last_command_ms: None,
        })
    }

    /// The next instance this learner will deliver from `group`.
    pub fn next_instance(&self, group: GroupId) -> Option<Instance> {
        self.lanes.iter().find(|l| l.id == group).map(|l| l.next)
    }

    /// Whether this learner knows `instance` of `group` decided: delivered, or buffered until
    /// the merge reaches it.
    pub fn knows_decided(&self, group: GroupId, instance: Instance) -> bool {
        self.lanes
            .iter()
            .find(|l| l.id == group)
            .is_some_and(|l| instance < l.next || l.buffered.contains_key(&instance))
    }

    /// When the merge holds commands back: the groups whose next instance is not known while a
    /// batch with commands is buffered, and the timestamp an instance of each must reach so that
    /// every such batch buffered now can be delivered (one above the latest: ties go to earlier
    /// groups). Buffered skips alone wait for nothing (asking for skips to release skips would
    /// keep idle groups trading skips forever).
    pub fn waiting_on(&self) -> Option<(u64, Vec<GroupId>)> {
        let latest = self
            .lanes
            .iter()
            .filter_map(|l| {
                l.buffered
                    .values()
                    .rev()
                    .find(|b| !b.is_skip())
                    .map(|b| b.time_ms)
            })
            .max()?;
        let headless: Vec<GroupId> = self
            .lanes
            .iter()
            .filter(|l| !l.buffered.contains_key(&l.next))
            .map(|l| l.id)
            .collect();
        (!headless.is_empty()).then_some((latest + 1, headless))
    }

    /// Idle groups about to hold the merge back: while commands flow (one was delivered stamped
    /// at `active_since_ms` or later), each group whose last decided instance is a skip stamped
    /// before `soon_ms`. Asking them for the next skip now, before a batch waits on them, spares
    /// the busy groups a stall of one round trip of the idle group every time its skip runs out.
    pub fn running_out(&self, active_since_ms: u64, soon_ms: u64) -> Vec<GroupId> {
        if self.lanes.len() < 2 || self.last_command_ms.is_none_or(|t| t < active_since_ms) {
            return Vec::new();
        }
        self.lanes
            .iter()
            .filter(|l| matches!(l.horizon(), (t, true) if t < soon_ms))
            .map(|l| l.id)
            .collect()
    }

    /// Takes a [`PaxosMsg::Decision`]; other messages are ignored.
    pub fn step(&mut self, msg: PaxosMsg) -> Vec<Delivery> {
        match msg {
            PaxosMsg::Decision {
                group,
                instance,
                value,
                ..
            } => self.on_decided(group, instance, value),
            _ => Vec::new(),
        }
    }

    /// Records that `instance` of `group` decided `value`; returns what became deliverable, in order.
    /// Repeated decisions and decisions for groups this learner does not follow are ignored.
    pub fn on_decided(
        &mut self,
        group: GroupId,
        instance: Instance,
        value: Batch,
    ) -> Vec<Delivery> {
        let Some(lane) = self.lanes.iter_mut().find(|l| l.id == group) else {
            return Vec::new();
        };
        if instance < lane.next {
            return Vec::new();
        }
        let previous = lane.buffered.insert(instance, value);
        if let Some(previous) = previous {
            // Agreement: an instance decides one value.
            debug_assert_eq!(Some(&previous), lane.buffered.get(&instance));
        }
        let mut out = Vec::new();
        loop {
            let mut first: Option<(u64, usize)> = None;
            for (i, lane) in self.lanes.iter().enumerate() {
                let Some(head) = lane.buffered.get(&lane.next) else {
                    return out;
                };
                if first.is_none_or(|(t, _)| head.time_ms < t) {
                    first = Some((head.time_ms, i));
                }
            }
            let Some((_, i)) = first else { return out };
            let lane = &mut self.lanes[i];
            let value = lane.buffered.remove(&lane.next).expect("head is buffered");
            lane.delivered = (value.time_ms, value.is_skip());
            if !value.is_skip() {
                self.last_command_ms = self.last_command_ms.max(Some(value.time_ms));
            }
            out.push(Delivery {
                group: lane.id,
                instance: lane.next,
                value,
            });
            lane.next += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn b(t: u64) -> Batch {
        Batch::new(t, vec![Bytes::from(t.to_string())])
    }

    fn order(d: &[Delivery]) -> Vec<(GroupId, Instance)> {
        d.iter().map(|d| (d.group, d.instance)).collect()
    }

    #[test]
    fn single_group_delivers_in_instance_order_once() {
        let mut l = Learner::new(&[(0, 1)]).unwrap();
        assert!(l.on_decided(0, 2, b(2)).is_empty());
        assert!(l.on_decided(0, 3, b(3)).is_empty());
        let d = l.on_decided(0, 1, b(1));
        assert_eq!(order(&d), vec![(0, 1), (0, 2), (0, 3)]);
        assert!(
            l.on_decided(0, 2, b(2)).is_empty(),
            "duplicates are ignored"
        );
        assert!(l.on_decided(9, 4, b(4)).is_empty(), "unknown group");
        assert_eq!(l.next_instance(0), Some(4));
    }

    fn at(t: u64) -> Batch {
        Batch::new(t, vec![Bytes::from(format!("t{t}"))])
    }

    #[test]
    fn groups_merge_by_time_once_every_head_is_known() {
        let mut l = Learner::new(&[(10, 1), (20, 1)]).unwrap();
        assert!(l.on_decided(20, 1, at(5)).is_empty());
        assert!(
            l.on_decided(20, 2, at(7)).is_empty(),
            "group 10's head unknown"
        );
        let d = l.on_decided(10, 1, at(6));
        assert_eq!(order(&d), vec![(20, 1), (10, 1)]);
        // Group 10 is now headless: group 20 waits even though its head is old.
        assert!(l.on_decided(20, 3, at(8)).is_empty());
        let d = l.on_decided(10, 2, at(100));
        assert_eq!(order(&d), vec![(20, 2), (20, 3)]);
        // Ties go to the earlier group.
        let d = l.on_decided(20, 4, at(100));
        assert_eq!(order(&d), vec![(10, 2)]);
        let d = l.on_decided(10, 3, at(101));
        assert_eq!(order(&d), vec![(20, 4)]);
    }

    #[test]
    fn waiting_on_names_headless_groups_only_while_commands_wait() {
        let mut l = Learner::new(&[(10, 1), (20, 1)]).unwrap();
        assert_eq!(l.waiting_on(), None, "nothing buffered");
        assert!(l.on_decided(20, 1, at(5)).is_empty());
        assert!(l.on_decided(20, 2, at(9)).is_empty());
        assert_eq!(l.waiting_on(), Some((10, vec![10])), "above the latest");
        // A skip of group 10 at 7 releases 20's first batch only; group 10 is asked again.
        let d = l.on_decided(10, 1, Batch::skip(7));
        assert_eq!(order(&d), vec![(20, 1), (10, 1)]);
        assert_eq!(l.waiting_on(), Some((10, vec![10])));
        let d = l.on_decided(10, 2, Batch::skip(12));
        assert_eq!(order(&d), vec![(20, 2)]);
        // Only a skip is buffered now: nothing waits, so no group is asked.
        assert_eq!(l.waiting_on(), None);
    }

    #[test]
    fn a_learner_restarted_at_any_point_continues_the_same_sequence() {
        let groups = [1, 2, 3];
        let mut rng = crate::rng::Rng(7);
        let mut decided: Vec<(GroupId, Instance, Batch)> = Vec::new();
        for g in groups {
            let mut t = 0;
            for i in 1..=12 {
                t += rng.range(0, 5);
                decided.push((g, i, at(t)));
            }
        }
        // Decisions arrive in a shuffled order; the delivered sequence must not depend on it.
        let mut shuffled = decided.clone();
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, rng.index(i + 1));
        }
        let run = |l: &mut Learner, ds: &[(GroupId, Instance, Batch)]| {
            let mut out = Vec::new();
            for (g, i, b) in ds {
                out.extend(l.on_decided(*g, *i, b.clone()));
            }
            out
        };
        let full = run(
            &mut Learner::new(&[(1, 1), (2, 1), (3, 1)]).unwrap(),
            &decided,
        );
        let again = run(
            &mut Learner::new(&[(1, 1), (2, 1), (3, 1)]).unwrap(),
            &shuffled,
        );
        assert_eq!(order(&full), order(&again));
        for cut in 0..full.len() {
            let mut next = [1u64; 3];
            for d in &full[..cut] {
                next[(d.group - 1) as usize] = d.instance + 1;
            }
            let pos: Vec<(GroupId, Instance)> = groups.iter().copied().zip(next).collect();
            let resumed = run(&mut Learner::new(&pos).unwrap(), &shuffled);
            assert_eq!(order(&resumed), order(&full[cut..]), "cut {cut}");
        }
        assert!(Learner::new(&[]).is_err());
        assert!(Learner::new(&[(1, 0)]).is_err());
    }

    #[test]
    fn an_idle_group_is_asked_ahead_only_while_commands_flow() {
        let mut l = Learner::new(&[(1, 1), (2, 1)]).unwrap();
        assert!(
            l.running_out(0, 100).is_empty(),
            "nothing delivered: nobody is busy"
        );
        l.on_decided(2, 1, Batch::skip(50));
        l.on_decided(1, 1, b(40));
        assert_eq!(
            l.running_out(30, 60),
            vec![2],
            "skip at 50 runs out before 60"
        );
        assert!(
            l.running_out(30, 50).is_empty(),
            "skip at 50 still covers 50"
        );
        assert!(l.running_out(41, 60).is_empty(), "no command since 41");
        l.on_decided(2, 2, Batch::skip(80));
        assert!(
            l.running_out(30, 60).is_empty(),
            "the buffered skip at 80 covers 60"
        );
        l.on_decided(1, 2, b(90));
        assert_eq!(
            l.running_out(30, 100),
            vec![2],
            "the busy group is never asked: its last instance carries commands"
        );
    }
}
