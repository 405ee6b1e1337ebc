//! The y-protocols wire format and the sync state machine built on it.

pub mod codec;
pub mod session;

pub use codec::{AuthMessage, AwarenessEntry, AwarenessUpdate, Message, SyncMessage};
pub use session::{Access, Outcome, Role, SyncSession};
