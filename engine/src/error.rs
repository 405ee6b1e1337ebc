//! Typed errors of the engine.
//!
//! Every fallible engine call returns one of these instead of panicking, because the
//! engine's callers (the server above all) feed it bytes from untrusted peers: a bad
//! frame must become a reason to close one connection, never a crash.

use thiserror::Error;

/// Why a document operation failed.
#[derive(Debug, Error)]
pub enum DocError {
    /// A text/array index or range lies outside the current content. yrs would panic here;
    /// the engine checks first so a caller with a stale index gets an error instead.
    #[error("position {index}+{len} is outside the content (length {content_len})")]
    OutOfBounds {
        /// Start of the requested range (UTF-16 code units for text).
        index: u32,
        /// Length of the requested range.
        len: u32,
        /// Length of the content at the time of the call.
        content_len: u32,
    },
    /// The bytes are not a decodable update or state vector.
    #[error("undecodable {what}: {source}")]
    Decode {
        /// What was being decoded ("update v1", "state vector", ...).
        what: &'static str,
        /// The underlying decoder error.
        #[source]
        source: yrs::encoding::read::Error,
    },
    /// Entry `index` of a batch of updates (a stored log, see
    /// [`crate::Document::apply_updates_v1`]) does not decode; nothing was applied.
    #[error("update {index} of the batch is undecodable: {source}")]
    BatchEntry {
        /// Position of the bad entry in the batch.
        index: usize,
        /// The underlying decoder error.
        #[source]
        source: yrs::encoding::read::Error,
    },
    /// The update decoded but could not be integrated.
    #[error("update rejected: {0}")]
    Apply(#[from] yrs::error::UpdateError),
    /// Applying the update made yrs panic. The engine contains the panic (the update came
    /// from outside and must not take the process down), but the document that was being
    /// changed can no longer be trusted and must be reloaded by the caller.
    #[error("update crashed the CRDT integrator; the document must be reloaded")]
    Poisoned,
}

/// Why bytes could not be decoded as a y-protocols message.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CodecError {
    /// The frame ended in the middle of a field.
    #[error("truncated message: {0}")]
    Truncated(&'static str),
    /// A variable-length integer is longer than 53 bits (lib0's limit) or malformed.
    #[error("invalid variable-length integer in {0}")]
    InvalidVarInt(&'static str),
    /// The outer message type is not one y-protocols defines (0 sync, 1 awareness, 2 auth,
    /// 3 query-awareness). Servers ignore such frames, as y-websocket does.
    #[error("unknown message type {0}")]
    UnknownMessageType(u64),
    /// The sync sub-type is not 0 (step 1), 1 (step 2) or 2 (update).
    #[error("unknown sync message type {0}")]
    UnknownSyncType(u64),
    /// A string field is not valid UTF-8.
    #[error("invalid UTF-8 in {0}")]
    InvalidUtf8(&'static str),
    /// An awareness state is not valid JSON (y-protocols would throw in `JSON.parse`).
    #[error("awareness state of client {client_id} is not valid JSON")]
    InvalidJson {
        /// The client whose state was malformed.
        client_id: u64,
    },
    /// A state vector inside a sync step 1 does not decode.
    #[error("invalid state vector in sync step 1")]
    InvalidStateVector,
    /// Bytes were left over after one complete message. y-websocket sends exactly one
    /// message per frame, so leftovers mean a corrupt or hostile frame.
    #[error("{0} unexpected trailing bytes after the message")]
    TrailingBytes(usize),
}

/// Why a sync session could not handle a message.
#[derive(Debug, Error)]
pub enum SessionError {
    /// The payload of a sync message was rejected by the document.
    #[error(transparent)]
    Doc(#[from] DocError),
    /// The peer denied us access (an auth message); carries the peer's reason.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// An awareness state is longer than the session allows
    /// ([`crate::protocol::SyncSession::with_max_awareness_state`]); nothing was applied.
    #[error(
        "awareness state of client {client_id} is {bytes} bytes, more than the {limit} allowed"
    )]
    AwarenessStateTooLarge {
        /// The client whose state was too large.
        client_id: u64,
        /// Its size (bytes of JSON).
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// An awareness update would give the peer states for more client ids than the session
    /// allows ([`crate::protocol::SyncSession::with_max_awareness_clients`]); nothing was
    /// applied.
    #[error("presence for more than {limit} client ids from one peer")]
    TooManyAwarenessClients {
        /// The limit.
        limit: usize,
    },
}

/// Why an edit log could not be replayed.
#[derive(Debug, Error)]
pub enum ReplayError {
    /// An operation names a replica the cluster does not have.
    #[error("operation for replica {replica} but the cluster has {replicas}")]
    NoSuchReplica {
        /// The replica the log names.
        replica: usize,
        /// How many replicas the cluster has.
        replicas: usize,
    },
    /// A document operation failed.
    #[error(transparent)]
    Doc(#[from] DocError),
}
