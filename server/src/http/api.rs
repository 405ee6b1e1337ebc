//! The document API (JSON unless the body is a binary update):
//!
//! | route | what |
//! |---|---|
//! | `GET /api/docs` | every stored document with its size and timestamps |
//! | `GET /api/docs/{doc}` | metadata and the plain text of a text root (`?root=`, default `content`) |
//! | `GET /api/docs/{doc}/state` | the whole document as one binary v1 update |
//! | `POST /api/docs/{doc}/state` | import a binary v1 update (answered once durable) |
//! | `DELETE /api/docs/{doc}` | close its clients (4410) and remove it |
//!
//! `{doc}` is one path segment, percent-encoded (a `/` in a name is `%2F`). Every request
//! about one document goes through that document's actor, so what the API reads or writes
//! is exactly what WebSocket clients see.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;
use warp::filters::BoxedFilter;
use warp::http::{header, Response, StatusCode};
use warp::hyper::body::Bytes as Body;
use warp::Filter;

use crate::auth::{Grant, Mode};
use crate::http::access::{doc_access, token, within_rate, Denied};
use crate::http::ws::PeerAddr;
use crate::http::{body, doc_name};
use crate::hub::command::{ApiError, Command, PostBody};
use crate::state::AppState;

/// Text root shown by `GET /api/docs/{doc}` unless `?root=` names another.
pub const DEFAULT_ROOT: &str = "content";

/// `/api/docs/{doc}` followed by the segment `tail` (`""`: the document itself); extracts
/// the decoded name.
pub fn doc_path(tail: &'static str) -> BoxedFilter<(String,)> {
    let doc = warp::path("api")
        .and(warp::path("docs"))
        .and(doc_name::segment());
    if tail.is_empty() {
        doc.and(warp::path::end()).boxed()
    } else {
        doc.and(warp::path(tail)).and(warp::path::end()).boxed()
    }
}

/// The `/api/docs` routes.
pub fn routes(
    state: AppState,
) -> impl Filter<Extract = (Response<Body>,), Error = warp::Rejection> + Clone {
    let whole_body = body::whole(&state.config);
    // Export encodes the whole document and import writes one: the HTTP request budget
    // of an address covers them as it covers posts.
    let rate = within_rate(state.http_rate.clone());
    let reader = doc_access(&state, "", Mode::Read);
    let writer = doc_access(&state, "", Mode::Write);
    let state_reader = doc_access(&state, "state", Mode::Read);
    let state_writer = doc_access(&state, "state", Mode::Write);
    let with_state = warp::any().map(move || state.clone());
    let docs = warp::path!("api" / "docs");

    let list = docs
        .and(warp::get())
        .and(token())
        .and(with_state.clone())
        .then(list);
    // Path and token first, method last: a method filter in front would answer 405 for
    // every path this route does not serve.
    let meta = reader
        .and(warp::get())
        .map(|name, _grant: Grant| name)
        .and(warp::query::<HashMap<String, String>>())
        .and(with_state.clone())
        .then(meta);
    let export = state_reader
        .and(warp::get())
        .and(rate.clone())
        .map(|name, _grant: Grant| name)
        .and(with_state.clone())
        .then(export);
    let import = state_writer
        .and(warp::post())
        .and(rate)
        .and(whole_body)
        .and(warp::ext::optional::<PeerAddr>())
        .and(with_state.clone())
        .then(import);
    let delete = writer
        .and(warp::delete())
        .map(|name, _grant: Grant| name)
        .and(with_state)
        .then(delete);
    list.or(meta)
        .unify()
        .or(export)
        .unify()
        .or(import)
        .unify()
        .or(delete)
        .unify()
}

/// A JSON response.
pub fn json(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("static response")
}

/// A JSON error response: `{"error": "…"}`.
pub fn error(status: StatusCode, message: impl std::fmt::Display) -> Response<Body> {
    json(status, &json!({ "error": message.to_string() }))
}

/// The response for an error from a document actor.
pub fn api_error(e: ApiError) -> Response<Body> {
    let status = match e {
        ApiError::Rejected(_) => StatusCode::BAD_REQUEST,
        ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
        ApiError::Conflict(_) => StatusCode::CONFLICT,
        ApiError::Unavailable(_) | ApiError::Closing => StatusCode::SERVICE_UNAVAILABLE,
        ApiError::Deleted => StatusCode::GONE,
    };
    error(status, e)
}

/// The address an HTTP poster's presence is counted under (`limits::client_address`;
/// unspecified when the listener did not say).
pub fn poster_address(peer: Option<PeerAddr>) -> std::net::IpAddr {
    peer.map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |p| {
        crate::limits::client_address(p.0.ip())
    })
}

/// The update log's origin of an HTTP request: `http <peer> [<user>]`.
pub fn origin_of(peer: Option<PeerAddr>, grant: &Grant) -> Arc<str> {
    let mut origin = match peer {
        Some(p) => format!("http {}", p.0),
        None => "http".to_owned(),
    };
    if let Some(user) = &grant.name {
        origin.push(' ');
        origin.push_str(user);
    }
    origin.into()
}

async fn list(token: Option<String>, state: AppState) -> Response<Body> {
    if state.auth.required() && token.is_none() {
        return denied(&crate::auth::AuthError::Missing);
    }
    match state.registry.store().list().await {
        Ok(mut docs) => {
            docs.retain(|d| state.auth.may_list(token.as_deref(), &d.name));
            json(StatusCode::OK, &json!({ "documents": docs }))
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

/// The response for a refused token: 401 or 403 with the reason.
pub fn denied(e: &crate::auth::AuthError) -> Response<Body> {
    e.count();
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED);
    let mut response = error(status, e);
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

impl Denied {
    /// The response for this refusal.
    pub fn response(&self) -> Response<Body> {
        denied(&self.0)
    }
}

async fn meta(name: String, query: HashMap<String, String>, state: AppState) -> Response<Body> {
    let root = query
        .get("root")
        .cloned()
        .unwrap_or_else(|| DEFAULT_ROOT.to_owned());
    let info = match state
        .registry
        .request(&name, |reply| Command::Inspect { root, reply })
        .await
    {
        Ok(info) => info,
        Err(e) => return api_error(e),
    };
    let stored = match state.registry.store().meta(&name).await {
        Ok(m) => m,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e),
    };
    if stored.is_none() && info.seq == 0 {
        return error(StatusCode::NOT_FOUND, format!("no document named {name:?}"));
    }
    json(
        StatusCode::OK,
        &json!({
            "name": info.name,
            "id": stored.as_ref().map(|m| m.id),
            "created_at": stored.as_ref().map(|m| m.created_at),
            "updated_at": stored.as_ref().map(|m| m.updated_at),
            "size_bytes": stored.as_ref().map(|m| m.size_bytes),
            "state_bytes": info.state_bytes,
            "seq": info.seq,
            "saved_seq": info.saved_seq,
            "clients": info.clients,
            "text": info.text,
        }),
    )
}

async fn export(name: String, state: AppState) -> Response<Body> {
    match state
        .registry
        .request(&name, |reply| Command::State { reply })
        .await
    {
        Ok((_seq, update)) => Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(update)
            .expect("static response"),
        Err(e) => api_error(e),
    }
}

async fn import(
    name: String,
    grant: Grant,
    body: Bytes,
    peer: Option<PeerAddr>,
    state: AppState,
) -> Response<Body> {
    if body.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "empty body: expected a binary v1 update",
        );
    }
    let origin = origin_of(peer, &grant);
    let peer = poster_address(peer);
    match state
        .registry
        .request(&name, |reply| Command::Post {
            body: PostBody::Update(body),
            session: None,
            origin,
            peer,
            wait_saved: true,
            reply,
        })
        .await
    {
        Ok(posted) => json(StatusCode::OK, &json!(posted)),
        Err(e) => api_error(e),
    }
}

async fn delete(name: String, state: AppState) -> Response<Body> {
    match state
        .registry
        .request(&name, |reply| Command::Delete { reply })
        .await
    {
        Ok(true) => Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Body::new())
            .expect("static response"),
        Ok(false) => error(StatusCode::NOT_FOUND, format!("no document named {name:?}")),
        Err(e) => api_error(e),
    }
}
