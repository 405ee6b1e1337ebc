//! The sending side of one WebSocket, shared by the document's actor and the connection's
//! writer task, so that the actor can put a frame on the socket itself.
//!
//! Why: every frame of a broadcast used to wake the recipient's writer task, which then
//! made the one write. In scenario B (100 documents of 10 clients) thread switches and
//! wake-ups were 26 % of the server's samples, and an edit crossed two task wake-ups
//! (reader → document → each writer) where a relay without an actor crosses one. Now the
//! actor writes the frame with one non-blocking vectored write while nothing is queued for
//! the connection, which is nearly always. The writer task wakes only for what the socket
//! does not take at once (a client slow to read, a burst), for pings and pongs, and for the
//! close.
//!
//! Order: frames must reach the socket in queue order and their bytes must never
//! interleave. One flag under a mutex says whose turn it is to write. While it is the
//! writer's turn (something is queued, or the writer is sending a ping, a pong or the
//! close), the actor only queues. The actor gives the turn to the writer whenever it
//! queues; the writer gives it back only when it finds the queue empty, under the same
//! lock. A frame the socket took in part is queued, ahead of everything else, with how much
//! of it went out ([`Out::sent`]), and the writer sends the rest before anything else.

use std::io::{self, IoSlice};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use tokio::net::tcp::OwnedWriteHalf;

use crate::hub::command::Out;
use crate::hub::socket::binary_header;

/// The write half of a connection and whose turn it is to write to it.
pub struct Wire {
    half: OwnedWriteHalf,
    /// True while the writer task owns the socket: it has frames queued or is writing its
    /// own. False: nothing is queued and the actor may write.
    writers_turn: Mutex<bool>,
}

impl Wire {
    /// Wraps the write half of a connection whose writer task has nothing queued yet.
    pub fn new(half: OwnedWriteHalf) -> Self {
        Self {
            half,
            writers_turn: Mutex::new(false),
        }
    }

    /// The socket, for the writer task's own (waiting) writes during its turn.
    pub fn half(&self) -> &OwnedWriteHalf {
        &self.half
    }

    /// The actor's side: with `direct`, writes `frame` to the socket at once if nothing is
    /// queued ahead of it, and queues only what the socket did not take; otherwise queues it
    /// (labelled `seq`) for the writer task. Fails only as `queue` does (full: the client is
    /// too slow; disconnected: the writer is gone).
    pub fn send(
        &self,
        seq: u64,
        frame: &Bytes,
        queue: &flume::Sender<Out>,
        direct: bool,
    ) -> Result<(), flume::TrySendError<Out>> {
        let mut writers_turn = self.lock();
        let mut sent = 0;
        if direct && !*writers_turn {
            // A failed write (the peer reset the connection) queues the frame: the writer
            // meets the same error and ends the connection.
            if let Ok((taken, whole)) = try_write_frame(&self.half, frame) {
                if taken == whole {
                    return Ok(());
                }
                sent = taken;
            }
        }
        queue.try_send(Out {
            seq,
            frame: frame.clone(),
            sent,
        })?;
        *writers_turn = true;
        Ok(())
    }

    /// The writer's side: the actor queues from now on, until [`Wire::end_turn`].
    pub fn take_turn(&self) {
        *self.lock() = true;
    }

    /// The writer's side: hands the socket back to the actor if nothing is queued.
    pub fn end_turn(&self, queue: &flume::Receiver<Out>) {
        let mut writers_turn = self.lock();
        if queue.is_empty() {
            *writers_turn = false;
        }
    }

    fn lock(&self) -> MutexGuard<'_, bool> {
        // Nothing panics while holding it; a poisoned flag is still a valid flag.
        self.writers_turn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One non-blocking vectored write of `frame` as a binary message (header and payload):
/// how many bytes of it the socket took (0 if it would block), and how many it has.
fn try_write_frame(half: &OwnedWriteHalf, frame: &[u8]) -> io::Result<(usize, usize)> {
    let (header, n) = binary_header(frame.len())?;
    let whole = n + frame.len();
    match half.try_write_vectored(&[IoSlice::new(&header[..n]), IoSlice::new(frame)]) {
        Ok(sent) => Ok((sent, whole)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok((0, whole)),
        Err(e) => Err(e),
    }
}
