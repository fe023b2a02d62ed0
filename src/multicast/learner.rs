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
}

/// Learns decisions and delivers them: each group in instance order, groups merged round-robin,
/// `m` instances (skips included) from one group, then `m` from the next.
///
/// Invariant: each group is delivered in consecutive instance order starting from its first
/// instance; the merged order is a function of the decided values alone, so every learner with
/// the same groups delivers the same sequence.
/// Buffered decisions are bounded by the coordinators' pipelines: a group runs at most its
/// in-flight window ahead of the slowest one, since skips keep every group moving.
#[derive(Debug)]
pub struct Learner {
    lanes: Vec<GroupLane>,
    m: u64,
    /// Index of the lane whose turn it is.
    cursor: usize,
    /// Instances delivered from the cursor's lane in this turn.
    taken: u64,
}

impl Learner {
    /// A learner over `groups`, each with the next instance it must deliver (1 when nothing was
    /// delivered yet). Instance numbering starts at 1 in every group, so the merge position follows
    /// from these numbers; a set of numbers no merge could produce is an error.
    pub fn new(groups: &[(GroupId, Instance)], m: u64) -> Result<Learner, Error> {
        if groups.is_empty() || m == 0 {
            return Err(Error::InvalidPosition("need at least one group and m > 0"));
        }
        if groups.iter().any(|&(_, next)| next == 0) {
            return Err(Error::InvalidPosition("instances start at 1"));
        }
        let done: Vec<u64> = groups.iter().map(|&(_, next)| next - 1).collect();
        let (cursor, taken) = merge_position(&done, m)?;
        Ok(Learner {
            lanes: groups
                .iter()
                .map(|&(id, next)| GroupLane {
                    id,
                    next,
                    buffered: BTreeMap::new(),
                })
                .collect(),
            m,
            cursor,
            taken,
        })
    }

    /// The next instance this learner will deliver from `group`.
    pub fn next_instance(&self, group: GroupId) -> Option<Instance> {
        self.lanes.iter().find(|l| l.id == group).map(|l| l.next)
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
            let lane = &mut self.lanes[self.cursor];
            let Some(value) = lane.buffered.remove(&lane.next) else {
                break;
            };
            out.push(Delivery {
                group: lane.id,
                instance: lane.next,
                value,
            });
            lane.next += 1;
            self.taken += 1;
            if self.taken == self.m {
                self.taken = 0;
                self.cursor = (self.cursor + 1) % self.lanes.len();
            }
        }
        out
    }
}

/// The (cursor, taken) a round-robin merge reaches after delivering `done[j]` instances of lane j.
fn merge_position(done: &[u64], m: u64) -> Result<(usize, u64), Error> {
    // After full rounds k, every lane has k*m; then lanes before the cursor have (k+1)*m, the
    // cursor lane k*m + t with t < m, and the lanes after it k*m.
    let k = done[done.len() - 1] / m;
    let mut cursor = None;
    for (j, &d) in done.iter().enumerate() {
        let full = (k + 1) * m;
        match cursor {
            None if d == full => {}
            None if d >= k * m && d < full => cursor = Some((j, d - k * m)),
            Some(_) if d == k * m => {}
            _ => return Err(Error::InvalidPosition("not a round-robin merge position")),
        }
    }
    // All lanes at (k+1)*m cannot happen: the last lane then has (k+1)*m, so k was wrong.
    cursor.ok_or(Error::InvalidPosition("not a round-robin merge position"))
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
        let mut l = Learner::new(&[(0, 1)], 1).unwrap();
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

    #[test]
    fn groups_merge_round_robin_m_at_a_time() {
        let mut l = Learner::new(&[(10, 1), (20, 1)], 2).unwrap();
        let mut d = Vec::new();
        for i in 1..=4 {
            d.extend(l.on_decided(20, i, b(i)));
        }
        assert!(d.is_empty(), "group 10 goes first");
        d.extend(l.on_decided(10, 1, b(1)));
        d.extend(l.on_decided(10, 2, b(2)));
        d.extend(l.on_decided(10, 3, b(3)));
        assert_eq!(order(&d), vec![(10, 1), (10, 2), (20, 1), (20, 2), (10, 3)]);
    }

    #[test]
    fn merge_position_resumes_where_a_merge_stopped() {
        // Drive a learner, then rebuild one from the per-group next instances at every point and
        // check that both deliver the same continuation.
        let m = 3;
        let groups = [1, 2, 3];
        let mut full = Learner::new(&[(1, 1), (2, 1), (3, 1)], m).unwrap();
        let mut delivered = Vec::new();
        for i in 1..=10 {
            for g in groups {
                delivered.extend(full.on_decided(g, i, b(i)));
            }
        }
        for cut in 0..delivered.len() {
            let mut next = [1u64; 3];
            for d in &delivered[..cut] {
                next[(d.group - 1) as usize] = d.instance + 1;
            }
            let pos: Vec<(GroupId, Instance)> = groups.iter().copied().zip(next).collect();
            let mut resumed = Learner::new(&pos, m).unwrap();
            let mut again = Vec::new();
            for i in 1..=10 {
                for g in groups {
                    again.extend(resumed.on_decided(g, i, b(i)));
                }
            }
            assert_eq!(order(&again), order(&delivered[cut..]), "cut {cut}");
        }
        assert!(Learner::new(&[(1, 5), (2, 1)], 3).is_err());
        assert!(Learner::new(&[(1, 0)], 1).is_err());
    }
}
