//! A WebSocket connection split into its two directions, with no buffer kept per connection
//! on the way out.
//!
//! Reading goes through tungstenite as usual. Writing does not: tungstenite copies every
//! outgoing frame into a per-connection `Vec` that keeps its largest size for the life of
//! the connection. A joiner's greeting carries the presence of everyone already there, so
//! after a join storm each connection held a buffer the size of the whole document's
//! presence: 8.4 of the 11.6 MB of heap at the peak of scenario C (500 clients of one
//! document, heaptrack). [`FrameWriter`] instead writes each frame's header (formatted by
//! tungstenite) and the frame's shared bytes straight to the socket in one vectored
//! write per batch, so the bytes encoded once by the document are never copied per
//! connection.
//!
//! The frames tungstenite itself must send while reading (the pong to a client's ping, the
//! reply to its close) land in a small [`Control`] queue that the writer empties.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use crate::hub::command::Out;
use crate::hub::wire::Wire;
use crate::hub::Close;
use crate::write_deadline::WriteDeadline;

/// Control frames (pongs, a close reply) a reader may have waiting before the client is
/// considered to be flooding: a client that pings faster than it reads has its connection
/// fail rather than grow this queue.
const MAX_CONTROL_BYTES: usize = 16 << 10;

/// The reading side of a connection: tungstenite over it decodes the client's frames.
pub type WsReader = WebSocketStream<ReadSide>;

/// An upgraded WebSocket connection, split.
pub struct Socket {
    /// Decodes what the client sends (and queues the control frames it must answer).
    pub reader: WsReader,
    /// Sends frames to the client.
    pub writer: FrameWriter,
}

/// Why an upgraded connection could not be taken apart.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The upgrade did not come from the listener's plain TCP connections.
    #[error("the upgraded connection is not a TCP stream")]
    NotTcp,
}

impl Socket {
    /// Splits a connection the listener upgraded (hyper over a `TcpStream`) into its reader
    /// and writer, keeping any bytes hyper read past the handshake for the reader.
    pub async fn from_upgraded(
        upgraded: Upgraded,
        config: WebSocketConfig,
    ) -> Result<Self, SocketError> {
        let parts = upgraded
            .downcast::<TokioIo<WriteDeadline>>()
            .map_err(|_| SocketError::NotTcp)?;
        let stream = parts.io.into_inner().into_inner();
        Ok(Self::from_tcp(stream, parts.read_buf, config).await)
    }

    /// Splits a TCP stream whose WebSocket handshake is done; `early` are bytes already read
    /// from it after the handshake.
    pub async fn from_tcp(stream: TcpStream, early: Bytes, config: WebSocketConfig) -> Self {
        let (read, write) = stream.into_split();
        // Even empty, hyper's leftover is a view of its 8 KiB read buffer: keep it only if
        // there is something to read.
        let early = if early.is_empty() {
            Bytes::new()
        } else {
            early
        };
        let control = Arc::new(Control::default());
        let side = ReadSide {
            early,
            read,
            control: control.clone(),
        };
        let reader = WebSocketStream::from_raw_socket(side, Role::Server, Some(config)).await;
        Self {
            reader,
            writer: FrameWriter {
                wire: Arc::new(Wire::new(write)),
                control,
                stall_limit: DEFAULT_STALL_LIMIT,
            },
        }
    }
}

/// Control frames the reader produced, waiting for the writer.
///
/// The writer waits on it every time its outbox runs dry, so the wait is a flag and an
/// `AtomicWaker` (a compare-and-swap) rather than `tokio::sync::Notify`, whose waiter list
/// is locked to register and again to deregister: 0.7 % of the server's samples in B.
#[derive(Default)]
pub struct Control {
    bytes: Mutex<Vec<u8>>,
    queued: AtomicBool,
    writer: AtomicWaker,
}

impl Control {
    /// Resolves once the reader has queued something since the writer last looked.
    pub fn ready(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.queued.swap(false, Ordering::AcqRel) {
                return Poll::Ready(());
            }
            self.writer.register(cx.waker());
            // Queued between the first look and the registration.
            if self.queued.swap(false, Ordering::AcqRel) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }

    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.bytes.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The socket's read half as tungstenite's stream: reads come from the socket (after any
/// bytes read early), writes go to the [`Control`] queue.
pub struct ReadSide {
    early: Bytes,
    read: OwnedReadHalf,
    control: Arc<Control>,
}

impl AsyncRead for ReadSide {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.early.is_empty() {
            let n = self.early.len().min(buf.remaining());
            buf.put_slice(&self.early.split_to(n));
            if self.early.is_empty() {
                // An empty slice still holds hyper's whole read buffer alive.
                self.early = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl AsyncWrite for ReadSide {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut bytes = self.control.bytes.lock().unwrap_or_else(|e| e.into_inner());
        if bytes.len() + buf.len() > MAX_CONTROL_BYTES {
            return Poll::Ready(Err(io::Error::other(
                "the client sends control frames faster than it reads the answers",
            )));
        }
        bytes.extend_from_slice(buf);
        drop(bytes);
        self.control.queued.store(true, Ordering::Release);
        self.control.writer.wake();
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// What the connection's writer task sends of its own, between the document's frames.
pub enum Own {
    /// A ping, to find out whether the peer is still there.
    Ping,
    /// What the reader has queued: pongs, a close reply.
    Control,
}

/// The socket's write half as the connection's writer task uses it. The document writes to
/// the same socket while nothing is queued ([`Wire`]); the writer's own writes wait for the
/// socket's readiness instead of holding it in a borrowed future.
pub struct FrameWriter {
    wire: Arc<Wire>,
    control: Arc<Control>,
    /// Longest a write may wait without the socket taking a byte (see
    /// [`FrameWriter::set_stall_limit`]).
    stall_limit: Duration,
}

/// The stall limit until the connection sets its own.
const DEFAULT_STALL_LIMIT: Duration = Duration::from_secs(30);

impl FrameWriter {
    /// Sets how long a write may wait without the socket taking a byte before it fails
    /// with `TimedOut`. A client that stops reading must not pin the writer in a blocked
    /// write (its TCP window can stay shut for ever), but a slow one that keeps reading
    /// must get all of a large frame: the limit used to bound the whole write, so a client
    /// on a slow link never received the first sync of a document larger than it could
    /// take in that time, and reconnected to the same fate.
    pub fn set_stall_limit(&mut self, limit: Duration) {
        self.stall_limit = limit;
    }

    /// The socket as the document shares it, and whose turn it is to write.
    pub fn wire(&self) -> &Arc<Wire> {
        &self.wire
    }

    /// Writes `first` and whatever else is queued behind it (up to [`WRITE_BATCH`] frames)
    /// in one vectored write: one syscall for a burst. A frame the document wrote in part
    /// is finished first.
    pub async fn send_queued(
        &mut self,
        first: Out,
        frames: &flume::Receiver<Out>,
    ) -> io::Result<()> {
        let first = if first.sent > 0 {
            self.send_rest(&first).await?;
            match frames.try_recv() {
                Ok(next) => next,
                Err(_) => return Ok(()),
            }
        } else {
            first
        };
        if frames.is_empty() {
            return self.send(std::slice::from_ref(&first.frame)).await;
        }
        let mut batch = Vec::with_capacity(WRITE_BATCH.min(frames.len() + 1));
        batch.push(first.frame);
        while batch.len() < WRITE_BATCH {
            match frames.try_recv() {
                Ok(out) => batch.push(out.frame),
                Err(_) => break,
            }
        }
        self.send(&batch).await
    }

    /// Sends the writer's own frames, `own`, in the writer's turn: the document queues
    /// meanwhile, and what is queued goes first, so that they never land inside a frame the
    /// document wrote in part. Hands the socket back to the document once sent.
    pub async fn send_own(&mut self, own: Own, frames: &flume::Receiver<Out>) -> io::Result<()> {
        self.wire.take_turn();
        while let Ok(out) = frames.try_recv() {
            self.send_queued(out, frames).await?;
        }
        match own {
            Own::Ping => self.ping().await?,
            Own::Control => self.send_control().await?,
        }
        self.wire.end_turn(frames);
        Ok(())
    }

    /// Writes what is left of a frame the socket took only part of from the document.
    pub async fn send_rest(&mut self, out: &Out) -> io::Result<()> {
        let (header, n) = binary_header(out.frame.len())?;
        let mut slices = [IoSlice::new(&header[..n]), IoSlice::new(&out.frame)];
        let mut rest = &mut slices[..];
        IoSlice::advance_slices(&mut rest, out.sent);
        write_all_vectored(self.wire.half(), self.stall_limit, rest).await
    }

    /// What the reader has queued for the writer.
    pub fn control(&self) -> &Control {
        &self.control
    }

    /// Sends `frames` as binary messages, one frame each, in one vectored write (more if
    /// the socket takes them in parts).
    pub async fn send(&mut self, frames: &[Bytes]) -> io::Result<()> {
        if let [frame] = frames {
            // The common case (one broadcast to an idle connection), with nothing allocated.
            let (header, n) = binary_header(frame.len())?;
            let mut slices = [IoSlice::new(&header[..n]), IoSlice::new(frame)];
            return write_all_vectored(self.wire.half(), self.stall_limit, &mut slices).await;
        }
        // Small frames are copied into one buffer for this batch (the kernel's cost per
        // iovec is far above a copy of a few dozen bytes: with an iovec per frame, 1,501
        // clients joining one document took 1.7 instead of 1.4 s to sync); larger ones go
        // as their own iovec.
        let copied: usize = frames
            .iter()
            .map(|f| MAX_HEADER + if f.len() < COPY_BELOW { f.len() } else { 0 })
            .sum();
        let mut buf = Vec::with_capacity(copied);
        let mut large = Vec::new(); // (where in `buf` the frame's payload belongs, payload)
        for frame in frames {
            let (header, n) = binary_header(frame.len())?;
            buf.extend_from_slice(&header[..n]);
            if frame.len() < COPY_BELOW {
                buf.extend_from_slice(frame);
            } else {
                large.push((buf.len(), frame));
            }
        }
        let mut slices = Vec::with_capacity(large.len() * 2 + 1);
        let mut at = 0;
        for (cut, frame) in large {
            slices.push(IoSlice::new(&buf[at..cut]));
            slices.push(IoSlice::new(frame));
            at = cut;
        }
        if at < buf.len() {
            slices.push(IoSlice::new(&buf[at..]));
        }
        write_all_vectored(self.wire.half(), self.stall_limit, &mut slices).await
    }

    /// Sends what the reader has queued (pongs, a close reply), if anything.
    pub async fn send_control(&mut self) -> io::Result<()> {
        let bytes = self.control.take();
        if bytes.is_empty() {
            return Ok(());
        }
        write_all_vectored(
            self.wire.half(),
            self.stall_limit,
            &mut [IoSlice::new(&bytes)],
        )
        .await
    }

    /// Sends a ping (the pong comes back through the reader).
    pub async fn ping(&mut self) -> io::Result<()> {
        self.send_frame(Frame::ping(Bytes::new())).await
    }

    /// Sends a close frame with `close`'s code and reason.
    pub async fn close(&mut self, close: &Close) -> io::Result<()> {
        self.send_frame(Frame::close(Some(CloseFrame {
            code: CloseCode::from(close.code),
            reason: close.reason.to_string().into(),
        })))
        .await
    }

    /// Ends the connection as RFC 6455 asks, once the reader is gone: no more writes (a
    /// FIN after the close frame), then reads and discards whatever the client still sends
    /// until it closes its side. Closing a socket with unread bytes in it makes the kernel
    /// reset the connection and drop what it has not sent yet, the close frame included: a
    /// flooding client cut off for its rate then saw a reset instead of its 1008.
    pub async fn linger(&mut self) -> io::Result<()> {
        let stream: &TcpStream = self.wire.half().as_ref();
        socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write)?;
        loop {
            stream.readable().await?;
            // Not alive across the await, so not part of the task: when a thousand clients
            // leave at once, a heap buffer each would add to the server's peak.
            let mut discard = [0u8; 512];
            match stream.try_read(&mut discard) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }

    async fn send_frame(&mut self, frame: Frame) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(frame.len());
        frame.format(&mut bytes).map_err(io::Error::other)?;
        write_all_vectored(
            self.wire.half(),
            self.stall_limit,
            &mut [IoSlice::new(&bytes)],
        )
        .await
    }
}

/// Frames written per vectored write when the queue has a backlog.
const WRITE_BATCH: usize = 64;

/// Frames shorter than this are copied into a batch's buffer rather than written from
/// where they are.
const COPY_BELOW: usize = 1024;

/// The longest header of an unmasked frame: 2 bytes and a 64-bit length.
const MAX_HEADER: usize = 10;

/// The header of an unfragmented binary frame from the server (servers do not mask) of
/// `len` bytes, and how many of the returned bytes it takes.
pub(crate) fn binary_header(len: usize) -> io::Result<([u8; MAX_HEADER], usize)> {
    let header = FrameHeader {
        is_final: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode: OpCode::Data(Data::Binary),
        mask: None,
    };
    let mut out = [0u8; MAX_HEADER];
    let mut rest = &mut out[..];
    header
        .format(len as u64, &mut rest)
        .map_err(io::Error::other)?;
    let n = MAX_HEADER - rest.len();
    Ok((out, n))
}

/// Writes all of `slices`, waiting for the socket to take more whenever it is full, but
/// never longer than `stall_limit` at a time (then `TimedOut`).
async fn write_all_vectored(
    write: &OwnedWriteHalf,
    stall_limit: Duration,
    mut slices: &mut [IoSlice<'_>],
) -> io::Result<()> {
    while !slices.is_empty() {
        match write.try_write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tokio::time::timeout(stall_limit, write.writable())
                    .await
                    .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use tokio::net::TcpListener;
    use tokio_tungstenite::tungstenite::Message;

    /// A server `Socket` and a plain tungstenite client on the two ends of a loopback TCP
    /// connection (the handshake is skipped on both sides).
    async fn pair() -> (Socket, WebSocketStream<TcpStream>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let server = Socket::from_tcp(
            accepted.unwrap().0,
            Bytes::new(),
            WebSocketConfig::default(),
        )
        .await;
        let client = WebSocketStream::from_raw_socket(client.unwrap(), Role::Client, None).await;
        (server, client)
    }

    /// Sizes on both sides of each header-length boundary (7-bit, 16-bit, 64-bit) and of
    /// the copy threshold, mixed in one batch.
    #[tokio::test]
    async fn every_frame_arrives_as_one_binary_message_alone_or_in_a_batch() {
        let (mut server, mut client) = pair().await;
        let sizes = [
            0usize, 1, 125, 126, 1_023, 1_024, 65_535, 65_536, 200_000, 3,
        ];
        let frames: Vec<Bytes> = sizes
            .iter()
            .map(|&n| Bytes::from((0..n).map(|i| (i % 251) as u8).collect::<Vec<u8>>()))
            .collect();
        let send = server.writer.send(&frames);
        let receive = async {
            let mut got = Vec::new();
            for _ in &frames {
                match client.next().await {
                    Some(Ok(Message::Binary(b))) => got.push(b),
                    other => panic!("expected a binary message, got {other:?}"),
                }
            }
            got
        };
        let (sent, got) = tokio::join!(send, receive);
        sent.unwrap();
        assert_eq!(got, frames);
        // And each alone (a batch of one takes its own path).
        for frame in &frames {
            let send = server.writer.send(std::slice::from_ref(frame));
            let (sent, got) = tokio::join!(send, client.next());
            sent.unwrap();
            match got {
                Some(Ok(Message::Binary(b))) => assert_eq!(&b, frame),
                other => panic!("expected a binary message, got {other:?}"),
            }
        }
    }

    /// The document writes frames to the socket itself while nothing is queued and queues
    /// what the socket does not take; the writer finishes a frame taken in part before the
    /// next and hands the socket back once its queue is empty. First 200 frames (20 MB)
    /// against a client that does not read yet, so the socket fills: some went straight
    /// out, one in part, the rest queued. Then 200 more while the writer runs and the
    /// client reads. Every frame must arrive whole and in order.
    #[tokio::test]
    async fn frames_the_document_writes_itself_and_queues_arrive_whole_and_in_order() {
        let (server, mut client) = pair().await;
        let mut writer = server.writer;
        let wire = writer.wire().clone();
        let (tx, rx) = flume::bounded::<Out>(1024);
        let frame = |i: usize| Bytes::from(vec![i as u8; 1 + (i * 7919) % 200_000]);
        for i in 0..200 {
            wire.send(0, &frame(i), &tx, true).unwrap();
        }
        let queued = rx.len();
        assert!(queued > 0 && queued < 200, "{queued} of 200 queued");
        let first = rx.try_recv().unwrap();
        assert!(first.sent > 0, "the socket took no frame in part");
        let write = tokio::spawn(async move {
            writer.send_queued(first, &rx).await.unwrap();
            wire_turns(writer, rx).await;
        });
        let send = async {
            for i in 200..400 {
                wire.send(0, &frame(i), &tx, true).unwrap();
                if i % 10 == 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
            }
            drop(tx);
        };
        let receive = async {
            for i in 0..400 {
                match client.next().await {
                    Some(Ok(Message::Binary(b))) => assert!(b == frame(i), "frame {i} differs"),
                    other => panic!("expected frame {i}, got {other:?}"),
                }
            }
        };
        tokio::join!(send, receive);
        write.await.unwrap();
    }

    /// The writer task's part, as `connection::write` plays it: write what is queued, then
    /// hand the socket back, until the document is gone.
    async fn wire_turns(mut writer: FrameWriter, rx: flume::Receiver<Out>) {
        writer.wire().end_turn(&rx);
        while let Ok(out) = rx.recv_async().await {
            writer.send_queued(out, &rx).await.unwrap();
            writer.wire().end_turn(&rx);
        }
    }

    #[tokio::test]
    async fn a_client_ping_is_answered_with_its_payload() {
        let (mut server, mut client) = pair().await;
        client
            .send(Message::Ping(Bytes::from_static(b"are you there")))
            .await
            .unwrap();
        client
            .send(Message::Binary(Bytes::from_static(b"x")))
            .await
            .unwrap();
        // Reading the binary message after it made tungstenite queue the pong.
        assert!(matches!(
            server.reader.next().await,
            Some(Ok(Message::Ping(_)))
        ));
        assert!(matches!(
            server.reader.next().await,
            Some(Ok(Message::Binary(_)))
        ));
        server.writer.control().ready().await;
        server.writer.send_control().await.unwrap();
        match client.next().await {
            Some(Ok(Message::Pong(p))) => assert_eq!(&p[..], b"are you there"),
            other => panic!("expected the pong, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_close_reaches_the_client_with_code_and_reason() {
        let (mut server, mut client) = pair().await;
        server
            .writer
            .close(&Close::try_later("busy"))
            .await
            .unwrap();
        match client.next().await {
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(u16::from(frame.code), 1013);
                assert_eq!(frame.reason.as_str(), "busy");
            }
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}
