//! Malformed input gives typed errors, never a panic.

use bytes::{BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};
use volery_protocol::*;

fn be(n: i32) -> [u8; 4] {
    n.to_be_bytes()
}

/// A request body: header (xid 1, `op`) then `rest`.
fn req(op: i32, rest: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&be(1));
    v.extend_from_slice(&be(op));
    v.extend_from_slice(rest);
    v
}

fn ustr(s: &[u8]) -> Vec<u8> {
    let mut v = be(s.len() as i32).to_vec();
    v.extend_from_slice(s);
    v
}

#[test]
fn frame_length_is_checked_before_buffering() {
    let max = 100;
    // One byte over the maximum: rejected from the prefix alone, buffer untouched.
    let mut buf = BytesMut::from(&be(101)[..]);
    assert_eq!(
        split_frame(&mut buf, max),
        Err(FrameError::TooLarge { len: 101, max })
    );
    assert_eq!(buf.len(), 4);
    // Exactly the maximum is fine: waits for the body, then yields it.
    let mut buf = BytesMut::from(&be(100)[..]);
    assert_eq!(split_frame(&mut buf, max), Ok(None));
    assert!(buf.capacity() >= 104, "capacity for the body is reserved");
    buf.put_slice(&[7u8; 99]);
    assert_eq!(split_frame(&mut buf, max), Ok(None));
    buf.put_slice(&[7u8; 2]);
    let body = split_frame(&mut buf, max).unwrap().unwrap();
    assert_eq!(&body[..], &[7u8; 100][..]);
    assert_eq!(&buf[..], &[7u8][..], "the next frame's first byte stays");
    // Negative and absurd prefixes.
    for n in [-1, -2, i32::MIN] {
        let mut buf = BytesMut::from(&be(n)[..]);
        assert_eq!(split_frame(&mut buf, max), Err(FrameError::Negative(n)));
    }
    let mut buf = BytesMut::from(&be(i32::MAX)[..]);
    assert!(matches!(
        split_frame(&mut buf, JUTE_MAXBUFFER),
        Err(FrameError::TooLarge { .. })
    ));
    assert!(
        buf.capacity() < 1 << 20,
        "nothing reserved for an oversize frame"
    );
    // Fewer than 4 bytes: need more.
    let mut buf = BytesMut::from(&[0u8, 0, 0][..]);
    assert_eq!(split_frame(&mut buf, max), Ok(None));
    // An empty frame is a frame; its body then fails to decode as a request.
    let mut buf = BytesMut::from(&be(0)[..]);
    let body = split_frame(&mut buf, max).unwrap().unwrap();
    assert!(body.is_empty());
    assert_eq!(decode_request(&body), Err(DecodeError::Truncated));
}

#[test]
fn default_maximum_is_zookeepers_jute_maxbuffer() {
    assert_eq!(JUTE_MAXBUFFER, 1_048_575);
    let mut buf = BytesMut::from(&be(1_048_576)[..]);
    assert!(matches!(
        FrameCodec::default().decode(&mut buf),
        Err(CodecError::Frame(FrameError::TooLarge { .. }))
    ));
    let mut buf = BytesMut::from(&be(1_048_575)[..]);
    assert!(matches!(FrameCodec::default().decode(&mut buf), Ok(None)));
}

#[test]
fn codec_encoder_writes_a_patched_length_prefix() {
    let mut codec = FrameCodec::default();
    let mut out = BytesMut::new();
    let h = ReplyHeader {
        xid: 3,
        zxid: 9,
        err: 0,
    };
    let rsp = Response::Sync { path: "/a".into() };
    codec.encode((h, Some(&rsp)), &mut out).unwrap();
    codec.encode((h, None::<Response>), &mut out).unwrap();
    let first = codec.decode(&mut out).unwrap().unwrap();
    assert_eq!(first.len(), 16 + 4 + 2);
    assert_eq!(decode_reply(OpCode::Sync, &first).unwrap(), (h, Some(rsp)));
    let second = codec.decode(&mut out).unwrap().unwrap();
    assert_eq!(second.len(), 16);
    assert!(out.is_empty());
}

#[test]
fn truncated_records() {
    // create with only a path
    assert_eq!(
        decode_request(&req(1, &ustr(b"/a"))),
        Err(DecodeError::Truncated)
    );
    // header cut short
    assert_eq!(
        decode_request(&[0, 0, 0, 1, 0, 0]),
        Err(DecodeError::Truncated)
    );
    // a connect request missing its password
    let mut c = Vec::new();
    c.extend_from_slice(&[0u8; 24]);
    assert_eq!(decode_connect_request(&c), Err(DecodeError::Truncated));
    // a string whose length exceeds what is left
    let mut body = be(10).to_vec();
    body.extend_from_slice(b"/abc");
    assert_eq!(
        decode_request(&req(3, &body)),
        Err(DecodeError::BadLength {
            len: 10,
            remaining: 4
        })
    );
    // a multi without its closing header
    let mut multi = Vec::new();
    multi.extend_from_slice(&be(2));
    multi.push(0);
    multi.extend_from_slice(&be(-1));
    multi.extend_from_slice(&ustr(b"/a"));
    multi.extend_from_slice(&be(-1));
    assert_eq!(
        decode_request(&req(14, &multi)),
        Err(DecodeError::Truncated)
    );
    // a reply whose Stat is cut short
    let mut reply = Vec::new();
    reply.extend_from_slice(&be(1));
    reply.extend_from_slice(&0i64.to_be_bytes());
    reply.extend_from_slice(&be(0));
    reply.extend_from_slice(&[0u8; 60]);
    assert_eq!(
        decode_reply(OpCode::Exists, &reply),
        Err(DecodeError::Truncated)
    );
}

#[test]
fn huge_and_negative_lengths_do_not_allocate() {
    for len in [i32::MAX, 0x4000_0000, -2, i32::MIN] {
        let mut body = be(len).to_vec();
        body.push(0);
        let e = decode_request(&req(3, &body)).unwrap_err();
        assert_eq!(e, DecodeError::BadLength { len, remaining: 1 });
    }
    // getChildren reply claiming 2^31-1 children
    let mut reply = Vec::new();
    reply.extend_from_slice(&be(1));
    reply.extend_from_slice(&0i64.to_be_bytes());
    reply.extend_from_slice(&be(0));
    reply.extend_from_slice(&be(i32::MAX));
    reply.extend_from_slice(&[0u8; 8]);
    assert_eq!(
        decode_reply(OpCode::GetChildren, &reply),
        Err(DecodeError::BadLength {
            len: i32::MAX,
            remaining: 8
        })
    );
    // ACL vector with a count that 12-byte minimum entries cannot fit
    let mut create = ustr(b"/a");
    create.extend_from_slice(&be(-1)); // null data
    create.extend_from_slice(&be(2)); // two ACLs...
    create.extend_from_slice(&[0u8; 16]); // ...but room for one
    assert_eq!(
        decode_request(&req(1, &create)),
        Err(DecodeError::BadLength {
            len: 2,
            remaining: 16
        })
    );
    // -1 is null: an empty vector
    let mut create = ustr(b"/a");
    create.extend_from_slice(&be(-1));
    create.extend_from_slice(&be(-1));
    create.extend_from_slice(&be(0));
    let (_, r) = decode_request(&req(1, &create)).unwrap();
    assert!(matches!(r, Request::Create { req, .. } if req.acl.is_empty() && req.data.is_none()));
}

#[test]
fn unknown_opcodes_keep_the_header() {
    for op in [99, 0, -1, -10, 10, 23, 108, i32::MIN] {
        let body = req(op, b"whatever");
        assert_eq!(
            decode_request(&body),
            Err(DecodeError::UnknownOpCode {
                header: RequestHeader { xid: 1, op }
            })
        );
    }
    assert_eq!(
        decode_reply(OpCode::CreateSession, &[0u8; 16]),
        Err(DecodeError::NoReplyFor(-10))
    );
}

#[test]
fn malformed_body_of_a_known_opcode_still_has_a_header() {
    let body = req(4, &ustr(b"/a")); // getData without its watch flag
    let (h, rest) = decode_request_header(&body).unwrap();
    assert_eq!(h, RequestHeader { xid: 1, op: 4 });
    assert_eq!(decode_request_body(h, rest), Err(DecodeError::Truncated));
}

#[test]
fn invalid_utf8_is_rejected() {
    let mut body = ustr(b"/\xff\xfe");
    body.push(0);
    assert_eq!(
        decode_request(&req(4, &body)),
        Err(DecodeError::InvalidUtf8)
    );
    // a lone surrogate encoded as UTF-8 (CESU) is not UTF-8 either
    let mut body = ustr(b"/\xed\xa0\x80");
    body.push(0);
    assert_eq!(
        decode_request(&req(4, &body)),
        Err(DecodeError::InvalidUtf8)
    );
}

#[test]
fn booleans_are_zero_or_one() {
    let mut body = ustr(b"/a");
    body.push(2);
    assert_eq!(
        decode_request(&req(3, &body)),
        Err(DecodeError::InvalidBool(2))
    );
    // readOnly byte of a connect
    let mut c = Vec::new();
    c.extend_from_slice(&[0u8; 24]);
    c.extend_from_slice(&be(0));
    c.push(0xff);
    assert_eq!(
        decode_connect_request(&c),
        Err(DecodeError::InvalidBool(0xff))
    );
    // done flag of a multi header
    let mut multi = be(-1).to_vec();
    multi.push(7);
    multi.extend_from_slice(&be(-1));
    assert_eq!(
        decode_request(&req(14, &multi)),
        Err(DecodeError::InvalidBool(7))
    );
}

#[test]
fn trailing_bytes_are_rejected() {
    let mut body = ustr(b"/a");
    body.extend_from_slice(&[0, 9]);
    assert_eq!(
        decode_request(&req(3, &body)),
        Err(DecodeError::TrailingBytes(1))
    );
    assert_eq!(
        decode_request(&req(11, &[0])),
        Err(DecodeError::TrailingBytes(1))
    );
    // connect: the readOnly byte is optional, a second byte is not
    let mut c = Vec::new();
    c.extend_from_slice(&[0u8; 24]);
    c.extend_from_slice(&be(0));
    assert_eq!(decode_connect_request(&c).unwrap().read_only, None);
    c.push(1);
    assert_eq!(decode_connect_request(&c).unwrap().read_only, Some(true));
    c.push(0);
    assert_eq!(
        decode_connect_request(&c),
        Err(DecodeError::TrailingBytes(1))
    );
    // an error reply carries no body
    let mut reply = be(1).to_vec();
    reply.extend_from_slice(&0i64.to_be_bytes());
    reply.extend_from_slice(&be(-101));
    reply.push(0);
    assert_eq!(
        decode_reply(OpCode::GetData, &reply),
        Err(DecodeError::TrailingBytes(1))
    );
}

#[test]
fn invalid_enumerations_and_multi_ops() {
    let mut body = ustr(b"/a");
    body.extend_from_slice(&be(9));
    assert_eq!(
        decode_request(&req(18, &body)),
        Err(DecodeError::InvalidValue {
            field: "watcher type",
            value: 9
        })
    );
    let mut body = ustr(b"/a");
    body.extend_from_slice(&be(2));
    assert_eq!(
        decode_request(&req(106, &body)),
        Err(DecodeError::InvalidValue {
            field: "addWatch mode",
            value: 2
        })
    );
    // exists (3) cannot appear inside a multi
    let mut multi = be(3).to_vec();
    multi.push(0);
    multi.extend_from_slice(&be(-1));
    assert_eq!(
        decode_request(&req(14, &multi)),
        Err(DecodeError::InvalidMultiOp(3))
    );
}

#[test]
fn a_null_path_is_malformed_but_an_empty_one_is_a_path() {
    // getData with a null path (length -1), as kazoo sends "": ZooKeeper answers MarshallingError.
    let mut null = be(-1).to_vec();
    null.push(0);
    assert_eq!(decode_request(&req(4, &null)), Err(DecodeError::NullPath));
    let mut empty = ustr(b"");
    empty.push(0);
    let (_, r) = decode_request(&req(4, &empty)).expect("empty path decodes");
    assert_eq!(
        r,
        Request::GetData(PathWatchRequest {
            path: String::new(),
            watch: false
        })
    );
}

#[test]
fn add_watch_with_a_null_path_is_a_request_not_an_error() {
    // ZooKeeper 3.8.0 answers addWatch(null) with OK (found by the differential run).
    let mut body = be(-1).to_vec();
    body.extend_from_slice(&be(0));
    let (_, r) = decode_request(&req(106, &body)).expect("null addWatch path decodes");
    assert_eq!(
        r,
        Request::AddWatch(AddWatchRequest {
            path: String::new(),
            mode: AddWatchMode::Persistent
        })
    );
}
