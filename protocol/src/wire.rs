//! `Encode` and `Decode` for every record of `records.rs`, and the request and reply bodies chosen
//! by opcode. Field order is `zookeeper.jute`'s.

use bytes::{BufMut, BytesMut};

use crate::codes::{AddWatchMode, OpCode, WatcherType};
use crate::error::DecodeError;
use crate::jute::*;
use crate::records::*;

/// Encoded size of `Stat`: 6 longs and 5 ints.
pub const STAT_LEN: usize = 6 * 8 + 5 * 4;
/// Encoded size of `RequestHeader`.
pub const REQUEST_HEADER_LEN: usize = 8;
/// Encoded size of `ReplyHeader`.
pub const REPLY_HEADER_LEN: usize = 16;
/// Encoded size of a `MultiHeader { int type; boolean done; int err }`.
pub const MULTI_HEADER_LEN: usize = 9;
/// Smallest encoded `ACL`: perms and two empty strings.
const MIN_ACL_LEN: usize = 12;
/// Smallest encoded `ClientInfo`: two empty strings.
const MIN_CLIENT_INFO_LEN: usize = 8;

fn opt_len(b: &Option<Vec<u8>>) -> usize {
    buffer_len(b.as_ref().map_or(0, Vec::len))
}

impl Encode for Id {
    fn encode(&self, out: &mut BytesMut) {
        put_str(out, &self.scheme);
        put_str(out, &self.id);
    }
    fn encoded_len(&self) -> usize {
        buffer_len(self.scheme.len()) + buffer_len(self.id.len())
    }
}

impl Decode for Id {
    fn decode(i: &[u8]) -> JResult<'_, Self> {
        let (i, scheme) = ustring(i)?;
        let (i, id) = ustring(i)?;
        Ok((i, Id { scheme, id }))
    }
}

impl Encode for Acl {
    fn encode(&self, out: &mut BytesMut) {
        out.put_i32(self.perms);
        self.id.encode(out);
    }
    fn encoded_len(&self) -> usize {
        4 + self.id.encoded_len()
    }
}

impl Decode for Acl {
    fn decode(i: &[u8]) -> JResult<'_, Self> {
        let (i, perms) = int(i)?;
        let (i, id) = Id::decode(i)?;
        Ok((i, Acl { perms, id }))
    }
}

fn acl_vector(i: &[u8]) -> JResult<'_, Vec<Acl>> {
    record_vector(i, MIN_ACL_LEN)
}

impl Encode for Stat {
    fn encode(&self, out: &mut BytesMut) {
        out.put_i64(self.czxid);
        out.put_i64(self.mzxid);
        out.put_i64(self.ctime);
        out.put_i64(self.mtime);
        out.put_i32(self.version);
        out.put_i32(self.cversion);
        out.put_i32(self.aversion);
        out.put_i64(self.ephemeral_owner);
        out.put_i32(self.data_length);
        out.put_i32(self.num_children);
        out.put_i64(self.pzxid);
    }
    fn encoded_len(&self) -> usize {
        STAT_LEN
    }
}

impl Decode for Stat {
    fn decode(i: &[u8]) -> JResult<'_, Self> {
        let (i, czxid) = long(i)?;
        let (i, mzxid) = long(i)?;
        let (i, ctime) = long(i)?;
        let (i, mtime) = long(i)?;
        let (i, version) = int(i)?;
        let (i, cversion) = int(i)?;
        let (i, aversion) = int(i)?;
        let (i, ephemeral_owner) = long(i)?;
        let (i, data_length) = int(i)?;
        let (i, num_children) = int(i)?;
        let (i, pzxid) = long(i)?;
        let stat = Stat {
            czxid,
            mzxid,
            ctime,
            mtime,
            version,
            cversion,
            aversion,
            ephemeral_owner,
            data_length,
            num_children,
            pzxid,
        };
        Ok((i, stat))
    }
}

/// Writes the trailing readOnly byte only when present (absent for pre-3.4 peers).
impl Encode for ConnectRequest {
    fn encode(&self, out: &mut BytesMut) {
        out.put_i32(self.protocol_version);
        out.put_i64(self.last_zxid_seen);
        out.put_i32(self.timeout);
        out.put_i64(self.session_id);
        put_buffer(out, Some(&self.passwd));
        if let Some(ro) = self.read_only {
            put_bool(out, ro);
        }
    }
    fn encoded_len(&self) -> usize {
        4 + 8 + 4 + 8 + buffer_len(self.passwd.len()) + usize::from(self.read_only.is_some())
    }
}

/// The readOnly byte is read if exactly one byte follows the password; a null password reads as
/// empty.
impl Decode for ConnectRequest {
    fn decode(i: &[u8]) -> JResult<'_, Self> {
        let (i, protocol_version) = int(i)?;
        let (i, last_zxid_seen) = long(i)?;
        let (i, timeout) = int(i)?;
        let (i, session_id) = long(i)?;
        let (i, passwd) = buffer_vec(i)?;
        let (i, read_only) = optional_bool(i)?;
        let req = ConnectRequest {
            protocol_version,
            last_zxid_seen,
            timeout,
            session_id,
            passwd,
            read_only,
        };
        Ok((i, req))
    }
}

/// The optional trailing readOnly flag: present iff input remains.
fn optional_bool(i: &[u8]) -> JResult<'_, Option<bool>> {
    if i.is_empty() {
        Ok((i, None))
    } else {
        let (i, b) = boolean(i)?;
        Ok((i, Some(b)))
    }
}

impl Encode for ConnectResponse {
    fn encode(&self, out: &mut BytesMut) {
        out.put_i32(self.protocol_version);
        out.put_i32(self.timeout);
        out.put_i64(self.session_id);
        put_buffer(out, Some(&self.passwd));
        if let Some(ro) = self.read_only {
            put_bool(out, ro);
        }
    }
    fn encoded_len(&self) -> usize {
        4 + 4 + 8 + buffer_len(self.passwd.len()) + usize::from(self.read_only.is_some())
    }
}

impl Decode for ConnectResponse {
    fn decode(i: &[u8]) -> JResult<'_, Self> {
        let (i, protocol_version) = int(i)?;
        let (i, timeout) = int(i)?;
        let (i, session_id) = long(i)?;
        let (i, passwd) = buffer_vec(i)?;
        let (i, read_only) = optional_bool(i)?;
        let rsp = ConnectResponse {
            protocol_version,
            timeout,
            session_id,
            passwd,
            read_only,
        };
        Ok((i, rsp))
    }
}

impl Encode for RequestHeader {
    fn encode(&self, out: &mut BytesMut) {
        out.put_i32(self.xid);
        out.put_i32(self.op);
    }
    fn encoded_len(&self) -> usize {
        REQUEST_HEADER_LEN
    }
}

impl Decode for RequestHeader {
    fn decode(i: &[u8]) -> JResult<'_, Self> {
        let (i, xid) = int(i)?;
        let (i, op) = int(i)?;
        Ok((i, RequestHeader { xid, op }))
    }
}

impl Encode for ReplyHeader {
    fn encode(&self, out: &mut BytesMut) {
        out.put_i32(self.xid);
        out.put_i64(self.zxid);
        out.put_i32(self.err);
    }
    fn encoded_len(&self) -> usize {
        REPLY_HEADER_LEN
    }
}

impl Decode for ReplyHeader {
    fn decode(i: &[u8]) -> JResult<'_, Self> {
        let (i, xid) = int(i)?;
        let (i, zxid) = long(i)?;
        let (i, err) = int(i)?;
        Ok((i, ReplyHeader { xid, zxid, err }))
    }
}

/// Without the ttl, as create, create2 and createContainer send it; see `decode_create`.
impl Encode for CreateRequest {
    fn encode(&self, out: &mut BytesMut) {
        put_str(out, &self.path);
        put_buffer(out, self.data.as_deref());
        put_record_vector(out, &self.acl);
        out.put_i32(self.flags);
        if let Some(ttl) = self.ttl {
            out.put_i64(ttl);
        }
    }
    fn encoded_len(&self) -> usize {
        buffer_len(self.path.len())
            + opt_len(&self.data)
            + record_vector_len(&self.acl)
            + 4
            + if self.ttl.is_some() { 8 } else { 0 }
    }
}

/// `CreateRequest`, or `CreateTTLRequest` (with the trailing ttl) when `with_ttl`.
fn decode_create(i: &[u8], with_ttl: bool) -> JResult<'_, CreateRequest> {
    let (i, path) = request_path(i)?;
    let (i, data) = buffer_opt(i)?;
    let (i, acl) = acl_vector(i)?;
    let (i, flags) = int(i)?;
    let (i, ttl) = if with_ttl {
        let (i, ttl) = long(i)?;
        (i, Some(ttl))
    } else {
        (i, None)
    };
    let req = CreateRequest {
        path,
        data,
        acl,
        flags,
        ttl,
    };
    Ok((i, req))
}

impl Encode for DeleteRequest {
    fn encode(&self, out: &mut BytesMut) {
        put_str(out, &self.path);
        out.put_i32(self.version);
    }
    fn encoded_len(&self) -> usize {
        buffer_len(self.path.len()) + 4
    }
}

impl Decode for DeleteRequest {
    fn decode(i: &[u8]) -> JResult<'_, Self> {
        let (i, path) = request_path(i)?;
        let (i, version) = int(i)?;
        Ok((i, DeleteRequest { path, version }))
    }
}

impl Encode for PathWatchRequest {
    fn encode(&self, out: &mut BytesMut) {
        put_str(out, &self.path);
        put_bool(out, self.watch);
    }
    fn encoded_len(&self) -> usize {
        buffer_len(self.path.len()) + 1
    }
}

impl Decode for PathWatchRequest {
    fn decode(i: &[u8]) -> JResult<'_, Self> {
        let (i, path) = request_path(i)?;
        let (i, watch) = boolean(i)?;
        Ok((i, PathWatchRequest { path, watch }))
    }
}

impl Encode for PathRequest {
    fn encode(&self, out: &mut BytesMut) {
        put_str(out, &self.path);
    }
    fn encoded_len(&self) -> usize {
        buffer_len(self.path.len())
    }
}

impl Decode for PathRequest {
    fn decode(i: &[u8]) -> JResult<'_, Self> {
        let (i, path) = request_path(i)?;
        Ok((i, PathRequest { path }))
    }
}

impl Encode for SetDataRequest {
    fn encode(&self, out: &mut BytesMut) {
        put_str(out, &self.path);
        put_buffer(out, self.data.as_deref());
        out.put_i32(self.version);
    }
    fn encoded_len(&self) -> usize {
        buffer_len(self.path.len()) + opt_len(&self.data) + 4
    }
}

impl Decode for SetDataRequest {
    fn decode(i: &[u8]) -> JResult<'_, Self> {
        let (i, path) = ustring(i)?; // a null path: Prep answers BadArguments
        let (i, data) = buffer_opt(i)?;
        let (i, version) = int(i)?;
        Ok((
            i,
            SetDataRequest {
                path,
                data,
                version,
            },
        ))
    }
}

impl Encode for SetAclRequest {
    fn encode(&self, out: &mut BytesMut) {
        put_str(out, &self.path);
        put_record_vector(out, &self.acl);
        out.put_i32(self.version);
    }
    fn encoded_len(&self) -> usize {
        buffer_len(self.path.len()) + record_vector_len(&self.acl) + 4
    }
}

impl Decode for SetAclRequest {
    fn decode(i: &[u8]) -> JResult<'_, Self> {
        let (i, path) = ustring(i)?; // a null path: Prep answers BadArguments
        let (i, acl) = acl_vector(i)?;
        let (i, version) = int(i)?;
        Ok((i, SetAclRequest { path, acl, version }))
    }
}

impl Encode for CheckVersionRequest {
    fn encode(&self, out: &mut BytesMut) {
        put_str(out, &self.path);
        out.put_i32(self.version);
    }
    fn encoded_len(&self) -> usize {
        buffer_len(self.path.len()) + 4
    }
}

impl Decode for CheckVersionRequest {
    fn decode(i: &[u8]) -> JResult<'_, Self> {
        let (i, path) = request_path(i)?;
        let (i, version) = int(i)?;
        Ok((i, CheckVersionRequest { path, version }))
    }
}

/// The three server lists are nullable `ustring`s (`None` = null); the Java client sends null
/// for the ones it leaves unchanged.
impl Encode for ReconfigRequest {
    fn encode(&self, out: &mut BytesMut) {
        put_ustring(out, self.joining_servers.as_deref());
        put_ustring(out, self.leaving_servers.as_deref());
        put_ustring(out, self.new_members.as_deref());
        out.put_i64(self.cur_config_id);
    }
    fn encoded_len(&self) -> usize {
        let l = |s: &Option<String>| buffer_len(s.as_ref().map_or(0, String::len));
        l(&self.joining_servers) + l(&self.leaving_servers) + l(&self.new_members) + 8
    }
}

impl Decode for ReconfigRequest {
    fn decode(i: &[u8]) -> JResult<'_, Self> {
        let (i, joining_servers) = ustring_opt(i)?;
        let (i, leaving_servers) = ustring_opt(i)?;
        let (i, new_members) = ustring_opt(i)?;
        let (i, cur_config_id) = long(i)?;
        let req = ReconfigRequest {
            joining_servers,
            leaving_servers,
            new_members,
            cur_config_id,
        };
        Ok((i, req))
    }
}

impl Encode for WatchesRequest {
    fn encode(&self, out: &mut BytesMut) {
        put_str(out, &self.path);
        out.put_i32(self.watcher_type.as_i32());
    }
    fn encoded_len(&self) -> usize {
        buffer_len(self.path.len()) + 4
    }
}

impl Decode for WatchesRequest {
    /// A null path reads as "" (removeWatches answers NoWatcher); checkWatches refuses it first.
    fn decode(i: &[u8]) -> JResult<'_, Self> {
        let (i, path) = ustring(i)?;
        let (i, t) = int(i)?;
        let Some(watcher_type) = WatcherType::from_i32(t) else {
            return fail(DecodeError::InvalidValue {
                field: "watcher type",
                value: t,
            });
        };
        Ok((i, WatchesRequest { path, watcher_type }))
    }
}

impl Encode for AddWatchRequest {
    fn encode(&self, out: &mut BytesMut) {
        put_str(out, &self.path);
        out.put_i32(self.mode.as_i32());
    }
    fn encoded_len(&self) -> usize {
        buffer_len(self.path.len()) + 4
    }
}

impl Decode for AddWatchRequest {
    /// ZooKeeper 3.8.0 registers a null path as a watch that never fires and answers OK, so null
    /// reads as `""` here (kazoo sends `""` as null), not as `NullPath`.
    fn decode(i: &[u8]) -> JResult<'_, Self> {
        let (i, path) = ustring(i)?;
        let (i, m) = int(i)?;
        let Some(mode) = AddWatchMode::from_i32(m) else {
            return fail(DecodeError::InvalidValue {
                field: "addWatch mode",
                value: m,
            });
        };
        Ok((i, AddWatchRequest { path, mode }))
    }
}

impl Encode for AuthPacket {
    fn encode(&self, out: &mut BytesMut) {
        out.put_i32(self.auth_type);
        put_str(out, &self.scheme);
        put_buffer(out, Some(&self.auth));
    }
    fn encoded_len(&self) -> usize {
        4 + buffer_len(self.scheme.len()) + buffer_len(self.auth.len())
    }
}

impl Decode for AuthPacket {
    fn decode(i: &[u8]) -> JResult<'_, Self> {
        let (i, auth_type) = int(i)?;
        let (i, scheme) = ustring(i)?;
        let (i, auth) = buffer_vec(i)?;
        let p = AuthPacket {
            auth_type,
            scheme,
            auth,
        };
        Ok((i, p))
    }
}

impl SetWatches {
    /// Encodes as `SetWatches` (three lists, opcode 101) or `SetWatches2` (five lists, 105).
    /// Invariant for `SetWatches`: the persistent lists are empty (they are not on the wire).
    pub fn encode_as(&self, five_lists: bool, out: &mut BytesMut) {
        out.put_i64(self.relative_zxid);
        put_string_vector(out, &self.data_watches);
        put_string_vector(out, &self.exist_watches);
        put_string_vector(out, &self.child_watches);
        if five_lists {
            put_string_vector(out, &self.persistent_watches);
            put_string_vector(out, &self.persistent_recursive_watches);
        }
    }

    pub fn encoded_len_as(&self, five_lists: bool) -> usize {
        let mut n = 8
            + string_vector_len(&self.data_watches)
            + string_vector_len(&self.exist_watches)
            + string_vector_len(&self.child_watches);
        if five_lists {
            n += string_vector_len(&self.persistent_watches)
                + string_vector_len(&self.persistent_recursive_watches);
        }
        n
    }

    pub fn decode_as(i: &[u8], five_lists: bool) -> JResult<'_, Self> {
        let (i, relative_zxid) = long(i)?;
        let (i, data_watches) = string_vector(i)?;
        let (i, exist_watches) = string_vector(i)?;
        let (i, child_watches) = string_vector(i)?;
        let (i, persistent_watches, persistent_recursive_watches) = if five_lists {
            let (i, p) = string_vector(i)?;
            let (i, r) = string_vector(i)?;
            (i, p, r)
        } else {
            (i, Vec::new(), Vec::new())
        };
        let sw = SetWatches {
            relative_zxid,
            data_watches,
            exist_watches,
            child_watches,
            persistent_watches,
            persistent_recursive_watches,
        };
        Ok((i, sw))
    }
}

impl Encode for ClientInfo {
    fn encode(&self, out: &mut BytesMut) {
        put_str(out, &self.auth_scheme);
        put_str(out, &self.user);
    }
    fn encoded_len(&self) -> usize {
        buffer_len(self.auth_scheme.len()) + buffer_len(self.user.len())
    }
}

impl Decode for ClientInfo {
    fn decode(i: &[u8]) -> JResult<'_, Self> {
        let (i, auth_scheme) = ustring(i)?;
        let (i, user) = ustring(i)?;
        Ok((i, ClientInfo { auth_scheme, user }))
    }
}

impl Encode for WatcherEvent {
    fn encode(&self, out: &mut BytesMut) {
        out.put_i32(self.event_type);
        out.put_i32(self.state);
        put_str(out, &self.path);
    }
    fn encoded_len(&self) -> usize {
        8 + buffer_len(self.path.len())
    }
}

impl Decode for WatcherEvent {
    fn decode(i: &[u8]) -> JResult<'_, Self> {
        let (i, event_type) = int(i)?;
        let (i, state) = int(i)?;
        let (i, path) = ustring(i)?;
        let ev = WatcherEvent {
            event_type,
            state,
            path,
        };
        Ok((i, ev))
    }
}

// ---- multi ---------------------------------------------------------------------------------------

/// `MultiHeader { int type; boolean done; int err }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MultiHeader {
    op: i32,
    done: bool,
    err: i32,
}

/// Ends every multi request and multi response.
const MULTI_END: MultiHeader = MultiHeader {
    op: -1,
    done: true,
    err: -1,
};

fn put_multi_header(out: &mut BytesMut, h: MultiHeader) {
    out.put_i32(h.op);
    put_bool(out, h.done);
    out.put_i32(h.err);
}

fn multi_header(i: &[u8]) -> JResult<'_, MultiHeader> {
    let (i, op) = int(i)?;
    let (i, done) = boolean(i)?;
    let (i, err) = int(i)?;
    Ok((i, MultiHeader { op, done, err }))
}

impl MultiOp {
    pub fn op_code(&self) -> OpCode {
        match self {
            MultiOp::Create { op, .. } => *op,
            MultiOp::Delete(_) => OpCode::Delete,
            MultiOp::SetData(_) => OpCode::SetData,
            MultiOp::Check(_) => OpCode::Check,
            MultiOp::GetChildren(_) => OpCode::GetChildren,
            MultiOp::GetData(_) => OpCode::GetData,
        }
    }

    fn body_len(&self) -> usize {
        match self {
            MultiOp::Create { req, .. } => req.encoded_len(),
            MultiOp::Delete(r) => r.encoded_len(),
            MultiOp::SetData(r) => r.encoded_len(),
            MultiOp::Check(r) => r.encoded_len(),
            MultiOp::GetChildren(r) | MultiOp::GetData(r) => r.encoded_len(),
        }
    }
}

/// One op: its `MultiHeader { type, false, -1 }` (as the Java and C clients write it) and record.
impl Encode for MultiOp {
    fn encode(&self, out: &mut BytesMut) {
        put_multi_header(
            out,
            MultiHeader {
                op: self.op_code().as_i32(),
                done: false,
                err: -1,
            },
        );
        match self {
            MultiOp::Create { req, .. } => req.encode(out),
            MultiOp::Delete(r) => r.encode(out),
            MultiOp::SetData(r) => r.encode(out),
            MultiOp::Check(r) => r.encode(out),
            MultiOp::GetChildren(r) | MultiOp::GetData(r) => r.encode(out),
        }
    }
    fn encoded_len(&self) -> usize {
        MULTI_HEADER_LEN + self.body_len()
    }
}

fn encode_multi_ops(ops: &[MultiOp], out: &mut BytesMut) {
    for op in ops {
        op.encode(out);
    }
    put_multi_header(out, MULTI_END);
}

fn multi_ops_len(ops: &[MultiOp]) -> usize {
    ops.iter().map(Encode::encoded_len).sum::<usize>() + MULTI_HEADER_LEN
}

/// Reads `MultiHeader`-prefixed ops until a header with `done` set. Like ZooKeeper's
/// `MultiOperationRecord`, only `done` ends the list and the headers' `err` is ignored; the
/// encoder always writes the canonical `(type, false, -1)` and `(-1, true, -1)`.
fn decode_multi_ops(mut i: &[u8]) -> JResult<'_, Vec<MultiOp>> {
    let mut ops = Vec::new();
    loop {
        let (rest, h) = multi_header(i)?;
        i = rest;
        if h.done {
            return Ok((i, ops));
        }
        // Every op record starts with its path; a null one fails the whole multi (ZooKeeper:
        // MarshallingError), even for setData, which alone would be answered BadArguments.
        if i.starts_with(&(-1i32).to_be_bytes()) {
            return fail(DecodeError::NullPath);
        }
        let (rest, op) = match OpCode::from_i32(h.op) {
            Some(
                op @ (OpCode::Create
                | OpCode::Create2
                | OpCode::CreateContainer
                | OpCode::CreateTtl),
            ) => {
                let (i, req) = decode_create(i, op == OpCode::CreateTtl)?;
                (i, MultiOp::Create { op, req })
            }
            Some(OpCode::Delete) => map(DeleteRequest::decode(i), MultiOp::Delete)?,
            Some(OpCode::SetData) => map(SetDataRequest::decode(i), MultiOp::SetData)?,
            Some(OpCode::Check) => map(CheckVersionRequest::decode(i), MultiOp::Check)?,
            Some(OpCode::GetChildren) => map(PathWatchRequest::decode(i), MultiOp::GetChildren)?,
            Some(OpCode::GetData) => map(PathWatchRequest::decode(i), MultiOp::GetData)?,
            _ => return fail(DecodeError::InvalidMultiOp(h.op)),
        };
        ops.push(op);
        i = rest;
    }
}

fn map<'a, A, B>(r: JResult<'a, A>, f: impl FnOnce(A) -> B) -> JResult<'a, B> {
    r.map(|(i, a)| (i, f(a)))
}

impl MultiResult {
    /// The `MultiHeader` type ZooKeeper writes for this result.
    pub fn op_code(&self) -> OpCode {
        match self {
            MultiResult::Create { .. } => OpCode::Create,
            MultiResult::Create2 { .. } => OpCode::Create2,
            MultiResult::Delete => OpCode::Delete,
            MultiResult::SetData { .. } => OpCode::SetData,
            MultiResult::Check => OpCode::Check,
            MultiResult::GetData { .. } => OpCode::GetData,
            MultiResult::GetChildren { .. } => OpCode::GetChildren,
            MultiResult::Error { .. } => OpCode::Error,
        }
    }

    fn body_len(&self) -> usize {
        match self {
            MultiResult::Create { path } => buffer_len(path.len()),
            MultiResult::Create2 { path, .. } => buffer_len(path.len()) + STAT_LEN,
            MultiResult::Delete | MultiResult::Check => 0,
            MultiResult::SetData { .. } => STAT_LEN,
            MultiResult::GetData { data, .. } => opt_len(data) + STAT_LEN,
            MultiResult::GetChildren { children } => string_vector_len(children),
            MultiResult::Error { .. } => 4,
        }
    }
}

/// One result: `MultiHeader { type, false, err }` with `err` the error for `Error` and 0
/// otherwise (ZooKeeper's `MultiResponse.serialize`), then the result's record.
impl Encode for MultiResult {
    fn encode(&self, out: &mut BytesMut) {
        let err = match self {
            MultiResult::Error { err } => *err,
            _ => 0,
        };
        put_multi_header(
            out,
            MultiHeader {
                op: self.op_code().as_i32(),
                done: false,
                err,
            },
        );
        match self {
            MultiResult::Create { path } => put_str(out, path),
            MultiResult::Create2 { path, stat } => {
                put_str(out, path);
                stat.encode(out);
            }
            MultiResult::Delete | MultiResult::Check => {}
            MultiResult::SetData { stat } => stat.encode(out),
            MultiResult::GetData { data, stat } => {
                put_buffer(out, data.as_deref());
                stat.encode(out);
            }
            MultiResult::GetChildren { children } => put_string_vector(out, children),
            MultiResult::Error { err } => out.put_i32(*err),
        }
    }
    fn encoded_len(&self) -> usize {
        MULTI_HEADER_LEN + self.body_len()
    }
}

/// Reads results until a header with `done` set. As in ZooKeeper's `MultiResponse`, the error of
/// an `Error` result is its `ErrorResponse`'s, and the headers' `err` is otherwise ignored.
fn decode_multi_results(mut i: &[u8]) -> JResult<'_, Vec<MultiResult>> {
    let mut results = Vec::new();
    loop {
        let (rest, h) = multi_header(i)?;
        i = rest;
        if h.done {
            return Ok((i, results));
        }
        let (rest, r) = match OpCode::from_i32(h.op) {
            Some(OpCode::Create) => map(ustring(i), |path| MultiResult::Create { path })?,
            Some(OpCode::Create2) => {
                let (i, path) = ustring(i)?;
                let (i, stat) = Stat::decode(i)?;
                (i, MultiResult::Create2 { path, stat })
            }
            Some(OpCode::Delete) => (i, MultiResult::Delete),
            Some(OpCode::Check) => (i, MultiResult::Check),
            Some(OpCode::SetData) => map(Stat::decode(i), |stat| MultiResult::SetData { stat })?,
            Some(OpCode::GetData) => {
                let (i, data) = buffer_opt(i)?;
                let (i, stat) = Stat::decode(i)?;
                (i, MultiResult::GetData { data, stat })
            }
            Some(OpCode::GetChildren) => map(string_vector(i), |children| {
                MultiResult::GetChildren { children }
            })?,
            Some(OpCode::Error) => map(int(i), |err| MultiResult::Error { err })?,
            _ => return fail(DecodeError::InvalidMultiOp(h.op)),
        };
        results.push(r);
        i = rest;
    }
}

fn encode_multi_results(results: &[MultiResult], out: &mut BytesMut) {
    for r in results {
        r.encode(out);
    }
    put_multi_header(out, MULTI_END);
}

fn multi_results_len(results: &[MultiResult]) -> usize {
    results.iter().map(Encode::encoded_len).sum::<usize>() + MULTI_HEADER_LEN
}

// ---- requests ------------------------------------------------------------------------------------

impl Request {
    /// The opcode this request is sent with.
    pub fn op_code(&self) -> OpCode {
        match self {
            Request::Create { op, .. } => *op,
            Request::Delete(_) => OpCode::Delete,
            Request::DeleteContainer(_) => OpCode::DeleteContainer,
            Request::Exists(_) => OpCode::Exists,
            Request::GetData(_) => OpCode::GetData,
            Request::SetData(_) => OpCode::SetData,
            Request::GetAcl(_) => OpCode::GetAcl,
            Request::SetAcl(_) => OpCode::SetAcl,
            Request::GetChildren(_) => OpCode::GetChildren,
            Request::GetChildren2(_) => OpCode::GetChildren2,
            Request::Sync(_) => OpCode::Sync,
            Request::Ping => OpCode::Ping,
            Request::Check(_) => OpCode::Check,
            Request::Multi(_) => OpCode::Multi,
            Request::MultiRead(_) => OpCode::MultiRead,
            Request::Reconfig(_) => OpCode::Reconfig,
            Request::CheckWatches(_) => OpCode::CheckWatches,
            Request::RemoveWatches(_) => OpCode::RemoveWatches,
            Request::Auth(_) => OpCode::Auth,
            Request::SetWatches(_) => OpCode::SetWatches,
            Request::SetWatches2(_) => OpCode::SetWatches2,
            Request::Sasl { .. } => OpCode::Sasl,
            Request::GetEphemerals(_) => OpCode::GetEphemerals,
            Request::GetAllChildrenNumber(_) => OpCode::GetAllChildrenNumber,
            Request::AddWatch(_) => OpCode::AddWatch,
            Request::WhoAmI => OpCode::WhoAmI,
            Request::CloseSession => OpCode::CloseSession,
        }
    }
}

/// The request body alone (after the `RequestHeader`). Ping, whoAmI and closeSession have none.
/// Invariant for `Create`: `req.ttl.is_some()` exactly when `op` is `CreateTtl`.
impl Encode for Request {
    fn encode(&self, out: &mut BytesMut) {
        match self {
            Request::Create { req, .. } => req.encode(out),
            Request::Delete(r) => r.encode(out),
            Request::Exists(r)
            | Request::GetData(r)
            | Request::GetChildren(r)
            | Request::GetChildren2(r) => r.encode(out),
            Request::DeleteContainer(r)
            | Request::GetAcl(r)
            | Request::Sync(r)
            | Request::GetEphemerals(r)
            | Request::GetAllChildrenNumber(r) => r.encode(out),
            Request::SetData(r) => r.encode(out),
            Request::SetAcl(r) => r.encode(out),
            Request::Check(r) => r.encode(out),
            Request::Multi(ops) | Request::MultiRead(ops) => encode_multi_ops(ops, out),
            Request::Reconfig(r) => r.encode(out),
            Request::CheckWatches(r) | Request::RemoveWatches(r) => r.encode(out),
            Request::Auth(r) => r.encode(out),
            Request::SetWatches(r) => r.encode_as(false, out),
            Request::SetWatches2(r) => r.encode_as(true, out),
            Request::Sasl { token } => put_buffer(out, Some(token)),
            Request::AddWatch(r) => r.encode(out),
            Request::Ping | Request::WhoAmI | Request::CloseSession => {}
        }
    }
    fn encoded_len(&self) -> usize {
        match self {
            Request::Create { req, .. } => req.encoded_len(),
            Request::Delete(r) => r.encoded_len(),
            Request::Exists(r)
            | Request::GetData(r)
            | Request::GetChildren(r)
            | Request::GetChildren2(r) => r.encoded_len(),
            Request::DeleteContainer(r)
            | Request::GetAcl(r)
            | Request::Sync(r)
            | Request::GetEphemerals(r)
            | Request::GetAllChildrenNumber(r) => r.encoded_len(),
            Request::SetData(r) => r.encoded_len(),
            Request::SetAcl(r) => r.encoded_len(),
            Request::Check(r) => r.encoded_len(),
            Request::Multi(ops) | Request::MultiRead(ops) => multi_ops_len(ops),
            Request::Reconfig(r) => r.encoded_len(),
            Request::CheckWatches(r) | Request::RemoveWatches(r) => r.encoded_len(),
            Request::Auth(r) => r.encoded_len(),
            Request::SetWatches(r) => r.encoded_len_as(false),
            Request::SetWatches2(r) => r.encoded_len_as(true),
            Request::Sasl { token } => buffer_len(token.len()),
            Request::AddWatch(r) => r.encoded_len(),
            Request::Ping | Request::WhoAmI | Request::CloseSession => 0,
        }
    }
}

/// Decodes the body of a request with opcode `op`. `None` if `op` is not a request a client sends
/// on the client port.
pub(crate) fn decode_request_body(op: i32, i: &[u8]) -> Option<JResult<'_, Request>> {
    use OpCode as O;
    let r = match OpCode::from_i32(op)? {
        op @ (O::Create | O::Create2 | O::CreateContainer | O::CreateTtl) => {
            map(decode_create(i, op == O::CreateTtl), |req| {
                Request::Create { op, req }
            })
        }
        O::Delete => map(DeleteRequest::decode(i), Request::Delete),
        O::DeleteContainer => map(PathRequest::decode(i), Request::DeleteContainer),
        O::Exists => map(PathWatchRequest::decode(i), Request::Exists),
        O::GetData => map(PathWatchRequest::decode(i), Request::GetData),
        O::SetData => map(SetDataRequest::decode(i), Request::SetData),
        O::GetAcl => map(PathRequest::decode(i), Request::GetAcl),
        O::SetAcl => map(SetAclRequest::decode(i), Request::SetAcl),
        O::GetChildren => map(PathWatchRequest::decode(i), Request::GetChildren),
        O::GetChildren2 => map(PathWatchRequest::decode(i), Request::GetChildren2),
        // A null sync path is answered, not refused (it reads as "").
        O::Sync => map(ustring(i), |path| Request::Sync(PathRequest { path })),
        O::Ping => Ok((i, Request::Ping)),
        O::Check => map(CheckVersionRequest::decode(i), Request::Check),
        O::Multi => map(decode_multi_ops(i), Request::Multi),
        O::MultiRead => map(decode_multi_ops(i), Request::MultiRead),
        O::Reconfig => map(ReconfigRequest::decode(i), Request::Reconfig),
        // checkWatches walks the path's parents, which fails on a null path (MarshallingError).
        O::CheckWatches => match request_path(i) {
            Ok(_) => map(WatchesRequest::decode(i), Request::CheckWatches),
            Err(e) => Err(e),
        },
        O::RemoveWatches => map(WatchesRequest::decode(i), Request::RemoveWatches),
        O::Auth => map(AuthPacket::decode(i), Request::Auth),
        O::SetWatches => map(SetWatches::decode_as(i, false), Request::SetWatches),
        O::SetWatches2 => map(SetWatches::decode_as(i, true), Request::SetWatches2),
        O::Sasl => map(buffer_vec(i), |token| Request::Sasl { token }),
        // A null prefix asks for every ephemeral of the session, as "" does.
        O::GetEphemerals => map(ustring(i), |path| {
            Request::GetEphemerals(PathRequest { path })
        }),
        O::GetAllChildrenNumber => map(PathRequest::decode(i), Request::GetAllChildrenNumber),
        O::AddWatch => map(AddWatchRequest::decode(i), Request::AddWatch),
        O::WhoAmI => Ok((i, Request::WhoAmI)),
        O::CloseSession => Ok((i, Request::CloseSession)),
        O::Notification | O::Error | O::CreateSession => return None,
    };
    Some(r)
}

// ---- responses -----------------------------------------------------------------------------------

/// The reply body alone (after the `ReplyHeader`).
impl Encode for Response {
    fn encode(&self, out: &mut BytesMut) {
        match self {
            Response::Empty => {}
            Response::Error { err } => out.put_i32(*err),
            Response::Create { path } => put_str(out, path),
            // ZooKeeper echoes the request's path; kazoo sends "" as null and reads null back, and no
            // client sends a real empty sync path, so "" goes out as null.
            Response::Sync { path } => {
                put_ustring(out, Some(path.as_str()).filter(|p| !p.is_empty()))
            }
            Response::Create2 { path, stat } => {
                put_str(out, path);
                stat.encode(out);
            }
            Response::Stat(stat) => stat.encode(out),
            Response::GetData { data, stat } => {
                put_buffer(out, data.as_deref());
                stat.encode(out);
            }
            Response::GetAcl { acl, stat } => {
                put_record_vector(out, acl);
                stat.encode(out);
            }
            Response::GetChildren { children } => put_string_vector(out, children),
            Response::GetChildren2 { children, stat } => {
                put_string_vector(out, children);
                stat.encode(out);
            }
            Response::Multi(results) => encode_multi_results(results, out),
            Response::GetEphemerals { ephemerals } => put_string_vector(out, ephemerals),
            Response::GetAllChildrenNumber { total } => out.put_i32(*total),
            Response::WhoAmI { client_info } => put_record_vector(out, client_info),
            Response::Sasl { token } => put_buffer(out, Some(token)),
            Response::Notification(ev) => ev.encode(out),
        }
    }
    fn encoded_len(&self) -> usize {
        match self {
            Response::Empty => 0,
            Response::Error { .. } => 4,
            Response::Create { path } | Response::Sync { path } => buffer_len(path.len()),
            Response::Create2 { path, .. } => buffer_len(path.len()) + STAT_LEN,
            Response::Stat(_) => STAT_LEN,
            Response::GetData { data, .. } => opt_len(data) + STAT_LEN,
            Response::GetAcl { acl, .. } => record_vector_len(acl) + STAT_LEN,
            Response::GetChildren { children } => string_vector_len(children),
            Response::GetChildren2 { children, .. } => string_vector_len(children) + STAT_LEN,
            Response::Multi(results) => multi_results_len(results),
            Response::GetEphemerals { ephemerals } => string_vector_len(ephemerals),
            Response::GetAllChildrenNumber { .. } => 4,
            Response::WhoAmI { client_info } => record_vector_len(client_info),
            Response::Sasl { token } => buffer_len(token.len()),
            Response::Notification(ev) => ev.encoded_len(),
        }
    }
}

/// Decodes the body answering a request with opcode `op` (ZooKeeper 3.8's
/// `FinalRequestProcessor`: create2, createTTL and createContainer answer with `Create2Response`,
/// reconfig with a `GetDataResponse`, and delete, check, the watch operations, auth and
/// closeSession with no body, addWatch with an `ErrorResponse`). `None` if `op` has no reply.
pub(crate) fn decode_response_body(op: OpCode, i: &[u8]) -> Option<JResult<'_, Response>> {
    use OpCode as O;
    let r = match op {
        O::Create => map(ustring(i), |path| Response::Create { path }),
        O::Create2 | O::CreateContainer | O::CreateTtl => ustring(i)
            .and_then(|(i, path)| map(Stat::decode(i), |stat| Response::Create2 { path, stat })),
        O::Exists | O::SetData | O::SetAcl => map(Stat::decode(i), Response::Stat),
        O::GetData | O::Reconfig => buffer_opt(i)
            .and_then(|(i, data)| map(Stat::decode(i), |stat| Response::GetData { data, stat })),
        O::GetAcl => acl_vector(i)
            .and_then(|(i, acl)| map(Stat::decode(i), |stat| Response::GetAcl { acl, stat })),
        O::GetChildren => map(string_vector(i), |children| Response::GetChildren {
            children,
        }),
        O::GetChildren2 => string_vector(i).and_then(|(i, children)| {
            map(Stat::decode(i), |stat| Response::GetChildren2 {
                children,
                stat,
            })
        }),
        O::Sync => map(ustring(i), |path| Response::Sync { path }),
        O::Multi | O::MultiRead => map(decode_multi_results(i), Response::Multi),
        O::GetEphemerals => map(string_vector(i), |ephemerals| Response::GetEphemerals {
            ephemerals,
        }),
        O::GetAllChildrenNumber => map(int(i), |total| Response::GetAllChildrenNumber { total }),
        O::WhoAmI => map(record_vector(i, MIN_CLIENT_INFO_LEN), |client_info| {
            Response::WhoAmI { client_info }
        }),
        O::Sasl => map(buffer_vec(i), |token| Response::Sasl { token }),
        O::AddWatch => map(int(i), |err| Response::Error { err }),
        O::Notification => map(WatcherEvent::decode(i), Response::Notification),
        O::Delete
        | O::DeleteContainer
        | O::Ping
        | O::Check
        | O::CheckWatches
        | O::RemoveWatches
        | O::Auth
        | O::SetWatches
        | O::SetWatches2
        | O::CloseSession => Ok((i, Response::Empty)),
        O::Error | O::CreateSession => return None,
    };
    Some(r)
}
