//! `GET /ws/{doc}`: the y-websocket endpoint. The document name is the rest of the path,
//! percent-decoded; `?token=` (or `Authorization: Bearer`, or a first auth frame) carries
//! the access token, `?acks=1` opts in to "saved" acknowledgements. The upgrade is completed
//! here rather than by `warp::ws()` because warp offers no way to set tungstenite's read
//! buffer, whose 128 KiB default would cost ~130 MB per thousand idle connections, nor to
//! write frames without tungstenite's per-connection copy (`hub::socket`).
//!
//! Most upgrades never reach this route: the listener answers a whole upgrade head itself
//! (`http::early_upgrade`), with the same check ([`handshake`]) and the same session
//! ([`spawn_session`]). The route takes the rest, such as heads that arrive in pieces.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hyper::upgrade::OnUpgrade;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::{debug, warn};
use warp::http::{header, HeaderMap, Response, StatusCode};
use warp::hyper::body::Bytes;
use warp::Filter;

use crate::auth::{Grant, Mode};
use crate::config::Config;
use crate::http::access::token_of;
use crate::http::doc_name::doc_name;
use crate::hub::connection;
use crate::hub::socket::Socket;
use crate::hub::Close;
use crate::limits::origin;
use crate::state::AppState;

/// The upgrade half of a request, put into its extensions by the listener (hyper's
/// `OnUpgrade` is not `Clone`, which warp's extension filter requires).
#[derive(Clone)]
pub struct UpgradeSlot(Arc<Mutex<Option<OnUpgrade>>>);

impl UpgradeSlot {
    /// Wraps the pending upgrade of one request.
    pub fn new(on_upgrade: OnUpgrade) -> Self {
        Self(Arc::new(Mutex::new(Some(on_upgrade))))
    }

    fn take(&self) -> Option<OnUpgrade> {
        self.0.lock().ok()?.take()
    }
}

/// The remote address of the connection a request came on.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

/// The WebSocket route.
pub fn route(
    state: AppState,
) -> impl Filter<Extract = (Response<warp::hyper::body::Bytes>,), Error = warp::Rejection> + Clone {
    warp::get()
        .and(warp::path("ws"))
        .and(warp::path::tail())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<UpgradeSlot>())
        .and(warp::ext::optional::<PeerAddr>())
        .map(
            move |tail: warp::path::Tail,
                  query: String,
                  headers: HeaderMap,
                  slot: Option<UpgradeSlot>,
                  peer: Option<PeerAddr>| {
                upgrade(state.clone(), tail.as_str(), &query, &headers, slot, peer)
            },
        )
}

/// Whether the query string opts in to "saved" acknowledgements (`acks=1` or `acks=true`).
/// Stock clients never send it, so they never see a message type they do not know.
fn wants_acks(query: &str) -> bool {
    query
        .split('&')
        .any(|kv| matches!(kv, "acks=1" | "acks=true" | "acks"))
}

fn bad_request(msg: &str) -> Response<Bytes> {
    Response::builder()
        .status(StatusCode::BAD_REQUEST)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Bytes::from(serde_json::json!({ "error": msg }).to_string()))
        .expect("static response")
}

/// How a connection will be let in, decided from the handshake alone.
enum Admission {
    /// Its token (or an open server) decided.
    Granted(Grant),
    /// No token in the URL or headers on a server that needs one: the first frame must
    /// be an auth message carrying it.
    AwaitToken,
    /// Refused: close right after the upgrade (a browser shows a close code and reason,
    /// but never the status of a failed handshake).
    Refused(Close),
}

fn admit(state: &AppState, name: &str, query: &str, headers: &HeaderMap) -> Admission {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if !origin::allowed(origin, &state.config.allowed_origins) {
        return Admission::Refused(Close::policy(
            "origin",
            format!("origin {} is not allowed", origin.unwrap_or_default()),
        ));
    }
    match token_of(query, headers) {
        None if state.auth.required() => Admission::AwaitToken,
        token => match state.auth.check(token.as_deref(), name, Mode::Read) {
            Ok(grant) => Admission::Granted(grant),
            Err(e) => Admission::Refused(Close::auth(&e)),
        },
    }
}

/// A WebSocket handshake that checked out: what its connection needs once upgraded.
pub(crate) struct Handshake {
    /// The decoded document name.
    name: String,
    /// The `Sec-WebSocket-Accept` value answering the client's key.
    pub(crate) accept: String,
    /// Whether the client opted in to "saved" acknowledgements.
    acks: bool,
    /// How the connection will be let in.
    admission: Admission,
}

/// Checks a y-websocket upgrade request, or says what is wrong with it (the route answers
/// 400 with that reason).
///
/// Shared by the warp route and the listener's direct upgrades (`http::early_upgrade`), so
/// both accept exactly the same requests.
pub(crate) fn handshake(
    state: &AppState,
    tail: &str,
    query: &str,
    headers: &HeaderMap,
) -> Result<Handshake, &'static str> {
    let name = doc_name(tail)?;
    let is_upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Err("expected a WebSocket upgrade (y-websocket protocol)");
    };
    if !is_upgrade
        || headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .map(|v| v.as_bytes())
            != Some(b"13")
    {
        return Err("expected a WebSocket version 13 upgrade");
    }
    Ok(Handshake {
        accept: derive_accept_key(key.as_bytes()),
        acks: wants_acks(query),
        admission: admit(state, &name, query, headers),
        name,
    })
}

/// tungstenite's settings for a server connection under `config`.
pub(crate) fn socket_config(config: &Config) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(config.read_buffer_bytes)
        // tungstenite only writes the control frames it answers while reading (see
        // `hub::socket`): those go out at once.
        .write_buffer_size(0)
        .max_message_size(Some(config.max_frame_bytes))
        .max_frame_size(Some(config.max_frame_bytes))
}

fn upgrade(
    state: AppState,
    tail: &str,
    query: &str,
    headers: &HeaderMap,
    slot: Option<UpgradeSlot>,
    peer: Option<PeerAddr>,
) -> Response<Bytes> {
    let handshake = match handshake(&state, tail, query, headers) {
        Ok(h) => h,
        Err(why) => return bad_request(why),
    };
    let Some(on_upgrade) = slot.and_then(|s| s.take()) else {
        return bad_request("connection cannot be upgraded");
    };
    let peer = peer
        .map(|p| p.0)
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let response = switching_protocols(&handshake.accept);
    spawn_session(state, handshake, Upgrade::Hyper(on_upgrade), peer);
    response
}

fn switching_protocols(accept: &str) -> Response<Bytes> {
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(Bytes::new())
        .expect("static response")
}

/// Where the socket of an answered upgrade comes from.
pub(crate) enum Upgrade {
    /// The listener answered it (`http::early_upgrade`); nothing was read past the head.
    Answered(TcpStream),
    /// hyper answered it through the route, and hands the connection over once the 101 is
    /// written.
    Hyper(OnUpgrade),
}

/// Runs the connection of an answered upgrade on a task of its own. One function for both
/// ways in, so the whole session is compiled once: a spawn from each would lay out (and
/// inline) its state machine twice.
pub(crate) fn spawn_session(
    state: AppState,
    handshake: Handshake,
    upgrade: Upgrade,
    peer: SocketAddr,
) {
    tokio::spawn(async move {
        let ws_config = socket_config(&state.config);
        let ws = match upgrade {
            Upgrade::Answered(stream) => Socket::from_tcp(stream, Bytes::new(), ws_config).await,
            Upgrade::Hyper(on_upgrade) => {
                let upgraded = match on_upgrade.await {
                    Ok(u) => u,
                    Err(e) => {
                        debug!(%peer, error = %e, "websocket upgrade failed");
                        return;
                    }
                };
                match Socket::from_upgraded(upgraded, ws_config).await {
                    Ok(ws) => ws,
                    Err(e) => {
                        warn!(%peer, error = %e, "websocket upgrade failed");
                        return;
                    }
                }
            }
        };
        serve(state, handshake, ws, peer).await;
    });
}

/// Runs an upgraded connection: the connection limits, then its admission, then the
/// document session until it closes.
async fn serve(state: AppState, handshake: Handshake, mut ws: Socket, peer: SocketAddr) {
    let Handshake {
        name,
        acks,
        admission,
        ..
    } = handshake;
    let config = state.config.clone();
    let Some(_guard) = state.connections.try_add(config.max_connections) else {
        connection::refuse(ws, Close::try_later("server at its connection limit")).await;
        return;
    };
    let Some(_ip_guard) = state
        .per_ip
        .try_add(peer.ip(), config.max_connections_per_ip)
    else {
        let close = Close::policy(
            "connections_per_ip",
            format!(
                "more than {} connections from your address (--max-connections-per-ip)",
                config.max_connections_per_ip
            ),
        );
        connection::refuse(ws, close).await;
        return;
    };
    let grant = match admission {
        Admission::Granted(grant) => grant,
        Admission::Refused(close) => {
            debug!(%peer, doc = %name, code = close.code, reason = %close.reason, "connection refused");
            connection::refuse(ws, close).await;
            return;
        }
        Admission::AwaitToken => {
            match connection::await_token(&mut ws.reader, &state.auth, &name, config.auth_timeout())
                .await
            {
                Ok(grant) => grant,
                Err(close) => {
                    debug!(%peer, doc = %name, reason = %close.reason, "no valid auth message");
                    connection::refuse(ws, close).await;
                    return;
                }
            }
        }
    };
    let Ok(lease) = state.registry.acquire(&name) else {
        connection::refuse(ws, Close::going_away()).await;
        return;
    };
    connection::run(ws, lease, peer, acks, grant, config).await;
}
