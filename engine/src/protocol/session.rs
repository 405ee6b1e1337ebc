//! [`SyncSession`]: what to apply and what to answer for each incoming message.
//!
//! One session per connection (on the server, per client; in a client, per server). The
//! server and the wasm provider both drive this same state machine, so the protocol —
//! step 1 is answered with step 2, updates are applied and relayed, awareness ownership,
//! resync when something is missing — lives in one place. The session does no I/O: it
//! returns ready-encoded frames and the caller moves them.

use std::collections::BTreeSet;

use crate::awareness::{Awareness, AwarenessChanges};
use crate::document::Document;
use crate::error::SessionError;
use crate::protocol::codec::{self, AuthMessage, AwarenessUpdate, Message, SyncMessage};

/// Which end of the connection this session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A hub with many peers: applied updates and awareness are relayed to every peer of
    /// the document, the sender included (y-websocket clients rely on the echo).
    Server,
    /// A client with one server: nothing is relayed.
    Client,
}

/// What a peer may do to the document. Presence is open to every peer that may read (a
/// viewer's cursor is still useful to the editors); document changes are not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Access {
    /// The peer may change the document.
    #[default]
    ReadWrite,
    /// The peer syncs and publishes presence; its document changes are refused with a
    /// y-protocols permission-denied message and never applied.
    ReadOnly,
}

/// What the caller must do after [`SyncSession::handle`].
#[derive(Debug, Default)]
pub struct Outcome {
    /// Frames for the peer that sent the message (in order).
    pub reply: Vec<Vec<u8>>,
    /// Frames for every peer of the document, the sender included (server role only).
    pub broadcast: Vec<Vec<u8>>,
    /// The v1 update that was newly integrated, if any (to persist, to observe).
    pub applied: Option<Vec<u8>>,
    /// Awareness changes caused by the message.
    pub awareness: AwarenessChanges,
    /// This message completed the initial sync (the first step 2 received).
    pub synced: bool,
    /// The peer asked for the whole document (a step 1 with an empty state vector) and the
    /// session was told the caller keeps a cached full-state step 2: send that frame.
    pub full_state: bool,
    /// The document waits for updates it has not seen; a step 1 was added to `reply`.
    pub missing: bool,
    /// The message's update was not wholly applied: part of it waits for updates this
    /// replica has not received ([`crate::Applied::incomplete`]).
    pub incomplete: bool,
    /// The server acknowledged that this many of our document updates are durable
    /// (Tandem's opt-in "saved" extension; client role).
    pub saved: Option<u64>,
    /// A document change from a read-only peer was refused (a permission-denied frame is
    /// in `reply`); nothing was applied.
    pub refused: bool,
}

/// Protocol state of one connection.
#[derive(Debug)]
pub struct SyncSession {
    role: Role,
    synced: bool,
    resync_requested: bool,
    full_state_cache: bool,
    presence_batching: bool,
    access: Access,
    max_awareness_state: usize,
    max_awareness_clients: usize,
    controlled: BTreeSet<u64>,
}

impl SyncSession {
    /// A fresh session for a new connection.
    pub fn new(role: Role) -> Self {
        Self {
            role,
            synced: false,
            resync_requested: false,
            full_state_cache: false,
            presence_batching: false,
            access: Access::ReadWrite,
            max_awareness_state: usize::MAX,
            max_awareness_clients: usize::MAX,
            controlled: BTreeSet::new(),
        }
    }

    /// Sets what the peer may do (server role: from its token).
    pub fn with_access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    /// Refuses awareness updates carrying a state longer than `bytes` of JSON: presence is
    /// relayed to every peer and kept in memory, so one client must not make it huge.
    pub fn with_max_awareness_state(mut self, bytes: usize) -> Self {
        self.max_awareness_state = bytes;
        self
    }

    /// Refuses awareness updates that would give the peer states for more than `clients`
    /// client ids at once. A browser tab publishes one; without a bound, one connection
    /// could publish a million small states in a frame, each kept in memory, relayed to
    /// every peer and sent to every joiner.
    pub fn with_max_awareness_clients(mut self, clients: usize) -> Self {
        self.max_awareness_clients = clients;
        self
    }

    /// What the peer may do.
    pub fn access(&self) -> Access {
        self.access
    }

    /// Declares that the caller keeps an encoded step 2 of the whole document: a step 1
    /// with an empty state vector then yields [`Outcome::full_state`] instead of a fresh
    /// encoding, so a join storm on a large document encodes it once, not once per joiner.
    pub fn with_full_state_cache(mut self) -> Self {
        self.full_state_cache = true;
        self
    }

    /// Declares that the caller relays presence itself: awareness changes are reported in
    /// [`Outcome::awareness`] only, not encoded into [`Outcome::broadcast`]. A hub can then
    /// send everything that changed during a busy moment as one frame: in a join storm of
    /// `n` clients that is a few frames per peer instead of `n`.
    pub fn with_presence_batching(mut self) -> Self {
        self.presence_batching = true;
        self
    }

    /// Whether a step 2 has been received from the peer.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// Awareness client ids this peer has published states for. When the connection ends
    /// their states are removed (see [`SyncSession::close`]).
    pub fn controlled_clients(&self) -> impl Iterator<Item = u64> + '_ {
        self.controlled.iter().copied()
    }

    /// The frames to send as soon as the connection is up: our step 1, and every known
    /// awareness state if there is any (what y-websocket's server sends on connect).
    pub fn greeting(&self, doc: &Document, awareness: &Awareness) -> Vec<Vec<u8>> {
        let mut frames = vec![codec::encode_step1(&doc.state_vector_v1())];
        if !awareness.is_empty() {
            frames.push(awareness.encode_all().encode_frame());
        }
        frames
    }

    /// Handles one decoded message from the peer, mutating `doc` and `awareness`.
    /// Errors mean the peer sent something the document rejects; the caller closes the
    /// connection.
    pub fn handle(
        &mut self,
        doc: &Document,
        awareness: &mut Awareness,
        message: &Message<'_>,
        now_ms: u64,
    ) -> Result<Outcome, SessionError> {
        let mut out = Outcome::default();
        match message {
            Message::Sync(SyncMessage::Step1(sv)) => {
                if self.full_state_cache && sv.is_empty() {
                    out.full_state = true;
                } else {
                    out.reply.push(codec::encode_step2(&doc.diff_v1_from(sv)));
                }
            }
            Message::Sync(SyncMessage::Step2(update)) => {
                self.apply_or_refuse(doc, update, &mut out)?;
                if !self.synced {
                    self.synced = true;
                    out.synced = true;
                }
            }
            Message::Sync(SyncMessage::Update(update)) => {
                self.apply_or_refuse(doc, update, &mut out)?
            }
            Message::Awareness(update) => {
                if let Some(big) = update
                    .entries
                    .iter()
                    .find(|e| e.state.len() > self.max_awareness_state)
                {
                    return Err(SessionError::AwarenessStateTooLarge {
                        client_id: big.client_id,
                        bytes: big.state.len(),
                        limit: self.max_awareness_state,
                    });
                }
                self.check_awareness_clients(awareness, update)?;
                let changes = awareness.apply_update(update, now_ms);
                for id in &changes.added {
                    self.controlled.insert(*id);
                }
                for id in &changes.removed {
                    self.controlled.remove(id);
                }
                if self.role == Role::Server && !self.presence_batching && !changes.is_empty() {
                    let ids: Vec<u64> = changes.all().collect();
                    out.broadcast.push(awareness.encode(&ids).encode_frame());
                }
                out.awareness = changes;
            }
            Message::QueryAwareness => {
                out.reply.push(awareness.encode_all().encode_frame());
            }
            Message::Auth(AuthMessage::PermissionDenied { reason }) => {
                return Err(SessionError::PermissionDenied(reason.clone()));
            }
            // Tokens are checked by the caller before the session starts; one arriving later
            // changes nothing (access is fixed for the connection's life).
            Message::Auth(AuthMessage::Token { .. } | AuthMessage::Other(_)) => {}
            Message::Saved { updates } => {
                if self.role == Role::Client {
                    out.saved = Some(*updates);
                }
            }
        }
        Ok(out)
    }

    fn apply_or_refuse(
        &mut self,
        doc: &Document,
        update: &[u8],
        out: &mut Outcome,
    ) -> Result<(), SessionError> {
        if self.access == Access::ReadWrite {
            return self.apply(doc, update, out);
        }
        // A read-only peer's step 2 holds its delete set even when it changed nothing;
        // only a real change is refused, so a viewer that merely syncs sees no error.
        if doc.would_change_v1(update)? {
            out.reply.push(codec::encode_permission_denied(
                "read-only access: document changes are not accepted",
            ));
            out.refused = true;
        }
        Ok(())
    }

    fn apply(
        &mut self,
        doc: &Document,
        update: &[u8],
        out: &mut Outcome,
    ) -> Result<(), SessionError> {
        let applied = match self.role {
            // A hub's peers are untrusted and can always resend.
            Role::Server => doc.apply_peer_update_v1(update)?,
            Role::Client => doc.apply_update_v1(update)?,
        };
        if let Some(update) = applied.update {
            if self.role == Role::Server {
                out.broadcast.push(codec::encode_update(&update));
            }
            out.applied = Some(update);
        }
        out.incomplete |= applied.incomplete;
        if applied.missing {
            out.missing = true;
            // Ask once per gap; asking on every further update would flood the peer.
            if !self.resync_requested {
                self.resync_requested = true;
                out.reply.push(codec::encode_step1(&doc.state_vector_v1()));
            }
        } else {
            self.resync_requested = false;
        }
        Ok(())
    }

    /// Fails if `update` would leave the peer with states for more client ids than
    /// [`SyncSession::with_max_awareness_clients`] allows: its own, plus those of ids that
    /// have no state now and that the update would set (they would become its own).
    fn check_awareness_clients(
        &mut self,
        awareness: &Awareness,
        update: &AwarenessUpdate,
    ) -> Result<(), SessionError> {
        let limit = self.max_awareness_clients;
        if self.controlled.len().saturating_add(update.entries.len()) <= limit {
            return Ok(());
        }
        // Ids whose state another peer removed are no longer this one's to count.
        self.forget_departed(awareness);
        let arriving: BTreeSet<u64> = update
            .entries
            .iter()
            .filter(|e| {
                !e.is_removal()
                    && !self.controlled.contains(&e.client_id)
                    && awareness.state(e.client_id).is_none()
                    && e.clock > awareness.clock(e.client_id).unwrap_or(0)
            })
            .map(|e| e.client_id)
            .collect();
        if self.controlled.len() + arriving.len() > limit {
            return Err(SessionError::TooManyAwarenessClients { limit });
        }
        Ok(())
    }

    /// Ends the session: removes the awareness states this peer controlled and returns the
    /// frame announcing their removal to the remaining peers (if there was any).
    pub fn close(&mut self, awareness: &mut Awareness, now_ms: u64) -> Option<Vec<u8>> {
        let removed = self.release(awareness, now_ms);
        (!removed.is_empty()).then(|| awareness.encode(&removed).encode_frame())
    }

    /// Ends the session like [`SyncSession::close`], for a caller that relays presence
    /// itself: returns the client ids whose states were removed.
    pub fn release(&mut self, awareness: &mut Awareness, now_ms: u64) -> Vec<u64> {
        let ids: Vec<u64> = std::mem::take(&mut self.controlled).into_iter().collect();
        awareness.remove_states(&ids, now_ms).removed
    }

    /// Forgets that `clients` are controlled by this peer (they timed out elsewhere).
    pub fn forget(&mut self, clients: &[u64]) {
        for id in clients {
            self.controlled.remove(id);
        }
    }

    /// Forgets the clients this peer controlled whose state is gone from `awareness`
    /// (another peer, any of which may, published their removal), so they no longer count
    /// against [`SyncSession::with_max_awareness_clients`].
    pub fn forget_departed(&mut self, awareness: &Awareness) {
        self.controlled.retain(|id| awareness.state(*id).is_some());
    }
}
