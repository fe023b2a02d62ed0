//! Volery: a ZooKeeper-compatible coordination server built on Scalable State Machine Replication.
//!
//! Layers, from the wire inwards:
//! - [`server`]: client front end (listener, connections, sessions, watch delivery).
//! - [`node`]: wires ordering, execution and sessions together; the only layer doing their I/O.
//! - [`ssmr`]: the S-SMR engine that executes ordered commands on the service.
//! - [`multicast`]: atomic multicast built from Paxos groups; orders opaque commands.
//! - [`zk`]: the ZooKeeper service as a deterministic state machine.
pub mod config;
pub mod multicast;
pub mod node;
pub mod server;
pub mod ssmr;
pub mod zk;

use anyhow::Context;

/// Runs a standalone server until ctrl-c or SIGTERM.
pub async fn start(cfg: config::Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(cfg.client_addr)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.client_addr))?;
    let started = node::start(&cfg)
        .await
        .with_context(|| format!("cannot start on data dir {}", cfg.data_dir.display()))?;
    tracing::info!(
        addr = %listener.local_addr()?,
        data_dir = %cfg.data_dir.display(),
        "volery serving ZooKeeper clients"
    );
    let limits = server::Limits::from_config(&cfg);
    let mut task = started.task;
    tokio::select! {
        _ = server::run(listener, started.node, limits, shutdown_signal()) => {
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
