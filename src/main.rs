//! The `volery` command line.

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use volery::config::{self, Config};

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
    /// Client port (ZooKeeper's clientPort).
    #[arg(long, default_value_t = config::DEFAULT_CLIENT_PORT)]
    port: u16,
    /// Address to listen on (ZooKeeper's clientPortAddress).
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Where the acceptor's log and the checkpoints live.
    #[arg(long, default_value = config::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// ZooKeeper's tickTime in milliseconds; session timeouts are bounded by 2 and 20 ticks.
    #[arg(long, default_value_t = config::DEFAULT_TICK_TIME_MS)]
    tick_time: u32,
    /// Lower bound of negotiated session timeouts (default 2 x tickTime).
    #[arg(long)]
    min_session_timeout: Option<u32>,
    /// Upper bound of negotiated session timeouts (default 20 x tickTime).
    #[arg(long)]
    max_session_timeout: Option<u32>,
    /// Largest request and znode value in bytes (jute.maxbuffer).
    #[arg(long, default_value_t = config::JUTE_MAXBUFFER)]
    max_buffer: usize,
    /// Connections allowed per client address; 0 for no limit.
    #[arg(long, default_value_t = config::DEFAULT_MAX_CLIENT_CNXNS)]
    max_client_cnxns: u32,
    /// A ZooKeeper system property, e.g. -D zookeeper.extendedTypesEnabled=true.
    #[arg(short = 'D', value_name = "KEY=VALUE")]
    properties: Vec<String>,
}

impl StartArgs {
    fn into_config(self) -> anyhow::Result<Config> {
        let mut cfg = Config {
            client_addr: SocketAddr::new(self.bind, self.port),
            data_dir: self.data_dir,
            tick_time_ms: self.tick_time,
            min_session_timeout_ms: self.min_session_timeout.unwrap_or(2 * self.tick_time),
            max_session_timeout_ms: self.max_session_timeout.unwrap_or(20 * self.tick_time),
            max_buffer: self.max_buffer,
            max_client_cnxns: self.max_client_cnxns,
            ..Config::default()
        };
        for p in &self.properties {
            let (k, v) = p
                .split_once('=')
                .with_context(|| format!("-D {p}: expected KEY=VALUE"))?;
            if !cfg.set_property(k.trim(), v.trim())? {
                tracing::warn!(property = k, "unknown property ignored");
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("VOLERY_LOG")
                .unwrap_or_else(|_| EnvFilter::new("warn,volery=info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse_from(volery::shell::normalize_args(std::env::args_os()));
    match cli.command {
        Command::Start(args) => {
            let cfg = args.into_config()?;
            let runtime = tokio::runtime::Runtime::new()?;
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
    let mut task = started.task;
    tokio::select! {
        _ = volery::server::run(listener, started.node, limits, shutdown_signal()) => {
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
