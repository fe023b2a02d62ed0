//! A cluster of real server processes on 127.0.0.1, each configured by a ZooKeeper-style `zoo.cfg`
//! with `server.N` lines and a `myid` file, as an operator runs a ZooKeeper ensemble.
//!
//! The servers are `volery start --zoo-cfg <dir>/zoo.cfg`, or, with `VOLERY_TEST_REFERENCE=zookeeper`,
//! Apache ZooKeeper 3.8's `QuorumPeerMain` on the same files (how the harness itself is validated).
//!
//! Invariant: a [`Cluster`] owns its child processes; dropping it kills (SIGKILL, also when
//! stopped by SIGSTOP) and reaps every one of them, so no test leaves a process behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zookeeper_client as zk;

use super::{free_port, Flavor};

/// How long a member may take to accept its first session after a (re)start.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Timing of the ensemble, in `zoo.cfg` terms.
#[derive(Clone, Copy, Debug)]
pub struct ClusterOptions {
    pub tick_time_ms: u32,
    pub init_limit: u32,
    pub sync_limit: u32,
    /// `snapCount`: commands between checkpoints (the server's default when `None`).
    pub snap_count: Option<u64>,
    /// `partitions=k` (Volery only): the servers, in id order, form k partitions.
    pub partitions: Option<u32>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            tick_time_ms: 200,
            init_limit: 5,
            sync_limit: 2,
            snap_count: None,
            partitions: None,
        }
    }
}

/// One server of the cluster; its ports and directory are kept across restarts.
struct Member {
    /// `server.<id>` and the `myid` file: 1-based.
    id: usize,
    client_port: u16,
    dir: PathBuf,
    child: Option<Child>,
    paused: bool,
    starts: u32,
}

impl Member {
    fn cfg_path(&self) -> PathBuf {
        self.dir.join("zoo.cfg")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

/// A running cluster of `n` servers.
pub struct Cluster {
    flavor: Flavor,
    members: Vec<Member>,
    /// Holds every member's directory; removed when the cluster drops.
    _root: TempDir,
}

impl Cluster {
    /// Starts `n` servers with default timing and waits until each accepts a session.
    pub async fn start(n: usize) -> Cluster {
        Cluster::start_with(n, ClusterOptions::default()).await
    }

    /// Writes every member's `zoo.cfg` and `myid`, starts them all, then waits until each one
    /// accepts a session (which, in a replicated cluster, needs a working quorum).
    pub async fn start_with(n: usize, options: ClusterOptions) -> Cluster {
        assert!(n >= 1, "a cluster has at least one server");
        let root = tempfile::Builder::new()
            .prefix("volery-cluster-")
            .tempdir()
            .expect("create temp dir");
        let ports: Vec<(u16, u16, u16)> = (0..n)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let servers: String = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer, election))| {
                format!(
                    "server.{}=127.0.0.1:{peer}:{election};127.0.0.1:{client}\n",
                    i + 1
                )
            })
            .collect();
        let flavor = Flavor::from_env();
        let mut members = Vec::new();
        for (i, &(client_port, _, _)) in ports.iter().enumerate() {
            let dir = root.path().join(format!("server{}", i + 1));
            let data = dir.join("data");
            std::fs::create_dir_all(&data).expect("create data dir");
            std::fs::write(data.join("myid"), format!("{}\n", i + 1)).expect("write myid");
            let cfg = format!(
                "tickTime={}\ninitLimit={}\nsyncLimit={}\ndataDir={}\nclientPort={client_port}\n\
                 clientPortAddress=127.0.0.1\nmaxClientCnxns=0\nadmin.enableServer=false\n\
                 4lw.commands.whitelist=srvr,ruok,stat,mntr\n{}{}{servers}",
                options.tick_time_ms,
                options.init_limit,
                options.sync_limit,
                data.display(),
                options
                    .snap_count
                    .map_or(String::new(), |n| format!("snapCount={n}\n")),
                options
                    .partitions
                    .map_or(String::new(), |k| format!("partitions={k}\n")),
            );
            std::fs::write(dir.join("zoo.cfg"), cfg).expect("write zoo.cfg");
            members.push(Member {
                id: i + 1,
                client_port,
                dir,
                child: None,
                paused: false,
                starts: 0,
            });
        }
        let mut cluster = Cluster {
            flavor,
            members,
            _root: root,
        };
        for i in 0..n {
            cluster.spawn(i);
        }
        for i in 0..n {
            cluster.wait_ready(i).await;
        }
        cluster
    }

    pub fn size(&self) -> usize {
        self.members.len()
    }

    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// `127.0.0.1:<client port>` of member `i` (0-based).
    pub fn addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.members[i].client_port)
    }

    /// Every member's client address, comma-separated, member 0 first.
    pub fn connect_string(&self) -> String {
        (0..self.size())
            .map(|i| self.addr(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The `zoo.cfg` of member `i`.
    pub fn cfg_path(&self, i: usize) -> PathBuf {
        self.members[i].cfg_path()
    }

    /// Whether member `i` runs and is not stopped.
    pub fn is_up(&self, i: usize) -> bool {
        self.members[i].child.is_some() && !self.members[i].paused
    }

    /// Kills member `i` with SIGKILL (no shutdown hook runs) and reaps it.
    pub fn kill9(&mut self, i: usize) {
        let member = &mut self.members[i];
        if let Some(mut child) = member.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        member.paused = false;
    }

    /// Starts member `i` again and waits up to `within` for it to exit: its exit status (`None`
    /// if it still ran, then it is killed) and its log.
    pub fn restart_expecting_exit(
        &mut self,
        i: usize,
        within: Duration,
    ) -> (Option<std::process::ExitStatus>, String) {
        self.kill9(i);
        self.spawn(i);
        let deadline = Instant::now() + within;
        let status = loop {
            let child = self.members[i].child.as_mut().expect("just spawned");
            match child.try_wait().expect("wait for the server") {
                Some(status) => break Some(status),
                None if Instant::now() >= deadline => break None,
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        if status.is_some() {
            self.members[i].child = None;
        } else {
            self.kill9(i);
        }
        (status, self.members[i].log())
    }

    /// Starts member `i` again on its ports and data directory and waits until it serves.
    pub async fn restart(&mut self, i: usize) {
        self.kill9(i);
        self.spawn(i);
        self.wait_ready(i).await;
    }

    /// Kills member `i` and empties its data directory but for `myid`, as a replaced disk would be.
    pub fn wipe(&mut self, i: usize) {
        self.kill9(i);
        let data = self.members[i].dir.join("data");
        for entry in std::fs::read_dir(&data).expect("read data dir").flatten() {
            if entry.file_name() != "myid" {
                let path = entry.path();
                if path.is_dir() {
                    std::fs::remove_dir_all(&path).expect("remove data");
                } else {
                    std::fs::remove_file(&path).expect("remove data");
                }
            }
        }
    }

    /// Starts member `i` again (after [`Cluster::kill9`] or [`Cluster::wipe`]).
    pub async fn start_again(&mut self, i: usize) {
        self.spawn(i);
        self.wait_ready(i).await;
    }

    /// Stops member `i` with SIGSTOP: its sockets stay open, nothing is answered.
    pub fn pause(&mut self, i: usize) {
        self.signal(i, libc::SIGSTOP);
        self.members[i].paused = true;
    }

    /// Continues member `i` with SIGCONT.
    pub fn resume(&mut self, i: usize) {
        self.signal(i, libc::SIGCONT);
        self.members[i].paused = false;
    }

    fn signal(&self, i: usize, signal: libc::c_int) {
        let child = self.members[i]
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("server {} is not running", i + 1));
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) on our own child's pid, which is not reaped while `child` exists.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
    }

    /// The reply of member `i` to the four-letter word `srvr`, or `None` if it does not answer
    /// within a second (down, stopped, or not serving).
    pub async fn srvr(&self, i: usize) -> Option<String> {
        if !self.is_up(i) {
            return None;
        }
        four_letter(&self.addr(i), "srvr", Duration::from_secs(1)).await
    }

    /// The member that answers `srvr` with a line `Mode: leader`, if exactly one live member does.
    pub async fn leader(&self) -> Option<usize> {
        let mut leaders = Vec::new();
        for i in 0..self.size() {
            if let Some(reply) = self.srvr(i).await {
                if reply.lines().any(|l| l.trim() == "Mode: leader") {
                    leaders.push(i);
                }
            }
        }
        match leaders[..] {
            [one] => Some(one),
            _ => None,
        }
    }

    /// Polls [`Cluster::leader`] until one is found, panicking after `timeout`.
    pub async fn wait_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.leader().await {
                return i;
            }
            if Instant::now() > deadline {
                let mut modes = String::new();
                for i in 0..self.size() {
                    let reply = self.srvr(i).await.unwrap_or_else(|| "no answer".into());
                    let mode = reply
                        .lines()
                        .find(|l| l.starts_with("Mode:"))
                        .unwrap_or(reply.as_str())
                        .to_string();
                    modes.push_str(&format!(" server.{}: {mode};", i + 1));
                }
                panic!("no single leader after {timeout:?}:{modes}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Member `i`'s combined stdout/stderr so far.
    pub fn log(&self, i: usize) -> String {
        self.members[i].log()
    }

    fn spawn(&mut self, i: usize) {
        let flavor = self.flavor;
        let member = &mut self.members[i];
        assert!(
            member.child.is_none(),
            "server {} already running",
            member.id
        );
        member.starts += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(member.log_path())
            .expect("open server log");
        let mut cmd = match flavor {
            Flavor::Volery => volery_command(&member.cfg_path()),
            Flavor::ZooKeeper => zookeeper_command(&member.cfg_path()),
        };
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {flavor:?} server {}: {e}", member.id));
        member.child = Some(child);
    }

    /// Polls until member `i` establishes (and closes) a session, within [`READY_TIMEOUT`].
    async fn wait_ready(&mut self, i: usize) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = self.addr(i);
        loop {
            let member = &mut self.members[i];
            if let Some(child) = member.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    member.child = None;
                    panic!(
                        "server.{} exited during startup with {status}; log:\n{}",
                        member.id,
                        member.log()
                    );
                }
            }
            let attempt = zk::Client::connector()
                .with_fail_eagerly()
                .with_session_timeout(Duration::from_secs(4))
                .connect(&addr);
            if let Ok(Ok(client)) = tokio::time::timeout(Duration::from_secs(5), attempt).await {
                drop(client);
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "server.{} not ready on {addr} after {READY_TIMEOUT:?}; log:\n{}",
                    member.id,
                    member.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.size() {
            self.kill9(i);
        }
        if std::thread::panicking() {
            for member in &self.members {
                let log = member.log();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!(
                    "---- last lines of server.{} ({} starts) ----",
                    member.id, member.starts
                );
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

fn volery_command(cfg: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_volery"));
    cmd.arg("start").arg("--zoo-cfg").arg(cfg).env(
        "VOLERY_LOG",
        std::env::var("VOLERY_LOG").unwrap_or_else(|_| "info".into()),
    );
    cmd
}

fn zookeeper_command(cfg: &Path) -> Command {
    let mut cmd = Command::new("java");
    cmd.args([
        "-Xshare:auto",
        "-XX:TieredStopAtLevel=1",
        "-XX:+UseSerialGC",
        "-Xmx192m",
    ])
    .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn")
    .arg("-Dzookeeper.admin.enableServer=false")
    .arg("-cp")
    .arg("/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar")
    .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
    .arg(cfg);
    cmd
}

/// Sends a four-letter word to `addr` and reads the reply until the server closes, or `None` if
/// that does not happen within `timeout`.
pub async fn four_letter(addr: &str, word: &str, timeout: Duration) -> Option<String> {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(word.as_bytes()).await.ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        Some(out)
    };
    tokio::time::timeout(timeout, exchange).await.ok().flatten()
}
