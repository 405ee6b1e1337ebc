//! Writes over plain HTTP, for clients whose network lets no WebSocket through:
//!
//! - `POST /api/docs/{doc}/updates`: a binary v1 update;
//! - `POST /api/docs/{doc}/awareness`: a binary awareness update (y-protocols'
//!   `encodeAwarenessUpdate`).
//!
//! Both are applied exactly like the same message on a WebSocket (relayed to every client,
//! the update numbered and stored). `?session=ID` names the poster's SSE subscription, so
//! its presence disappears when the subscription ends and resync requests reach it;
//! `?wait=saved` answers only once the update is durable. A malformed body gets 400 with a
//! JSON error and changes nothing; an address over `--max-http-requests-per-ip` gets 429
//! before its body is read.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::json;
use warp::http::{Response, StatusCode};
use warp::hyper::body::Bytes as Body;
use warp::Filter;

use crate::auth::{Grant, Mode};
use crate::http::access::{doc_access, within_rate};
use crate::http::api::{api_error, error, json, origin_of, poster_address};
use crate::http::body;
use crate::http::ws::PeerAddr;
use crate::hub::command::{Command, PostBody};
use crate::state::AppState;

/// The two POST routes.
pub fn routes(
    state: AppState,
) -> impl Filter<Extract = (Response<Body>,), Error = warp::Rejection> + Clone {
    let whole_body = body::whole(&state.config);
    let post = move |tail: &'static str, need: Mode, kind: fn(Bytes) -> PostBody| {
        let state = state.clone();
        doc_access(&state, tail, need)
            .and(warp::post())
            .and(within_rate(state.http_rate.clone()))
            .and(warp::query::<HashMap<String, String>>())
            .and(whole_body.clone())
            .and(warp::ext::optional::<PeerAddr>())
            .then(move |name, grant, query, body, peer| {
                post(state.clone(), name, grant, query, kind(body), peer)
            })
    };
    // Presence is open to viewers, as on a WebSocket.
    post("updates", Mode::Write, PostBody::Update)
        .or(post("awareness", Mode::Read, PostBody::Awareness))
        .unify()
}

async fn post(
    state: AppState,
    name: String,
    grant: Grant,
    query: HashMap<String, String>,
    body: PostBody,
    peer: Option<PeerAddr>,
) -> Response<Body> {
    let (PostBody::Update(bytes) | PostBody::Awareness(bytes)) = &body;
    if bytes.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "empty body: expected a binary update",
        );
    }
    let session = match query.get("session").map(|s| s.parse::<u64>()) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "session must be a number"),
    };
    let wait_saved = match query.get("wait").map(String::as_str) {
        None => false,
        Some("saved") => true,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("wait={other}: only wait=saved is known"),
            )
        }
    };
    let origin = origin_of(peer, &grant);
    let peer = poster_address(peer);
    match state
        .registry
        .request(&name, |reply| Command::Post {
            body,
            session,
            origin,
            peer,
            wait_saved,
            reply,
        })
        .await
    {
        Ok(posted) => json(StatusCode::OK, &json!(posted)),
        Err(e) => api_error(e),
    }
}
