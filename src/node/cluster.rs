//! This node's place in a cluster: who the members are, and the frames servers exchange on the
//! peer port (Paxos messages for the group driver, session liveness for the tracker).

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::sync::mpsc;

use super::group::{NetEvent, Network};
use super::sessions::SessionTracker;
use crate::config::Config;
use crate::multicast::{GroupId, NodeId, PaxosMsg};
use crate::peer::{PeerConfig, PeerEvent, Peers};
use crate::ssmr::{CmdId, PartitionId};
use crate::zk::SessionId;
use protocol::{Encode, WatcherEvent};

const TAG_PAXOS: u8 = 0;
const TAG_SESSIONS: u8 = 1;
const TAG_CHECKPOINT_REQUEST: u8 = 2;
const TAG_CHECKPOINT: u8 = 3;
const TAG_SUBMIT: u8 = 4;
/// Tag 5 was a frame of one signal; a frame with tag 5 is rejected as unknown.
const TAG_SIGNALS: u8 = 11;
const TAG_SIGNAL_REQUEST: u8 = 6;
const TAG_OUTCOMES: u8 = 7;
const TAG_LOST: u8 = 8;

const ITEM_NOTIFY: u8 = 0;
const ITEM_REPLY: u8 = 1;

/// The members of a cluster and their peer addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSpec {
    pub id: NodeId,
    /// Every member's peer address, this node's included.
    pub members: BTreeMap<NodeId, SocketAddr>,
}

/// Errors in the cluster part of a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("server id {0} is not one of the server.N entries")]
    NotAMember(u64),
    #[error("server id {0} is out of range (1..=4294967295)")]
    BadId(u64),
    #[error("server.{id}: cannot resolve {host}:{port}")]
    Resolve { id: u64, host: String, port: u16 },
    #[error("peer transport: {0}")]
    Peer(#[from] crate::peer::PeerError),
    #[error("partitions={0} needs at least {0} servers (server.N entries or [[servers]])")]
    PartitionsWithoutServers(u32),
}

impl ClusterSpec {
    /// The cluster described by the `server.N` entries, or `None` for a standalone server (no
    /// entries, or only this server's).
    pub fn from_config(cfg: &Config) -> Result<Option<ClusterSpec>, ClusterError> {
        if cfg.servers.len() <= 1 {
            if cfg.partitions > 1 {
                return Err(ClusterError::PartitionsWithoutServers(cfg.partitions));
            }
            return Ok(None);
        }
        if !cfg.servers.contains_key(&cfg.server_id) {
            return Err(ClusterError::NotAMember(cfg.server_id));
        }
        let mut members = BTreeMap::new();
        for (&id, line) in &cfg.servers {
            let node = NodeId::try_from(id)
                .ok()
                .filter(|&n| n != 0)
                .ok_or(ClusterError::BadId(id))?;
            let addr = (line.host.as_str(), line.quorum_port)
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| ClusterError::Resolve {
                    id,
                    host: line.host.clone(),
                    port: line.quorum_port,
                })?;
            members.insert(node, addr);
        }
        Ok(Some(ClusterSpec {
            id: cfg.server_id as NodeId,
            members,
        }))
    }

    pub fn member_ids(&self) -> Vec<NodeId> {
        self.members.keys().copied().collect()
    }
}

/// The partition of each server when `partitions` split them: in id order, consecutive runs of
/// `servers / partitions` replicas (the config has checked that this divides evenly).
pub fn partition_layout(server_ids: &[u64], partitions: u32) -> BTreeMap<u64, u32> {
    let mut ids = server_ids.to_vec();
    ids.sort_unstable();
    let replicas = (ids.len() / partitions.max(1) as usize).max(1);
    ids.into_iter()
        .enumerate()
        .map(|(i, id)| (id, (i / replicas) as u32))
        .collect()
}

/// A frame on the peer port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerFrame {
    Paxos(PaxosMsg),
    /// Sessions with a live connection on the sender: their deadlines are renewed everywhere, so
    /// that whichever server leads can expire exactly the sessions nobody serves.
    SessionsAlive(Vec<SessionId>),
    /// Asks for the sender's latest checkpoint (state transfer to a member that lags behind
    /// what every acceptor has trimmed).
    CheckpointRequest,
    /// A checkpoint: the position it reflects (one instance per group) and the service's state.
    Checkpoint {
        position: Vec<u64>,
        data: Bytes,
    },
    /// A command for `group`, submitted by a front end that is not one of its members.
    Submit {
        group: GroupId,
        command: Bytes,
    },
    /// S-SMR signals (each an encoded [`crate::ssmr::Signal`]): all those one step of the
    /// sender's replica has for the receiver, in one frame.
    Signals(Vec<Bytes>),
    /// Asks for the signal of `cmd` again: the sender's replica waits for it.
    SignalRequest(CmdId),
    /// What a replica of `partition` executed for the receiver's sessions, in execution order.
    Outcomes {
        partition: PartitionId,
        entries: Vec<OutcomeEntry>,
    },
    /// Commands the sender took for ordering (as a member of `group`) may have been lost: the
    /// group's leader changed.
    Lost {
        group: GroupId,
    },
}

/// What one command executed on a partition produced for one front end.
///
/// Invariant: `seq` strictly increases along a partition's execution order and is the same at
/// every replica of the partition, so the front end takes each entry once, from whichever
/// replica sends it first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeEntry {
    pub seq: u64,
    pub items: Vec<OutcomeItem>,
}

/// One thing to hand a session's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutcomeItem {
    Notify {
        session: SessionId,
        event: WatcherEvent,
    },
    /// The reply to request `xid` submitted on connection `conn`; `body` is the encoded response.
    /// `close`: the command closed the session, so the connection closes after the reply.
    Reply {
        conn: u64,
        session: SessionId,
        xid: i32,
        zxid: i64,
        err: i32,
        body: Bytes,
        close: bool,
    },
}

/// The frame of a Paxos message, without building a [`PeerFrame`].
pub fn encode_paxos(msg: &PaxosMsg) -> Bytes {
    let mut out = Vec::with_capacity(1 + msg.encoded_len());
    out.push(TAG_PAXOS);
    msg.encode_into(&mut out);
    out.into()
}

/// The frame of the last Paxos message sent. A coordinator sends one message to every acceptor
/// (Phase 2a with its batch) or learner in a row, so each is encoded once, not once per peer.
/// Messages sharing a batch compare in O(1) (`Arc` equality checks the pointer first).
#[derive(Default)]
struct LastFrame(std::sync::Mutex<Option<(PaxosMsg, Bytes)>>);

impl LastFrame {
    fn encode(&self, msg: &PaxosMsg) -> Bytes {
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match &*last {
            Some((m, frame)) if m == msg => frame.clone(),
            _ => {
                let frame = encode_paxos(msg);
                *last = Some((msg.clone(), frame.clone()));
                frame
            }
        }
    }
}

impl PeerFrame {
    pub fn encode(&self) -> Bytes {
        match self {
            PeerFrame::Paxos(msg) => encode_paxos(msg),
            PeerFrame::SessionsAlive(ids) => {
                let mut out = BytesMut::with_capacity(5 + 8 * ids.len());
                out.put_u8(TAG_SESSIONS);
                out.put_u32(ids.len() as u32);
                for id in ids {
                    out.put_i64(*id);
                }
                out.freeze()
            }
            PeerFrame::CheckpointRequest => Bytes::from_static(&[TAG_CHECKPOINT_REQUEST]),
            PeerFrame::Checkpoint { position, data } => {
                let mut out = BytesMut::with_capacity(5 + 8 * position.len() + data.len());
                out.put_u8(TAG_CHECKPOINT);
                out.put_u32(position.len() as u32);
                for p in position {
                    out.put_u64(*p);
                }
                out.extend_from_slice(data);
                out.freeze()
            }
            PeerFrame::Submit { group, command } => {
                let mut out = BytesMut::with_capacity(5 + command.len());
                out.put_u8(TAG_SUBMIT);
                out.put_u32(*group);
                out.extend_from_slice(command);
                out.freeze()
            }
            PeerFrame::Signals(signals) => {
                let len = signals.iter().map(|s| 4 + s.len()).sum::<usize>();
                let mut out = BytesMut::with_capacity(5 + len);
                out.put_u8(TAG_SIGNALS);
                out.put_u32(signals.len() as u32);
                for s in signals {
                    out.put_u32(s.len() as u32);
                    out.extend_from_slice(s);
                }
                out.freeze()
            }
            PeerFrame::SignalRequest(cmd) => {
                let mut out = BytesMut::with_capacity(17);
                out.put_u8(TAG_SIGNAL_REQUEST);
                out.put_u32(cmd.group);
                out.put_u64(cmd.instance);
                out.put_u32(cmd.index);
                out.freeze()
            }
            PeerFrame::Outcomes { partition, entries } => {
                let mut out = BytesMut::with_capacity(64);
                out.put_u8(TAG_OUTCOMES);
                out.put_u32(*partition);
                out.put_u32(entries.len() as u32);
                for e in entries {
                    out.put_u64(e.seq);
                    out.put_u32(e.items.len() as u32);
                    for item in &e.items {
                        put_item(&mut out, item);
                    }
                }
                out.freeze()
            }
            PeerFrame::Lost { group } => {
                let mut out = BytesMut::with_capacity(5);
                out.put_u8(TAG_LOST);
                out.put_u32(*group);
                out.freeze()
            }
        }
    }

    pub fn decode(mut frame: Bytes) -> Result<PeerFrame, &'static str> {
        if frame.is_empty() {
            return Err("empty frame");
        }
        match frame.get_u8() {
            TAG_PAXOS => PaxosMsg::decode(frame)
                .map(PeerFrame::Paxos)
                .map_err(|_| "malformed paxos message"),
            TAG_SESSIONS => {
                if frame.len() < 4 {
                    return Err("truncated session list");
                }
                let n = frame.get_u32() as usize;
                if frame.len() != n.saturating_mul(8) {
                    return Err("session list length mismatch");
                }
                Ok(PeerFrame::SessionsAlive(
                    (0..n).map(|_| frame.get_i64()).collect(),
                ))
            }
            TAG_CHECKPOINT_REQUEST if frame.is_empty() => Ok(PeerFrame::CheckpointRequest),
            TAG_CHECKPOINT => {
                if frame.len() < 4 {
                    return Err("truncated checkpoint");
                }
                let n = frame.get_u32() as usize;
                if frame.len() < n.saturating_mul(8) {
                    return Err("truncated checkpoint position");
                }
                let position = (0..n).map(|_| frame.get_u64()).collect();
                Ok(PeerFrame::Checkpoint {
                    position,
                    data: frame,
                })
            }
            TAG_SUBMIT if frame.len() >= 4 => {
                let group = frame.get_u32();
                Ok(PeerFrame::Submit {
                    group,
                    command: frame,
                })
            }
            TAG_SIGNALS => decode_signals(frame),
            TAG_SIGNAL_REQUEST if frame.len() == 16 => Ok(PeerFrame::SignalRequest(CmdId::new(
                frame.get_u32(),
                frame.get_u64(),
                frame.get_u32(),
            ))),
            TAG_OUTCOMES => decode_outcomes(frame),
            TAG_LOST if frame.len() == 4 => Ok(PeerFrame::Lost {
                group: frame.get_u32(),
            }),
            _ => Err("unknown or truncated frame"),
        }
    }
}

/// A list of signals: u32 count, then each as u32 length and bytes (shared with `frame`).
fn decode_signals(mut frame: Bytes) -> Result<PeerFrame, &'static str> {
    if frame.len() < 4 {
        return Err("truncated signal list");
    }
    let n = frame.get_u32() as usize;
    // Each entry takes at least its 4-byte length: a count beyond that is garbage.
    if n > frame.len() / 4 {
        return Err("signal count exceeds the frame");
    }
    let mut signals = Vec::with_capacity(n);
    for _ in 0..n {
        if frame.len() < 4 {
            return Err("truncated signal");
        }
        let len = frame.get_u32() as usize;
        if frame.len() < len {
            return Err("truncated signal");
        }
        signals.push(frame.split_to(len));
    }
    if !frame.is_empty() {
        return Err("bytes after the signal list");
    }
    Ok(PeerFrame::Signals(signals))
}

fn put_item(out: &mut BytesMut, item: &OutcomeItem) {
    match item {
        OutcomeItem::Notify { session, event } => {
            out.put_u8(ITEM_NOTIFY);
            out.put_i64(*session);
            out.put_u32(event.encoded_len() as u32);
            event.encode(out);
        }
        OutcomeItem::Reply {
            conn,
            session,
            xid,
            zxid,
            err,
            body,
            close,
        } => {
            out.put_u8(ITEM_REPLY);
            out.put_u64(*conn);
            out.put_i64(*session);
            out.put_i32(*xid);
            out.put_i64(*zxid);
            out.put_i32(*err);
            out.put_u8(u8::from(*close));
            out.put_u32(body.len() as u32);
            out.extend_from_slice(body);
        }
    }
}

/// Takes `n` bytes off the front of `frame`, if it has them.
fn take(frame: &mut Bytes, n: usize) -> Result<Bytes, &'static str> {
    if frame.len() < n {
        return Err("truncated outcome");
    }
    Ok(frame.split_to(n))
}

fn decode_outcomes(mut frame: Bytes) -> Result<PeerFrame, &'static str> {
    let mut head = take(&mut frame, 8)?;
    let partition = head.get_u32();
    let n = head.get_u32() as usize;
    let mut entries = Vec::with_capacity(n.min(frame.len() / 12));
    for _ in 0..n {
        let mut h = take(&mut frame, 12)?;
        let seq = h.get_u64();
        let m = h.get_u32() as usize;
        let mut items = Vec::with_capacity(m.min(frame.len() / 9));
        for _ in 0..m {
            let tag = take(&mut frame, 1)?.get_u8();
            match tag {
                ITEM_NOTIFY => {
                    let mut h = take(&mut frame, 12)?;
                    let session = h.get_i64();
                    let len = h.get_u32() as usize;
                    let body = take(&mut frame, len)?;
                    let event = protocol::decode_record::<WatcherEvent>(&body)
                        .map_err(|_| "malformed watcher event")?;
                    items.push(OutcomeItem::Notify { session, event });
                }
                ITEM_REPLY => {
                    let mut h = take(&mut frame, 8 + 8 + 4 + 8 + 4 + 1 + 4)?;
                    let conn = h.get_u64();
                    let session = h.get_i64();
                    let xid = h.get_i32();
                    let zxid = h.get_i64();
                    let err = h.get_i32();
                    let close = match h.get_u8() {
                        0 => false,
                        1 => true,
                        _ => return Err("malformed reply flag"),
                    };
                    let len = h.get_u32() as usize;
                    let body = take(&mut frame, len)?;
                    items.push(OutcomeItem::Reply {
                        conn,
                        session,
                        xid,
                        zxid,
                        err,
                        body,
                        close,
                    });
                }
                _ => return Err("unknown outcome item"),
            }
        }
        entries.push(OutcomeEntry { seq, items });
    }
    if !frame.is_empty() {
        return Err("trailing bytes after outcomes");
    }
    Ok(PeerFrame::Outcomes { partition, entries })
}

/// The running peer transport of a cluster member.
pub struct Link {
    pub peers: Peers,
    /// For the group driver.
    pub network: Network,
}

/// A checkpoint received from another member, for the replica to install.
#[derive(Debug)]
pub struct Received {
    pub from: NodeId,
    pub position: Vec<u64>,
    pub data: Bytes,
}

/// Where the peer reader hands what is not for the group driver. Unbounded: each is bounded
/// upstream (client connections cap their outstanding requests; signals and outcomes follow
/// executed commands), and the reader must never wait on them while the group driver waits on it.
pub struct Inboxes {
    /// Commands for a group of this node, from front ends that are not its members.
    pub submits: mpsc::UnboundedSender<(GroupId, Bytes)>,
    /// Signals and signal requests for the replica.
    pub replica: mpsc::UnboundedSender<ReplicaInput>,
    /// Outcomes, leader-loss notices and broken links for the front end.
    pub front: mpsc::UnboundedSender<FrontInput>,
}

/// What the replica receives from peers.
#[derive(Debug)]
pub enum ReplicaInput {
    Signals(Vec<Bytes>),
    SignalRequest { from: NodeId, cmd: CmdId },
}

/// What the front end receives from peers.
#[derive(Debug)]
pub enum FrontInput {
    Outcomes {
        from: NodeId,
        partition: PartitionId,
        entries: Vec<OutcomeEntry>,
    },
    /// A server that took commands for ordering lost its group's leader, or the link to a server
    /// broke: requests in flight may be lost.
    Lost { from: NodeId },
}

/// Starts the peer transport and a task that hands Paxos messages to the group driver, session
/// liveness reports to `tracker`, answers checkpoint requests from `checkpoints`, hands
/// received checkpoints to `installs`, and everything else to `inboxes`.
pub async fn connect(
    spec: &ClusterSpec,
    tracker: Arc<SessionTracker>,
    checkpoints: storage::CheckpointDb,
    installs: mpsc::Sender<Received>,
    inboxes: Inboxes,
) -> Result<Link, ClusterError> {
    let listen = spec.members[&spec.id];
    let others: BTreeMap<NodeId, SocketAddr> = spec
        .members
        .iter()
        .filter(|(id, _)| **id != spec.id)
        .map(|(id, a)| (*id, *a))
        .collect();
    let (peers, mut events) = Peers::start(PeerConfig::new(spec.id, listen, others)).await?;
    let (tx, rx) = mpsc::channel(crate::peer::EVENT_QUEUE);
    let replier = peers.clone();
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            let ev = match ev {
                PeerEvent::Frame { from, frame } => match PeerFrame::decode(frame) {
                    Ok(PeerFrame::Paxos(msg)) => NetEvent::Message { from, msg },
                    Ok(PeerFrame::SessionsAlive(ids)) => {
                        let now = Instant::now();
                        for id in ids {
                            tracker.touch(id, now);
                        }
                        continue;
                    }
                    Ok(PeerFrame::CheckpointRequest) => {
                        tokio::spawn(send_checkpoint(checkpoints.clone(), replier.clone(), from));
                        continue;
                    }
                    Ok(PeerFrame::Checkpoint { position, data }) => {
                        let _ = installs.try_send(Received {
                            from,
                            position,
                            data,
                        });
                        continue;
                    }
                    Ok(PeerFrame::Submit { group, command }) => {
                        let _ = inboxes.submits.send((group, command));
                        continue;
                    }
                    Ok(PeerFrame::Signals(signals)) => {
                        let _ = inboxes.replica.send(ReplicaInput::Signals(signals));
                        continue;
                    }
                    Ok(PeerFrame::SignalRequest(cmd)) => {
                        let _ = inboxes
                            .replica
                            .send(ReplicaInput::SignalRequest { from, cmd });
                        continue;
                    }
                    Ok(PeerFrame::Outcomes { partition, entries }) => {
                        let _ = inboxes.front.send(FrontInput::Outcomes {
                            from,
                            partition,
                            entries,
                        });
                        continue;
                    }
                    Ok(PeerFrame::Lost { .. }) => {
                        let _ = inboxes.front.send(FrontInput::Lost { from });
                        continue;
                    }
                    Err(why) => {
                        tracing::warn!(from, why, "malformed peer frame dropped");
                        continue;
                    }
                },
                PeerEvent::Up(id) => NetEvent::Up(id),
                PeerEvent::Down(id) => {
                    let _ = inboxes.front.send(FrontInput::Lost { from: id });
                    NetEvent::Down(id)
                }
            };
            if tx.send(ev).await.is_err() {
                break;
            }
        }
    });
    let sender = peers.clone();
    let frames = LastFrame::default();
    let send = Box::new(move |to: NodeId, msg: &PaxosMsg| sender.send(to, frames.encode(msg)));
    Ok(Link {
        peers,
        network: Network { send, events: rx },
    })
}

/// Sends this node's latest checkpoint to `to`.
async fn send_checkpoint(checkpoints: storage::CheckpointDb, peers: Peers, to: NodeId) {
    let latest = tokio::task::spawn_blocking(move || checkpoints.load_latest()).await;
    let cp = match latest {
        Ok(Ok(Some(cp))) => cp,
        Ok(Ok(None)) => {
            tracing::warn!(to, "a member asked for a checkpoint; this one has none yet");
            return;
        }
        Ok(Err(e)) => {
            tracing::error!(to, error = %e, "cannot read the checkpoint a member asked for");
            return;
        }
        Err(e) => {
            tracing::error!(to, error = %e, "checkpoint reader failed");
            return;
        }
    };
    let frame = PeerFrame::Checkpoint {
        position: cp.position,
        data: cp.data.into(),
    }
    .encode();
    let bytes = frame.len();
    match peers.send_wait(to, frame).await {
        Ok(()) => tracing::info!(to, bytes, "checkpoint sent to a lagging member"),
        Err(e) => tracing::warn!(to, bytes, error = %e, "could not send a checkpoint"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multicast::{Ballot, Batch};

    #[test]
    fn a_message_sent_to_several_peers_is_encoded_once() {
        let accept = |instance| PaxosMsg::Accept {
            group: 2,
            ballot: Ballot { round: 3, node: 1 },
            instance,
            value: Batch::new(7, vec![Bytes::from(vec![9u8; 1000])]),
        };
        let frames = LastFrame::default();
        let first = accept(5);
        let a = frames.encode(&first);
        let b = frames.encode(&first.clone());
        assert_eq!(a.as_ptr(), b.as_ptr(), "the same frame for the next peer");
        assert_eq!(a, encode_paxos(&first));
        // Another message (another instance, even with an equal batch) gets its own frame.
        let c = frames.encode(&accept(6));
        assert_ne!(a.as_ptr(), c.as_ptr());
        assert_eq!(c, encode_paxos(&accept(6)));
        assert_eq!(PeerFrame::decode(c), Ok(PeerFrame::Paxos(accept(6))));
    }

    #[test]
    fn servers_split_into_equal_partitions_in_id_order() {
        let layout = partition_layout(&[7, 1, 3, 5, 2, 9], 3);
        let by_partition: Vec<(u64, u32)> = layout.into_iter().collect();
        assert_eq!(
            by_partition,
            vec![(1, 0), (2, 0), (3, 1), (5, 1), (7, 2), (9, 2)]
        );
        assert!(partition_layout(&[4, 2], 1).values().all(|&p| p == 0));
    }

    #[test]
    fn partitions_without_servers_are_refused_clearly() {
        let cfg = Config {
            partitions: 2,
            ..Config::default()
        };
        let e = ClusterSpec::from_config(&cfg).unwrap_err();
        assert!(e.to_string().contains("partitions=2"), "{e}");
    }

    #[test]
    fn new_frames_round_trip_and_truncations_are_errors() {
        let frames = vec![
            PeerFrame::Submit {
                group: 3,
                command: Bytes::from_static(b"cmd"),
            },
            PeerFrame::Signals(vec![Bytes::from_static(b"sig"), Bytes::new()]),
            PeerFrame::Signals(vec![]),
            PeerFrame::SignalRequest(CmdId::new(2, 77, 5)),
            PeerFrame::Lost { group: 2 },
            PeerFrame::Outcomes {
                partition: 1,
                entries: vec![
                    OutcomeEntry {
                        seq: 9,
                        items: vec![
                            OutcomeItem::Notify {
                                session: 0x11,
                                event: WatcherEvent {
                                    event_type: 3,
                                    state: 3,
                                    path: "/a".into(),
                                },
                            },
                            OutcomeItem::Reply {
                                conn: 4,
                                session: 0x11,
                                xid: 12,
                                zxid: 40,
                                err: 0,
                                body: Bytes::from_static(b"stat"),
                                close: true,
                            },
                        ],
                    },
                    OutcomeEntry {
                        seq: 10,
                        items: vec![],
                    },
                ],
            },
        ];
        for f in frames {
            let bytes = f.encode();
            assert_eq!(PeerFrame::decode(bytes.clone()), Ok(f.clone()));
            if matches!(
                f,
                PeerFrame::Outcomes { .. } | PeerFrame::SignalRequest(_) | PeerFrame::Signals(_)
            ) {
                for cut in 1..bytes.len() {
                    assert!(
                        PeerFrame::decode(bytes.slice(..cut)).is_err(),
                        "{f:?} cut {cut}"
                    );
                }
            }
        }
    }

    #[test]
    fn frames_round_trip_and_garbage_is_an_error() {
        let f = PeerFrame::SessionsAlive(vec![1, -2, i64::MAX]);
        assert_eq!(PeerFrame::decode(f.encode()), Ok(f));
        let p = PeerFrame::Paxos(PaxosMsg::CatchUp { group: 3, from: 9 });
        assert_eq!(PeerFrame::decode(p.encode()), Ok(p));
        let c = PeerFrame::Checkpoint {
            position: vec![41, 7],
            data: Bytes::from_static(b"tree"),
        };
        assert_eq!(PeerFrame::decode(c.encode()), Ok(c));
        let r = PeerFrame::CheckpointRequest;
        assert_eq!(PeerFrame::decode(r.encode()), Ok(r));
        for bad in [&b""[..], b"\x01\x00\x00\x00\x02abc", b"\x09", b"\x00"] {
            assert!(PeerFrame::decode(Bytes::copy_from_slice(bad)).is_err());
        }
    }
}
