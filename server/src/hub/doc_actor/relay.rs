//! A document actor's side of cluster mode: what its own clients change goes to the other
//! nodes, and what they publish is applied here as if a client of this node had sent it,
//! except that it is not published again.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tandem_engine::protocol::codec;
use tandem_engine::{DocError, Message, SessionError, SyncMessage};
use tracing::{debug, error, info, warn};
use uuid::Uuid;

use super::{DocActor, Ending};
use crate::cluster::{Membership, Remote, DELETED};

/// The next message from the other nodes, or never (single node).
pub(super) async fn next(membership: &mut Option<Membership>) -> Option<Remote> {
    match membership {
        Some(m) => m.recv().await,
        None => std::future::pending().await,
    }
}

impl DocActor {
    /// Sends frames this node relays to its own clients to the other nodes as well.
    pub(super) fn publish(&self, frames: &[Vec<u8>]) {
        if let Some(cluster) = &self.cluster {
            for frame in frames {
                cluster.publish(&self.name, frame);
            }
        }
    }

    /// Sends the current presence of `ids` to the other nodes, right away: each node
    /// batches for its own clients.
    pub(super) fn publish_presence(&self, ids: impl IntoIterator<Item = u64>) {
        if let Some(cluster) = &self.cluster {
            let ids: Vec<u64> = ids.into_iter().collect();
            if !ids.is_empty() {
                cluster.publish(&self.name, &self.awareness.encode(&ids).encode_frame());
            }
        }
    }

    /// Asks the other nodes for what this one lacks (they answer with an update holding
    /// it) and republishes the presence this node knows: after a load, and after an outage
    /// of the link during which frames were lost.
    pub(super) fn resync_cluster(&self) {
        if self.cluster.is_none() {
            return;
        }
        let mut frames = vec![codec::encode_step1(&self.doc.state_vector_v1())];
        if !self.awareness.is_empty() {
            frames.push(self.awareness.encode_all().encode_frame());
        }
        self.publish(&frames);
    }

    /// Applies what another node published; hands back the end of this actor when the
    /// document was deleted there.
    pub(super) fn remote(&mut self, remote: Remote) -> Option<Ending> {
        let (node, frame) = match remote {
            Remote::Reconnected => {
                self.resync_cluster();
                return None;
            }
            Remote::Frame { node, frame } => (node, frame),
        };
        if frame[..] == *DELETED {
            info!(doc = %self.name, %node, "document deleted on another node");
            return Some(Ending::DeletedElsewhere);
        }
        self.apply_remote(node, frame);
        None
    }

    fn apply_remote(&mut self, node: Uuid, frame: Bytes) {
        let message = match Message::decode(&frame) {
            Ok(m) => m,
            Err(e) => {
                warn!(doc = %self.name, %node, error = %e, "undecodable frame from another node");
                return;
            }
        };
        if let Message::Sync(SyncMessage::Step1(sv)) = &message {
            // Another node asks for what it lacks: everyone hears the answer, which costs
            // nothing to those who have it already.
            let diff = self.doc.diff_v1_from(sv);
            if diff.len() > 2 {
                self.publish(&[codec::encode_update(&diff)]);
            }
            // The asker also lacks presence: a node that just loaded the document knows no
            // cursor of this node's clients until they renew (15 s), and one resyncing after
            // lost frames may have missed their moves. Clocks make a repeat harmless. (A
            // lost removal is not in it: that cursor times out, 30 s after its last renewal.)
            if !self.awareness.is_empty() {
                self.publish(&[self.awareness.encode_all().encode_frame()]);
            }
            // Sync goes both ways: if the asking node has edits this one lacks (both kept
            // serving clients through a Redis outage), ask back. This node's own step 1
            // after the outage may have gone out before the other had resubscribed, and
            // then nothing else would ever bring those edits here.
            if self.doc.is_behind(sv) {
                self.publish(&[codec::encode_step1(&self.doc.state_vector_v1())]);
            }
            return;
        }
        let started = Instant::now();
        let now = self.now_ms();
        let outcome = match self.cluster_session.handle(
            &self.doc,
            &mut self.awareness,
            &message,
            now,
        ) {
            Ok(o) => o,
            Err(SessionError::Doc(DocError::Poisoned)) => {
                error!(doc = %self.name, %node, "an update from another node crashed the CRDT; reloading");
                self.poisoned = true;
                return;
            }
            Err(e) => {
                warn!(doc = %self.name, %node, error = %e, "frame from another node refused");
                return;
            }
        };
        if outcome.missing {
            debug!(doc = %self.name, %node, "waiting for updates from other nodes; asking");
        }
        // A step 1 asking for what is missing goes to the other nodes.
        self.publish(&outcome.reply);
        let origin: Arc<str> = format!("node {node}").into();
        let mut outcome = outcome;
        outcome.reply.clear();
        self.absorb(None, outcome, &origin, started);
    }
}
