//! The send-only link to one peer: dial, handshake, then write queued frames in batches.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;

use super::frame::{hello, parse_hello, put_frame, HELLO_LEN};
use super::{LinkError, PeerEvent, PeerId};

/// First redial delay after a failure.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest redial delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// A link that stayed up this long resets the backoff when it breaks.
const STABLE_LINK: Duration = Duration::from_secs(1);
/// Time allowed to connect and exchange handshakes.
pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// A write batch stops taking queued frames once it holds this many bytes.
const BATCH_BYTES: usize = 1 << 20;
/// A write buffer that grew beyond this (for a large frame) is released after the write.
const KEEP_BUFFER: usize = 4 << 20;

/// Owns the queue of frames for `peer` and the connection that carries them.
///
/// Invariant: `Up` and `Down` alternate on `status`, starting with `Up`; each `Down` follows the
/// end of the link its `Up` announced.
pub(super) struct Dialer {
    pub me: PeerId,
    pub peer: PeerId,
    pub addr: SocketAddr,
    pub queue: mpsc::Receiver<Bytes>,
    pub status: mpsc::UnboundedSender<PeerEvent>,
    /// True between `Up` and `Down`.
    pub connected: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub cancel: CancellationToken,
}

/// Why a link stopped without breaking.
struct Stop;

impl Dialer {
    pub async fn run(mut self) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let dialed = tokio::select! {
                _ = self.cancel.cancelled() => return,
                r = dial(self.addr, self.me, self.peer) => r,
            };
            match dialed {
                Ok(stream) => {
                    let up_at = Instant::now();
                    tracing::info!(me = self.me, peer = self.peer, addr = %self.addr, "peer link up");
                    self.connected
                        .store(true, std::sync::atomic::Ordering::Release);
                    let _ = self.status.send(PeerEvent::Up(self.peer));
                    match self.pump(stream).await {
                        Ok(Stop) => return,
                        Err(e) => {
                            tracing::warn!(me = self.me, peer = self.peer, error = %e, "peer link down")
                        }
                    }
                    self.connected
                        .store(false, std::sync::atomic::Ordering::Release);
                    let _ = self.status.send(PeerEvent::Down(self.peer));
                    if up_at.elapsed() >= STABLE_LINK {
                        backoff = MIN_BACKOFF;
                    }
                }
                Err(e) => {
                    tracing::debug!(me = self.me, peer = self.peer, addr = %self.addr, error = %e, "dial failed")
                }
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Writes queued frames until the link breaks (`Err`) or the transport stops (`Ok`).
    ///
    /// Every wake-up drains the queue into one buffer (up to [`BATCH_BYTES`]) written with one
    /// `write_all`. The peer never writes on this connection after its handshake, so a read that
    /// completes means it closed the connection: that is how a dead peer is noticed while there
    /// is nothing to send.
    async fn pump(&mut self, mut stream: TcpStream) -> Result<Stop, LinkError> {
        let (mut rd, mut wr) = stream.split();
        let mut out = Vec::new();
        let mut probe = [0u8; 1];
        loop {
            let first = tokio::select! {
                _ = self.cancel.cancelled() => return Ok(Stop),
                f = self.queue.recv() => match f { Some(f) => f, None => return Ok(Stop) },
                r = rd.read(&mut probe) => return Err(match r {
                    Ok(0) => LinkError::Closed,
                    Ok(_) => LinkError::UnexpectedData,
                    Err(e) => LinkError::Io(e),
                }),
            };
            out.clear();
            put_frame(&mut out, &first);
            drop(first);
            while out.len() < BATCH_BYTES {
                match self.queue.try_recv() {
                    Ok(f) => put_frame(&mut out, &f),
                    Err(_) => break,
                }
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return Ok(Stop),
                r = wr.write_all(&out) => r?,
            }
            if out.capacity() > KEEP_BUFFER {
                out = Vec::new();
            }
        }
    }
}

/// Connects to `addr` and exchanges handshakes; the acceptor must answer as `expect`.
async fn dial(addr: SocketAddr, me: PeerId, expect: PeerId) -> Result<TcpStream, LinkError> {
    let handshake = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        stream.write_all(&hello(me)).await?;
        let mut h = [0u8; HELLO_LEN];
        stream.read_exact(&mut h).await?;
        let got = parse_hello(&h)?;
        if got != expect {
            return Err(LinkError::WrongPeer {
                expected: expect,
                got,
            });
        }
        Ok(stream)
    };
    timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| LinkError::HandshakeTimeout)?
}
