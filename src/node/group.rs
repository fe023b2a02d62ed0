//! The tokio driver of this node's [`Member`] in its Paxos groups (one when the cluster is a single
//! partition; a partition's group `g_p` and the global group `g_all` otherwise): its votes in
//! RocksDB, its messages on the peer network, its deliveries to the replica.
//!
//! One task owns the member. Commands arrive, each tagged with its group, through one bounded
//! queue ([`GroupHandle::submit`]); decided batches leave through a bounded channel of
//! [`Delivered`] in the learner's merged order (each group in instance order, groups merged by
//! the coordinators' timestamps). Votes reach RocksDB through one synced write at a time: while it
//! runs on a blocking thread, new votes of every group accumulate into the next write (group
//! commit: one fsync per write, never one per command). Messages that reflect a vote, and
//! deliveries that needed one, leave only after the write holding it returned. A group whose only
//! member is this node needs no network: the same code runs with messages looping back locally.
//!
//! Recovery: [`start`] loads the acceptor's votes of every group; each elected coordinator runs
//! Phase 1 over every instance after the replica's checkpoint, so the decided ones are delivered
//! again, in the same merged order; a member behind the others catches up from their acceptors.
//! [`GroupHandle::trim`] reports a checkpoint; acceptors forget instances every member has
//! checkpointed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use storage::{CheckpointDb, Storage, StoreError};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::store::RocksVoteStore;
use crate::multicast::{
    self, AcceptorState, Ballot, CoordinatorOptions, Envelope, GroupId, GroupSpec, Instance,
    Member, MemberConfig, MemberOptions, NodeId, Outputs, PaxosMsg, VoteStore, VoteWrite,
};

/// Default capacity of the submit queue, in commands.
pub const DEFAULT_SUBMIT_CAPACITY: usize = 8192;
/// Default capacity of the delivery channel, in batches.
pub const DEFAULT_DELIVERY_CAPACITY: usize = 1024;
/// Default tick: the coordinator's batch delay and retries count in these.
pub const DEFAULT_TICK: Duration = Duration::from_millis(1);
/// The tick while nothing here needs the fine one ([`Member::needs_ticks`]): an idle node wakes
/// this seldom instead of every [`DEFAULT_TICK`].
pub const IDLE_TICK: Duration = Duration::from_millis(10);
/// Ticks an idle coordinator waits before it decides a skip, when this node merges several groups
/// (ticks of [`IDLE_TICK`] then, so about a second). Only a fallback: a merge that holds commands
/// back asks the idle group for a skip at once ([`PaxosMsg::SkipNeeded`]), so idle groups cost
/// little and a lone command waits for no timer.
pub const DEFAULT_SKIP_AFTER_TICKS: u64 = 100;

/// Options of this node's part in its groups.
#[derive(Clone, Debug)]
pub struct GroupOptions {
    /// The groups this node is a member of, in merge order; each lists all its members (acceptors,
    /// learners, coordinator candidates), this node included.
    pub groups: Vec<GroupSpec>,
    /// This node's id.
    pub node: NodeId,
    /// Commands [`GroupHandle::submit`] may queue before it waits (back-pressure).
    pub submit_capacity: usize,
    /// Batches waiting for the consumer before the driver stops taking commands.
    pub delivery_capacity: usize,
    /// Length of one coordinator tick.
    pub tick: Duration,
    /// With more than one group, `member.coordinator.skip_after_ticks` must be set ([`start`]
    /// refuses otherwise): a merging learner would wait forever on an idle group.
    pub member: MemberOptions,
    /// Where synced write times and sizes are recorded, if anywhere.
    pub metrics: Option<Arc<super::metrics::NodeMetrics>>,
}

impl GroupOptions {
    /// Node `node` in `groups` (merge order), with default capacities and timing. Skips are on
    /// exactly when there is more than one group: with a single group no merging learner waits on
    /// it, so an idle group stays silent (and writes nothing).
    pub fn for_groups(node: NodeId, groups: Vec<GroupSpec>) -> GroupOptions {
        let skip_after_ticks = (groups.len() > 1).then_some(DEFAULT_SKIP_AFTER_TICKS);
        GroupOptions {
            groups,
            node,
            submit_capacity: DEFAULT_SUBMIT_CAPACITY,
            delivery_capacity: DEFAULT_DELIVERY_CAPACITY,
            tick: DEFAULT_TICK,
            member: MemberOptions {
                coordinator: CoordinatorOptions {
                    skip_after_ticks,
                    ..CoordinatorOptions::default()
                },
                ..MemberOptions::default()
            },
            metrics: None,
        }
    }

    /// The group ids in merge order.
    pub fn group_ids(&self) -> Vec<GroupId> {
        self.groups.iter().map(|g| g.group).collect()
    }

    fn validate(&self) -> Result<(), GroupError> {
        self.member.coordinator.validate()?;
        let invalid = |why| Err(GroupError::Multicast(multicast::Error::InvalidOptions(why)));
        if self.groups.is_empty() {
            return invalid("a node belongs to at least one group");
        }
        let ids = self.group_ids();
        if ids.iter().enumerate().any(|(i, g)| ids[..i].contains(g)) {
            return invalid("a group is listed twice");
        }
        if ids.len() > 1 && self.member.coordinator.skip_after_ticks.is_none() {
            return invalid("merging several groups needs skips (skip_after_ticks)");
        }
        Ok(())
    }
}

impl Default for GroupOptions {
    /// One group (0), node 1 its only member, no skips.
    fn default() -> GroupOptions {
        GroupOptions::for_groups(1, vec![GroupSpec::all_acceptors(0, vec![1])])
    }
}

/// What the peer network hands the groups.
#[derive(Debug)]
pub enum NetEvent {
    Message {
        from: NodeId,
        msg: PaxosMsg,
    },
    /// The link to a peer came up.
    Up(NodeId),
    /// The link to a peer broke: messages sent to it since it came up may be lost.
    Down(NodeId),
}

/// Sends a message to a peer without waiting; returns false when it was dropped.
pub type SendFn = Box<dyn Fn(NodeId, &PaxosMsg) -> bool + Send + Sync>;

/// The groups' view of the peer network (absent when every group has this node as its only
/// member). Messages carry their group, so one network serves every group.
pub struct Network {
    pub send: SendFn,
    pub events: mpsc::Receiver<NetEvent>,
}

/// Who leads the first group, as this node believes, and a counter that grows whenever commands
/// this node submitted to any group may have been lost (a group lost the leader it had, or the link
/// to it broke). Sessions with requests in flight are told to reconnect then, as ZooKeeper's
/// followers do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaderView {
    pub leader: Option<NodeId>,
    pub epoch: u64,
}

/// One decided instance of `group`, delivered in the merged order: each group's instances
/// consecutive, starting after the position given to [`start`]. Its vote is durable. `commands`
/// is empty for a skip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    pub group: GroupId,
    pub instance: Instance,
    /// Stamped by the group's coordinator: strictly increasing within a group for batches it
    /// closes.
    pub time_ms: u64,
    pub commands: Vec<Bytes>,
}

/// Errors of the group driver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// The driver stopped (shut down, or its consumer dropped the delivery receiver).
    #[error("group stopped")]
    Closed,
    /// The vote store failed; the driver stopped because its votes may not be durable.
    #[error("vote store failed: {0}")]
    Store(#[from] StoreError),
    /// A group's checkpoint position is older than the oldest instance kept on disk.
    #[error("group {group}: checkpoint at instance {after} is older than the trimmed log (first kept {low})")]
    CheckpointBehindTrim {
        group: GroupId,
        after: Instance,
        low: Instance,
    },
    /// Trim asked to forget instances not delivered yet.
    #[error("group {group}: cannot trim up to {up_to}: delivered only through {delivered}")]
    TrimBeyondDelivered {
        group: GroupId,
        up_to: Instance,
        delivered: Instance,
    },
    /// A command for a group this node is not a member of.
    #[error("this node is not a member of group {0}")]
    NotAMember(GroupId),
    /// A list of positions that does not hold exactly one per group.
    #[error("expected one position per group ({expected}), got {got}")]
    Positions { expected: usize, got: usize },
    /// Options or positions the consensus core rejects.
    #[error(transparent)]
    Multicast(#[from] multicast::Error),
    /// The blocking writer thread panicked.
    #[error("vote writer failed: {0}")]
    Writer(String),
    /// The data directory holds votes cast under another acceptor set: a quorum of the new set
    /// might miss every vote of an old quorum, so a decided value could be decided again
    /// differently. Changing the set needs fresh data directories for the group.
    #[error("group {group}: the data directory's votes were cast with acceptors {stored:?}, the configuration now names {configured:?}; restore that set or start this group from empty data directories")]
    AcceptorsChanged {
        group: GroupId,
        stored: Vec<NodeId>,
        configured: Vec<NodeId>,
    },
}

enum Control {
    Trim {
        positions: Vec<Instance>,
        done: oneshot::Sender<Result<(), GroupError>>,
    },
    Install {
        positions: Vec<Instance>,
        done: oneshot::Sender<Result<(), GroupError>>,
    },
    Shutdown,
}

/// Submits commands to the groups and controls them. Cheap to clone.
///
/// Positions (`trim`, `install`, [`start`]'s `after`) hold one instance per group, in the order of
/// [`GroupHandle::groups`]; 0 means none.
#[derive(Clone)]
pub struct GroupHandle {
    node: NodeId,
    groups: Arc<[GroupId]>,
    submit: mpsc::Sender<(GroupId, Bytes)>,
    control: mpsc::Sender<Control>,
    checkpoints: CheckpointDb,
    fault: Arc<OnceLock<StoreError>>,
    /// Per group (same order), the believed leader, 0 for none.
    leaders: Arc<[AtomicU32]>,
    view: watch::Receiver<LeaderView>,
    /// Per group (same order), other members heard from recently.
    live_peers: Arc<[AtomicU32]>,
}

impl GroupHandle {
    /// Queues a command for `group`; waits while the queue is full. `Ok` means queued, not yet
    /// decided: the command appears in a [`Delivered`] once its batch is durable, unless the
    /// group's leader changes first (see [`LeaderView`]).
    pub async fn submit(&self, group: GroupId, cmd: Bytes) -> Result<(), GroupError> {
        if !self.groups.contains(&group) {
            return Err(GroupError::NotAMember(group));
        }
        self.submit
            .send((group, cmd))
            .await
            .map_err(|_| self.stopped_error())
    }

    /// Reports that a checkpoint covers every instance <= `positions[i]` of group i (call after
    /// it is saved); the acceptors forget those instances once every member has reported as
    /// much. Returns once the report, and any trim it allowed here, is durable. Each position must
    /// have been delivered; nothing is recorded unless all are.
    pub async fn trim(&self, positions: &[Instance]) -> Result<(), GroupError> {
        self.check_positions(positions)?;
        let positions = positions.to_vec();
        self.call(|done| Control::Trim { positions, done }).await
    }

    /// Resumes delivery after `positions`, the state the replica installed from another member's
    /// checkpoint (the decisions up to it were trimmed everywhere). Deliveries not yet taken at or
    /// below a group's position are dropped.
    pub async fn install(&self, positions: &[Instance]) -> Result<(), GroupError> {
        self.check_positions(positions)?;
        let positions = positions.to_vec();
        self.call(|done| Control::Install { positions, done }).await
    }

    fn check_positions(&self, positions: &[Instance]) -> Result<(), GroupError> {
        if positions.len() != self.groups.len() {
            return Err(GroupError::Positions {
                expected: self.groups.len(),
                got: positions.len(),
            });
        }
        Ok(())
    }

    /// Sends a control request and waits for the driver's answer.
    async fn call(&self, request: impl FnOnce(Ack) -> Control) -> Result<(), GroupError> {
        let (done, wait) = oneshot::channel();
        self.control
            .send(request(done))
            .await
            .map_err(|_| self.stopped_error())?;
        wait.await.map_err(|_| self.stopped_error())?
    }

    /// Stops taking commands; commands already queued are still ordered and delivered, then the
    /// delivery channel closes and the task ends.
    pub async fn shutdown(&self) {
        let _ = self.control.send(Control::Shutdown).await;
    }

    /// The checkpoint store of the same RocksDB instance.
    pub fn checkpoints(&self) -> &CheckpointDb {
        &self.checkpoints
    }

    /// The groups of this node, in merge order.
    pub fn groups(&self) -> &[GroupId] {
        &self.groups
    }

    fn index(&self, group: GroupId) -> Option<usize> {
        self.groups.iter().position(|&g| g == group)
    }

    /// True while this node's coordinator leads `group`.
    pub fn is_leader(&self, group: GroupId) -> bool {
        self.leader(group) == Some(self.node)
    }

    /// Other members of `group` heard from recently (ZooKeeper's `zk_followers` on a leader).
    pub fn live_peers(&self, group: GroupId) -> u32 {
        self.index(group)
            .map_or(0, |i| self.live_peers[i].load(Ordering::Relaxed))
    }

    /// The member this node believes leads `group`.
    pub fn leader(&self, group: GroupId) -> Option<NodeId> {
        let i = self.index(group)?;
        Some(self.leaders[i].load(Ordering::Acquire)).filter(|&n| n != 0)
    }

    /// Watches leader changes and possible losses of submitted commands, in every group.
    pub fn leader_view(&self) -> watch::Receiver<LeaderView> {
        self.view.clone()
    }

    fn stopped_error(&self) -> GroupError {
        match self.fault.get() {
            Some(e) => GroupError::Store(e.clone()),
            None => GroupError::Closed,
        }
    }
}

/// This node's running groups.
pub struct Group {
    pub handle: GroupHandle,
    /// Decided batches in merged order; closes when the driver stops.
    pub deliveries: mpsc::Receiver<Delivered>,
    /// A group and a member of it to fetch a checkpoint from: the decisions this node misses in
    /// that group were trimmed.
    pub state_requests: mpsc::Receiver<(GroupId, NodeId)>,
    /// The driver task; ends with the reason it stopped.
    pub task: JoinHandle<Result<(), GroupError>>,
}

/// Refuses a group whose votes on disk were cast under another acceptor set, and records the set
/// when none is recorded yet. Votes written before sets were recorded were cast with every member
/// as an acceptor.
fn check_acceptors(
    store: &RocksVoteStore,
    spec: &GroupSpec,
    state: &AcceptorState,
) -> Result<(), GroupError> {
    let mut configured = spec.acceptors.clone();
    configured.sort_unstable();
    let stored = match store.acceptors(spec.group)? {
        Some(mut set) => {
            set.sort_unstable();
            set
        }
        None if state.promised == Ballot::ZERO && state.accepted.is_empty() && state.low <= 1 => {
            store.record_acceptors(spec.group, &configured)?;
            return Ok(());
        }
        None => {
            let mut members = spec.members.clone();
            members.sort_unstable();
            if members == configured {
                store.record_acceptors(spec.group, &configured)?;
            }
            members
        }
    };
    if stored != configured {
        return Err(GroupError::AcceptorsChanged {
            group: spec.group,
            stored,
            configured,
        });
    }
    Ok(())
}

/// Starts this node's part in its groups over `storage`: loads its votes, then orders commands.
/// `after` holds, per group in the order of `options.groups`, the instance of the caller's last
/// checkpoint (0 for none); it must be a position the merged order reaches. Decided instances
/// after it are delivered, old ones first, in the merged order. `network` is required when a
/// group has other members.
pub async fn start(
    storage: &Storage,
    options: GroupOptions,
    after: &[Instance],
    network: Option<Network>,
) -> Result<Group, GroupError> {
    options.validate()?;
    if after.len() != options.groups.len() {
        return Err(GroupError::Positions {
            expected: options.groups.len(),
            got: after.len(),
        });
    }
    if options.groups.iter().any(|g| g.members.len() > 1) && network.is_none() {
        return Err(GroupError::Multicast(multicast::Error::InvalidOptions(
            "a group with several members needs a network",
        )));
    }
    let node = options.node;
    let ids = options.group_ids();
    let store = RocksVoteStore::new(storage.votes());
    let specs = options.groups.clone();
    let (store, states) = tokio::task::spawn_blocking(move || {
        let states: Result<Vec<_>, GroupError> = specs
            .iter()
            .map(|spec| {
                let state = store.load(spec.group)?;
                check_acceptors(&store, spec, &state)?;
                Ok(state)
            })
            .collect();
        (store, states)
    })
    .await
    .map_err(|e| GroupError::Writer(e.to_string()))?;
    let states = states?;
    for ((&group, state), &after) in ids.iter().zip(&states).zip(after) {
        if state.low > after + 1 {
            return Err(GroupError::CheckpointBehindTrim {
                group,
                after,
                low: state.low,
            });
        }
        tracing::info!(
            group,
            node,
            members = ?options.groups.iter().find(|g| g.group == group).map(|g| &g.members),
            acceptors = ?options.groups.iter().find(|g| g.group == group).map(|g| &g.acceptors),
            after,
            low = state.low,
            highest = ?state.accepted.keys().next_back(),
            "group starting"
        );
    }
    let epoch = Instant::now();
    let mut member = Member::new(
        MemberConfig {
            id: node,
            groups: options.groups.clone(),
            next: after.iter().map(|a| a + 1).collect(),
            options: options.member.clone(),
        },
        states,
        0,
    )?;
    for (&group, &after) in ids.iter().zip(after) {
        member.checkpointed(group, after + 1);
    }
    let (submit_tx, submit_rx) = mpsc::channel(options.submit_capacity.max(1));
    let (control_tx, control_rx) = mpsc::channel(16);
    let (deliver_tx, deliver_rx) = mpsc::channel(options.delivery_capacity.max(1));
    let (view_tx, view_rx) = watch::channel(LeaderView::default());
    let (state_tx, state_rx) = mpsc::channel(4);
    let fault = Arc::new(OnceLock::new());
    let leaders: Arc<[AtomicU32]> = ids.iter().map(|_| AtomicU32::new(0)).collect();
    let live_peers: Arc<[AtomicU32]> = ids.iter().map(|_| AtomicU32::new(0)).collect();
    let (send, events) = match network {
        Some(n) => (Some(n.send), Some(n.events)),
        None => (None, None),
    };
    let groups: Arc<[GroupId]> = ids.into();
    let driver = Driver {
        options,
        groups: groups.clone(),
        member,
        epoch,
        send,
        store: Some(store),
        pending_votes: Vec::new(),
        pending_after: Vec::new(),
        pending_deliveries: Vec::new(),
        pending_acks: Vec::new(),
        writing_after: Vec::new(),
        writing_deliveries: Vec::new(),
        writing_acks: Vec::new(),
        ready: VecDeque::new(),
        fault: fault.clone(),
        leaders: leaders.clone(),
        view: view_tx,
        state: state_tx,
        live_peers: live_peers.clone(),
    };
    let task = tokio::spawn(driver.run(submit_rx, control_rx, deliver_tx, events));
    Ok(Group {
        handle: GroupHandle {
            node,
            groups,
            submit: submit_tx,
            control: control_tx,
            checkpoints: storage.checkpoints(),
            fault,
            leaders,
            view: view_rx,
            live_peers,
        },
        deliveries: deliver_rx,
        state_requests: state_rx,
        task,
    })
}

type Ack = oneshot::Sender<Result<(), GroupError>>;
type WriteTask = JoinHandle<(RocksVoteStore, Result<(), StoreError>)>;

/// Invariant: at most one vote write runs; `store` is `None` exactly while it runs. Messages and
/// deliveries in `pending_*` wait for `pending_votes` (and the running write); those in
/// `writing_*` wait for the running write only. Deliveries leave in the learner's merged order.
struct Driver {
    options: GroupOptions,
    /// The group ids in merge order (the order of positions and of `leaders`, `live_peers`).
    groups: Arc<[GroupId]>,
    member: Member,
    epoch: Instant,
    send: Option<SendFn>,
    store: Option<RocksVoteStore>,
    pending_votes: Vec<VoteWrite>,
    pending_after: Vec<Envelope>,
    pending_deliveries: Vec<Delivered>,
    pending_acks: Vec<Ack>,
    writing_after: Vec<Envelope>,
    writing_deliveries: Vec<Delivered>,
    writing_acks: Vec<Ack>,
    ready: VecDeque<Delivered>,
    fault: Arc<OnceLock<StoreError>>,
    leaders: Arc<[AtomicU32]>,
    view: watch::Sender<LeaderView>,
    state: mpsc::Sender<(GroupId, NodeId)>,
    live_peers: Arc<[AtomicU32]>,
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn wait_write(
    w: &mut Option<WriteTask>,
) -> Result<(RocksVoteStore, Result<(), StoreError>), tokio::task::JoinError> {
    match w {
        Some(handle) => handle.await,
        None => std::future::pending().await,
    }
}

async fn next_event(events: &mut Option<mpsc::Receiver<NetEvent>>) -> Option<NetEvent> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Driver {
    async fn run(
        mut self,
        mut submit_rx: mpsc::Receiver<(GroupId, Bytes)>,
        mut control_rx: mpsc::Receiver<Control>,
        deliver_tx: mpsc::Sender<Delivered>,
        mut events: Option<mpsc::Receiver<NetEvent>>,
    ) -> Result<(), GroupError> {
        let groups = self.groups.clone();
        let fine = self.options.tick;
        let coarse = IDLE_TICK.max(fine);
        let mut last_tick = tokio::time::Instant::now();
        let ticker = tokio::time::sleep_until(last_tick + fine);
        tokio::pin!(ticker);
        let mut writing: Option<WriteTask> = None;
        let mut submit_open = true;
        let mut control_open = true;
        let out = self.member.tick(self.now(), wall_ms());
        self.handle(out, false);
        loop {
            if writing.is_none() {
                writing = self.start_write();
            }
            if !submit_open
                && writing.is_none()
                && self.pending_votes.is_empty()
                && self.ready.is_empty()
                && groups.iter().all(|&g| self.member.is_idle(g))
            {
                break;
            }
            // One queue serves every group, so a command is taken only while every group has
            // room: a group without room (no leader known and many commands waiting, or a full
            // pipeline) holds up the others until it drains or elects a leader. Room comes back
            // through ticks and messages only, never through this queue, so that wait ends.
            let room = submit_open
                && groups.iter().all(|&g| self.member.has_room(g))
                && self.ready.len() < self.options.delivery_capacity;
            let due = last_tick
                + if self.member.needs_ticks() {
                    fine
                } else {
                    coarse
                };
            // The select below is biased and polls the ticker last: under a steady flow of
            // messages and commands it could starve, and with it heartbeats, leases and the
            // coordinator's timers. An overdue tick runs first.
            if tokio::time::Instant::now() >= due + coarse {
                last_tick = tokio::time::Instant::now();
                self.on_tick(writing.is_some());
                continue;
            }
            if ticker.deadline() != due {
                ticker.as_mut().reset(due);
            }
            tokio::select! {
                biased;
                res = wait_write(&mut writing), if writing.is_some() => {
                    writing = None;
                    match res {
                        Ok((store, Ok(()))) => {
                            self.store = Some(store);
                            for ack in self.writing_acks.drain(..) {
                                let _ = ack.send(Ok(()));
                            }
                            let after = std::mem::take(&mut self.writing_after);
                            self.ready.extend(self.writing_deliveries.drain(..));
                            self.handle(Outputs { send: after, ..Outputs::default() }, false);
                        }
                        Ok((_, Err(e))) => {
                            tracing::error!(?groups, error = %e, "vote write failed; stopping the groups");
                            let _ = self.fault.set(e.clone());
                            for ack in self.writing_acks.drain(..).chain(self.pending_acks.drain(..)) {
                                let _ = ack.send(Err(GroupError::Store(e.clone())));
                            }
                            return Err(GroupError::Store(e));
                        }
                        Err(e) => return Err(GroupError::Writer(e.to_string())),
                    }
                }
                permit = deliver_tx.reserve(), if !self.ready.is_empty() => {
                    let Ok(permit) = permit else {
                        tracing::info!(?groups, "delivery receiver dropped; stopping");
                        return Err(GroupError::Closed);
                    };
                    permit.send(self.ready.pop_front().expect("ready is not empty"));
                    while !self.ready.is_empty() {
                        match deliver_tx.try_reserve() {
                            Ok(p) => p.send(self.ready.pop_front().expect("ready is not empty")),
                            Err(_) => break,
                        }
                    }
                }
                ctl = control_rx.recv(), if control_open => match ctl {
                    None => control_open = false,
                    Some(Control::Shutdown) => submit_rx.close(),
                    Some(Control::Trim { positions, done }) => {
                        self.trim(&positions, done, writing.is_some())
                    }
                    Some(Control::Install { positions, done }) => {
                        let _ = done.send(self.install(&positions));
                    }
                },
                ev = next_event(&mut events) => match ev {
                    None => events = None,
                    Some(ev) => {
                        self.on_event(ev, writing.is_some());
                        // Take what already arrived before looking at anything else.
                        for _ in 0..256 {
                            match events.as_mut().map(|e| e.try_recv()) {
                                Some(Ok(ev)) => self.on_event(ev, writing.is_some()),
                                _ => break,
                            }
                        }
                    }
                },
                cmd = submit_rx.recv(), if room => match cmd {
                    None => submit_open = false,
                    Some(first) => {
                        // Per group, in queue order; each group's commands are proposed apart.
                        let mut batches: Vec<Vec<Bytes>> = vec![Vec::new(); groups.len()];
                        let mut taken = 0;
                        let mut next = Some(first);
                        while let Some((g, cmd)) = next.take() {
                            match groups.iter().position(|&x| x == g) {
                                Some(i) => batches[i].push(cmd),
                                None => debug_assert!(false, "submit checks membership"),
                            }
                            taken += 1;
                            if taken < self.options.member.coordinator.max_batch_commands {
                                next = submit_rx.try_recv().ok();
                            }
                        }
                        for (&g, cmds) in groups.iter().zip(batches) {
                            if !cmds.is_empty() {
                                let out = self.member.propose(g, cmds, self.now(), wall_ms());
                                self.handle(out, writing.is_some());
                            }
                        }
                    }
                },
                _ = &mut ticker => {
                    last_tick = tokio::time::Instant::now();
                    self.on_tick(writing.is_some());
                }
            }
        }
        tracing::info!(?groups, "groups stopped");
        Ok(())
    }

    fn on_tick(&mut self, write_running: bool) {
        for (peers, &g) in self.live_peers.iter().zip(self.groups.iter()) {
            peers.store(self.member.live_peers(g) as u32, Ordering::Relaxed);
        }
        let out = self.member.tick(self.now(), wall_ms());
        self.handle(out, write_running);
    }

    fn on_event(&mut self, ev: NetEvent, write_running: bool) {
        match ev {
            NetEvent::Message { from, msg } => {
                let out = self.member.step(from, msg, self.now(), wall_ms());
                self.handle(out, write_running);
            }
            NetEvent::Up(peer) => tracing::debug!(peer, "peer link up"),
            NetEvent::Down(peer) => {
                let led: Vec<GroupId> = self
                    .groups
                    .iter()
                    .copied()
                    .filter(|&g| self.member.leader(g) == Some(peer))
                    .collect();
                if !led.is_empty() {
                    tracing::info!(
                        groups = ?led,
                        peer,
                        "link to a leader broke; forwarded commands may be lost"
                    );
                    self.bump_epoch();
                }
                let out = self.member.link_down(peer);
                self.handle(out, write_running);
            }
        }
    }

    /// Milliseconds since the driver started (monotonic).
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn bump_epoch(&mut self) {
        self.view.send_modify(|v| v.epoch += 1);
    }

    /// Handles outputs: votes to the next write, messages to peers (or back to this member),
    /// deliveries to the replica, each in the order the module documents.
    fn handle(&mut self, out: Outputs, write_running: bool) {
        let mut queue = VecDeque::new();
        self.absorb(out, &mut queue, write_running);
        while let Some(env) = queue.pop_front() {
            if env.to == self.options.node {
                let out = self
                    .member
                    .step(self.options.node, env.msg, self.now(), wall_ms());
                self.absorb(out, &mut queue, write_running);
            } else if let Some(send) = &self.send {
                let forward = matches!(env.msg, PaxosMsg::Forward { .. });
                if !send(env.to, &env.msg) && forward {
                    tracing::warn!(to = env.to, "forward queue full; commands dropped");
                    self.bump_epoch();
                }
            }
        }
    }

    fn absorb(&mut self, out: Outputs, queue: &mut VecDeque<Envelope>, write_running: bool) {
        queue.extend(out.send);
        let deliveries_wait = out.delivered_wait
            || !self.pending_deliveries.is_empty()
            || !self.writing_deliveries.is_empty();
        self.pending_votes.extend(out.persist);
        let durable = self.pending_votes.is_empty() && !write_running;
        if durable {
            queue.extend(out.send_after_persist);
        } else {
            self.pending_after.extend(out.send_after_persist);
        }
        let delivered = out.delivered.into_iter().map(|d| Delivered {
            group: d.group,
            instance: d.instance,
            time_ms: d.value.time_ms,
            commands: d.value.commands.to_vec(),
        });
        if deliveries_wait && !durable {
            self.pending_deliveries.extend(delivered);
        } else {
            self.ready.extend(delivered);
        }
        for request in out.state_needed {
            // At most a few requests wait; the replica fetches one checkpoint at a time.
            let _ = self.state.try_send(request);
        }
        for (group, leader) in out.leader_changes {
            let Some(i) = self.groups.iter().position(|&g| g == group) else {
                continue;
            };
            let before = self.leaders[i].swap(leader.unwrap_or(0), Ordering::AcqRel);
            // Commands submitted while no leader is known wait for one, so only a change away
            // from a known leader may lose them.
            self.view.send_modify(|v| {
                if i == 0 {
                    v.leader = leader;
                }
                if before != 0 {
                    v.epoch += 1;
                }
            });
        }
    }

    /// Starts one synced write with every vote waiting, if there are any.
    fn start_write(&mut self) -> Option<WriteTask> {
        if self.pending_votes.is_empty() {
            if !self.pending_deliveries.is_empty() || !self.pending_after.is_empty() {
                // Everything they waited for is durable already.
                self.ready.extend(self.pending_deliveries.drain(..));
                let after = std::mem::take(&mut self.pending_after);
                self.handle(
                    Outputs {
                        send: after,
                        ..Outputs::default()
                    },
                    false,
                );
            }
            for ack in self.pending_acks.drain(..) {
                let _ = ack.send(Ok(()));
            }
            if self.pending_votes.is_empty() {
                return None;
            }
        }
        let mut store = self
            .store
            .take()
            .expect("store is here while no write runs");
        let votes = std::mem::take(&mut self.pending_votes);
        self.writing_after = std::mem::take(&mut self.pending_after);
        self.writing_deliveries = std::mem::take(&mut self.pending_deliveries);
        self.writing_acks = std::mem::take(&mut self.pending_acks);
        let metrics = self.options.metrics.clone();
        Some(tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let result = store.write(&votes);
            if let Some(m) = metrics {
                m.fsync.record(started.elapsed());
                let commands: usize = votes
                    .iter()
                    .map(|v| match v {
                        VoteWrite::Accept { value, .. } => value.commands.len(),
                        _ => 0,
                    })
                    .sum();
                m.fsync_batch.record_us(commands as u64);
            }
            (store, result)
        }))
    }

    /// Records a checkpoint at `positions` (one per group) once each is known delivered.
    fn trim(&mut self, positions: &[Instance], done: Ack, write_running: bool) {
        debug_assert_eq!(positions.len(), self.groups.len());
        for (&group, &up_to) in self.groups.iter().zip(positions) {
            let next = self
                .member
                .next_instance(group)
                .expect("the member follows its groups");
            if up_to >= next {
                let _ = done.send(Err(GroupError::TrimBeyondDelivered {
                    group,
                    up_to,
                    delivered: next - 1,
                }));
                return;
            }
        }
        for (&group, &up_to) in self.groups.iter().zip(positions) {
            self.member.checkpointed(group, up_to + 1);
        }
        let out = self.member.tick(self.now(), wall_ms());
        self.pending_acks.push(done);
        self.handle(out, write_running);
    }

    /// Moves the learner to `positions` (one per group), dropping the deliveries they cover.
    fn install(&mut self, positions: &[Instance]) -> Result<(), GroupError> {
        debug_assert_eq!(positions.len(), self.groups.len());
        let next: Vec<Instance> = positions.iter().map(|p| p + 1).collect();
        self.member.install(&next)?;
        let groups = &self.groups;
        let after = |d: &Delivered| {
            groups
                .iter()
                .position(|&g| g == d.group)
                .is_none_or(|i| d.instance > positions[i])
        };
        self.ready.retain(after);
        self.pending_deliveries.retain(after);
        self.writing_deliveries.retain(after);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::time::Instant;

    #[test]
    fn votes_cast_under_another_acceptor_set_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let store = RocksVoteStore::new(storage.votes());
        let spec = |acceptors: Vec<NodeId>| GroupSpec {
            group: 4,
            members: vec![1, 2, 3, 4],
            acceptors,
        };
        let fresh = AcceptorState::default();
        check_acceptors(&store, &spec(vec![3, 1]), &fresh).unwrap();
        assert_eq!(store.acceptors(4).unwrap(), Some(vec![1, 3]));
        check_acceptors(&store, &spec(vec![1, 3]), &fresh).unwrap();
        let e = check_acceptors(&store, &spec(vec![1, 2, 3]), &fresh).unwrap_err();
        assert!(
            matches!(e, GroupError::AcceptorsChanged { group: 4, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("[1, 3]"), "{e}");
        // Votes without a recorded set were cast with every member as an acceptor.
        let voted = AcceptorState {
            promised: Ballot::new(2, 1),
            ..AcceptorState::default()
        };
        let mut legacy = spec(vec![1, 2]);
        legacy.group = 5;
        let e = check_acceptors(&store, &legacy, &voted).unwrap_err();
        assert!(
            matches!(e, GroupError::AcceptorsChanged { group: 5, .. }),
            "{e}"
        );
        assert_eq!(store.acceptors(5).unwrap(), None);
        legacy.acceptors = legacy.members.clone();
        check_acceptors(&store, &legacy, &voted).unwrap();
        assert_eq!(store.acceptors(5).unwrap(), Some(vec![1, 2, 3, 4]));
    }

    async fn collect(rx: &mut mpsc::Receiver<Delivered>, commands: usize) -> Vec<Delivered> {
        let mut out = Vec::new();
        let mut seen = 0;
        while seen < commands {
            let d = tokio::time::timeout(Duration::from_secs(20), rx.recv())
                .await
                .expect("deliveries stalled")
                .expect("group stopped early");
            seen += d.commands.len();
            out.push(d);
        }
        out
    }

    fn check_consecutive(ds: &[Delivered], first: Instance) {
        for (k, d) in ds.iter().enumerate() {
            assert_eq!(d.instance, first + k as u64);
            if k > 0 {
                assert!(d.time_ms > ds[k - 1].time_ms, "time_ms strictly increases");
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_submitters_get_one_total_order_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let mut g = start(&storage, GroupOptions::default(), &[0], None)
            .await
            .unwrap();
        const SUBMITTERS: usize = 32;
        const EACH: usize = 1500;
        let began = Instant::now();
        let mut tasks = Vec::new();
        for t in 0..SUBMITTERS {
            let h = g.handle.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..EACH {
                    h.submit(0, Bytes::from(format!("{t}:{i}"))).await.unwrap();
                }
            }));
        }
        let ds = collect(&mut g.deliveries, SUBMITTERS * EACH).await;
        let elapsed = began.elapsed();
        for t in tasks {
            t.await.unwrap();
        }
        check_consecutive(&ds, 1);
        let mut seen = HashSet::new();
        let mut last = vec![None::<usize>; SUBMITTERS];
        for c in ds.iter().flat_map(|d| d.commands.iter()) {
            let s = std::str::from_utf8(c).unwrap();
            assert!(seen.insert(s.to_string()), "{s} delivered twice");
            let (t, i) = s.split_once(':').unwrap();
            let (t, i): (usize, usize) = (t.parse().unwrap(), i.parse().unwrap());
            assert!(last[t].is_none_or(|p| p < i), "submitter {t} order kept");
            last[t] = Some(i);
        }
        assert_eq!(seen.len(), SUBMITTERS * EACH);
        let total = SUBMITTERS * EACH;
        println!(
            "group driver: {total} commands from {SUBMITTERS} submitters in {:.3}s = {:.0} commands/s, {} instances (synced writes <= instances)",
            elapsed.as_secs_f64(),
            total as f64 / elapsed.as_secs_f64(),
            ds.len()
        );
        assert!(
            ds.len() < total / 4,
            "commands share batches: {} instances",
            ds.len()
        );
        g.handle.shutdown().await;
        assert_eq!(g.task.await.unwrap(), Ok(()));
    }

    /// Closed loop: each submitter waits for its command's delivery before sending the next, as a
    /// client with one outstanding request does; every delivered batch costs one synced write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closed_loop_submitters_share_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let mut g = start(&storage, GroupOptions::default(), &[0], None)
            .await
            .unwrap();
        const SUBMITTERS: usize = 32;
        const EACH: usize = 100;
        let mut done_tx = Vec::new();
        let mut tasks = Vec::new();
        let began = Instant::now();
        for t in 0..SUBMITTERS {
            let (tx, mut rx) = mpsc::unbounded_channel::<()>();
            done_tx.push(tx);
            let h = g.handle.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..EACH {
                    h.submit(0, Bytes::from(format!("{t}:{i}"))).await.unwrap();
                    rx.recv().await.unwrap();
                }
            }));
        }
        let mut instances = 0;
        let mut seen = 0;
        while seen < SUBMITTERS * EACH {
            let d = tokio::time::timeout(Duration::from_secs(20), g.deliveries.recv())
                .await
                .expect("deliveries stalled")
                .expect("group stopped early");
            instances += 1;
            for c in &d.commands {
                let t: usize = std::str::from_utf8(c)
                    .unwrap()
                    .split(':')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                done_tx[t].send(()).unwrap();
                seen += 1;
            }
        }
        let elapsed = began.elapsed();
        for t in tasks {
            t.await.unwrap();
        }
        println!(
            "group driver closed loop: {seen} commands, {SUBMITTERS} submitters, {:.3}s = {:.0} commands/s, {instances} instances, {:.2} ms per instance",
            elapsed.as_secs_f64(),
            seen as f64 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64() * 1000.0 / instances as f64
        );
        assert!(instances < seen, "concurrent commands share batches");
        g.handle.shutdown().await;
        while g.deliveries.recv().await.is_some() {}
        assert_eq!(g.task.await.unwrap(), Ok(()));
    }

    async fn run_and_stop(
        dir: &std::path::Path,
        after: Instance,
        cmds: &[&str],
    ) -> (Vec<Delivered>, Vec<Delivered>) {
        let storage = Storage::open(dir).unwrap();
        let mut g = start(&storage, GroupOptions::default(), &[after], None)
            .await
            .unwrap();
        // Re-deliveries come first; wait until the group is quiet to split them from new ones.
        let mut old = Vec::new();
        while let Ok(Some(d)) =
            tokio::time::timeout(Duration::from_millis(300), g.deliveries.recv()).await
        {
            old.push(d);
        }
        for c in cmds {
            g.handle
                .submit(0, Bytes::from(c.to_string()))
                .await
                .unwrap();
        }
        let new = collect(&mut g.deliveries, cmds.len()).await;
        g.handle.shutdown().await;
        while g.deliveries.recv().await.is_some() {}
        assert_eq!(g.task.await.unwrap(), Ok(()));
        (old, new)
    }

    fn commands(ds: &[Delivered]) -> Vec<String> {
        ds.iter()
            .flat_map(|d| d.commands.iter())
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn restart_redelivers_after_checkpoint_and_numbering_continues() {
        let dir = tempfile::tempdir().unwrap();
        let first: Vec<String> = (0..40).map(|i| format!("a{i}")).collect();
        let first_refs: Vec<&str> = first.iter().map(String::as_str).collect();
        let (old, run1) = run_and_stop(dir.path(), 0, &first_refs).await;
        assert!(old.is_empty());
        check_consecutive(&run1, 1);
        assert_eq!(commands(&run1), first);
        let last = run1.last().unwrap().instance;
        // Restart as if a checkpoint covered instance 1..=k.
        let k = run1[run1.len() / 2].instance;
        let (old, run2) = run_and_stop(dir.path(), k, &["b0", "b1"]).await;
        assert_eq!(
            old,
            run1[(k as usize)..].to_vec(),
            "exactly the decided ones after {k}"
        );
        assert_eq!(run2[0].instance, last + 1, "numbering continues");
        assert!(run2[0].time_ms > run1.last().unwrap().time_ms);
        assert_eq!(commands(&run2), vec!["b0", "b1"]);
        // Again from the same checkpoint: everything after it comes back, both runs in order
        // (starting at a checkpoint lets the acceptor forget what it covers).
        let (old, _) = run_and_stop(dir.path(), k, &[]).await;
        let mut all = commands(&run1[k as usize..]);
        all.extend(commands(&run2));
        assert_eq!(commands(&old), all);
    }

    #[tokio::test]
    async fn trim_forgets_checkpointed_instances() {
        let dir = tempfile::tempdir().unwrap();
        let last;
        {
            let storage = Storage::open(dir.path()).unwrap();
            let mut g = start(&storage, GroupOptions::default(), &[0], None)
                .await
                .unwrap();
            for i in 0..10 {
                g.handle
                    .submit(0, Bytes::from(format!("c{i}")))
                    .await
                    .unwrap();
                collect(&mut g.deliveries, 1).await;
            }
            let next = g.handle.trim(&[1000]).await;
            assert_eq!(
                next,
                Err(GroupError::TrimBeyondDelivered {
                    group: 0,
                    up_to: 1000,
                    delivered: 10
                })
            );
            g.handle.checkpoints().save(&[6], b"tree").unwrap();
            g.handle.trim(&[6]).await.unwrap();
            last = 10;
            g.handle.shutdown().await;
            while g.deliveries.recv().await.is_some() {}
            g.task.await.unwrap().unwrap();
        }
        let storage = Storage::open(dir.path()).unwrap();
        let cp = storage.checkpoints().load_latest().unwrap().unwrap();
        assert_eq!(cp.position, vec![6]);
        match start(&storage, GroupOptions::default(), &[3], None).await {
            Err(e) => assert_eq!(
                e,
                GroupError::CheckpointBehindTrim {
                    group: 0,
                    after: 3,
                    low: 7
                }
            ),
            Ok(_) => panic!("a checkpoint older than the trim must be refused"),
        }
        let mut g = start(&storage, GroupOptions::default(), &[6], None)
            .await
            .unwrap();
        let old = collect(&mut g.deliveries, 4).await;
        assert_eq!(
            old.iter().map(|d| d.instance).collect::<Vec<_>>(),
            vec![7, 8, 9, 10]
        );
        g.handle
            .submit(0, Bytes::from_static(b"next"))
            .await
            .unwrap();
        let new = collect(&mut g.deliveries, 1).await;
        assert_eq!(new[0].instance, last + 1);
        g.handle.shutdown().await;
        while g.deliveries.recv().await.is_some() {}
        g.task.await.unwrap().unwrap();
    }

    const G: [GroupId; 2] = [10, 20];

    /// This node alone in groups 10 and 20, merged `m` instances at a time.
    fn two_groups() -> GroupOptions {
        let specs = G
            .iter()
            .map(|&group| GroupSpec::all_acceptors(group, vec![1]))
            .collect();
        GroupOptions::for_groups(1, specs)
    }

    /// Receives `n` deliveries.
    async fn take(rx: &mut mpsc::Receiver<Delivered>, n: usize) -> Vec<Delivered> {
        let mut out = Vec::new();
        while out.len() < n {
            let d = tokio::time::timeout(Duration::from_secs(20), rx.recv())
                .await
                .expect("deliveries stalled")
                .expect("group stopped early");
            out.push(d);
        }
        out
    }

    /// `ds` is the start of a merge of `G` from nothing: ordered by (time, group position), each
    /// group's instances consecutive from 1 with increasing times.
    fn check_merged(ds: &[Delivered]) {
        let mut next = [1u64; 2];
        let mut time = [0u64; 2];
        let mut last = (0u64, 0usize);
        for (k, d) in ds.iter().enumerate() {
            let lane = G.iter().position(|&g| g == d.group).expect("a known group");
            assert!(
                (d.time_ms, lane) >= last,
                "delivery {k}: merged by time, then group"
            );
            last = (d.time_ms, lane);
            assert_eq!(
                d.instance, next[lane],
                "delivery {k}: consecutive in its group"
            );
            assert!(
                d.time_ms > time[lane],
                "delivery {k}: time grows in its group"
            );
            next[lane] += 1;
            time[lane] = d.time_ms;
        }
    }

    /// The per-group positions after the deliveries in `ds` (0 where none).
    fn positions(ds: &[Delivered]) -> Vec<Instance> {
        G.iter()
            .map(|&g| {
                ds.iter()
                    .filter(|d| d.group == g)
                    .map(|d| d.instance)
                    .max()
                    .unwrap_or(0)
            })
            .collect()
    }

    async fn stop(mut g: Group) -> Vec<Delivered> {
        g.handle.shutdown().await;
        let mut rest = Vec::new();
        while let Some(d) = g.deliveries.recv().await {
            rest.push(d);
        }
        assert_eq!(g.task.await.unwrap(), Ok(()));
        rest
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_groups_merge_round_robin_and_restart_in_the_same_order() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let mut g = start(&storage, two_groups(), &[0, 0], None).await.unwrap();
        assert_eq!(g.handle.groups(), &G[..]);
        let mut tasks = Vec::new();
        for (&group, (name, n)) in G.iter().zip([("a", 300), ("b", 100)]) {
            let h = g.handle.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..n {
                    h.submit(group, Bytes::from(format!("{name}{i}")))
                        .await
                        .unwrap();
                }
            }));
        }
        let mut run1 = collect(&mut g.deliveries, 400).await;
        for t in tasks {
            t.await.unwrap();
        }
        // Idle groups keep the merge moving with skips.
        let idle = take(&mut g.deliveries, 10).await;
        assert!(idle.iter().all(|d| d.commands.is_empty()), "{idle:?}");
        run1.extend(idle);
        run1.extend(stop(g).await);
        check_merged(&run1);
        for (&group, (name, n)) in G.iter().zip([("a", 300), ("b", 100)]) {
            let mine: Vec<Delivered> = run1.iter().filter(|d| d.group == group).cloned().collect();
            let expected: Vec<String> = (0..n).map(|i| format!("{name}{i}")).collect();
            assert_eq!(
                commands(&mine),
                expected,
                "group {group}: each once, in order"
            );
        }
        assert!(
            run1.iter().any(|d| d.commands.is_empty()),
            "skips are delivered"
        );
        drop(storage);

        // Restart from a checkpoint in the middle of a turn (an odd number of deliveries).
        let cut = (run1.len() / 2) | 1;
        let after = positions(&run1[..cut]);
        let storage = Storage::open(dir.path()).unwrap();
        let mut g = start(&storage, two_groups(), &after, None).await.unwrap();
        let mut run2 = take(&mut g.deliveries, run1.len() - cut + 10).await;
        assert_eq!(
            run2[..run1.len() - cut],
            run1[cut..],
            "exactly the decided instances after {after:?}, in the same order"
        );
        run2.extend(stop(g).await);
        let mut whole = run1[..cut].to_vec();
        whole.extend(run2);
        check_merged(&whole);
    }

    /// Demand-driven skips: with periodic skips a minute apart, a lone command in one group is
    /// delivered because the merge asks the idle group for a skip, and idle groups then stay
    /// silent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_merge_asks_the_idle_group_for_a_skip() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let mut opts = two_groups();
        opts.member.coordinator.skip_after_ticks = Some(60_000);
        let mut g = start(&storage, opts, &[0, 0], None).await.unwrap();
        for round in 0..3 {
            for &group in &G {
                g.handle
                    .submit(group, Bytes::from(format!("{group}-{round}")))
                    .await
                    .unwrap();
                let mut got = take(&mut g.deliveries, 1).await;
                while got.last().unwrap().commands.is_empty() {
                    assert!(got.len() < 4, "a few skips at most: {got:?}");
                    got.extend(take(&mut g.deliveries, 1).await);
                }
                assert_eq!(commands(&got), vec![format!("{group}-{round}")]);
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut idle = Vec::new();
        while let Ok(d) = g.deliveries.try_recv() {
            idle.push(d);
        }
        assert!(
            idle.len() <= 2 && idle.iter().all(|d| d.commands.is_empty()),
            "idle groups decide no skips of their own: {idle:?}"
        );
        let mut all = idle;
        all.extend(stop(g).await);
        assert!(all.iter().all(|d| d.commands.is_empty()));
    }

    #[tokio::test]
    async fn trim_and_install_take_one_position_per_group() {
        let dir = tempfile::tempdir().unwrap();
        let (run1, checkpoint) = {
            let storage = Storage::open(dir.path()).unwrap();
            let mut g = start(&storage, two_groups(), &[0, 0], None).await.unwrap();
            // One command per group at a time: at least one instance each.
            let mut ds = Vec::new();
            for i in 0..5 {
                for group in G {
                    g.handle
                        .submit(group, Bytes::from(format!("{group}:{i}")))
                        .await
                        .unwrap();
                }
                ds.extend(collect(&mut g.deliveries, 2).await);
            }
            let at = positions(&ds);
            assert_eq!(
                g.handle.trim(&[at[0], at[1] + 1000]).await,
                Err(GroupError::TrimBeyondDelivered {
                    group: 20,
                    up_to: at[1] + 1000,
                    delivered: at[1],
                })
            );
            // A checkpoint where the groups' positions differ. The merge orders by time, so
            // which group is ahead at a given prefix depends on the skips decided meanwhile.
            let cut = (ds.len() / 2..ds.len())
                .find(|&c| {
                    let p = positions(&ds[..c]);
                    p[0] != p[1]
                })
                .expect("two groups that alternate part way are uneven at some prefix");
            let checkpoint = positions(&ds[..cut]);
            assert_eq!(checkpoint.iter().sum::<u64>(), cut as u64);
            g.handle.trim(&checkpoint).await.unwrap();
            ds.extend(stop(g).await);
            check_merged(&ds);
            (ds, checkpoint)
        };
        let storage = Storage::open(dir.path()).unwrap();
        for (after, group) in [([0, 0], 10), ([checkpoint[0], 0], 20)] {
            match start(&storage, two_groups(), &after, None).await {
                Err(e) => assert_eq!(
                    e,
                    GroupError::CheckpointBehindTrim {
                        group,
                        after: 0,
                        low: checkpoint[G.iter().position(|&x| x == group).unwrap()] + 1
                    }
                ),
                Ok(_) => panic!("a checkpoint older than the trim must be refused"),
            }
        }
        let mut g = start(&storage, two_groups(), &checkpoint, None)
            .await
            .unwrap();
        let covered = (checkpoint[0] + checkpoint[1]) as usize;
        let old = take(&mut g.deliveries, run1.len() - covered).await;
        assert_eq!(old[..], run1[covered..], "the log after the trim is kept");

        // Install a checkpoint ahead of everything delivered: delivery resumes after it, at the
        // turn of the group whose position is behind (or of the first group).
        let ahead = [checkpoint[0] + 20, checkpoint[1] + 20];
        g.handle.install(&ahead).await.unwrap();
        let mut resumed = Vec::new();
        while resumed.len() < 6 {
            let d = take(&mut g.deliveries, 1).await.remove(0);
            let lane = G.iter().position(|&x| x == d.group).unwrap();
            if d.instance > ahead[lane] {
                resumed.push((d.group, d.instance));
            }
        }
        for (lane, &group) in G.iter().enumerate() {
            let got: Vec<Instance> = resumed
                .iter()
                .filter(|(g, _)| *g == group)
                .map(|(_, i)| *i)
                .collect();
            let want: Vec<Instance> = (1..=got.len() as u64).map(|k| ahead[lane] + k).collect();
            assert_eq!(got, want, "group {group} resumes right after its position");
        }
        stop(g).await;
    }

    #[tokio::test]
    async fn wrong_groups_and_position_counts_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        for after in [&[0][..], &[0, 0, 0]] {
            match start(&storage, two_groups(), after, None).await {
                Err(e) => assert_eq!(
                    e,
                    GroupError::Positions {
                        expected: 2,
                        got: after.len()
                    }
                ),
                Ok(_) => panic!("{after:?} is not one position per group"),
            }
        }
        let mut no_skips = two_groups();
        no_skips.member.coordinator.skip_after_ticks = None;
        assert!(matches!(
            start(&storage, no_skips, &[0, 0], None).await,
            Err(GroupError::Multicast(multicast::Error::InvalidOptions(_)))
        ));
        let mut twice = two_groups();
        twice.groups[1].group = G[0];
        assert!(matches!(
            start(&storage, twice, &[0, 0], None).await,
            Err(GroupError::Multicast(multicast::Error::InvalidOptions(_)))
        ));
        assert!(
            GroupOptions::default()
                .member
                .coordinator
                .skip_after_ticks
                .is_none(),
            "one group stays silent when idle"
        );

        let g = start(&storage, two_groups(), &[0, 0], None).await.unwrap();
        assert_eq!(
            g.handle.submit(99, Bytes::from_static(b"x")).await,
            Err(GroupError::NotAMember(99))
        );
        let wrong = Err(GroupError::Positions {
            expected: 2,
            got: 1,
        });
        assert_eq!(g.handle.trim(&[0]).await, wrong);
        assert_eq!(g.handle.install(&[0]).await, wrong);
        assert!(!g.handle.is_leader(99));
        assert_eq!(g.handle.leader(99), None);
        tokio::time::timeout(Duration::from_secs(5), async {
            while !(g.handle.is_leader(10) && g.handle.is_leader(20)) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("a single member leads both its groups");
        assert_eq!(g.handle.leader_view().borrow().leader, Some(1));
        assert_eq!(
            g.handle.leader_view().borrow().epoch,
            0,
            "a first leader loses nothing: submitted commands wait for it"
        );
        stop(g).await;
    }

    /// Three nodes, each a member of groups 10 and 20, over an in-process network: every node
    /// delivers the same merged sequence, with commands forwarded to each group's leader.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_nodes_in_two_groups_deliver_one_merged_order() {
        const NODES: [NodeId; 3] = [1, 2, 3];
        let dirs: Vec<_> = NODES.iter().map(|_| tempfile::tempdir().unwrap()).collect();
        let (txs, rxs): (Vec<_>, Vec<_>) = NODES.iter().map(|_| mpsc::channel(4096)).unzip();
        let txs: Arc<Vec<mpsc::Sender<NetEvent>>> = Arc::new(txs);
        let mut nodes = Vec::new();
        for ((&id, dir), events) in NODES.iter().zip(&dirs).zip(rxs) {
            let specs = G
                .iter()
                .map(|&group| GroupSpec::all_acceptors(group, NODES.to_vec()))
                .collect();
            let opts = GroupOptions::for_groups(id, specs);
            let peers = txs.clone();
            let send: SendFn = Box::new(move |to, msg| {
                peers[(to - 1) as usize]
                    .try_send(NetEvent::Message {
                        from: id,
                        msg: msg.clone(),
                    })
                    .is_ok()
            });
            let storage = Storage::open(dir.path()).unwrap();
            let g = start(&storage, opts, &[0, 0], Some(Network { send, events }))
                .await
                .unwrap();
            nodes.push((storage, g));
        }
        tokio::time::timeout(Duration::from_secs(10), async {
            while !nodes
                .iter()
                .all(|(_, n)| G.iter().all(|&g| n.handle.leader(g).is_some()))
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("every node knows both leaders");
        const EACH: usize = 100;
        let mut tasks = Vec::new();
        for (k, (_, n)) in nodes.iter().enumerate() {
            for group in G {
                let h = n.handle.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..EACH {
                        h.submit(group, Bytes::from(format!("{k}/{group}/{i}")))
                            .await
                            .unwrap();
                    }
                }));
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        let total = NODES.len() * G.len() * EACH;
        let mut sequences = Vec::new();
        for (_, n) in nodes.iter_mut() {
            sequences.push(collect(&mut n.deliveries, total).await);
        }
        check_merged(&sequences[0]);
        for (k, s) in sequences.iter().enumerate().skip(1) {
            assert_eq!(s, &sequences[0], "node {} agrees with node 1", NODES[k]);
        }
        let seen: HashSet<String> = commands(&sequences[0]).into_iter().collect();
        assert_eq!(seen.len(), total, "every command exactly once");
        for d in &sequences[0] {
            for c in commands(std::slice::from_ref(d)) {
                let group: GroupId = c.split('/').nth(1).unwrap().parse().unwrap();
                assert_eq!(group, d.group, "{c} ordered in its own group");
            }
        }
        for (_, n) in nodes {
            stop(n).await;
        }
    }
}
