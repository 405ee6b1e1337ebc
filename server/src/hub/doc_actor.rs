//! One task per loaded document. It alone owns the [`Document`], its awareness and the
//! list of connections, so nothing on the path of an edit takes a lock shared with other
//! documents. Every outgoing frame is encoded once and the same bytes are queued for each
//! connection (the sender included: y-websocket clients rely on the echo). Every applied
//! update is numbered and handed to the group-commit writer; the actor never waits for the
//! database except while loading, deleting, or handing over after a crash.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tandem_engine::protocol::codec;
use tandem_engine::{
    Access, Awareness, AwarenessUpdate, CodecError, DocError, Document, Message, Outcome, Role,
    SessionError, SyncMessage, SyncSession,
};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

use crate::cluster::{Cluster, Membership};
use crate::config::Config;
use crate::hub::command::{
    ApiError, Catchup, Command, DocInfo, Out, Outbox, PollBatch, PostBody, Posted, Reply,
    Subscribed,
};
use crate::hub::doc_load::{self, Loaded};
use crate::hub::durability::Durability;
use crate::hub::recent::Recent;
use crate::hub::registry::Registry;
use crate::hub::{Close, ConnId};
use crate::store::{Store, Writer};

/// How often stale awareness states are looked for (y-protocols checks every 3 s).
const AWARENESS_CHECK: Duration = Duration::from_secs(3);

/// What an actor needs from the rest of the server.
pub struct Env {
    /// To leave the registry when idle, deleted or failed.
    pub registry: Registry,
    /// Connections holding a lease on this document.
    pub users: Arc<AtomicUsize>,
    /// Flags.
    pub config: Arc<Config>,
    /// Where the document is loaded from.
    pub store: Arc<dyn Store>,
    /// Where its updates go.
    pub writer: Writer,
    /// The previous actor of this document crashed: its queued writes must be durable
    /// before the store is read, or the reload would miss them.
    pub after_crash: bool,
    /// Cluster mode: the link to the other nodes.
    pub cluster: Option<Cluster>,
}

mod early;
mod presence;
mod relay;

struct Conn {
    peer: SocketAddr,
    /// `ws <peer>`, the origin column of the updates it sends.
    origin: Arc<str>,
    session: SyncSession,
    outbox: Outbox,
    acks: Option<Acks>,
}

/// "Saved" acknowledgements owed to a connection that asked for them.
#[derive(Default)]
struct Acks {
    /// Document updates received from the connection so far.
    received: u64,
    /// Acknowledge `count` updates once everything up to `seq` is durable.
    owed: Option<(u64, u64)>,
}

/// What ends a document's actor: two commands, and a delete on another node.
/// [`DocActor::handle`] hands them back because ending needs the actor's mailbox: what is
/// still in it gets refused.
enum Ending {
    Shutdown(oneshot::Sender<()>),
    Delete(Reply<bool>),
    DeletedElsewhere,
}

/// The whole document encoded once for joiners with an empty state.
struct FullState {
    frame: Bytes,
    /// Where the v1 update starts inside `frame`.
    payload_at: usize,
}

struct DocActor {
    name: Arc<str>,
    doc: Document,
    awareness: Awareness,
    conns: HashMap<ConnId, Conn>,
    full_state: Option<FullState>,
    /// Approximate encoded size: last full encoding plus updates since.
    doc_bytes: usize,
    durability: Durability,
    /// The latest updates, for SSE resumption and long-polls.
    recent: Recent,
    /// Bumped whenever presence changes (long-pollers ask "newer than mine?").
    awareness_version: u64,
    /// Long-polls waiting for the next change.
    pollers: Vec<(u64, u64, Reply<PollBatch>)>,
    /// The protocol session of updates posted over HTTP that name no SSE subscription.
    http_session: SyncSession,
    /// The protocol sessions of presence posted without a subscription, one per address
    /// with states alive: each address may publish `--max-awareness-clients` ids (one
    /// session for every poster let one address fill the document's memory with states).
    http_presence: HashMap<IpAddr, SyncSession>,
    /// Posts answered once durable: (sequence number, reply, changed).
    waiting_posts: Vec<(u64, Reply<Posted>, bool)>,
    /// Connections to close after the current command (closing may broadcast).
    doomed: Vec<(ConnId, Close)>,
    /// Presence changes waiting to be relayed as one frame.
    presence: presence::PendingPresence,
    /// An update crashed the CRDT: the in-memory document can no longer be trusted.
    poisoned: bool,
    /// Cluster mode: where frames for other nodes go, and what they send.
    cluster: Option<Cluster>,
    membership: Option<Membership>,
    /// The protocol session of what other nodes relay.
    cluster_session: SyncSession,
    started: Instant,
    config: Arc<Config>,
}

/// The protocol session of one peer of a document (a connection, an SSE subscription,
/// HTTP posts, the other nodes): what it may do, and the presence size limit. The actor
/// relays presence itself, in batches (see `presence`).
fn peer_session(config: &Config, access: Access) -> SyncSession {
    SyncSession::new(Role::Server)
        .with_access(access)
        .with_max_awareness_state(config.max_awareness_bytes)
        .with_presence_batching()
}

/// The protocol session of a peer that publishes presence for its own clients (a
/// connection, an SSE subscription, an address posting presence): [`peer_session`] held to
/// `--max-awareness-clients` ids. Not the other nodes, which relay all of theirs.
fn client_session(config: &Config, access: Access) -> SyncSession {
    peer_session(config, access).with_max_awareness_clients(config.max_awareness_clients)
}

/// Starts the actor of document `name`.
pub fn spawn(name: Arc<str>, rx: mpsc::Receiver<Command>, env: Env) {
    tokio::spawn(run(name, rx, env));
}

async fn run(name: Arc<str>, mut rx: mpsc::Receiver<Command>, env: Env) {
    if env.after_crash {
        env.writer.flush().await;
    }
    // Load, keeping what arrives meanwhile: joiners get no sync reply before the stored
    // state is in memory, and every joiner of a loading document shares this one load.
    let mut early = early::Early::new(env.config.max_doc_bytes);
    // Cluster mode: subscribe first, then load; what other nodes publish meanwhile waits
    // in the subscription and is applied after the load (duplicates are harmless, gaps
    // would not be).
    let membership = match &env.cluster {
        Some(cluster) => Some(cluster.join(&name).await),
        None => None,
    };
    let loading = {
        let (store, name, cluster) = (env.store.clone(), name.clone(), env.cluster.is_some());
        async move { doc_load::load(&*store, &name, cluster).await }
    };
    tokio::pin!(loading);
    let loaded = loop {
        tokio::select! {
            loaded = &mut loading => break loaded,
            cmd = rx.recv() => match cmd {
                Some(Command::Shutdown { done }) => {
                    let (early, _) = early.into_parts();
                    fail_all(&name, early, &mut rx, &env, Close::going_away()).await;
                    let _ = done.send(());
                    return;
                }
                Some(cmd) => early.push(cmd),
                None => return,
            },
        }
    };
    let loaded = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            error!(doc = %name, error = %e, "document cannot be loaded");
            env.registry.remove(&name, &env.users);
            let close = Close::internal(format!("document cannot be loaded: {e}"));
            let (early, _) = early.into_parts();
            fail_all(&name, early, &mut rx, &env, close).await;
            return;
        }
    };
    info!(doc = %name, seq = loaded.last_seq, "document loaded");
    let mut actor = DocActor::new(name, loaded, &env);
    actor.membership = membership;
    if actor.durability.compaction_due() {
        actor.durability.compact(&actor.doc);
    }
    // Ask the other nodes for what they hold and the store does not have yet.
    actor.resync_cluster();
    let (early, overflowed) = early.into_parts();
    let mut early = early.into_iter();
    while let Some(cmd) = early.next() {
        // A delete usually arrives while its document loads (`DELETE` of a document not in
        // memory starts the load and sends at once): it is carried out now, and what came
        // after it refused as sent to a deleted document.
        if let Some(ending) = actor.handle(cmd) {
            actor.end(ending, early.collect(), rx, &env).await;
            return;
        }
        // As in the main loop: an update that crashed the CRDT stops everything at once,
        // or what waited behind it would be served from, and saved on top of, a state
        // that can no longer be trusted.
        actor.close_doomed();
        if actor.poisoned {
            actor.hand_over(early.collect(), rx, &env).await;
            return;
        }
    }
    actor.doomed.extend(overflowed);
    actor.close_doomed();
    actor.run(rx, env).await;
}

/// Answers every command of an actor that will not serve: joiners are closed with `close`,
/// API callers told why; a delete still goes through (a corrupt document must be deletable).
async fn fail_all(
    name: &Arc<str>,
    early: Vec<Command>,
    rx: &mut mpsc::Receiver<Command>,
    env: &Env,
    close: Close,
) {
    rx.close();
    let mut rest = Vec::new();
    while let Ok(cmd) = rx.try_recv() {
        rest.push(cmd);
    }
    let unavailable = || close.api_error();
    for cmd in early.into_iter().chain(rest) {
        match cmd {
            Command::Join { outbox, .. } => {
                let _ = outbox.close.send(close.clone());
            }
            Command::Inspect { reply, .. } => {
                let _ = reply.send(Err(unavailable()));
            }
            Command::State { reply } => {
                let _ = reply.send(Err(unavailable()));
            }
            Command::Subscribe { outbox, reply, .. } => {
                let _ = outbox.close.send(close.clone());
                let _ = reply.send(Err(unavailable()));
            }
            Command::Post { reply, .. } => {
                let _ = reply.send(Err(unavailable()));
            }
            Command::Poll { reply, .. } => {
                let _ = reply.send(Err(unavailable()));
            }
            Command::Delete { reply } => {
                let result = env.writer.delete(name, None).await;
                let _ = reply.send(result.map_err(|e| ApiError::Unavailable(e.to_string())));
            }
            Command::Shutdown { done } => {
                let _ = done.send(());
            }
            Command::Frame { .. } | Command::Leave { .. } => {}
        }
    }
}

impl DocActor {
    fn new(name: Arc<str>, loaded: Loaded, env: &Env) -> Self {
        let durability = Durability::new(name.clone(), env.writer.clone(), &loaded, &env.config);
        let mut recent = Recent::new(
            env.config.resume_window_updates,
            env.config.resume_window_bytes,
        );
        for (seq, update) in loaded.recent {
            recent.push(seq, update, loaded.last_seq);
        }
        Self {
            doc: loaded.doc,
            awareness: Awareness::new(0),
            conns: HashMap::new(),
            full_state: None,
            doc_bytes: loaded.stored_bytes,
            durability,
            recent,
            awareness_version: 0,
            pollers: Vec::new(),
            http_session: peer_session(&env.config, Access::ReadWrite),
            http_presence: HashMap::new(),
            waiting_posts: Vec::new(),
            doomed: Vec::new(),
            presence: presence::PendingPresence::new(env.config.presence_batch()),
            poisoned: false,
            cluster: env.cluster.clone(),
            membership: None,
            cluster_session: peer_session(&env.config, Access::ReadWrite),
            started: Instant::now(),
            config: env.config.clone(),
            name,
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Command>, env: Env) {
        let mut awareness_check = tokio::time::interval(AWARENESS_CHECK);
        awareness_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut idle_since = None;
        loop {
            if self.presence.is_due(tokio::time::Instant::now()) {
                self.flush_presence();
                self.close_doomed();
            }
            idle_since = if self.conns.is_empty() && self.durability.is_saved() {
                idle_since.or_else(|| Some(tokio::time::Instant::now()))
            } else {
                None
            };
            let unload_at = idle_since.map(|t| t + self.config.idle_unload());
            tokio::select! {
                cmd = rx.recv() => {
                    let Some(cmd) = cmd else { break };
                    if let Some(ending) = self.handle(cmd) {
                        self.end(ending, Vec::new(), rx, &env).await;
                        return;
                    }
                    self.close_doomed();
                    if self.poisoned {
                        self.hand_over(Vec::new(), rx, &env).await;
                        return;
                    }
                }
                _ = self.durability.changed() => {
                    if self.durability.is_deleted() {
                        warn!(doc = %self.name, "document deleted from the store under this node; closing its clients");
                        self.end(Ending::DeletedElsewhere, Vec::new(), rx, &env).await;
                        return;
                    }
                    self.on_saved();
                    self.close_doomed();
                }
                Some(remote) = relay::next(&mut self.membership) => {
                    if let Some(ending) = self.remote(remote) {
                        self.end(ending, Vec::new(), rx, &env).await;
                        return;
                    }
                    self.close_doomed();
                    if self.poisoned {
                        self.hand_over(Vec::new(), rx, &env).await;
                        return;
                    }
                }
                _ = awareness_check.tick(), if !self.awareness.is_empty() || !self.http_presence.is_empty() => {
                    self.expire_awareness();
                    self.close_doomed();
                }
                _ = crate::sleep_until_opt(self.presence.due_at()) => {
                    self.flush_presence();
                    self.close_doomed();
                }
                _ = crate::sleep_until_opt(unload_at) => {
                    if env.registry.release_if_idle(&self.name, &env.users) {
                        info!(doc = %self.name, "document unloaded (idle)");
                        break;
                    }
                    // Someone acquired it meanwhile; their Join is on its way.
                    idle_since = None;
                }
            }
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Carries out one command; hands back the two that end the actor, which need its
    /// mailbox (see [`DocActor::end`]).
    fn handle(&mut self, cmd: Command) -> Option<Ending> {
        match cmd {
            Command::Join {
                conn,
                peer,
                origin,
                access,
                outbox,
                acks,
            } => self.join(conn, peer, origin, access, outbox, acks),
            Command::Frame { conn, frame } => self.frame(conn, frame),
            Command::Leave { conn, close: None } => self.leave(conn),
            Command::Leave {
                conn,
                close: Some(close),
            } => self.doomed.push((conn, close)),
            Command::Inspect { root, reply } => {
                let _ = reply.send(Ok(self.inspect(&root)));
            }
            Command::State { reply } => {
                let _ = reply.send(Ok(self.state_with_seq()));
            }
            Command::Subscribe {
                conn,
                peer,
                access,
                outbox,
                since,
                reply,
            } => self.subscribe(conn, peer, access, outbox, since, reply),
            Command::Post {
                body,
                session,
                origin,
                peer,
                wait_saved,
                reply,
            } => self.post(body, session, (&origin, peer), wait_saved, reply),
            Command::Poll {
                since,
                aw,
                state_vector,
                reply,
            } => self.poll(since, aw, state_vector, reply),
            Command::Shutdown { done } => return Some(Ending::Shutdown(done)),
            Command::Delete { reply } => return Some(Ending::Delete(reply)),
        }
        None
    }

    /// Ends the actor for `ending`. `after`: commands that reached it behind the ending one
    /// while the document loaded; they, and what is still in the mailbox, are refused.
    async fn end(
        mut self,
        ending: Ending,
        after: Vec<Command>,
        mut rx: mpsc::Receiver<Command>,
        env: &Env,
    ) {
        match ending {
            Ending::Shutdown(done) => {
                self.shutdown();
                fail_all(&self.name, after, &mut rx, env, Close::going_away()).await;
                let _ = done.send(());
            }
            Ending::Delete(reply) => self.delete(Some(reply), after, rx, env).await,
            Ending::DeletedElsewhere => self.delete(None, after, rx, env).await,
        }
    }

    fn join(
        &mut self,
        id: ConnId,
        peer: SocketAddr,
        origin: Arc<str>,
        access: Access,
        outbox: Outbox,
        acks: bool,
    ) {
        let session = client_session(&self.config, access).with_full_state_cache();
        let greeting = session.greeting(&self.doc, &self.awareness);
        self.conns.insert(
            id,
            Conn {
                peer,
                origin,
                session,
                outbox,
                acks: acks.then(Acks::default),
            },
        );
        for frame in greeting {
            self.send_to(id, Bytes::from(frame));
        }
        debug!(doc = %self.name, %peer, conn = id, clients = self.conns.len(), "joined");
    }

    fn frame(&mut self, id: ConnId, frame: Bytes) {
        metrics::counter!("tandem_messages_in_total").increment(1);
        metrics::counter!("tandem_bytes_in_total").increment(frame.len() as u64);
        let now = self.now_ms();
        let Some(conn) = self.conns.get_mut(&id) else {
            return; // already closed
        };
        let peer = conn.peer;
        let message = match Message::decode(&frame) {
            Ok(m) => m,
            Err(CodecError::UnknownMessageType(t)) => {
                debug!(doc = %self.name, %peer, message_type = t, "ignoring unknown message type");
                return;
            }
            Err(e) => {
                warn!(doc = %self.name, %peer, error = %e, "undecodable frame; closing connection");
                let close = match e {
                    CodecError::UnknownSyncType(_) => Close::unsupported(e.to_string()),
                    _ => Close::invalid(e.to_string()),
                };
                self.doomed.push((id, close));
                return;
            }
        };
        let is_update = matches!(
            message,
            Message::Sync(SyncMessage::Update(_) | SyncMessage::Step2(_))
        );
        if let Message::Sync(SyncMessage::Update(u) | SyncMessage::Step2(u)) = &message {
            if self.doc_bytes + u.len() > self.config.max_doc_bytes {
                warn!(doc = %self.name, %peer, "update would exceed the document size limit");
                self.doomed
                    .push((id, Close::document_too_large(self.config.max_doc_bytes)));
                return;
            }
        }
        let started = Instant::now();
        let outcome = match conn
            .session
            .handle(&self.doc, &mut self.awareness, &message, now)
        {
            Ok(o) => o,
            Err(SessionError::PermissionDenied(reason)) => {
                debug!(doc = %self.name, %peer, %reason, "client sent permission-denied; ignored");
                return;
            }
            Err(e @ SessionError::AwarenessStateTooLarge { .. }) => {
                warn!(doc = %self.name, %peer, error = %e, "closing connection");
                self.doomed.push((
                    id,
                    Close::policy("awareness_size", format!("{e} (--max-awareness-bytes)")),
                ));
                return;
            }
            Err(e @ SessionError::TooManyAwarenessClients { .. }) => {
                warn!(doc = %self.name, %peer, error = %e, "closing connection");
                self.doomed.push((
                    id,
                    Close::policy(
                        "awareness_clients",
                        format!("{e} (--max-awareness-clients)"),
                    ),
                ));
                return;
            }
            Err(SessionError::Doc(DocError::Poisoned)) => {
                error!(doc = %self.name, %peer, "an update crashed the CRDT; reloading the document");
                self.poisoned = true;
                self.doomed
                    .push((id, Close::invalid("update rejected: it crashed the CRDT")));
                return;
            }
            Err(SessionError::Doc(e)) => {
                warn!(doc = %self.name, %peer, error = %e, "update rejected; closing connection");
                self.doomed
                    .push((id, Close::invalid(format!("update rejected: {e}"))));
                return;
            }
        };
        let origin = conn.origin.clone();
        if outcome.refused {
            debug!(doc = %self.name, %peer, "read-only client sent a change; refused");
            metrics::counter!("tandem_auth_refused_total", "reason" => "read_only_update")
                .increment(1);
        }
        if outcome.missing {
            debug!(doc = %self.name, %peer, "document waits for missing updates; asked the peer to resync");
        }
        self.publish(&outcome.broadcast);
        self.publish_presence(outcome.awareness.all());
        self.absorb(Some(id), outcome, &origin, started);
        if is_update {
            let seq = self.durability.last_seq();
            if let Some(acks) = self.conns.get_mut(&id).and_then(|c| c.acks.as_mut()) {
                acks.received += 1;
                acks.owed = Some((seq, acks.received));
                self.settle_acks(Some(id));
            }
        }
    }

    /// Carries out what the protocol session decided for a message from `from` (a
    /// connection, or `None` for an HTTP post without one).
    fn absorb(
        &mut self,
        from: Option<ConnId>,
        outcome: Outcome,
        origin: &Arc<str>,
        started: Instant,
    ) {
        if let Some(mut update) = outcome.applied {
            metrics::histogram!("tandem_update_apply_seconds")
                .record(started.elapsed().as_secs_f64());
            // yrs' encoder leaves spare capacity (about 1 KiB) in the vector; the update is
            // kept in the resume window and the writer's queue, so keep only its bytes.
            update.shrink_to_fit();
            let update = Bytes::from(update);
            self.full_state = None;
            self.doc_bytes += update.len();
            let seq = self.durability.record(&self.doc, update.clone(), origin);
            self.recent.push(seq, update, self.durability.saved_seq());
        }
        if let Some(id) = from {
            for frame in outcome.reply {
                self.send_to(id, Bytes::from(frame));
            }
            if outcome.full_state {
                let frame = self.full_state().frame.clone();
                self.send_to(id, frame);
            }
        }
        for frame in outcome.broadcast {
            self.broadcast(Bytes::from(frame));
        }
        self.note_presence(&outcome.awareness);
    }

    /// An SSE subscription: answers with what it missed (as far as memory holds it), our
    /// state vector (so the client can post what we lack) and the presence; from now on it
    /// gets every broadcast.
    fn subscribe(
        &mut self,
        id: ConnId,
        peer: SocketAddr,
        access: Access,
        outbox: Outbox,
        since: Option<u64>,
        reply: Reply<Subscribed>,
    ) {
        self.conns.insert(
            id,
            Conn {
                peer,
                origin: Arc::from(format!("sse {peer}")),
                session: client_session(&self.config, access),
                outbox,
                acks: None,
            },
        );
        let subscribed = Subscribed {
            catchup: self.catchup(since),
            state_vector: Bytes::from(self.doc.state_vector_v1()),
            awareness: (!self.awareness.is_empty())
                .then(|| Bytes::from(self.awareness.encode_all().encode_frame())),
        };
        let _ = reply.send(Ok(subscribed));
        debug!(doc = %self.name, %peer, conn = id, ?since, "SSE subscribed");
    }

    /// What a reader at `since` missed: held updates, a pointer to the stored log for what
    /// memory no longer holds, or the whole state for a reader with no position (0 or
    /// none) or ahead of the document.
    fn catchup(&mut self, since: Option<u64>) -> Catchup {
        let last_seq = self.durability.last_seq();
        match since {
            Some(s) if s <= last_seq && (s > 0 || last_seq == 0) => {
                let (updates, complete) = self.recent.after(s, last_seq);
                Catchup {
                    updates,
                    log_after: (!complete).then_some(s),
                    state: None,
                    last_seq,
                }
            }
            _ => Catchup {
                state: Some(self.state_with_seq()),
                last_seq,
                ..Catchup::default()
            },
        }
    }

    /// The whole document as one v1 update, and the sequence number it includes.
    fn state_with_seq(&mut self) -> (u64, Bytes) {
        let seq = self.durability.last_seq();
        let state = self.full_state();
        (seq, state.frame.slice(state.payload_at..))
    }

    /// A document or presence update posted over HTTP, handled by the protocol session of
    /// the poster's SSE subscription (or, naming none, the shared one for updates and its
    /// address's for presence). `from` is who posted it: for the log, and its address.
    fn post(
        &mut self,
        body: PostBody,
        session: Option<ConnId>,
        from: (&Arc<str>, IpAddr),
        wait_saved: bool,
        reply: Reply<Posted>,
    ) {
        let (origin, peer) = from;
        let (bytes, awareness) = match &body {
            PostBody::Update(b) => (b, None),
            PostBody::Awareness(b) => match AwarenessUpdate::decode(b) {
                Ok(u) => (b, Some(u)),
                Err(e) => {
                    let _ = reply.send(Err(ApiError::Rejected(format!("awareness update: {e}"))));
                    return;
                }
            },
        };
        let message = match awareness {
            Some(u) => Message::Awareness(u),
            None => {
                if self.doc_bytes + bytes.len() > self.config.max_doc_bytes {
                    crate::limits::exceeded("doc_size");
                    let _ = reply.send(Err(ApiError::TooLarge(format!(
                        "document would exceed {} bytes (--max-doc-bytes)",
                        self.config.max_doc_bytes
                    ))));
                    return;
                }
                Message::Sync(SyncMessage::Update(bytes))
            }
        };
        let now = self.now_ms();
        let started = Instant::now();
        let session = session.filter(|id| self.conns.contains_key(id));
        let result = match session.and_then(|id| self.conns.get_mut(&id)) {
            Some(conn) => conn
                .session
                .handle(&self.doc, &mut self.awareness, &message, now),
            None if matches!(message, Message::Awareness(_)) => {
                let config = &self.config;
                let own = self
                    .http_presence
                    .entry(peer)
                    .or_insert_with(|| client_session(config, Access::ReadWrite));
                let result = own.handle(&self.doc, &mut self.awareness, &message, now);
                if own.controlled_clients().next().is_none() {
                    self.http_presence.remove(&peer);
                }
                result
            }
            None => self
                .http_session
                .handle(&self.doc, &mut self.awareness, &message, now),
        };
        let outcome = match result {
            Ok(o) => o,
            Err(SessionError::Doc(DocError::Poisoned)) => {
                error!(doc = %self.name, %origin, "a posted update crashed the CRDT; reloading the document");
                self.poisoned = true;
                let _ = reply.send(Err(ApiError::Rejected(
                    "update rejected: it crashed the CRDT".into(),
                )));
                return;
            }
            Err(e @ SessionError::AwarenessStateTooLarge { .. }) => {
                crate::limits::exceeded("awareness_size");
                let _ = reply.send(Err(ApiError::TooLarge(format!(
                    "{e} (--max-awareness-bytes)"
                ))));
                return;
            }
            Err(e @ SessionError::TooManyAwarenessClients { .. }) => {
                crate::limits::exceeded("awareness_clients");
                let _ = reply.send(Err(ApiError::TooLarge(format!(
                    "{e} (--max-awareness-clients)"
                ))));
                return;
            }
            Err(e) => {
                let _ = reply.send(Err(ApiError::Rejected(format!("update rejected: {e}"))));
                return;
            }
        };
        if outcome.refused {
            let _ = reply.send(Err(ApiError::Forbidden(
                "read-only session: document changes are not accepted".into(),
            )));
            return;
        }
        let changed = outcome.applied.is_some() || !outcome.awareness.is_empty();
        let incomplete = outcome.incomplete;
        self.publish(&outcome.broadcast);
        self.publish_presence(outcome.awareness.all());
        self.absorb(session, outcome, origin, started);
        if incomplete {
            // What the update builds on never reached this document (it went to another
            // node, or was lost), so the part that depends on it was dropped. Answered as
            // an error, not as saved: the client syncs again and sends what is missing.
            let _ = reply.send(Err(ApiError::Conflict(
                "the update depends on changes this document has not received: sync first".into(),
            )));
            return;
        }
        let seq = self.durability.last_seq();
        if wait_saved {
            self.waiting_posts.push((seq, reply, changed));
            self.settle_posts();
        } else {
            let saved = self.durability.saved_seq() >= seq;
            let _ = reply.send(Ok(Posted {
                changed,
                seq,
                saved,
            }));
        }
    }

    /// Answers a long-poll now if something changed after (`since`, `aw`) or it asks for
    /// the state vector, else parks it.
    fn poll(&mut self, since: u64, aw: u64, state_vector: bool, reply: Reply<PollBatch>) {
        if state_vector || since != self.durability.last_seq() || aw != self.awareness_version {
            let mut batch = self.poll_batch(since, aw);
            if state_vector {
                batch.state_vector = Some(Bytes::from(self.doc.state_vector_v1()));
            }
            let _ = reply.send(Ok(batch));
        } else {
            self.pollers.retain(|(_, _, r)| !r.is_closed());
            self.pollers.push((since, aw, reply));
        }
    }

    fn poll_batch(&mut self, since: u64, aw: u64) -> PollBatch {
        let awareness = (aw != self.awareness_version)
            .then(|| Bytes::from(self.awareness.encode_all().encode()));
        PollBatch {
            since: self.durability.last_seq(),
            catchup: self.catchup(Some(since)),
            awareness,
            aw: self.awareness_version,
            state_vector: None,
        }
    }

    /// Something changed: answer every parked long-poll.
    fn wake_pollers(&mut self) {
        for (since, aw, reply) in std::mem::take(&mut self.pollers) {
            if !reply.is_closed() {
                let batch = self.poll_batch(since, aw);
                let _ = reply.send(Ok(batch));
            }
        }
    }

    /// The text is read from the document's encoded state (what clients receive and the
    /// store keeps), not from the live replica: after some forged updates yrs shows content
    /// its encodings leave out (fuzz/regressions/README.md), and the API must show what
    /// everyone else sees.
    fn inspect(&mut self, root: &str) -> DocInfo {
        let replica = Document::new(self.name.clone());
        let full = self.full_state();
        let text = match replica.apply_update_v1(&full.frame[full.payload_at..]) {
            Ok(_) => replica.text_string(root),
            Err(_) => self.doc.text_string(root),
        };
        DocInfo {
            name: self.name.to_string(),
            text,
            seq: self.durability.last_seq(),
            saved_seq: self.durability.saved_seq(),
            state_bytes: self.doc_bytes,
            clients: self.conns.len(),
        }
    }

    /// More of the log is durable: answer the acknowledgements and posts it covers.
    fn on_saved(&mut self) {
        self.recent.trim(self.durability.saved_seq());
        self.settle_acks(None);
        self.settle_posts();
    }

    /// Sends the "saved" acknowledgements now due, to `only` or to every connection.
    fn settle_acks(&mut self, only: Option<ConnId>) {
        let saved = self.durability.saved_seq();
        let mut due = Vec::new();
        let mut check = |id: ConnId, conn: &mut Conn| {
            if let Some(acks) = conn.acks.as_mut() {
                if let Some((seq, count)) = acks.owed {
                    if seq <= saved {
                        acks.owed = None;
                        due.push((id, count));
                    }
                }
            }
        };
        match only {
            Some(id) => {
                if let Some(conn) = self.conns.get_mut(&id) {
                    check(id, conn);
                }
            }
            None => {
                for (id, conn) in &mut self.conns {
                    check(*id, conn);
                }
            }
        }
        for (id, count) in due {
            self.send_to(id, Bytes::from(codec::encode_saved(count)));
        }
    }

    fn settle_posts(&mut self) {
        let saved = self.durability.saved_seq();
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting_posts)
            .into_iter()
            .partition(|(seq, _, _)| *seq <= saved);
        self.waiting_posts = waiting;
        for (seq, reply, changed) in due {
            let _ = reply.send(Ok(Posted {
                changed,
                seq,
                saved: true,
            }));
        }
    }

    fn full_state(&mut self) -> &FullState {
        if self.full_state.is_none() {
            let snapshot = self.doc.snapshot_v1();
            self.doc_bytes = snapshot.len();
            let frame = codec::encode_step2(&snapshot);
            self.full_state = Some(FullState {
                payload_at: frame.len() - snapshot.len(),
                frame: Bytes::from(frame),
            });
        }
        self.full_state.as_ref().expect("just filled")
    }

    fn leave(&mut self, id: ConnId) {
        if let Some(mut conn) = self.conns.remove(&id) {
            debug!(doc = %self.name, peer = %conn.peer, conn = id, "left");
            self.release_presence(&mut conn);
        }
    }

    fn expire_awareness(&mut self) {
        let now = self.now_ms();
        let (changes, _) = self.awareness.expire(now);
        // Addresses whose ids all timed out or were removed by anyone leave the map.
        let awareness = &self.awareness;
        self.http_presence.retain(|_, session| {
            session.forget_departed(awareness);
            session.controlled_clients().next().is_some()
        });
        if changes.removed.is_empty() {
            return;
        }
        for conn in self.conns.values_mut() {
            conn.session.forget(&changes.removed);
        }
        self.http_session.forget(&changes.removed);
        self.cluster_session.forget(&changes.removed);
        self.note_presence(&changes);
    }

    fn send_to(&mut self, id: ConnId, frame: Bytes) {
        self.send_seq(id, self.durability.last_seq(), frame);
    }

    /// Sends `frame` to one connection (straight to its socket when nothing is queued for
    /// it), labelled with sequence number `seq`.
    fn send_seq(&mut self, id: ConnId, seq: u64, frame: Bytes) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        metrics::counter!("tandem_messages_out_total").increment(1);
        metrics::counter!("tandem_bytes_out_total").increment(frame.len() as u64);
        let direct = self.config.direct_writes > 0;
        if let Err(e) = conn.outbox.push(seq, &frame, direct) {
            self.doomed.push((id, overflow_close(e)));
        }
    }

    /// Sends `frame` to every connection and wakes the long-polls: every broadcast is a
    /// change of the document or of the presence. Up to `--direct-writes` recipients get
    /// it written to their sockets here; the rest are queued for their writer tasks, which
    /// the other worker threads run meanwhile.
    fn broadcast(&mut self, frame: Bytes) {
        let n = self.conns.len() as u64;
        metrics::counter!("tandem_messages_out_total").increment(n);
        metrics::counter!("tandem_bytes_out_total").increment(n * frame.len() as u64);
        if frame.first() == Some(&(codec::MSG_AWARENESS as u8)) {
            self.awareness_version += 1;
        }
        let seq = self.durability.last_seq();
        // The writer tasks first, so that another worker thread writes their share while
        // this one writes the rest itself.
        let direct = self.config.direct_writes;
        let queued = self.conns.iter().skip(direct).map(|c| (c, false));
        let written = self.conns.iter().take(direct).map(|c| (c, true));
        for ((id, conn), direct) in queued.chain(written) {
            if let Err(e) = conn.outbox.push(seq, &frame, direct) {
                self.doomed.push((*id, overflow_close(e)));
            }
        }
        if !self.pollers.is_empty() {
            self.wake_pollers();
        }
    }

    /// Closes connections marked during the last command. The removal of their presence
    /// is relayed with the next batch (which can doom further, slow, connections).
    fn close_doomed(&mut self) {
        while let Some((id, close)) = self.doomed.pop() {
            let Some(mut conn) = self.conns.remove(&id) else {
                continue;
            };
            if close.code == 1013 {
                warn!(doc = %self.name, peer = %conn.peer, "client too slow to drain its queue; closing with 1013");
            }
            metrics::counter!("tandem_connections_closed_total", "reason" => close.label())
                .increment(1);
            self.release_presence(&mut conn);
            let _ = conn.outbox.close.send(close);
        }
    }

    /// Closes every connection with `close`. Nobody is left here to hear their presence
    /// removed, but the other nodes are: they hear it in one frame.
    fn close_all(&mut self, close: &Close) {
        let now = self.now_ms();
        let mut removed = Vec::new();
        for (_, mut conn) in self.conns.drain() {
            removed.extend(conn.session.release(&mut self.awareness, now));
            let _ = conn.outbox.close.send(close.clone());
        }
        self.publish_presence(removed);
        for (_, reply, _) in self.waiting_posts.drain(..) {
            let _ = reply.send(Err(close.api_error()));
        }
        for (_, _, reply) in self.pollers.drain(..) {
            let _ = reply.send(Err(close.api_error()));
        }
    }

    fn shutdown(&mut self) {
        self.close_all(&Close::going_away());
        info!(doc = %self.name, "document closed for shutdown");
    }

    /// Deletes the document: every client is closed for good (4410), the store forgets it
    /// once the writes queued before are done, and the actor leaves the registry so the
    /// next client starts a new, empty document. `reply`: where the caller of a delete
    /// asked here waits; the other nodes are then told to do the same. `None`: the delete
    /// was asked on another node (its notice arrived, or the store refused this node's
    /// writes because the document is gone), and this one deletes what it wrote meanwhile,
    /// which would otherwise bring back part of the document: only the row its own writes
    /// went to, not a newer document of the same name that has its own row. `after`:
    /// commands that reached it behind the delete while the document loaded, refused like
    /// those still in the mailbox.
    async fn delete(
        mut self,
        reply: Option<Reply<bool>>,
        after: Vec<Command>,
        mut rx: mpsc::Receiver<Command>,
        env: &Env,
    ) {
        self.close_all(&Close::deleted());
        let had_content = self.durability.last_seq() > 0;
        let result = match reply {
            Some(_) => self.durability.writer().delete(&self.name, None).await,
            None => self.durability.delete_own().await,
        };
        env.registry.remove(&self.name, &env.users);
        match reply {
            Some(reply) => {
                info!(doc = %self.name, "document deleted");
                if let (Ok(_), Some(cluster)) = (&result, &self.cluster) {
                    cluster.publish(&self.name, crate::cluster::DELETED);
                }
                let _ = reply.send(
                    result
                        .map(|stored| stored || had_content)
                        .map_err(|e| ApiError::Unavailable(e.to_string())),
                );
            }
            None => {
                if let Err(e) = result {
                    warn!(doc = %self.name, error = %e, "could not delete what this node stored of a document deleted on another node");
                }
            }
        }
        fail_all(&self.name, after, &mut rx, env, Close::deleted()).await;
    }

    /// After an update crashed the CRDT: close everyone, wait until the writes made before
    /// it are durable, and leave the registry, so the next client gets the document
    /// reloaded from its last good state.
    async fn hand_over(mut self, early: Vec<Command>, mut rx: mpsc::Receiver<Command>, env: &Env) {
        let close = Close::internal("document reloading after an internal error; reconnect");
        self.close_all(&close);
        env.writer.flush().await;
        env.registry.remove(&self.name, &env.users);
        fail_all(&self.name, early, &mut rx, env, close).await;
    }
}

fn overflow_close(e: flume::TrySendError<Out>) -> Close {
    match e {
        flume::TrySendError::Full(_) => {
            Close::try_later("client too slow: outgoing queue full, reconnect to resync")
        }
        flume::TrySendError::Disconnected(_) => Close::going_away(),
    }
}
