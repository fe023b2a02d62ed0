//! The `volery` command line.

use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use volery::config::Config;

#[derive(Parser)]
#[command(
    name = "volery",
    version,
    about = "A ZooKeeper-compatible coordination server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve ZooKeeper clients (standalone: one partition, one replica).
    Start(StartArgs),
    /// A zkCli.sh look-alike: `volery shell -server host:port[,host:port...] [command args...]`.
    Shell(volery::shell::ShellArgs),
    /// Load ZooKeeper-protocol servers: throughput, latency percentiles, server CPU per operation.
    Bench(volery::bench::BenchArgs),
}

#[derive(Args)]
struct StartArgs {
    /// A ZooKeeper configuration file (zoo.cfg); the myid file is read from its dataDir.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    zoo_cfg: Option<PathBuf>,
    /// A native configuration file (volery.toml; see README.md for every setting).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Client port (ZooKeeper's clientPort) [default: 2181].
    #[arg(long)]
    port: Option<u16>,
    /// Address to listen on (ZooKeeper's clientPortAddress) [default: 0.0.0.0].
    #[arg(long)]
    bind: Option<IpAddr>,
    /// Where the acceptor's log and the checkpoints live [default: volery-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// ZooKeeper's tickTime in milliseconds [default: 2000]; unless given too, the session timeout
    /// bounds become 2 and 20 ticks.
    #[arg(long)]
    tick_time: Option<u32>,
    /// Lower bound of negotiated session timeouts (default 2 x tickTime).
    #[arg(long)]
    min_session_timeout: Option<u32>,
    /// Upper bound of negotiated session timeouts (default 20 x tickTime).
    #[arg(long)]
    max_session_timeout: Option<u32>,
    /// Largest request and znode value in bytes (jute.maxbuffer) [default: 1048575].
    #[arg(long)]
    max_buffer: Option<usize>,
    /// Connections allowed per client address; 0 for no limit [default: 60].
    #[arg(long)]
    max_client_cnxns: Option<u32>,
    /// Port of the Prometheus endpoint (metricsProvider.httpPort); 0 turns it off [default: 7000].
    #[arg(long)]
    metrics_port: Option<u16>,
    /// A ZooKeeper system property, e.g. -D zookeeper.extendedTypesEnabled=true or
    /// -D 4lw.commands.whitelist=*.
    #[arg(short = 'D', value_name = "KEY=VALUE")]
    properties: Vec<String>,
}

impl StartArgs {
    /// The file's settings, then the flags, then `-D` properties; validated once.
    fn into_config(self) -> anyhow::Result<Config> {
        let (mut cfg, warnings) = match (&self.zoo_cfg, &self.config) {
            (Some(path), _) => Config::from_zoo_cfg(path)?,
            (None, Some(path)) => Config::from_toml_file(path)?,
            (None, None) => (Config::default(), Vec::new()),
        };
        for w in warnings {
            tracing::warn!("{w}");
        }
        if let Some(port) = self.port {
            cfg.client_addr.set_port(port);
        }
        if let Some(ip) = self.bind {
            cfg.client_addr.set_ip(ip);
        }
        if let Some(dir) = self.data_dir {
            cfg.data_dir = dir;
        }
        if let Some(tick) = self.tick_time {
            cfg.tick_time_ms = tick;
            cfg.min_session_timeout_ms = 2 * tick;
            cfg.max_session_timeout_ms = 20 * tick;
        }
        if let Some(v) = self.min_session_timeout {
            cfg.min_session_timeout_ms = v;
        }
        if let Some(v) = self.max_session_timeout {
            cfg.max_session_timeout_ms = v;
        }
        if let Some(v) = self.max_buffer {
            cfg.max_buffer = v;
        }
        if let Some(v) = self.max_client_cnxns {
            cfg.max_client_cnxns = v;
        }
        if let Some(v) = self.metrics_port {
            cfg.metrics_addr.set_port(v);
        }
        for p in &self.properties {
            let (k, v) = p
                .split_once('=')
                .with_context(|| format!("-D {p}: expected KEY=VALUE"))?;
            if !cfg.set_property(k.trim(), v.trim())? {
                tracing::warn!(property = k, "unknown property ignored");
            }
        }
        cfg.validate()?;
        if cfg.servers.values().any(|s| s.role == "observer") {
            tracing::warn!("observers are not supported; every server.N line is a full member");
        }
        Ok(cfg)
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse_from(volery::shell::normalize_args(std::env::args_os()));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("VOLERY_LOG")
                .unwrap_or_else(|_| EnvFilter::new("warn,volery=info")),
        )
        .with_ansi(std::io::stderr().is_terminal());
    // A server's log lines go through a writer thread: a stderr redirected to a file on a busy
    // disk (dirty-page throttling can hold a write for seconds) must not stop the runtime's
    // workers, and with them heartbeats and the executor. Lines beyond its buffer (128k lines)
    // are dropped, not waited for. The guard flushes what is left at exit.
    let _flush_at_exit = if matches!(cli.command, Command::Start(_)) {
        let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
        logs.with_writer(writer).init();
        Some(guard)
    } else {
        logs.with_writer(std::io::stderr).init();
        None
    };
    match cli.command {
        Command::Start(args) => {
            let cfg = args.into_config()?;
            let workers = volery::cpu::worker_threads(cfg.worker_threads);
            tracing::info!(workers, "runtime");
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_all()
                .build()?;
            runtime.block_on(start(cfg))
        }
        Command::Shell(args) => {
            let code = volery::shell::run(args)?;
            std::process::exit(code);
        }
        Command::Bench(args) => Ok(volery::bench::run(args)?),
    }
}

/// Runs a standalone server until ctrl-c or SIGTERM.
async fn start(cfg: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(cfg.client_addr)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.client_addr))?;
    let started = volery::node::start(&cfg)
        .await
        .with_context(|| format!("cannot start on data dir {}", cfg.data_dir.display()))?;
    tracing::info!(
        addr = %listener.local_addr()?,
        data_dir = %cfg.data_dir.display(),
        "volery serving ZooKeeper clients"
    );
    let limits = volery::server::Limits::from_config(&cfg);
    let ctx = volery::server::Context::new(started.node, limits);
    if cfg.metrics_addr.port() != 0 {
        // Metrics are auxiliary: a port that cannot be bound is logged, and clients are served.
        match tokio::net::TcpListener::bind(cfg.metrics_addr).await {
            Ok(metrics) => {
                tracing::info!(addr = %metrics.local_addr()?, "serving Prometheus metrics at /metrics");
                tokio::spawn(volery::server::metrics::serve(
                    metrics,
                    ctx.clone(),
                    std::future::pending::<()>(),
                ));
            }
            Err(e) => tracing::error!(
                addr = %cfg.metrics_addr,
                error = %e,
                "cannot serve metrics (set metricsProvider.httpPort, or 0 to turn them off)"
            ),
        }
    }
    let mut task = started.task;
    tokio::select! {
        _ = volery::server::serve_clients(listener, ctx, shutdown_signal()) => {
            tracing::info!("shutting down");
            Ok(())
        }
        r = &mut task => match r {
            Ok(Ok(())) => anyhow::bail!("the node stopped"),
            Ok(Err(e)) => Err(e).context("the node failed"),
            Err(e) => Err(e).context("the node task panicked"),
        },
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
