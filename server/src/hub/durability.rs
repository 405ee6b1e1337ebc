//! A document actor's bookkeeping of what is stored: it numbers every applied update,
//! hands it to the group-commit writer, learns which numbers are durable, and decides when
//! the log has grown enough to be folded into a new snapshot.

use std::sync::Arc;

use bytes::Bytes;
use tandem_engine::Document;
use tokio::sync::watch;

use crate::config::Config;
use crate::hub::doc_load::Loaded;
use crate::store::writer::{Progress, Stored};
use crate::store::{Append, Snapshot, Writer};

/// Sequence numbers and compaction state of one document.
pub struct Durability {
    name: Arc<str>,
    writer: Writer,
    progress: Progress,
    saved: watch::Receiver<Stored>,
    last_seq: u64,
    log_updates: usize,
    log_bytes: usize,
    compact_after_updates: usize,
    compact_after_bytes: usize,
    /// Other nodes' log rows loaded into memory (cluster mode), folded by every snapshot.
    foreign: Vec<(String, u64)>,
}

impl Durability {
    /// Continues the log of a freshly loaded document.
    pub fn new(name: Arc<str>, writer: Writer, loaded: &Loaded, config: &Config) -> Self {
        let (progress, saved) = watch::channel(Stored {
            seq: loaded.last_seq,
            row: loaded.row,
            deleted: false,
        });
        Self {
            name,
            writer,
            progress: Arc::new(progress),
            saved,
            last_seq: loaded.last_seq,
            log_updates: loaded.log_updates,
            log_bytes: loaded.log_bytes,
            compact_after_updates: config.compact_after_updates.max(1),
            compact_after_bytes: config.compact_after_bytes.max(1),
            foreign: loaded.foreign.clone(),
        }
    }

    /// Sequence number of the last update applied.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Sequence number up to which everything is durable.
    pub fn saved_seq(&self) -> u64 {
        self.saved.borrow().seq
    }

    /// Whether the document was deleted from the store under this actor (on another node,
    /// whose notice did not arrive): its writes are refused, so it must end.
    pub fn is_deleted(&self) -> bool {
        self.saved.borrow().deleted
    }

    /// Whether everything applied is durable (the document may leave memory).
    pub fn is_saved(&self) -> bool {
        self.saved_seq() >= self.last_seq
    }

    /// Resolves when more of the log became durable or the document was found deleted
    /// (cancel-safe, for `select!`).
    pub async fn changed(&mut self) {
        if self.saved.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Numbers an update just applied to `doc`, queues it for the store and, when the log
    /// after the last snapshot has grown past the flags, queues a new snapshot of `doc`.
    /// Returns the update's sequence number.
    pub fn record(&mut self, doc: &Document, update: Bytes, origin: &Arc<str>) -> u64 {
        self.last_seq += 1;
        self.log_updates += 1;
        self.log_bytes += update.len();
        let append = Append {
            seq: self.last_seq,
            update,
            origin: origin.clone(),
        };
        self.writer.append(&self.name, append, &self.progress);
        if self.compaction_due() {
            self.compact(doc);
        }
        self.last_seq
    }

    /// Queues a snapshot of `doc` as it is now, replacing the log up to the last update.
    pub fn compact(&mut self, doc: &Document) {
        let snapshot = Snapshot {
            seq: self.last_seq,
            state: doc.snapshot_v1().into(),
            state_vector: doc.state_vector_v1().into(),
            covers: self.foreign.clone(),
        };
        self.writer.compact(&self.name, snapshot, &self.progress);
        self.log_updates = 0;
        self.log_bytes = 0;
    }

    /// Whether a freshly loaded log is long enough to fold at once.
    pub fn compaction_due(&self) -> bool {
        self.log_updates >= self.compact_after_updates || self.log_bytes >= self.compact_after_bytes
    }

    /// The writer, for deletes and flushes.
    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// Deletes from the store only what this document's own writes stored (the row they
    /// went to), for a document deleted on another node. Its writes not yet in a commit
    /// are dropped first: they could only bring part of it back. Nothing to delete when the
    /// store already refused them (the document's row is gone).
    pub async fn delete_own(&self) -> Result<bool, crate::store::StoreError> {
        if self.is_deleted() {
            return Ok(false);
        }
        self.progress.send_modify(|stored| stored.deleted = true);
        self.writer.delete(&self.name, Some(&self.progress)).await
    }
}
