//! `GET /api/docs/{doc}/events`: the document as Server-Sent Events, for networks that let
//! no WebSocket through. The stream starts with a `session` event (the id that POSTs name
//! in `?session=`), then either a `sync` event with the whole state or, for a client
//! resuming with `Last-Event-ID` (or `?since=`), exactly the `update` events it missed; then
//! a `state-vector` event (so the client can post what the server lacks) and the presence
//! as an `awareness` event. After that: one `update` per update, one `awareness` per
//! presence change, and a `state-vector` whenever the server waits for updates it lacks.
//!
//! Payloads are base64 (updates v1, awareness as y-protocols' awareness update). Every
//! event but `session` carries the update-log sequence number as its `id:`, so the
//! browser's automatic reconnect resumes without gaps or duplicates. A stream the server
//! ends on purpose sends a last `close` event (`{"code":…,"reason":…}`, codes as on the
//! WebSocket: 4xxx means do not reconnect). Idle streams get a heartbeat comment.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures_util::{stream, Stream, StreamExt};
use tandem_engine::protocol::codec;
use tandem_engine::yrs::updates::encoder::Encode;
use tandem_engine::{Message, SyncMessage};
use tokio::sync::oneshot;
use warp::http::StatusCode;
use warp::sse::Event;
use warp::{Filter, Reply};

use crate::auth::{AuthError, Grant, Mode, TokenError};
use crate::http::access::doc_access;
use crate::http::api::error;
use crate::http::catchup;
use crate::http::ws::PeerAddr;
use crate::hub::command::{Command, Out, Outbox};
use crate::hub::connection::{self, ConnectionGuard};
use crate::hub::registry::{Lease, ShuttingDown};
use crate::hub::{Close, ConnId, DocHandle};
use crate::limits::IpGuard;
use crate::state::AppState;

/// The events route.
pub fn route(
    state: AppState,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    doc_access(&state, "events", Mode::Read)
        .and(warp::get())
        .and(warp::header::optional::<String>("last-event-id"))
        .and(warp::query::<HashMap<String, String>>())
        .and(warp::ext::optional::<PeerAddr>())
        .map(
            move |name: String,
                  grant: Grant,
                  last_id: Option<String>,
                  query: HashMap<String, String>,
                  peer: Option<PeerAddr>| {
                events(
                    &state,
                    &name,
                    grant,
                    last_id.or_else(|| query.get("since").cloned()),
                    peer,
                )
            },
        )
}

fn events(
    state: &AppState,
    name: &str,
    grant: Grant,
    since: Option<String>,
    peer: Option<PeerAddr>,
) -> warp::reply::Response {
    let since = match since.map(|s| s.trim().parse::<u64>()) {
        None => None,
        Some(Ok(seq)) => Some(seq),
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "Last-Event-ID must be a sequence number",
            )
            .into_response()
        }
    };
    let Some(guard) = state.connections.try_add(state.config.max_connections) else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "server at its connection limit",
        )
        .into_response();
    };
    let peer = peer.map_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)), |p| p.0);
    let limit = state.config.max_connections_per_ip;
    let Some(ip_guard) = state.per_ip.try_add(peer.ip(), limit) else {
        crate::limits::exceeded("connections_per_ip");
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            format!("more than {limit} connections from your address (--max-connections-per-ip)"),
        )
        .into_response();
    };
    let Ok(lease) = state.registry.acquire(name) else {
        return error(StatusCode::SERVICE_UNAVAILABLE, ShuttingDown).into_response();
    };
    let handle = lease.handle().clone();
    let conn = connection::next_id();
    let (frames, rx) = flume::bounded(state.config.outbox_frames.max(1));
    let (close_tx, close) = oneshot::channel();
    let (reply, subscribed) = oneshot::channel();
    let subscribe = Command::Subscribe {
        conn,
        peer,
        access: grant.access,
        outbox: Outbox {
            frames,
            close: close_tx,
            wire: None,
        },
        since,
        reply,
    };
    // Updates the catch-up already delivered arrive live too: skip them.
    let caught_up = Arc::new(AtomicU64::new(0));
    let feed = Feed {
        rx,
        close,
        expiry: connection::deadline_of(grant.expires)
            .map(|at| Box::pin(tokio::time::sleep_until(at))),
        ended: false,
        caught_up: caught_up.clone(),
        _leave: Leave {
            handle: handle.clone(),
            conn,
            lease: Some(lease),
            _guard: guard,
            _ip_guard: ip_guard,
        },
    };
    let heartbeat = Duration::from_millis(state.config.sse_heartbeat_ms);
    let state = state.clone();
    let name = name.to_owned();
    // The catch-up runs as a task of its own: the body stream must be `Sync`, and the
    // store's futures are not.
    let catching_up = tokio::spawn(async move {
        if handle.send(subscribe).await.is_err() {
            return Vec::new();
        }
        let Ok(Ok(start)) = subscribed.await else {
            return Vec::new();
        };
        let Ok(catchup) = catchup::complete(&state, &name, start.catchup).await else {
            return Vec::new();
        };
        let reached = catchup::reached(&catchup);
        caught_up.store(reached, Ordering::Release);
        let mut events = vec![Event::default().event("session").data(conn.to_string())];
        if let Some((seq, whole)) = &catchup.state {
            events.push(event(*seq, "sync", whole));
        }
        for (seq, update) in &catchup.updates {
            events.push(event(*seq, "update", update));
        }
        events.push(event(reached, "state-vector", &start.state_vector));
        if let Some(frame) = start.awareness {
            events.extend(event_of(&Out::new(reached, frame)));
        }
        events
    });
    let first = stream::once(async move { catching_up.await.unwrap_or_default() })
        .flat_map(|events| stream::iter(events.into_iter().map(Ok::<_, Infallible>)));
    let body = warp::sse::keep_alive()
        .interval(heartbeat)
        .text("heartbeat")
        .stream(first.chain(feed.into_stream()));
    warp::reply::with_header(warp::sse::reply(body), "x-accel-buffering", "no").into_response()
}

/// The last event of a stream the server ends: `{"code":…,"reason":…}`, codes as on the
/// WebSocket.
fn close_event(close: &Close) -> Event {
    let data = serde_json::json!({ "code": close.code, "reason": close.reason });
    Event::default().event("close").data(data.to_string())
}

/// The receiving side of one subscription.
struct Feed {
    rx: flume::Receiver<Out>,
    close: oneshot::Receiver<Close>,
    /// When the token runs out: the stream ends then, as a WebSocket is closed, or a
    /// subscriber would keep reading a document long after its access ended.
    expiry: Option<Pin<Box<tokio::time::Sleep>>>,
    ended: bool,
    /// The sequence number the catch-up reached (live updates up to it are skipped).
    caught_up: Arc<AtomicU64>,
    /// Held for its Drop: tells the document when the stream goes.
    _leave: Leave,
}

impl Feed {
    fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> + Send {
        stream::unfold(self, |mut feed| async move {
            if feed.ended {
                return None;
            }
            loop {
                tokio::select! {
                    biased;
                    out = feed.rx.recv_async() => match out {
                        Ok(out) => {
                            let seen = out.seq <= feed.caught_up.load(Ordering::Acquire);
                            if seen && out.frame.starts_with(UPDATE_PREFIX) {
                                continue;
                            }
                            if let Some(event) = event_of(&out) {
                                return Some((Ok(event), feed));
                            }
                        }
                        // The document fires the close signal, then drops the queue's
                        // sender: a closed queue is where to look for the signal. Ending
                        // without it lost the reason (4410 for a deleted document), and the
                        // client reconnected and brought the document back.
                        Err(_) => {
                            feed.ended = true;
                            let close = feed.close.try_recv().ok()?;
                            return Some((Ok(close_event(&close)), feed));
                        }
                    },
                    close = &mut feed.close => {
                        feed.ended = true;
                        let close = close.ok()?;
                        return Some((Ok(close_event(&close)), feed));
                    }
                    _ = connection::expired(&mut feed.expiry) => {
                        feed.ended = true;
                        let close = Close::auth(&AuthError::Token(TokenError::Expired));
                        return Some((Ok(close_event(&close)), feed));
                    }
                }
            }
        })
    }
}

/// Tells the document the subscription ended (the stream was dropped: the client went
/// away or the server ended it), so its presence is removed.
struct Leave {
    handle: DocHandle,
    conn: ConnId,
    lease: Option<Lease>,
    _guard: ConnectionGuard,
    _ip_guard: IpGuard,
}

impl Drop for Leave {
    fn drop(&mut self) {
        let (handle, conn, lease) = (self.handle.clone(), self.conn, self.lease.take());
        tokio::spawn(async move {
            let _ = handle.send(Command::Leave { conn, close: None }).await;
            drop(lease);
        });
    }
}

/// How a sync update frame starts.
const UPDATE_PREFIX: &[u8] = &[codec::MSG_SYNC as u8, codec::SYNC_UPDATE as u8];

/// One event with its sequence number and a base64 payload.
fn event(seq: u64, kind: &str, payload: &[u8]) -> Event {
    Event::default()
        .id(seq.to_string())
        .event(kind)
        .data(base64::engine::general_purpose::STANDARD.encode(payload))
}

/// The SSE event for one outgoing frame (frames SSE has no use for give none).
fn event_of(out: &Out) -> Option<Event> {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let (kind, data) = match Message::decode(&out.frame).ok()? {
        Message::Sync(SyncMessage::Step2(update)) => ("sync", b64(update)),
        Message::Sync(SyncMessage::Update(update)) => ("update", b64(update)),
        Message::Sync(SyncMessage::Step1(sv)) => ("state-vector", b64(&sv.encode_v1())),
        Message::Awareness(update) => ("awareness", b64(&update.encode())),
        _ => return None,
    };
    Some(
        Event::default()
            .id(out.seq.to_string())
            .event(kind)
            .data(data),
    )
}
