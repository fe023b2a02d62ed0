//! The listener and the receive-only connections it accepts.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::frame::{hello, missing, parse_hello, split_frame, HELLO_LEN};
use super::outbound::HANDSHAKE_TIMEOUT;
use super::{LinkError, PeerEvent, PeerId};

/// Bytes asked of the socket per read (more when a larger frame is partly buffered).
const READ_CHUNK: usize = 64 << 10;
/// Pause after a failed `accept` (for instance out of file descriptors).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// State shared by the listener and its connections.
pub(super) struct Acceptor {
    pub me: PeerId,
    /// Ids allowed to connect.
    pub known: BTreeSet<PeerId>,
    pub max_frame: usize,
    pub events: mpsc::Sender<PeerEvent>,
    pub cancel: CancellationToken,
    /// The live connection per peer: (connection number, its stop token).
    ///
    /// Invariant: at most one reader per peer delivers frames; a newer connection from the same
    /// peer stops the older one, so frames of one peer never come from two connections at once.
    pub current: Mutex<BTreeMap<PeerId, (u64, CancellationToken)>>,
}

static NEXT_CONN: AtomicU64 = AtomicU64::new(0);

/// Accepts connections until the transport stops or the event receiver is dropped, then closes
/// the listener.
pub(super) async fn run(listener: TcpListener, acceptor: Arc<Acceptor>) {
    loop {
        let accepted = tokio::select! {
            _ = acceptor.cancel.cancelled() => return,
            _ = acceptor.events.closed() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, addr)) => {
                tokio::spawn(connection(stream, addr, acceptor.clone()));
            }
            Err(e) => {
                tracing::warn!(me = acceptor.me, error = %e, "peer accept failed");
                tokio::select! {
                    _ = acceptor.cancel.cancelled() => return,
                    _ = tokio::time::sleep(ACCEPT_RETRY) => {}
                }
            }
        }
    }
}

/// One inbound connection: handshake, then frames until it ends. Errors close it with a log line.
async fn connection(mut stream: TcpStream, addr: SocketAddr, acceptor: Arc<Acceptor>) {
    let me = acceptor.me;
    let from = tokio::select! {
        _ = acceptor.cancel.cancelled() => return,
        r = timeout(HANDSHAKE_TIMEOUT, handshake(&mut stream, &acceptor)) => match r {
            Ok(Ok(from)) => from,
            Ok(Err(e)) => {
                tracing::warn!(me, %addr, error = %e, "peer handshake rejected");
                return;
            }
            Err(_) => {
                tracing::warn!(me, %addr, "peer handshake timed out");
                return;
            }
        },
    };

    let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    let stop = acceptor.cancel.child_token();
    let replaced = lock(&acceptor.current).insert(from, (conn, stop.clone()));
    if let Some((_, old)) = replaced {
        old.cancel();
    }
    tracing::debug!(me, from, %addr, "peer connection accepted");

    let result = read_frames(&mut stream, from, &acceptor, &stop).await;
    {
        let mut current = lock(&acceptor.current);
        if current.get(&from).is_some_and(|(c, _)| *c == conn) {
            current.remove(&from);
        }
    }
    match result {
        Ok(()) | Err(LinkError::Closed) => {
            tracing::debug!(me, from, %addr, "peer connection ended")
        }
        Err(e) => tracing::warn!(me, from, %addr, error = %e, "peer connection closed"),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The map stays consistent even if a holder panicked: every update is a single insert/remove.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads and checks the dialer's handshake, then answers with ours. Returns the dialer's id.
async fn handshake(stream: &mut TcpStream, acceptor: &Acceptor) -> Result<PeerId, LinkError> {
    stream.set_nodelay(true)?;
    let mut h = [0u8; HELLO_LEN];
    stream.read_exact(&mut h).await?;
    let from = parse_hello(&h)?;
    if !acceptor.known.contains(&from) {
        return Err(LinkError::UnknownPeer(from));
    }
    stream.write_all(&hello(acceptor.me)).await?;
    Ok(from)
}

/// Hands every frame out as a slice of the read buffer until the connection ends (`Err(Closed)`
/// at a frame boundary), breaks, or `stop` fires (`Ok`).
async fn read_frames(
    stream: &mut TcpStream,
    from: PeerId,
    acceptor: &Acceptor,
    stop: &CancellationToken,
) -> Result<(), LinkError> {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        while let Some(frame) = split_frame(&mut buf, acceptor.max_frame)? {
            let ev = PeerEvent::Frame { from, frame };
            // A full event channel makes this wait, and the socket is not read meanwhile.
            tokio::select! {
                biased;
                _ = stop.cancelled() => return Ok(()),
                r = acceptor.events.send(ev) => if r.is_err() { return Ok(()) },
            }
        }
        buf.reserve(READ_CHUNK.max(missing(&buf)));
        let n = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            r = stream.read_buf(&mut buf) => r?,
        };
        if n == 0 {
            return Err(if buf.is_empty() {
                LinkError::Closed
            } else {
                LinkError::Truncated
            });
        }
    }
}
