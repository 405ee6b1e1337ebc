//! What every request handler shares.

use std::sync::Arc;

use crate::auth::Auth;
use crate::config::Config;
use crate::hub::connection::ConnectionCount;
use crate::hub::Registry;
use crate::limits::{HttpRate, PerIp};

/// Shared server state (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    /// Flags.
    pub config: Arc<Config>,
    /// Loaded documents.
    pub registry: Registry,
    /// Open WebSocket connections.
    pub connections: ConnectionCount,
    /// Who may open which document.
    pub auth: Auth,
    /// Open WebSocket and SSE connections per remote address.
    pub per_ip: PerIp,
    /// The HTTP request budget of every remote address (`None`: unlimited).
    pub http_rate: Option<Arc<HttpRate>>,
    /// Renders `/metrics`.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}
