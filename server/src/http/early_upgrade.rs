//! y-websocket upgrades answered before hyper sees the connection.
//!
//! hyper reads each request into a buffer of 8 KiB (its fixed first read size, which its
//! server builder cannot lower) and holds it until the upgrade is done. In a connect storm
//! hundreds of connections are between accept and upgrade at once: in scenario C (500
//! clients of one document) 3.1 MB of a 9.4 MB heap peak, and glibc keeps those pages after
//! they are freed. Here the request head is peeked into a buffer on the stack. A complete
//! and valid upgrade to `/ws/{doc}` is answered directly, and hyper never runs for that
//! connection. Anything else goes to hyper with nothing consumed, so warp answers it
//! exactly as before: another route, a head split across reads or longer than the peek, an
//! upgrade the route refuses with 400.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tracing::debug;
use warp::http::{HeaderMap, HeaderName, HeaderValue};

use crate::http::ws;
use crate::limits;
use crate::state::AppState;

/// The most of a request head looked at. Browsers' y-websocket upgrades are 400 to 700
/// bytes; a longer head (many cookies) goes through hyper.
const PEEK_BYTES: usize = 4096;

/// The most headers looked at; a request with more goes through hyper.
const MAX_HEADERS: usize = 48;

/// The parts of a WebSocket upgrade request to `/ws/…` that the route needs.
#[derive(Debug)]
struct Head {
    /// Bytes of the request head, up to and including its blank line.
    len: usize,
    /// The path after `/ws/`, still percent-encoded.
    tail: String,
    /// The query string, without `?`.
    query: String,
    headers: HeaderMap,
}

/// Answers `stream`'s WebSocket upgrade and spawns the connection's session if its first
/// request is one; otherwise gives the stream back, unread, for hyper. `None` when the
/// connection was taken or ended here.
pub async fn serve_or_return(
    mut stream: TcpStream,
    peer: SocketAddr,
    state: &AppState,
) -> Option<TcpStream> {
    // Until its first bytes: a client that sends nothing is closed here. Bytes that are not
    // a whole upgrade go to hyper, which gives the head the same time again from then on.
    let first = poll_fn(|cx| peek_head(&stream, cx));
    let head = match tokio::time::timeout(state.config.header_timeout(), first).await {
        Ok(Ok(Some(head))) => head,
        Ok(Ok(None)) => return Some(stream),
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "connection failed before its first request");
            return None;
        }
        Err(_) => {
            debug!(%peer, "no request within --header-timeout-ms; closing");
            limits::exceeded("header_timeout");
            return None;
        }
    };
    let Ok(handshake) = ws::handshake(state, &head.tail, &head.query, &head.headers) else {
        // The route renders the 400 that says why.
        return Some(stream);
    };
    let answered = async {
        consume(&stream, head.len).await?;
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\
             sec-websocket-accept: {}\r\n\r\n",
            handshake.accept
        );
        stream.write_all(response.as_bytes()).await
    };
    if let Err(e) = answered.await {
        debug!(%peer, error = %e, "websocket upgrade failed");
        return None;
    }
    // The session runs on a task of its own, so this one (the handshake and hyper's
    // fallback laid out side by side) ends here rather than living as long as the
    // connection.
    ws::spawn_session(
        state.clone(),
        handshake,
        ws::Upgrade::Answered(stream),
        peer,
    );
    None
}

/// Looks at what the client has sent so far without taking it from the socket.
fn peek_head(stream: &TcpStream, cx: &mut Context<'_>) -> Poll<io::Result<Option<Head>>> {
    let mut storage = [0u8; PEEK_BYTES];
    let mut buf = ReadBuf::new(&mut storage);
    ready!(stream.poll_peek(cx, &mut buf))?;
    Poll::Ready(Ok(parse(buf.filled())))
}

/// The upgrade request at the start of `bytes`, if they hold a whole one to `/ws/…`.
fn parse(bytes: &[u8]) -> Option<Head> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(len) = request.parse(bytes).ok()? else {
        return None;
    };
    if request.method != Some("GET") || request.version != Some(1) {
        return None;
    }
    let target = request.path?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let tail = path.strip_prefix("/ws/")?;
    if tail.starts_with('/') {
        // An empty path segment: left to warp's path matching.
        return None;
    }
    let mut map = HeaderMap::with_capacity(request.headers.len());
    for h in request.headers.iter() {
        map.append(
            HeaderName::from_bytes(h.name.as_bytes()).ok()?,
            HeaderValue::from_bytes(h.value).ok()?,
        );
    }
    Some(Head {
        len,
        tail: tail.to_owned(),
        query: query.to_owned(),
        headers: map,
    })
}

/// Takes the `len` bytes of the request head off the socket; they have already arrived.
async fn consume(stream: &TcpStream, mut len: usize) -> io::Result<()> {
    while len > 0 {
        stream.readable().await?;
        let mut sink = [0u8; PEEK_BYTES];
        match stream.try_read(&mut sink[..len]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => len -= n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &[u8] = b"GET /ws/notes%2Fa?token=t&acks=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\
        Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn a_whole_upgrade_head_is_taken_apart() {
        let mut bytes = UPGRADE.to_vec();
        bytes.extend_from_slice(b"\x82\x05early");
        let head = parse(&bytes).expect("a whole head");
        assert_eq!(head.len, UPGRADE.len());
        assert_eq!(head.tail, "notes%2Fa");
        assert_eq!(head.query, "token=t&acks=1");
        assert_eq!(head.headers["sec-websocket-version"], "13");
        assert_eq!(head.headers["upgrade"], "websocket");
    }

    #[test]
    fn everything_else_is_left_to_hyper() {
        let cut = &UPGRADE[..UPGRADE.len() - 2];
        assert!(parse(cut).is_none(), "a head not yet complete");
        let other_route = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(parse(other_route).is_none());
        let post = b"POST /ws/a HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(parse(post).is_none());
        let old = b"GET /ws/a HTTP/1.0\r\nHost: x\r\n\r\n";
        assert!(parse(old).is_none());
        let bare = b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(parse(bare).is_none());
        assert!(parse(b"\x16\x03\x01garbage").is_none());
    }
}
