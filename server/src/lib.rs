//! # tandem-server
//!
//! A y-websocket-compatible sync hub on warp + tokio. Follow one edit:
//! `listener` accepts the socket → `http::ws` upgrades it → `hub::connection` reads the
//! frame and hands it to the document's actor (`hub::doc_actor`), which applies it through
//! the engine's sync session and queues one encoded frame to every connection's outbox,
//! the sender included. `hub::registry` maps names to actors.

pub mod config;
pub mod http;
pub mod hub;
pub mod listener;
pub mod state;

use std::future::Future;
use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusBuilder;
use tracing::info;

pub use config::Config;
use hub::connection::ConnectionCount;
use hub::Registry;
use state::AppState;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The metrics recorder could not be installed (one per process).
    #[error("cannot install the metrics recorder: {0}")]
    Metrics(String),
}

/// Runs the server until `shutdown` resolves, then closes every client with 1001 and
/// flushes every document before returning.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| StartError::Metrics(e.to_string()))?;
    let config = Arc::new(config);
    let listener =
        listener::bind(config.listen, config.backlog).map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let state = AppState {
        registry: Registry::new(config.clone()),
        connections: ConnectionCount::default(),
        config: config.clone(),
        metrics,
    };
    info!(listen = %config.listen, "tandem-server listening");
    listener::serve(listener, http::routes(state.clone()), shutdown).await;
    info!("shutting down: closing clients and flushing documents");
    state.registry.shutdown().await;
    // Give connection tasks a moment to write their close frames.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while state.connections.current() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    info!("shutdown complete");
    Ok(())
}
