//! Limits that protect the server from one client: connections per address, allowed
//! browser origins, the message rate of one connection and the HTTP request rate of one
//! address. Size limits (frames, documents,
//! presence states) are enforced where the bytes are read: the WebSocket codec and the
//! document actor.

pub mod http_rate;
pub mod origin;
pub mod per_ip;
pub mod rate;

pub use http_rate::HttpRate;
pub use per_ip::{IpGuard, PerIp};

/// Counts one refusal by limit `limit` in `tandem_limit_exceeded_total` (WebSocket closes
/// and HTTP answers alike).
pub fn exceeded(limit: &'static str) {
    metrics::counter!("tandem_limit_exceeded_total", "limit" => limit).increment(1);
}
pub use rate::MessageRate;
