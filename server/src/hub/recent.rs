//! The latest updates of a document with their sequence numbers, kept by its actor: every
//! update not yet durable (the store cannot serve those) plus a few durable ones, so an SSE
//! client resuming with `Last-Event-ID` or a long-poller a moment behind gets what it
//! missed without a database read. Readers further behind are served from the stored log
//! (see `http::catchup`), or with the whole state once compaction has folded the log.

use std::collections::VecDeque;

use bytes::Bytes;

/// A bounded window of the most recent updates (oldest durable ones dropped first).
#[derive(Debug)]
pub struct Recent {
    entries: VecDeque<(u64, Bytes)>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl Recent {
    /// An empty window keeping at most `max_entries` updates and `max_bytes` bytes of
    /// durable ones (updates not yet durable are always kept).
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            bytes: 0,
            max_entries,
            max_bytes,
        }
    }

    /// Adds the update numbered `seq` (one more than the previous one); `saved` is the
    /// highest durable sequence number.
    pub fn push(&mut self, seq: u64, update: Bytes, saved: u64) {
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
        self.trim(saved);
    }

    /// Drops the oldest durable updates beyond the bounds.
    pub fn trim(&mut self, saved: u64) {
        while self.entries.len() > self.max_entries || self.bytes > self.max_bytes {
            match self.entries.front() {
                Some((seq, _)) if *seq <= saved => {
                    if let Some((_, old)) = self.entries.pop_front() {
                        self.bytes -= old.len();
                    }
                }
                _ => break,
            }
        }
    }

    /// The held updates after `since`, and whether they are all of them (`false`: some
    /// between `since` and the first one returned are no longer held, or `since` is ahead
    /// of `last_seq`, the document's latest number).
    pub fn after(&self, since: u64, last_seq: u64) -> (Vec<(u64, Bytes)>, bool) {
        if since >= last_seq {
            return (Vec::new(), since == last_seq);
        }
        let first = match self.entries.front() {
            Some((first, _)) => *first,
            None => return (Vec::new(), false),
        };
        let skip = (since + 1).saturating_sub(first) as usize;
        let updates = self.entries.iter().skip(skip).cloned().collect();
        (updates, since + 1 >= first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(r: &Recent, since: u64, last: u64) -> (Vec<u64>, bool) {
        let (updates, complete) = r.after(since, last);
        (updates.iter().map(|(s, _)| *s).collect(), complete)
    }

    #[test]
    fn serves_what_it_holds_and_says_when_that_is_not_everything() {
        let mut r = Recent::new(3, 1 << 20);
        assert_eq!(seqs(&r, 0, 0), (vec![], true));
        assert_eq!(
            seqs(&r, 0, 5),
            (vec![], false),
            "nothing held, something missed"
        );
        for seq in 1..=5 {
            r.push(seq, Bytes::from_static(b"u"), 5);
        }
        assert_eq!(seqs(&r, 2, 5), (vec![3, 4, 5], true));
        assert_eq!(seqs(&r, 4, 5), (vec![5], true));
        assert_eq!(seqs(&r, 5, 5), (vec![], true));
        assert_eq!(seqs(&r, 1, 5), (vec![3, 4, 5], false), "seq 2 was dropped");
        assert_eq!(seqs(&r, 9, 5), (vec![], false), "ahead of the document");
    }

    #[test]
    fn updates_not_yet_durable_are_never_dropped() {
        let mut r = Recent::new(2, 10);
        for seq in 1..=6 {
            r.push(seq, Bytes::from(vec![0; 6]), 1);
        }
        assert_eq!(seqs(&r, 1, 6), (vec![2, 3, 4, 5, 6], true));
        r.trim(6);
        assert_eq!(
            seqs(&r, 0, 6),
            (vec![6], false),
            "once durable, the bounds apply"
        );
        r.push(9, Bytes::from_static(b"gap"), 9);
        assert_eq!(
            seqs(&r, 6, 9),
            (vec![9], false),
            "a gap restarts the window"
        );
    }
}
