//! The embedded zero-setup store: one SQLite file through sqlx, in WAL mode with
//! `synchronous = FULL` (a commit that was acknowledged survives a power cut, not just a
//! crash of the process). Ids are hyphenated UUID text, timestamps milliseconds since the
//! epoch.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
};
use sqlx::{QueryBuilder, Row, Sqlite};
use uuid::Uuid;

use super::{
    assemble, classify, deleted_under, doc_id, documents_of, ids_in_order, seq_i64, seq_u64,
    Append, DocMeta, DocWrite, LoadRow, LogEntry, Store, StoreError, StoredDoc, INSERT_CHUNK,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// An SQLite database file holding Tandem's tables.
pub struct SqliteStore {
    pool: SqlitePool,
}

/// SQLite result codes that mean "not now": BUSY (5), LOCKED (6), I/O errors (10) and a
/// full disk (13), including their extended forms (the primary code is the low byte). A
/// full disk is an outage like the others: updates wait in memory until space is freed.
fn transient(code: &str) -> bool {
    code.parse::<u32>()
        .is_ok_and(|n| matches!(n & 0xff, 5 | 6 | 10 | 13))
}

fn err(e: sqlx::Error) -> StoreError {
    classify(e, transient)
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

impl SqliteStore {
    /// Opens (creating if missing, with its folder) the database file `url` names.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let bad_url = |reason: String| StoreError::Url {
            url: url.to_owned(),
            reason,
        };
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| bad_url(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            // 1 MiB of page cache per connection (SQLite's default is 2 MiB): loads read a
            // document once, then it lives in its actor; the cache mostly serves the log's
            // index while appending.
            .pragma("cache_size", "-1024");
        if let Some(dir) = options.get_filename().parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| bad_url(format!("cannot create {}: {e}", dir.display())))?;
            }
        }
        // One connection writes (the group commit) while another loads documents: WAL mode
        // lets the two proceed together. More would mostly cost memory (each connection
        // runs on a thread of its own with its own page cache).
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(err)?;
        Ok(Self { pool })
    }
}

const LOAD: &str = "
WITH d AS (SELECT id FROM documents WHERE name = ?1),
     s AS (SELECT seq, state, state_vector FROM snapshots WHERE doc_id = (SELECT id FROM d))
SELECT 0 AS kind, '' AS node, seq, state AS data, state_vector, (SELECT id FROM d) AS doc
  FROM s
UNION ALL
SELECT 1, '', u.seq, u.data, NULL, u.doc_id FROM updates u
 WHERE u.doc_id = (SELECT id FROM d) AND u.seq > COALESCE((SELECT seq FROM s), 0)
ORDER BY 1, 3";

const LOG_AFTER: &str = "
WITH d AS (SELECT id FROM documents WHERE name = ?1)
SELECT 0 AS kind, '' AS node, seq, x'' AS data, NULL AS state_vector, doc_id AS doc
  FROM snapshots WHERE doc_id = (SELECT id FROM d)
UNION ALL
SELECT 1, '', seq, data, NULL, doc_id FROM updates
 WHERE doc_id = (SELECT id FROM d) AND seq > ?2
ORDER BY 1, 3";

const META: &str = "SELECT id, name, created_at, updated_at, size_bytes FROM documents";

fn meta_of(row: &sqlx::sqlite::SqliteRow) -> Result<DocMeta, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        table: "documents",
        reason,
    };
    let time = |col: &str| -> Result<DateTime<Utc>, StoreError> {
        let ms: i64 = row.try_get(col).map_err(err)?;
        DateTime::from_timestamp_millis(ms).ok_or_else(|| corrupt(format!("{col} = {ms}")))
    };
    let id: String = row.try_get("id").map_err(err)?;
    Ok(DocMeta {
        id: doc_id(&id)?,
        name: row.try_get("name").map_err(err)?,
        created_at: time("created_at")?,
        updated_at: time("updated_at")?,
        size_bytes: seq_u64("documents", row.try_get("size_bytes").map_err(err)?)?,
    })
}

/// Creates or touches the documents of `writes` (size grows by what they append) in one
/// statement per chunk; returns their ids in the order of `writes`.
async fn upsert_documents(
    conn: &mut SqliteConnection,
    writes: &[DocWrite],
    now: i64,
) -> Result<Vec<String>, StoreError> {
    let mut ids: HashMap<String, String> = HashMap::with_capacity(writes.len());
    for chunk in documents_of(writes).chunks(INSERT_CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO documents (id, name, created_at, updated_at, size_bytes) ",
        );
        q.push_values(chunk, |mut row, (name, growth)| {
            row.push_bind(Uuid::new_v4().to_string())
                .push_bind(*name)
                .push_bind(now)
                .push_bind(now)
                .push_bind(*growth);
        });
        q.push(
            " ON CONFLICT (name) DO UPDATE
               SET updated_at = excluded.updated_at,
                   size_bytes = documents.size_bytes + excluded.size_bytes
             RETURNING id, name",
        );
        // Not cached: the statement differs with every batch size, and each cached one
        // holds memory on every connection.
        let rows: Vec<(String, String)> = q
            .build_query_as()
            .persistent(false)
            .fetch_all(&mut *conn)
            .await
            .map_err(err)?;
        ids.extend(rows.into_iter().map(|(id, name)| (name, id)));
    }
    ids_in_order(writes, &ids)
}

/// Appends the log entries of every write, `ids[i]` being the id of `writes[i]`, in one
/// statement per chunk of rows whatever the number of documents.
async fn insert_log(
    conn: &mut SqliteConnection,
    writes: &[DocWrite],
    ids: &[String],
    now: i64,
) -> Result<(), StoreError> {
    let rows: Vec<(&str, &Append)> = writes
        .iter()
        .zip(ids)
        .flat_map(|(w, id)| w.appends.iter().map(move |a| (id.as_str(), a)))
        .collect();
    for chunk in rows.chunks(INSERT_CHUNK) {
        // OR IGNORE rather than ON CONFLICT DO NOTHING: with the document reference
        // deferred too, no row can fail on its own, so SQLite keeps no statement journal
        // (migration 20261203000001 says why that matters). The two differ only for a
        // NULL in a NOT NULL column, which OR IGNORE would skip: every value bound below
        // is a non-null Rust value.
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT OR IGNORE INTO updates (doc_id, seq, data, origin, created_at) ",
        );
        q.push_values(chunk, |mut row, (id, a)| {
            row.push_bind(*id)
                .push_bind(seq_i64(a.seq))
                .push_bind(&a.update[..])
                .push_bind(&*a.origin)
                .push_bind(now);
        });
        q.build()
            .persistent(false)
            .execute(&mut *conn)
            .await
            .map_err(err)?;
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn load(&self, name: &str) -> Result<Option<StoredDoc>, StoreError> {
        let rows: Vec<LoadRow> = sqlx::query_as(LOAD)
            .bind(name)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        if rows.is_empty() {
            return Ok(None);
        }
        assemble(rows, "").map(Some)
    }

    async fn log_after(&self, name: &str, after: u64) -> Result<Option<Vec<LogEntry>>, StoreError> {
        let rows: Vec<LoadRow> = sqlx::query_as(LOG_AFTER)
            .bind(name)
            .bind(seq_i64(after))
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        let doc = assemble(rows, "")?;
        Ok(super::contiguous_after(doc, after))
    }

    async fn commit(&self, writes: &[DocWrite]) -> Result<Vec<Uuid>, StoreError> {
        // BEGIN IMMEDIATE would be ideal; sqlx's begin() is DEFERRED, and the first
        // statement below is a write, so the lock is taken at once anyway.
        let mut tx = self.pool.begin().await.map_err(err)?;
        let now = now_ms();
        // Every statement is a round trip to the connection's thread, so the batch is
        // written in a fixed number of them, not two per document.
        let ids = upsert_documents(&mut tx, writes, now).await?;
        let rows = ids
            .iter()
            .map(|id| doc_id(id))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(deleted) = deleted_under(writes, &rows) {
            // The upsert brought them back: undo it, and with it the whole commit.
            tx.rollback().await.map_err(err)?;
            return Err(deleted);
        }
        insert_log(&mut tx, writes, &ids, now).await?;
        for (w, id) in writes.iter().zip(&ids) {
            if let Some(s) = &w.snapshot {
                sqlx::query(
                    "INSERT INTO snapshots (doc_id, seq, state, state_vector, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (doc_id) DO UPDATE
                       SET seq = excluded.seq, state = excluded.state,
                           state_vector = excluded.state_vector, created_at = excluded.created_at
                     WHERE snapshots.seq <= excluded.seq",
                )
                .bind(id.as_str())
                .bind(seq_i64(s.seq))
                .bind(&s.state[..])
                .bind(&s.state_vector[..])
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
                sqlx::query("DELETE FROM updates WHERE doc_id = ?1 AND seq <= ?2")
                    .bind(id.as_str())
                    .bind(seq_i64(s.seq))
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                sqlx::query(
                    "UPDATE documents SET size_bytes =
                       (SELECT length(state) FROM snapshots WHERE doc_id = ?1)
                       + COALESCE((SELECT SUM(length(data)) FROM updates WHERE doc_id = ?1), 0)
                     WHERE id = ?1",
                )
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            }
        }
        tx.commit().await.map_err(err)?;
        Ok(rows)
    }

    async fn delete(&self, name: &str, row: Option<Uuid>) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM documents WHERE name = ?1 AND (?2 IS NULL OR id = ?2)")
            .bind(name)
            .bind(row.map(|r| r.to_string()))
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn meta(&self, name: &str) -> Result<Option<DocMeta>, StoreError> {
        let row = sqlx::query(&format!("{META} WHERE name = ?1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        row.as_ref().map(meta_of).transpose()
    }

    async fn list(&self) -> Result<Vec<DocMeta>, StoreError> {
        let rows = sqlx::query(&format!("{META} ORDER BY name"))
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows.iter().map(meta_of).collect()
    }
}
