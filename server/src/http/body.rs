//! Request bodies read against a deadline.
//!
//! Why: hyper bounds how long a request head may take (`--header-timeout-ms`), but nothing
//! bounded the body that follows. A client could declare a body of a few megabytes and
//! send it a byte every few seconds, holding a socket, a task and the part already read for
//! as long as it kept going; a few thousand such clients exhaust a server as surely as
//! slowloris heads do. Every route that reads a body reads it through [`whole`], which gives
//! the whole body `--body-timeout-ms` from the moment its head was routed.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::{pin_mut, Stream, StreamExt};
use warp::{Filter, Rejection};

use crate::config::Config;
use crate::limits;

/// The client did not send its whole body within `--body-timeout-ms`.
#[derive(Debug)]
pub struct BodyTimeout;

impl warp::reject::Reject for BodyTimeout {}

/// The body could not be read (the client reset the connection, or sent less than it
/// declared and closed its side).
#[derive(Debug)]
pub struct BodyUnreadable(pub String);

impl warp::reject::Reject for BodyUnreadable {}

/// The request body, whole, as long as it declares its length (`Content-Length`, else 411)
/// of at most `--max-frame-bytes` (else 413) and arrives within `--body-timeout-ms` (else
/// [`BodyTimeout`]). Nothing is allocated ahead for the declared length: memory grows only
/// with what arrived.
pub fn whole(config: &Config) -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    let deadline = config.body_timeout();
    warp::body::content_length_limit(config.max_frame_bytes as u64)
        .and(warp::body::stream())
        .and_then(move |chunks| async move {
            match tokio::time::timeout(deadline, collect(chunks)).await {
                Ok(read) => read
                    .map_err(|e: warp::Error| warp::reject::custom(BodyUnreadable(e.to_string()))),
                Err(_) => {
                    limits::exceeded("body_timeout");
                    Err(warp::reject::custom(BodyTimeout))
                }
            }
        })
}

/// Joins the body's chunks; a body that came in one chunk (the common case) is not copied.
async fn collect<B: Buf, E>(chunks: impl Stream<Item = Result<B, E>>) -> Result<Bytes, E> {
    pin_mut!(chunks);
    let Some(first) = chunks.next().await else {
        return Ok(Bytes::new());
    };
    let mut first = first?;
    let first = first.copy_to_bytes(first.remaining());
    let Some(second) = chunks.next().await else {
        return Ok(first);
    };
    let second = second?;
    let mut joined = BytesMut::with_capacity(first.len() + second.remaining());
    joined.extend_from_slice(&first);
    joined.put(second);
    while let Some(chunk) = chunks.next().await {
        joined.put(chunk?);
    }
    Ok(joined.freeze())
}
