//! Cluster mode (`--redis-url`): several nodes serve the same documents. Every node
//! publishes what its own clients change — the very y-protocols frames it relays to them —
//! on a Redis channel per document, tagged with its node id, and applies what the other
//! nodes publish, skipping its own. Postgres stays the one store: each node persists every
//! update it applies, so a node that dies loses nothing the others saw.
//!
//! When Redis is unreachable a node keeps serving its own clients, reports not ready, and
//! retries; once back it asks the other nodes for what it lacks (a sync step 1 on every
//! document channel, answered with the missing updates) and republishes its presence, so
//! nothing stays divergent. A node answering a step 1 asks back when the asker has edits it
//! lacks: the asker's own step 1 may have gone out before this node had resubscribed.
//! Resynchronisation is the same message a document sends when it is loaded, so a node
//! joining late and a node coming back from a Redis outage take the same path.

mod link;
mod wire;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

pub use wire::{decode, encode, DELETED};

/// How long a loading document waits for Redis to confirm its subscription before it
/// loads anyway (Redis down: the document serves its local clients and catches up later).
const JOIN_WAIT: Duration = Duration::from_secs(2);

/// Why cluster mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The Redis URL does not parse.
    #[error("invalid --redis-url: {0}")]
    Url(#[from] redis::RedisError),
}

/// What the link hands a document actor.
#[derive(Debug)]
pub enum Remote {
    /// A y-protocols frame another node relayed to its clients (an update, presence, or
    /// a step 1 asking for what that node lacks).
    Frame {
        /// The node that published it.
        node: Uuid,
        /// The frame.
        frame: Bytes,
    },
    /// The link was re-established after an outage, or frames for this document were
    /// dropped because its queue was full: what was published meanwhile is lost, so ask
    /// the others for what is missing and republish the presence.
    Reconnected,
}

enum Op {
    Join {
        doc: Arc<str>,
        to: mpsc::Sender<Remote>,
        /// A resync waits in the document's queue (set by the link, cleared by the
        /// document as it takes it).
        resync_queued: Arc<AtomicBool>,
        ready: oneshot::Sender<()>,
    },
    Leave {
        doc: Arc<str>,
    },
    /// Publishing failed and works again: every document must resync.
    Resync,
}

struct Shared {
    node: Uuid,
    prefix: String,
    /// Frames of other nodes one document may have waiting.
    queue: usize,
    /// The subscriber is connected and subscribed.
    subscribed: AtomicBool,
    /// The publisher's last batch went through (or none failed yet).
    publishing: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl Shared {
    /// Both directions work: this node hears the others and they hear it. Tracked apart
    /// because each has its own connection, and either can fail alone (an idle timeout, a
    /// `CLIENT KILL`): with one flag, a publish failing after the subscriber reconnected
    /// left the node unready for good, as only a reconnect of the subscriber raised it.
    fn is_up(&self) -> bool {
        self.subscribed.load(Ordering::Acquire) && self.publishing.load(Ordering::Acquire)
    }
}

/// What the publisher task is handed, in order.
enum Outgoing {
    /// A payload for a channel.
    Frame(Vec<u8>, Bytes),
    /// Answered once everything queued before it has been handed to Redis (or dropped
    /// because Redis is down).
    Flush(oneshot::Sender<()>),
}

/// This node's membership in the cluster (cheap to clone).
#[derive(Clone)]
pub struct Cluster {
    shared: Arc<Shared>,
    ops: mpsc::UnboundedSender<Op>,
    publish: mpsc::UnboundedSender<Outgoing>,
}

impl Cluster {
    /// Starts the Redis link for node `node`; channels are named `{prefix}:doc:{name}`, and
    /// each document may have `queue` frames of other nodes waiting (`--cluster-queue`).
    /// Returns at once: the link connects (and reconnects) in the background.
    pub fn start(url: &str, node: Uuid, prefix: &str, queue: usize) -> Result<Self, ClusterError> {
        let client = redis::Client::open(url)?;
        let shared = Arc::new(Shared {
            node,
            prefix: prefix.to_owned(),
            queue,
            subscribed: AtomicBool::new(false),
            publishing: AtomicBool::new(true),
            last_error: Mutex::new(Some("connecting".into())),
        });
        let (ops, ops_rx) = mpsc::unbounded_channel();
        let (publish, publish_rx) = mpsc::unbounded_channel();
        tokio::spawn(link::subscriber(client.clone(), shared.clone(), ops_rx));
        tokio::spawn(link::publisher(
            client,
            shared.clone(),
            publish_rx,
            ops.clone(),
        ));
        Ok(Self {
            shared,
            ops,
            publish,
        })
    }

    /// This node's id (the tag on what it publishes, and its rows in the update log).
    pub fn node(&self) -> Uuid {
        self.shared.node
    }

    /// `Ok` while the link to Redis is up; else why not (for `/readyz`).
    pub fn status(&self) -> Result<(), String> {
        if self.shared.is_up() {
            Ok(())
        } else {
            Err(self
                .shared
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .unwrap_or_else(|| "redis unreachable".into()))
        }
    }

    /// Subscribes to document `doc`'s channel and returns what other nodes publish on it.
    /// Waits until Redis confirmed the subscription (at most [`JOIN_WAIT`]), so a document
    /// loaded afterwards misses nothing published after its load: subscribe, then load.
    pub async fn join(&self, doc: &Arc<str>) -> Membership {
        let (to, from) = mpsc::channel(self.shared.queue);
        let (ready, confirmed) = oneshot::channel();
        let resync_queued = Arc::new(AtomicBool::new(false));
        let _ = self.ops.send(Op::Join {
            doc: doc.clone(),
            to,
            resync_queued: resync_queued.clone(),
            ready,
        });
        if tokio::time::timeout(JOIN_WAIT, confirmed).await.is_err() {
            tracing::warn!(%doc, "redis did not confirm the subscription; loading anyway");
        }
        Membership {
            cluster: self.clone(),
            doc: doc.clone(),
            from,
            resync_queued,
        }
    }

    /// Publishes a frame this node relayed to its own clients of `doc`.
    pub fn publish(&self, doc: &str, frame: &[u8]) {
        let channel = channel(&self.shared.prefix, doc);
        let _ = self
            .publish
            .send(Outgoing::Frame(channel, encode(self.shared.node, frame)));
    }

    /// Resolves once everything published before the call has been sent to Redis, or
    /// dropped because Redis is down: at shutdown, the last presence removals of this
    /// node's clients must reach the other nodes before the process exits.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.publish.send(Outgoing::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

/// A document's subscription; unsubscribes when dropped (the document left memory).
pub struct Membership {
    cluster: Cluster,
    doc: Arc<str>,
    from: mpsc::Receiver<Remote>,
    resync_queued: Arc<AtomicBool>,
}

impl Membership {
    /// The next message for the document from the other nodes.
    pub async fn recv(&mut self) -> Option<Remote> {
        let next = self.from.recv().await;
        if matches!(next, Some(Remote::Reconnected)) {
            // Cleared as it is taken, before it is handled: the link then owes a new
            // resync for any frame it drops from now on, rather than count on this one.
            self.resync_queued.store(false, Ordering::Release);
        }
        next
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        // Closed first, so the link sees the subscription is no longer wanted.
        self.from.close();
        let _ = self.cluster.ops.send(Op::Leave {
            doc: self.doc.clone(),
        });
    }
}

fn channel(prefix: &str, doc: &str) -> Vec<u8> {
    let mut c = Vec::with_capacity(prefix.len() + doc.len() + 5);
    c.extend_from_slice(prefix.as_bytes());
    c.extend_from_slice(b":doc:");
    c.extend_from_slice(doc.as_bytes());
    c
}
