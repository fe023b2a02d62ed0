//! The tokio driver of this node's [`Member`] in one Paxos group: its votes in RocksDB, its
//! messages on the peer network, its deliveries to the replica.
//!
//! One task owns the member. Commands arrive through a bounded queue ([`GroupHandle::submit`]);
//! decided batches leave through a bounded channel of [`Delivered`], in instance order. Votes
//! reach RocksDB through one synced write at a time: while it runs on a blocking thread, new
//! votes accumulate into the next write (group commit: one fsync per write, never one per
//! command). Messages that reflect a vote, and deliveries that needed one, leave only after the
//! write holding it returned. With a single member the group needs no network: the same code
//! runs with messages looping back locally.
//!
//! Recovery: [`start`] loads the acceptor's votes; the elected coordinator runs Phase 1 over
//! every instance after the replica's checkpoint, so the decided ones are delivered again;
//! a member behind the others catches up from their acceptors. [`GroupHandle::trim`] reports a
//! checkpoint; acceptors forget instances every member has checkpointed.

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
    self, CoordinatorOptions, Envelope, GroupId, GroupSpec, Instance, Member, MemberConfig,
    MemberOptions, NodeId, Outputs, PaxosMsg, VoteStore, VoteWrite,
};

/// Default capacity of the submit queue, in commands.
pub const DEFAULT_SUBMIT_CAPACITY: usize = 8192;
/// Default capacity of the delivery channel, in batches.
pub const DEFAULT_DELIVERY_CAPACITY: usize = 1024;
/// Default tick: the coordinator's batch delay and retries count in these.
pub const DEFAULT_TICK: Duration = Duration::from_millis(1);

/// Options of this node's part in a group.
#[derive(Clone, Debug)]
pub struct GroupOptions {
    pub group: GroupId,
    /// This node's id.
    pub node: NodeId,
    /// Every member of the group (acceptors, learners, coordinator candidates), this node too.
    pub members: Vec<NodeId>,
    /// Commands [`GroupHandle::submit`] may queue before it waits (back-pressure).
    pub submit_capacity: usize,
    /// Batches waiting for the consumer before the driver stops taking commands.
    pub delivery_capacity: usize,
    /// Length of one coordinator tick.
    pub tick: Duration,
    pub member: MemberOptions,
    /// Where synced write times and sizes are recorded, if anywhere.
    pub metrics: Option<Arc<super::metrics::NodeMetrics>>,
}

impl Default for GroupOptions {
    /// One group, node 1 its only member, no skips (with a single group no merging learner waits
    /// on it).
    fn default() -> GroupOptions {
        GroupOptions {
            group: 0,
            node: 1,
            members: vec![1],
            submit_capacity: DEFAULT_SUBMIT_CAPACITY,
            delivery_capacity: DEFAULT_DELIVERY_CAPACITY,
            tick: DEFAULT_TICK,
            member: MemberOptions {
                coordinator: CoordinatorOptions {
                    skip_after_ticks: None,
                    ..CoordinatorOptions::default()
                },
                ..MemberOptions::default()
            },
            metrics: None,
        }
    }
}

/// What the peer network hands the group.
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

/// The group's view of the peer network (absent for a single-member group).
pub struct Network {
    pub send: SendFn,
    pub events: mpsc::Receiver<NetEvent>,
}

/// Who leads the group, as this node believes, and a counter that grows whenever commands this
/// node submitted may have been lost (the leader changed, or the link to it broke). Sessions with
/// requests in flight are told to reconnect then, as ZooKeeper's followers do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaderView {
    pub leader: Option<NodeId>,
    pub epoch: u64,
}

/// One decided instance, delivered in instance order (consecutive, starting after the position
/// given to [`start`]). Its vote is durable. `commands` is empty for a skip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    pub instance: Instance,
    /// Stamped by the coordinator: strictly increasing for batches it closes.
    pub time_ms: u64,
    pub commands: Vec<Bytes>,
}

/// Errors of the group driver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// The group stopped (shut down, or its consumer dropped the delivery receiver).
    #[error("group stopped")]
    Closed,
    /// The vote store failed; the group stopped because its votes may not be durable.
    #[error("vote store failed: {0}")]
    Store(#[from] StoreError),
    /// The checkpoint position is older than the oldest instance kept on disk.
    #[error("checkpoint at instance {after} is older than the trimmed log (first kept {low})")]
    CheckpointBehindTrim { after: Instance, low: Instance },
    /// Trim asked to forget instances not delivered yet.
    #[error("cannot trim up to {up_to}: delivered only through {delivered}")]
    TrimBeyondDelivered {
        up_to: Instance,
        delivered: Instance,
    },
    /// Options or positions the consensus core rejects.
    #[error(transparent)]
    Multicast(#[from] multicast::Error),
    /// The blocking writer thread panicked.
    #[error("vote writer failed: {0}")]
    Writer(String),
}

enum Control {
    Trim {
        up_to: Instance,
        done: oneshot::Sender<Result<(), GroupError>>,
    },
    Install {
        at: Instance,
        done: oneshot::Sender<Result<(), GroupError>>,
    },
    Shutdown,
}

/// Submits commands to the group and controls it. Cheap to clone.
#[derive(Clone)]
pub struct GroupHandle {
    node: NodeId,
    submit: mpsc::Sender<Bytes>,
    control: mpsc::Sender<Control>,
    checkpoints: CheckpointDb,
    fault: Arc<OnceLock<StoreError>>,
    leader: Arc<AtomicU32>,
    view: watch::Receiver<LeaderView>,
    live_peers: Arc<AtomicU32>,
}

impl GroupHandle {
    /// Queues a command; waits while the queue is full. `Ok` means queued, not yet decided: the
    /// command appears in a [`Delivered`] once its batch is durable, unless the leader changes
    /// first (see [`LeaderView`]).
    pub async fn submit(&self, cmd: Bytes) -> Result<(), GroupError> {
        self.submit
            .send(cmd)
            .await
            .map_err(|_| self.stopped_error())
    }

    /// Reports that a checkpoint covers every instance <= `up_to` (call after it is saved); the
    /// acceptors forget those instances once every member has reported as much. Returns once the
    /// report, and any trim it allowed here, is durable. `up_to` must have been delivered.
    pub async fn trim(&self, up_to: Instance) -> Result<(), GroupError> {
        self.call(|done| Control::Trim { up_to, done }).await
    }

    /// Resumes delivery after instance `at`, whose state the replica installed from another
    /// member's checkpoint (the decisions up to it were trimmed everywhere).
    pub async fn install(&self, at: Instance) -> Result<(), GroupError> {
        self.call(|done| Control::Install { at, done }).await
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

    /// True while this node's coordinator leads the group.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire) == self.node
    }

    /// Other members heard from recently (ZooKeeper's `zk_followers` on a leader).
    pub fn live_peers(&self) -> u32 {
        self.live_peers.load(Ordering::Relaxed)
    }

    /// The member this node believes leads the group.
    pub fn leader(&self) -> Option<NodeId> {
        Some(self.leader.load(Ordering::Acquire)).filter(|&n| n != 0)
    }

    /// Watches leader changes and possible losses of submitted commands.
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

/// A running group.
pub struct Group {
    pub handle: GroupHandle,
    /// Decided batches in instance order; closes when the group stops.
    pub deliveries: mpsc::Receiver<Delivered>,
    /// Members to fetch a checkpoint from: the decisions this node misses were trimmed.
    pub state_requests: mpsc::Receiver<NodeId>,
    /// The driver task; ends with the reason the group stopped.
    pub task: JoinHandle<Result<(), GroupError>>,
}

/// Starts this node's part in the group over `storage`: loads its votes, then orders commands;
/// decided instances after `after` (the instance of the caller's last checkpoint, 0 for none)
/// are delivered, old ones first. `network` is required when the group has other members.
pub async fn start(
    storage: &Storage,
    options: GroupOptions,
    after: Instance,
    network: Option<Network>,
) -> Result<Group, GroupError> {
    options.member.coordinator.validate()?;
    if options.members.len() > 1 && network.is_none() {
        return Err(GroupError::Multicast(multicast::Error::InvalidOptions(
            "a group with several members needs a network",
        )));
    }
    let group = options.group;
    let node = options.node;
    let store = RocksVoteStore::new(storage.votes());
    let (store, state) = tokio::task::spawn_blocking(move || {
        let state = store.load(group);
        (store, state)
    })
    .await
    .map_err(|e| GroupError::Writer(e.to_string()))?;
    let state = state?;
    if state.low > after + 1 {
        return Err(GroupError::CheckpointBehindTrim {
            after,
            low: state.low,
        });
    }
    tracing::info!(
        group,
        node,
        members = ?options.members,
        after,
        low = state.low,
        highest = ?state.accepted.keys().next_back(),
        "group starting"
    );
    let epoch = Instant::now();
    let mut member = Member::new(
        MemberConfig {
            id: node,
            groups: vec![GroupSpec {
                group,
                members: options.members.clone(),
            }],
            next: vec![after + 1],
            options: options.member.clone(),
        },
        vec![state],
        0,
    )?;
    member.checkpointed(group, after + 1);
    let (submit_tx, submit_rx) = mpsc::channel(options.submit_capacity.max(1));
    let (control_tx, control_rx) = mpsc::channel(16);
    let (deliver_tx, deliver_rx) = mpsc::channel(options.delivery_capacity.max(1));
    let (view_tx, view_rx) = watch::channel(LeaderView::default());
    let (state_tx, state_rx) = mpsc::channel(4);
    let fault = Arc::new(OnceLock::new());
    let leader = Arc::new(AtomicU32::new(0));
    let live_peers = Arc::new(AtomicU32::new(0));
    let (send, events) = match network {
        Some(n) => (Some(n.send), Some(n.events)),
        None => (None, None),
    };
    let driver = Driver {
        options,
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
        leader: leader.clone(),
        view: view_tx,
        state: state_tx,
        live_peers: live_peers.clone(),
    };
    let task = tokio::spawn(driver.run(submit_rx, control_rx, deliver_tx, events));
    Ok(Group {
        handle: GroupHandle {
            node,
            submit: submit_tx,
            control: control_tx,
            checkpoints: storage.checkpoints(),
            fault,
            leader,
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
/// `writing_*` wait for the running write only. Deliveries leave in instance order.
struct Driver {
    options: GroupOptions,
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
    leader: Arc<AtomicU32>,
    view: watch::Sender<LeaderView>,
    state: mpsc::Sender<NodeId>,
    live_peers: Arc<AtomicU32>,
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
        mut submit_rx: mpsc::Receiver<Bytes>,
        mut control_rx: mpsc::Receiver<Control>,
        deliver_tx: mpsc::Sender<Delivered>,
        mut events: Option<mpsc::Receiver<NetEvent>>,
    ) -> Result<(), GroupError> {
        let group = self.options.group;
        let mut ticker = tokio::time::interval(self.options.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
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
                && self.member.is_idle(group)
            {
                break;
            }
            let room = submit_open
                && self.member.has_room(group)
                && self.ready.len() < self.options.delivery_capacity;
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
                            tracing::error!(group, error = %e, "vote write failed; stopping the group");
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
                        tracing::info!(group, "delivery receiver dropped; stopping");
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
                    Some(Control::Trim { up_to, done }) => self.trim(up_to, done, writing.is_some()),
                    Some(Control::Install { at, done }) => {
                        self.ready.retain(|d| d.instance > at);
                        self.pending_deliveries.retain(|d| d.instance > at);
                        self.writing_deliveries.retain(|d| d.instance > at);
                        let _ = done.send(self.member.install(&[at + 1]).map_err(GroupError::from));
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
                    Some(cmd) => {
                        let mut cmds = vec![cmd];
                        while cmds.len() < self.options.member.coordinator.max_batch_commands {
                            match submit_rx.try_recv() {
                                Ok(c) => cmds.push(c),
                                Err(_) => break,
                            }
                        }
                        let out = self.member.propose(group, cmds, self.now(), wall_ms());
                        self.handle(out, writing.is_some());
                    }
                },
                _ = ticker.tick() => {
                    self.live_peers.store(self.member.live_peers(group) as u32, Ordering::Relaxed);
                    let out = self.member.tick(self.now(), wall_ms());
                    self.handle(out, writing.is_some());
                }
            }
        }
        tracing::info!(group, "group stopped");
        Ok(())
    }

    fn on_event(&mut self, ev: NetEvent, write_running: bool) {
        let group = self.options.group;
        match ev {
            NetEvent::Message { from, msg } => {
                let out = self.member.step(from, msg, self.now(), wall_ms());
                self.handle(out, write_running);
            }
            NetEvent::Up(peer) => tracing::debug!(group, peer, "peer link up"),
            NetEvent::Down(peer) => {
                if self.member.leader(group) == Some(peer) {
                    tracing::info!(
                        group,
                        peer,
                        "link to the leader broke; forwarded commands may be lost"
                    );
                    self.bump_epoch();
                }
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
            instance: d.instance,
            time_ms: d.value.time_ms,
            commands: d.value.commands.to_vec(),
        });
        if deliveries_wait && !durable {
            self.pending_deliveries.extend(delivered);
        } else {
            self.ready.extend(delivered);
        }
        for (_, peer) in out.state_needed {
            // At most a few requests wait; the replica fetches one checkpoint at a time.
            let _ = self.state.try_send(peer);
        }
        for (group, leader) in out.leader_changes {
            debug_assert_eq!(group, self.options.group);
            self.leader.store(leader.unwrap_or(0), Ordering::Release);
            self.view.send_modify(|v| {
                v.leader = leader;
                v.epoch += 1;
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

    fn trim(&mut self, up_to: Instance, done: Ack, write_running: bool) {
        let group = self.options.group;
        let next = self
            .member
            .next_instance(group)
            .expect("the member follows this group");
        if up_to >= next {
            let _ = done.send(Err(GroupError::TrimBeyondDelivered {
                up_to,
                delivered: next - 1,
            }));
            return;
        }
        self.member.checkpointed(group, up_to + 1);
        let out = self.member.tick(self.now(), wall_ms());
        self.pending_acks.push(done);
        self.handle(out, write_running);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::time::Instant;

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
        let mut g = start(&storage, GroupOptions::default(), 0, None)
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
                    h.submit(Bytes::from(format!("{t}:{i}"))).await.unwrap();
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
        let mut g = start(&storage, GroupOptions::default(), 0, None)
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
                    h.submit(Bytes::from(format!("{t}:{i}"))).await.unwrap();
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
        let mut g = start(&storage, GroupOptions::default(), after, None)
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
            g.handle.submit(Bytes::from(c.to_string())).await.unwrap();
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
            let mut g = start(&storage, GroupOptions::default(), 0, None)
                .await
                .unwrap();
            for i in 0..10 {
                g.handle.submit(Bytes::from(format!("c{i}"))).await.unwrap();
                collect(&mut g.deliveries, 1).await;
            }
            let next = g.handle.trim(1000).await;
            assert_eq!(
                next,
                Err(GroupError::TrimBeyondDelivered {
                    up_to: 1000,
                    delivered: 10
                })
            );
            g.handle.checkpoints().save(&[6], b"tree").unwrap();
            g.handle.trim(6).await.unwrap();
            last = 10;
            g.handle.shutdown().await;
            while g.deliveries.recv().await.is_some() {}
            g.task.await.unwrap().unwrap();
        }
        let storage = Storage::open(dir.path()).unwrap();
        let cp = storage.checkpoints().load_latest().unwrap().unwrap();
        assert_eq!(cp.position, vec![6]);
        match start(&storage, GroupOptions::default(), 3, None).await {
            Err(e) => assert_eq!(e, GroupError::CheckpointBehindTrim { after: 3, low: 7 }),
            Ok(_) => panic!("a checkpoint older than the trim must be refused"),
        }
        let mut g = start(&storage, GroupOptions::default(), 6, None)
            .await
            .unwrap();
        let old = collect(&mut g.deliveries, 4).await;
        assert_eq!(
            old.iter().map(|d| d.instance).collect::<Vec<_>>(),
            vec![7, 8, 9, 10]
        );
        g.handle.submit(Bytes::from_static(b"next")).await.unwrap();
        let new = collect(&mut g.deliveries, 1).await;
        assert_eq!(new[0].instance, last + 1);
        g.handle.shutdown().await;
        while g.deliveries.recv().await.is_some() {}
        g.task.await.unwrap().unwrap();
    }
}
