//! `volery shell` driven as a user drives zkCli.sh: a command on the command line, commands on
//! standard input, and an interactive session through a pseudo-terminal (`script` from
//! util-linux). Where Apache ZooKeeper's zkCli.sh is installed, the same command sequence is run
//! through it against the same server and the outputs are compared after normalising zxids,
//! times and session ids.
//!
//! The server comes from `common` (Volery, or a real ZooKeeper with
//! `VOLERY_TEST_REFERENCE=zookeeper`).
mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Server;

const ZKCLI: &str = "/usr/share/zookeeper/bin/zkCli.sh";
const DEADLINE: Duration = Duration::from_secs(60);

struct Run {
    stdout: String,
    stderr: String,
    code: i32,
}

/// Runs `program args`, feeding `stdin`, bounded by `DEADLINE`.
fn run(program: &str, args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let mut input = child.stdin.take().expect("stdin");
    let text = stdin.to_owned();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(text.as_bytes());
    });
    let out = Collector::start(child.stdout.take().expect("stdout"));
    let err = Collector::start(child.stderr.take().expect("stderr"));
    let code = wait_bounded(&mut child);
    writer.join().expect("stdin writer");
    Run {
        stdout: out.finish(),
        stderr: err.finish(),
        code,
    }
}

fn wait_bounded(child: &mut Child) -> i32 {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code().unwrap_or(-1);
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process did not exit within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads a stream on a thread into a shared string that tests can poll.
struct Collector {
    buf: Arc<Mutex<String>>,
    thread: std::thread::JoinHandle<()>,
}

impl Collector {
    fn start<R: Read + Send + 'static>(mut r: R) -> Collector {
        let buf = Arc::new(Mutex::new(String::new()));
        let b = buf.clone();
        let thread = std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = r.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                b.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        Collector { buf, thread }
    }

    fn text(&self) -> String {
        self.buf.lock().unwrap().clone()
    }

    /// Waits until the collected text contains `needle` after byte `from`; returns where it ends.
    fn wait_for(&self, needle: &str, from: usize) -> usize {
        let start = Instant::now();
        loop {
            let t = clean(&self.text());
            if let Some(i) = t.get(from..).and_then(|s| s.find(needle)) {
                return from + i + needle.len();
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "never saw {needle:?}; output so far:\n{t}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn finish(self) -> String {
        let _ = self.thread.join();
        Arc::try_unwrap(self.buf)
            .map(|m| m.into_inner().unwrap())
            .unwrap_or_default()
    }
}

/// Strips terminal escape sequences and carriage returns from pty output.
fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() || c == '~' {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\r' | '\x07' => {}
            c => out.push(c),
        }
    }
    out
}

fn volery() -> &'static str {
    env!("CARGO_BIN_EXE_volery")
}

fn shell(addr: &str, args: &[&str], stdin: &str) -> Run {
    let mut all = vec!["shell", "-server", addr];
    all.extend_from_slice(args);
    run(volery(), &all, stdin)
}

fn zkcli(addr: &str, args: &[&str], stdin: &str) -> Option<Run> {
    if !Path::new(ZKCLI).exists() {
        eprintln!("{ZKCLI} not installed: skipping the comparison with zkCli.sh");
        return None;
    }
    let mut all = vec!["-server", addr];
    all.extend_from_slice(args);
    Some(run(ZKCLI, &all, stdin))
}

/// Makes two runs comparable: the test root, zxids and session ids (hex), times, the digest
/// of `addauth`, and the JVM's logging noise.
fn normalise(s: &str, root: &str) -> String {
    s.lines()
        .filter(|l| !l.starts_with("SLF4J:"))
        .map(|l| {
            let l = l.replace(root, "ROOT");
            let l = hex_to_n(&l);
            if l.starts_with("ctime = ") || l.starts_with("mtime = ") {
                format!("{} = T", &l[..5])
            } else if l.starts_with("digest: ") {
                "digest: U".to_owned()
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// After `close`, zkCli.sh's event thread prints the Closed event while its main thread may
/// already print the next command's "Not connected": that line can land anywhere inside the
/// event's block, or just before it (both seen in CI). Puts it after the event, where a
/// sequential shell prints it.
/// Applied to zkCli.sh's output only: ours must print them in that order.
fn settle_close_race(out: String) -> String {
    let mut lines: Vec<&str> = out.lines().collect();
    const CLOSED: &str = "WatchedEvent state:Closed type:None path:null";
    let Some(event) = lines.iter().position(|l| *l == CLOSED) else {
        return out;
    };
    let block = event.saturating_sub(4)..event;
    if let Some(early) = lines[block.clone()]
        .iter()
        .position(|l| *l == "Not connected")
        .map(|i| block.start + i)
    {
        let line = lines.remove(early);
        lines.insert(event, line);
    }
    lines.join("\n")
}

fn hex_to_n(l: &str) -> String {
    let mut out = String::new();
    let mut rest = l;
    while let Some(i) = rest.find("0x") {
        out.push_str(&rest[..i]);
        out.push_str("0xN");
        rest = rest[i + 2..].trim_start_matches(|c: char| c.is_ascii_hexdigit());
    }
    out.push_str(rest);
    out
}

fn unique_root(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("/shell-{tag}-{}-{nanos}", std::process::id())
}

/// The sequence both shells run; `ROOT` is replaced by a fresh path per run.
const SCRIPT: &str = "\
create ROOT hello
create ROOT x
create ROOT/b
create -e ROOT/e1 eph
create -s ROOT/s- d
create -s ROOT/ d
ls ROOT
ls -s ROOT
get ROOT
get -s ROOT/b
set ROOT world
set -v 7 ROOT x
set -s ROOT again
stat ROOT/nope
stat ROOT
delete ROOT
delete ROOT/nope
getAcl ROOT
getAllChildrenNumber ROOT
getEphemerals ROOT
sync ROOT
whoami
ls -R ROOT
printwatches
printwatches off
printwatches
printwatches on
history
redo 6
create -c ROOT/cont
create -t 1000 ROOT/ttl x
create bad
ls nope
get ROOT/nope
bogus cmd
create ROOT/w 1
get -w ROOT/w
ls -w ROOT/w
stat -w ROOT/w
set ROOT/w 2
create ROOT/w/c
removewatches ROOT/w
addWatch ROOT/w
create ROOT/w/d
removewatches ROOT/w
removewatches ROOT/w
create ROOT/acl x world:anyone:r
getAcl -s ROOT/acl
set ROOT/acl y
create ROOT/acl2 x bad
ls -x ROOT
set -v ROOT
ls ROOT extra
create ROOT/x/y/z
create -e ROOT/e1/child
deleteall ROOT/b
addauth digest u:p
whoami
redo 99
close
ls ROOT
history
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_on_stdin_print_what_zkcli_prints() {
    let server = Server::start().await;
    let addr = server.addr();
    let root = unique_root("stdin");
    let ours = shell(&addr, &[], &SCRIPT.replace("ROOT", &root));

    // What zkCli prints, checked on our output alone so the test means something without zkCli.
    let out = normalise(&ours.stdout, &root);
    let err = normalise(&ours.stderr, &root);
    assert_eq!(ours.code, 0, "exit code of the last command (history)");
    assert!(out.starts_with("Connecting to "), "{out}");
    assert!(out.contains("WatchedEvent state:SyncConnected type:None path:null"));
    assert!(out.contains("[0000000003, b, e1, s-0000000002]"), "{out}");
    assert!(out.contains("\nhello\n"), "{out}");
    assert!(out.contains("cZxid = 0xN\nctime = T\nmZxid = 0xN"), "{out}");
    assert!(out.contains("WatchedEvent state:SyncConnected type:NodeDataChanged path:ROOT/w"));
    assert!(
        out.contains("WatchedEvent state:SyncConnected type:PersistentWatchRemoved path:ROOT/w")
    );
    assert!(out.contains("'world,'anyone\n: cdrwa"), "{out}");
    assert!(out.contains("printwatches is off"));
    assert!(out.contains("Sync is OK"));
    assert!(out.contains("WatchedEvent state:Closed type:None path:null\nNot connected"));
    for line in [
        "Created ROOT",
        "Node already exists: ROOT",
        "Created ROOT/s-0000000002",
        "version No is not valid : ROOT",
        "Node does not exist: ROOT/nope",
        "Node not empty: ROOT",
        "Path must start with / character",
        "Command not found: Command not found bogus",
        "Insufficient permission : ROOT/acl",
        "bad does not have the form scheme:id:perm",
        "Acl is not valid : null",
        "org.apache.commons.cli.UnrecognizedOptionException: Unrecognized option: -x",
        "set [-s] [-v version] path data",
        "'ls path [watch]' has been deprecated. Please use 'ls [-w] path' instead.",
        "Ephemerals cannot have children: ROOT/e1/child",
        "KeeperErrorCode = No such watcher for ROOT/w",
        "Command index out of range",
    ] {
        assert!(
            err.lines().any(|l| l == line),
            "no {line:?} on stderr:\n{err}"
        );
    }

    let theirs_root = unique_root("zkcli");
    let theirs = zkcli(&addr, &[], &SCRIPT.replace("ROOT", &theirs_root));
    if let Some(theirs) = theirs {
        assert_eq!(
            out,
            settle_close_race(normalise(&theirs.stdout, &theirs_root)),
            "stdout differs from zkCli.sh"
        );
        assert_eq!(
            err,
            normalise(&theirs.stderr, &theirs_root),
            "stderr differs from zkCli.sh"
        );
        assert_eq!(ours.code, theirs.code);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_line_command_runs_once_with_zkclis_exit_code() {
    let server = Server::start().await;
    let addr = server.addr();
    let root = unique_root("argv");
    let cases: Vec<(Vec<String>, i32)> = vec![
        (vec!["create".into(), root.clone(), "v1".into()], 0),
        (vec!["get".into(), root.clone()], 0),
        (vec!["ls".into(), "-s".into(), root.clone()], 0),
        (vec!["create".into(), root.clone()], 1),
        (vec!["ls".into(), format!("{root}/nope")], 1),
        (vec!["ls".into()], 1),
        (vec!["bogus".into()], 127),
        (
            vec!["delete".into(), "-v".into(), "3".into(), root.clone()],
            1,
        ),
        (vec!["deleteall".into(), root.clone()], 0),
    ];
    for (words, code) in cases {
        let args: Vec<&str> = words.iter().map(String::as_str).collect();
        let ours = shell(&addr, &args, "");
        assert_eq!(ours.code, code, "{words:?}: stderr {}", ours.stderr);
        assert!(
            !ours.stdout.contains("Welcome to ZooKeeper!"),
            "{words:?} must not read stdin"
        );
        if words[0] == "get" {
            assert!(ours.stdout.ends_with("v1\n"), "{}", ours.stdout);
        }
        if words[0] == "ls" && code == 1 && words.len() == 2 {
            assert_eq!(ours.stderr, format!("Node does not exist: {root}/nope\n"));
        }
        if words[0] == "bogus" {
            assert!(ours
                .stderr
                .ends_with("Command not found: Command not found bogus\n"));
            assert!(ours.stderr.contains("\tls [-s] [-w] [-R] path\n"));
        }
    }
    // The same failing command through zkCli.sh: same message, same exit code.
    let nope = format!("{root}/nope");
    if let Some(theirs) = zkcli(&addr, &["stat", &nope], "") {
        let ours = shell(&addr, &["stat", &nope], "");
        assert_eq!(ours.code, theirs.code);
        assert_eq!(
            normalise(&ours.stderr, &root),
            normalise(&theirs.stderr, &root)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_fired_by_another_client_is_printed_as_zkcli_prints_it() {
    let server = Server::start().await;
    let addr = server.addr();
    let root = unique_root("watch");
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(volery())
            .args(["shell", "-server", &addr])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("volery shell");
        let mut stdin = child.stdin.take().unwrap();
        let out = Collector::start(child.stdout.take().unwrap());
        let err = Collector::start(child.stderr.take().unwrap());
        writeln!(stdin, "create {root} 1").unwrap();
        err.wait_for(&format!("Created {root}"), 0);
        writeln!(stdin, "get -w {root}").unwrap();
        let at = out.wait_for("\n1\n", 0);
        let other = shell(&addr, &["set", &root, "2"], "");
        assert_eq!(other.code, 0, "{}", other.stderr);
        out.wait_for(
            &format!(
                "\nWATCHER::\n\nWatchedEvent state:SyncConnected type:NodeDataChanged path:{root}\n"
            ),
            at,
        );
        writeln!(stdin, "deleteall {root}").unwrap();
        writeln!(stdin, "quit").unwrap();
        drop(stdin);
        assert_eq!(wait_bounded(&mut child), 0);
        out.finish();
        err.finish();
    })
    .await
    .unwrap();
}

/// A terminal session in a detached tmux server of its own (tmux is the terminal: it answers the
/// cursor-position queries a line editor makes, which a bare pty would not).
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(cmd: &str) -> Tmux {
        let socket = format!("volery-shell-test-{}", std::process::id());
        let status = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "new-session",
                "-d",
                "-x",
                "200",
                "-y",
                "80",
                cmd,
            ])
            .status()
            .expect("tmux");
        assert!(status.success());
        Tmux { socket }
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["-L", &self.socket, "send-keys", "-t", "0"];
        args.extend_from_slice(keys);
        assert!(Command::new("tmux")
            .args(&args)
            .status()
            .expect("tmux")
            .success());
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args([
                "-L",
                &self.socket,
                "capture-pane",
                "-p",
                "-J",
                "-S",
                "-2000",
                "-t",
                "0",
            ])
            .output()
            .expect("tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen shows `needle` after byte `from`; returns where it ends.
    fn wait_for(&self, needle: &str, from: usize) -> usize {
        let start = Instant::now();
        loop {
            let t = self.screen();
            if let Some(i) = t.get(from..).and_then(|s| s.find(needle)) {
                return from + i + needle.len();
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "never saw {needle:?}; screen:\n{t}"
            );
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    fn is_gone(&self) -> bool {
        !Command::new("tmux")
            .args(["-L", &self.socket, "has-session", "-t", "0"])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .stderr(Stdio::null())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interactive_session_through_a_pseudo_terminal() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("tmux not installed: skipping the pseudo-terminal test");
        return;
    }
    let server = Server::start().await;
    let addr = server.addr();
    let root = unique_root("pty");
    let tty = Tmux::start(&format!("{} shell -server {addr}", volery()));
    let mut at = tty.wait_for("JLine support is enabled", 0);
    at = tty.wait_for(&format!("[zk: {addr}(CONNECTED) 0] "), at);
    tty.keys(&[&format!("create {root} hello"), "Enter"]);
    at = tty.wait_for(&format!("Created {root}"), at);
    at = tty.wait_for(&format!("[zk: {addr}(CONNECTED) 1] "), at);
    tty.keys(&[&format!("get -w {root}"), "Enter"]);
    at = tty.wait_for("hello\n", at);
    at = tty.wait_for(&format!("[zk: {addr}(CONNECTED) 2] "), at);
    // A change made elsewhere while the shell waits at its prompt.
    let other = shell(&addr, &["set", &root, "bye"], "");
    assert_eq!(other.code, 0, "{}", other.stderr);
    at = tty.wait_for(
        &format!("WatchedEvent state:SyncConnected type:NodeDataChanged path:{root}"),
        at,
    );
    // Line editing: recall `get -w ROOT` from the history with the up arrow, twice.
    tty.keys(&["ls /", "Enter"]);
    at = tty.wait_for(&format!("[zk: {addr}(CONNECTED) 3] "), at);
    tty.keys(&["Up", "Up", "Enter"]);
    at = tty.wait_for("bye\n", at);
    tty.keys(&["history", "Enter"]);
    at = tty.wait_for(&format!("3 - get -w {root}"), at);
    tty.keys(&[&format!("deleteall {root}"), "Enter"]);
    at = tty.wait_for(&format!("[zk: {addr}(CONNECTED) 6] "), at);
    tty.keys(&["quit", "Enter"]);
    let start = Instant::now();
    while !tty.is_gone() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "quit did not end the shell"
        );
        std::thread::sleep(Duration::from_millis(30));
    }
    let _ = at;
}

#[test]
fn the_close_race_of_zkcli_is_settled_as_a_sequential_shell_prints_it() {
    let seen_in_ci = "digest: U\n\nWATCHER::\nNot connected\n\nWatchedEvent state:Closed type:None path:null\n51 - set";
    let ordered = "digest: U\n\nWATCHER::\n\nWatchedEvent state:Closed type:None path:null\nNot connected\n51 - set";
    assert_eq!(settle_close_race(seen_in_ci.to_owned()), ordered);
    let before_the_block = "digest: U\nNot connected\n\nWATCHER::\n\nWatchedEvent state:Closed type:None path:null\n51 - set";
    assert_eq!(settle_close_race(before_the_block.to_owned()), ordered);
    assert_eq!(settle_close_race(ordered.to_owned()), ordered);
}
