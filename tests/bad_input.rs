//! Bad input on the wire: oversized, negative and truncated frames, garbage instead of a
//! ConnectRequest, unknown opcodes, malformed bodies and null paths. Each closes at most the
//! offending connection: a bystander session on the same server, with requests in flight while the
//! bad input arrives, keeps working and loses nothing it wrote.

mod common;

use std::time::Duration;

use common::raw::{self, err, op, Frame, Jute, RawConn, Reader};
use common::{bounded, unique_path, Options, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// ZooKeeper's default jute.maxbuffer.
const JUTE_MAXBUFFER: i32 = 0xfffff;
/// How long the server may take to close a connection it rejects.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// A session writing on the same server as the misbehaving connections.
///
/// Invariant: `acked` holds every create whose OK reply arrived; `in_flight` the creates sent whose
/// replies have not been read yet, in xid order.
struct Bystander {
    conn: RawConn,
    base: String,
    next: usize,
    acked: Vec<(String, Vec<u8>)>,
    in_flight: Vec<(i32, String, Vec<u8>)>,
}

impl Bystander {
    async fn start(server: &Server) -> Bystander {
        let mut conn = RawConn::connect(&server.addr(), 30_000).await;
        let base = unique_path("bystander");
        let reply = conn
            .request(op::CREATE, &raw::create_body(&base, b"", 0))
            .await;
        assert_eq!(reply.err, err::OK, "bystander creates {base}");
        Bystander {
            conn,
            base,
            next: 0,
            acked: Vec::new(),
            in_flight: Vec::new(),
        }
    }

    /// Sends `n` creates without waiting for their replies.
    async fn send_burst(&mut self, n: usize) {
        for _ in 0..n {
            let path = format!("{}/n{}", self.base, self.next);
            let data = format!("bystander write {}", self.next).into_bytes();
            self.next += 1;
            let xid = self
                .conn
                .send(op::CREATE, &raw::create_body(&path, &data, 0))
                .await;
            self.in_flight.push((xid, path, data));
        }
    }

    /// Reads the burst's replies (all OK, in xid order), writes once more, then reads back every
    /// acknowledged write.
    async fn check(&mut self) {
        self.send_burst(1).await;
        for (xid, path, data) in std::mem::take(&mut self.in_flight) {
            match self.conn.next_frame(Duration::from_secs(15)).await {
                Some(Frame::Reply(r)) => {
                    assert_eq!(r.xid, xid, "bystander replies in xid order");
                    assert_eq!(r.err, err::OK, "bystander create {path}");
                    self.acked.push((path, data));
                }
                other => panic!("bystander expected the reply to xid {xid}, got {other:?}"),
            }
        }
        for (path, data) in &self.acked {
            let reply = self
                .conn
                .request(op::GET_DATA, &raw::path_watch_body(path, false))
                .await;
            assert_eq!(reply.err, err::OK, "bystander's {path} is still there");
            assert_eq!(
                Reader::new(&reply.body).buffer().as_deref(),
                Some(data.as_slice()),
                "data of {path}"
            );
        }
    }
}

/// The next thing on `conn` is the server closing it: no reply, no event.
async fn assert_closed_silently(conn: &mut RawConn, what: &str) {
    match conn.next_frame(CLOSE_WAIT).await {
        Some(Frame::Closed) => {}
        None => panic!("{what}: the server did not close the connection"),
        Some(other) => panic!("{what}: expected the connection closed, got {other:?}"),
    }
}

/// Whether a resume of `conn`'s session is accepted, i.e. the session outlived its connection.
async fn session_lives(server: &Server, conn: &RawConn) -> bool {
    let resumed = RawConn::resume(&server.addr(), 30_000, conn.session_id, &conn.password).await;
    let alive = resumed.session_id == conn.session_id;
    if alive {
        resumed.close_session().await;
    }
    alive
}

/// A request frame body: header then `body`.
fn request_frame(xid: i32, op: i32, body: &[u8]) -> Vec<u8> {
    let mut j = Jute::new();
    j.i32(xid).i32(op);
    j.0.extend_from_slice(body);
    let mut frame = (j.0.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&j.0);
    frame
}

#[tokio::test]
async fn oversized_length_prefix_closes_only_that_connection() {
    bounded(async {
        let server = Server::start().await;
        let mut bystander = Bystander::start(&server).await;
        bystander.send_burst(10).await;
        bystander.check().await;

        for len in [JUTE_MAXBUFFER + 1, 64 << 20, i32::MAX] {
            let mut bad = RawConn::connect(&server.addr(), 30_000).await;
            bystander.send_burst(20).await;
            // Only the prefix: the server must not wait for a body it will never accept.
            bad.write_raw(&len.to_be_bytes()).await;
            assert_closed_silently(&mut bad, &format!("length prefix {len}")).await;
            bystander.check().await;
            assert!(
                session_lives(&server, &bad).await,
                "closing the connection does not end its session"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn lowered_max_buffer_refuses_a_large_set_data() {
    bounded(async {
        let server = Server::start_with(Options {
            max_buffer: Some(4096),
            ..Options::default()
        })
        .await;
        let mut bystander = Bystander::start(&server).await;
        let mut conn = RawConn::connect(&server.addr(), 30_000).await;
        let path = unique_path("maxbuf");
        let reply = conn
            .request(op::CREATE, &raw::create_body(&path, b"small", 0))
            .await;
        assert_eq!(reply.err, err::OK);
        let fits = vec![b'a'; 2048];
        let reply = conn
            .request(op::SET_DATA, &raw::set_data_body(&path, &fits, -1))
            .await;
        assert_eq!(reply.err, err::OK, "a 2 KB setData fits in 4 KB frames");

        // A frame of exactly the limit is accepted.
        let at_limit = |extra: usize| {
            let overhead = raw::set_data_body(&path, b"", -1).len() + 8;
            vec![b'c'; 4096 - overhead + extra]
        };
        let exact = at_limit(0);
        let reply = conn
            .request(op::SET_DATA, &raw::set_data_body(&path, &exact, -1))
            .await;
        assert_eq!(reply.err, err::OK, "a frame of exactly max buffer bytes");
        let reply = conn
            .request(op::SET_DATA, &raw::set_data_body(&path, &fits, -1))
            .await;
        assert_eq!(reply.err, err::OK);

        bystander.send_burst(20).await;
        let too_big = vec![b'b'; 10 * 1024];
        conn.send(op::SET_DATA, &raw::set_data_body(&path, &too_big, -1))
            .await;
        assert_closed_silently(&mut conn, "10 KB setData with a 4 KB max buffer").await;
        bystander.check().await;

        let reply = bystander
            .conn
            .request(op::GET_DATA, &raw::path_watch_body(&path, false))
            .await;
        assert_eq!(reply.err, err::OK);
        let mut r = Reader::new(&reply.body);
        assert_eq!(
            r.buffer(),
            Some(fits),
            "the refused setData was not applied"
        );
        assert_eq!(r.stat().version, 3);

        // One byte over the limit closes the connection too.
        let mut conn = RawConn::connect(&server.addr(), 30_000).await;
        conn.send(op::SET_DATA, &raw::set_data_body(&path, &at_limit(1), -1))
            .await;
        assert_closed_silently(&mut conn, "a frame one byte over max buffer").await;
        bystander.check().await;
    })
    .await;
}

#[tokio::test]
async fn negative_length_prefix_closes_the_connection() {
    bounded(async {
        let server = Server::start().await;
        let mut bystander = Bystander::start(&server).await;
        for len in [-1i32, -4, i32::MIN] {
            let mut bad = RawConn::connect(&server.addr(), 30_000).await;
            bystander.send_burst(20).await;
            bad.write_raw(&len.to_be_bytes()).await;
            assert_closed_silently(&mut bad, &format!("length prefix {len}")).await;
            bystander.check().await;
        }
    })
    .await;
}

/// A complete request, then part of another, then the client half-closes: the complete one is
/// applied, the partial one is not, and the server closes the connection.
#[tokio::test]
async fn truncated_frame_then_close() {
    bounded(async {
        let server = Server::start().await;
        let mut bystander = Bystander::start(&server).await;
        let mut conn = RawConn::connect(&server.addr(), 30_000).await;
        let whole = unique_path("whole");
        let partial = unique_path("partial");
        let mut bytes = request_frame(1, op::CREATE, &raw::create_body(&whole, b"w", 0));
        let cut = request_frame(2, op::CREATE, &raw::create_body(&partial, b"p", 0));
        bytes.extend_from_slice(&cut[..cut.len() - 7]);
        bystander.send_burst(20).await;
        conn.write_raw(&bytes).await;
        conn.shutdown_write().await;
        let mut replies = Vec::new();
        loop {
            match conn.next_frame(CLOSE_WAIT).await {
                Some(Frame::Closed) => break,
                Some(Frame::Reply(r)) => replies.push((r.xid, r.err)),
                other => panic!("expected the connection to close, got {other:?}"),
            }
        }
        assert!(
            replies.iter().all(|&r| r == (1, err::OK)),
            "at most the complete request is answered: {replies:?}"
        );
        bystander.check().await;
        let reply = bystander
            .conn
            .request(op::EXISTS, &raw::path_watch_body(&whole, false))
            .await;
        assert_eq!(reply.err, err::OK, "the complete request was applied");
        let reply = bystander
            .conn
            .request(op::EXISTS, &raw::path_watch_body(&partial, false))
            .await;
        assert_eq!(reply.err, err::NO_NODE, "the partial request was not");
    })
    .await;
}

/// Reads from a raw socket until the server closes it; returns what arrived.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(CLOSE_WAIT, async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server did not close the connection");
    got
}

/// A first frame that is not a ConnectRequest (too short, a request header, a negative or
/// oversized length) gets no answer and no session: the connection is closed.
#[tokio::test]
async fn garbage_first_frame_closes_the_connection() {
    bounded(async {
        let server = Server::start().await;
        let mut bystander = Bystander::start(&server).await;
        let mut short = 7i32.to_be_bytes().to_vec();
        short.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3]);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("a 7-byte body", short),
            ("a negative length", (-5i32).to_be_bytes().to_vec()),
            ("an oversized length", (2i32 << 20).to_be_bytes().to_vec()),
        ];
        for (what, bytes) in cases {
            bystander.send_burst(20).await;
            let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
            stream.write_all(&bytes).await.expect("write");
            let got = read_until_closed(&mut stream).await;
            assert!(got.is_empty(), "{what}: no reply expected, got {got:?}");
            bystander.check().await;
        }
    })
    .await;
}

/// An unknown opcode is answered with Unimplemented under its xid and the connection is closed;
/// the session itself lives on.
#[tokio::test]
async fn unknown_opcode_is_unimplemented_and_closes_the_connection() {
    bounded(async {
        let server = Server::start().await;
        let mut bystander = Bystander::start(&server).await;
        for opcode in [999, 0, 50] {
            let mut conn = RawConn::connect(&server.addr(), 30_000).await;
            let eph = unique_path("unknown-op");
            let reply = conn
                .request(op::CREATE, &raw::create_body(&eph, b"", 1))
                .await;
            assert_eq!(reply.err, err::OK);
            bystander.send_burst(20).await;
            let xid = conn.send(opcode, &raw::path_body("/")).await;
            match conn.next_frame(CLOSE_WAIT).await {
                Some(Frame::Reply(r)) => {
                    assert_eq!((r.xid, r.err), (xid, err::UNIMPLEMENTED), "opcode {opcode}")
                }
                other => panic!("opcode {opcode}: expected Unimplemented, got {other:?}"),
            }
            assert_closed_silently(&mut conn, &format!("after opcode {opcode}")).await;
            bystander.check().await;
            let reply = bystander
                .conn
                .request(op::EXISTS, &raw::path_watch_body(&eph, false))
                .await;
            assert_eq!(reply.err, err::OK, "the session's ephemeral stays");
            assert!(session_lives(&server, &conn).await, "opcode {opcode}");
        }
    })
    .await;
}

/// Malformed bodies of known opcodes, pipelined between good requests: each is answered with
/// MarshallingError in its place, nothing is applied, and the session stays usable.
#[tokio::test]
async fn malformed_bodies_are_marshalling_errors_in_xid_order() {
    bounded(async {
        let server = Server::start().await;
        let mut bystander = Bystander::start(&server).await;
        let mut conn = RawConn::connect(&server.addr(), 30_000).await;
        let good = unique_path("malformed-good");
        let bad = unique_path("malformed-bad");

        // A string whose length runs past the end of the body.
        let mut overrun = Jute::new();
        overrun.i32(50).bool(false);
        overrun.0.extend_from_slice(b"/ab");
        // A create cut after its data: no ACL, no flags.
        let mut cut_create = Jute::new();
        cut_create.string(&bad).buffer(b"x");
        // A setData whose data length is negative but not -1 (null).
        let mut negative = Jute::new();
        negative.string(&good).i32(-2).i32(-1);
        // A string length beyond jute.maxbuffer.
        let mut huge = Jute::new();
        huge.i32(JUTE_MAXBUFFER + 10).bool(false);

        let script: Vec<(i32, Vec<u8>, i32)> = vec![
            (op::CREATE, raw::create_body(&good, b"g", 0), err::OK),
            (op::GET_DATA, overrun.0, err::MARSHALLING_ERROR),
            (op::GET_DATA, raw::path_watch_body(&good, false), err::OK),
            (op::CREATE, cut_create.0, err::MARSHALLING_ERROR),
            (op::SET_DATA, negative.0, err::MARSHALLING_ERROR),
            (op::EXISTS, huge.0, err::MARSHALLING_ERROR),
            (op::GET_DATA, Vec::new(), err::MARSHALLING_ERROR),
            (op::SET_DATA, raw::set_data_body(&good, b"g2", 0), err::OK),
            (op::EXISTS, raw::path_watch_body(&bad, false), err::NO_NODE),
        ];
        bystander.send_burst(20).await;
        let mut expected = Vec::new();
        for (opcode, body, want) in &script {
            let xid = conn.send(*opcode, body).await;
            expected.push((xid, *opcode, *want));
        }
        for (xid, opcode, want) in expected {
            match conn.next_frame(Duration::from_secs(15)).await {
                Some(Frame::Reply(r)) => {
                    assert_eq!((r.xid, r.err), (xid, want), "reply to op {opcode}")
                }
                other => panic!("expected the reply to xid {xid} (op {opcode}), got {other:?}"),
            }
        }
        bystander.check().await;
        let reply = conn
            .request(op::GET_DATA, &raw::path_watch_body(&good, false))
            .await;
        assert_eq!(reply.err, err::OK, "the session is still usable");
        let mut r = Reader::new(&reply.body);
        assert_eq!(r.buffer().as_deref(), Some(&b"g2"[..]));
        assert_eq!(r.stat().version, 1);
        conn.close_session().await;
    })
    .await;
}

/// A null path (string length -1) in getData is a MarshallingError; in one op of a multi it fails
/// the whole multi with MarshallingError and applies none of it.
#[tokio::test]
async fn null_paths_are_marshalling_errors() {
    bounded(async {
        let server = Server::start().await;
        let mut conn = RawConn::connect(&server.addr(), 30_000).await;
        let mut null_get = Jute::new();
        null_get.i32(-1).bool(false);
        let reply = conn.request(op::GET_DATA, &null_get.0).await;
        assert_eq!(reply.err, err::MARSHALLING_ERROR, "getData(null)");

        let first = unique_path("null-multi");
        let mut null_create = Jute::new();
        null_create.i32(-1).buffer(b"").acls(raw::OPEN_ACL).i32(0);
        let body = raw::multi_body(&[
            (op::CREATE, raw::create_body(&first, b"", 0)),
            (op::CREATE, null_create.0),
        ]);
        let reply = conn.request(op::MULTI, &body).await;
        assert_eq!(reply.err, err::MARSHALLING_ERROR, "multi with a null path");
        let reply = conn
            .request(op::EXISTS, &raw::path_watch_body(&first, false))
            .await;
        assert_eq!(reply.err, err::NO_NODE, "no op of the failed multi applied");

        let reply = conn
            .request(op::CREATE, &raw::create_body(&first, b"", 0))
            .await;
        assert_eq!(reply.err, err::OK, "the session is still usable");
        conn.close_session().await;
    })
    .await;
}

/// ZooKeeper's jute deserializers read a record and ignore whatever follows it in the frame, in a
/// ConnectRequest as in a request body.
#[tokio::test]
async fn bytes_after_a_record_are_ignored() {
    bounded(async {
        let server = Server::start().await;
        let mut connect = Jute::new();
        connect
            .i32(0)
            .i64(0)
            .i32(30_000)
            .i64(0)
            .buffer(&[0; 16])
            .bool(false);
        connect.0.extend_from_slice(&[9, 9, 9, 9, 9]);
        let mut frame = (connect.0.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&connect.0);
        let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
        stream.write_all(&frame).await.expect("write");
        let mut len = [0u8; 4];
        tokio::time::timeout(CLOSE_WAIT, stream.read_exact(&mut len))
            .await
            .expect("connect response in time")
            .expect("a ConnectResponse, not a closed connection");
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        stream.read_exact(&mut body).await.expect("response body");
        let mut r = Reader::new(&body);
        let (_version, timeout, session) = (r.i32(), r.i32(), r.i64());
        assert_eq!(timeout, 30_000);
        assert_ne!(session, 0, "the session is established");
        drop(stream);

        let mut conn = RawConn::connect(&server.addr(), 30_000).await;
        let path = unique_path("trailing");
        let mut create = raw::create_body(&path, b"t", 0);
        create.extend_from_slice(&[1, 2, 3]);
        let reply = conn.request(op::CREATE, &create).await;
        assert_eq!(reply.err, err::OK, "create with trailing bytes");
        let mut get = raw::path_watch_body(&path, false);
        get.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let reply = conn.request(op::GET_DATA, &get).await;
        assert_eq!(reply.err, err::OK, "getData with trailing bytes");
        assert_eq!(
            Reader::new(&reply.body).buffer().as_deref(),
            Some(&b"t"[..])
        );
        let mut multi = raw::multi_body(&[(op::CHECK, raw::path_version_body(&path, 0))]);
        multi.extend_from_slice(&[7; 11]);
        let reply = conn.request(op::MULTI, &multi).await;
        assert_eq!(reply.err, err::OK, "multi with bytes after its terminator");
        assert_eq!(raw::parse_multi(&reply.body), vec![raw::MultiResult::Check]);
        conn.close_session().await;
    })
    .await;
}
