//! Round-trip properties for every record, request and response, and robustness of the decoders
//! on arbitrary and truncated input.

use bytes::BytesMut;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use crate::codes::*;
use crate::frame::{encode_frame, split_frame};
use crate::jute::{decode_record, Decode, Encode};
use crate::message::*;
use crate::records::*;

fn s() -> impl Strategy<Value = String> {
    // ASCII, 2-, 3- and 4-byte UTF-8 sequences.
    "[a-z/._\u{e9}\u{4e2d}\u{1F600}-]{0,8}"
}

fn strings() -> impl Strategy<Value = Vec<String>> {
    vec(s(), 0..4)
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..12)
}

fn data() -> impl Strategy<Value = Option<Vec<u8>>> {
    option::of(bytes())
}

fn id() -> impl Strategy<Value = Id> {
    (s(), s()).prop_map(|(scheme, id)| Id { scheme, id })
}

fn acl() -> impl Strategy<Value = Acl> {
    (any::<i32>(), id()).prop_map(|(perms, id)| Acl { perms, id })
}

fn acls() -> impl Strategy<Value = Vec<Acl>> {
    vec(acl(), 0..3)
}

fn stat() -> impl Strategy<Value = Stat> {
    (
        (any::<i64>(), any::<i64>(), any::<i64>(), any::<i64>()),
        (any::<i32>(), any::<i32>(), any::<i32>()),
        (any::<i64>(), any::<i32>(), any::<i32>(), any::<i64>()),
    )
        .prop_map(
            |((czxid, mzxid, ctime, mtime), (version, cversion, aversion), (eo, dl, nc, pzxid))| {
                Stat {
                    czxid,
                    mzxid,
                    ctime,
                    mtime,
                    version,
                    cversion,
                    aversion,
                    ephemeral_owner: eo,
                    data_length: dl,
                    num_children: nc,
                    pzxid,
                }
            },
        )
}

fn path_watch() -> impl Strategy<Value = PathWatchRequest> {
    (s(), any::<bool>()).prop_map(|(path, watch)| PathWatchRequest { path, watch })
}

fn path() -> impl Strategy<Value = PathRequest> {
    s().prop_map(|path| PathRequest { path })
}

fn create() -> impl Strategy<Value = (OpCode, CreateRequest)> {
    let op = prop::sample::select(vec![
        OpCode::Create,
        OpCode::Create2,
        OpCode::CreateContainer,
        OpCode::CreateTtl,
    ]);
    (op, s(), data(), acls(), any::<i32>(), any::<i64>()).prop_map(
        |(op, path, data, acl, flags, ttl)| {
            let ttl = (op == OpCode::CreateTtl).then_some(ttl);
            (
                op,
                CreateRequest {
                    path,
                    data,
                    acl,
                    flags,
                    ttl,
                },
            )
        },
    )
}

fn delete() -> impl Strategy<Value = DeleteRequest> {
    (s(), any::<i32>()).prop_map(|(path, version)| DeleteRequest { path, version })
}

fn set_data() -> impl Strategy<Value = SetDataRequest> {
    (s(), data(), any::<i32>()).prop_map(|(path, data, version)| SetDataRequest {
        path,
        data,
        version,
    })
}

fn check() -> impl Strategy<Value = CheckVersionRequest> {
    (s(), any::<i32>()).prop_map(|(path, version)| CheckVersionRequest { path, version })
}

fn set_watches(five: bool) -> impl Strategy<Value = SetWatches> {
    (
        any::<i64>(),
        strings(),
        strings(),
        strings(),
        strings(),
        strings(),
    )
        .prop_map(move |(relative_zxid, d, e, c, p, r)| SetWatches {
            relative_zxid,
            data_watches: d,
            exist_watches: e,
            child_watches: c,
            persistent_watches: if five { p } else { Vec::new() },
            persistent_recursive_watches: if five { r } else { Vec::new() },
        })
}

fn multi_ops() -> impl Strategy<Value = Vec<MultiOp>> {
    let op = prop_oneof![
        create().prop_map(|(op, req)| MultiOp::Create { op, req }),
        delete().prop_map(MultiOp::Delete),
        set_data().prop_map(MultiOp::SetData),
        check().prop_map(MultiOp::Check),
        path_watch().prop_map(MultiOp::GetChildren),
        path_watch().prop_map(MultiOp::GetData),
    ];
    vec(op, 0..4)
}

fn request() -> impl Strategy<Value = Request> {
    let watcher_type = prop::sample::select(WatcherType::ALL.to_vec());
    let add_mode = prop::sample::select(AddWatchMode::ALL.to_vec());
    prop_oneof![
        create().prop_map(|(op, req)| Request::Create { op, req }),
        delete().prop_map(Request::Delete),
        path().prop_map(Request::DeleteContainer),
        path_watch().prop_map(Request::Exists),
        path_watch().prop_map(Request::GetData),
        set_data().prop_map(Request::SetData),
        path().prop_map(Request::GetAcl),
        (s(), acls(), any::<i32>())
            .prop_map(|(path, acl, version)| Request::SetAcl(SetAclRequest { path, acl, version })),
        path_watch().prop_map(Request::GetChildren),
        path_watch().prop_map(Request::GetChildren2),
        path().prop_map(Request::Sync),
        Just(Request::Ping),
        check().prop_map(Request::Check),
        multi_ops().prop_map(Request::Multi),
        multi_ops().prop_map(Request::MultiRead),
        (
            option::of(s()),
            option::of(s()),
            option::of(s()),
            any::<i64>()
        )
            .prop_map(|(j, l, n, c)| {
                Request::Reconfig(ReconfigRequest {
                    joining_servers: j,
                    leaving_servers: l,
                    new_members: n,
                    cur_config_id: c,
                })
            }),
        (s(), watcher_type.clone()).prop_map(|(path, watcher_type)| Request::CheckWatches(
            WatchesRequest { path, watcher_type }
        )),
        (s(), watcher_type).prop_map(|(path, watcher_type)| Request::RemoveWatches(
            WatchesRequest { path, watcher_type }
        )),
        (any::<i32>(), s(), bytes()).prop_map(|(auth_type, scheme, auth)| Request::Auth(
            AuthPacket {
                auth_type,
                scheme,
                auth
            }
        )),
        set_watches(false).prop_map(Request::SetWatches),
        set_watches(true).prop_map(Request::SetWatches2),
        bytes().prop_map(|token| Request::Sasl { token }),
        path().prop_map(Request::GetEphemerals),
        path().prop_map(Request::GetAllChildrenNumber),
        (s(), add_mode).prop_map(|(path, mode)| Request::AddWatch(AddWatchRequest { path, mode })),
        Just(Request::WhoAmI),
        Just(Request::CloseSession),
    ]
}

fn multi_results() -> impl Strategy<Value = Vec<MultiResult>> {
    let r = prop_oneof![
        s().prop_map(|path| MultiResult::Create { path }),
        (s(), stat()).prop_map(|(path, stat)| MultiResult::Create2 { path, stat }),
        Just(MultiResult::Delete),
        stat().prop_map(|stat| MultiResult::SetData { stat }),
        Just(MultiResult::Check),
        (data(), stat()).prop_map(|(data, stat)| MultiResult::GetData { data, stat }),
        strings().prop_map(|children| MultiResult::GetChildren { children }),
        any::<i32>().prop_map(|err| MultiResult::Error { err }),
    ];
    vec(r, 0..4)
}

fn watcher_event() -> impl Strategy<Value = WatcherEvent> {
    (any::<i32>(), any::<i32>(), s()).prop_map(|(event_type, state, path)| WatcherEvent {
        event_type,
        state,
        path,
    })
}

fn client_info() -> impl Strategy<Value = ClientInfo> {
    (s(), s()).prop_map(|(auth_scheme, user)| ClientInfo { auth_scheme, user })
}

/// A response and an opcode whose reply decodes to it.
fn response() -> impl Strategy<Value = (OpCode, Response)> {
    prop_oneof![
        Just((OpCode::Delete, Response::Empty)),
        Just((OpCode::SetWatches, Response::Empty)),
        any::<i32>().prop_map(|err| (OpCode::AddWatch, Response::Error { err })),
        s().prop_map(|path| (OpCode::Create, Response::Create { path })),
        (
            prop::sample::select(vec![
                OpCode::Create2,
                OpCode::CreateContainer,
                OpCode::CreateTtl
            ]),
            s(),
            stat()
        )
            .prop_map(|(op, path, stat)| (op, Response::Create2 { path, stat })),
        (
            prop::sample::select(vec![OpCode::Exists, OpCode::SetData, OpCode::SetAcl]),
            stat()
        )
            .prop_map(|(op, st)| (op, Response::Stat(st))),
        (
            prop::sample::select(vec![OpCode::GetData, OpCode::Reconfig]),
            data(),
            stat()
        )
            .prop_map(|(op, data, stat)| (op, Response::GetData { data, stat })),
        (acls(), stat()).prop_map(|(acl, stat)| (OpCode::GetAcl, Response::GetAcl { acl, stat })),
        strings().prop_map(|children| (OpCode::GetChildren, Response::GetChildren { children })),
        (strings(), stat()).prop_map(|(children, stat)| (
            OpCode::GetChildren2,
            Response::GetChildren2 { children, stat }
        )),
        s().prop_map(|path| (OpCode::Sync, Response::Sync { path })),
        (
            prop::sample::select(vec![OpCode::Multi, OpCode::MultiRead]),
            multi_results()
        )
            .prop_map(|(op, r)| (op, Response::Multi(r))),
        strings().prop_map(|ephemerals| (
            OpCode::GetEphemerals,
            Response::GetEphemerals { ephemerals }
        )),
        any::<i32>().prop_map(|total| (
            OpCode::GetAllChildrenNumber,
            Response::GetAllChildrenNumber { total }
        )),
        vec(client_info(), 0..3)
            .prop_map(|client_info| (OpCode::WhoAmI, Response::WhoAmI { client_info })),
        bytes().prop_map(|token| (OpCode::Sasl, Response::Sasl { token })),
        watcher_event().prop_map(|ev| (OpCode::Notification, Response::Notification(ev))),
    ]
}

/// `encode` writes exactly `encoded_len` bytes and `decode_record` reads the value back.
fn round_trip<T: Encode + Decode + PartialEq + std::fmt::Debug>(
    v: &T,
) -> Result<(), TestCaseError> {
    let mut out = BytesMut::new();
    v.encode(&mut out);
    prop_assert_eq!(out.len(), v.encoded_len());
    prop_assert_eq!(&decode_record::<T>(&out)?, v);
    Ok(())
}

proptest! {
    #[test]
    fn records_round_trip(id in id(), acl in acl(), stat in stat(), ev in watcher_event(), ci in client_info(),
                          xid in any::<i32>(), op in any::<i32>(), zxid in any::<i64>(), err in any::<i32>()) {
        round_trip(&id)?;
        round_trip(&acl)?;
        round_trip(&stat)?;
        round_trip(&ev)?;
        round_trip(&ci)?;
        round_trip(&RequestHeader { xid, op })?;
        round_trip(&ReplyHeader { xid, zxid, err })?;
        prop_assert_eq!(stat.encoded_len(), crate::wire::STAT_LEN);
    }

    #[test]
    fn connect_round_trips(pv in any::<i32>(), z in any::<i64>(), t in any::<i32>(), sid in any::<i64>(),
                           pw in bytes(), ro in option::of(any::<bool>())) {
        let req = ConnectRequest { protocol_version: pv, last_zxid_seen: z, timeout: t, session_id: sid, passwd: pw.clone(), read_only: ro };
        let mut out = BytesMut::new();
        req.encode(&mut out);
        prop_assert_eq!(out.len(), req.encoded_len());
        prop_assert_eq!(decode_connect_request(&out)?, req);
        let rsp = ConnectResponse { protocol_version: pv, timeout: t, session_id: sid, passwd: pw, read_only: ro };
        let mut out = BytesMut::new();
        rsp.encode(&mut out);
        prop_assert_eq!(out.len(), rsp.encoded_len());
        prop_assert_eq!(decode_connect_response(&out)?, rsp);
    }

    #[test]
    fn requests_round_trip(xid in any::<i32>(), req in request()) {
        let header = RequestHeader { xid, op: req.op_code().as_i32() };
        let mut out = BytesMut::new();
        encode_request(&header, &req, &mut out);
        prop_assert_eq!(out.len(), 8 + req.encoded_len());
        prop_assert_eq!(decode_request(&out)?, (header, req));
        // Every strict prefix is an error, never a panic or a shorter valid request.
        for n in 0..out.len() {
            prop_assert!(decode_request(&out[..n]).is_err());
        }
    }

    #[test]
    fn replies_round_trip(xid in 0..i32::MAX, zxid in any::<i64>(), (op, rsp) in response()) {
        let xid = if op == OpCode::Notification { xid::NOTIFICATION } else { xid };
        let header = ReplyHeader { xid, zxid, err: 0 };
        let mut out = BytesMut::new();
        encode_reply(&header, Some(&rsp), &mut out);
        prop_assert_eq!(out.len(), 16 + rsp.encoded_len());
        prop_assert_eq!(decode_reply(op, &out)?, (header, Some(rsp)));
        for n in 0..out.len() {
            prop_assert!(decode_reply(op, &out[..n]).is_err());
        }
    }

    #[test]
    fn error_replies_have_no_body(xid in 0..i32::MAX, zxid in any::<i64>(), err in any::<i32>().prop_filter("nonzero", |e| *e != 0),
                                  op in prop::sample::select(OpCode::ALL.to_vec())) {
        let header = ReplyHeader { xid, zxid, err };
        let mut out = BytesMut::new();
        encode_reply(&header, None, &mut out);
        prop_assert_eq!(decode_reply(op, &out)?, (header, None));
    }

    #[test]
    fn notifications_round_trip(ev in watcher_event(), op in prop::sample::select(OpCode::ALL.to_vec())) {
        let mut out = BytesMut::new();
        encode_notification(&ev, &mut out);
        prop_assert_eq!(decode_reply(op, &out)?, (notification_header(), Some(Response::Notification(ev))));
    }

    /// Frames survive any split into reads.
    #[test]
    fn frames_split_at_any_boundary(reqs in vec((any::<i32>(), request()), 1..4), cuts in vec(1usize..64, 0..8)) {
        let mut wire = BytesMut::new();
        let mut bodies = Vec::new();
        for (xid, req) in &reqs {
            let h = RequestHeader { xid: *xid, op: req.op_code().as_i32() };
            encode_frame(&(h, req), &mut wire);
            let mut b = BytesMut::new();
            encode_request(&h, req, &mut b);
            bodies.push(b.freeze());
        }
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut rest = &wire[..];
        let mut cuts = cuts.into_iter();
        while !rest.is_empty() {
            let n = cuts.next().unwrap_or(rest.len()).min(rest.len());
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            while let Some(body) = split_frame(&mut buf, crate::frame::JUTE_MAXBUFFER).unwrap() {
                got.push(body);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, bodies);
    }

    /// Arbitrary bytes give a value or a typed error, never a panic; whatever decodes re-encodes
    /// to a body that decodes to the same value.
    #[test]
    fn arbitrary_bytes_never_panic(body in vec(any::<u8>(), 0..200), op in prop::sample::select(OpCode::ALL.to_vec())) {
        if let Ok((h, req)) = decode_request(&body) {
            let mut out = BytesMut::new();
            encode_request(&h, &req, &mut out);
            prop_assert_eq!(decode_request(&out)?, (h, req));
        }
        if let Ok((h, rsp)) = decode_reply(op, &body) {
            let mut out = BytesMut::new();
            encode_reply(&h, rsp.as_ref(), &mut out);
            prop_assert_eq!(decode_reply(op, &out)?, (h, rsp));
        }
        let _ = decode_connect_request(&body);
        let _ = decode_connect_response(&body);
    }
}
