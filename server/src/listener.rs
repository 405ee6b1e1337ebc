//! The accept loop. Binding goes through `tokio::net::TcpSocket` for a listen backlog large
//! enough for connect storms; every accepted socket gets TCP_NODELAY (warp 0.4 no longer
//! sets it, and without it small frames wait ~40 ms for delayed ACKs). Each connection is
//! served on its own task, so the loop never waits on a slow client or a loading document.
//! A connection whose first request is a y-websocket upgrade is answered without hyper
//! (`http::early_upgrade`); the rest are served by hyper and warp. Either way a request
//! head must arrive within `--header-timeout-ms`, or the connection is closed; hyper's
//! writes may not stall for longer than `--write-timeout-ms` ([`WriteDeadline`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket};
use tower_service::Service;
use tracing::{debug, warn};
use warp::Filter;

use crate::http::early_upgrade;
use crate::http::ws::{PeerAddr, UpgradeSlot};
use crate::limits;
use crate::state::AppState;
use crate::write_deadline::WriteDeadline;

/// Binds `addr` with a listen queue of `backlog`.
pub fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Serves `routes` on `listener` until `shutdown` resolves; then stops accepting. `state`
/// is the one the WebSocket route was built with, for upgrades answered before hyper.
pub async fn serve<F>(
    listener: TcpListener,
    routes: F,
    state: AppState,
    shutdown: impl Future<Output = ()>,
) where
    F: Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    // Shared: each connection's task holds an `Arc` (a WebSocket upgrade answered without
    // hyper never uses it), not a copy of every route's captured state.
    let service = Arc::new(warp::service(routes));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if let Err(e) = stream.set_nodelay(true) {
            debug!(%peer, error = %e, "could not set TCP_NODELAY");
        }
        let service = service.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let Some(stream) = early_upgrade::serve_or_return(stream, peer, &state).await else {
                return;
            };
            // Whether a request was served: after one, a timeout is a kept-alive connection
            // left idle, which is closed like any other but is no client breaking a limit.
            let served = Arc::new(AtomicBool::new(false));
            let serving = served.clone();
            let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                serving.store(true, Ordering::Relaxed);
                if req.headers().contains_key(hyper::header::UPGRADE) {
                    let on_upgrade = hyper::upgrade::on(&mut req);
                    req.extensions_mut().insert(UpgradeSlot::new(on_upgrade));
                }
                req.extensions_mut().insert(PeerAddr(peer));
                let mut service = (*service).clone();
                service.call(req)
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(state.config.header_timeout())
                .serve_connection(
                    TokioIo::new(WriteDeadline::new(stream, state.config.write_timeout())),
                    svc,
                )
                .with_upgrades();
            // Boxed: hyper's connection state is allocated only for connections that need
            // it, not laid out in every task waiting for its first request.
            match Box::pin(conn).await {
                Err(e) if e.is_timeout() && served.load(Ordering::Relaxed) => {
                    debug!(%peer, "kept-alive connection idle for --header-timeout-ms; closed");
                }
                Err(e) if e.is_timeout() => {
                    debug!(%peer, "request head not complete within --header-timeout-ms; closing");
                    limits::exceeded("header_timeout");
                }
                Err(e) => debug!(%peer, error = %e, "http connection ended with an error"),
                Ok(()) => {}
            }
        });
    }
}
