//! zkCli's commands (`ZooKeeperMain.processZKCmd` and `org.apache.zookeeper.cli.*`): same syntax,
//! same output, same error wording and exit codes. A command returns its output instead of
//! printing it, so the driver can print watch events that arrived before the reply first.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use protocol::{
    AddWatchMode, CreateMode, DeleteRequest, ErrorCode, MultiOp, MultiResult, Request, Response,
    WatcherType,
};
use tokio::sync::mpsc;

use super::format::{self, validate_path};
use super::parse::{flag, parse_options, split_line, valued, OptSpec, Parsed};
use crate::client::{code_name, Client, ClientError, ClientOptions, WatchedEvent};

/// Which stream a piece of output goes to. zkCli prints results on stdout, and errors, `Created`
/// lines and usage on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Out,
    Err,
}

/// The output of one command, in order.
#[derive(Debug, Default)]
pub struct Output {
    pub parts: Vec<(Stream, String)>,
}

impl Output {
    fn out(&mut self, s: impl Into<String>) {
        self.parts.push((Stream::Out, s.into()));
    }
    fn outln(&mut self, s: impl std::fmt::Display) {
        self.parts.push((Stream::Out, format!("{s}\n")));
    }
    fn errln(&mut self, s: impl std::fmt::Display) {
        self.parts.push((Stream::Err, format!("{s}\n")));
    }
}

/// What the driver does after a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Quit,
}

/// A failed command: zkCli's `CliException` message (printed on stderr) and exit code.
#[derive(Debug)]
struct CliError {
    message: String,
    code: i32,
}

impl CliError {
    fn new(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            code: 1,
        }
    }
}

/// zkCli's `CliWrapperException` wording of a failed request on `path`.
fn wrap(e: ClientError, path: &str) -> CliError {
    let msg = match e {
        ClientError::Keeper(c) => keeper_message(c, Some(path)),
        ClientError::ConnectionLoss => {
            keeper_message(ErrorCode::ConnectionLoss.as_i32(), Some(path))
        }
        ClientError::SessionExpired => {
            keeper_message(ErrorCode::SessionExpired.as_i32(), Some(path))
        }
        other => other.to_string(),
    };
    CliError::new(msg)
}

fn keeper_message(code: i32, path: Option<&str>) -> String {
    let p = path.unwrap_or("null");
    match ErrorCode::from_i32(code) {
        Some(ErrorCode::NoNode) => format!("Node does not exist: {p}"),
        Some(ErrorCode::NoChildrenForEphemerals) => format!("Ephemerals cannot have children: {p}"),
        Some(ErrorCode::NodeExists) => format!("Node already exists: {p}"),
        Some(ErrorCode::NotEmpty) => format!("Node not empty: {p}"),
        Some(ErrorCode::NotReadOnly) => format!("Not a read-only call: {p}"),
        Some(ErrorCode::InvalidAcl) => format!("Acl is not valid : {p}"),
        Some(ErrorCode::NoAuth) => format!("Insufficient permission : {p}"),
        Some(ErrorCode::BadArguments) => format!("Arguments are not valid : {p}"),
        Some(ErrorCode::BadVersion) => format!("version No is not valid : {p}"),
        Some(ErrorCode::QuotaExceeded) => format!("Quota has exceeded : {p}"),
        _ => match path {
            Some(p) => format!("KeeperErrorCode = {} for {p}", code_name(code)),
            None => format!("KeeperErrorCode = {}", code_name(code)),
        },
    }
}

const ADD_WATCH_USAGE: &str = "[-m mode] path # optional mode is one of [PERSISTENT, PERSISTENT_RECURSIVE] - default is PERSISTENT_RECURSIVE";
const RECONFIG_USAGE: &str = "[-s] [-v version] [[-file path] | [-members serverID=host:port1:port2;port3[,...]*]] | [-add serverId=host:port1:port2;port3[,...]]* [-remove serverId[,...]*]";

/// Every command zkCli 3.8 knows and its option string, sorted as `usage()` prints them.
pub const COMMANDS: &[(&str, &str)] = &[
    ("addWatch", ADD_WATCH_USAGE),
    ("addauth", "scheme auth"),
    ("close", ""),
    ("config", "[-c] [-w] [-s]"),
    ("connect", "host:port"),
    ("create", "[-s] [-e] [-c] [-t ttl] path [data] [acl]"),
    ("delete", "[-v version] path"),
    ("deleteall", "path [-b batch size]"),
    ("delquota", "[-n|-b|-N|-B] path"),
    ("get", "[-s] [-w] path"),
    ("getAcl", "[-s] path"),
    ("getAllChildrenNumber", "path"),
    ("getEphemerals", "path"),
    ("history", ""),
    ("listquota", "path"),
    ("ls", "[-s] [-w] [-R] path"),
    ("printwatches", "on|off"),
    ("quit", ""),
    ("reconfig", RECONFIG_USAGE),
    ("redo", "cmdno"),
    ("removewatches", "path [-c|-d|-a] [-l]"),
    ("set", "[-s] [-v version] path data"),
    ("setAcl", "[-s] [-v version] [-R] path acl"),
    ("setquota", "-n|-b|-N|-B val path"),
    ("stat", "[-w] path"),
    ("sync", "path"),
    ("version", ""),
    ("whoami", ""),
];

fn usage_str(cmd: &str) -> String {
    let opts = COMMANDS
        .iter()
        .find(|(c, _)| *c == cmd)
        .map_or("", |(_, o)| *o);
    format!("{cmd} {opts}")
}

/// `ZooKeeperMain.usage()`, printed on stderr.
pub fn usage() -> String {
    let mut s = String::from(
        "ZooKeeper -server host:port -client-configuration properties-file cmd args\n",
    );
    for (c, o) in COMMANDS {
        s.push_str(&format!("\t{c} {o}\n"));
    }
    s
}

/// The shell's state between lines: the session, the history, the printwatches switch.
pub struct Shell {
    /// Template for new sessions (`connect`); its hosts are replaced by the connect string.
    base: ClientOptions,
    /// The connect string of the current session, as zkCli's prompt shows it.
    pub host: String,
    pub client: Option<Client>,
    events: mpsc::UnboundedSender<WatchedEvent>,
    history: BTreeMap<usize, String>,
    pub command_count: usize,
    /// Shared with the driver, which prints events only while this is on.
    pub print_watches: Arc<AtomicBool>,
    pub exit_code: i32,
}

impl Shell {
    pub fn new(base: ClientOptions, events: mpsc::UnboundedSender<WatchedEvent>) -> Shell {
        Shell {
            base,
            host: String::new(),
            client: None,
            events,
            history: BTreeMap::new(),
            command_count: 0,
            print_watches: Arc::new(AtomicBool::new(true)),
            exit_code: 0,
        }
    }

    /// zkCli's prompt: `[zk: 127.0.0.1:2181(CONNECTED) 0] `.
    pub fn prompt(&self) -> String {
        let state = self
            .client
            .as_ref()
            .map_or_else(|| "CLOSED".to_owned(), |c| c.state().to_string());
        format!("[zk: {}({}) {}] ", self.host, state, self.command_count)
    }

    /// `connectToZK`: closes a live session, then starts a new one for `host` (without waiting).
    pub async fn connect_to(&mut self, host: &str) -> Result<(), String> {
        if let Some(c) = self.client.take() {
            if c.state().is_alive() {
                let _ = c.close().await;
            }
        }
        self.host = host.to_owned();
        let mut opts = ClientOptions::from_connect_string(host).map_err(|e| e.to_string())?;
        opts.session_timeout_ms = self.base.session_timeout_ms;
        opts.read_only = self.base.read_only;
        self.client = Some(Client::start_with_events(opts, self.events.clone()));
        Ok(())
    }

    /// `executeLine`: a non-empty line is recorded in the history and run.
    pub async fn execute_line(&mut self, line: &str) -> (Output, Flow) {
        let mut out = Output::default();
        if line.is_empty() {
            return (out, Flow::Continue);
        }
        let words = split_line(line);
        self.history.insert(self.command_count, line.to_owned());
        let flow = self.process_cmd(words, &mut out).await;
        self.command_count += 1;
        (out, flow)
    }

    /// Runs the words given on the command line (`volery shell -server h ls /`): not recorded.
    pub async fn execute_words(&mut self, words: Vec<String>) -> (Output, Flow) {
        let mut out = Output::default();
        let flow = self.process_cmd(words, &mut out).await;
        (out, flow)
    }

    /// `processCmd`: the exit code follows the last command.
    async fn process_cmd(&mut self, words: Vec<String>, out: &mut Output) -> Flow {
        let mut words = words;
        // `redo n` runs history entry n in its place (once: redoing a redo is refused).
        if words.first().map(String::as_str) == Some("redo") && words.len() >= 2 {
            match self.redo_target(&words[1]) {
                Ok(line) => {
                    self.history.insert(self.command_count, line.clone());
                    words = split_line(&line);
                }
                Err(e) => {
                    self.exit_code = e.code;
                    out.errln(e.message);
                    return Flow::Continue;
                }
            }
        }
        match self.process_zk_cmd(&words, out).await {
            Ok(flow) => {
                self.exit_code = 0;
                flow
            }
            Err(e) => {
                self.exit_code = e.code;
                out.errln(e.message);
                Flow::Continue
            }
        }
    }

    fn redo_target(&self, arg: &str) -> Result<String, CliError> {
        let i = parse_java_int(arg).ok_or_else(|| {
            CliError::new(format!(
                "java.lang.NumberFormatException: For input string: \"{arg}\""
            ))
        })?;
        if i < 0 || i as usize >= self.command_count {
            return Err(CliError::new("Command index out of range"));
        }
        let line = self.history.get(&(i as usize)).cloned().unwrap_or_default();
        if split_line(&line).first().map(String::as_str) == Some("redo") {
            return Err(CliError::new("No redoing redos"));
        }
        Ok(line)
    }

    async fn process_zk_cmd(
        &mut self,
        args: &[String],
        out: &mut Output,
    ) -> Result<Flow, CliError> {
        let Some(cmd) = args.first().map(String::as_str) else {
            out.parts.push((Stream::Err, usage()));
            return Err(CliError::new("No command entered"));
        };
        if !COMMANDS.iter().any(|(c, _)| *c == cmd) {
            out.parts.push((Stream::Err, usage()));
            return Err(CliError {
                message: format!("Command not found: Command not found {cmd}"),
                code: 127,
            });
        }
        match cmd {
            "quit" => {
                if let Some(c) = &self.client {
                    let _ = c.close().await;
                }
                return Ok(Flow::Quit);
            }
            "history" => {
                let from = self.command_count.saturating_sub(10);
                for i in from..=self.command_count {
                    let line = self.history.get(&i).map_or("null", String::as_str);
                    out.outln(format!("{i} - {line}"));
                }
            }
            "printwatches" => {
                if args.len() == 1 {
                    let on = self.print_watches.load(Ordering::Relaxed);
                    out.outln(format!("printwatches is {}", if on { "on" } else { "off" }));
                } else {
                    self.print_watches.store(args[1] == "on", Ordering::Relaxed);
                }
            }
            "connect" => {
                let host = args.get(1).cloned().unwrap_or_else(|| self.host.clone());
                self.connect_to(&host).await.map_err(CliError::new)?;
            }
            _ => {}
        }
        let Some(client) = self.client.clone().filter(|c| c.state().is_alive()) else {
            out.outln("Not connected");
            return Ok(Flow::Continue);
        };
        let c = &client;
        match cmd {
            "ls" => ls(c, args, out).await?,
            "create" => create(c, args, out).await?,
            "get" => get(c, args, out).await?,
            "set" => set(c, args, out).await?,
            "stat" => stat(c, args, out).await?,
            "delete" => delete(c, args, out).await?,
            "deleteall" => deleteall(c, args, out).await?,
            "sync" => sync(c, args, out).await?,
            "getAcl" => get_acl(c, args, out).await?,
            "setAcl" => set_acl(c, args, out).await?,
            "addauth" => add_auth(c, args).await?,
            "getEphemerals" => get_ephemerals(c, args, out).await?,
            "getAllChildrenNumber" => get_all_children_number(c, args, out).await?,
            "addWatch" => add_watch(c, args).await?,
            "removewatches" => remove_watches(c, args, out).await?,
            "whoami" => who_am_i(c, out).await?,
            "config" => config(c, args, out).await?,
            "version" => {
                opts(args, &[])?;
                out.outln(format!(
                    "ZooKeeper CLI version: volery {}",
                    env!("CARGO_PKG_VERSION")
                ));
            }
            "close" => {
                let _ = c.close().await;
            }
            "setquota" | "listquota" | "delquota" | "reconfig" => {
                return Err(CliError::new(format!(
                    "{cmd} is not supported by volery shell"
                )));
            }
            _ => {}
        }
        Ok(Flow::Continue)
    }
}

/// `Integer.decode`: decimal, `0x`/`#` hex, leading-zero octal, optional sign.
fn parse_java_int(s: &str) -> Option<i32> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let v = if let Some(h) = body
        .strip_prefix("0x")
        .or_else(|| body.strip_prefix("0X"))
        .or_else(|| body.strip_prefix('#'))
    {
        i64::from_str_radix(h, 16).ok()?
    } else if body.len() > 1 && body.starts_with('0') {
        i64::from_str_radix(&body[1..], 8).ok()?
    } else {
        body.parse::<i64>().ok()?
    };
    i32::try_from(if neg { -v } else { v }).ok()
}

fn opts(args: &[String], specs: &[OptSpec]) -> Result<Parsed, CliError> {
    parse_options(args, specs).map_err(CliError::new)
}

/// `Integer.parseInt` of a `-v` value; zkCli lets the NumberFormatException escape, which we word
/// as Java does.
fn version_opt(p: &Parsed) -> Result<i32, CliError> {
    match p.value('v') {
        None => Ok(-1),
        Some(v) => v.parse::<i32>().map_err(|_| {
            CliError::new(format!(
                "java.lang.NumberFormatException: For input string: \"{v}\""
            ))
        }),
    }
}

fn check_path(path: &str) -> Result<(), CliError> {
    validate_path(path, false).map_err(CliError::new)
}

/// The deprecated `cmd path watch` form: a third word turns into `-w`, with zkCli's warning.
fn retain_compat(
    args: &[String],
    specs: &[OptSpec],
    parsed: Parsed,
    warning: &str,
    out: &mut Output,
) -> Result<Parsed, CliError> {
    if parsed.args.len() <= 2 {
        return Ok(parsed);
    }
    let mut words = args.to_vec();
    if words.len() > 2 {
        words[2] = "-w".into();
    }
    out.errln(warning);
    opts(&words, specs)
}

async fn ls(c: &Client, args: &[String], out: &mut Output) -> Result<(), CliError> {
    const SPECS: &[OptSpec] = &[flag('?'), flag('s'), flag('w'), flag('R')];
    let p = opts(args, SPECS)?;
    let p = retain_compat(
        args,
        SPECS,
        p,
        "'ls path [watch]' has been deprecated. Please use 'ls [-w] path' instead.",
        out,
    )?;
    if p.has('?') {
        out.outln("usage: ls [options] path\n -?   help\n -R   recurse\n -s   stat\n -w   watch");
    }
    let Some(path) = p.args.get(1) else {
        return Err(CliError::new(usage_str("ls")));
    };
    let watch = p.has('w');
    check_path(path)?;
    if p.has('R') {
        // ZKUtil.visitSubTreeDFS: the root, then each node's sorted children before their subtrees.
        c.get_data(path, watch).await.map_err(|e| wrap(e, path))?;
        out.outln(path);
        visit_subtree(c, path, watch, out)
            .await
            .map_err(|e| wrap(e, path))?;
        return Ok(());
    }
    let (mut children, stat) = c
        .get_children(path, watch)
        .await
        .map_err(|e| wrap(e, path))?;
    children.sort();
    out.outln(format!("[{}]", children.join(", ")));
    if p.has('s') {
        out.out(format::stat(&stat));
    }
    Ok(())
}

async fn visit_subtree(
    c: &Client,
    root: &str,
    watch: bool,
    out: &mut Output,
) -> Result<(), ClientError> {
    // Iterative form of visitSubTreeDFSHelper: a stack of nodes whose children are still to list.
    let mut stack = vec![root.to_owned()];
    while let Some(path) = stack.pop() {
        let mut children = match c.get_children(&path, watch).await {
            Ok((ch, _)) => ch,
            Err(ClientError::Keeper(code)) if code == ErrorCode::NoNode.as_i32() => continue,
            Err(e) => return Err(e),
        };
        children.sort();
        let prefix = if path == "/" {
            "/".to_owned()
        } else {
            format!("{path}/")
        };
        for ch in &children {
            out.outln(format!("{prefix}{ch}"));
        }
        for ch in children.iter().rev() {
            stack.push(format!("{prefix}{ch}"));
        }
    }
    Ok(())
}

async fn create(c: &Client, args: &[String], out: &mut Output) -> Result<(), CliError> {
    let p = opts(args, &[flag('e'), flag('s'), flag('c'), valued('t')])?;
    if p.args.len() < 2 {
        return Err(CliError::new(usage_str("create")));
    }
    let (e, s, ct, t) = (p.has('e'), p.has('s'), p.has('c'), p.has('t'));
    if ct && (e || s) {
        return Err(CliError::new(
            "-c cannot be combined with -s or -e. Containers cannot be ephemeral or sequential.",
        ));
    }
    let ttl = match p.value('t') {
        Some(v) => v
            .parse::<i64>()
            .map_err(|_| CliError::new("-t argument must be a long value"))?,
        None => 0,
    };
    if t && e {
        return Err(CliError::new("TTLs cannot be used with Ephemeral znodes"));
    }
    if t && ct {
        return Err(CliError::new("TTLs cannot be used with Container znodes"));
    }
    let mode = match (e, s, ct, t) {
        (true, true, _, _) => CreateMode::EphemeralSequential,
        (true, false, _, _) => CreateMode::Ephemeral,
        (false, true, _, true) => CreateMode::PersistentSequentialWithTtl,
        (false, true, _, false) => CreateMode::PersistentSequential,
        (false, false, true, _) => CreateMode::Container,
        (false, false, false, true) => CreateMode::PersistentWithTtl,
        (false, false, false, false) => CreateMode::Persistent,
    };
    // EphemeralType.TTL.toEphemeralOwner: 0 < ttl <= 0xFFFFFFFFFF.
    if t && (ttl <= 0 || ttl > 0xFF_FFFF_FFFF) {
        return Err(CliError::new(format!(
            "ttl must be positive and cannot be larger than: {}",
            0xFF_FFFF_FFFFi64
        )));
    }
    let path = &p.args[1];
    let data = p.args.get(2).map(|d| d.as_bytes().to_vec());
    let acl = match p.args.get(3) {
        Some(a) => {
            let (acl, errors) = format::parse_acl(a);
            for e in errors {
                out.errln(e);
            }
            acl
        }
        None => format::open_acl_unsafe(),
    };
    validate_path(path, mode.is_sequential()).map_err(CliError::new)?;
    if acl.is_empty() {
        // ZooKeeper.validateACL, client side, before anything is sent.
        out.errln("KeeperErrorCode = InvalidACL");
        return Err(CliError::new("Acl is not valid : null"));
    }
    match c
        .create(path, data.as_deref(), acl, mode, t.then_some(ttl))
        .await
    {
        Ok((created, _)) => {
            out.errln(format!("Created {created}"));
            Ok(())
        }
        Err(err) => {
            match err.code() {
                Some(ErrorCode::EphemeralOnLocalSession) => {
                    out.errln("Unable to create ephemeral node on a local session")
                }
                Some(ErrorCode::InvalidAcl) => out.errln(
                    keeper_message(ErrorCode::InvalidAcl.as_i32(), Some(path))
                        .replace("Acl is not valid : ", "KeeperErrorCode = InvalidACL for "),
                ),
                _ => {}
            }
            Err(wrap(err, path))
        }
    }
}

async fn get(c: &Client, args: &[String], out: &mut Output) -> Result<(), CliError> {
    const SPECS: &[OptSpec] = &[flag('s'), flag('w')];
    let p = opts(args, SPECS)?;
    if p.args.len() < 2 {
        return Err(CliError::new(usage_str("get")));
    }
    let p = retain_compat(
        args,
        SPECS,
        p,
        "'get path [watch]' has been deprecated. Please use 'get [-s] [-w] path' instead.",
        out,
    )?;
    let path = &p.args[1];
    check_path(path)?;
    let (data, stat) = c
        .get_data(path, p.has('w'))
        .await
        .map_err(|e| wrap(e, path))?;
    match data {
        Some(d) => out.outln(String::from_utf8_lossy(&d)),
        None => out.outln("null"),
    }
    if p.has('s') {
        out.out(format::stat(&stat));
    }
    Ok(())
}

async fn set(c: &Client, args: &[String], out: &mut Output) -> Result<(), CliError> {
    let p = opts(args, &[flag('s'), valued('v')])?;
    if p.args.len() < 3 {
        return Err(CliError::new(usage_str("set")));
    }
    let path = &p.args[1];
    let version = version_opt(&p)?;
    check_path(path)?;
    let stat = c
        .set_data(path, Some(p.args[2].as_bytes()), version)
        .await
        .map_err(|e| wrap(e, path))?;
    if p.has('s') {
        out.out(format::stat(&stat));
    }
    Ok(())
}

async fn stat(c: &Client, args: &[String], out: &mut Output) -> Result<(), CliError> {
    const SPECS: &[OptSpec] = &[flag('w')];
    let p = opts(args, SPECS)?;
    if p.args.len() < 2 {
        return Err(CliError::new(usage_str("stat")));
    }
    let p = retain_compat(
        args,
        SPECS,
        p,
        "'stat path [watch]' has been deprecated. Please use 'stat [-w] path' instead.",
        out,
    )?;
    let path = &p.args[1];
    check_path(path)?;
    match c
        .exists(path, p.has('w'))
        .await
        .map_err(|e| wrap(e, path))?
    {
        Some(s) => {
            out.out(format::stat(&s));
            Ok(())
        }
        None => Err(CliError::new(format!("Node does not exist: {path}"))),
    }
}

async fn delete(c: &Client, args: &[String], out: &mut Output) -> Result<(), CliError> {
    let p = opts(args, &[valued('v')])?;
    if p.args.len() < 2 {
        return Err(CliError::new(usage_str("delete")));
    }
    if p.args.len() > 2 {
        out.errln("'delete path [version]' has been deprecated. Please use 'delete [-v version] path' instead.");
    }
    let path = &p.args[1];
    let version = version_opt(&p)?;
    check_path(path)?;
    c.delete(path, version).await.map_err(|e| wrap(e, path))
}

async fn deleteall(c: &Client, args: &[String], out: &mut Output) -> Result<(), CliError> {
    let p = opts(args, &[valued('b')])?;
    if p.args.len() < 2 {
        return Err(CliError::new(usage_str("deleteall")));
    }
    let batch = match p.value('b') {
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|b| *b > 0)
            .ok_or_else(|| CliError::new("-b argument must be an int value"))?,
        None => 1000,
    };
    let path = &p.args[1];
    check_path(path)?;
    // ZKUtil.listSubTreeBFS, then deleteInBatch: leaves first, `batch` deletes per multi.
    let mut tree = vec![path.clone()];
    let mut queue = VecDeque::from([path.clone()]);
    while let Some(node) = queue.pop_front() {
        let (children, _) = c
            .get_children(&node, false)
            .await
            .map_err(|e| wrap(e, path))?;
        for ch in children {
            let child = if node == "/" {
                format!("/{ch}")
            } else {
                format!("{node}/{ch}")
            };
            queue.push_back(child.clone());
            tree.push(child);
        }
    }
    let mut ok = true;
    let deletes: Vec<MultiOp> = tree
        .iter()
        .rev()
        .map(|p| {
            MultiOp::Delete(DeleteRequest {
                path: p.clone(),
                version: -1,
            })
        })
        .collect();
    for chunk in deletes.chunks(batch) {
        match c.request(Request::Multi(chunk.to_vec())).await {
            Ok(r) => {
                let failed = r.err != 0
                    || matches!(&r.response, Some(Response::Multi(rs))
                        if rs.iter().any(|x| matches!(x, MultiResult::Error { err } if *err != 0)));
                if failed {
                    ok = false;
                    break;
                }
            }
            Err(e) => return Err(wrap(e, path)),
        }
    }
    if !ok {
        out.errln("Failed to delete some node(s) in the subtree!");
    }
    Ok(())
}

async fn sync(c: &Client, args: &[String], out: &mut Output) -> Result<(), CliError> {
    let p = opts(args, &[])?;
    if p.args.len() < 2 {
        return Err(CliError::new(usage_str("sync")));
    }
    let path = &p.args[1];
    check_path(path)?;
    match c.sync(path).await {
        Ok(_) => out.outln("Sync is OK"),
        Err(ClientError::Keeper(code)) => out.outln(format!("Sync has failed. rc={code}")),
        Err(e) => return Err(wrap(e, path)),
    }
    Ok(())
}

async fn get_acl(c: &Client, args: &[String], out: &mut Output) -> Result<(), CliError> {
    let p = opts(args, &[flag('s')])?;
    if p.args.len() < 2 {
        return Err(CliError::new(usage_str("getAcl")));
    }
    let path = &p.args[1];
    check_path(path)?;
    let (acl, stat) = c.get_acl(path).await.map_err(|e| wrap(e, path))?;
    for a in &acl {
        out.outln(format!(
            "{}: {}",
            format::id_csv(&a.id),
            format::perm_string(a.perms)
        ));
    }
    if p.has('s') {
        out.out(format::stat(&stat));
    }
    Ok(())
}

async fn set_acl(c: &Client, args: &[String], out: &mut Output) -> Result<(), CliError> {
    let p = opts(args, &[flag('s'), valued('v'), flag('R')])?;
    if p.args.len() < 3 {
        return Err(CliError::new(usage_str("setAcl")));
    }
    let path = &p.args[1];
    let (acl, errors) = format::parse_acl(&p.args[2]);
    for e in errors {
        out.errln(e);
    }
    let version = version_opt(&p)?;
    check_path(path)?;
    if p.has('R') {
        // visitSubTreeDFS: the root, then children level by level; a failure is printed (without a
        // newline, as zkCli does) and the walk goes on.
        let mut nodes = Vec::new();
        c.get_data(path, false).await.map_err(|e| wrap(e, path))?;
        nodes.push(path.clone());
        let mut listing = Output::default();
        visit_subtree(c, path, false, &mut listing)
            .await
            .map_err(|e| wrap(e, path))?;
        nodes.extend(
            listing
                .parts
                .into_iter()
                .map(|(_, s)| s.trim_end().to_owned()),
        );
        for n in nodes {
            if let Err(e) = c.set_acl(&n, acl.clone(), version).await {
                let msg = match e {
                    ClientError::Keeper(code) => keeper_message_plain(code, &n),
                    other => other.to_string(),
                };
                out.out(msg);
            }
        }
        return Ok(());
    }
    let stat = c
        .set_acl(path, acl, version)
        .await
        .map_err(|e| wrap(e, path))?;
    if p.has('s') {
        out.out(format::stat(&stat));
    }
    Ok(())
}

/// `KeeperException.getMessage()`: `KeeperErrorCode = NoAuth for /a`.
fn keeper_message_plain(code: i32, path: &str) -> String {
    format!("KeeperErrorCode = {} for {path}", code_name(code))
}

async fn add_auth(c: &Client, args: &[String]) -> Result<(), CliError> {
    let p = opts(args, &[])?;
    if p.args.len() < 2 {
        return Err(CliError::new(usage_str("addauth")));
    }
    let auth = p
        .args
        .get(2)
        .map(|a| a.as_bytes().to_vec())
        .unwrap_or_default();
    c.add_auth(&p.args[1], &auth)
        .await
        .map_err(|e| CliError::new(e.to_string()))
}

async fn get_ephemerals(c: &Client, args: &[String], out: &mut Output) -> Result<(), CliError> {
    let p = opts(args, &[])?;
    let path = p.args.get(1).map_or("/", String::as_str);
    check_path(path)?;
    let eph = c.get_ephemerals(path).await.map_err(|e| wrap(e, path))?;
    out.outln(format!("[{}]", eph.join(", ")));
    Ok(())
}

async fn get_all_children_number(
    c: &Client,
    args: &[String],
    out: &mut Output,
) -> Result<(), CliError> {
    let p = opts(args, &[])?;
    let Some(path) = p.args.get(1) else {
        return Err(CliError::new(usage_str("getAllChildrenNumber")));
    };
    check_path(path)?;
    let n = c
        .get_all_children_number(path)
        .await
        .map_err(|e| wrap(e, path))?;
    out.outln(n);
    Ok(())
}

async fn add_watch(c: &Client, args: &[String]) -> Result<(), CliError> {
    let p = opts(args, &[valued('m')])?;
    if p.args.len() != 2 {
        return Err(CliError::new(usage_str("addWatch")));
    }
    let mode = match p.value('m').map(str::to_uppercase).as_deref() {
        None | Some("PERSISTENT_RECURSIVE") => AddWatchMode::PersistentRecursive,
        Some("PERSISTENT") => AddWatchMode::Persistent,
        Some(_) => return Err(CliError::new(usage_str("addWatch"))),
    };
    let path = &p.args[1];
    check_path(path)?;
    c.add_watch(path, mode).await.map_err(|e| wrap(e, path))
}

async fn remove_watches(c: &Client, args: &[String], out: &mut Output) -> Result<(), CliError> {
    let p = opts(args, &[flag('c'), flag('d'), flag('a'), flag('l')])?;
    if p.args.len() < 2 {
        return Err(CliError::new(usage_str("removewatches")));
    }
    let kind = if p.has('c') {
        WatcherType::Children
    } else if p.has('d') {
        WatcherType::Data
    } else {
        WatcherType::Any
    };
    let path = &p.args[1];
    check_path(path)?;
    match c.remove_watches(path, kind, p.has('l')).await {
        Ok(events) => {
            // Delivered to the default watcher by the Java client; printed like any event.
            for ev in events {
                out.outln(format!("\nWATCHER::\n\n{ev}"));
            }
            Ok(())
        }
        Err(ClientError::Keeper(code)) => Err(CliError::new(keeper_message_plain(code, path))),
        Err(e) => Err(wrap(e, path)),
    }
}

async fn who_am_i(c: &Client, out: &mut Output) -> Result<(), CliError> {
    let infos = c
        .who_am_i()
        .await
        .map_err(|e| CliError::new(e.to_string()))?;
    out.outln("Auth scheme: User");
    for i in infos {
        out.outln(format!("{}: {}", i.auth_scheme, i.user));
    }
    Ok(())
}

async fn config(c: &Client, args: &[String], out: &mut Output) -> Result<(), CliError> {
    let p = opts(args, &[flag('s'), flag('w'), flag('c')])?;
    let path = "/zookeeper/config";
    let (data, stat) = c
        .get_data(path, p.has('w'))
        .await
        .map_err(|e| CliError::new(e.to_string()))?;
    match data {
        Some(d) => out.outln(String::from_utf8_lossy(&d)),
        None => out.outln("null"),
    }
    if p.has('s') {
        out.out(format::stat(&stat));
    }
    Ok(())
}
