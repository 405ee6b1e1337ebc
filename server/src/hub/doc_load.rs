//! Loading a document from the store: its snapshot, then every log entry after it, applied
//! in one transaction. While the database is unreachable the load is retried with backoff
//! (the joiners wait: no sync reply is sent before the stored state is in memory); stored
//! bytes that do not decode fail this document alone, with an error naming the bad row.

use std::sync::Arc;
use std::time::Duration;

use tandem_engine::{DocError, Document};
use tracing::warn;

use crate::store::{Store, StoreError, StoredDoc};

/// A document as loaded, with what its actor needs to continue the log.
pub struct Loaded {
    /// The document.
    pub doc: Document,
    /// Highest sequence number stored.
    pub last_seq: u64,
    /// Log entries after the snapshot (compaction is due when there are many).
    pub log_updates: usize,
    /// Bytes of those entries.
    pub log_bytes: usize,
    /// Bytes stored in all (snapshot plus log), a first estimate of the document's size.
    pub stored_bytes: usize,
    /// The log entries after the snapshot, to resume SSE clients and long-polls from.
    pub recent: Vec<(u64, bytes::Bytes)>,
    /// Cluster mode: other nodes' log rows now in memory (node, up to seq), which the next
    /// snapshot may fold away.
    pub foreign: Vec<(String, u64)>,
    /// The `documents` row loaded, which the document's writes continue.
    pub row: Option<uuid::Uuid>,
}

/// Why a document could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The snapshot row does not decode or integrate.
    #[error("stored snapshot (seq {seq}) is corrupt: {source}")]
    CorruptSnapshot {
        /// The snapshot's sequence number.
        seq: u64,
        /// What the engine said.
        source: DocError,
    },
    /// A log row does not decode or integrate.
    #[error("stored update seq {seq} is corrupt: {source}")]
    CorruptUpdate {
        /// The bad row's sequence number (0 when the engine could not say which row).
        seq: u64,
        /// What the engine said.
        source: DocError,
    },
    /// The store refused the read for a reason retrying will not fix.
    #[error(transparent)]
    Store(StoreError),
}

/// Loads `name`, retrying for as long as the database is unreachable.
///
/// In cluster mode every node numbers the updates it applies on its own, so the stored
/// numbers of other nodes mean nothing to this one's readers: the actor continues from a
/// random point far above every stored number (readers resuming with a number another
/// node gave them then fall outside this node's range and get the whole state), and keeps
/// no stored entries as its resume window.
pub async fn load(store: &dyn Store, name: &Arc<str>, cluster: bool) -> Result<Loaded, LoadError> {
    let mut backoff = Duration::from_millis(100);
    let stored = loop {
        match store.load(name).await {
            Ok(stored) => break stored,
            Err(e) if e.is_transient() => {
                warn!(doc = %name, error = %e, retry_in = ?backoff, "cannot load document yet");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(LoadError::Store(e)),
        }
    };
    let mut loaded = build(name, stored.unwrap_or_default())?;
    if cluster {
        loaded.last_seq += (1u64 << 32) + (uuid::Uuid::new_v4().as_u128() as u64 & 0xffff_ffff);
        loaded.recent.clear();
    }
    Ok(loaded)
}

/// Rebuilds the document from its stored form.
pub fn build(name: &Arc<str>, mut stored: StoredDoc) -> Result<Loaded, LoadError> {
    let doc = Document::new(name.clone());
    let last_seq = stored.last_seq();
    let foreign = std::mem::take(&mut stored.foreign);
    let mut stored_bytes = 0;
    if let Some(s) = &stored.snapshot {
        stored_bytes += s.state.len();
        doc.apply_update_v1(&s.state)
            .map_err(|source| LoadError::CorruptSnapshot { seq: s.seq, source })?;
    }
    let log_bytes: usize = stored.log.iter().map(|e| e.update.len()).sum();
    stored_bytes += log_bytes;
    doc.apply_updates_v1(stored.log.iter().map(|e| &e.update[..]))
        .map_err(|source| {
            let seq = match &source {
                DocError::BatchEntry { index, .. } => stored.log[*index].seq,
                _ => 0,
            };
            LoadError::CorruptUpdate { seq, source }
        })?;
    Ok(Loaded {
        doc,
        last_seq,
        log_updates: stored.log.len(),
        log_bytes,
        stored_bytes,
        recent: stored.log.into_iter().map(|e| (e.seq, e.update)).collect(),
        foreign,
        row: stored.row,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{LogEntry, Snapshot};

    fn entry(seq: u64, update: Vec<u8>) -> LogEntry {
        LogEntry {
            seq,
            update: update.into(),
        }
    }

    #[test]
    fn snapshot_then_log_rebuild_the_document() {
        let src = Document::new("d");
        let text = src.text("content");
        src.edit(|e| e.insert(&text, 0, "hello")).unwrap();
        let snapshot = src.snapshot_v1();
        let sv = src.state_vector_v1();
        let (_, update) = src.edit_with_update(|e| e.insert(&text, 5, " world").unwrap());
        let stored = StoredDoc {
            snapshot: Some(Snapshot {
                seq: 4,
                state: snapshot.into(),
                state_vector: sv.into(),
                covers: Vec::new(),
            }),
            log: vec![entry(5, update.unwrap())],
            foreign: Vec::new(),
            row: None,
        };
        let loaded = build(&Arc::from("d"), stored).unwrap();
        assert_eq!(loaded.doc.text_string("content"), "hello world");
        assert_eq!(loaded.last_seq, 5);
        assert_eq!(loaded.log_updates, 1);
    }

    #[test]
    fn a_corrupt_row_is_named_by_its_sequence_number() {
        let src = Document::new("d");
        let text = src.text("content");
        let (_, good) = src.edit_with_update(|e| e.insert(&text, 0, "a").unwrap());
        let stored = StoredDoc {
            snapshot: None,
            log: vec![entry(1, good.unwrap()), entry(2, vec![0xff, 0xff, 0xff])],
            foreign: Vec::new(),
            row: None,
        };
        let err = build(&Arc::from("d"), stored).err().expect("corrupt");
        assert!(
            matches!(err, LoadError::CorruptUpdate { seq: 2, .. }),
            "{err}"
        );
    }
}
