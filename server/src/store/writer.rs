//! Group commit: one task takes the updates of every document, and at most once per
//! `--group-commit-ms` writes all that arrived since the last commit in one transaction.
//! Document actors never wait for it; each learns through its [`Progress`] which sequence
//! numbers are durable (to acknowledge saves and to know when it may leave memory).
//!
//! During a database outage the queue grows in memory and the commit is retried with
//! backoff (0.1 s doubling to 5 s); every edit made meanwhile is written once the database
//! answers again. A batch that fails for a reason other than the outage is split per
//! document, so one document the database refuses does not hold up the others: its writes
//! are held aside, later ones of the same document joining them in order, and tried again
//! apart from the group commit with the same backoff until the database takes them (or its
//! actor is gone), while every other document's commits go on at their usual pace.
//!
//! A document deleted under its writes (on another node, whose notice this one missed) is
//! fenced off: its writes are dropped, never stored as a fragment of the document, and its
//! actor learns through its [`Progress`] that the document is gone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch, Notify};
use tracing::{error, info, warn};
use uuid::Uuid;

use super::{Append, DocWrite, Snapshot, Store, StoreError};

/// What the writer tells one document's actor (which holds the receiving end) about its
/// stored form.
pub type Progress = Arc<watch::Sender<Stored>>;

/// One document's stored form, as far as the writer knows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stored {
    /// The highest sequence number known to be durable.
    pub seq: u64,
    /// The `documents` row the writes continue (`None` until the document is first stored).
    pub row: Option<Uuid>,
    /// The document was deleted under its writes: nothing more of it is written.
    pub deleted: bool,
}

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long [`Writer::patiently`] waits in all for a database that answers.
pub const COMMIT_GRACE: Duration = Duration::from_secs(10);

/// How often [`Writer::patiently`] looks again whether the database still answers.
const HEALTH_RECHECK: Duration = Duration::from_millis(100);

/// Where the result of a delete goes.
type DeleteDone = oneshot::Sender<Result<bool, StoreError>>;

enum Op {
    Append {
        doc: Arc<str>,
        append: Append,
        progress: Progress,
        queued: Instant,
    },
    Compact {
        doc: Arc<str>,
        snapshot: Snapshot,
        progress: Progress,
    },
    Delete {
        doc: Arc<str>,
        /// Only the row this document's writes went to, if given.
        own: Option<Progress>,
        done: DeleteDone,
    },
    Flush {
        done: oneshot::Sender<()>,
    },
}

/// Handle of the group-commit task (cheap to clone).
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::UnboundedSender<Op>,
    health: Arc<Health>,
    /// Cuts the wait for the next commit short. A flush or a delete has someone waiting
    /// on it (a shutdown, an API call) who must not wait out `--group-commit-ms`, which
    /// may be up to a minute: a shutdown bounded by `--shutdown-flush-ms` gave up on
    /// updates that were only waiting for their turn. Appends do not ring it, so the task
    /// still wakes once per commit, not once per update.
    urgent: Arc<Notify>,
}

#[derive(Default)]
struct Health {
    /// The last commit attempt failed.
    failing: AtomicBool,
    /// Updates queued and not yet committed.
    pending: AtomicUsize,
    last_error: Mutex<Option<String>>,
}

impl Writer {
    /// Starts the task writing to `store`, committing at most once per `interval`.
    pub fn spawn(store: Arc<dyn Store>, interval: Duration) -> Writer {
        let (tx, rx) = mpsc::unbounded_channel();
        let health = Arc::new(Health::default());
        let urgent = Arc::new(Notify::new());
        tokio::spawn(run(store, interval, rx, health.clone(), urgent.clone()));
        Writer { tx, health, urgent }
    }

    /// Queues one log entry of `doc`.
    pub fn append(&self, doc: &Arc<str>, append: Append, progress: &Progress) {
        self.health.pending.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("tandem_persist_pending_updates").increment(1.0);
        let _ = self.tx.send(Op::Append {
            doc: doc.clone(),
            append,
            progress: progress.clone(),
            queued: Instant::now(),
        });
    }

    /// Queues a compaction of `doc`: the snapshot replaces the log up to its sequence number
    /// (in the same transaction as the entries queued before it).
    pub fn compact(&self, doc: &Arc<str>, snapshot: Snapshot, progress: &Progress) {
        let _ = self.tx.send(Op::Compact {
            doc: doc.clone(),
            snapshot,
            progress: progress.clone(),
        });
    }

    /// Deletes `doc` once everything queued before has been written; returns whether it
    /// existed in the store. With `own`, only the row the writes reporting to it went to,
    /// if that is still the document's (a node dropping what it wrote of a document deleted
    /// elsewhere must not delete a newer document of the same name).
    pub async fn delete(&self, doc: &Arc<str>, own: Option<&Progress>) -> Result<bool, StoreError> {
        let (done, wait) = oneshot::channel();
        let _ = self.tx.send(Op::Delete {
            doc: doc.clone(),
            own: own.cloned(),
            done,
        });
        self.urgent.notify_one();
        wait.await.unwrap_or(Ok(false))
    }

    /// Resolves once everything queued before the call is durable.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Op::Flush { done }).is_ok() {
            self.urgent.notify_one();
            let _ = wait.await;
        }
    }

    /// Awaits `work` (something that waits on this writer) for `limit`, and past it while
    /// the database answers, up to [`COMMIT_GRACE`] in all: a shutdown gives up on the
    /// database when it is down, not on a commit merely under way (`--shutdown-flush-ms 0`
    /// used to drop the last edits with the database up). The grace bounds a commit that
    /// hangs without failing (a lock held in Postgres). `None`: given up.
    pub async fn patiently<F: std::future::Future>(
        &self,
        limit: Duration,
        work: F,
    ) -> Option<F::Output> {
        let started = Instant::now();
        tokio::pin!(work);
        if let Ok(out) = tokio::time::timeout(limit, &mut work).await {
            return Some(out);
        }
        while self.is_healthy() && started.elapsed() < COMMIT_GRACE {
            if let Ok(out) = tokio::time::timeout(HEALTH_RECHECK, &mut work).await {
                return Some(out);
            }
        }
        None
    }

    /// Whether the last commit succeeded (false during an outage).
    pub fn is_healthy(&self) -> bool {
        !self.health.failing.load(Ordering::Acquire)
    }

    /// Updates waiting to be committed.
    pub fn pending(&self) -> usize {
        self.health.pending.load(Ordering::Relaxed)
    }

    /// Why the last commit failed, while it keeps failing.
    pub fn last_error(&self) -> Option<String> {
        self.health.last_error.lock().ok()?.clone()
    }
}

/// One document's share of a batch.
struct Entry {
    write: DocWrite,
    progress: Progress,
    max_seq: u64,
    appends: usize,
    /// Refused by the database: when to try again, and how long to wait after that.
    refused: Option<(Instant, Duration)>,
}

#[derive(Default)]
struct Batch {
    entries: Vec<Entry>,
    /// Entries by actor (the address of its `Progress`, which the entry keeps alive): an
    /// actor writes one document, and an actor that unloaded and the one that reloaded the
    /// document may both have writes in one batch.
    index: HashMap<usize, usize>,
    oldest: Option<Instant>,
    deletes: Vec<(Arc<str>, Option<Progress>, DeleteDone)>,
    flushes: Vec<oneshot::Sender<()>>,
}

impl Batch {
    /// A batch that starts from the writes held back since a refusal, so that what their
    /// documents wrote since joins them.
    fn after(held: Vec<Entry>) -> Self {
        let mut batch = Batch::default();
        for e in held {
            batch
                .index
                .insert(Arc::as_ptr(&e.progress) as usize, batch.entries.len());
            batch.entries.push(e);
        }
        batch
    }

    fn entry(&mut self, doc: Arc<str>, progress: Progress) -> &mut Entry {
        let actor = Arc::as_ptr(&progress) as usize;
        let i = *self.index.entry(actor).or_insert_with(|| {
            // The previous commit has finished: the row it learned is current.
            let row = progress.borrow().row;
            self.entries.push(Entry {
                write: DocWrite {
                    name: doc,
                    appends: Vec::new(),
                    snapshot: None,
                    row,
                },
                progress,
                max_seq: 0,
                appends: 0,
                refused: None,
            });
            self.entries.len() - 1
        });
        &mut self.entries[i]
    }

    fn add(&mut self, op: Op) {
        match op {
            Op::Append {
                doc,
                append,
                progress,
                queued,
            } => {
                self.oldest = Some(self.oldest.map_or(queued, |o| o.min(queued)));
                let e = self.entry(doc, progress);
                e.max_seq = e.max_seq.max(append.seq);
                e.appends += 1;
                e.write.appends.push(append);
            }
            Op::Compact {
                doc,
                snapshot,
                progress,
            } => {
                let e = self.entry(doc, progress);
                e.max_seq = e.max_seq.max(snapshot.seq);
                if e.write
                    .snapshot
                    .as_ref()
                    .is_none_or(|s| s.seq < snapshot.seq)
                {
                    e.write.snapshot = Some(snapshot);
                }
            }
            Op::Delete { doc, own, done } => self.deletes.push((doc, own, done)),
            Op::Flush { done } => self.flushes.push(done),
        }
    }
}

async fn run(
    store: Arc<dyn Store>,
    interval: Duration,
    mut rx: mpsc::UnboundedReceiver<Op>,
    health: Arc<Health>,
    urgent: Arc<Notify>,
) {
    let mut last_commit = tokio::time::Instant::now() - interval;
    // Writes the database refused, waiting for their next try.
    let mut held: Vec<Entry> = Vec::new();
    loop {
        let retry_at = held.iter().filter_map(|e| e.refused).map(|r| r.0).min();
        let first = tokio::select! {
            op = rx.recv() => match op {
                Some(op) => Some(op),
                None => break,
            },
            () = crate::sleep_until_opt(retry_at.map(Into::into)) => None,
        };
        // Whatever arrives until `interval` after the previous commit joins this one,
        // unless someone waits on a flush or a delete. A ring left over from a flush the
        // previous commit already served only makes this commit early.
        tokio::select! {
            biased;
            () = urgent.notified() => {}
            () = tokio::time::sleep_until(last_commit + interval) => {}
        }
        let mut batch = Batch::after(std::mem::take(&mut held));
        if let Some(op) = first {
            batch.add(op);
        }
        while let Ok(op) = rx.try_recv() {
            batch.add(op);
        }
        // Writes queued before their actor learned its document is gone.
        batch.entries.retain(|e| {
            let gone = e.progress.borrow().deleted;
            if gone {
                drop_pending(&health, e.appends);
            }
            !gone
        });
        // Held writes wait for their time, with what joined them, unless a flush (a
        // shutdown, a reload after a crash) asks for one last try. They are tried apart
        // from the rest: a refusal fails the whole group commit it is in, and would split
        // every other document into a transaction of its own.
        let now = Instant::now();
        let last_try = !batch.flushes.is_empty();
        let (retried, mut fresh): (Vec<Entry>, Vec<Entry>) =
            batch.entries.drain(..).partition(|e| e.refused.is_some());
        let (mut retried, waiting): (Vec<Entry>, Vec<Entry>) = retried
            .into_iter()
            .partition(|e| last_try || e.refused.is_some_and(|(at, _)| at <= now));
        held = waiting;
        let mut refused = commit(&*store, &mut fresh, &health).await;
        refused.extend(commit(&*store, &mut retried, &health).await);
        for mut e in refused {
            if Arc::strong_count(&e.progress) == 1 {
                // Its actor is gone (shut down, or reloading after a crash, which loads the
                // document without these once they failed this last try): kept any longer,
                // they could only land behind what the document wrote since.
                error!(doc = %e.write.name, updates = e.appends, "the database refused these updates of a document no longer open; they are lost");
                drop_pending(&health, e.appends);
                continue;
            }
            let wait = e.refused.map_or(BACKOFF_START, |(_, wait)| wait);
            e.refused = Some((Instant::now() + wait, (wait * 2).min(BACKOFF_MAX)));
            held.push(e);
        }
        // A deleted document's held writes could only bring part of it back: only those
        // of the writes the delete is about (`own`), else all of that name.
        for (doc, own, _) in &batch.deletes {
            held.retain(|e| {
                let deleted = match own {
                    Some(own) => Arc::ptr_eq(own, &e.progress),
                    None => e.write.name == *doc,
                };
                if deleted {
                    drop_pending(&health, e.appends);
                }
                !deleted
            });
        }
        last_commit = tokio::time::Instant::now();
        if let Some(oldest) = batch.oldest {
            metrics::histogram!("tandem_persist_lag_seconds")
                .record(oldest.elapsed().as_secs_f64());
        }
        for (doc, own, done) in batch.deletes {
            let result = match own.map(|p| p.borrow().row) {
                // This document's writes never made a row: nothing of it to delete.
                Some(None) => Ok(false),
                Some(row) => retry(&health, || store.delete(&doc, row)).await,
                None => retry(&health, || store.delete(&doc, None)).await,
            };
            let _ = done.send(result);
        }
        for done in batch.flushes {
            let _ = done.send(());
        }
    }
    info!("persistence writer stopped");
}

/// Commits `entries`, retrying through an outage until every one is durable, and reports
/// each to its document; hands back those the database refused for another reason.
async fn commit(store: &dyn Store, entries: &mut Vec<Entry>, health: &Health) -> Vec<Entry> {
    let mut backoff = BACKOFF_START;
    let mut refused = Vec::new();
    while !entries.is_empty() {
        let writes: Vec<DocWrite> = entries.iter().map(|e| e.write.clone()).collect();
        let started = Instant::now();
        match store.commit(&writes).await {
            Ok(rows) => {
                metrics::histogram!("tandem_persist_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::counter!("tandem_persist_commits_total").increment(1);
                recovered(health);
                for (e, row) in entries.drain(..).zip(rows) {
                    done(health, &e, row);
                }
                return refused;
            }
            Err(StoreError::Deleted { writes: gone, .. }) => {
                // The store names at least one of the writes (`deleted_under`); the others
                // are committed at once without them. `retain` visits in order: `at` is
                // each entry's write.
                let mut at = 0;
                entries.retain(|entry| {
                    let fenced = gone.contains(&at);
                    at += 1;
                    if fenced {
                        fence(health, entry);
                    }
                    !fenced
                });
                // The database answered: an outage before this attempt is over.
                recovered(health);
            }
            Err(e) if !e.is_transient() && entries.len() > 1 => {
                warn!(error = %e, documents = entries.len(), "group commit refused; committing documents one by one");
                let mut unavailable = Vec::new();
                for entry in entries.drain(..) {
                    match store.commit(std::slice::from_ref(&entry.write)).await {
                        Ok(rows) => done(health, &entry, rows[0]),
                        Err(StoreError::Deleted { .. }) => fence(health, &entry),
                        Err(e) if e.is_transient() => unavailable.push(entry),
                        Err(e) => refuse(entry, &e, &mut refused),
                    }
                }
                // The database went away meanwhile: the rest waits for it, without a spin.
                *entries = unavailable;
                if !entries.is_empty() {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
            Err(e) if !e.is_transient() => {
                if let Some(entry) = entries.pop() {
                    refuse(entry, &e, &mut refused);
                }
            }
            Err(e) => {
                failed(health, &e);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
    refused
}

/// The database refused the writes of `entry` for a reason other than an outage: they are
/// kept, to be tried again later.
fn refuse(entry: Entry, e: &StoreError, refused: &mut Vec<Entry>) {
    warn!(doc = %entry.write.name, updates = entry.appends, error = %e, "the database refused this document's writes; keeping them and trying again later");
    metrics::counter!("tandem_persist_refused_total").increment(1);
    refused.push(entry);
}

/// Runs `op` until it succeeds or fails for a reason retrying cannot fix.
async fn retry<T, F, Fut>(health: &Health, mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut backoff = BACKOFF_START;
    loop {
        match op().await {
            Ok(v) => {
                recovered(health);
                return Ok(v);
            }
            Err(e) if e.is_transient() => {
                failed(health, &e);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            Err(e) => return Err(e),
        }
    }
}

fn done(health: &Health, entry: &Entry, row: Uuid) {
    drop_pending(health, entry.appends);
    let max = entry.max_seq;
    entry.progress.send_if_modified(|stored| {
        stored.row = Some(row);
        let newer = max > stored.seq;
        stored.seq = stored.seq.max(max);
        newer
    });
}

/// The document of `entry` was deleted under its writes: they are dropped, and its actor
/// told.
fn fence(health: &Health, entry: &Entry) {
    warn!(doc = %entry.write.name, updates = entry.appends, "document deleted under its writes; dropping them and closing its clients");
    drop_pending(health, entry.appends);
    entry.progress.send_modify(|stored| stored.deleted = true);
}

fn drop_pending(health: &Health, appends: usize) {
    health.pending.fetch_sub(appends, Ordering::Relaxed);
    metrics::gauge!("tandem_persist_pending_updates").decrement(appends as f64);
}

fn failed(health: &Health, e: &StoreError) {
    metrics::counter!("tandem_persist_errors_total").increment(1);
    if !health.failing.swap(true, Ordering::AcqRel) {
        warn!(error = %e, "cannot write to the database; keeping updates in memory and retrying");
    }
    if let Ok(mut last) = health.last_error.lock() {
        *last = Some(e.to_string());
    }
}

fn recovered(health: &Health) {
    if health.failing.swap(false, Ordering::AcqRel) {
        info!("database writable again");
        if let Ok(mut last) = health.last_error.lock() {
            *last = None;
        }
    }
}
