//! What arrives for a document while it loads. The actor takes it all out of its mailbox
//! (so that it sees a shutdown), keeps it in order and carries it out once the document is
//! in memory. Kept without a bound, the frames of clients that go on sending while a load
//! waits on an unreachable database grew without end: the mailbox's bound, which makes a
//! flooding client wait, no longer held anyone back. So what is kept is held to a budget
//! of bytes (`--max-doc-bytes`: more than that could not be applied anyway). A frame beyond
//! it is dropped and its connection closed with 1013 once the document is loaded (the
//! client reconnects and resyncs what was dropped: nothing is lost); a post beyond it is
//! answered 503 at once.

use std::collections::HashSet;

use crate::hub::command::{ApiError, Command, PostBody};
use crate::hub::{Close, ConnId};

/// The commands kept while a document loads.
pub(super) struct Early {
    commands: Vec<Command>,
    /// Bytes kept: each command's payload plus its own size.
    bytes: usize,
    budget: usize,
    /// Connections a frame of which was dropped; every later frame of theirs is dropped
    /// too (applying them would leave gaps).
    overflowed: HashSet<ConnId>,
}

impl Early {
    /// Keeps up to `budget` bytes.
    pub(super) fn new(budget: usize) -> Self {
        Self {
            commands: Vec::new(),
            bytes: 0,
            budget,
            overflowed: HashSet::new(),
        }
    }

    /// Keeps `cmd`, or refuses it if it does not fit. Joins, leaves, deletes and shutdowns
    /// are always kept: there is at most one join and one leave per connection, and the
    /// others are rare and must be carried out.
    pub(super) fn push(&mut self, cmd: Command) {
        let weight = std::mem::size_of::<Command>() + payload(&cmd);
        let fits = self.bytes + weight <= self.budget;
        let busy = || ApiError::Unavailable("too much is waiting for this document to load".into());
        match cmd {
            Command::Frame { conn, .. } if !fits || self.overflowed.contains(&conn) => {
                if self.overflowed.insert(conn) {
                    crate::limits::exceeded("loading_backlog");
                }
            }
            Command::Post { reply, .. } if !fits => {
                crate::limits::exceeded("loading_backlog");
                let _ = reply.send(Err(busy()));
            }
            Command::Poll { reply, .. } if !fits => {
                let _ = reply.send(Err(busy()));
            }
            Command::Inspect { reply, .. } if !fits => {
                let _ = reply.send(Err(busy()));
            }
            Command::State { reply } if !fits => {
                let _ = reply.send(Err(busy()));
            }
            Command::Subscribe { outbox, reply, .. } if !fits => {
                let _ = outbox
                    .close
                    .send(Close::try_later("document still loading"));
                let _ = reply.send(Err(busy()));
            }
            cmd => {
                self.bytes += weight;
                self.commands.push(cmd);
            }
        }
    }

    /// What was kept, in order, and the connections to close once it is carried out, with
    /// their close.
    pub(super) fn into_parts(self) -> (Vec<Command>, Vec<(ConnId, Close)>) {
        let close =
            || Close::try_later("too much sent while the document loaded; reconnect to resync");
        let overflowed = self.overflowed.into_iter().map(|c| (c, close())).collect();
        (self.commands, overflowed)
    }
}

/// The bytes a command carries from a client.
fn payload(cmd: &Command) -> usize {
    match cmd {
        Command::Frame { frame, .. } => frame.len(),
        Command::Post {
            body: PostBody::Update(b) | PostBody::Awareness(b),
            ..
        } => b.len(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn frame(conn: ConnId, len: usize) -> Command {
        Command::Frame {
            conn,
            frame: Bytes::from(vec![0u8; len]),
        }
    }

    /// Frames are kept until the budget is spent; the connection whose frame did not fit
    /// loses every later frame too and is closed, while another connection's small frame
    /// that still fits is kept.
    #[test]
    fn frames_beyond_the_budget_are_dropped_and_their_connection_closed() {
        let unit = std::mem::size_of::<Command>();
        let mut early = Early::new(3 * (unit + 1000));
        early.push(frame(1, 1000));
        early.push(frame(1, 1000));
        early.push(frame(1, 5000)); // does not fit
        early.push(frame(1, 10)); // would fit, but follows a dropped one
        early.push(frame(2, 1000)); // fits
        early.push(frame(2, 1000)); // does not
        let (kept, closes) = early.into_parts();
        let kept: Vec<(ConnId, usize)> = kept
            .iter()
            .map(|c| match c {
                Command::Frame { conn, frame } => (*conn, frame.len()),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(kept, vec![(1, 1000), (1, 1000), (2, 1000)]);
        let mut closed: Vec<(ConnId, u16)> = closes.iter().map(|(c, x)| (*c, x.code)).collect();
        closed.sort();
        assert_eq!(closed, vec![(1, 1013), (2, 1013)]);
    }
}
