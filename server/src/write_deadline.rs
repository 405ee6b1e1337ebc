//! A TCP stream whose writes may not stall for longer than `--write-timeout-ms`.
//!
//! Why: hyper has no write timeout. A client that sends a request and then never reads
//! the answer (a document export, an event stream, a long-poll's batch) leaves hyper's write
//! pending for ever once the socket buffers are full: the connection, its task and the
//! unsent part of the response stay in memory, and a zero window is probed without end, so
//! TCP never gives up either. A few hundred such clients fetching a large document hold a
//! copy of it each. Wrapped in [`WriteDeadline`], a write that has waited that long without
//! the socket taking a byte fails with `TimedOut`, which ends the connection. As with
//! nginx's `send_timeout`, the clock runs only while a write waits and starts again whenever
//! the socket takes bytes, so a slow reader that keeps reading is not cut off, and an idle
//! connection (a long-poll waiting for an edit, a kept-alive connection between requests)
//! is not timed at all.
//!
//! WebSockets do not need it: their writer bounds each write itself (twice the ping
//! interval), and a connection upgraded through hyper is unwrapped back to its
//! `TcpStream` ([`WriteDeadline::into_inner`]).

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::limits;

/// A TCP stream whose writes fail after waiting `limit` without progress.
pub struct WriteDeadline {
    stream: TcpStream,
    limit: Duration,
    /// Armed while a write waits; boxed so that the stream stays `Unpin` (hyper needs it) and
    /// allocated only once a write has had to wait.
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl WriteDeadline {
    /// Wraps `stream`; nothing is timed until a write has to wait.
    pub fn new(stream: TcpStream, limit: Duration) -> Self {
        Self {
            stream,
            limit,
            timer: None,
            armed: false,
        }
    }

    /// The stream itself, for a connection that becomes a WebSocket.
    pub fn into_inner(self) -> TcpStream {
        self.stream
    }

    /// Passes on a write's outcome; a write that must wait starts the clock (or keeps the
    /// one already running), and fails once it has run out.
    fn guard<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.armed = false;
            return poll;
        }
        let limit = self.limit;
        let fresh = !self.armed;
        self.armed = true;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if fresh {
            timer.as_mut().reset(Instant::now() + limit);
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.armed = false;
                limits::exceeded("write_timeout");
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client read nothing for --write-timeout-ms",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for WriteDeadline {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteDeadline {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.guard(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.guard(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.stream).poll_flush(cx);
        self.guard(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.stream).poll_shutdown(cx);
        self.guard(cx, poll)
    }
}
