//! Durable storage of documents: an append-only update log plus a compacted snapshot per
//! document, behind one [`Store`] trait with a Postgres and an SQLite implementation
//! (chosen by the scheme of `DATABASE_URL`).
//!
//! The hub never waits on the database on the path of an edit: document actors hand their
//! updates to the [`writer`], which group-commits them and reports back which sequence
//! numbers are durable. A document is loaded as its latest snapshot plus the log entries
//! after it.

pub mod postgres;
pub mod sqlite;
pub mod writer;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

pub use writer::Writer;

/// The stored form of one document, as needed to load it.
#[derive(Debug, Default)]
pub struct StoredDoc {
    /// The latest snapshot, if the document was ever compacted.
    pub snapshot: Option<Snapshot>,
    /// Log entries after the snapshot, in sequence order.
    pub log: Vec<LogEntry>,
    /// Cluster mode: the highest sequence number loaded of each other node's log rows. A
    /// snapshot taken after this load holds them, so it may fold them away.
    pub foreign: Vec<(String, u64)>,
    /// The `documents` row loaded (`None`: never stored). Every write names the row it
    /// continues, so that once the document is deleted, a node that missed the news has
    /// its writes refused instead of storing part of the document again.
    pub row: Option<Uuid>,
}

impl StoredDoc {
    /// The highest sequence number stored (0 for an empty document).
    pub fn last_seq(&self) -> u64 {
        let snap = self.snapshot.as_ref().map_or(0, |s| s.seq);
        self.log.last().map_or(snap, |e| e.seq.max(snap))
    }
}

/// A compacted document: one v1 update holding everything up to and including `seq`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The last sequence number folded into the snapshot.
    pub seq: u64,
    /// The whole document as one v1 update.
    pub state: Bytes,
    /// Its v1 state vector, so a peer's diff can be judged without loading the state.
    pub state_vector: Bytes,
    /// Cluster mode: other nodes' log rows (node, up to seq) this snapshot also holds,
    /// because they were loaded before it was taken.
    pub covers: Vec<(String, u64)>,
}

/// One update of the log.
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// Position in the document's log (1, 2, 3, … per document).
    pub seq: u64,
    /// The v1 update.
    pub update: Bytes,
}

/// One update to append, with where it came from (for audits and debugging).
#[derive(Debug, Clone)]
pub struct Append {
    /// Its sequence number, assigned by the document's actor.
    pub seq: u64,
    /// The v1 update.
    pub update: Bytes,
    /// Who sent it (`ws 127.0.0.1:5000`, `http import`, …).
    pub origin: Arc<str>,
}

/// Everything one group commit writes for one document, applied in this order: append the
/// log entries, then (compaction) store the snapshot and drop the log entries it covers.
#[derive(Debug, Clone)]
pub struct DocWrite {
    /// The document.
    pub name: Arc<str>,
    /// New log entries, in sequence order.
    pub appends: Vec<Append>,
    /// A snapshot replacing the stored one and every log entry up to its `seq`.
    pub snapshot: Option<Snapshot>,
    /// The `documents` row this write continues: the one loaded or last written. `None`
    /// for a document that was new when loaded and not yet written; its first commit
    /// creates the row or joins the one another node created meanwhile.
    pub row: Option<Uuid>,
}

/// What the document list and the metadata endpoint show.
#[derive(Debug, Clone, Serialize)]
pub struct DocMeta {
    /// Stable id (names are unique but a deleted name can be reused).
    pub id: Uuid,
    /// The document name.
    pub name: String,
    /// When the first update was stored.
    pub created_at: DateTime<Utc>,
    /// When the last update was stored.
    pub updated_at: DateTime<Utc>,
    /// Bytes stored: the snapshot plus the log after it.
    pub size_bytes: u64,
}

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached right now (connection refused or lost, shutting
    /// down, pool exhausted). Worth retrying: nothing about the request is wrong.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// The database refused the operation for a reason retrying will not fix.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// `DATABASE_URL` names no backend we have, or is malformed.
    #[error("invalid DATABASE_URL {url:?}: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// These documents were deleted since the rows their writes continue were loaded or
    /// written (perhaps on another node, whose notice this one missed). Nothing of the
    /// commit was written; the others' writes may be committed without them.
    #[error("documents deleted under their writes: {docs:?}")]
    Deleted {
        /// The positions of the refused writes in the commit (two writes of one name may
        /// come from two actors, one before and one after the document was reloaded).
        writes: Vec<usize>,
        /// Their documents, for logs.
        docs: Vec<Arc<str>>,
    },
    /// A stored value does not have the shape the schema promises.
    #[error("corrupt row in {table}: {reason}")]
    Corrupt {
        /// Which table.
        table: &'static str,
        /// What was wrong.
        reason: String,
    },
}

impl StoreError {
    /// Whether retrying the same operation later can succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Sorts a driver error into [`StoreError::Unavailable`] (retry later) or
/// [`StoreError::Database`], with `transient_code` judging the backend's own error codes.
fn classify(e: sqlx::Error, transient_code: fn(&str) -> bool) -> StoreError {
    use sqlx::Error as E;
    let transient = match &e {
        E::Io(_)
        | E::Tls(_)
        | E::PoolTimedOut
        | E::PoolClosed
        | E::WorkerCrashed
        | E::Protocol(_) => true,
        E::Database(db) => db.code().is_some_and(|c| transient_code(&c)),
        _ => false,
    };
    if transient {
        StoreError::Unavailable(e)
    } else {
        StoreError::Database(e)
    }
}

/// A place documents are kept. Implementations must make [`Store::commit`] atomic: after a
/// crash at any point a document loads either with or without the whole commit.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `postgres` or `sqlite`, for logs and `/readyz`.
    fn backend(&self) -> &'static str;

    /// Brings the schema up to date (idempotent).
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Cheap round trip proving the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// The snapshot and the log after it, read as one consistent state; `None` if the
    /// document was never stored.
    async fn load(&self, name: &str) -> Result<Option<StoredDoc>, StoreError>;

    /// Log entries of `name` with a sequence number above `after`, in order, if the log
    /// still holds all of them (`None` when compaction folded some into the snapshot).
    async fn log_after(&self, name: &str, after: u64) -> Result<Option<Vec<LogEntry>>, StoreError>;

    /// Writes several documents in one transaction (a group commit) and returns the
    /// `documents` row of each write, in order. Appending an entry that is already stored
    /// is not an error, so a commit whose outcome was unknown (the connection broke during
    /// COMMIT) can simply be retried. A write whose [`DocWrite::row`] is no longer there
    /// fails the whole commit with [`StoreError::Deleted`], before anything is written.
    async fn commit(&self, writes: &[DocWrite]) -> Result<Vec<Uuid>, StoreError>;

    /// Removes a document with its log and snapshot; with `row`, only while the document
    /// is still that row (a node removing what it wrote of a document deleted elsewhere
    /// must not remove a newer document of the same name). Returns whether it existed.
    async fn delete(&self, name: &str, row: Option<Uuid>) -> Result<bool, StoreError>;

    /// Metadata of one document.
    async fn meta(&self, name: &str) -> Result<Option<DocMeta>, StoreError>;

    /// Metadata of every stored document, by name.
    async fn list(&self) -> Result<Vec<DocMeta>, StoreError>;
}

/// Opens the store `url` names: `postgres://…` / `postgresql://…` or `sqlite://…`
/// (the SQLite file and its folder are created if missing).
///
/// `node` is set in cluster mode: the node's log rows are tagged with it, and snapshots
/// are merged with the stored one (another node may have written it) under an advisory
/// lock. Only Postgres can be shared by several nodes.
pub async fn open(url: &str, node: Option<Uuid>) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PgStore::connect(url, node).await?))
    } else if node.is_some() {
        Err(StoreError::Url {
            url: url.to_owned(),
            reason: "cluster mode (--redis-url) needs a Postgres database every node shares".into(),
        })
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::connect(url).await?))
    } else {
        Err(StoreError::Url {
            url: url.to_owned(),
            reason: "expected postgres://… or sqlite://…".into(),
        })
    }
}

/// Rows of one multi-row statement: SQLite takes at most 32,766 bound values per statement,
/// and its rows bind at most five.
const INSERT_CHUNK: usize = 4_000;

/// Bytes a write adds to the stored size of its document (before compaction).
fn appended_bytes(write: &DocWrite) -> i64 {
    write.appends.iter().map(|a| a.update.len() as i64).sum()
}

/// The documents one commit upserts: each name once (Postgres refuses to update a row twice
/// in one statement), in name order (the order rows are locked in, so two nodes committing
/// overlapping documents queue instead of deadlocking), with the bytes its log grows by.
fn documents_of(writes: &[DocWrite]) -> Vec<(&str, i64)> {
    let mut growth: BTreeMap<&str, i64> = BTreeMap::new();
    for w in writes {
        *growth.entry(&*w.name).or_default() += appended_bytes(w);
    }
    growth.into_iter().collect()
}

/// The ids the upsert returned (by name), in the order of `writes`.
fn ids_in_order<Id: Clone>(
    writes: &[DocWrite],
    ids: &HashMap<String, Id>,
) -> Result<Vec<Id>, StoreError> {
    writes
        .iter()
        .map(|w| {
            ids.get(&*w.name)
                .cloned()
                .ok_or_else(|| StoreError::Corrupt {
                    table: "documents",
                    reason: format!("the upsert returned no id for {:?}", w.name),
                })
        })
        .collect()
}

/// The refusal of a commit some of whose `writes` continue a row that is gone (`rows[i]`
/// is the row the upsert returned for `writes[i]`): their documents were deleted since, and
/// perhaps created anew. `None` when every write continues its row.
fn deleted_under(writes: &[DocWrite], rows: &[Uuid]) -> Option<StoreError> {
    let gone: Vec<usize> = writes
        .iter()
        .zip(rows)
        .enumerate()
        .filter(|(_, (w, row))| w.row.is_some_and(|expected| expected != **row))
        .map(|(i, _)| i)
        .collect();
    (!gone.is_empty()).then(|| StoreError::Deleted {
        docs: gone.iter().map(|&i| writes[i].name.clone()).collect(),
        writes: gone,
    })
}

/// A document id stored as text (SQLite's ids, the load queries' id column).
fn doc_id(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|e| StoreError::Corrupt {
        table: "documents",
        reason: format!("id {text:?}: {e}"),
    })
}

/// A sequence number as the databases store it (BIGINT / INTEGER are signed).
fn seq_i64(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// Turns a row's signed sequence number back, refusing negative ones.
fn seq_u64(table: &'static str, seq: i64) -> Result<u64, StoreError> {
    u64::try_from(seq).map_err(|_| StoreError::Corrupt {
        table,
        reason: format!("negative sequence number {seq}"),
    })
}

/// One row of the load queries: (kind: 0 snapshot / 1 log entry, node, seq, data, state
/// vector, the document's id as text).
type LoadRow = (i32, String, i64, Vec<u8>, Option<Vec<u8>>, String);

/// Builds a [`StoredDoc`] from rows ordered by kind then seq: the shape both backends'
/// load queries return. `own` is the loading node (rows of others are `foreign`).
fn assemble(rows: Vec<LoadRow>, own: &str) -> Result<StoredDoc, StoreError> {
    let mut doc = StoredDoc::default();
    let mut foreign: std::collections::BTreeMap<String, u64> = Default::default();
    for (kind, node, seq, data, state_vector, row) in rows {
        if doc.row.is_none() {
            doc.row = Some(doc_id(&row)?);
        }
        let seq = seq_u64(if kind == 0 { "snapshots" } else { "updates" }, seq)?;
        if kind == 0 {
            doc.snapshot = Some(Snapshot {
                seq,
                state: data.into(),
                state_vector: state_vector.unwrap_or_default().into(),
                covers: Vec::new(),
            });
        } else {
            if node != own {
                let max = foreign.entry(node).or_default();
                *max = (*max).max(seq);
            }
            doc.log.push(LogEntry {
                seq,
                update: data.into(),
            });
        }
    }
    doc.foreign = foreign.into_iter().collect();
    Ok(doc)
}

/// The log entries of `doc` after `after` if they are all still there: none was folded
/// into the snapshot, none is missing at the start, and `after` is not beyond the log (a
/// reader ahead of the store saw a different document, e.g. one deleted and recreated).
fn contiguous_after(doc: StoredDoc, after: u64) -> Option<Vec<LogEntry>> {
    let snapshot = doc.snapshot.as_ref().map_or(0, |s| s.seq);
    if snapshot > after || after > doc.last_seq() {
        return None;
    }
    match doc.log.first() {
        Some(first) if first.seq != after + 1 => None,
        _ => Some(doc.log),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_seq_covers_snapshot_and_log() {
        let mut d = StoredDoc::default();
        assert_eq!(d.last_seq(), 0);
        d.snapshot = Some(Snapshot {
            seq: 7,
            state: Bytes::new(),
            state_vector: Bytes::new(),
            covers: Vec::new(),
        });
        assert_eq!(d.last_seq(), 7);
        d.log.push(LogEntry {
            seq: 9,
            update: Bytes::new(),
        });
        assert_eq!(d.last_seq(), 9);
    }

    fn doc(snapshot: Option<u64>, log: &[u64]) -> StoredDoc {
        StoredDoc {
            snapshot: snapshot.map(|seq| Snapshot {
                seq,
                state: Bytes::new(),
                state_vector: Bytes::new(),
                covers: Vec::new(),
            }),
            log: log
                .iter()
                .map(|&seq| LogEntry {
                    seq,
                    update: Bytes::new(),
                })
                .collect(),
            foreign: Vec::new(),
            row: None,
        }
    }

    #[test]
    fn log_after_refuses_what_compaction_folded_away() {
        let seqs =
            |v: Option<Vec<LogEntry>>| v.map(|l| l.iter().map(|e| e.seq).collect::<Vec<_>>());
        assert_eq!(
            seqs(contiguous_after(doc(None, &[3, 4]), 2)),
            Some(vec![3, 4])
        );
        assert_eq!(
            seqs(contiguous_after(doc(Some(2), &[3, 4]), 2)),
            Some(vec![3, 4])
        );
        assert_eq!(seqs(contiguous_after(doc(Some(2), &[]), 2)), Some(vec![]));
        assert_eq!(
            seqs(contiguous_after(doc(Some(5), &[6]), 2)),
            None,
            "folded"
        );
        assert_eq!(seqs(contiguous_after(doc(None, &[4]), 2)), None, "gap");
        assert_eq!(seqs(contiguous_after(doc(None, &[1, 2]), 9)), None, "ahead");
    }
}
