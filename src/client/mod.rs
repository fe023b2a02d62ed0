//! An asynchronous ZooKeeper client over tokio: one session, one TCP connection at a time, pipelined
//! requests, watch notifications on a channel. Used by `volery shell` and meant for `volery bench`.
//!
//! A `Client` is a cheap handle (clone it freely) to a session task that owns the socket. Requests
//! go to the task over a bounded channel; the task encodes everything that is waiting into one
//! buffer and writes it in one go, so many concurrent callers share few syscalls. Replies come back
//! in request order (ZooKeeper answers a session's requests in xid order) and are matched to their
//! callers by xid. No task is spawned per request.
//!
//! When the connection breaks, outstanding requests fail with `ClientError::ConnectionLoss`, a
//! `Disconnected` event is delivered, and the task reconnects to the next host of the list with the
//! same session id and password, re-sending its watches (setWatches2) and credentials. A server
//! answering the reconnect with timeout 0 means the session expired: an `Expired` event, and every
//! later request fails with `ClientError::SessionExpired`.
mod connection;
mod watches;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::{
    AddWatchMode, AddWatchRequest, AuthPacket, CreateMode, CreateRequest, DecodeError,
    DeleteRequest, ErrorCode, EventType, FrameError, KeeperState, OpCode, PathRequest,
    PathWatchRequest, Request, Response, SetAclRequest, SetDataRequest, Stat, WatcherType,
    WatchesRequest,
};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};

pub use protocol::{Acl, ClientInfo, Id};
pub use watches::WatchRegistry;

use connection::{Session, Submit};

/// ZooKeeper's client default session timeout in zkCli (`-timeout`), in milliseconds.
pub const DEFAULT_SESSION_TIMEOUT_MS: i32 = 30_000;
/// Requests in flight on one connection before callers wait.
pub const DEFAULT_MAX_PENDING: usize = 10_000;
/// Capacity of the queue between callers and the session task.
const SUBMIT_QUEUE: usize = 1024;

/// How to reach the ensemble and what session to ask for.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `host:port` strings, tried in order starting with the first.
    pub hosts: Vec<String>,
    /// Requested session timeout in milliseconds; the server may negotiate it.
    pub session_timeout_ms: i32,
    /// The ConnectRequest's readOnly byte: accept a read-only server.
    pub read_only: bool,
    /// Bound on requests sent and not yet answered.
    pub max_pending: usize,
    /// Largest reply frame accepted (jute.maxbuffer).
    pub max_frame: usize,
}

impl ClientOptions {
    /// Options for a zkCli-style connect string `host:port[,host:port...]`. A chroot suffix
    /// (`host:port/app`) is not supported and is an error.
    pub fn from_connect_string(s: &str) -> Result<ClientOptions, ClientError> {
        if s.contains('/') {
            return Err(ClientError::BadConnectString(s.to_owned()));
        }
        let hosts: Vec<String> = s
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| {
                if h.rsplit_once(':')
                    .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
                {
                    h.to_owned()
                } else {
                    format!("{h}:2181")
                }
            })
            .collect();
        if hosts.is_empty() {
            return Err(ClientError::BadConnectString(s.to_owned()));
        }
        Ok(ClientOptions {
            hosts,
            session_timeout_ms: DEFAULT_SESSION_TIMEOUT_MS,
            read_only: false,
            max_pending: DEFAULT_MAX_PENDING,
            max_frame: protocol::JUTE_MAXBUFFER,
        })
    }
}

/// The client side of a connection's life, as the Java client's `ZooKeeper.States` names it
/// (`Display` gives those names, e.g. `CONNECTED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Connecting,
    Connected,
    ConnectedReadOnly,
    AuthFailed,
    Closed,
}

impl State {
    /// Whether requests can still be made (the Java client's `isAlive`).
    pub fn is_alive(self) -> bool {
        !matches!(self, State::Closed | State::AuthFailed)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Connecting => "CONNECTING",
            State::Connected => "CONNECTED",
            State::ConnectedReadOnly => "CONNECTEDREADONLY",
            State::AuthFailed => "AUTH_FAILED",
            State::Closed => "CLOSED",
        })
    }
}

/// A watch notification or a change of connection state. `Display` is the Java client's
/// `WatchedEvent.toString()`: `WatchedEvent state:SyncConnected type:None path:null`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedEvent {
    pub state: KeeperState,
    pub event_type: EventType,
    /// `None` for state changes.
    pub path: Option<String>,
}

impl fmt::Display for WatchedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WatchedEvent state:{:?} type:{:?} path:{}",
            self.state,
            self.event_type,
            self.path.as_deref().unwrap_or("null")
        )
    }
}

/// A raw answer: the reply header's zxid and error code, and the body if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub zxid: i64,
    /// An `ErrorCode` number; 0 is success.
    pub err: i32,
    pub response: Option<Response>,
}

/// The session as last negotiated.
#[derive(Debug, Clone, Default)]
pub struct SessionInfo {
    pub session_id: i64,
    pub passwd: Vec<u8>,
    pub timeout_ms: i32,
    /// The `host:port` of the server currently (or last) connected.
    pub server: String,
}

/// Why a request or a connect failed. A ZooKeeper error code answered by the server is
/// `ClientError::Keeper`; the others are the client's own.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClientError {
    /// The server answered with a non-zero error code.
    #[error("KeeperErrorCode = {}", code_name(*.0))]
    Keeper(i32),
    /// The connection broke before the reply came; the request may or may not have been applied.
    #[error("KeeperErrorCode = ConnectionLoss")]
    ConnectionLoss,
    #[error("KeeperErrorCode = Session expired")]
    SessionExpired,
    /// The session was closed by `close`.
    #[error("the session is closed")]
    Closed,
    /// No server of the list completed a handshake within the connect timeout.
    #[error("cannot connect to any of {0}")]
    NoServer(String),
    #[error("bad connect string {0:?} (expected host:port[,host:port...])")]
    BadConnectString(String),
    #[error("i/o: {0}")]
    Io(String),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The server answered with a body of the wrong kind for the request.
    #[error("unexpected reply {0}")]
    UnexpectedReply(String),
}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> ClientError {
        ClientError::Io(e.to_string())
    }
}

impl ClientError {
    /// The ZooKeeper error code this stands for, if any.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Keeper(c) => ErrorCode::from_i32(*c),
            ClientError::ConnectionLoss => Some(ErrorCode::ConnectionLoss),
            ClientError::SessionExpired => Some(ErrorCode::SessionExpired),
            _ => None,
        }
    }
}

/// `KeeperException.Code`'s message text for a code number (`getCodeMessage`).
pub fn code_name(code: i32) -> String {
    let Some(c) = ErrorCode::from_i32(code) else {
        return format!("Unknown error {code}");
    };
    match c {
        ErrorCode::Ok => "ok",
        ErrorCode::SystemError => "SystemError",
        ErrorCode::RuntimeInconsistency => "RuntimeInconsistency",
        ErrorCode::DataInconsistency => "DataInconsistency",
        ErrorCode::ConnectionLoss => "ConnectionLoss",
        ErrorCode::MarshallingError => "MarshallingError",
        ErrorCode::Unimplemented => "Unimplemented",
        ErrorCode::OperationTimeout => "OperationTimeout",
        ErrorCode::BadArguments => "BadArguments",
        ErrorCode::UnknownSession => "Unknown session",
        ErrorCode::NewConfigNoQuorum => "NewConfigNoQuorum",
        ErrorCode::ReconfigInProgress => "ReconfigInProgress",
        ErrorCode::ApiError => "APIError",
        ErrorCode::NoNode => "NoNode",
        ErrorCode::NoAuth => "NoAuth",
        ErrorCode::BadVersion => "BadVersion",
        ErrorCode::NoChildrenForEphemerals => "NoChildrenForEphemerals",
        ErrorCode::NodeExists => "NodeExists",
        ErrorCode::NotEmpty => "Directory not empty",
        ErrorCode::SessionExpired => "Session expired",
        ErrorCode::InvalidCallback => "Invalid callback",
        ErrorCode::InvalidAcl => "InvalidACL",
        ErrorCode::AuthFailed => "AuthFailed",
        ErrorCode::SessionMoved => "Session moved",
        ErrorCode::NotReadOnly => "Not a read-only call",
        ErrorCode::EphemeralOnLocalSession => "Ephemeral node on local session",
        ErrorCode::NoWatcher => "No such watcher",
        ErrorCode::RequestTimeout => "Request timeout",
        ErrorCode::ReconfigDisabled => "Reconfig is disabled",
        ErrorCode::SessionClosedRequireSaslAuth => {
            "Session closed because client failed to authenticate"
        }
        ErrorCode::QuotaExceeded => "Quota has exceeded",
        ErrorCode::Throttled => "Op throttled due to high load",
    }
    .to_owned()
}

/// A handle to one ZooKeeper session. Cloning shares the session; the session is closed by
/// `close` or when every handle is dropped.
#[derive(Clone)]
pub struct Client {
    tx: mpsc::Sender<Submit>,
    state: watch::Receiver<State>,
    watches: Arc<Mutex<WatchRegistry>>,
    info: Arc<Mutex<SessionInfo>>,
}

/// The receiving end of a session's events: watch notifications and state changes, in the order
/// the session saw them.
pub type Events = mpsc::UnboundedReceiver<WatchedEvent>;

impl Client {
    /// Starts a session task and returns at once; requests made before the handshake completes
    /// wait for it. Must be called inside a tokio runtime.
    pub fn start(opts: ClientOptions) -> (Client, Events) {
        // Unbounded: notifications are bounded by the watches this session set, and the session
        // task must never block on a slow reader of events.
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        (Client::start_with_events(opts, ev_tx), ev_rx)
    }

    /// `start`, delivering events on `ev_tx` (several sessions may share one channel). An event
    /// is always sent before the reply of any request the server answered after it.
    pub fn start_with_events(
        opts: ClientOptions,
        ev_tx: mpsc::UnboundedSender<WatchedEvent>,
    ) -> Client {
        let (tx, rx) = mpsc::channel(SUBMIT_QUEUE);
        let (state_tx, state_rx) = watch::channel(State::Connecting);
        let watches = Arc::new(Mutex::new(WatchRegistry::default()));
        let info = Arc::new(Mutex::new(SessionInfo::default()));
        let session = Session {
            opts,
            session_id: 0,
            passwd: Vec::new(),
            timeout_ms: 0,
            last_zxid: 0,
            next_xid: 0,
            watches: watches.clone(),
            auth: Vec::new(),
            events: ev_tx,
            state: state_tx,
            info: info.clone(),
        };
        tokio::spawn(session.run(rx));
        Client {
            tx,
            state: state_rx,
            watches,
            info,
        }
    }

    /// Starts a session and waits until it is connected, at most `wait`. On timeout the session
    /// is abandoned and `ClientError::NoServer` returned.
    pub async fn connect(
        opts: ClientOptions,
        wait: Duration,
    ) -> Result<(Client, Events), ClientError> {
        let hosts = opts.hosts.join(",");
        let (client, events) = Client::start(opts);
        let mut state = client.state.clone();
        let ok = tokio::time::timeout(wait, async {
            loop {
                let s = *state.borrow_and_update();
                match s {
                    State::Connected | State::ConnectedReadOnly => return true,
                    State::Closed | State::AuthFailed => return false,
                    State::Connecting => {}
                }
                if state.changed().await.is_err() {
                    return false;
                }
            }
        })
        .await;
        match ok {
            Ok(true) => Ok((client, events)),
            _ => Err(ClientError::NoServer(hosts)),
        }
    }

    pub fn state(&self) -> State {
        *self.state.borrow()
    }

    /// The session as negotiated by the last handshake.
    pub fn session(&self) -> SessionInfo {
        self.info.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A copy of the watches this session has set.
    pub fn watches(&self) -> WatchRegistry {
        self.watches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sends `req` and waits for its answer, whatever its error code.
    pub async fn request(&self, req: Request) -> Result<Reply, ClientError> {
        let (tx, rx) = oneshot::channel();
        let submit = Submit {
            req,
            reply: Some(tx),
        };
        if self.tx.send(submit).await.is_err() {
            return Err(self.gone());
        }
        rx.await.unwrap_or_else(|_| Err(self.gone()))
    }

    /// Why the session task no longer takes requests.
    fn gone(&self) -> ClientError {
        ClientError::Closed
    }

    /// Sends `req` and returns its body; a non-zero error code is `ClientError::Keeper`.
    pub async fn call(&self, req: Request) -> Result<Response, ClientError> {
        let r = self.request(req).await?;
        if r.err != 0 {
            return Err(ClientError::Keeper(r.err));
        }
        r.response
            .ok_or_else(|| ClientError::UnexpectedReply("no body".into()))
    }

    /// create2: returns the created path (with its sequence suffix) and its stat.
    pub async fn create(
        &self,
        path: &str,
        data: Option<&[u8]>,
        acl: Vec<Acl>,
        mode: CreateMode,
        ttl: Option<i64>,
    ) -> Result<(String, Stat), ClientError> {
        let op = if mode.is_container() {
            OpCode::CreateContainer
        } else if mode.is_ttl() {
            OpCode::CreateTtl
        } else {
            OpCode::Create2
        };
        let req = CreateRequest {
            path: path.to_owned(),
            data: data.map(<[u8]>::to_vec),
            acl,
            flags: mode.as_i32(),
            ttl: if mode.is_ttl() {
                Some(ttl.unwrap_or(0))
            } else {
                None
            },
        };
        match self.call(Request::Create { op, req }).await? {
            Response::Create2 { path, stat } => Ok((path, stat)),
            Response::Create { path } => Ok((path, Stat::default())),
            other => Err(unexpected(other)),
        }
    }

    pub async fn delete(&self, path: &str, version: i32) -> Result<(), ClientError> {
        self.call(Request::Delete(DeleteRequest {
            path: path.to_owned(),
            version,
        }))
        .await
        .map(drop)
    }

    /// `Ok(None)` when the node does not exist (with `watch`, an exist watch is then set).
    pub async fn exists(&self, path: &str, watch: bool) -> Result<Option<Stat>, ClientError> {
        let req = Request::Exists(PathWatchRequest {
            path: path.to_owned(),
            watch,
        });
        match self.call(req).await {
            Ok(Response::Stat(s)) => Ok(Some(s)),
            Ok(other) => Err(unexpected(other)),
            Err(ClientError::Keeper(c)) if c == ErrorCode::NoNode.as_i32() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn get_data(
        &self,
        path: &str,
        watch: bool,
    ) -> Result<(Option<Vec<u8>>, Stat), ClientError> {
        let req = Request::GetData(PathWatchRequest {
            path: path.to_owned(),
            watch,
        });
        match self.call(req).await? {
            Response::GetData { data, stat } => Ok((data, stat)),
            other => Err(unexpected(other)),
        }
    }

    pub async fn set_data(
        &self,
        path: &str,
        data: Option<&[u8]>,
        version: i32,
    ) -> Result<Stat, ClientError> {
        let req = Request::SetData(SetDataRequest {
            path: path.to_owned(),
            data: data.map(<[u8]>::to_vec),
            version,
        });
        match self.call(req).await? {
            Response::Stat(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    /// getChildren2: the children (in the server's order) and the node's stat.
    pub async fn get_children(
        &self,
        path: &str,
        watch: bool,
    ) -> Result<(Vec<String>, Stat), ClientError> {
        let req = Request::GetChildren2(PathWatchRequest {
            path: path.to_owned(),
            watch,
        });
        match self.call(req).await? {
            Response::GetChildren2 { children, stat } => Ok((children, stat)),
            other => Err(unexpected(other)),
        }
    }

    pub async fn get_acl(&self, path: &str) -> Result<(Vec<Acl>, Stat), ClientError> {
        let req = Request::GetAcl(PathRequest {
            path: path.to_owned(),
        });
        match self.call(req).await? {
            Response::GetAcl { acl, stat } => Ok((acl, stat)),
            other => Err(unexpected(other)),
        }
    }

    pub async fn set_acl(
        &self,
        path: &str,
        acl: Vec<Acl>,
        version: i32,
    ) -> Result<Stat, ClientError> {
        let req = Request::SetAcl(SetAclRequest {
            path: path.to_owned(),
            acl,
            version,
        });
        match self.call(req).await? {
            Response::Stat(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    pub async fn sync(&self, path: &str) -> Result<String, ClientError> {
        let req = Request::Sync(PathRequest {
            path: path.to_owned(),
        });
        match self.call(req).await? {
            Response::Sync { path } => Ok(path),
            other => Err(unexpected(other)),
        }
    }

    /// addauth: sent without waiting for an answer, as the Java client does; a rejected credential
    /// shows up as an `AuthFailed` event and the server closing the connection.
    pub async fn add_auth(&self, scheme: &str, auth: &[u8]) -> Result<(), ClientError> {
        let req = Request::Auth(AuthPacket {
            auth_type: 0,
            scheme: scheme.to_owned(),
            auth: auth.to_vec(),
        });
        self.request(req).await.map(drop)
    }

    pub async fn get_ephemerals(&self, prefix: &str) -> Result<Vec<String>, ClientError> {
        let req = Request::GetEphemerals(PathRequest {
            path: prefix.to_owned(),
        });
        match self.call(req).await? {
            Response::GetEphemerals { ephemerals } => Ok(ephemerals),
            other => Err(unexpected(other)),
        }
    }

    pub async fn get_all_children_number(&self, path: &str) -> Result<i32, ClientError> {
        let req = Request::GetAllChildrenNumber(PathRequest {
            path: path.to_owned(),
        });
        match self.call(req).await? {
            Response::GetAllChildrenNumber { total } => Ok(total),
            other => Err(unexpected(other)),
        }
    }

    pub async fn add_watch(&self, path: &str, mode: AddWatchMode) -> Result<(), ClientError> {
        let req = Request::AddWatch(AddWatchRequest {
            path: path.to_owned(),
            mode,
        });
        self.call(req).await.map(drop)
    }

    /// removeWatches for every watch of `kind` on `path`, as the Java client's `removeAllWatches`:
    /// `NoWatcher` (without asking the server) if this session set none; with `local`, the server
    /// is not asked at all. Returns the `*WatchRemoved` events it delivered on the event channel's
    /// behalf (the caller prints them; they are not sent on the channel).
    pub async fn remove_watches(
        &self,
        path: &str,
        kind: WatcherType,
        local: bool,
    ) -> Result<Vec<WatchedEvent>, ClientError> {
        let has = self
            .watches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(path, kind);
        if !has {
            return Err(ClientError::Keeper(ErrorCode::NoWatcher.as_i32()));
        }
        if !local {
            let req = Request::RemoveWatches(WatchesRequest {
                path: path.to_owned(),
                watcher_type: kind,
            });
            self.call(req).await?;
        }
        let removed = self
            .watches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(path, kind);
        Ok(removed
            .into_iter()
            .map(|event_type| WatchedEvent {
                state: KeeperState::SyncConnected,
                event_type,
                path: Some(path.to_owned()),
            })
            .collect())
    }

    pub async fn who_am_i(&self) -> Result<Vec<ClientInfo>, ClientError> {
        match self.call(Request::WhoAmI).await? {
            Response::WhoAmI { client_info } => Ok(client_info),
            other => Err(unexpected(other)),
        }
    }

    /// Closes the session (closeSession) and stops the task. Outstanding requests fail.
    pub async fn close(&self) -> Result<(), ClientError> {
        if !self.state().is_alive() {
            return Ok(());
        }
        match self.request(Request::CloseSession).await {
            Ok(_) | Err(ClientError::Closed) => {}
            Err(e) => return Err(e),
        }
        let mut state = self.state.clone();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while state.borrow_and_update().is_alive() {
                if state.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
        Ok(())
    }
}

fn unexpected(r: Response) -> ClientError {
    ClientError::UnexpectedReply(format!("{r:?}"))
}
