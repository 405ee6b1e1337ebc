//! Two tasks per WebSocket: a reader hands frames from the socket to the document actor; a
//! writer sends what the actor queued in the bounded outbox and pings to detect dead peers.
//! Neither blocks the actor: it writes a frame to the socket itself only while nothing is
//! queued and the socket takes it at once ([`crate::hub::wire`]), and otherwise only ever
//! `try_send`s into the outbox.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::Message;
use tracing::debug;

use crate::auth::{Auth, AuthError, Grant, Mode, TokenError};
use crate::config::Config;
use crate::hub::command::{Command, Out, Outbox};
use crate::hub::registry::{DocHandle, Lease};
use crate::hub::socket::{FrameWriter, Own, Socket, WsReader};
use crate::hub::{Close, ConnId};
use crate::limits::MessageRate;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// A process-unique id for a new connection or SSE subscription.
pub fn next_id() -> ConnId {
    NEXT_CONN.fetch_add(1, Ordering::Relaxed)
}

/// Process-wide count of open WebSocket connections (for `--max-connections`).
#[derive(Clone, Default)]
pub struct ConnectionCount(Arc<AtomicUsize>);

impl ConnectionCount {
    /// Counts a new connection unless `max` are open already.
    pub fn try_add(&self, max: usize) -> Option<ConnectionGuard> {
        let prev = self.0.fetch_add(1, Ordering::AcqRel);
        if prev >= max {
            self.0.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        metrics::gauge!("tandem_connections").set((prev + 1) as f64);
        Some(ConnectionGuard(self.0.clone()))
    }

    /// Connections open now.
    pub fn current(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// Un-counts the connection when dropped.
pub struct ConnectionGuard(Arc<AtomicUsize>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let now = self.0.fetch_sub(1, Ordering::AcqRel) - 1;
        metrics::gauge!("tandem_connections").set(now as f64);
    }
}

/// Closes a socket that was refused before joining a document.
pub async fn refuse(mut socket: Socket, close: Close) {
    let close = async {
        socket.writer.close(&close).await?;
        socket.writer.linger().await
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), close).await;
}

/// Waits for the first frame of a connection that brought no token in its URL or headers:
/// it must be an auth message carrying one (`tandem_engine::protocol::codec::AUTH_TOKEN`),
/// valid for document `name`, and arrive within `timeout`. The wait is one deadline, not
/// one per frame: pings and pongs do not extend it, or a client without a token could hold
/// its connection slots for ever by sending a pong now and then.
pub async fn await_token(
    ws: &mut WsReader,
    auth: &Auth,
    name: &str,
    timeout: std::time::Duration,
) -> Result<Grant, Close> {
    let missing = || Close::auth(&AuthError::Missing);
    let deadline = tokio::time::Instant::now() + timeout;
    let first = loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Err(missing()),
            Ok(Some(Ok(Message::Binary(frame)))) => break frame,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)))) => continue,
            Ok(_) => return Err(missing()),
        }
    };
    match tandem_engine::Message::decode(&first) {
        Ok(tandem_engine::Message::Auth(tandem_engine::AuthMessage::Token { token })) => auth
            .check(Some(&token), name, Mode::Read)
            .map_err(|e| Close::auth(&e)),
        _ => Err(missing()),
    }
}

/// Runs one connection until either side closes it. With `acks` the client receives
/// Tandem's "saved" message once its updates are durable. `grant` fixes what the client
/// may do, and until when.
///
/// The connection is two tasks: this one writes (the outbox, pings, the close frame) and a
/// spawned one reads. A broadcast then wakes only the writer, whose poll touches only the
/// outbox and the ping timer. In one task, every wake for an outgoing frame also re-polled
/// the socket's read side, the close signal and the token's timer: with 1,500 observers
/// of one writer, the split took p99 from 19.6–20.1 to 17.6–18.0 ms (BENCHMARKS.md).
pub async fn run(
    socket: Socket,
    lease: Lease,
    peer: SocketAddr,
    acks: bool,
    grant: Grant,
    config: Arc<Config>,
) {
    let conn = next_id();
    let doc = lease.handle().clone();
    let origin: Arc<str> = match &grant.name {
        Some(user) => format!("ws {peer} {user}").into(),
        None => format!("ws {peer}").into(),
    };
    let (frames_tx, frames) = flume::bounded::<Out>(config.outbox_frames.max(1));
    let (close_tx, close_rx) = oneshot::channel::<Close>();
    let outbox = Outbox {
        frames: frames_tx,
        close: close_tx,
        wire: Some(socket.writer.wire().clone()),
    };
    if doc
        .send(Command::Join {
            conn,
            peer,
            origin,
            access: grant.access,
            outbox,
            acks,
        })
        .await
        .is_err()
    {
        refuse(socket, Close::internal("document unavailable")).await;
        return;
    }
    let Socket {
        reader: stream,
        writer: mut sink,
    } = socket;
    let silent = Arc::new(AtomicU32::new(0));
    let reader = tokio::spawn(read(
        stream,
        Reader {
            conn,
            peer,
            doc: doc.clone(),
            rate: MessageRate::new(config.max_messages_per_second, config.message_burst),
            expires: deadline_of(grant.expires),
            max_frame_bytes: config.max_frame_bytes,
            silent: silent.clone(),
        },
    ));
    let closing = write(&mut sink, &frames, close_rx, &silent, &config, &doc, peer).await;
    // The reader either ended first (it told the document it left, which is what ended
    // the writer) or is still waiting on the socket and must stop.
    reader.abort();
    let closing = match reader.await {
        Ok(ended) => closing.or(ended),
        Err(_) => {
            let _ = doc.send(Command::Leave { conn, close: None }).await;
            closing
        }
    };
    finish(&mut sink, &frames, closing).await;
    drop(lease);
}

/// The document writes nothing more from here on. Whatever tungstenite answered last (a
/// reply to the client's own close) goes first, after the rest of a frame the document
/// wrote in part if there is one; then the close, and the client has a second to read it
/// all and close its side.
async fn finish(sink: &mut FrameWriter, frames: &flume::Receiver<Out>, closing: Option<Close>) {
    sink.wire().take_turn();
    let last = async {
        if let Ok(out) = frames.try_recv() {
            if out.sent > 0 {
                sink.send_rest(&out).await?;
            }
        }
        sink.send_control().await?;
        if let Some(close) = &closing {
            sink.close(close).await?;
        }
        sink.linger().await
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), last).await;
}

/// Writes what the document queues for this connection and pings the peer, until the
/// document drops the connection (after a `Leave`, or to close it) or the peer stops
/// answering or reading. Returns the close to send, if any.
async fn write(
    sink: &mut FrameWriter,
    frames: &flume::Receiver<Out>,
    mut close: oneshot::Receiver<Close>,
    silent: &AtomicU32,
    config: &Config,
    doc: &DocHandle,
    peer: SocketAddr,
) -> Option<Close> {
    let mut ping = tokio::time::interval(config.ping_interval());
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate.
    ping.tick().await;
    // A peer that stops reading must not pin this task in a blocked write (its TCP window
    // can stay shut for ever): no write may wait two ping intervals without progress.
    sink.set_stall_limit(config.ping_interval() * 2);
    loop {
        tokio::select! {
            biased;
            frame = frames.recv_async() => {
                // The document fires the close signal and then drops its sender: a
                // disconnected queue is the moment to look for one, and a close skips
                // whatever is still queued (a client closed for being slow has a full
                // queue).
                if frames.is_disconnected() {
                    if let Ok(c) = close.try_recv() {
                        // Except the rest of a frame the document began writing itself: cut
                        // off, the close would land inside it and the client would read it
                        // as payload, then see the stream end without a close (1006), and
                        // reconnect even after a 44xx.
                        if let Ok(out) = frame.as_ref() {
                            if out.sent > 0 && sink.send_rest(out).await.is_err() {
                                return None;
                            }
                        }
                        return Some(c);
                    }
                }
                let Ok(frame) = frame else { return None };
                match sink.send_queued(frame, frames).await {
                    Ok(()) => sink.wire().end_turn(frames),
                    Err(e) => {
                        if e.kind() == std::io::ErrorKind::TimedOut {
                            debug!(doc = %doc.name(), %peer, "write stalled; dropping the connection");
                        }
                        return None;
                    }
                }
            }
            _ = ping.tick() => {
                metrics::histogram!("tandem_outbox_frames").record(frames.len() as f64);
                if silent.fetch_add(1, Ordering::Relaxed) >= 2 {
                    debug!(doc = %doc.name(), %peer, "no pong for two intervals; dropping");
                    return None;
                }
                if sink.send_own(Own::Ping, frames).await.is_err() {
                    return None;
                }
            }
            // Only polled while the outbox is empty: pongs and a close reply are rare, and
            // wait until the queued frames are out.
            _ = sink.control().ready() => {
                if sink.send_own(Own::Control, frames).await.is_err() {
                    return None;
                }
            }
        }
    }
}

/// What the reading task needs.
struct Reader {
    conn: ConnId,
    peer: SocketAddr,
    doc: DocHandle,
    rate: Option<MessageRate>,
    expires: Option<tokio::time::Instant>,
    max_frame_bytes: usize,
    /// Ping intervals since the peer last sent anything; the reader zeroes it.
    silent: Arc<AtomicU32>,
}

/// Hands every frame from the socket to the document until the peer closes, breaks a rule
/// or its token expires; then tells the document it left (which ends the writer) and
/// returns the close to send, if any.
///
/// A plain function returning an `async move` block, not an `async fn`: an `async fn`
/// moves its arguments into locals and keeps both copies in the task, and every
/// connection holds this task for its whole life (`reader_task_stays_small` below).
#[allow(clippy::manual_async_fn)]
fn read(mut stream: WsReader, r: Reader) -> impl Future<Output = Option<Close>> {
    async move {
        // Boxed: a timer is a hundred bytes that most connections (no expiring token) would
        // carry for nothing.
        let mut expiry = r.expires.map(|at| Box::pin(tokio::time::sleep_until(at)));
        let closing = loop {
            let msg = tokio::select! {
                biased;
                msg = stream.next() => msg,
                _ = expired(&mut expiry) => {
                    break Some(Close::auth(&AuthError::Token(TokenError::Expired)));
                }
            };
            if msg.is_some() {
                r.silent.store(0, Ordering::Relaxed);
            }
            match msg {
                Some(Ok(Message::Binary(frame))) => {
                    if let Some(rate) = r.rate.as_ref().filter(|rate| !rate.allow()) {
                        break Some(Close::policy(
                            "rate",
                            format!(
                                "more than {} messages per second (--max-messages-per-second)",
                                rate.per_second()
                            ),
                        ));
                    }
                    // A full mailbox slows this client down to the document's pace.
                    let frame = Command::Frame {
                        conn: r.conn,
                        frame,
                    };
                    if r.doc.send(frame).await.is_err() {
                        break Some(Close::internal("document unavailable"));
                    }
                }
                Some(Ok(Message::Text(_))) => {
                    break Some(Close::unsupported(
                        "text frames are not y-protocols messages",
                    ));
                }
                Some(Ok(Message::Pong(_) | Message::Ping(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) => {
                    // Hands tungstenite's reply to the writer, which sends it last.
                    let _ = stream.flush().await;
                    break None;
                }
                None => break None,
                Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. }))) => {
                    break Some(Close::too_big(r.max_frame_bytes));
                }
                Some(Err(e)) => {
                    debug!(doc = %r.doc.name(), peer = %r.peer, error = %e, "websocket error");
                    break None;
                }
            }
        };
        let leave = Command::Leave {
            conn: r.conn,
            close: closing.clone(),
        };
        let _ = r.doc.send(leave).await;
        closing
    }
}

/// The moment on tokio's clock when a token expiring at `expires` runs out.
pub(crate) fn deadline_of(expires: Option<std::time::SystemTime>) -> Option<tokio::time::Instant> {
    expires.map(|at| {
        let left = at
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        tokio::time::Instant::now() + left
    })
}

/// Resolves when the token's timer fires, or never.
pub(crate) async fn expired(timer: &mut Option<Pin<Box<tokio::time::Sleep>>>) {
    match timer {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server connection's socket and the client's end of it, over loopback (no
    /// handshake).
    async fn loopback() -> (Socket, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
        let socket = Socket::from_tcp(accepted.unwrap().0, bytes::Bytes::new(), config).await;
        (socket, client.unwrap())
    }

    /// Every connection keeps its reading task for its whole life, so its size is memory per
    /// connection: it was 968 bytes as first written (an `async fn`, an inline wait for
    /// mailbox room, an unboxed token timer). The tungstenite stream it owns is counted
    /// apart: that state exists once per connection whoever holds it.
    #[tokio::test]
    async fn reader_task_stays_small() {
        let (socket, _client) = loopback().await;
        let (doc, _mailbox) = DocHandle::detached("doc");
        let reader = Reader {
            conn: 1,
            peer: "127.0.0.1:9".parse().unwrap(),
            doc,
            rate: MessageRate::new(100, 500),
            expires: None,
            max_frame_bytes: 1 << 20,
            silent: Arc::default(),
        };
        let stream = std::mem::size_of::<WsReader>();
        let size = std::mem::size_of_val(&read(socket.reader, reader)) - stream;
        println!("reader future: {size} bytes besides the {stream}-byte stream");
        assert!(size <= 400, "reader future grew to {size} bytes");
    }

    /// A close fired in the same pass of the document as a frame it wrote in part (a
    /// client closed for flooding right after its own large update was echoed, a document
    /// deleted during a large broadcast): the client gets the whole frame, then the close.
    /// The writer used to drop the frame's rest and write the close inside it, so the
    /// client read the close as payload and saw the stream end without one.
    #[tokio::test]
    async fn a_close_waits_for_the_rest_of_a_frame_written_in_part() {
        use tokio_tungstenite::tungstenite::protocol::Role;
        let (socket, client) = loopback().await;
        let mut client =
            tokio_tungstenite::WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        let mut sink = socket.writer;
        let wire = sink.wire().clone();
        // The document writes until the socket takes a frame in part (the client is not
        // reading yet), then closes the connection and drops its queue.
        let (tx, queued) = flume::bounded::<Out>(64);
        let frame = |i: usize| bytes::Bytes::from(vec![i as u8; 300_000]);
        let mut written = 0;
        while queued.is_empty() {
            wire.send(0, &frame(written), &tx, true).unwrap();
            written += 1;
        }
        let first = queued.try_recv().unwrap();
        assert!(first.sent > 0, "the socket took the last frame in part");
        let (tx, frames) = flume::bounded::<Out>(64);
        tx.send(first).unwrap();
        let (close_tx, close_rx) = oneshot::channel();
        close_tx.send(Close::deleted()).unwrap();
        drop(tx);
        let (doc, _mailbox) = DocHandle::detached("doc");
        let server = async {
            let config = Config::default();
            let closing = write(
                &mut sink,
                &frames,
                close_rx,
                &AtomicU32::new(0),
                &config,
                &doc,
                "127.0.0.1:9".parse().unwrap(),
            )
            .await;
            finish(&mut sink, &frames, closing).await;
        };
        let receive = async {
            let mut got = Vec::new();
            loop {
                let next = tokio::time::timeout(std::time::Duration::from_secs(10), client.next());
                match next.await.ok().flatten() {
                    Some(Ok(Message::Binary(b))) => got.push(b),
                    Some(Ok(Message::Close(Some(close)))) => {
                        break (got, Some(u16::from(close.code)));
                    }
                    _ => break (got, None),
                }
            }
        };
        let ((), (got, closed)) = tokio::join!(server, receive);
        assert_eq!(got.len(), written, "every frame the document wrote, whole");
        for (i, b) in got.iter().enumerate() {
            assert!(*b == frame(i), "frame {i} differs");
        }
        assert_eq!(closed, Some(4410));
    }
}
