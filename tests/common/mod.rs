//! Harness for integration tests: runs a real server process on 127.0.0.1 and connects clients to it.
//!
//! The server under test is the `volery` binary of this package, unless `VOLERY_TEST_REFERENCE=zookeeper`
//! selects a real Apache ZooKeeper 3.8 standalone server (Debian's `/usr/share/java/zookeeper.jar`),
//! which is how the tests themselves are validated: every test must pass against ZooKeeper.
//!
//! Invariant: a [`Server`] owns its child process; dropping the `Server` kills (SIGKILL) and reaps it,
//! so no test leaves a process behind, even when it panics.
#![allow(dead_code)]

pub mod cluster;
#[path = "../../src/testkit/linearizability.rs"]
pub mod linearizability;
pub mod raw;

use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;
use zookeeper_client as zk;

/// Environment variable choosing the server implementation under test.
pub const REFERENCE_ENV: &str = "VOLERY_TEST_REFERENCE";

/// How long a server may take to accept its first client session.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Bound on one test body, enforced by [`bounded`].
pub const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Which implementation the tests talk to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Volery,
    ZooKeeper,
}

impl Flavor {
    /// Reads [`REFERENCE_ENV`]: `zookeeper` selects the reference server, anything else Volery.
    pub fn from_env() -> Flavor {
        match std::env::var(REFERENCE_ENV) {
            Ok(v) if v.eq_ignore_ascii_case("zookeeper") => Flavor::ZooKeeper,
            _ => Flavor::Volery,
        }
    }
}

/// Server options shared by both flavors; each maps onto the flavor's own configuration.
#[derive(Clone, Debug)]
pub struct Options {
    /// ZooKeeper's tickTime in milliseconds; session timeouts are bounded to [2, 20] ticks.
    pub tick_time_ms: u32,
    /// `zookeeper.extendedTypesEnabled` (TTL nodes).
    pub extended_types: bool,
    /// `zookeeper.DigestAuthenticationProvider.superDigest`, e.g. `super:<base64 sha1>`.
    pub super_digest: Option<String>,
    /// maxClientCnxns per client address (0 = unlimited).
    pub max_client_cnxns: Option<u32>,
    /// `zookeeper.snapCount`: commands between two checkpoints of the tree.
    pub snap_count: Option<u64>,
    /// `jute.maxbuffer`: the largest frame a client may send (Volery's `--max-buffer`).
    pub max_buffer: Option<usize>,
    /// `4lw.commands.whitelist` (ZooKeeper's default enables `srvr` only).
    pub four_letter_whitelist: Option<String>,
    /// Port of Volery's Prometheus endpoint; `None` turns it off (the reference has none).
    pub metrics_port: Option<u16>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tick_time_ms: 2000,
            extended_types: false,
            super_digest: None,
            max_client_cnxns: None,
            snap_count: None,
            max_buffer: None,
            four_letter_whitelist: None,
            metrics_port: None,
        }
    }
}

/// A running server process with its port and data directory, both kept across restarts.
pub struct Server {
    flavor: Flavor,
    options: Options,
    port: u16,
    /// Holds the data directory and the process log; removed when the `Server` drops.
    dir: TempDir,
    child: Option<Child>,
    starts: u32,
}

impl Server {
    /// Starts the selected flavor with default options and waits until it accepts a session.
    pub async fn start() -> Server {
        Server::start_with(Options::default()).await
    }

    /// Starts the selected flavor with `options` and waits until it accepts a session.
    pub async fn start_with(options: Options) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("volery-itest-")
            .tempdir()
            .expect("create temp dir");
        std::fs::create_dir_all(dir.path().join("data")).expect("create data dir");
        let mut server = Server {
            flavor: Flavor::from_env(),
            options,
            port: free_port(),
            dir,
            child: None,
            starts: 0,
        };
        server.spawn_and_wait().await;
        server
    }

    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connect string for clients: `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A new session with the client's default options.
    pub async fn client(&self) -> zk::Client {
        self.connect(zk::Client::connector()).await
    }

    /// A new session built by `connector`; panics if none is established within a few seconds.
    pub async fn connect(&self, connector: zk::Connector) -> zk::Client {
        let addr = self.addr();
        tokio::time::timeout(
            Duration::from_secs(20),
            connector.with_fail_eagerly().connect(&addr),
        )
        .await
        .unwrap_or_else(|_| panic!("connecting to {addr} timed out"))
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"))
    }

    /// Kills the process with SIGKILL (no shutdown hook runs) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data directory and waits until it serves.
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn_and_wait().await;
    }

    /// The process's combined stdout/stderr so far (for diagnostics).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    async fn spawn_and_wait(&mut self) {
        assert!(self.child.is_none(), "server already running");
        self.starts += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open server log");
        let mut cmd = match self.flavor {
            Flavor::Volery => self.volery_command(),
            Flavor::ZooKeeper => self.zookeeper_command(),
        };
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?} server: {e}", self.flavor));
        self.child = Some(child);
        self.wait_ready().await;
    }

    fn volery_command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_volery"));
        cmd.arg("start")
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--tick-time")
            .arg(self.options.tick_time_ms.to_string())
            // As the reference ZooKeeper: empty containers and expired TTL nodes go within 200 ms.
            .arg("-D")
            .arg("znode.container.checkIntervalMs=200");
        if let Some(n) = self.options.max_client_cnxns {
            cmd.arg("--max-client-cnxns").arg(n.to_string());
        }
        cmd.arg("--metrics-port")
            .arg(self.options.metrics_port.unwrap_or(0).to_string());
        if let Some(list) = &self.options.four_letter_whitelist {
            cmd.arg("-D").arg(format!("4lw.commands.whitelist={list}"));
        }
        if self.options.extended_types {
            cmd.arg("-D").arg("zookeeper.extendedTypesEnabled=true");
        }
        if let Some(n) = self.options.snap_count {
            cmd.arg("-D").arg(format!("zookeeper.snapCount={n}"));
        }
        if let Some(n) = self.options.max_buffer {
            cmd.arg("--max-buffer").arg(n.to_string());
        }
        if let Some(digest) = &self.options.super_digest {
            cmd.arg("-D").arg(format!(
                "zookeeper.DigestAuthenticationProvider.superDigest={digest}"
            ));
        }
        cmd.env(
            "VOLERY_LOG",
            std::env::var("VOLERY_LOG").unwrap_or_else(|_| "info".into()),
        );
        cmd
    }

    fn zookeeper_command(&self) -> Command {
        let cfg = self.dir.path().join("zoo.cfg");
        let mut text = format!(
            "tickTime={}\ndataDir={}\nclientPort={}\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n",
            self.options.tick_time_ms,
            self.data_dir().display(),
            self.port
        );
        text.push_str(&format!(
            "maxClientCnxns={}\n",
            self.options.max_client_cnxns.unwrap_or(0)
        ));
        if let Some(list) = &self.options.four_letter_whitelist {
            text.push_str(&format!("4lw.commands.whitelist={list}\n"));
        }
        std::fs::write(&cfg, text).expect("write zoo.cfg");
        let mut cmd = Command::new("java");
        cmd.args([
            "-Xshare:auto",
            "-XX:TieredStopAtLevel=1",
            "-XX:+UseSerialGC",
            "-Xmx256m",
        ])
        .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn")
        .arg("-Dzookeeper.admin.enableServer=false")
        // Containers and TTL nodes are reaped by a timer (60 s by default): make it fast.
        .arg("-Dznode.container.checkIntervalMs=200");
        if self.options.extended_types {
            cmd.arg("-Dzookeeper.extendedTypesEnabled=true");
        }
        if let Some(n) = self.options.snap_count {
            cmd.arg(format!("-Dzookeeper.snapCount={n}"));
        }
        if let Some(n) = self.options.max_buffer {
            cmd.arg(format!("-Djute.maxbuffer={n}"));
        }
        if let Some(digest) = &self.options.super_digest {
            cmd.arg(format!(
                "-Dzookeeper.DigestAuthenticationProvider.superDigest={digest}"
            ));
        }
        cmd.arg("-cp")
            .arg("/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar")
            .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
            .arg(cfg);
        cmd
    }

    /// Polls until a session can be established and closed again, within [`STARTUP_TIMEOUT`].
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let addr = self.addr();
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    panic!(
                        "{:?} server exited during startup with {status}; log:\n{}",
                        self.flavor,
                        self.log()
                    );
                }
            }
            let attempt = zk::Client::connector().with_fail_eagerly().connect(&addr);
            if let Ok(Ok(client)) = tokio::time::timeout(Duration::from_secs(5), attempt).await {
                drop(client);
                return;
            }
            if Instant::now() > deadline {
                self.kill9();
                panic!(
                    "{:?} server not ready on {addr} after {STARTUP_TIMEOUT:?}; log:\n{}",
                    self.flavor,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!(
                "---- last lines of the {:?} server log ({} starts) ----",
                self.flavor, self.starts
            );
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// A port that was free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Runs a test body under [`TEST_TIMEOUT`].
pub async fn bounded<F: Future>(body: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, body)
        .await
        .expect("test exceeded its time bound")
}

/// Awaits `fut` for at most `secs` seconds, panicking with `what` otherwise.
pub async fn within<F: Future>(secs: u64, what: &str, fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A path under the root unique to this process and call, e.g. `/itest-ops-1a2b-3`.
pub fn unique_path(tag: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("/itest-{tag}-{}-{nanos:x}-{n}", std::process::id())
}

/// Creates a persistent node open to anyone, returning its stat.
pub async fn create_persistent(client: &zk::Client, path: &str, data: &[u8]) -> zk::Stat {
    let options = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    client
        .create(path, data, &options)
        .await
        .unwrap_or_else(|e| panic!("create {path}: {e}"))
        .0
}

/// ZooKeeper's digest for `user:password`: `user:` + base64(sha1("user:password")).
pub fn digest(user: &str, password: &str) -> String {
    use base64::Engine as _;
    use sha1::Digest as _;
    let hash = sha1::Sha1::digest(format!("{user}:{password}").as_bytes());
    format!(
        "{user}:{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}
