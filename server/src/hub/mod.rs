//! The sync hub: one actor task per loaded document, one task per connection, and the
//! registry that maps document names to actors.

pub mod close;
pub mod command;
pub mod connection;
pub mod doc_actor;
pub mod doc_load;
pub mod durability;
pub mod recent;
pub mod registry;
pub mod socket;
pub mod wire;

pub use close::Close;
pub use registry::{DocHandle, Registry};

/// Identifies one WebSocket connection for the lifetime of the process.
pub type ConnId = u64;
