//! The latest updates of a document with their sequence numbers, kept by its actor so an
//! SSE client resuming with `Last-Event-ID` or a long-poller asking `since=N` gets exactly
//! what it missed, without a database read. Older positions get the whole state instead.

use std::collections::VecDeque;

use bytes::Bytes;

/// A bounded window of the most recent updates (oldest dropped first).
#[derive(Debug)]
pub struct Recent {
    entries: VecDeque<(u64, Bytes)>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl Recent {
    /// An empty window holding at most `max_entries` updates and `max_bytes` bytes (the
    /// latest update is always held, whatever its size).
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            bytes: 0,
            max_entries: max_entries.max(1),
            max_bytes,
        }
    }

    /// Adds the update numbered `seq` (one more than the previous one).
    pub fn push(&mut self, seq: u64, update: Bytes) {
        if self
            .entries
            .back()
            .is_some_and(|(last, _)| *last + 1 != seq)
        {
            // A gap would make `after` lie; start the window afresh.
            self.entries.clear();
            self.bytes = 0;
        }
        self.bytes += update.len();
        self.entries.push_back((seq, update));
        while self.entries.len() > 1
            && (self.entries.len() > self.max_entries || self.bytes > self.max_bytes)
        {
            if let Some((_, old)) = self.entries.pop_front() {
                self.bytes -= old.len();
            }
        }
    }

    /// The updates after `since`, if the window still holds all of them; `None` means
    /// the reader must take the whole state. `last_seq` is the document's latest number.
    pub fn after(&self, since: u64, last_seq: u64) -> Option<impl Iterator<Item = &(u64, Bytes)>> {
        if since > last_seq {
            return None; // a reader ahead of us saw another incarnation of the document
        }
        let skip = if since == last_seq {
            self.entries.len()
        } else {
            let first = self.entries.front()?.0;
            if since + 1 < first {
                return None;
            }
            (since + 1 - first) as usize
        };
        Some(self.entries.iter().skip(skip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(r: &Recent, since: u64, last: u64) -> Option<Vec<u64>> {
        r.after(since, last).map(|it| it.map(|(s, _)| *s).collect())
    }

    #[test]
    fn serves_what_it_holds_and_refuses_the_rest() {
        let mut r = Recent::new(3, 1 << 20);
        assert_eq!(seqs(&r, 0, 0), Some(vec![]));
        assert_eq!(seqs(&r, 0, 5), None, "nothing held, something missed");
        for seq in 1..=5 {
            r.push(seq, Bytes::from_static(b"u"));
        }
        assert_eq!(seqs(&r, 2, 5), Some(vec![3, 4, 5]));
        assert_eq!(seqs(&r, 4, 5), Some(vec![5]));
        assert_eq!(seqs(&r, 5, 5), Some(vec![]));
        assert_eq!(seqs(&r, 1, 5), None, "seq 2 was dropped");
        assert_eq!(seqs(&r, 9, 5), None, "ahead of the document");
    }

    #[test]
    fn bytes_bound_the_window_but_keep_the_latest() {
        let mut r = Recent::new(100, 10);
        r.push(1, Bytes::from(vec![0; 6]));
        r.push(2, Bytes::from(vec![0; 6]));
        assert_eq!(seqs(&r, 1, 2), Some(vec![2]));
        assert_eq!(seqs(&r, 0, 2), None);
        r.push(3, Bytes::from(vec![0; 50]));
        assert_eq!(seqs(&r, 2, 3), Some(vec![3]));
        r.push(7, Bytes::from_static(b"gap"));
        assert_eq!(seqs(&r, 3, 7), None, "a gap restarts the window");
    }
}
