//! Golden tests: frames captured from real Apache ZooKeeper 3.8.0 exchanges (see
//! `tests/fixtures/README.md`) must decode, and re-encode to the very same bytes.

use std::collections::HashMap;
use std::path::PathBuf;

use bytes::BytesMut;
use volery_protocol::*;

/// One captured frame body and its direction.
struct Frame {
    to_server: bool,
    body: Vec<u8>,
}

/// `tests/fixtures` of this crate: from the directory cargo runs the test in, so a test binary
/// built in another checkout (a shared build cache) still finds this checkout's fixtures.
fn fixtures_dir() -> PathBuf {
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    crate_dir.join("tests/fixtures")
}

fn load(name: &str) -> Vec<Frame> {
    let path = fixtures_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (dir, hex) = l.split_once(' ').expect("'<dir> <hex>'");
            let body = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect();
            Frame {
                to_server: match dir {
                    "c2s" => true,
                    "s2c" => false,
                    d => panic!("bad direction {d}"),
                },
                body,
            }
        })
        .collect()
}

/// Everything decoded from one connection, in capture order.
#[derive(Default)]
struct Session {
    connect: Option<ConnectRequest>,
    connected: Option<ConnectResponse>,
    requests: Vec<(RequestHeader, Result<Request, DecodeError>)>,
    replies: Vec<(ReplyHeader, Option<Response>)>,
}

/// Decodes a capture like a server (client frames) and a client (server frames), pairing replies
/// with requests by xid, and checks that every frame re-encodes byte for byte.
fn replay(name: &str) -> Session {
    let mut s = Session::default();
    let mut pending: HashMap<i32, OpCode> = HashMap::new();
    for (n, f) in load(name).into_iter().enumerate() {
        let at = format!("{name} frame {n}");
        let mut out = BytesMut::new();
        if f.to_server && s.connect.is_none() {
            let c = decode_connect_request(&f.body).unwrap_or_else(|e| panic!("{at}: {e}"));
            c.encode(&mut out);
            s.connect = Some(c);
        } else if !f.to_server && s.connected.is_none() {
            let c = decode_connect_response(&f.body).unwrap_or_else(|e| panic!("{at}: {e}"));
            c.encode(&mut out);
            s.connected = Some(c);
        } else if f.to_server {
            match decode_request(&f.body) {
                Ok((h, req)) => {
                    encode_request(&h, &req, &mut out);
                    pending.insert(h.xid, req.op_code());
                    s.requests.push((h, Ok(req)));
                }
                Err(DecodeError::UnknownOpCode { header }) => {
                    pending.insert(header.xid, OpCode::Error);
                    s.requests
                        .push((header, Err(DecodeError::UnknownOpCode { header })));
                    continue;
                }
                Err(e) => panic!("{at}: {e}"),
            }
        } else {
            let (h, _) = decode_reply_header(&f.body).unwrap_or_else(|e| panic!("{at}: {e}"));
            let op = if h.xid == xid::NOTIFICATION {
                OpCode::Notification
            } else {
                pending
                    .remove(&h.xid)
                    .unwrap_or_else(|| panic!("{at}: reply to unknown xid {}", h.xid))
            };
            let (h, rsp) = decode_reply(op, &f.body).unwrap_or_else(|e| panic!("{at}: {e}"));
            encode_reply(&h, rsp.as_ref(), &mut out);
            s.replies.push((h, rsp));
        }
        assert_eq!(&out[..], &f.body[..], "{at}: re-encoding differs");
    }
    assert!(
        s.connect.is_some() && s.connected.is_some(),
        "{name}: no connect"
    );
    s
}

fn fixtures() -> Vec<String> {
    let dir = fixtures_dir();
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".hex"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_fixture_round_trips_byte_for_byte() {
    let names = fixtures();
    assert!(names.len() >= 15, "fixtures missing: {names:?}");
    for name in names {
        replay(&name);
    }
}

fn opcodes(s: &Session) -> Vec<OpCode> {
    s.requests
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok().map(Request::op_code))
        .collect()
}

#[test]
fn java_client_connects_with_read_only_and_old_client_without() {
    let java = replay("zkcli-session.hex");
    assert_eq!(java.connect.as_ref().unwrap().read_only, Some(false));
    assert_eq!(java.connected.as_ref().unwrap().read_only, Some(false));
    let c = replay("cli_mt-create.hex");
    assert_eq!(c.connect.as_ref().unwrap().read_only, Some(false));

    // Crafted: a ConnectRequest without the readOnly byte. ZooKeeper answers without it too.
    let old = replay("crafted-old-client.hex");
    let req = old.connect.unwrap();
    assert_eq!(
        (req.read_only, req.passwd.len(), req.timeout),
        (None, 16, 10000)
    );
    let rsp = old.connected.unwrap();
    assert_eq!(rsp.read_only, None);
    assert_eq!(rsp.passwd.len(), 16);
    assert_ne!(rsp.session_id, 0);
    // Ping: xid -2 both ways; an unknown opcode is answered Unimplemented with zxid -1.
    assert_eq!(
        old.requests[0].0,
        RequestHeader {
            xid: xid::PING,
            op: 11
        }
    );
    assert_eq!(old.replies[0].0.xid, xid::PING);
    assert_eq!(old.requests[1].0.op, 99);
    let unimpl = old.replies[1].0;
    assert_eq!(
        (unimpl.xid, unimpl.zxid, unimpl.err),
        (5, -1, ErrorCode::Unimplemented.as_i32())
    );
    assert_eq!(old.replies[1].1, None);
}

#[test]
fn zkcli_session_covers_create_with_acl_errors_and_watches() {
    let s = replay("zkcli-session.hex");
    let creates: Vec<&CreateRequest> = s
        .requests
        .iter()
        .filter_map(|(_, r)| match r {
            Ok(Request::Create { req, .. }) => Some(req),
            _ => None,
        })
        .collect();
    let acl = creates
        .iter()
        .find(|c| c.path == "/acl")
        .expect("create /acl");
    assert_eq!(
        acl.acl,
        vec![
            Acl {
                perms: perms::ALL,
                id: Id {
                    scheme: "ip".into(),
                    id: "127.0.0.1".into()
                }
            },
            Acl {
                perms: perms::READ,
                id: Id {
                    scheme: "world".into(),
                    id: "anyone".into()
                }
            },
        ]
    );
    // zkCli's `create /nodata` sends a null buffer, not an empty one.
    assert_eq!(
        creates.iter().find(|c| c.path == "/nodata").unwrap().data,
        None
    );
    let ttl = creates.iter().find(|c| c.path == "/ttl").unwrap();
    assert_eq!(ttl.ttl, Some(60000));
    let ops = opcodes(&s);
    for op in [
        OpCode::Create,
        OpCode::CreateContainer,
        OpCode::CreateTtl,
        OpCode::GetData,
        OpCode::SetData,
        OpCode::Exists,
        OpCode::GetChildren2,
        OpCode::GetAcl,
        OpCode::SetAcl,
        OpCode::Delete,
        OpCode::Sync,
        OpCode::GetEphemerals,
        OpCode::GetAllChildrenNumber,
        OpCode::AddWatch,
        OpCode::RemoveWatches,
        OpCode::WhoAmI,
        OpCode::Auth,
        OpCode::CloseSession,
    ] {
        assert!(ops.contains(&op), "zkCli session lacks {op:?}: {ops:?}");
    }
    let errs: Vec<i32> = s.replies.iter().map(|(h, _)| h.err).collect();
    for e in [ErrorCode::NodeExists, ErrorCode::NoNode] {
        assert!(errs.contains(&e.as_i32()), "no {e:?} reply: {errs:?}");
    }
    // Every error reply is a bare header.
    assert!(s.replies.iter().all(|(h, r)| h.err == 0 || r.is_none()));
    let events: Vec<&WatcherEvent> = s
        .replies
        .iter()
        .filter_map(|(h, r)| match r {
            Some(Response::Notification(ev)) => {
                assert_eq!((h.zxid, h.err), (NOTIFICATION_ZXID, 0));
                Some(ev)
            }
            _ => None,
        })
        .collect();
    assert!(events
        .iter()
        .any(|e| e.event_type == EventType::NodeDataChanged.as_i32()
            && e.path == "/g"
            && e.state == KeeperState::SyncConnected.as_i32()));
    let who = s.replies.iter().filter_map(|(_, r)| match r {
        Some(Response::WhoAmI { client_info }) => Some(client_info.len()),
        _ => None,
    });
    assert_eq!(
        who.collect::<Vec<_>>(),
        vec![1, 2],
        "whoami before and after addauth"
    );
}

#[test]
fn java_multi_success_failure_and_multi_read() {
    let s = replay("java-multi-watches.hex");
    let multis: Vec<(&Vec<MultiOp>, &Vec<MultiResult>, &ReplyHeader)> = s
        .requests
        .iter()
        .filter_map(|(h, r)| match r {
            Ok(Request::Multi(ops) | Request::MultiRead(ops)) => {
                let (rh, rsp) = s.replies.iter().find(|(rh, _)| rh.xid == h.xid).unwrap();
                match rsp {
                    Some(Response::Multi(results)) => Some((ops, results, rh)),
                    other => panic!("multi answered with {other:?}"),
                }
            }
            _ => None,
        })
        .collect();
    assert_eq!(multis.len(), 3);
    let (ops, results, h) = multis[0];
    assert_eq!(h.err, 0);
    assert_eq!(ops.len(), 5);
    assert!(
        matches!(ops[1], MultiOp::Create { op: OpCode::CreateContainer, ref req } if req.data.is_none())
    );
    assert_eq!(results.len(), 5);
    assert!(matches!(results[0], MultiResult::Create { ref path } if path == "/m/a"));
    assert!(matches!(results[1], MultiResult::Create2 { ref path, .. } if path == "/m/c"));
    assert!(matches!(results[2], MultiResult::SetData { .. }));
    assert_eq!(
        (&results[3], &results[4]),
        (&MultiResult::Check, &MultiResult::Delete)
    );

    // A failed multi: header err 0; ops before the failure Ok, the failure, the rest -2.
    let (_, results, h) = multis[1];
    assert_eq!(h.err, 0);
    assert_eq!(
        results,
        &vec![
            MultiResult::Error { err: 0 },
            MultiResult::Error {
                err: ErrorCode::BadVersion.as_i32()
            },
            MultiResult::Error {
                err: ErrorCode::RuntimeInconsistency.as_i32()
            },
        ]
    );

    // multiRead: reads carry watch=false; only the failing read is an error.
    let (ops, results, h) = multis[2];
    assert_eq!(h.err, 0);
    assert!(
        matches!(&ops[0], MultiOp::GetChildren(PathWatchRequest { path, watch: false }) if path == "/m")
    );
    assert!(matches!(results[0], MultiResult::GetChildren { .. }));
    assert!(matches!(results[1], MultiResult::GetData { data: Some(ref d), .. } if d == b"m2"));
    assert_eq!(
        results[2],
        MultiResult::Error {
            err: ErrorCode::NoNode.as_i32()
        }
    );

    let ops = opcodes(&s);
    assert!(ops.contains(&OpCode::CheckWatches));
    let errs: Vec<i32> = s.replies.iter().map(|(h, _)| h.err).collect();
    assert!(errs.contains(&ErrorCode::NoWatcher.as_i32()));
    assert!(errs.contains(&ErrorCode::NotEmpty.as_i32()));
    assert!(s.replies.iter().any(|(_, r)| matches!(r,
        Some(Response::Notification(WatcherEvent { event_type: 1, path, .. })) if path == "/m/new")));
}

#[test]
fn java_reconnect_sends_set_watches_with_an_ordinary_xid() {
    let s = replay("java-reconnect-setwatches.hex");
    let c = s.connect.as_ref().unwrap();
    assert_ne!(c.session_id, 0, "reconnect names its session");
    assert_ne!(c.last_zxid_seen, 0);
    let (h, sw) = s
        .requests
        .iter()
        .find_map(|(h, r)| match r {
            Ok(Request::SetWatches(sw)) => Some((h, sw)),
            _ => None,
        })
        .expect("setWatches");
    // ZooKeeper 3.8.0's Java client does not use xid -8 here.
    assert!(h.xid > 0);
    assert_eq!(sw.data_watches, vec!["/m".to_string()]);
    assert_eq!(sw.exist_watches, vec!["/nothere".to_string()]);
    assert_eq!(sw.child_watches, vec!["/m".to_string()]);

    let s = replay("java-reconnect-setwatches2.hex");
    let sw = s
        .requests
        .iter()
        .find_map(|(_, r)| match r {
            Ok(Request::SetWatches2(sw)) => Some(sw),
            _ => None,
        })
        .expect("setWatches2");
    assert_eq!(sw.persistent_watches, vec!["/m".to_string()]);
    assert_eq!(sw.persistent_recursive_watches, vec!["/m/a".to_string()]);
}

#[test]
fn c_client_create2_and_errors() {
    let s = replay("cli_mt-create2-ephemeral.hex");
    let (h, req) = &s.requests[0];
    assert!(
        matches!(req, Ok(Request::Create { op: OpCode::Create2, req })
        if req.path == "/c2" && req.flags == CreateMode::Ephemeral.as_i32())
    );
    let (rh, rsp) = s.replies.iter().find(|(rh, _)| rh.xid == h.xid).unwrap();
    assert_eq!(rh.err, 0);
    assert!(
        matches!(rsp, Some(Response::Create2 { path, stat }) if path == "/c2" && stat.ephemeral_owner != 0)
    );

    let s = replay("cli_mt-wexists.hex");
    assert!(matches!(
        &s.requests[0].1,
        Ok(Request::Exists(PathWatchRequest { watch: true, .. }))
    ));
    assert_eq!(s.replies[0].0.err, ErrorCode::NoNode.as_i32());
    assert_eq!(s.replies[0].1, None);
    let s = replay("cli_mt-ls2.hex");
    assert!(s.replies.iter().any(|(_, r)| matches!(r, Some(Response::GetChildren2 { children, .. }) if children.contains(&"zookeeper".to_string()))));
}
