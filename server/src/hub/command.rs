//! What can be asked of a document actor, and what it answers. Connections and the HTTP
//! API talk to a document only through these messages, so the actor is the one place
//! that changes it.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::hub::{Close, ConnId};

/// Where an actor answers an API request.
pub type Reply<T> = oneshot::Sender<Result<T, ApiError>>;

/// A message to a document actor.
pub enum Command {
    /// A connection joined; greet it once the document is loaded.
    Join {
        /// The connection.
        conn: ConnId,
        /// Its remote address, for logs and the update log's origin column.
        peer: SocketAddr,
        /// How to reach it.
        outbox: Outbox,
        /// The client opted in to "saved" acknowledgements (`?acks=1`).
        acks: bool,
    },
    /// A binary frame arrived from a connection.
    Frame {
        /// The connection.
        conn: ConnId,
        /// The frame as received.
        frame: Bytes,
    },
    /// A connection ended.
    Leave {
        /// The connection.
        conn: ConnId,
    },
    /// Current content and sequence numbers (`GET /api/docs/{doc}`).
    Inspect {
        /// Text root whose plain content to return.
        root: String,
        /// Where to answer.
        reply: Reply<DocInfo>,
    },
    /// The whole document as one v1 update (`GET /api/docs/{doc}/state`).
    State {
        /// Where to answer.
        reply: Reply<Bytes>,
    },
    /// Apply a v1 update from outside a WebSocket (`POST /api/docs/{doc}/state`). Answered
    /// once the update is durable.
    Import {
        /// The update.
        update: Bytes,
        /// Who sent it, for the log.
        origin: Arc<str>,
        /// Where to answer.
        reply: Reply<Imported>,
    },
    /// Close every client with 4410 and remove the document from the store.
    Delete {
        /// Where to answer: whether there was anything to delete.
        reply: Reply<bool>,
    },
    /// Close every client with 1001, flush, and report back.
    Shutdown {
        /// Signalled when done.
        done: oneshot::Sender<()>,
    },
}

/// The document's side of one connection: a bounded frame queue and a close signal.
pub struct Outbox {
    /// Frames to write, in order.
    pub frames: mpsc::Sender<Bytes>,
    /// Fired (once) to make the connection close with a code and reason.
    pub close: oneshot::Sender<Close>,
}

/// What `GET /api/docs/{doc}` shows of a loaded document.
#[derive(Debug, Clone, Serialize)]
pub struct DocInfo {
    /// The document name.
    pub name: String,
    /// Plain content of the requested text root.
    pub text: String,
    /// Sequence number of the last update applied.
    pub seq: u64,
    /// Sequence number up to which everything is durable.
    pub saved_seq: u64,
    /// Bytes of the whole document encoded as one v1 update.
    pub state_bytes: usize,
    /// WebSocket clients connected to it on this server.
    pub clients: usize,
}

/// The answer to an import.
#[derive(Debug, Clone, Serialize)]
pub struct Imported {
    /// Whether the update brought anything new.
    pub changed: bool,
    /// The document's sequence number after it (durable when answered).
    pub seq: u64,
}

/// Why an API request to a document failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// The stored document cannot be loaded (corrupt data) or the database is down.
    #[error("document unavailable: {0}")]
    Unavailable(String),
    /// The request's payload was refused.
    #[error("{0}")]
    Rejected(String),
    /// The document is being deleted or the server is shutting down.
    #[error("document is closing")]
    Closing,
}
