//! The replica: executes ordered commands one at a time on the ZooKeeper service and routes each
//! reply, after the watch notifications the command triggered, to the session's connection.
//!
//! Invariant: commands execute in delivery order, and for every session its notifications are
//! queued before the reply of any later command, so a client sees an event before any reply that
//! reflects the change (ZooKeeper's watch guarantee). The executor never awaits network I/O.

use std::time::{Duration, Instant};

use protocol::ErrorCode;
use tokio::time::MissedTickBehavior;

use super::group::{Delivered, Group};
use super::{command, wall_ms, Inspection, Node, NodeError, Outbound, INTERNAL_XID};
use crate::multicast::Instance;
use crate::zk::{Command, Op, Zk};
use tokio::sync::mpsc;

/// How long a replica waits for a requested checkpoint before asking again.
const STATE_TRANSFER_PATIENCE: Duration = Duration::from_secs(5);

pub struct Replica {
    zk: Zk,
    node: Node,
    /// The last instance executed.
    instance: Instance,
    since_checkpoint: u64,
    snap_count: u64,
}

impl Replica {
    pub fn new(zk: Zk, node: Node, instance: Instance, snap_count: u64) -> Replica {
        Replica {
            zk,
            node,
            instance,
            since_checkpoint: 0,
            snap_count: snap_count.max(1),
        }
    }

    /// Executes deliveries until the group stops; expires sessions and removes empty containers
    /// and expired TTL nodes on the given periods by ordering commands for them.
    pub async fn run(
        mut self,
        mut group: Group,
        mut inspect: mpsc::Receiver<Inspection>,
        mut installs: mpsc::Receiver<super::cluster::Received>,
        expiry_every: Duration,
        containers_every: Duration,
    ) -> Result<(), NodeError> {
        let mut expiry = tokio::time::interval(expiry_every);
        expiry.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut containers = tokio::time::interval(containers_every);
        containers.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut was_leader = false;
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
                        if self.since_checkpoint >= self.snap_count {
                            self.checkpoint().await?;
                        }
                    }
                    None => break,
                },
                Some(job) = inspect.recv() => job(&self.zk),
                Some((_, peer)) = group.state_requests.recv() => {
                    if asked.is_none_or(|t| t.elapsed() > STATE_TRANSFER_PATIENCE) {
                        tracing::info!(peer, instance = self.instance, "the log this replica needs was trimmed; fetching a checkpoint");
                        asked = Some(Instant::now());
                        self.node.request_checkpoint(peer);
                    }
                }
                Some(cp) = installs.recv() => {
                    if self.install(cp).await? {
                        asked = None;
                    }
                }
                _ = expiry.tick() => {
                    // Only the leader expires sessions; a new leader first renews them all.
                    let leading = self.leading();
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
                    if !self.leading() {
                        continue;
                    }
                    for path in self.zk.expired_containers_and_ttls(wall_ms()) {
                        self.order(Command { session: 0, xid: INTERNAL_XID, time_ms: 0, op: Op::DeleteContainer { path } });
                    }
                }
            }
        }
        match group.task.await {
            Ok(r) => r.map_err(NodeError::from),
            Err(e) => Err(NodeError::Snapshot(format!("group task: {e}"))),
        }
    }

    fn leading(&self) -> bool {
        let group = &self.node.inner.group;
        group.is_leader(group.groups()[0])
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
        if d.instance <= self.instance {
            return; // covered by a checkpoint installed from another member
        }
        self.instance = d.instance;
        let time_ms = d.time_ms as i64;
        for bytes in &d.commands {
            match command::decode(bytes, time_ms) {
                Ok((origin, cmd)) => self.execute(&cmd, origin),
                Err(e) => {
                    tracing::error!(instance = d.instance, error = %e, "undecodable command skipped")
                }
            }
        }
        self.since_checkpoint += d.commands.len() as u64;
        self.node.metrics().commands_executed.fetch_add(
            d.commands.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    fn execute(&mut self, cmd: &Command, origin: command::Origin) {
        let last = self.zk.last_zxid();
        let zxid = if Zk::is_write(&cmd.op) {
            last + 1
        } else {
            last
        };
        let applied = self.zk.apply(zxid, cmd);
        self.node
            .inner
            .last_zxid
            .store(self.zk.last_zxid(), std::sync::atomic::Ordering::Release);
        for (session, event) in applied.notifications {
            if let Some(route) = self.node.route(session) {
                let _ = route.tx.send(Outbound::Notification(event));
            }
        }
        let ok = applied.err == ErrorCode::Ok;
        let now = Instant::now();
        match &cmd.op {
            Op::CreateSession { timeout_ms, .. } if ok => {
                self.node.sessions().add(cmd.session, *timeout_ms, now)
            }
            Op::CloseSession if ok => self.node.sessions().remove(cmd.session),
            _ => {}
        }
        let reply = Outbound::Reply {
            xid: cmd.xid,
            zxid: self.zk.last_zxid(),
            err: applied.err.as_i32(),
            response: applied.response,
        };
        let ours = |route: &super::Route| {
            cmd.xid != INTERNAL_XID
                && origin.server == self.node.server_id()
                && origin.conn == route.conn
        };
        if matches!(cmd.op, Op::CloseSession) {
            if let Some(route) = self.node.remove_route(cmd.session) {
                if ours(&route) {
                    let _ = route.tx.send(reply);
                }
                let _ = route.tx.send(Outbound::Close);
            }
        } else if let Some(route) = self.node.route(cmd.session) {
            if ours(&route) {
                let _ = route.tx.send(reply);
            }
        }
    }

    /// Installs a checkpoint another member sent (state transfer) if it is ahead of this replica:
    /// restores the tree, saves it as this replica's checkpoint, and resumes delivery after it.
    async fn install(&mut self, cp: super::cluster::Received) -> Result<bool, NodeError> {
        let Some(&at) = cp.position.first() else {
            return Ok(false);
        };
        if at <= self.instance {
            return Ok(false);
        }
        let zk = match Zk::restore(&cp.data, self.zk.options().clone()) {
            Ok(zk) => zk,
            Err(e) => {
                tracing::warn!(from = cp.from, error = %e, "a received checkpoint does not restore; ignored");
                return Ok(false);
            }
        };
        let checkpoints = self.node.inner.group.checkpoints().clone();
        let data = cp.data.clone();
        tokio::task::spawn_blocking(move || checkpoints.save(&[at], &data))
            .await
            .map_err(|e| NodeError::Snapshot(e.to_string()))??;
        self.zk = zk;
        self.instance = at;
        self.since_checkpoint = 0;
        self.node
            .inner
            .last_zxid
            .store(self.zk.last_zxid(), std::sync::atomic::Ordering::Release);
        let now = Instant::now();
        for (id, timeout) in self.zk.sessions() {
            if !self.node.sessions().contains(id) {
                self.node.sessions().add(id, timeout, now);
            }
        }
        self.node.inner.group.install(&[at]).await?;
        tracing::info!(
            from = cp.from,
            instance = at,
            bytes = cp.data.len(),
            "checkpoint installed from another member"
        );
        Ok(true)
    }

    /// Saves the tree at the current instance and lets the acceptor forget the log before it.
    async fn checkpoint(&mut self) -> Result<(), NodeError> {
        let started = Instant::now();
        let data = self.zk.snapshot();
        let instance = self.instance;
        let checkpoints = self.node.inner.group.checkpoints().clone();
        let size = data.len();
        tokio::task::spawn_blocking(move || checkpoints.save(&[instance], &data))
            .await
            .map_err(|e| NodeError::Snapshot(e.to_string()))??;
        self.node.inner.group.trim(&[instance]).await?;
        self.since_checkpoint = 0;
        tracing::info!(
            instance,
            bytes = size,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "checkpoint saved"
        );
        Ok(())
    }
}
