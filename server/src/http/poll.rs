//! `GET /api/docs/{doc}/poll?since=SEQ&aw=N&timeout=SECONDS`: long polling, the transport
//! of last resort. Answers at once when the document changed after `since` (or the
//! presence after version `aw`), otherwise waits up to `timeout` seconds (default 25,
//! capped by `--max-poll-seconds`) for the next change. A waiting poll is parked in the
//! document's actor and answered by the change itself: waiting pollers cost no CPU.
//!
//! The answer (JSON): `since` and `aw` to poll from next; `updates`, the base64 v1
//! updates missed, in order; `state`, the whole document instead when those are no longer
//! held; `awareness`, every presence state (base64 awareness update, replacing what the
//! client had) when it changed; `state_vector`, the server's, when asked with `sv=1`.

use std::time::Duration;

use base64::Engine;
use serde_json::json;
use warp::http::{Response, StatusCode};
use warp::hyper::body::Bytes as Body;
use warp::Filter;

use crate::auth::Mode;
use crate::http::access::{doc_access, within_rate};
use crate::http::api::{api_error, json};
use crate::http::catchup;
use crate::hub::command::Command;
use crate::state::AppState;

/// Seconds a poll waits unless it asks otherwise (below common proxy timeouts of 30 s).
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 25;

/// The query of a long-poll (a malformed one is refused with 400 by the route).
#[derive(Debug, serde::Deserialize)]
pub struct PollQuery {
    /// The last sequence number the poller has.
    #[serde(default)]
    pub since: u64,
    /// The presence version the poller has.
    #[serde(default)]
    pub aw: u64,
    /// Seconds to wait for a change.
    pub timeout: Option<u64>,
    /// `sv=1`: answer at once, with the server's state vector (a client starting to poll
    /// posts what the server lacks).
    #[serde(default)]
    pub sv: u8,
}

/// The long-poll route.
pub fn route(
    state: AppState,
) -> impl Filter<Extract = (Response<Body>,), Error = warp::Rejection> + Clone {
    doc_access(&state, "poll", Mode::Read)
        .and(warp::get())
        .and(within_rate(state.http_rate.clone()))
        .and(warp::query::<PollQuery>())
        .then(move |name, _grant, query| poll(state.clone(), name, query))
}

async fn poll(state: AppState, name: String, query: PollQuery) -> Response<Body> {
    let PollQuery {
        since,
        aw,
        timeout,
        sv,
    } = query;
    let timeout = timeout.unwrap_or(DEFAULT_TIMEOUT_SECONDS);
    let timeout = Duration::from_secs(timeout.min(state.config.max_poll_seconds));
    let request = state.registry.request(&name, |reply| Command::Poll {
        since,
        aw,
        state_vector: sv != 0,
        reply,
    });
    let batch = match tokio::time::timeout(timeout, request).await {
        Ok(Ok(batch)) => batch,
        Ok(Err(e)) => return api_error(e),
        Err(_) => {
            return json(
                StatusCode::OK,
                &json!({ "since": since, "aw": aw, "updates": [], "state": null, "awareness": null }),
            )
        }
    };
    let catchup = match catchup::complete(&state, &name, batch.catchup).await {
        Ok(c) => c,
        Err(e) => return api_error(e),
    };
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    json(
        StatusCode::OK,
        &json!({
            "since": catchup::reached(&catchup).max(batch.since),
            "aw": batch.aw,
            "updates": catchup.updates.iter().map(|(_, u)| b64(u)).collect::<Vec<_>>(),
            "state": catchup.state.as_ref().map(|(_, s)| b64(s)),
            "awareness": batch.awareness.as_deref().map(b64),
            "state_vector": batch.state_vector.as_deref().map(b64),
        }),
    )
}
