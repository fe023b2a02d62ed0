//! Jute records of the client port, owned, field for field as in Apache ZooKeeper's `zookeeper.jute`.
//! Field order here is wire order.

use crate::codes::{AddWatchMode, OpCode, WatcherType};

/// `org.apache.zookeeper.data.Id`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id {
    pub scheme: String,
    pub id: String,
}

/// `org.apache.zookeeper.data.ACL`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Acl {
    pub perms: i32,
    pub id: Id,
}

/// `org.apache.zookeeper.data.Stat`: 68 bytes on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Stat {
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub data_length: i32,
    pub num_children: i32,
    pub pzxid: i64,
}

/// The first frame of a connection, sent without a `RequestHeader`.
/// `read_only` is the trailing byte that 3.4+ clients send and older ones omit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    pub protocol_version: i32,
    pub last_zxid_seen: i64,
    pub timeout: i32,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    pub read_only: Option<bool>,
}

/// The server's answer to a `ConnectRequest`, sent without a `ReplyHeader`.
/// `read_only` is present exactly when the request carried it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectResponse {
    pub protocol_version: i32,
    pub timeout: i32,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    pub read_only: Option<bool>,
}

/// Precedes every request after the connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    pub xid: i32,
    /// The opcode as sent; `OpCode::from_i32` may not know it.
    pub op: i32,
}

/// Precedes every reply and notification after the connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyHeader {
    pub xid: i32,
    pub zxid: i64,
    /// An `ErrorCode` number; a non-zero value means no body follows (multi excepted).
    pub err: i32,
}

/// create (1), create2 (15), createContainer (19) and createTTL (21) share this record;
/// `ttl` is on the wire only for createTTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRequest {
    pub path: String,
    /// `None` is jute's null buffer (zkCli's `create /a` without data); ZooKeeper stores and
    /// returns it as null, distinct from empty.
    pub data: Option<Vec<u8>>,
    pub acl: Vec<Acl>,
    pub flags: i32,
    pub ttl: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteRequest {
    pub path: String,
    pub version: i32,
}

/// exists (3), getData (4), getChildren (8) and getChildren2 (12): a path and a watch flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathWatchRequest {
    pub path: String,
    pub watch: bool,
}

/// getACL, sync, deleteContainer, getAllChildrenNumber and getEphemerals (prefixPath): a single path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRequest {
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetDataRequest {
    pub path: String,
    /// `None` is jute's null buffer.
    pub data: Option<Vec<u8>>,
    pub version: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAclRequest {
    pub path: String,
    pub acl: Vec<Acl>,
    pub version: i32,
}

/// check (13), alone or inside a multi.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckVersionRequest {
    pub path: String,
    pub version: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconfigRequest {
    pub joining_servers: Option<String>,
    pub leaving_servers: Option<String>,
    pub new_members: Option<String>,
    pub cur_config_id: i64,
}

/// checkWatches (17) and removeWatches (18).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchesRequest {
    pub path: String,
    pub watcher_type: WatcherType,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddWatchRequest {
    pub path: String,
    pub mode: AddWatchMode,
}

/// addauth (xid -4, opcode 100).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthPacket {
    /// Unused by the server; clients send 0.
    pub auth_type: i32,
    pub scheme: String,
    pub auth: Vec<u8>,
}

/// setWatches (101) carries the first three lists; setWatches2 (105) all five.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetWatches {
    pub relative_zxid: i64,
    pub data_watches: Vec<String>,
    pub exist_watches: Vec<String>,
    pub child_watches: Vec<String>,
    pub persistent_watches: Vec<String>,
    pub persistent_recursive_watches: Vec<String>,
}

/// One operation of a multi (14) or multiRead (22).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiOp {
    /// `op` is Create, Create2, CreateContainer or CreateTtl.
    Create {
        op: OpCode,
        req: CreateRequest,
    },
    Delete(DeleteRequest),
    SetData(SetDataRequest),
    Check(CheckVersionRequest),
    /// multiRead only; `GetChildrenRequest` on the wire, whose `watch` the Java client sends false.
    GetChildren(PathWatchRequest),
    /// multiRead only; `GetDataRequest` on the wire, whose `watch` the Java client sends false.
    GetData(PathWatchRequest),
}

/// A decoded request body, by opcode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `op` is Create, Create2, CreateContainer or CreateTtl.
    Create {
        op: OpCode,
        req: CreateRequest,
    },
    Delete(DeleteRequest),
    DeleteContainer(PathRequest),
    Exists(PathWatchRequest),
    GetData(PathWatchRequest),
    SetData(SetDataRequest),
    GetAcl(PathRequest),
    SetAcl(SetAclRequest),
    GetChildren(PathWatchRequest),
    GetChildren2(PathWatchRequest),
    Sync(PathRequest),
    Ping,
    Check(CheckVersionRequest),
    Multi(Vec<MultiOp>),
    MultiRead(Vec<MultiOp>),
    Reconfig(ReconfigRequest),
    CheckWatches(WatchesRequest),
    RemoveWatches(WatchesRequest),
    Auth(AuthPacket),
    SetWatches(SetWatches),
    SetWatches2(SetWatches),
    Sasl {
        token: Vec<u8>,
    },
    GetEphemerals(PathRequest),
    GetAllChildrenNumber(PathRequest),
    AddWatch(AddWatchRequest),
    WhoAmI,
    CloseSession,
}

/// `ClientInfo` of a whoAmI reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    pub auth_scheme: String,
    pub user: String,
}

/// The result of one operation of a multi or multiRead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiResult {
    Create {
        path: String,
    },
    Create2 {
        path: String,
        stat: Stat,
    },
    Delete,
    SetData {
        stat: Stat,
    },
    Check,
    GetData {
        data: Option<Vec<u8>>,
        stat: Stat,
    },
    GetChildren {
        children: Vec<String>,
    },
    /// Opcode -1 with an `ErrorResponse`. In a failed multi ZooKeeper 3.8 answers every op with one:
    /// `err` 0 (Ok) for the ops before the failing one, the failing op's code, and -2
    /// (RuntimeInconsistency) for the ops after it; the `ReplyHeader::err` stays 0. In a multiRead
    /// only the failing reads are errors.
    Error {
        err: i32,
    },
}

/// A reply body, by the opcode of the request it answers. Sent only when `ReplyHeader::err` is 0,
/// except multi, whose body always follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// delete, ping, check, setWatches, removeWatches, checkWatches, auth, closeSession.
    Empty,
    /// An `ErrorResponse` body: ZooKeeper 3.8 answers addWatch with `ErrorResponse { err: 0 }`.
    Error {
        err: i32,
    },
    Create {
        path: String,
    },
    Create2 {
        path: String,
        stat: Stat,
    },
    /// exists, setData, setACL.
    Stat(Stat),
    /// getData, and reconfig (whose reply is the new configuration as a `GetDataResponse`).
    /// `data: None` is a null buffer.
    GetData {
        data: Option<Vec<u8>>,
        stat: Stat,
    },
    GetAcl {
        acl: Vec<Acl>,
        stat: Stat,
    },
    GetChildren {
        children: Vec<String>,
    },
    GetChildren2 {
        children: Vec<String>,
        stat: Stat,
    },
    Sync {
        path: String,
    },
    Multi(Vec<MultiResult>),
    GetEphemerals {
        ephemerals: Vec<String>,
    },
    GetAllChildrenNumber {
        total: i32,
    },
    WhoAmI {
        client_info: Vec<ClientInfo>,
    },
    Sasl {
        token: Vec<u8>,
    },
    /// A watch notification (`ReplyHeader::xid` -1), whatever request is outstanding.
    Notification(WatcherEvent),
}

/// A watch notification body (after a `ReplyHeader` with xid -1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatcherEvent {
    pub event_type: i32,
    pub state: i32,
    pub path: String,
}
