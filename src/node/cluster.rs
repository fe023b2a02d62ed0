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
use crate::multicast::{NodeId, PaxosMsg};
use crate::peer::{PeerConfig, PeerEvent, Peers};
use crate::zk::SessionId;

const TAG_PAXOS: u8 = 0;
const TAG_SESSIONS: u8 = 1;
const TAG_CHECKPOINT_REQUEST: u8 = 2;
const TAG_CHECKPOINT: u8 = 3;

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
    #[error("partitions={0}: serving more than one partition is not available yet; a cluster runs as one partition")]
    PartitionsUnsupported(u32),
}

impl ClusterSpec {
    /// The cluster described by the `server.N` entries, or `None` for a standalone server (no
    /// entries, or only this server's).
    pub fn from_config(cfg: &Config) -> Result<Option<ClusterSpec>, ClusterError> {
        if cfg.partitions > 1 {
            return Err(ClusterError::PartitionsUnsupported(cfg.partitions));
        }
        if cfg.servers.len() <= 1 {
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
}

/// The frame of a Paxos message, without building a [`PeerFrame`].
pub fn encode_paxos(msg: &PaxosMsg) -> Bytes {
    let mut out = Vec::with_capacity(1 + msg.encoded_len());
    out.push(TAG_PAXOS);
    msg.encode_into(&mut out);
    out.into()
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
            _ => Err("unknown frame tag"),
        }
    }
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

/// Starts the peer transport and a task that hands Paxos messages to the group driver, session
/// liveness reports to `tracker`, answers checkpoint requests from `checkpoints`, and hands
/// received checkpoints to `installs`.
pub async fn connect(
    spec: &ClusterSpec,
    tracker: Arc<SessionTracker>,
    checkpoints: storage::CheckpointDb,
    installs: mpsc::Sender<Received>,
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
                    Err(why) => {
                        tracing::warn!(from, why, "malformed peer frame dropped");
                        continue;
                    }
                },
                PeerEvent::Up(id) => NetEvent::Up(id),
                PeerEvent::Down(id) => NetEvent::Down(id),
            };
            if tx.send(ev).await.is_err() {
                break;
            }
        }
    });
    let sender = peers.clone();
    let send = Box::new(move |to: NodeId, msg: &PaxosMsg| sender.send(to, encode_paxos(msg)));
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
    fn more_than_one_partition_is_refused_clearly() {
        let cfg = Config {
            partitions: 2,
            ..Config::default()
        };
        let e = ClusterSpec::from_config(&cfg).unwrap_err();
        assert!(e.to_string().contains("partitions=2"), "{e}");
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
