//! The accept loop. Binding goes through `tokio::net::TcpSocket` for a listen backlog large
//! enough for connect storms; every accepted socket gets TCP_NODELAY (warp 0.4 no longer
//! sets it, and without it small frames wait ~40 ms for delayed ACKs). Each connection is
//! served on its own task, so the loop never waits on a slow client or a loading document.

use std::future::Future;
use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket};
use tower_service::Service;
use tracing::{debug, warn};
use warp::Filter;

use crate::http::ws::{PeerAddr, UpgradeSlot};

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

/// Serves `routes` on `listener` until `shutdown` resolves; then stops accepting.
pub async fn serve<F>(listener: TcpListener, routes: F, shutdown: impl Future<Output = ()>)
where
    F: Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    let service = warp::service(routes);
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
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                if req.headers().contains_key(hyper::header::UPGRADE) {
                    let on_upgrade = hyper::upgrade::on(&mut req);
                    req.extensions_mut().insert(UpgradeSlot::new(on_upgrade));
                }
                req.extensions_mut().insert(PeerAddr(peer));
                let mut service = service.clone();
                service.call(req)
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            if let Err(e) = conn.await {
                debug!(%peer, error = %e, "http connection ended with an error");
            }
        });
    }
}
