//! Transport tests on 127.0.0.1 with real sockets, each bounded by a timeout.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;

use super::frame::{hello, HELLO_LEN, MAGIC, VERSION};
use super::*;

const WAIT: Duration = Duration::from_secs(10);

struct Node {
    peers: Peers,
    events: mpsc::Receiver<PeerEvent>,
}

/// Binds one listener per id first, so every configuration can name every address.
async fn cluster(ids: &[PeerId], tune: impl Fn(&mut PeerConfig)) -> BTreeMap<PeerId, Node> {
    let mut listeners = BTreeMap::new();
    for &id in ids {
        listeners.insert(id, TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let addrs: BTreeMap<PeerId, SocketAddr> = listeners
        .iter()
        .map(|(&id, l)| (id, l.local_addr().unwrap()))
        .collect();
    let mut nodes = BTreeMap::new();
    for (id, listener) in listeners {
        let mut cfg = config(id, &addrs);
        tune(&mut cfg);
        let (peers, events) = Peers::start_with(cfg, listener).unwrap();
        nodes.insert(id, Node { peers, events });
    }
    nodes
}

fn config(id: PeerId, addrs: &BTreeMap<PeerId, SocketAddr>) -> PeerConfig {
    let mut peers = addrs.clone();
    let listen = peers.remove(&id).unwrap();
    PeerConfig::new(id, listen, peers)
}

async fn next(events: &mut mpsc::Receiver<PeerEvent>) -> PeerEvent {
    timeout(WAIT, events.recv())
        .await
        .expect("no event in time")
        .expect("event channel ended")
}

/// Waits for `Up` from every id in `ids`; frames seen meanwhile are a test failure.
async fn await_up(events: &mut mpsc::Receiver<PeerEvent>, ids: &[PeerId]) {
    let mut missing: Vec<PeerId> = ids.to_vec();
    while !missing.is_empty() {
        match next(events).await {
            PeerEvent::Up(id) => missing.retain(|&m| m != id),
            other => panic!("expected Up, got {other:?}"),
        }
    }
}

/// Collects `n` frames, ignoring Up/Down events.
async fn frames(events: &mut mpsc::Receiver<PeerEvent>, n: usize) -> Vec<(PeerId, Bytes)> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        if let PeerEvent::Frame { from, frame } = next(events).await {
            got.push((from, frame));
        }
    }
    got
}

/// Drains events until the channel ends, which happens once every task of the node stopped.
async fn until_closed(events: &mut mpsc::Receiver<PeerEvent>) {
    timeout(WAIT, async { while events.recv().await.is_some() {} })
        .await
        .expect("transport did not stop");
}

fn payload(from: PeerId, seq: u32) -> Bytes {
    let mut b = Vec::with_capacity(8);
    b.extend_from_slice(&from.to_be_bytes());
    b.extend_from_slice(&seq.to_be_bytes());
    Bytes::from(b)
}

fn seq_of(frame: &Bytes) -> u32 {
    u32::from_be_bytes(frame[4..8].try_into().unwrap())
}

#[tokio::test]
async fn three_nodes_exchange_frames_in_order() {
    const N: u32 = 2000;
    let mut nodes = cluster(&[1, 2, 3], |_| {}).await;
    let ids = [1, 2, 3];
    for &id in &ids {
        let others: Vec<_> = ids.iter().copied().filter(|&o| o != id).collect();
        await_up(&mut nodes.get_mut(&id).unwrap().events, &others).await;
    }
    for &id in &ids {
        let peers = nodes[&id].peers.clone();
        tokio::spawn(async move {
            for seq in 0..N {
                for to in [1, 2, 3] {
                    if to != id {
                        peers.send_wait(to, payload(id, seq)).await.unwrap();
                    }
                }
            }
        });
    }
    for &id in &ids {
        let node = nodes.get_mut(&id).unwrap();
        let got = frames(&mut node.events, 2 * N as usize).await;
        let mut next_seq: BTreeMap<PeerId, u32> = BTreeMap::new();
        for (from, frame) in got {
            assert_ne!(from, id);
            assert_eq!(
                &frame[..4],
                &from.to_be_bytes(),
                "frame tagged with its sender"
            );
            let expected = next_seq.entry(from).or_insert(0);
            assert_eq!(
                seq_of(&frame),
                *expected,
                "node {id}: frames from {from} out of order"
            );
            *expected += 1;
        }
        assert_eq!(next_seq.values().copied().collect::<Vec<_>>(), vec![N, N]);
    }
    for node in nodes.values_mut() {
        node.peers.shutdown();
        until_closed(&mut node.events).await;
    }
}

/// A node that comes up late gets what was queued for it; once the queue is full, new frames are
/// dropped and the older ones kept.
#[tokio::test]
async fn frames_queued_for_a_late_peer_are_delivered_and_overflow_drops_new_ones() {
    let late = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let late_addr = late.local_addr().unwrap();
    drop(late); // nothing listens there until node 2 starts
    let early = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addrs = BTreeMap::from([(1, early.local_addr().unwrap()), (2, late_addr)]);
    let mut cfg1 = config(1, &addrs);
    cfg1.queue_frames = 16;
    let (p1, mut ev1) = Peers::start_with(cfg1, early).unwrap();

    let sent: Vec<bool> = (0..20).map(|seq| p1.send(2, payload(1, seq))).collect();
    assert_eq!(sent.iter().filter(|&&ok| ok).count(), 16);
    assert!(
        sent[..16].iter().all(|&ok| ok),
        "the first 16 fit the queue"
    );
    assert!(!p1.send(9, payload(1, 0)), "unknown peer");
    assert!(matches!(
        p1.send_wait(9, payload(1, 0)).await,
        Err(PeerError::UnknownPeer(9))
    ));
    // Let node 1 fail a few dials first.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (p2, mut ev2) = Peers::start(config(2, &addrs)).await.unwrap();
    assert_eq!(p2.local_addr(), late_addr);
    await_up(&mut ev1, &[2]).await;
    let got = frames(&mut ev2, 16).await;
    let seqs: Vec<u32> = got.iter().map(|(_, f)| seq_of(f)).collect();
    assert_eq!(seqs, (0..16).collect::<Vec<_>>());
    // Nothing beyond the 16 arrives: the next frame is one sent now.
    assert!(p1.send(2, payload(1, 100)));
    assert_eq!(seq_of(&frames(&mut ev2, 1).await[0].1), 100);

    for (p, ev) in [(p1, &mut ev1), (p2, &mut ev2)] {
        p.shutdown();
        until_closed(ev).await;
    }
}

#[tokio::test]
async fn a_restarted_node_is_redialed_with_down_then_up() {
    let mut nodes = cluster(&[1, 2, 3], |_| {}).await;
    for (id, others) in [(1, [2, 3]), (2, [1, 3]), (3, [1, 2])] {
        await_up(&mut nodes.get_mut(&id).unwrap().events, &others).await;
    }
    let addr3 = nodes[&3].peers.local_addr();
    let addrs: BTreeMap<PeerId, SocketAddr> = nodes
        .iter()
        .map(|(&id, n)| (id, n.peers.local_addr()))
        .collect();

    let mut old3 = nodes.remove(&3).unwrap();
    old3.peers.shutdown();
    assert!(!old3.peers.send(1, payload(3, 0)), "send after shutdown");
    assert!(matches!(
        old3.peers.send_wait(1, payload(3, 0)).await,
        Err(PeerError::Closed)
    ));
    until_closed(&mut old3.events).await;
    for id in [1, 2] {
        let ev = next(&mut nodes.get_mut(&id).unwrap().events).await;
        assert_eq!(ev, PeerEvent::Down(3), "node {id}");
    }

    // Frames sent while 3 is down are queued and delivered after the restart.
    assert!(nodes[&1].peers.send(3, payload(1, 0)));
    let (p3, mut ev3) = Peers::start(config(3, &addrs)).await.unwrap();
    assert_eq!(p3.local_addr(), addr3);
    for id in [1, 2] {
        let ev = next(&mut nodes.get_mut(&id).unwrap().events).await;
        assert_eq!(ev, PeerEvent::Up(3), "node {id}");
    }
    assert!(nodes[&1].peers.send(3, payload(1, 1)));
    assert!(nodes[&2].peers.send(3, payload(2, 0)));
    assert!(p3.send(1, payload(3, 7)));
    let mut got = frames(&mut ev3, 3).await;
    got.sort();
    assert_eq!(
        got,
        vec![(1, payload(1, 0)), (1, payload(1, 1)), (2, payload(2, 0))]
    );
    let got = frames(&mut nodes.get_mut(&1).unwrap().events, 1).await;
    assert_eq!(got, vec![(3, payload(3, 7))]);

    p3.shutdown();
    until_closed(&mut ev3).await;
    for node in nodes.values_mut() {
        node.peers.shutdown();
        until_closed(&mut node.events).await;
    }
}

/// Reads until the acceptor closes the connection; true if it did within the wait.
async fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut sink = Vec::new();
    matches!(
        timeout(WAIT, stream.read_to_end(&mut sink)).await,
        Ok(Ok(_)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn garbage_on_the_listener_closes_only_that_connection() {
    // Node 9 is configured but never runs: the tests below impersonate it.
    let mut nodes = cluster(&[1, 2], |cfg| {
        cfg.peers.insert(9, "127.0.0.1:9".parse().unwrap());
        cfg.max_frame = 1024;
    })
    .await;
    await_up(&mut nodes.get_mut(&2).unwrap().events, &[1]).await;
    let addr = nodes[&1].peers.local_addr();

    let mut bad_magic = TcpStream::connect(addr).await.unwrap();
    bad_magic.write_all(b"HTTP/1.1 200\r\n").await.unwrap();
    assert!(closed_by_peer(&mut bad_magic).await);

    let mut bad_version = TcpStream::connect(addr).await.unwrap();
    let mut h = Vec::from(MAGIC);
    h.extend_from_slice(&(VERSION + 1).to_be_bytes());
    h.extend_from_slice(&2u32.to_be_bytes());
    bad_version.write_all(&h).await.unwrap();
    assert!(closed_by_peer(&mut bad_version).await);

    let mut unknown = TcpStream::connect(addr).await.unwrap();
    unknown.write_all(&hello(77)).await.unwrap();
    assert!(closed_by_peer(&mut unknown).await);

    // A valid handshake, one good frame, then a length over max_frame.
    let mut huge = TcpStream::connect(addr).await.unwrap();
    huge.write_all(&hello(9)).await.unwrap();
    let mut ack = [0u8; HELLO_LEN];
    huge.read_exact(&mut ack).await.unwrap();
    assert_eq!(ack, hello(1));
    let mut out = Vec::new();
    frame::put_frame(&mut out, b"ok");
    out.extend_from_slice(&u32::MAX.to_be_bytes());
    out.extend_from_slice(&[0; 64]);
    huge.write_all(&out).await.unwrap();
    assert!(closed_by_peer(&mut huge).await);

    let n1 = nodes.get_mut(&1).unwrap();
    assert_eq!(
        frames(&mut n1.events, 1).await,
        vec![(9, Bytes::from("ok"))]
    );

    // The real peer's link is untouched and frames still flow both ways.
    assert!(nodes[&2].peers.send(1, payload(2, 0)));
    assert!(nodes[&1].peers.send(2, payload(1, 0)));
    let n1 = nodes.get_mut(&1).unwrap();
    assert_eq!(frames(&mut n1.events, 1).await, vec![(2, payload(2, 0))]);
    let n2 = nodes.get_mut(&2).unwrap();
    assert_eq!(frames(&mut n2.events, 1).await, vec![(1, payload(1, 0))]);

    // A frame above max_frame is refused at the sender.
    assert!(!nodes[&2].peers.send(1, Bytes::from(vec![0; 1025])));
    assert!(matches!(
        nodes[&2]
            .peers
            .send_wait(1, Bytes::from(vec![0; 1025]))
            .await,
        Err(PeerError::FrameTooLarge {
            len: 1025,
            max: 1024
        })
    ));
    // Node 2 saw no Down: its link to node 1 never broke.
    assert!(nodes.get_mut(&2).unwrap().events.try_recv().is_err());

    for node in nodes.values_mut() {
        node.peers.shutdown();
        until_closed(&mut node.events).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_frames_arrive_complete_and_in_order() {
    const N: u32 = 100_000;
    let mut nodes = cluster(&[1, 2], |_| {}).await;
    await_up(&mut nodes.get_mut(&1).unwrap().events, &[2]).await;
    let sender = nodes[&1].peers.clone();
    let start = Instant::now();
    tokio::spawn(async move {
        let mut frame = vec![0u8; 100];
        for seq in 0..N {
            frame[4..8].copy_from_slice(&seq.to_be_bytes());
            sender
                .send_wait(2, Bytes::copy_from_slice(&frame))
                .await
                .unwrap();
        }
    });
    let events = &mut nodes.get_mut(&2).unwrap().events;
    let mut expected = 0u32;
    while expected < N {
        match next(events).await {
            PeerEvent::Frame { from, frame } => {
                assert_eq!(from, 1);
                assert_eq!(frame.len(), 100);
                assert_eq!(seq_of(&frame), expected);
                expected += 1;
            }
            PeerEvent::Up(1) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "peer transport: {N} frames of 100 bytes in {secs:.3} s = {:.0} frames/s",
        f64::from(N) / secs
    );
    for node in nodes.values_mut() {
        node.peers.shutdown();
        until_closed(&mut node.events).await;
    }
}

#[test]
fn config_validation() {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let cfg = PeerConfig::new(1, addr, BTreeMap::from([(2, addr)]));
    assert!(cfg.validate().is_ok());
    let mut bad = cfg.clone();
    bad.peers.insert(1, addr);
    assert!(matches!(bad.validate(), Err(PeerError::InvalidConfig(_))));
    let mut bad = cfg.clone();
    bad.queue_frames = 0;
    assert!(matches!(bad.validate(), Err(PeerError::InvalidConfig(_))));
    let mut bad = cfg;
    bad.max_frame = 0;
    assert!(matches!(bad.validate(), Err(PeerError::InvalidConfig(_))));
}
