//! Where requests carry their token and how a refused one is answered. The token is read
//! from `?token=` (what y-websocket's `params` and `EventSource` can send) or an
//! `Authorization: Bearer` header (what a backend sends); the header wins when both are set.

use std::sync::Arc;

use warp::filters::BoxedFilter;
use warp::http::HeaderMap;
use warp::Filter;

use crate::auth::{Auth, AuthError, Grant, Mode};
use crate::http::api::doc_path;
use crate::http::ws::PeerAddr;
use crate::limits::{origin, HttpRate};
use crate::state::AppState;

/// A request whose token was refused; answered with 401 or 403 and the reason.
#[derive(Debug)]
pub struct Denied(pub AuthError);

impl warp::reject::Reject for Denied {}

/// A request from an address that spent its budget (`--max-http-requests-per-ip`, the
/// rate per second); answered with 429 and `Retry-After`.
#[derive(Debug)]
pub struct RateLimited(pub u32);

impl warp::reject::Reject for RateLimited {}

/// Passes a request whose address has budget left, else rejects it with [`RateLimited`].
/// Put after the path and method, so that only requests of the limited routes spend it.
pub fn within_rate(rate: Option<Arc<HttpRate>>) -> BoxedFilter<()> {
    warp::ext::optional::<PeerAddr>()
        .and_then(move |peer: Option<PeerAddr>| {
            let result = match (&rate, peer) {
                (Some(rate), Some(peer)) if !rate.allow(peer.0.ip()) => {
                    crate::limits::exceeded("http_requests_per_ip");
                    Err(warp::reject::custom(RateLimited(rate.per_second())))
                }
                _ => Ok(()),
            };
            std::future::ready(result)
        })
        .untuple_one()
        .boxed()
}

/// The token of a request, from its `Authorization` header or its query string.
pub fn token_of(query: &str, headers: &HeaderMap) -> Option<String> {
    let bearer = headers
        .get(warp::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_owned());
    bearer.or_else(|| {
        query.split('&').find_map(|kv| {
            let value = kv.strip_prefix("token=")?;
            percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .ok()
                .map(|v| v.into_owned())
        })
    })
}

/// Extracts the request's token, if it has one.
pub fn token() -> BoxedFilter<(Option<String>,)> {
    warp::query::raw()
        .or(warp::any().map(String::new))
        .unify()
        .and(warp::header::headers_cloned())
        .map(|query: String, headers: HeaderMap| token_of(&query, &headers))
        .boxed()
}

/// A request from a web page whose origin `--allowed-origins` does not list; answered 403.
#[derive(Debug)]
pub struct OriginRefused(pub String);

impl warp::reject::Reject for OriginRefused {}

/// `/api/docs/{doc}/{tail}` for a request whose token allows `need` on that document:
/// extracts the name and the grant, or rejects with [`Denied`]. A request from a page of an
/// origin `--allowed-origins` does not list is rejected with [`OriginRefused`] first, as
/// its WebSocket would be: a page of any site can post to these routes without a CORS
/// preflight, so without the check it could edit documents from the user's browser.
pub fn doc_access(
    state: &AppState,
    tail: &'static str,
    need: Mode,
) -> BoxedFilter<(String, Grant)> {
    let auth: Auth = state.auth.clone();
    let allowed = state.config.allowed_origins.clone();
    doc_path(tail)
        .and(warp::header::optional::<String>("origin"))
        .and_then(move |name: String, origin: Option<String>| {
            let result = if origin::allowed(origin.as_deref(), &allowed) {
                Ok(name)
            } else {
                crate::limits::exceeded("origin");
                Err(warp::reject::custom(OriginRefused(
                    origin.unwrap_or_default(),
                )))
            };
            std::future::ready(result)
        })
        .and(token())
        .and_then(move |name: String, token: Option<String>| {
            let result = auth
                .check(token.as_deref(), &name, need)
                .map(|grant| (name, grant))
                .map_err(|e| warp::reject::custom(Denied(e)));
            std::future::ready(result)
        })
        .untuple_one()
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both places a client can put its token are read, percent-encoding undone, and the
    /// header preferred (a URL token may be stale while the header is fresh).
    #[test]
    fn tokens_come_from_the_header_or_the_query() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            token_of("a=1&token=x%2Ey&b=2", &headers).as_deref(),
            Some("x.y")
        );
        assert_eq!(token_of("a=1", &headers), None);
        headers.insert("authorization", "Bearer hdr".parse().unwrap());
        assert_eq!(token_of("token=q", &headers).as_deref(), Some("hdr"));
    }
}
