//! Presence is relayed in batches. y-websocket's server sends every awareness change to
//! every peer as it comes, so a join storm of `n` clients costs `n²/2` frames: each
//! joiner's state goes to all who are already there, and leaving costs the same again.
//! The actor instead notes which client ids changed and relays their current states at
//! most once per `--presence-batch-ms`, as one frame. A change after a quiet spell goes
//! out at once; changes that come faster than that wait for the window to end.
//!
//! Only presence waits: document updates are relayed as they are applied, and a cursor
//! relayed late is still a valid cursor (it names positions in updates the peers already
//! have).

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use tandem_engine::AwarenessChanges;
use tokio::time::Instant;

use super::{Conn, DocActor};

/// Client ids whose presence changed and is not relayed yet. A set: a client that changes
/// its state many times within a window is relayed once, and the memory held is bounded
/// by the number of clients, not by the number of changes.
pub(super) struct PendingPresence {
    ids: BTreeSet<u64>,
    /// The shortest time between two relays.
    window: Duration,
    /// When the last relay went out.
    last: Option<Instant>,
}

impl PendingPresence {
    /// Relays at most once per `window` (zero: every change as it comes).
    pub(super) fn new(window: Duration) -> Self {
        Self {
            ids: BTreeSet::new(),
            window,
            last: None,
        }
    }

    /// Notes that the states of `ids` changed (or were removed).
    pub(super) fn add(&mut self, ids: impl IntoIterator<Item = u64>) {
        self.ids.extend(ids);
    }

    /// When the pending changes are to be relayed; `None` if nothing is pending.
    pub(super) fn due_at(&self) -> Option<Instant> {
        if self.ids.is_empty() {
            return None;
        }
        Some(
            self.last
                .map_or_else(Instant::now, |last| last + self.window),
        )
    }

    /// Whether the pending changes are to be relayed by `now`.
    pub(super) fn is_due(&self, now: Instant) -> bool {
        !self.ids.is_empty() && self.last.is_none_or(|last| last + self.window <= now)
    }

    /// The pending ids, each once, and starts a new window at `now`.
    fn take(&mut self, now: Instant) -> Vec<u64> {
        self.last = Some(now);
        std::mem::take(&mut self.ids).into_iter().collect()
    }
}

impl DocActor {
    /// Relays the current state (or removal) of every client whose presence changed since
    /// the last relay, as one awareness frame to every peer.
    pub(super) fn flush_presence(&mut self) {
        let ids = self.presence.take(Instant::now());
        let update = self.awareness.encode(&ids);
        if !update.entries.is_empty() {
            self.broadcast(Bytes::from(update.encode_frame()));
        }
    }

    /// Notes presence changes (a peer's message, expiry), to relay with the next batch.
    pub(super) fn note_presence(&mut self, changes: &AwarenessChanges) {
        self.presence.add(changes.all());
    }

    /// Removes the presence of a connection that is gone: the other nodes hear it now,
    /// this node's peers with the next batch.
    pub(super) fn release_presence(&mut self, conn: &mut Conn) {
        let now = self.now_ms();
        let removed = conn.session.release(&mut self.awareness, now);
        self.publish_presence(removed.iter().copied());
        self.presence.add(removed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_after_a_quiet_spell_is_due_at_once_and_later_ones_wait_for_the_window() {
        let window = Duration::from_millis(25);
        let mut p = PendingPresence::new(window);
        let t0 = Instant::now();
        assert_eq!(p.due_at(), None, "nothing pending");
        p.add([3, 1, 3]);
        assert!(p.is_due(t0), "the first change goes out at once");
        assert_eq!(p.take(t0), vec![1, 3], "each id once");
        assert_eq!(p.due_at(), None);
        p.add([2]);
        p.add([5]);
        assert_eq!(
            p.due_at(),
            Some(t0 + window),
            "a change within the window waits"
        );
        assert!(!p.is_due(t0 + window / 2));
        assert!(p.is_due(t0 + window));
        assert_eq!(
            p.take(t0 + window),
            vec![2, 5],
            "and goes out with the others"
        );
    }

    #[test]
    fn a_client_changing_often_within_a_window_is_held_once() {
        let mut p = PendingPresence::new(Duration::from_millis(25));
        p.add(std::iter::repeat_n(7, 10_000));
        p.add([8]);
        assert_eq!(p.ids.len(), 2);
        assert_eq!(p.take(Instant::now()), vec![7, 8]);
    }

    #[test]
    fn a_zero_window_relays_every_change_as_it_comes() {
        let mut p = PendingPresence::new(Duration::ZERO);
        let t0 = Instant::now();
        p.add([1]);
        let _ = p.take(t0);
        p.add([2]);
        assert!(p.is_due(t0));
    }
}
