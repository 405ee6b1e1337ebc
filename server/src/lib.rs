//! # tandem-server
//!
//! A y-websocket-compatible sync hub on warp + tokio. Follow one edit:
//! `listener` accepts the socket → `http::early_upgrade` (or hyper and `http::ws`) upgrades
//! it → `hub::connection` reads the frame and hands it to the document's actor
//! (`hub::doc_actor`), which applies it through the engine's sync session and queues one
//! encoded frame to every connection's outbox, the sender included. `hub::registry` maps
//! names to actors. Every applied update is numbered by the actor and group-committed to
//! the database by `store::writer`.

pub mod auth;
pub mod cluster;
pub mod config;
pub mod http;
pub mod hub;
pub mod limits;
pub mod listener;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod write_deadline;

use std::future::Future;
use std::sync::Arc;

use tracing::info;

pub use config::Config;
use hub::connection::ConnectionCount;
use hub::Registry;
use state::AppState;

/// Sleeps until `at`, or for ever without one: a `select!` branch for a deadline that
/// may not be set (a document's unload, a held write's retry).
pub(crate) async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

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
    /// The database could not be opened or migrated.
    #[error("storage: {0}")]
    Store(#[from] store::StoreError),
    /// Cluster mode could not start.
    #[error("cluster: {0}")]
    Cluster(#[from] cluster::ClusterError),
}

/// Opens the store `config` names and brings its schema up to date.
///
/// In cluster mode (`--redis-url`) the store tags this node's log rows with `node`.
pub async fn open_store(
    config: &Config,
    node: Option<uuid::Uuid>,
) -> Result<Arc<dyn store::Store>, StartError> {
    let store = store::open(&config.database_url, node).await?;
    store.migrate().await?;
    info!(backend = store.backend(), "database schema up to date");
    Ok(store)
}

/// How long shutdown waits for Redis to take this node's last messages.
const CLUSTER_FLUSH_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs the server until `shutdown` resolves, then closes every client with 1001 and
/// flushes every document before returning.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    let metrics = telemetry::install().map_err(|e| StartError::Metrics(e.to_string()))?;
    let config = Arc::new(config);
    let cluster = match &config.redis_url {
        Some(url) => {
            let node = config.node_id.unwrap_or_else(uuid::Uuid::new_v4);
            let cluster =
                cluster::Cluster::start(url, node, &config.redis_prefix, config.cluster_queue)?;
            info!(%node, "cluster mode: sharing documents through redis");
            Some(cluster)
        }
        None => None,
    };
    let store = open_store(&config, cluster.as_ref().map(|c| c.node())).await?;
    let writer = store::Writer::spawn(store.clone(), config.group_commit());
    let listener =
        listener::bind(config.listen, config.backlog).map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let auth = auth::Auth::new(config.auth_secret.as_deref());
    if !auth.required() {
        tracing::warn!(
            "NO --auth-secret: every client that can reach this server may read and change every \
             document. Set --auth-secret (TANDEM_AUTH_SECRET) before exposing it."
        );
    }
    let state = AppState {
        registry: Registry::new(config.clone(), store, writer.clone(), cluster.clone()),
        connections: ConnectionCount::default(),
        auth,
        per_ip: limits::PerIp::default(),
        http_rate: limits::HttpRate::new(
            config.max_http_requests_per_ip,
            config.http_request_burst_per_ip,
        )
        .map(Arc::new),
        config: config.clone(),
        metrics,
    };
    info!(listen = %config.listen, "tandem-server listening");
    listener::serve(
        listener,
        http::routes(state.clone()),
        state.clone(),
        shutdown,
    )
    .await;
    info!("shutting down: closing clients and flushing documents");
    let flush_limit = std::time::Duration::from_millis(config.shutdown_flush_ms);
    // A document busy with a delete (or a reload) answers only once the database has
    // taken it: while the database is down, that would hold the shutdown for ever.
    if writer
        .patiently(flush_limit, state.registry.shutdown())
        .await
        .is_none()
    {
        tracing::error!("database unreachable at shutdown: some documents did not close");
    }
    if let Some(cluster) = &cluster {
        // The documents published their clients' presence removals: without them the
        // other nodes would show those cursors until they expire (30 s).
        if tokio::time::timeout(CLUSTER_FLUSH_LIMIT, cluster.flush())
            .await
            .is_err()
        {
            tracing::warn!("redis did not take this node's last messages at shutdown");
        }
    }
    // Give connection tasks a moment to write their close frames.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while state.connections.current() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    if writer
        .patiently(flush_limit, writer.flush())
        .await
        .is_none()
    {
        tracing::error!(
            pending = writer.pending(),
            "database still unreachable at shutdown: unsaved updates are lost"
        );
    } else if writer.pending() > 0 {
        tracing::error!(
            pending = writer.pending(),
            "the database refused some documents' updates to the end: they are lost"
        );
    }
    info!("shutdown complete");
    Ok(())
}
