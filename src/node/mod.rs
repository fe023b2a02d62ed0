//! A Volery node: wires the ordering layer ([`group`]), the replica that executes ordered commands
//! on the ZooKeeper service ([`replica`]), and the session tracker, and hands the client front end
//! a [`Node`] handle. This is the only layer that does I/O for them (tokio tasks, RocksDB).
//!
//! A node is one replica of one partition and a client front end for the whole tree. With one
//! partition it belongs to one Paxos group whose members are the cluster's servers (just this one
//! when standalone). With k partitions ([`layout`]) it belongs to its partition's group and the
//! global group; a command for a group it is not a member of goes to a member over the peer port,
//! and the replicas that execute it send its reply and notifications back ([`cluster::PeerFrame::Outcomes`]).
//!
//! Front-end invariants (DESIGN.md "Client-facing guarantees"):
//! - A reply to a multi-partition command is handed to the connection once every partition of its
//!   destination has answered (each one's notifications before it), so the client sees every event
//!   the command triggered before its reply.
//! - Outcomes of a partition are taken in its execution order, each once, from whichever replica
//!   sends it first (a watermark per partition on the entries' `seq`).
//! - When requests in flight may have been lost (a leader change, a broken link), connections
//!   with requests outstanding are closed so their clients reconnect, as ZooKeeper's followers do.

pub mod cluster;
pub mod command;
pub mod group;
pub mod layout;
pub mod metrics;
pub mod replica;
pub mod sessions;
pub mod store;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use protocol::{Response, WatcherEvent};
use sha1::{Digest, Sha1};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::multicast::{GroupId, NodeId};
use crate::ssmr::{dest_of, PartitionId};
use crate::zk::{self, Command, SessionId, Zk};
use cluster::{FrontInput, OutcomeItem, PeerFrame};
use group::{GroupError, GroupHandle, GroupOptions};
use layout::Layout;
use metrics::NodeMetrics;
use sessions::SessionTracker;

/// The xid of commands the node orders on its own behalf (session expiry, container and TTL
/// clean-up); no client is answered for them.
pub const INTERNAL_XID: i32 = i32::MIN;

/// What the node sends to a session's connection, in the order the connection must write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    Reply {
        xid: i32,
        zxid: i64,
        err: i32,
        response: Option<Response>,
    },
    /// An event from this server's replica: it comes in that replica's execution order with the
    /// replies the replica executes for the connection.
    Notification(WatcherEvent),
    /// An event from another partition's replica.
    RemoteNotification(WatcherEvent),
    /// A reply executed on another server: `body` is the encoded response (empty for none).
    Encoded {
        xid: i32,
        zxid: i64,
        err: i32,
        body: Bytes,
    },
    /// The session was closed or expired: write what is queued, then close the connection.
    Close,
    /// Requests this connection submitted may have been lost (the group's leader changed): if any
    /// are unanswered, close the connection so the client reconnects and learns of the loss, as
    /// ZooKeeper's followers do when they lose their leader.
    Reconnect,
}

/// Where a session's replies and notifications go: the connection that currently holds it.
#[derive(Debug, Clone)]
pub struct Route {
    pub conn: u64,
    pub tx: mpsc::UnboundedSender<Outbound>,
    pub undelivered: Arc<Undelivered>,
}

/// Where a command goes (the oracle's answer): the group it is ordered in, how many partitions
/// execute it, and whether they include this server's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destination {
    pub group: GroupId,
    pub partitions: usize,
    pub includes_own_partition: bool,
}

/// The multi-partition commands a connection submitted that this server's replica has not yet
/// delivered. A command the connection then submits to this server's partition group is ordered
/// after every delivered one there: the merge delivers a global instance only once the partition
/// group's next instance is decided with a later timestamp ([`crate::multicast::Learner`]), so
/// the new command lands in a later instance than that one.
#[derive(Debug, Default)]
pub struct Undelivered {
    xids: Mutex<Vec<i32>>,
    delivered: tokio::sync::Notify,
}

impl Undelivered {
    /// Notes command `xid` as submitted and not yet delivered.
    pub fn add(&self, xid: i32) {
        self.xids.lock().expect("undelivered poisoned").push(xid);
    }

    pub fn is_empty(&self) -> bool {
        self.xids.lock().expect("undelivered poisoned").is_empty()
    }

    /// Forgets them all (they were answered).
    pub fn clear(&self) {
        self.xids.lock().expect("undelivered poisoned").clear();
    }

    /// Resolves after a delivery made the set empty (or spuriously: check again).
    pub async fn emptied(&self) {
        self.delivered.notified().await;
    }

    fn delivered(&self, xid: i32) {
        let mut xids = self.xids.lock().expect("undelivered poisoned");
        if let Some(i) = xids.iter().position(|&x| x == xid) {
            xids.remove(i);
            if xids.is_empty() {
                self.delivered.notify_one();
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot create the data directory: {0}")]
    DataDir(std::io::Error),
    #[error("storage: {0}")]
    Store(#[from] storage::StoreError),
    #[error("ordering: {0}")]
    Group(#[from] GroupError),
    #[error("checkpoint: {0}")]
    Snapshot(String),
    #[error("cluster: {0}")]
    Cluster(#[from] cluster::ClusterError),
    #[error("no link to any server of partition {0}")]
    Unreachable(PartitionId),
}

/// Handle to the node, shared by every connection. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    group: GroupHandle,
    /// Invariant: at most one route per session; replaced when the session reconnects elsewhere.
    routes: Mutex<HashMap<SessionId, Route>>,
    tracker: Arc<SessionTracker>,
    /// The cluster this node belongs to, if any.
    cluster: Option<cluster::ClusterSpec>,
    /// The peer transport, in a cluster.
    peers: std::sync::OnceLock<crate::peer::Peers>,
    last_zxid: AtomicI64,
    next_session: AtomicI64,
    secret: [u8; 16],
    metrics: Arc<NodeMetrics>,
    /// Read-only looks at the replica's state, run by the executor between two commands.
    inspect: mpsc::Sender<Inspection>,
    layout: Layout,
    /// Replies to multi-partition commands waiting for the other partitions, by connection and
    /// xid.
    collecting: Mutex<HashMap<u64, HashMap<i32, Collecting>>>,
}

/// A multi-partition command's reply still owed by some partitions.
#[derive(Debug)]
struct Collecting {
    remaining: usize,
    close: bool,
}

/// A read-only function of the replica's state, run on the executor.
pub type Inspection = Box<dyn FnOnce(&Zk) + Send>;

/// Inspections that may wait for the executor before [`Node::inspect`] waits for queue space.
const INSPECT_CAPACITY: usize = 64;

impl Node {
    /// Submits a command for ordering on behalf of connection `conn` (0 for the node's own). Its
    /// reply reaches that connection once executed, if the session is still routed to it.
    pub async fn submit(&self, cmd: &Command, conn: u64) -> Result<(), NodeError> {
        self.submit_to(cmd, conn, self.destination(cmd)).await
    }

    /// [`Node::submit`] with the command's destination already asked of the oracle.
    pub async fn submit_to(
        &self,
        cmd: &Command,
        conn: u64,
        dest: Destination,
    ) -> Result<(), NodeError> {
        let layout = &self.inner.layout;
        let origin = command::Origin {
            server: layout.me,
            conn,
        };
        let group = dest.group;
        if dest.partitions > 1 && conn != 0 && cmd.xid != INTERNAL_XID {
            self.inner
                .collecting
                .lock()
                .expect("collecting poisoned")
                .entry(conn)
                .or_default()
                .insert(
                    cmd.xid,
                    Collecting {
                        remaining: dest.partitions,
                        close: false,
                    },
                );
        }
        let bytes = command::encode(cmd, origin);
        if layout.is_member(group) {
            self.inner.group.submit(group, bytes).await?;
            return Ok(());
        }
        let peers = self
            .inner
            .peers
            .get()
            .ok_or(NodeError::Unreachable(group))?;
        let frame = PeerFrame::Submit {
            group,
            command: bytes,
        }
        .encode();
        // The replica of the same rank first, then the others: front ends spread over them.
        let replicas = layout.replicas(group);
        let rank = layout.me as usize % replicas.len().max(1);
        for i in 0..replicas.len() {
            let to = replicas[(rank + i) % replicas.len()];
            if peers.is_connected(to) {
                return peers
                    .send_wait(to, frame)
                    .await
                    .map_err(|_| NodeError::Unreachable(group));
            }
        }
        Err(NodeError::Unreachable(group))
    }

    /// Where a command of a session goes: a session's requests to different groups must not
    /// overlap, or they could take effect out of order.
    pub fn destination(&self, cmd: &Command) -> Destination {
        let layout = &self.inner.layout;
        let dest = dest_of(cmd, layout.partitions);
        Destination {
            group: layout.group_for(&dest),
            partitions: dest.len(),
            includes_own_partition: dest.contains(&layout.partition()),
        }
    }

    /// True when the tree is split over several partitions.
    pub fn partitioned(&self) -> bool {
        self.inner.layout.partitions > 1
    }

    pub fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    /// Hands the reply to request `xid` of connection `conn` (executed on this server or another)
    /// to the connection, once every partition of a multi-partition command has answered. With
    /// `close`, the session was closed: its route goes and its connection closes after the reply.
    fn deliver_reply(&self, conn: u64, session: SessionId, xid: i32, reply: Outbound, close: bool) {
        let mut close = close;
        {
            let mut all = self.inner.collecting.lock().expect("collecting poisoned");
            if let Some(per) = all.get_mut(&conn) {
                if let Some(c) = per.get_mut(&xid) {
                    c.remaining -= 1;
                    c.close |= close;
                    if c.remaining > 0 {
                        return;
                    }
                    close = c.close;
                    per.remove(&xid);
                    if per.is_empty() {
                        all.remove(&conn);
                    }
                }
            }
        }
        let mut routes = self.inner.routes.lock().expect("routes poisoned");
        let Some(route) = routes.get(&session).filter(|r| r.conn == conn).cloned() else {
            return;
        };
        let _ = route.tx.send(reply);
        if close {
            routes.remove(&session);
            let _ = route.tx.send(Outbound::Close);
        }
    }

    /// Closes the session's connection on this server, unless it is `except` (the connection
    /// that asked for the close, which closes after its reply).
    fn close_route(&self, session: SessionId, except: Option<u64>) {
        let mut routes = self.inner.routes.lock().expect("routes poisoned");
        if routes.get(&session).is_some_and(|r| Some(r.conn) != except) {
            if let Some(route) = routes.remove(&session) {
                let _ = route.tx.send(Outbound::Close);
            }
        }
    }

    /// Hands a notification to the session's connection on this server, if it has one.
    fn notify(&self, session: SessionId, msg: Outbound) {
        if let Some(route) = self.route(session) {
            let _ = route.tx.send(msg);
        }
    }

    /// This server's replica delivered multi-partition command `xid` of connection `conn`.
    fn delivered_here(&self, session: SessionId, conn: u64, xid: i32) {
        if let Some(route) = self.route(session).filter(|r| r.conn == conn) {
            route.undelivered.delivered(xid);
        }
    }

    /// Tells every connection to reconnect if requests it has in flight may have been lost.
    fn reconnect_all(&self) {
        let routes: Vec<Route> = self
            .inner
            .routes
            .lock()
            .expect("routes poisoned")
            .values()
            .cloned()
            .collect();
        for r in routes {
            let _ = r.tx.send(Outbound::Reconnect);
        }
    }

    /// Routes the session's output to this connection; returns the route it replaced, if any.
    pub fn attach(&self, session: SessionId, route: Route) -> Option<Route> {
        let mut routes = self.inner.routes.lock().expect("routes poisoned");
        routes.insert(session, route)
    }

    /// Stops routing to `conn` (when its connection ends), unless another connection took over.
    pub fn detach(&self, session: SessionId, conn: u64) {
        {
            let mut routes = self.inner.routes.lock().expect("routes poisoned");
            if routes.get(&session).is_some_and(|r| r.conn == conn) {
                routes.remove(&session);
            }
        }
        self.inner
            .collecting
            .lock()
            .expect("collecting poisoned")
            .remove(&conn);
    }

    fn route(&self, session: SessionId) -> Option<Route> {
        self.inner
            .routes
            .lock()
            .expect("routes poisoned")
            .get(&session)
            .cloned()
    }

    /// A session id that no other session of this node's history has: ZooKeeper's scheme, the
    /// server id in the top byte and the start time in the next bits, then a counter.
    pub fn new_session_id(&self) -> SessionId {
        self.inner.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// The password of a session: derived from its id and this node's secret, as ZooKeeper does.
    pub fn password(&self, session: SessionId) -> Vec<u8> {
        let mut h = Sha1::new();
        h.update(session.to_be_bytes());
        h.update(self.inner.secret);
        h.finalize()[..16].to_vec()
    }

    pub fn last_zxid(&self) -> i64 {
        self.inner.last_zxid.load(Ordering::Acquire)
    }

    pub fn sessions(&self) -> &SessionTracker {
        &self.inner.tracker
    }

    /// ZooKeeper's server state words: `standalone`, or `leader` / `follower` in a cluster.
    pub fn mode(&self) -> &'static str {
        let global = self.inner.layout.global_group();
        match (&self.inner.cluster, self.inner.group.is_leader(global)) {
            (None, _) => "standalone",
            (Some(_), true) => "leader",
            (Some(_), false) => "follower",
        }
    }

    /// Asks `peer` for its latest checkpoint (state transfer); the answer reaches the replica.
    pub fn request_checkpoint(&self, peer: u32) {
        if let Some(peers) = self.inner.peers.get() {
            if !peers.send(peer, cluster::PeerFrame::CheckpointRequest.encode()) {
                tracing::warn!(peer, "could not ask for a checkpoint (peer queue full)");
            }
        }
    }

    /// On a leader, the followers heard from recently (ZooKeeper's `zk_followers`).
    pub fn followers(&self) -> Option<u32> {
        let global = self.inner.layout.global_group();
        (self.mode() == "leader").then(|| self.inner.group.live_peers(global))
    }

    /// This server's id (`myid`), 0 when standalone.
    pub fn server_id(&self) -> u32 {
        self.inner.cluster.as_ref().map_or(0, |c| c.id)
    }

    pub fn metrics(&self) -> &NodeMetrics {
        &self.inner.metrics
    }

    /// Runs `f` on the replica's state between two commands and returns its result; `None` when
    /// the executor has stopped. For the operator's surface only (four-letter words, metrics):
    /// `f` holds up execution, so it must be quick.
    pub async fn inspect<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Zk) -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Inspection = Box::new(move |zk| {
            let _ = tx.send(f(zk));
        });
        self.inner.inspect.send(job).await.ok()?;
        rx.await.ok()
    }
}

/// Tells every connection to reconnect if its requests may have been lost, and, when partitioned,
/// the other servers too (they may have submitted commands through this one).
async fn watch_leader(node: Node, mut view: tokio::sync::watch::Receiver<group::LeaderView>) {
    let mut seen = view.borrow_and_update().epoch;
    while view.changed().await.is_ok() {
        let epoch = view.borrow_and_update().epoch;
        if epoch == seen {
            continue;
        }
        seen = epoch;
        node.reconnect_all();
        if node.partitioned() {
            if let Some(peers) = node.inner.peers.get() {
                let frame = PeerFrame::Lost {
                    group: node.inner.layout.partition(),
                }
                .encode();
                for to in node.inner.layout.others() {
                    peers.send(to, frame.clone());
                }
            }
        }
    }
}

/// Takes what other servers' replicas executed for this server's sessions.
///
/// Invariant: `watermark[p]` is the highest `seq` taken from partition `p`; an entry at or below
/// it is a copy already taken from another replica.
async fn front_end(node: Node, mut inbox: mpsc::UnboundedReceiver<FrontInput>) {
    let mut watermark: HashMap<PartitionId, u64> = HashMap::new();
    while let Some(input) = inbox.recv().await {
        match input {
            FrontInput::Outcomes {
                from,
                partition,
                entries,
            } => {
                if node.inner.layout.partition_of(from) != Some(partition) {
                    tracing::warn!(
                        from,
                        partition,
                        "outcomes from a server of another partition dropped"
                    );
                    continue;
                }
                let mark = watermark.entry(partition).or_insert(0);
                for entry in entries {
                    if entry.seq <= *mark {
                        continue;
                    }
                    *mark = entry.seq;
                    for item in entry.items {
                        match item {
                            OutcomeItem::Notify { session, event } => {
                                node.notify(session, Outbound::RemoteNotification(event))
                            }
                            OutcomeItem::Reply {
                                conn,
                                session,
                                xid,
                                zxid,
                                err,
                                body,
                                close,
                            } => node.deliver_reply(
                                conn,
                                session,
                                xid,
                                Outbound::Encoded {
                                    xid,
                                    zxid,
                                    err,
                                    body,
                                },
                                close,
                            ),
                        }
                    }
                }
            }
            FrontInput::Lost { from } => {
                if node.partitioned() {
                    tracing::debug!(
                        from,
                        "requests in flight may be lost; reconnecting busy connections"
                    );
                    node.reconnect_all();
                }
            }
        }
    }
}

/// Orders the commands other front ends sent this server for its groups, in arrival order.
async fn relay_submits(group: GroupHandle, mut inbox: mpsc::UnboundedReceiver<(GroupId, Bytes)>) {
    while let Some((g, command)) = inbox.recv().await {
        if let Err(e) = group.submit(g, command).await {
            tracing::warn!(group = g, error = %e, "cannot order a command from another server");
            if matches!(e, GroupError::Closed | GroupError::Store(_)) {
                break;
            }
        }
    }
}

/// Tells the other members which sessions this server holds a connection for.
async fn report_sessions(node: Node, peers: crate::peer::Peers, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        let ids: Vec<SessionId> = node
            .inner
            .routes
            .lock()
            .expect("routes poisoned")
            .keys()
            .copied()
            .collect();
        let frame = cluster::PeerFrame::SessionsAlive(ids).encode();
        for m in node.inner.layout.others() {
            peers.send(m, frame.clone());
        }
    }
}

fn first_session_id(server_id: i64, now_ms: i64) -> SessionId {
    ((now_ms << 24) as u64 >> 8) as i64 | (server_id << 56)
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A started node and the task that ends when it stops.
pub struct Started {
    pub node: Node,
    pub task: JoinHandle<Result<(), NodeError>>,
}

/// Opens the data directory, restores the last checkpoint, replays the ordered log after it, and
/// starts ordering new commands.
pub async fn start(cfg: &Config) -> Result<Started, NodeError> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(NodeError::DataDir)?;
    let storage = storage::Storage::open(&cfg.data_dir)?;
    let zk_opts = zk::Options {
        extended_types: cfg.extended_types,
        super_digest: cfg.super_digest.clone(),
        ..zk::Options::default()
    };
    let spec = cluster::ClusterSpec::from_config(cfg)?;
    let layout = match &spec {
        Some(spec) => {
            let layout = Layout::new(spec.id, &spec.member_ids(), cfg.partitions);
            match &cfg.global_acceptors {
                Some(ids) => {
                    let ids: Vec<NodeId> = ids.iter().map(|&i| i as NodeId).collect();
                    layout.with_global_acceptors(&ids)
                }
                None => layout,
            }
        }
        None => Layout::standalone(),
    };
    let groups = layout.groups();
    let checkpoints = storage.checkpoints();
    let latest = tokio::task::spawn_blocking(move || checkpoints.load_latest())
        .await
        .map_err(|e| NodeError::Snapshot(e.to_string()))??;
    let (zk, saved, after) = match latest {
        Some(cp) => {
            let (saved, zk) = replica::Saved::decode(&cp.data, &zk_opts)?;
            if cp.position.len() != groups.len()
                || saved.partitions != layout.partitions
                || saved.partition != layout.partition()
            {
                return Err(NodeError::Snapshot(format!(
                    "the checkpoint in {} was taken as partition {} of {} with {} group(s); this server is partition {} of {}: the partition layout cannot change",
                    cfg.data_dir.display(),
                    saved.partition,
                    saved.partitions,
                    cp.position.len(),
                    layout.partition(),
                    layout.partitions
                )));
            }
            (zk, saved, cp.position)
        }
        None => {
            let zk = Zk::new(zk_opts.clone());
            let saved = replica::Saved {
                partition: layout.partition(),
                partitions: layout.partitions,
                ..replica::Saved::default()
            };
            (zk, saved, vec![0; groups.len()])
        }
    };
    let metrics = Arc::new(NodeMetrics::default());
    let tracker = Arc::new(SessionTracker::default());
    let mut group_opts = GroupOptions::for_groups(layout.me, groups);
    group_opts.metrics = Some(metrics.clone());
    let mut link = None;
    let (installs_tx, installs_rx) = mpsc::channel(4);
    let (submits_tx, submits_rx) = mpsc::unbounded_channel();
    let (replica_tx, replica_rx) = mpsc::unbounded_channel();
    let (front_tx, front_rx) = mpsc::unbounded_channel();
    if let Some(spec) = &spec {
        group_opts.member.heartbeat_ms = (cfg.tick_time_ms as u64 / 10).clamp(10, 200);
        // Ten heartbeats, and at least half a second, are enough to hear a leader that exists.
        let listen_ms = (group_opts.member.heartbeat_ms * 10).max(500);
        // ZooKeeper's syncLimit: a silent leader is given up after syncLimit ticks (a closed link
        // at once), so an overloaded leader whose heartbeats queue behind its traffic for a
        // second or two is not deposed, with every session on its followers closed.
        group_opts.member.election_ms =
            (u64::from(cfg.sync_limit) * cfg.tick_time_ms as u64).max(listen_ms);
        group_opts.member.startup_listen_ms =
            listen_ms + crate::peer::RECONNECT_MAX_BACKOFF.as_millis() as u64;
        group_opts.member.catch_up_ms = group_opts.member.heartbeat_ms * 2;
        let l = cluster::connect(
            spec,
            tracker.clone(),
            storage.checkpoints(),
            installs_tx.clone(),
            cluster::Inboxes {
                submits: submits_tx,
                replica: replica_tx,
                front: front_tx,
            },
        )
        .await?;
        tracing::info!(id = spec.id, members = ?spec.members, partition = layout.partition(), partitions = layout.partitions, "cluster member starting");
        link = Some(l);
    }
    let (peers, network) = match link {
        Some(l) => (Some(l.peers), Some(l.network)),
        None => (None, None),
    };
    let group = group::start(&storage, group_opts, &after, network).await?;
    let (inspect_tx, inspect_rx) = mpsc::channel(INSPECT_CAPACITY);
    // Every server derives the same passwords, so a session resumes on any of them (and after a
    // restart), as ZooKeeper's are derived from a fixed secret.
    let mut h = Sha1::new();
    h.update(b"volery session secret");
    if let Some(spec) = &spec {
        for id in spec.members.keys() {
            h.update(id.to_be_bytes());
        }
    }
    let mut secret = [0u8; 16];
    secret.copy_from_slice(&h.finalize()[..16]);
    let server_id = spec.as_ref().map_or(0, |s| s.id as i64);
    let node = Node {
        inner: Arc::new(Inner {
            group: group.handle.clone(),
            routes: Mutex::new(HashMap::new()),
            tracker,
            cluster: spec,
            peers: std::sync::OnceLock::new(),
            last_zxid: AtomicI64::new(saved.clock),
            next_session: AtomicI64::new(first_session_id(server_id, wall_ms())),
            secret,
            metrics,
            inspect: inspect_tx,
            layout,
            collecting: Mutex::new(HashMap::new()),
        }),
    };
    tokio::spawn(watch_leader(node.clone(), group.handle.leader_view()));
    tokio::spawn(front_end(node.clone(), front_rx));
    tokio::spawn(relay_submits(group.handle.clone(), submits_rx));
    if let Some(peers) = &peers {
        let _ = node.inner.peers.set(peers.clone());
    }
    if let Some(peers) = peers {
        let every = Duration::from_millis((cfg.tick_time_ms / 2).max(1) as u64);
        tokio::spawn(report_sessions(node.clone(), peers, every));
    }
    let now = Instant::now();
    for (id, timeout) in zk.sessions() {
        node.inner.tracker.add(id, timeout, now);
    }
    let replica = replica::Replica::new(zk, saved, node.clone(), after, cfg.snap_count);
    let expiry_every = Duration::from_millis((cfg.tick_time_ms / 2).max(1) as u64);
    let containers_every = Duration::from_millis(cfg.container_check_interval_ms.max(1));
    let task = tokio::spawn(replica.run(
        group,
        inspect_rx,
        installs_rx,
        replica_rx,
        expiry_every,
        containers_every,
    ));
    Ok(Started { node, task })
}
