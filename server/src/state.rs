//! What every request handler shares.

use std::sync::Arc;

use crate::config::Config;
use crate::hub::connection::ConnectionCount;
use crate::hub::Registry;

/// Shared server state (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    /// Flags.
    pub config: Arc<Config>,
    /// Loaded documents.
    pub registry: Registry,
    /// Open WebSocket connections.
    pub connections: ConnectionCount,
    /// Renders `/metrics`.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}
