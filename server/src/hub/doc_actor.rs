//! One task per loaded document. It alone owns the [`Document`], its awareness and the
//! list of connections, so nothing on the path of an edit takes a lock shared with other
//! documents. Every outgoing frame is encoded once and the same bytes are queued for each
//! connection (the sender included: y-websocket clients rely on the echo).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tandem_engine::protocol::codec;
use tandem_engine::{Awareness, CodecError, Document, Message, Role, SessionError, SyncSession};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::hub::registry::Registry;
use crate::hub::{Close, ConnId};

/// How often stale awareness states are looked for (y-protocols checks every 3 s).
const AWARENESS_CHECK: Duration = Duration::from_secs(3);

/// What a document actor is asked to do.
pub enum Command {
    /// A connection joined; greet it once the document is loaded.
    Join {
        /// The connection.
        conn: ConnId,
        /// Its remote address, for logs.
        peer: SocketAddr,
        /// How to reach it.
        outbox: Outbox,
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

struct Conn {
    peer: SocketAddr,
    session: SyncSession,
    outbox: Outbox,
}

struct DocActor {
    name: Arc<str>,
    doc: Document,
    awareness: Awareness,
    conns: HashMap<ConnId, Conn>,
    /// Encoded step 2 of the whole document, for joiners with an empty state.
    full_state: Option<Bytes>,
    /// Approximate encoded size: last full encoding plus updates since.
    doc_bytes: usize,
    /// Connections to close after the current command (closing may broadcast).
    doomed: Vec<(ConnId, Close)>,
    started: Instant,
    config: Arc<Config>,
}

/// Starts the actor of document `name`.
pub fn spawn(
    name: Arc<str>,
    rx: mpsc::Receiver<Command>,
    registry: Registry,
    users: Arc<AtomicUsize>,
    config: Arc<Config>,
) {
    tokio::spawn(async move {
        let actor = DocActor {
            doc: Document::new(name.clone()),
            awareness: Awareness::new(0),
            name,
            conns: HashMap::new(),
            full_state: None,
            doc_bytes: 0,
            doomed: Vec::new(),
            started: Instant::now(),
            config,
        };
        actor.run(rx, registry, users).await;
    });
}

impl DocActor {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Command>,
        registry: Registry,
        users: Arc<AtomicUsize>,
    ) {
        info!(doc = %self.name, "document loaded");
        let mut awareness_check = tokio::time::interval(AWARENESS_CHECK);
        awareness_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut idle_since = Some(tokio::time::Instant::now());
        loop {
            let unload_at = idle_since.map(|t| t + self.config.idle_unload());
            tokio::select! {
                cmd = rx.recv() => {
                    let Some(cmd) = cmd else { break };
                    if let Command::Shutdown { done } = cmd {
                        self.shutdown();
                        let _ = done.send(());
                        break;
                    }
                    self.handle(cmd);
                    self.close_doomed();
                    idle_since = if self.conns.is_empty() {
                        idle_since.or_else(|| Some(tokio::time::Instant::now()))
                    } else {
                        None
                    };
                }
                _ = awareness_check.tick(), if !self.awareness.is_empty() => {
                    self.expire_awareness();
                    self.close_doomed();
                }
                _ = sleep_until_opt(unload_at) => {
                    if !self.is_persisted() {
                        // Unloading now would lose the content: stay until it is stored.
                        idle_since = None;
                        continue;
                    }
                    if registry.release_if_idle(&self.name, &users) {
                        info!(doc = %self.name, "document unloaded (idle)");
                        break;
                    }
                    // Someone acquired it meanwhile; their Join is on its way.
                    idle_since = None;
                }
            }
        }
    }

    /// Whether everything in memory is also in durable storage, so the document may leave
    /// memory. This build keeps documents in memory only, so only an empty document (nothing
    /// to lose) counts as persisted; a document with content stays loaded.
    fn is_persisted(&self) -> bool {
        use tandem_engine::yrs::ReadTxn;
        let txn = self.doc.read();
        txn.state_vector().is_empty() && !txn.has_missing_updates()
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Join { conn, peer, outbox } => self.join(conn, peer, outbox),
            Command::Frame { conn, frame } => self.frame(conn, frame),
            Command::Leave { conn } => self.leave(conn),
            Command::Shutdown { .. } => unreachable!("handled by run"),
        }
    }

    fn join(&mut self, id: ConnId, peer: SocketAddr, outbox: Outbox) {
        let session = SyncSession::new(Role::Server).with_full_state_cache();
        let greeting = session.greeting(&self.doc, &self.awareness);
        self.conns.insert(
            id,
            Conn {
                peer,
                session,
                outbox,
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
        if let Message::Sync(
            tandem_engine::SyncMessage::Update(u) | tandem_engine::SyncMessage::Step2(u),
        ) = &message
        {
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
            Err(SessionError::Doc(e)) => {
                warn!(doc = %self.name, %peer, error = %e, "update rejected; closing connection");
                self.doomed
                    .push((id, Close::invalid(format!("update rejected: {e}"))));
                return;
            }
        };
        if let Some(update) = &outcome.applied {
            metrics::histogram!("tandem_update_apply_seconds")
                .record(started.elapsed().as_secs_f64());
            self.full_state = None;
            self.doc_bytes += update.len();
        }
        if outcome.missing {
            debug!(doc = %self.name, %peer, "document waits for missing updates; asked the peer to resync");
        }
        for frame in outcome.reply {
            self.send_to(id, Bytes::from(frame));
        }
        if outcome.full_state {
            let frame = self.full_state_frame();
            self.send_to(id, frame);
        }
        for frame in outcome.broadcast {
            self.broadcast(Bytes::from(frame));
        }
    }

    fn full_state_frame(&mut self) -> Bytes {
        if let Some(f) = &self.full_state {
            return f.clone();
        }
        let snapshot = self.doc.snapshot_v1();
        self.doc_bytes = snapshot.len();
        let frame = Bytes::from(codec::encode_step2(&snapshot));
        self.full_state = Some(frame.clone());
        frame
    }

    fn leave(&mut self, id: ConnId) {
        if let Some(mut conn) = self.conns.remove(&id) {
            debug!(doc = %self.name, peer = %conn.peer, conn = id, "left");
            let now = self.now_ms();
            if let Some(frame) = conn.session.close(&mut self.awareness, now) {
                self.broadcast(Bytes::from(frame));
            }
        }
    }

    fn expire_awareness(&mut self) {
        let now = self.now_ms();
        let (changes, _) = self.awareness.expire(now);
        if changes.removed.is_empty() {
            return;
        }
        for conn in self.conns.values_mut() {
            conn.session.forget(&changes.removed);
        }
        let frame = self.awareness.encode(&changes.removed).encode_frame();
        self.broadcast(Bytes::from(frame));
    }

    fn send_to(&mut self, id: ConnId, frame: Bytes) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        metrics::counter!("tandem_messages_out_total").increment(1);
        metrics::counter!("tandem_bytes_out_total").increment(frame.len() as u64);
        if let Err(e) = conn.outbox.frames.try_send(frame) {
            self.doomed.push((id, overflow_close(e)));
        }
    }

    fn broadcast(&mut self, frame: Bytes) {
        let n = self.conns.len() as u64;
        metrics::counter!("tandem_messages_out_total").increment(n);
        metrics::counter!("tandem_bytes_out_total").increment(n * frame.len() as u64);
        for (id, conn) in &self.conns {
            if let Err(e) = conn.outbox.frames.try_send(frame.clone()) {
                self.doomed.push((*id, overflow_close(e)));
            }
        }
    }

    /// Closes connections marked during the last command. Closing one broadcasts the
    /// removal of its awareness states, which can doom further (slow) connections: loop
    /// until none is left.
    fn close_doomed(&mut self) {
        while let Some((id, close)) = self.doomed.pop() {
            let Some(conn) = self.conns.get(&id) else {
                continue;
            };
            if close.code == 1013 {
                warn!(doc = %self.name, peer = %conn.peer, "client too slow to drain its queue; closing with 1013");
            }
            metrics::counter!("tandem_connections_closed_total", "reason" => close.label())
                .increment(1);
            if let Some(Conn {
                mut session,
                outbox,
                ..
            }) = self.conns.remove(&id)
            {
                let _ = outbox.close.send(close);
                let now = self.now_ms();
                if let Some(frame) = session.close(&mut self.awareness, now) {
                    self.broadcast(Bytes::from(frame));
                }
            }
        }
    }

    fn shutdown(&mut self) {
        for (_, conn) in self.conns.drain() {
            let _ = conn.outbox.close.send(Close::going_away());
        }
        info!(doc = %self.name, "document closed for shutdown");
    }
}

fn overflow_close(e: mpsc::error::TrySendError<Bytes>) -> Close {
    match e {
        mpsc::error::TrySendError::Full(_) => {
            Close::try_later("client too slow: outgoing queue full, reconnect to resync")
        }
        mpsc::error::TrySendError::Closed(_) => Close::going_away(),
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
