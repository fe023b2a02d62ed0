//! The replica: this server's copy of its partition. It executes the commands its groups deliver,
//! in the merged order, on an S-SMR [`Executor`] over the ZooKeeper service, exchanges signals
//! with the other partitions' replicas, and routes each command's reply and notifications to the
//! front end that holds the session: this server's connections directly, another server's in
//! [`PeerFrame::Outcomes`].
//!
//! Invariants:
//! - Commands execute in delivery order; for every session its notifications are handed on before
//!   the reply of any later command (ZooKeeper's watch guarantee). The executor never awaits I/O.
//! - What a replica sends to another front end is a function of the executed commands alone (the
//!   session-to-front-end table is replicated state, saved in checkpoints), so every replica of a
//!   partition sends the same entries with the same `seq`; a front end that is itself a replica of
//!   the partition is served by its own replica only.
//! - A checkpoint is taken only when no delivered command waits in the executor, so its position
//!   (the last instance of each group) and its state agree.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use protocol::{Encode, ErrorCode};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use super::cluster::{OutcomeEntry, OutcomeItem, PeerFrame, ReplicaInput};
use super::group::{Delivered, Group};
use super::layout::Layout;
use super::{command, wall_ms, Inspection, Node, NodeError, Outbound, INTERNAL_XID};
use crate::multicast::{GroupId, Instance, NodeId};
use crate::ssmr::{CmdId, Executed, Executor, PartitionId, Signal, SignalOut, Step, ZkService};
use crate::zk::{Applied, Command, Op, SessionId, Zk};

/// How long a replica waits for a requested checkpoint before asking again.
const STATE_TRANSFER_PATIENCE: Duration = Duration::from_secs(5);
/// How long a multi-partition command may wait for a signal before it is asked for again.
const SIGNAL_PATIENCE: Duration = Duration::from_millis(300);
/// Most signals sent back for one `SignalRequest`: the one asked for and those of the commands
/// after it, so a replica catching up waits [`SIGNAL_PATIENCE`] once per this many
/// multi-partition commands, not once per command.
const SIGNAL_RESEND_BATCH: usize = 1024;
/// Bits of an outcome `seq` that hold the command's index in its batch.
const SEQ_INDEX_BITS: u32 = 20;

/// What the replica keeps of a queued command until it executes.
#[derive(Debug)]
struct Queued {
    id: CmdId,
    origin: command::Origin,
    session: SessionId,
    xid: i32,
    /// The timeout of a createSession.
    create: Option<i32>,
    close: bool,
    seq: u64,
}

/// The state a checkpoint holds besides the tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Saved {
    pub partition: u32,
    pub partitions: u32,
    pub clock: i64,
    pub last_multi: Option<CmdId>,
    pub session_servers: BTreeMap<SessionId, NodeId>,
    /// [`Executor::remembered_signals`]: a replica restarted from this checkpoint must still be
    /// able to send them to a replica of another partition that waits for them.
    pub signals: Vec<SignalOut>,
    pub tree: Vec<u8>,
}

/// The header of a checkpoint with remembered signals.
const CHECKPOINT_MAGIC: &[u8; 8] = b"VLRYCP3\0";
/// The header before remembered signals were kept (decoded with none).
const CHECKPOINT_MAGIC_V2: &[u8; 8] = b"VLRYCP2\0";

impl Saved {
    pub fn encode(&self) -> Vec<u8> {
        let signals: usize = self
            .signals
            .iter()
            .map(|s| 8 + 4 * s.to.len() + s.signal.encoded_len())
            .sum();
        let mut b = BytesMut::with_capacity(
            64 + 12 * self.session_servers.len() + signals + self.tree.len(),
        );
        b.put_slice(CHECKPOINT_MAGIC);
        b.put_u32(self.partition);
        b.put_u32(self.partitions);
        b.put_i64(self.clock);
        match self.last_multi {
            None => b.put_u8(0),
            Some(c) => {
                b.put_u8(1);
                b.put_u32(c.group);
                b.put_u64(c.instance);
                b.put_u32(c.index);
            }
        }
        b.put_u32(self.session_servers.len() as u32);
        for (s, n) in &self.session_servers {
            b.put_i64(*s);
            b.put_u32(*n);
        }
        b.put_u32(self.signals.len() as u32);
        for s in &self.signals {
            b.put_u32(s.to.len() as u32);
            for p in &s.to {
                b.put_u32(*p);
            }
            b.put_u32(s.signal.encoded_len() as u32);
            s.signal.encode_into(&mut b);
        }
        b.put_slice(&self.tree);
        b.to_vec()
    }

    /// Decodes a checkpoint; one with the older header has no remembered signals, and one without
    /// a header is a single partition's bare tree (the format before partitions), whose clock is
    /// the tree's last zxid.
    pub fn decode(data: &[u8], opts: &crate::zk::Options) -> Result<(Saved, Zk), NodeError> {
        let bad = |why: &str| NodeError::Snapshot(format!("checkpoint: {why}"));
        let restore =
            |tree: &[u8]| Zk::restore(tree, opts.clone()).map_err(|e| bad(&e.to_string()));
        let (mut b, with_signals) = if let Some(b) = data.strip_prefix(CHECKPOINT_MAGIC.as_slice())
        {
            (b, true)
        } else if let Some(b) = data.strip_prefix(CHECKPOINT_MAGIC_V2.as_slice()) {
            (b, false)
        } else {
            let zk = restore(data)?;
            let saved = Saved {
                partition: 0,
                partitions: 1,
                clock: zk.last_zxid(),
                ..Saved::default()
            };
            return Ok((saved, zk));
        };
        let need = |b: &[u8], n: usize| {
            if b.len() < n {
                Err(bad("truncated"))
            } else {
                Ok(())
            }
        };
        need(b, 17)?;
        let partition = b.get_u32();
        let partitions = b.get_u32();
        let clock = b.get_i64();
        let last_multi = match b.get_u8() {
            0 => None,
            1 => {
                need(b, 16)?;
                Some(CmdId::new(b.get_u32(), b.get_u64(), b.get_u32()))
            }
            _ => return Err(bad("bad flag")),
        };
        need(b, 4)?;
        let n = b.get_u32() as usize;
        need(b, n.saturating_mul(12))?;
        let session_servers = (0..n).map(|_| (b.get_i64(), b.get_u32())).collect();
        let mut signals = Vec::new();
        if with_signals {
            need(b, 4)?;
            let n = b.get_u32() as usize;
            for _ in 0..n {
                need(b, 4)?;
                let to_len = b.get_u32() as usize;
                need(b, to_len.saturating_mul(4).saturating_add(4))?;
                let to = (0..to_len).map(|_| b.get_u32()).collect();
                let len = b.get_u32() as usize;
                need(b, len)?;
                let signal = Signal::decode(Bytes::copy_from_slice(&b[..len]))
                    .map_err(|e| bad(&e.to_string()))?;
                b.advance(len);
                signals.push(SignalOut { to, signal });
            }
        }
        let zk = restore(b)?;
        Ok((
            Saved {
                partition,
                partitions,
                clock,
                last_multi,
                session_servers,
                signals,
                tree: Vec::new(),
            },
            zk,
        ))
    }
}

pub struct Replica {
    exec: Executor<ZkService>,
    node: Node,
    layout: Layout,
    /// This server's groups, in merge order.
    groups: Vec<GroupId>,
    /// Per group, the last instance delivered.
    positions: Vec<Instance>,
    queued: VecDeque<Queued>,
    /// The front end each live session last sent a command through.
    session_servers: BTreeMap<SessionId, NodeId>,
    since_checkpoint: u64,
    snap_count: u64,
    /// The multi-partition command seen waiting for signals, and since when.
    stuck: Option<(CmdId, Instant)>,
}

impl Replica {
    /// A replica resuming from a checkpoint (`saved`, `zk`) taken at `positions`.
    pub fn new(
        zk: Zk,
        saved: Saved,
        node: Node,
        positions: Vec<Instance>,
        snap_count: u64,
    ) -> Replica {
        let layout = node.layout().clone();
        let (p, k, global) = (layout.partition(), layout.partitions, layout.global_group());
        let mut exec = Executor::resume(
            p,
            global,
            ZkService::new(zk, p, k),
            saved.clock,
            saved.last_multi,
        );
        exec.remember_signals(saved.signals);
        Replica {
            exec,
            node,
            groups: layout.groups().iter().map(|g| g.group).collect(),
            layout,
            positions,
            queued: VecDeque::new(),
            session_servers: saved.session_servers,
            since_checkpoint: 0,
            snap_count: snap_count.max(1),
            stuck: None,
        }
    }

    fn zk(&self) -> &Zk {
        self.exec.service().zk()
    }

    /// Executes deliveries until the group stops; expires sessions and removes empty containers
    /// and expired TTL nodes on the given periods by ordering commands for them.
    pub async fn run(
        mut self,
        mut group: Group,
        mut inspect: mpsc::Receiver<Inspection>,
        mut installs: mpsc::Receiver<super::cluster::Received>,
        mut peers_in: mpsc::UnboundedReceiver<ReplicaInput>,
        expiry_every: Duration,
        containers_every: Duration,
    ) -> Result<(), NodeError> {
        let mut expiry = tokio::time::interval(expiry_every);
        expiry.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut containers = tokio::time::interval(containers_every);
        containers.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut signals = tokio::time::interval(SIGNAL_PATIENCE / 3);
        signals.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut was_leader = false;
        let global = self.layout.global_group();
        let own = self.layout.partition();
        // When this replica last asked for a checkpoint: one transfer at a time.
        let mut asked: Option<Instant> = None;
        loop {
            tokio::select! {
                d = group.deliveries.recv() => match d {
                    Some(d) => {
                        self.deliver(d);
                        while let Ok(d) = group.deliveries.try_recv() {
                            self.deliver(d);
                        }
                        if self.since_checkpoint >= self.snap_count && self.exec.queued() == 0 {
                            self.checkpoint().await?;
                        }
                    }
                    None => break,
                },
                Some(input) = peers_in.recv() => {
                    self.on_peer(input);
                    while let Ok(input) = peers_in.try_recv() {
                        self.on_peer(input);
                    }
                }
                Some(job) = inspect.recv() => job(self.zk()),
                Some((g, peer)) = group.state_requests.recv() => {
                    if asked.is_none_or(|t| t.elapsed() > STATE_TRANSFER_PATIENCE) {
                        // Only a replica of this partition has a checkpoint this one can install.
                        let from = if self.layout.same_partition(peer) {
                            Some(peer)
                        } else {
                            self.layout.replicas(own).into_iter().find(|s| *s != self.layout.me)
                        };
                        match from {
                            Some(from) => {
                                tracing::info!(group = g, peer = from, positions = ?self.positions, "the log this replica needs was trimmed; fetching a checkpoint");
                                asked = Some(Instant::now());
                                self.node.request_checkpoint(from);
                            }
                            None => tracing::error!(group = g, "the log this replica needs was trimmed and no other replica of its partition can send a checkpoint"),
                        }
                    }
                }
                Some(cp) = installs.recv() => {
                    if self.install(cp).await? {
                        asked = None;
                    }
                }
                _ = signals.tick() => self.ask_again(),
                _ = expiry.tick() => {
                    // Only the global group's leader expires sessions; a new leader first renews
                    // them all.
                    let leading = self.node.inner.group.is_leader(global);
                    if leading && !was_leader {
                        self.node.sessions().touch_all(Instant::now());
                    }
                    was_leader = leading;
                    if !leading {
                        continue;
                    }
                    for session in self.node.sessions().take_expired(Instant::now()) {
                        tracing::info!(session = format_args!("{session:#x}"), "session expired");
                        self.order(Command { session, xid: INTERNAL_XID, time_ms: 0, op: Op::CloseSession });
                    }
                }
                _ = containers.tick() => {
                    // A candidate's mtime is kept by its owner partition: that one's leader decides.
                    if !self.node.inner.group.is_leader(own) {
                        continue;
                    }
                    for path in self.zk().expired_containers_and_ttls(wall_ms()) {
                        if self.exec.service().owns(&path) {
                            self.order(Command { session: 0, xid: INTERNAL_XID, time_ms: 0, op: Op::DeleteContainer { path } });
                        }
                    }
                }
            }
        }
        match group.task.await {
            Ok(r) => r.map_err(NodeError::from),
            Err(e) => Err(NodeError::Snapshot(format!("group task: {e}"))),
        }
    }

    /// Orders a command of the node's own without waiting in the executor for queue space.
    fn order(&self, cmd: Command) {
        let node = self.node.clone();
        tokio::spawn(async move {
            if let Err(e) = node.submit(&cmd, 0).await {
                tracing::warn!(error = %e, "could not order an internal command");
            }
        });
    }

    fn deliver(&mut self, d: Delivered) {
        let Some(gi) = self.groups.iter().position(|g| *g == d.group) else {
            tracing::error!(
                group = d.group,
                "delivery from a group this replica does not follow"
            );
            return;
        };
        if d.instance <= self.positions[gi] {
            return; // covered by a checkpoint installed from another member
        }
        self.positions[gi] = d.instance;
        let metrics = self.node.metrics();
        if d.group == self.layout.partition() {
            &metrics.local
        } else {
            &metrics.global
        }
        .record(d.commands.len());
        let merged: u64 = self.positions.iter().sum();
        let time_ms = d.time_ms as i64;
        let mut signals = Vec::new();
        for (i, bytes) in d.commands.iter().enumerate() {
            let (origin, cmd) = match command::decode(bytes, time_ms) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(group = d.group, instance = d.instance, error = %e, "undecodable command skipped");
                    continue;
                }
            };
            if self.layout.partitions > 1
                && d.group == self.layout.global_group()
                && origin.server == self.layout.me
                && origin.conn != 0
            {
                self.node.delivered_here(cmd.session, origin.conn, cmd.xid);
            }
            let id = CmdId::new(d.group, d.instance, i as u32);
            let queued = Queued {
                id,
                origin,
                session: cmd.session,
                xid: cmd.xid,
                create: match &cmd.op {
                    Op::CreateSession { timeout_ms, .. } => Some(*timeout_ms),
                    _ => None,
                },
                close: matches!(cmd.op, Op::CloseSession),
                seq: (merged << SEQ_INDEX_BITS) | (i as u64 & ((1 << SEQ_INDEX_BITS) - 1)),
            };
            match self.exec.enqueue(id, cmd) {
                Ok(s) => {
                    signals.extend(s);
                    self.queued.push_back(queued);
                }
                // A multi-partition command reaches every partition through the global group; those
                // outside its destination (with k > 2) take no part in it.
                Err(crate::ssmr::Error::NotInDest { id, .. })
                    if id.group == self.layout.global_group() => {}
                Err(e) => tracing::error!(error = %e, "command not executable here; skipped"),
            }
        }
        self.send_signals(&signals);
        let step = self.exec.run(usize::MAX);
        self.since_checkpoint += d.commands.len() as u64;
        self.handle(step);
    }

    fn on_peer(&mut self, input: ReplicaInput) {
        match input {
            ReplicaInput::Signals(list) => {
                self.node
                    .metrics()
                    .signals_received
                    .fetch_add(list.len() as u64, Ordering::Relaxed);
                for bytes in list {
                    match Signal::decode(bytes) {
                        Ok(signal) => self.exec.receive(signal),
                        Err(e) => tracing::warn!(error = %e, "malformed signal dropped"),
                    }
                }
                let step = self.exec.run(usize::MAX);
                self.handle(step);
            }
            ReplicaInput::SignalRequest { from, cmd } => {
                let (Some(peers), Some(to)) =
                    (self.node.inner.peers.get(), self.layout.partition_of(from))
                else {
                    return;
                };
                let signals: Vec<Bytes> = self
                    .exec
                    .sent_signals_from(cmd, to, SIGNAL_RESEND_BATCH)
                    .iter()
                    .map(|out| out.signal.encode())
                    .collect();
                if !signals.is_empty() {
                    peers.send(from, PeerFrame::Signals(signals).encode());
                }
            }
        }
    }

    /// Asks again for the signals a multi-partition command has waited for too long (they are
    /// lost when a link breaks or a replica restarts).
    fn ask_again(&mut self) {
        let Some((cmd, missing)) = self.exec.waiting() else {
            self.stuck = None;
            return;
        };
        match self.stuck {
            Some((c, since)) if c == cmd => {
                if since.elapsed() < SIGNAL_PATIENCE {
                    return;
                }
            }
            _ => {
                self.stuck = Some((cmd, Instant::now()));
                return;
            }
        }
        self.stuck = Some((cmd, Instant::now()));
        tracing::info!(%cmd, ?missing, "asking again for signals");
        let Some(peers) = self.node.inner.peers.get() else {
            return;
        };
        let frame = PeerFrame::SignalRequest(cmd).encode();
        for p in missing {
            for s in self.layout.replicas(p) {
                peers.send(s, frame.clone());
            }
        }
    }

    fn send_signals(&self, signals: &[SignalOut]) {
        if signals.is_empty() {
            return;
        }
        let Some(peers) = self.node.inner.peers.get() else {
            return;
        };
        // One frame per destination partition, sent to each of its replicas.
        let mut per_partition: BTreeMap<PartitionId, Vec<Bytes>> = BTreeMap::new();
        for out in signals {
            let encoded = out.signal.encode();
            for p in &out.to {
                per_partition.entry(*p).or_default().push(encoded.clone());
            }
        }
        let metrics = self.node.metrics();
        for (p, list) in per_partition {
            metrics
                .signals_sent
                .fetch_add(list.len() as u64, Ordering::Relaxed);
            metrics.signal_frames_sent.fetch_add(1, Ordering::Relaxed);
            let frame = PeerFrame::Signals(list).encode();
            for s in self.layout.replicas(p) {
                if !peers.send(s, frame.clone()) {
                    tracing::warn!(to = s, "signals dropped: the peer's send queue is full");
                }
            }
        }
    }

    /// Sends a step's signals and hands its outputs on.
    fn handle(&mut self, step: Step<Applied>) {
        self.send_signals(&step.signals);
        if step.outputs.is_empty() {
            return;
        }
        let mut remote: BTreeMap<NodeId, Vec<OutcomeEntry>> = BTreeMap::new();
        for executed in step.outputs {
            let Some(q) = self.queued.pop_front() else {
                tracing::error!(cmd = %executed.id, "executed a command the replica did not queue");
                continue;
            };
            debug_assert_eq!(q.id, executed.id);
            self.executed(q, executed, &mut remote);
        }
        self.node
            .inner
            .last_zxid
            .store(self.exec.clock(), std::sync::atomic::Ordering::Release);
        if let Some(peers) = self.node.inner.peers.get() {
            let partition = self.layout.partition();
            for (to, entries) in remote {
                let frame = PeerFrame::Outcomes { partition, entries }.encode();
                if !peers.send(to, frame) {
                    tracing::warn!(
                        to,
                        "outcome queue full; the server's clients will reconnect"
                    );
                }
            }
        }
    }

    fn executed(
        &mut self,
        q: Queued,
        executed: Executed<Applied>,
        remote: &mut BTreeMap<NodeId, Vec<OutcomeEntry>>,
    ) {
        let applied = executed.output;
        let ok = applied.err == ErrorCode::Ok;
        let me = self.layout.me;
        let client = q.xid != INTERNAL_XID && q.origin.conn != 0;
        let now = Instant::now();
        if let Some(timeout) = q.create.filter(|_| ok) {
            self.node.sessions().add(q.session, timeout, now);
        }
        if q.close && ok {
            self.node.sessions().remove(q.session);
            self.session_servers.remove(&q.session);
        } else if client && applied.err != ErrorCode::SessionExpired {
            self.session_servers.insert(q.session, q.origin.server);
        }
        let mut items: BTreeMap<NodeId, Vec<OutcomeItem>> = BTreeMap::new();
        for (session, event) in applied.notifications {
            let targets: Vec<NodeId> = match self.session_servers.get(&session) {
                Some(&t) => vec![t],
                None => self.layout.others().collect(),
            };
            for t in targets {
                if t != me && !self.layout.same_partition(t) {
                    items.entry(t).or_default().push(OutcomeItem::Notify {
                        session,
                        event: event.clone(),
                    });
                }
            }
            self.node.notify(session, Outbound::Notification(event));
        }
        let close = q.close && ok;
        if client {
            let t = q.origin.server;
            if t == me {
                let reply = Outbound::Reply {
                    xid: q.xid,
                    zxid: executed.zxid,
                    err: applied.err.as_i32(),
                    response: applied.response,
                };
                self.node
                    .deliver_reply(q.origin.conn, q.session, q.xid, reply, close);
            } else if !self.layout.same_partition(t) {
                let mut body = BytesMut::new();
                if let Some(r) = &applied.response {
                    r.encode(&mut body);
                }
                items.entry(t).or_default().push(OutcomeItem::Reply {
                    conn: q.origin.conn,
                    session: q.session,
                    xid: q.xid,
                    zxid: executed.zxid,
                    err: applied.err.as_i32(),
                    body: body.freeze(),
                    close,
                });
            }
        }
        if close {
            // The session ended: a connection of it on this server that did not ask for the
            // close (expiry, a close sent through another connection) closes now.
            let asked_here = client && q.origin.server == me;
            self.node
                .close_route(q.session, asked_here.then_some(q.origin.conn));
        }
        for (t, items) in items {
            remote
                .entry(t)
                .or_default()
                .push(OutcomeEntry { seq: q.seq, items });
        }
    }

    /// Installs a checkpoint another replica of this partition sent (state transfer) if it is
    /// ahead of this one: restores the state, saves it as this replica's checkpoint, and resumes
    /// delivery after it.
    async fn install(&mut self, cp: super::cluster::Received) -> Result<bool, NodeError> {
        if cp.position.len() != self.positions.len() {
            tracing::warn!(
                from = cp.from,
                "a received checkpoint has another group layout; ignored"
            );
            return Ok(false);
        }
        let ahead = cp.position.iter().zip(&self.positions).all(|(a, b)| a >= b)
            && cp.position != self.positions;
        if !ahead {
            return Ok(false);
        }
        let (saved, zk) = match Saved::decode(&cp.data, self.zk().options()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(from = cp.from, error = %e, "a received checkpoint does not restore; ignored");
                return Ok(false);
            }
        };
        if saved.partition != self.layout.partition() || saved.partitions != self.layout.partitions
        {
            tracing::warn!(
                from = cp.from,
                partition = saved.partition,
                "a received checkpoint is of another partition; ignored"
            );
            return Ok(false);
        }
        let checkpoints = self.node.inner.group.checkpoints().clone();
        let (data, position) = (cp.data.clone(), cp.position.clone());
        tokio::task::spawn_blocking(move || checkpoints.save(&position, &data))
            .await
            .map_err(|e| NodeError::Snapshot(e.to_string()))??;
        let (p, k, global) = (
            self.layout.partition(),
            self.layout.partitions,
            self.layout.global_group(),
        );
        self.exec = Executor::resume(
            p,
            global,
            ZkService::new(zk, p, k),
            saved.clock,
            saved.last_multi,
        );
        self.exec.remember_signals(saved.signals);
        self.queued.clear();
        self.session_servers = saved.session_servers;
        self.positions = cp.position.clone();
        self.since_checkpoint = 0;
        self.stuck = None;
        self.node
            .inner
            .last_zxid
            .store(self.exec.clock(), std::sync::atomic::Ordering::Release);
        let now = Instant::now();
        for (id, timeout) in self.zk().sessions() {
            if !self.node.sessions().contains(id) {
                self.node.sessions().add(id, timeout, now);
            }
        }
        self.node.inner.group.install(&self.positions).await?;
        tracing::info!(
            from = cp.from,
            positions = ?self.positions,
            bytes = cp.data.len(),
            "checkpoint installed from another replica"
        );
        Ok(true)
    }

    /// What a checkpoint of the current state holds.
    fn saved(&self) -> Saved {
        Saved {
            partition: self.layout.partition(),
            partitions: self.layout.partitions,
            clock: self.exec.clock(),
            last_multi: self.exec.last_multi(),
            session_servers: self.session_servers.clone(),
            signals: self.exec.remembered_signals(),
            tree: self.zk().snapshot(),
        }
    }

    /// Saves the state at the current positions and lets the acceptors forget the log before.
    async fn checkpoint(&mut self) -> Result<(), NodeError> {
        let started = Instant::now();
        let data = self.saved().encode();
        let positions = self.positions.clone();
        let checkpoints = self.node.inner.group.checkpoints().clone();
        let size = data.len();
        let at = positions.clone();
        tokio::task::spawn_blocking(move || checkpoints.save(&at, &data))
            .await
            .map_err(|e| NodeError::Snapshot(e.to_string()))??;
        self.node.inner.group.trim(&positions).await?;
        self.since_checkpoint = 0;
        tracing::info!(
            ?positions,
            bytes = size,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "checkpoint saved"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_state_round_trips_and_old_checkpoints_restore() {
        let opts = crate::zk::Options::default();
        let zk = Zk::new(opts.clone());
        let signal = |instance, facts: &'static [u8]| Signal {
            cmd: CmdId::new(4, instance, 0),
            from: 1,
            clock: 70 + instance as i64,
            base: None,
            facts: Bytes::from_static(facts),
        };
        let saved = Saved {
            partition: 1,
            partitions: 4,
            clock: 77,
            last_multi: Some(CmdId::new(4, 9, 2)),
            session_servers: BTreeMap::from([(0x1234, 3), (0x99, 5)]),
            signals: vec![
                SignalOut {
                    to: vec![0, 3],
                    signal: signal(7, b"facts"),
                },
                SignalOut {
                    to: vec![2],
                    signal: signal(9, b""),
                },
            ],
            tree: zk.snapshot(),
        };
        let bytes = saved.encode();
        let (back, _) = Saved::decode(&bytes, &opts).unwrap();
        let expected = Saved {
            tree: Vec::new(),
            ..saved
        };
        assert_eq!(back, expected);
        // The previous format: no signal section after the session table.
        let without = Saved {
            signals: Vec::new(),
            tree: zk.snapshot(),
            ..expected.clone()
        };
        let v3 = without.encode();
        let table_end = 8 + 17 + 16 + 4 + 12 * without.session_servers.len();
        assert_eq!(v3[table_end..table_end + 4], [0; 4], "no signals");
        let v2 = [
            CHECKPOINT_MAGIC_V2.as_slice(),
            &v3[8..table_end],
            &v3[table_end + 4..],
        ]
        .concat();
        let (old, _) = Saved::decode(&v2, &opts).unwrap();
        assert_eq!(
            old,
            Saved {
                signals: Vec::new(),
                tree: Vec::new(),
                ..expected
            }
        );
        let (legacy, _) = Saved::decode(&zk.snapshot(), &opts).unwrap();
        assert_eq!((legacy.partitions, legacy.clock), (1, zk.last_zxid()));
        for cut in [9, 20, 30, table_end + 2, table_end + 10, table_end + 40] {
            assert!(Saved::decode(&bytes[..cut], &opts).is_err(), "cut {cut}");
        }
    }
}
