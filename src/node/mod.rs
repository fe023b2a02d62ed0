//! A Volery node: wires the ordering layer ([`group`]), the replica that executes ordered commands
//! on the ZooKeeper service ([`replica`]), and the session tracker, and hands the client front end
//! a [`Node`] handle. This is the only layer that does I/O for them (tokio tasks, RocksDB).
//!
//! A node is one replica of one partition: one Paxos group whose members are the cluster's servers
//! (just this one when standalone), every member also a client front end.

pub mod cluster;
pub mod command;
pub mod group;
pub mod metrics;
pub mod replica;
pub mod sessions;
pub mod store;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use protocol::{Response, WatcherEvent};
use sha1::{Digest, Sha1};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::zk::{self, Command, SessionId, Zk};
use group::{GroupError, GroupHandle, GroupOptions};
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
    Notification(WatcherEvent),
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
}

/// A read-only function of the replica's state, run on the executor.
pub type Inspection = Box<dyn FnOnce(&Zk) + Send>;

/// Inspections that may wait for the executor before [`Node::inspect`] waits for queue space.
const INSPECT_CAPACITY: usize = 64;

impl Node {
    /// Submits a command for ordering on behalf of connection `conn` (0 for the node's own). Its
    /// reply reaches that connection once executed, if the session is still routed to it.
    pub async fn submit(&self, cmd: &Command, conn: u64) -> Result<(), NodeError> {
        let origin = command::Origin {
            server: self.server_id(),
            conn,
        };
        let group = &self.inner.group;
        group
            .submit(group.groups()[0], command::encode(cmd, origin))
            .await?;
        Ok(())
    }

    /// Routes the session's output to this connection; returns the route it replaced, if any.
    pub fn attach(&self, session: SessionId, route: Route) -> Option<Route> {
        let mut routes = self.inner.routes.lock().expect("routes poisoned");
        routes.insert(session, route)
    }

    /// Stops routing to `conn` (when its connection ends), unless another connection took over.
    pub fn detach(&self, session: SessionId, conn: u64) {
        let mut routes = self.inner.routes.lock().expect("routes poisoned");
        if routes.get(&session).is_some_and(|r| r.conn == conn) {
            routes.remove(&session);
        }
    }

    fn route(&self, session: SessionId) -> Option<Route> {
        self.inner
            .routes
            .lock()
            .expect("routes poisoned")
            .get(&session)
            .cloned()
    }

    fn remove_route(&self, session: SessionId) -> Option<Route> {
        self.inner
            .routes
            .lock()
            .expect("routes poisoned")
            .remove(&session)
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
        let group = &self.inner.group;
        match (&self.inner.cluster, group.is_leader(group.groups()[0])) {
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
        let group = &self.inner.group;
        (self.mode() == "leader").then(|| group.live_peers(group.groups()[0]))
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

/// Tells every connection to reconnect if its requests may have been lost.
async fn watch_leader(node: Node, mut view: tokio::sync::watch::Receiver<group::LeaderView>) {
    while view.changed().await.is_ok() {
        let routes: Vec<Route> = node
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
        let others: Vec<u32> = node
            .inner
            .cluster
            .as_ref()
            .map(|c| c.members.keys().copied().filter(|&m| m != c.id).collect())
            .unwrap_or_default();
        for m in others {
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
    let checkpoints = storage.checkpoints();
    let latest = tokio::task::spawn_blocking(move || checkpoints.load_latest())
        .await
        .map_err(|e| NodeError::Snapshot(e.to_string()))??;
    let (zk, after) = match latest {
        Some(cp) => {
            let zk = Zk::restore(&cp.data, zk_opts.clone())
                .map_err(|e| NodeError::Snapshot(e.to_string()))?;
            (zk, cp.position.first().copied().unwrap_or(0))
        }
        None => (Zk::new(zk_opts.clone()), 0),
    };
    let metrics = Arc::new(NodeMetrics::default());
    let spec = cluster::ClusterSpec::from_config(cfg)?;
    let tracker = Arc::new(SessionTracker::default());
    let mut group_opts = GroupOptions {
        metrics: Some(metrics.clone()),
        ..GroupOptions::default()
    };
    let mut link = None;
    let (installs_tx, installs_rx) = mpsc::channel(4);
    if let Some(spec) = &spec {
        group_opts.node = spec.id;
        group_opts.groups[0].members = spec.member_ids();
        group_opts.member.heartbeat_ms = (cfg.tick_time_ms as u64 / 10).clamp(10, 200);
        group_opts.member.election_ms = (group_opts.member.heartbeat_ms * 10).max(500);
        group_opts.member.catch_up_ms = group_opts.member.heartbeat_ms * 2;
        let l = cluster::connect(
            spec,
            tracker.clone(),
            storage.checkpoints(),
            installs_tx.clone(),
        )
        .await?;
        tracing::info!(id = spec.id, members = ?spec.members, "cluster member starting");
        link = Some(l);
    }
    let (peers, network) = match link {
        Some(l) => (Some(l.peers), Some(l.network)),
        None => (None, None),
    };
    let group = group::start(&storage, group_opts, &[after], network).await?;
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
            last_zxid: AtomicI64::new(zk.last_zxid()),
            next_session: AtomicI64::new(first_session_id(server_id, wall_ms())),
            secret,
            metrics,
            inspect: inspect_tx,
        }),
    };
    tokio::spawn(watch_leader(node.clone(), group.handle.leader_view()));
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
    let replica = replica::Replica::new(zk, node.clone(), after, cfg.snap_count);
    let expiry_every = Duration::from_millis((cfg.tick_time_ms / 2).max(1) as u64);
    let containers_every = Duration::from_millis(cfg.container_check_interval_ms.max(1));
    let task = tokio::spawn(replica.run(
        group,
        inspect_rx,
        installs_rx,
        expiry_every,
        containers_every,
    ));
    Ok(Started { node, task })
}
