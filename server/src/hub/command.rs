//! What can be asked of a document actor, and what it answers. Connections and the HTTP
//! API talk to a document only through these messages, so the actor is the one place
//! that changes it.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use tandem_engine::Access;
use tokio::sync::oneshot;

use crate::hub::wire::Wire;
use crate::hub::{Close, ConnId};

/// Where an actor answers an API request.
pub type Reply<T> = oneshot::Sender<Result<T, ApiError>>;

/// A message to a document actor.
pub enum Command {
    /// A connection joined; greet it once the document is loaded.
    Join {
        /// The connection.
        conn: ConnId,
        /// Its remote address, for logs.
        peer: SocketAddr,
        /// The update log's origin column for what it sends (address and user name).
        origin: Arc<str>,
        /// Whether it may change the document (from its token).
        access: Access,
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
    /// A connection ended, or its reading side broke a rule and it must close.
    Leave {
        /// The connection.
        conn: ConnId,
        /// The close to send it: the document fires it through the outbox, so the
        /// writing side stops at once instead of first draining what is queued.
        close: Option<Close>,
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
        reply: Reply<(u64, Bytes)>,
    },
    /// An SSE client subscribed: send it what it missed since `since` (or the whole
    /// state), the document's state vector and the presence, then every change.
    Subscribe {
        /// The subscription, also the session id its POSTs name.
        conn: ConnId,
        /// Its remote address, for logs.
        peer: SocketAddr,
        /// Whether posts naming this subscription may change the document.
        access: Access,
        /// How to reach it.
        outbox: Outbox,
        /// The last sequence number it has (`Last-Event-ID`).
        since: Option<u64>,
        /// Where to answer with what it missed; everything after arrives in `outbox`.
        reply: Reply<Subscribed>,
    },
    /// An update or presence sent over HTTP (`POST …/updates`, `…/awareness`, `…/state`),
    /// applied exactly like the same message on a WebSocket.
    Post {
        /// What was posted.
        body: PostBody,
        /// The SSE subscription the poster holds, if any: presence it publishes is removed
        /// when that subscription ends, and resync requests go to it.
        session: Option<ConnId>,
        /// Who sent it, for the log.
        origin: Arc<str>,
        /// The poster's address: presence posted without a subscription is counted per
        /// address against `--max-awareness-clients`.
        peer: std::net::IpAddr,
        /// Answer only once the change is durable.
        wait_saved: bool,
        /// Where to answer.
        reply: Reply<Posted>,
    },
    /// A long-poll: answered at once if something changed after (`since`, `aw`), else as
    /// soon as something does (the caller gives up after its timeout).
    Poll {
        /// The last sequence number the poller has.
        since: u64,
        /// The presence version the poller has.
        aw: u64,
        /// Answer at once, with the document's state vector.
        state_vector: bool,
        /// Where to answer.
        reply: Reply<PollBatch>,
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

/// One y-protocols frame for a connection, with the document's sequence number when it
/// was sent (SSE event ids; WebSockets ignore it).
#[derive(Debug, Clone)]
pub struct Out {
    /// Sequence number of the last update applied when the frame was queued.
    pub seq: u64,
    /// The encoded frame, shared by every recipient.
    pub frame: Bytes,
    /// Bytes of the frame's WebSocket encoding (header included) that the document already
    /// wrote to the socket itself: the socket took only part of it, and the writer task
    /// sends the rest before anything else (see [`crate::hub::wire`]).
    pub sent: usize,
}

impl Out {
    /// A frame nothing of which is sent yet.
    pub fn new(seq: u64, frame: Bytes) -> Self {
        Self {
            seq,
            frame,
            sent: 0,
        }
    }
}

/// The document's side of one connection: a bounded frame queue and a close signal.
pub struct Outbox {
    /// Frames to write, in order. A flume channel rather than tokio's: flume's bounded
    /// queue is a `VecDeque` sized by what is queued, while tokio's allocates blocks of 32
    /// slots, one at creation and a second once the queue has cycled through the first,
    /// which came to 3.1 KB per connection (3 MB of 28 in scenario B).
    pub frames: flume::Sender<Out>,
    /// Fired (once) to make the connection close with a code and reason.
    pub close: oneshot::Sender<Close>,
    /// A WebSocket's socket, which the document writes to itself while nothing is queued
    /// (none for SSE subscribers, whose frames are always queued).
    pub wire: Option<Arc<Wire>>,
}

impl Outbox {
    /// Sends `frame` (sequence number `seq`) to the connection: with `direct`, straight to its
    /// socket when nothing is queued ahead of it; otherwise, or for what the socket did not
    /// take, through the queue. Borrowed, so that a frame written at once costs the broadcast
    /// no reference count. Fails as the queue does: full (the client is too slow) or
    /// disconnected.
    pub fn push(
        &self,
        seq: u64,
        frame: &Bytes,
        direct: bool,
    ) -> Result<(), flume::TrySendError<Out>> {
        match &self.wire {
            Some(wire) => wire.send(seq, frame, &self.frames, direct),
            None => self.frames.try_send(Out::new(seq, frame.clone())),
        }
    }
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

/// What can be posted over HTTP.
#[derive(Debug, Clone)]
pub enum PostBody {
    /// A v1 document update.
    Update(Bytes),
    /// An awareness update (y-protocols' `encodeAwarenessUpdate` payload).
    Awareness(Bytes),
}

/// The answer to a post.
#[derive(Debug, Clone, Serialize)]
pub struct Posted {
    /// Whether the post changed the document or the presence.
    pub changed: bool,
    /// The document's sequence number after it.
    pub seq: u64,
    /// Whether everything up to `seq` is durable.
    pub saved: bool,
}

/// What a reader at some sequence number missed, as far as the actor holds it.
#[derive(Debug, Clone, Default)]
pub struct Catchup {
    /// Held updates after the reader's position, in order, with their numbers.
    pub updates: Vec<(u64, Bytes)>,
    /// Set when updates between the reader's position (this value) and the first of
    /// `updates` are no longer in memory: the stored log has them, unless compaction
    /// folded them away.
    pub log_after: Option<u64>,
    /// The whole document and the sequence number it includes, for a reader with no
    /// position (or ahead of the document).
    pub state: Option<(u64, Bytes)>,
    /// The document's latest sequence number when this was taken.
    pub last_seq: u64,
}

/// The start of an SSE subscription.
#[derive(Debug, Clone)]
pub struct Subscribed {
    /// What the subscriber missed.
    pub catchup: Catchup,
    /// The document's v1 state vector (the client posts what the server lacks).
    pub state_vector: Bytes,
    /// Every presence state, as an awareness frame, if there is any.
    pub awareness: Option<Bytes>,
}

/// What a long-poller missed.
#[derive(Debug, Clone, Default)]
pub struct PollBatch {
    /// The sequence number to poll from next.
    pub since: u64,
    /// The updates it missed.
    pub catchup: Catchup,
    /// Every presence state (a y-protocols awareness update) if it changed since `aw`.
    pub awareness: Option<Bytes>,
    /// The presence version to poll from next.
    pub aw: u64,
    /// The document's v1 state vector, when asked for.
    pub state_vector: Option<Bytes>,
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
    /// The payload is over a size limit (`--max-doc-bytes`, `--max-awareness-bytes`).
    #[error("{0}")]
    TooLarge(String),
    /// A posted update builds on changes the document has not received; what depends on
    /// them was not applied.
    #[error("{0}")]
    Conflict(String),
    /// The poster may not change the document (its SSE session is read-only).
    #[error("{0}")]
    Forbidden(String),
    /// The server is shutting down (try again: another node, or this one restarted).
    #[error("document is closing")]
    Closing,
    /// The document was deleted while the request waited on it (a long-poll, a post
    /// waiting to be saved) or reached it while the delete went on. Answered 410, as a
    /// WebSocket gets 4410: a client that took it for "try again" would reconnect and
    /// send its whole replica, bringing the deleted document back.
    #[error("document deleted")]
    Deleted,
}
