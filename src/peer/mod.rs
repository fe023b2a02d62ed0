//! The servers' own TCP transport (the peer port): opaque frames between numbered nodes.
//!
//! This layer knows nothing of Paxos or znodes. Each node listens on one address and dials every
//! other node once:
//!
//! - **Outbound** (`outbound.rs`): one connection per peer, dialed by us and used only for sending.
//!   While the peer is unreachable it is redialed with a backoff of 50 ms doubling to 1 s. A
//!   [`PeerEvent::Up`] is emitted when the link completes its handshake, a [`PeerEvent::Down`] when
//!   it breaks (a write fails, or the peer closes it).
//! - **Inbound** (`inbound.rs`): connections accepted on the listener, used only for receiving.
//!   Their frames come out as [`PeerEvent::Frame`]. A newer connection from the same peer replaces
//!   the older one (a redial means the old link is dead to the sender).
//!
//! Wire (`frame.rs`): the dialer sends a handshake (magic `VLRY`, version u16, its id u32); the
//! acceptor checks it, rejects unknown ids, and answers with its own handshake, which the dialer
//! checks against the id it meant to reach. Then the dialer sends frames, each a u32 big-endian
//! length and the payload. A bad handshake or a frame longer than `max_frame` closes that
//! connection only, with a log line.
//!
//! Delivery: frames to one peer arrive in the order they were queued, with no duplicates. A frame
//! is lost only around a [`PeerEvent::Down`]: frames sent since the previous `Up` may have been
//! lost (written into a connection that then broke). Frames queued while the peer is down stay
//! queued and go out once it is up again. A peer that hangs without closing its sockets (for
//! instance stopped with SIGSTOP) is not detected here: its queue fills up and `send` returns
//! false; noticing it is the job of the user's heartbeats.
//!
//! Bounds: each peer's send queue holds `queue_frames` frames; when it is full, [`Peers::send`]
//! drops the *new* frame (returns false) and the older queued ones are kept; [`Peers::send_wait`]
//! waits for room instead. Incoming events go through one channel of [`EVENT_QUEUE`] events; when
//! it is full, readers stop reading, which pushes back on the senders through TCP.

mod frame;
mod inbound;
mod outbound;
/// The longest a link waits before it tries to reconnect to a peer.
pub use outbound::MAX_BACKOFF as RECONNECT_MAX_BACKOFF;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Identifies a server on the peer port.
pub type PeerId = u32;

/// Default for [`PeerConfig::queue_frames`].
pub const DEFAULT_QUEUE_FRAMES: usize = 8192;
/// Default for [`PeerConfig::max_frame`].
pub const DEFAULT_MAX_FRAME: usize = 64 << 20;
/// Capacity of the channel [`Peers::start`] returns.
pub const EVENT_QUEUE: usize = 65536;

/// Where a node listens and whom it talks to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    /// This node.
    pub id: PeerId,
    /// The address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Every other node and its peer address (never `id` itself).
    pub peers: BTreeMap<PeerId, SocketAddr>,
    /// Frames queued per peer before [`Peers::send`] drops new ones.
    pub queue_frames: usize,
    /// Largest frame payload, in bytes, sent or accepted.
    pub max_frame: usize,
}

impl PeerConfig {
    /// A configuration with the default bounds.
    pub fn new(id: PeerId, listen: SocketAddr, peers: BTreeMap<PeerId, SocketAddr>) -> PeerConfig {
        PeerConfig {
            id,
            listen,
            peers,
            queue_frames: DEFAULT_QUEUE_FRAMES,
            max_frame: DEFAULT_MAX_FRAME,
        }
    }

    /// Checks the relationships between fields.
    pub fn validate(&self) -> Result<(), PeerError> {
        if self.peers.contains_key(&self.id) {
            return Err(PeerError::InvalidConfig(
                "peers must not contain the node itself",
            ));
        }
        if self.queue_frames == 0 {
            return Err(PeerError::InvalidConfig("queue_frames must be at least 1"));
        }
        if self.max_frame == 0 || self.max_frame > u32::MAX as usize {
            return Err(PeerError::InvalidConfig(
                "max_frame must be between 1 and u32::MAX",
            ));
        }
        Ok(())
    }
}

/// What the transport reports to its user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerEvent {
    /// A frame `from` sent us.
    Frame { from: PeerId, frame: Bytes },
    /// The outbound link to the peer became usable.
    Up(PeerId),
    /// The outbound link to the peer broke: frames sent to it since the last `Up` may be lost.
    Down(PeerId),
}

/// Errors of the peer transport.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The configuration contradicts itself.
    #[error("invalid peer configuration: {0}")]
    InvalidConfig(&'static str),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// The listener's address could not be read.
    #[error("listener address: {0}")]
    LocalAddr(#[source] io::Error),
    /// No such peer in the configuration.
    #[error("unknown peer {0}")]
    UnknownPeer(PeerId),
    /// The frame is longer than `max_frame`.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge { len: usize, max: usize },
    /// The transport was shut down.
    #[error("peer transport shut down")]
    Closed,
}

/// Why one connection ended (logged, never returned to the user).
#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("bad handshake magic {0:?}")]
    BadMagic([u8; 4]),
    #[error("unsupported protocol version {0}")]
    BadVersion(u16),
    #[error("handshake from unknown peer {0}")]
    UnknownPeer(PeerId),
    #[error("reached peer {got} instead of {expected}")]
    WrongPeer { expected: PeerId, got: PeerId },
    #[error("handshake timed out")]
    HandshakeTimeout,
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge { len: usize, max: usize },
    #[error("connection closed inside a frame")]
    Truncated,
    #[error("peer closed the connection")]
    Closed,
    #[error("peer sent data on a send-only link")]
    UnexpectedData,
}

/// A handle on a running transport; clones share it.
///
/// Invariant: every task the transport spawned stops once [`Peers::shutdown`] is called or the
/// last handle is dropped; the event channel then ends (its receiver yields `None`) once all of
/// them have stopped and the listener is closed.
#[derive(Clone)]
pub struct Peers {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers")
            .field("id", &self.inner.id)
            .field("local_addr", &self.inner.local_addr)
            .field("peers", &self.inner.queues.keys().collect::<Vec<_>>())
            .finish()
    }
}

struct Inner {
    id: PeerId,
    local_addr: SocketAddr,
    max_frame: usize,
    queues: BTreeMap<PeerId, mpsc::Sender<Bytes>>,
    connected: BTreeMap<PeerId, Arc<std::sync::atomic::AtomicBool>>,
    cancel: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Peers {
    /// Binds `cfg.listen` and starts the transport: the listener and a dialer per peer.
    pub async fn start(cfg: PeerConfig) -> Result<(Peers, mpsc::Receiver<PeerEvent>), PeerError> {
        cfg.validate()?;
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| PeerError::Bind {
                addr: cfg.listen,
                source,
            })?;
        Peers::start_with(cfg, listener)
    }

    /// Starts the transport on a listener bound already (`cfg.listen` is not used), so that a
    /// caller can learn every node's address before starting any of them. Must be called from
    /// within a tokio runtime (it spawns the transport's tasks).
    pub fn start_with(
        cfg: PeerConfig,
        listener: TcpListener,
    ) -> Result<(Peers, mpsc::Receiver<PeerEvent>), PeerError> {
        cfg.validate()?;
        let local_addr = listener.local_addr().map_err(PeerError::LocalAddr)?;
        let cancel = CancellationToken::new();
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);

        // Up/Down go through an unbounded channel and one forwarding task, so that a dialer never
        // waits on a full event channel (a user blocked in `send_wait` could deadlock otherwise).
        // There are at most a few such events per peer per second (the redial backoff).
        let (status_tx, mut status_rx) = mpsc::unbounded_channel();
        let forward_events = events_tx.clone();
        let forward_cancel = cancel.clone();
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    _ = forward_cancel.cancelled() => return,
                    ev = status_rx.recv() => match ev { Some(ev) => ev, None => return },
                };
                tokio::select! {
                    _ = forward_cancel.cancelled() => return,
                    r = forward_events.send(ev) => if r.is_err() { return },
                }
            }
        });

        let mut queues = BTreeMap::new();
        let mut connected = BTreeMap::new();
        for (&peer, &addr) in &cfg.peers {
            let (tx, rx) = mpsc::channel(cfg.queue_frames);
            queues.insert(peer, tx);
            let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
            connected.insert(peer, up.clone());
            let dialer = outbound::Dialer {
                me: cfg.id,
                peer,
                addr,
                queue: rx,
                status: status_tx.clone(),
                connected: up,
                cancel: cancel.clone(),
            };
            tokio::spawn(dialer.run());
        }
        drop(status_tx);

        let acceptor = inbound::Acceptor {
            me: cfg.id,
            known: cfg.peers.keys().copied().collect::<BTreeSet<_>>(),
            max_frame: cfg.max_frame,
            events: events_tx,
            cancel: cancel.clone(),
            current: Default::default(),
        };
        tokio::spawn(inbound::run(listener, Arc::new(acceptor)));

        tracing::info!(id = cfg.id, %local_addr, peers = cfg.peers.len(), "peer transport started");
        let inner = Inner {
            id: cfg.id,
            local_addr,
            max_frame: cfg.max_frame,
            queues,
            connected,
            cancel,
        };
        Ok((
            Peers {
                inner: Arc::new(inner),
            },
            events_rx,
        ))
    }

    /// This node's id.
    pub fn id(&self) -> PeerId {
        self.inner.id
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// True while the link to `to` is up (between its `Up` and `Down` events).
    pub fn is_connected(&self, to: PeerId) -> bool {
        self.inner
            .connected
            .get(&to)
            .is_some_and(|c| c.load(std::sync::atomic::Ordering::Acquire))
    }

    /// Queues `frame` for `to` without waiting. False means it was dropped: unknown peer, frame
    /// above `max_frame`, queue full, or transport shut down.
    pub fn send(&self, to: PeerId, frame: Bytes) -> bool {
        let Ok(queue) = self.queue(to, frame.len()) else {
            return false;
        };
        queue.try_send(frame).is_ok()
    }

    /// Queues `frame` for `to`, waiting for room in its queue.
    pub async fn send_wait(&self, to: PeerId, frame: Bytes) -> Result<(), PeerError> {
        let queue = self.queue(to, frame.len())?;
        tokio::select! {
            _ = self.inner.cancel.cancelled() => Err(PeerError::Closed),
            r = queue.send(frame) => r.map_err(|_| PeerError::Closed),
        }
    }

    /// Stops every task and closes every socket (asynchronously: the listener is closed once the
    /// event channel has ended). Frames still queued are dropped.
    pub fn shutdown(&self) {
        self.inner.cancel.cancel();
    }

    fn queue(&self, to: PeerId, len: usize) -> Result<&mpsc::Sender<Bytes>, PeerError> {
        if self.inner.cancel.is_cancelled() {
            return Err(PeerError::Closed);
        }
        let queue = self
            .inner
            .queues
            .get(&to)
            .ok_or(PeerError::UnknownPeer(to))?;
        if len > self.inner.max_frame {
            tracing::warn!(
                to,
                len,
                max = self.inner.max_frame,
                "frame too large, dropped"
            );
            return Err(PeerError::FrameTooLarge {
                len,
                max: self.inner.max_frame,
            });
        }
        Ok(queue)
    }
}
