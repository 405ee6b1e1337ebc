//! Limits that protect the server from one client: connections per address, allowed
//! browser origins and the message rate of one connection. Size limits (frames, documents,
//! presence states) are enforced where the bytes are read: the WebSocket codec and the
//! document actor.

pub mod origin;
pub mod per_ip;
pub mod rate;

pub use per_ip::{IpGuard, PerIp};
pub use rate::MessageRate;
