//! The `Store` implementations against the real databases (Postgres at 127.0.0.1:5432 and
//! an SQLite file): round trips, compaction, idempotent retries, deletion, and many
//! documents committed concurrently.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use support::each_backend;
use tandem_engine::Document;
use tandem_server::hub::doc_load;
use tandem_server::store::{self, Append, DocWrite, Snapshot, Store, StoreError};

/// The store at `url` with its schema in place, as the server opens it.
async fn migrated(url: &str) -> Arc<dyn Store> {
    let store = store::open(url, None).await.unwrap();
    store.migrate().await.unwrap();
    store
}

/// `n` single-character edits of one document as v1 updates, and the final text.
fn edits(n: usize) -> (Vec<Bytes>, String) {
    let doc = Document::new("src");
    let text = doc.text("content");
    let updates = (0..n)
        .map(|i| {
            let (_, u) = doc.edit_with_update(|e| {
                let at = (i as u32 * 7) % (e.text_len(&text) + 1);
                e.insert(&text, at, &((b'a' + (i % 26) as u8) as char).to_string())
                    .unwrap()
            });
            Bytes::from(u.unwrap())
        })
        .collect();
    (updates, doc.text_string("content"))
}

fn appends(updates: &[Bytes], first_seq: u64) -> Vec<Append> {
    updates
        .iter()
        .enumerate()
        .map(|(i, u)| Append {
            seq: first_seq + i as u64,
            update: u.clone(),
            origin: Arc::from("test"),
        })
        .collect()
}

fn write(name: &str, appends: Vec<Append>, snapshot: Option<Snapshot>) -> DocWrite {
    DocWrite {
        name: Arc::from(name),
        appends,
        snapshot,
        row: None,
    }
}

/// A snapshot of the document made of `updates`, numbered as the last of them.
fn snapshot_of(updates: &[Bytes]) -> Snapshot {
    let doc = Document::new("snapshot");
    for u in updates {
        doc.apply_update_v1(u).unwrap();
    }
    Snapshot {
        seq: updates.len() as u64,
        state: doc.snapshot_v1().into(),
        state_vector: doc.state_vector_v1().into(),
        covers: Vec::new(),
    }
}

async fn loaded_text(store: &dyn Store, name: &str) -> (String, u64, usize) {
    let stored = store.load(name).await.unwrap().expect("stored");
    let loaded = doc_load::build(&Arc::from(name), stored).unwrap();
    (
        loaded.doc.text_string("content"),
        loaded.last_seq,
        loaded.log_updates,
    )
}

#[tokio::test]
async fn documents_round_trip_and_list_with_sizes() {
    for (backend, url, _keep) in each_backend().await {
        let store = migrated(&url).await;
        store.migrate().await.unwrap(); // idempotent
        assert!(store.load("nope").await.unwrap().is_none(), "{backend}");
        let (a, a_text) = edits(50);
        let (b, b_text) = edits(7);
        // Two documents in one group commit, then more of the first.
        store
            .commit(&[
                write("a", appends(&a[..30], 1), None),
                write("b/with slash", appends(&b, 1), None),
            ])
            .await
            .unwrap();
        store
            .commit(&[write("a", appends(&a[30..], 31), None)])
            .await
            .unwrap();
        assert_eq!(
            loaded_text(&*store, "a").await,
            (a_text.clone(), 50, 50),
            "{backend}"
        );
        assert_eq!(
            loaded_text(&*store, "b/with slash").await.0,
            b_text,
            "{backend}"
        );
        let list = store.list().await.unwrap();
        let names: Vec<&str> = list.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["a", "b/with slash"], "{backend}");
        let a_bytes: usize = a.iter().map(|u| u.len()).sum();
        assert_eq!(list[0].size_bytes as usize, a_bytes, "{backend}");
        assert!(list[0].updated_at >= list[0].created_at);
        let meta = store.meta("a").await.unwrap().unwrap();
        assert_eq!(meta.id, list[0].id);
    }
}

#[tokio::test]
async fn compaction_keeps_the_content_and_folds_the_log() {
    for (backend, url, _keep) in each_backend().await {
        let store = migrated(&url).await;
        let (updates, text) = edits(120);
        store
            .commit(&[write("c", appends(&updates[..100], 1), None)])
            .await
            .unwrap();
        let (before, _, _) = loaded_text(&*store, "c").await;
        // Snapshot of the first 100 in the same transaction as entries 101..=120.
        let snapshot = snapshot_of(&updates[..100]);
        store
            .commit(&[write("c", appends(&updates[100..], 101), Some(snapshot))])
            .await
            .unwrap();
        let stored = store.load("c").await.unwrap().unwrap();
        assert_eq!(stored.snapshot.as_ref().unwrap().seq, 100, "{backend}");
        assert_eq!(stored.log.len(), 20, "{backend}: folded entries are gone");
        assert_eq!(stored.log[0].seq, 101);
        assert_eq!(loaded_text(&*store, "c").await, (text.clone(), 120, 20));
        assert_ne!(before, text);
        // Readers that are behind the snapshot must fall back to the whole state.
        assert!(
            store.log_after("c", 50).await.unwrap().is_none(),
            "{backend}"
        );
        let tail = store.log_after("c", 110).await.unwrap().unwrap();
        assert_eq!(
            tail.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (111..=120).collect::<Vec<_>>()
        );
        assert!(
            store.log_after("c", 500).await.unwrap().is_none(),
            "ahead of the log"
        );
        let meta = store.meta("c").await.unwrap().unwrap();
        let expected = stored.snapshot.unwrap().state.len()
            + stored.log.iter().map(|e| e.update.len()).sum::<usize>();
        assert_eq!(
            meta.size_bytes as usize, expected,
            "{backend}: size after compaction"
        );
    }
}

#[tokio::test]
async fn a_retried_commit_is_harmless_and_delete_forgets_everything() {
    for (backend, url, _keep) in each_backend().await {
        let store = migrated(&url).await;
        let (updates, text) = edits(10);
        let batch = [write("r", appends(&updates, 1), None)];
        store.commit(&batch).await.unwrap();
        // The outcome of a COMMIT can be unknown (connection lost): the writer retries.
        store.commit(&batch).await.unwrap();
        assert_eq!(loaded_text(&*store, "r").await, (text, 10, 10), "{backend}");
        assert!(store.delete("r", None).await.unwrap());
        assert!(!store.delete("r", None).await.unwrap());
        assert!(store.load("r").await.unwrap().is_none(), "{backend}");
        assert!(store.meta("r").await.unwrap().is_none());
        assert!(store.list().await.unwrap().is_empty());
    }
}

/// An SQLite file written before migration 20261203000001 (which rebuilds the log table
/// to defer its document reference) keeps every document through the upgrade, and takes
/// new writes after it. A retried commit still stores nothing twice, and deleting the
/// document still deletes its log.
#[tokio::test]
async fn an_sqlite_file_from_before_the_log_rebuild_keeps_its_documents() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/tandem.db", dir.path().display());
    // The schema as the first release created it: only the first migration.
    let first = tempfile::tempdir().unwrap();
    let init = "20261123000001_init.sql";
    let migrations = concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations/sqlite/");
    std::fs::copy(format!("{migrations}{init}"), first.path().join(init)).unwrap();
    {
        use std::str::FromStr;
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(&url)
            .unwrap()
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        let old = sqlx::migrate::Migrator::new(first.path()).await.unwrap();
        old.run(&pool).await.unwrap();
        pool.close().await;
    }
    let (updates, text) = edits(40);
    let old = store::open(&url, None).await.unwrap();
    old.commit(&[
        write("kept", appends(&updates[..25], 1), None),
        write("other", appends(&updates[..3], 1), None),
    ])
    .await
    .unwrap();
    drop(old);
    // A document deleted in the sqlite3 shell, whose foreign keys are off by default,
    // leaves its log behind: the upgrade must not fail on it.
    {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query("INSERT INTO documents (id, name, created_at, updated_at) VALUES ('gone', 'gone', 0, 0)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO updates VALUES ('gone', 1, x'00', 'shell', 0)")
            .execute(&pool)
            .await
            .unwrap();
        let mut conn = pool.acquire().await.unwrap();
        sqlx::query("PRAGMA foreign_keys = OFF")
            .execute(&mut *conn)
            .await
            .unwrap();
        sqlx::query("DELETE FROM documents WHERE id = 'gone'")
            .execute(&mut *conn)
            .await
            .unwrap();
        drop(conn);
        pool.close().await;
    }

    let store = migrated(&url).await;
    let schema: (String,) = sqlx::query_as("SELECT sql FROM sqlite_master WHERE name = 'updates'")
        .fetch_one(&sqlx::SqlitePool::connect(&url).await.unwrap())
        .await
        .unwrap();
    assert!(
        schema.0.contains("DEFERRABLE INITIALLY DEFERRED"),
        "{}",
        schema.0
    );
    let batch = [write("kept", appends(&updates[25..], 26), None)];
    store.commit(&batch).await.unwrap();
    store.commit(&batch).await.unwrap();
    assert_eq!(loaded_text(&*store, "kept").await, (text, 40, 40));
    let other = Document::new("other");
    for u in &updates[..3] {
        other.apply_update_v1(u).unwrap();
    }
    let other_text = other.text_string("content");
    assert_eq!(loaded_text(&*store, "other").await, (other_text, 3, 3));
    assert!(store.delete("other", None).await.unwrap());
    let left: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM updates")
        .fetch_one(&sqlx::SqlitePool::connect(&url).await.unwrap())
        .await
        .unwrap();
    assert_eq!(
        left.0, 40,
        "the deleted document's log went with it, and the orphan was not copied"
    );
}

/// A node that missed a delete (cluster mode, Redis down) must not store part of the
/// document again: its writes name the row they continue, and the store refuses them.
#[tokio::test]
async fn writes_continuing_a_deleted_document_are_refused_and_store_nothing() {
    for (backend, url, _keep) in each_backend().await {
        let store = migrated(&url).await;
        let (updates, _) = edits(30);
        let continuing = |appends: Vec<Append>, row| DocWrite {
            row: Some(row),
            ..write("f", appends, None)
        };
        // The first commit makes the row and says which; a load finds the same.
        let row = store
            .commit(&[write("f", appends(&updates[..10], 1), None)])
            .await
            .unwrap()[0];
        let loaded = store.load("f").await.unwrap().unwrap();
        assert_eq!(loaded.row, Some(row), "{backend}");
        let rows = store
            .commit(&[continuing(appends(&updates[10..20], 11), row)])
            .await
            .unwrap();
        assert_eq!(rows, vec![row], "{backend}");

        // Deleted behind the writer: the whole commit is refused before anything is
        // written, the other document's part included, and names the deleted one.
        assert!(store.delete("f", None).await.unwrap());
        let late = continuing(appends(&updates[20..], 21), row);
        match store
            .commit(&[write("g", appends(&updates[..5], 1), None), late.clone()])
            .await
        {
            Err(StoreError::Deleted { writes, docs }) => {
                assert_eq!((writes, docs), (vec![1], vec![Arc::from("f")]), "{backend}")
            }
            other => panic!("{backend}: a write to a deleted document gave {other:?}"),
        }
        assert!(
            store.load("f").await.unwrap().is_none(),
            "{backend}: brought back"
        );
        assert!(
            store.load("g").await.unwrap().is_none(),
            "{backend}: half a commit"
        );

        // A new document of the same name: the stale write is still refused, and deleting
        // the old row (what the stale node does next) leaves the new document alone.
        let fresh = store
            .commit(&[write("f", appends(&updates[..3], 1), None)])
            .await
            .unwrap()[0];
        assert_ne!(fresh, row);
        assert!(matches!(
            store.commit(&[late]).await,
            Err(StoreError::Deleted { .. })
        ));
        assert!(!store.delete("f", Some(row)).await.unwrap(), "{backend}");
        let expected = Document::new("expected");
        for u in &updates[..3] {
            expected.apply_update_v1(u).unwrap();
        }
        assert_eq!(
            loaded_text(&*store, "f").await,
            (expected.text_string("content"), 3, 3),
            "{backend}"
        );
        assert!(store.delete("f", Some(fresh)).await.unwrap(), "{backend}");
    }
}

/// The group commit keeps two actors of one document apart: one that missed the delete of
/// the row it writes to, and one that loaded the document afresh. Only the first is fenced.
#[tokio::test]
async fn the_writer_fences_only_the_actor_whose_row_is_gone() {
    use store::writer::{Progress, Stored};
    use store::Writer;
    use tokio::sync::watch;
    for (backend, url, _keep) in each_backend().await {
        let store = migrated(&url).await;
        let (updates, _) = edits(2);
        let gone_row = store
            .commit(&[write("f", appends(&updates[..1], 1), None)])
            .await
            .unwrap()[0];
        assert!(store.delete("f", None).await.unwrap());
        let progress = |row| {
            let (tx, rx) = watch::channel(Stored {
                row,
                ..Stored::default()
            });
            (Progress::new(tx), rx)
        };
        let (stale, mut stale_rx) = progress(Some(gone_row));
        let (fresh, mut fresh_rx) = progress(None);
        let writer = Writer::spawn(store.clone(), Duration::from_millis(50));
        let name: Arc<str> = Arc::from("f");
        // Queued back to back, before the writer runs: one batch.
        let mut stale_write = appends(&updates[..1], 1);
        writer.append(&name, stale_write.remove(0), &stale);
        let mut fresh_write = appends(&updates[1..], 1);
        writer.append(&name, fresh_write.remove(0), &fresh);
        let deadline = Duration::from_secs(10);
        tokio::time::timeout(deadline, stale_rx.wait_for(|s| s.deleted))
            .await
            .expect("the stale actor was never told")
            .unwrap();
        let fresh_state = *tokio::time::timeout(deadline, fresh_rx.wait_for(|s| s.seq == 1))
            .await
            .expect("the fresh actor's write was never stored")
            .unwrap();
        assert!(
            !fresh_state.deleted,
            "{backend}: the fresh actor was fenced"
        );
        assert_ne!(fresh_state.row, Some(gone_row));
        let expected = Document::new("expected");
        expected.apply_update_v1(&updates[1]).unwrap();
        assert_eq!(
            loaded_text(&*store, "f").await.0,
            expected.text_string("content"),
            "{backend}: only the fresh actor's edit is stored"
        );
    }
}

#[tokio::test]
async fn concurrent_commits_to_many_documents() {
    for (backend, url, _keep) in each_backend().await {
        let store = migrated(&url).await;
        let (updates, text) = edits(40);
        let mut tasks = Vec::new();
        for d in 0..16 {
            let store = store.clone();
            let updates = updates.clone();
            tasks.push(tokio::spawn(async move {
                for (i, chunk) in updates.chunks(5).enumerate() {
                    let w = write(&format!("doc-{d}"), appends(chunk, 1 + 5 * i as u64), None);
                    store.commit(&[w]).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        for d in 0..16 {
            assert_eq!(
                loaded_text(&*store, &format!("doc-{d}")).await,
                (text.clone(), 40, 40),
                "{backend} doc-{d}"
            );
        }
    }
}

#[tokio::test]
async fn one_commit_spanning_many_documents_and_statement_chunks() {
    for (backend, url, _keep) in each_backend().await {
        let store = migrated(&url).await;
        // 60 documents x 90 entries = 5,400 log rows: more than one insert statement, with
        // a document straddling the boundary; plus a compaction of one document in the
        // same batch.
        let (updates, text) = edits(90);
        store
            .commit(&[write("d-0", appends(&updates[..40], 1), None)])
            .await
            .unwrap();
        let mut batch: Vec<DocWrite> = (1..60)
            .map(|d| write(&format!("d-{d}"), appends(&updates, 1), None))
            .collect();
        let snapshot = snapshot_of(&updates[..40]);
        batch.insert(
            17,
            write("d-0", appends(&updates[40..], 41), Some(snapshot)),
        );
        store.commit(&batch).await.unwrap();
        assert_eq!(
            loaded_text(&*store, "d-0").await,
            (text.clone(), 90, 50),
            "{backend}: compacted in the same batch"
        );
        let bytes: usize = updates.iter().map(|u| u.len()).sum();
        for d in 1..60 {
            let name = format!("d-{d}");
            assert_eq!(
                loaded_text(&*store, &name).await,
                (text.clone(), 90, 90),
                "{backend} {name}"
            );
            let meta = store.meta(&name).await.unwrap().unwrap();
            assert_eq!(meta.size_bytes as usize, bytes, "{backend} {name}");
        }
        assert_eq!(store.list().await.unwrap().len(), 60, "{backend}");
    }
}

#[tokio::test]
async fn a_document_twice_in_one_commit_is_written_once_with_both_parts() {
    for (backend, url, _keep) in each_backend().await {
        let store = migrated(&url).await;
        let (updates, text) = edits(20);
        store
            .commit(&[
                write("twice", appends(&updates[..8], 1), None),
                write("other", appends(&updates, 1), None),
                write("twice", appends(&updates[8..], 9), None),
            ])
            .await
            .unwrap();
        assert_eq!(
            loaded_text(&*store, "twice").await,
            (text.clone(), 20, 20),
            "{backend}"
        );
        let bytes: usize = updates.iter().map(|u| u.len()).sum();
        for name in ["twice", "other"] {
            let meta = store.meta(name).await.unwrap().unwrap();
            assert_eq!(meta.size_bytes as usize, bytes, "{backend} {name}");
        }
    }
}
