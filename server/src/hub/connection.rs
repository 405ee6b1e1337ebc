//! One task per WebSocket: frames from the socket go to the document actor; frames from the
//! actor's bounded outbox go to the socket; pings detect dead peers. The task never blocks
//! the actor: the actor only ever `try_send`s into the outbox.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tracing::debug;

use crate::auth::{Auth, AuthError, Grant, Mode, TokenError};
use crate::config::Config;
use crate::hub::command::{Command, Out, Outbox};
use crate::hub::registry::Lease;
use crate::hub::{Close, ConnId};
use crate::limits::MessageRate;

/// Frames written per flush when the outbox has a backlog.
const WRITE_BATCH: usize = 64;

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
pub async fn refuse<S>(mut ws: WebSocketStream<S>, close: Close)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = ws.close(Some(close_frame(&close))).await;
}

/// Waits for the first frame of a connection that brought no token in its URL or headers:
/// it must be an auth message carrying one (`tandem_engine::protocol::codec::AUTH_TOKEN`),
/// valid for document `name`, and arrive within `timeout`.
pub async fn await_token<S>(
    ws: &mut WebSocketStream<S>,
    auth: &Auth,
    name: &str,
    timeout: std::time::Duration,
) -> Result<Grant, Close>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let missing = || Close::auth(&AuthError::Missing);
    let first = loop {
        match tokio::time::timeout(timeout, ws.next()).await {
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
pub async fn run<S>(
    ws: WebSocketStream<S>,
    lease: Lease,
    peer: SocketAddr,
    acks: bool,
    grant: Grant,
    config: Arc<Config>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let conn = next_id();
    let doc = lease.handle().clone();
    let rate = MessageRate::new(config.max_messages_per_second, config.message_burst);
    let expires = grant.expires.map(|at| {
        let left = at
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        tokio::time::Instant::now() + left
    });
    let origin: Arc<str> = match &grant.name {
        Some(user) => format!("ws {peer} {user}").into(),
        None => format!("ws {peer}").into(),
    };
    let (frames_tx, frames) = flume::bounded::<Out>(config.outbox_frames.max(1));
    let (close_tx, mut close_rx) = oneshot::channel::<Close>();
    let (mut sink, mut stream) = ws.split();
    let outbox = Outbox {
        frames: frames_tx,
        close: close_tx,
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
        let _ = sink
            .send(Message::Close(Some(close_frame(&Close::internal(
                "document unavailable",
            )))))
            .await;
        return;
    }
    let mut ping = tokio::time::interval(config.ping_interval());
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await; // the first tick is immediate
    let mut unanswered = 0u32;
    let write_timeout = config.ping_interval() * 2;
    let closing: Option<Close> = loop {
        tokio::select! {
            biased;
            close = &mut close_rx => break close.ok(),
            _ = sleep_until_opt(expires) => {
                break Some(Close::auth(&AuthError::Token(TokenError::Expired)));
            }
            frame = frames.recv_async() => {
                let Ok(frame) = frame else { break None };
                // A peer that stops reading must not pin this task in a blocked write (its
                // TCP window can stay shut for ever): bound every batch by two ping intervals.
                match tokio::time::timeout(write_timeout, write_batch(&mut sink, frame, &frames)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break None,
                    Err(_) => {
                        debug!(doc = %doc.name(), %peer, "write stalled; dropping the connection");
                        break None;
                    }
                }
            }
            msg = stream.next() => match msg {
                Some(Ok(Message::Binary(frame))) => {
                    unanswered = 0;
                    if let Some(rate) = rate.as_ref().filter(|r| !r.allow()) {
                        break Some(Close::policy(
                            "rate",
                            format!(
                                "more than {} messages per second (--max-messages-per-second)",
                                rate.per_second()
                            ),
                        ));
                    }
                    if doc.send(Command::Frame { conn, frame }).await.is_err() {
                        break Some(Close::internal("document unavailable"));
                    }
                }
                Some(Ok(Message::Text(_))) => {
                    break Some(Close::unsupported("text frames are not y-protocols messages"));
                }
                Some(Ok(Message::Pong(_) | Message::Ping(_) | Message::Frame(_))) => unanswered = 0,
                Some(Ok(Message::Close(_))) | None => break None,
                Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. }))) => {
                    break Some(Close::too_big(config.max_frame_bytes));
                }
                Some(Err(e)) => {
                    debug!(doc = %doc.name(), %peer, error = %e, "websocket error");
                    break None;
                }
            },
            _ = ping.tick() => {
                metrics::histogram!("tandem_outbox_frames").record(frames.len() as f64);
                if unanswered >= 2 {
                    debug!(doc = %doc.name(), %peer, "no pong for two intervals; dropping");
                    break None;
                }
                unanswered += 1;
                let ping = sink.send(Message::Ping(Bytes::new()));
                if !matches!(tokio::time::timeout(write_timeout, ping).await, Ok(Ok(()))) {
                    break None;
                }
            }
        }
    };
    if let Some(close) = closing {
        let close = sink.send(Message::Close(Some(close_frame(&close))));
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), close).await;
    }
    let _ = doc.send(Command::Leave { conn }).await;
    drop(lease);
}

/// Writes `first` and whatever else is queued (up to [`WRITE_BATCH`] frames), then flushes
/// once: one syscall for a burst.
async fn write_batch<S>(
    sink: &mut futures_util::stream::SplitSink<WebSocketStream<S>, Message>,
    first: Out,
    frames: &flume::Receiver<Out>,
) -> Result<(), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    sink.feed(Message::Binary(first.frame)).await?;
    for _ in 1..WRITE_BATCH {
        match frames.try_recv() {
            Ok(out) => sink.feed(Message::Binary(out.frame)).await?,
            Err(_) => break,
        }
    }
    sink.flush().await
}

/// Resolves at `at`, or never.
async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn close_frame(close: &Close) -> CloseFrame {
    CloseFrame {
        code: CloseCode::from(close.code),
        reason: close.reason.to_string().into(),
    }
}
