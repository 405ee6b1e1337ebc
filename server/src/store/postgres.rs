//! The production store: Postgres through sqlx. Timestamps are `timestamptz`, ids `uuid`,
//! updates `bytea`; every group commit is one transaction.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use sqlx::{Acquire, Postgres, Row};
use uuid::Uuid;

use super::{
    assemble, classify, deleted_under, documents_of, ids_in_order, seq_i64, seq_u64, Append,
    DocMeta, DocWrite, LoadRow, LogEntry, Snapshot, Store, StoreError, StoredDoc, INSERT_CHUNK,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// Postgres connection pool holding Tandem's tables.
pub struct PgStore {
    pool: PgPool,
    /// This node's id in cluster mode (its log rows are tagged with it); `""` alone.
    node: String,
}

/// Postgres SQLSTATEs that mean "not now": connection exceptions (08), operator
/// intervention such as a shutdown (57P0x), insufficient resources (53, a full disk
/// among them), serialization failures and deadlocks, and a read-only transaction
/// (25006: connected to a standby, as during a failover).
fn transient(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("57P0")
        || code.starts_with("53")
        || code == "40001"
        || code == "40P01"
        || code == READ_ONLY
}

fn err(e: sqlx::Error) -> StoreError {
    classify(e, transient)
}

/// SQLSTATE of a write on a server that only reads: a standby.
const READ_ONLY: &str = "25006";

/// Takes `conn` out of the pool when `result` says its server only reads. After a
/// failover the connections still open lead to the old primary, now a standby (or to a
/// proxy that still routes them there), while a new connection reaches the new primary.
/// Pooled again, such a connection refused every later write until its lifetime ran out
/// (30 minutes), long after the database was writable again.
fn discard_if_read_only<T>(conn: &mut PoolConnection<Postgres>, result: &Result<T, StoreError>) {
    if let Err(StoreError::Unavailable(sqlx::Error::Database(db))) = result {
        if db.code().as_deref() == Some(READ_ONLY) {
            conn.close_on_drop();
        }
    }
}

impl PgStore {
    /// Connects to `url`. Acquiring a connection gives up after 3 s, so during an outage
    /// callers get an error they can retry instead of hanging.
    pub async fn connect(url: &str, node: Option<Uuid>) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(3))
            .connect(url)
            .await
            .map_err(err)?;
        Ok(Self {
            pool,
            node: node.map(|n| n.to_string()).unwrap_or_default(),
        })
    }
}

/// The snapshot and every log row it does not hold: the snapshotting node's rows after
/// its seq, and every row of other nodes (each node numbers its own rows).
const LOAD: &str = "
WITH d AS (SELECT id FROM documents WHERE name = $1),
     s AS (SELECT node, seq, state, state_vector FROM snapshots WHERE doc_id = (SELECT id FROM d))
SELECT 0::int4 AS kind, node, seq, state AS data, state_vector, (SELECT id FROM d)::text AS doc
  FROM s
UNION ALL
SELECT 1::int4, u.node, u.seq, u.data, NULL::bytea, u.doc_id::text FROM updates u
 WHERE u.doc_id = (SELECT id FROM d)
   AND NOT (u.node = COALESCE((SELECT node FROM s), '')
            AND u.seq <= COALESCE((SELECT seq FROM s), 0))
ORDER BY 1, 3, 2";

/// This node's rows after `$2` (readers resume in the numbering of the node they read).
const LOG_AFTER: &str = "
WITH d AS (SELECT id FROM documents WHERE name = $1)
SELECT 0::int4 AS kind, node, seq, ''::bytea AS data, NULL::bytea AS state_vector,
       doc_id::text AS doc
  FROM snapshots WHERE doc_id = (SELECT id FROM d) AND node = $3
UNION ALL
SELECT 1::int4, node, seq, data, NULL::bytea, doc_id::text FROM updates
 WHERE doc_id = (SELECT id FROM d) AND node = $3 AND seq > $2
ORDER BY 1, 3";

const META: &str = "SELECT id, name, created_at, updated_at, size_bytes FROM documents";

fn meta_of(row: &sqlx::postgres::PgRow) -> Result<DocMeta, StoreError> {
    Ok(DocMeta {
        id: row.try_get("id").map_err(err)?,
        name: row.try_get("name").map_err(err)?,
        created_at: row.try_get("created_at").map_err(err)?,
        updated_at: row.try_get("updated_at").map_err(err)?,
        size_bytes: seq_u64("documents", row.try_get("size_bytes").map_err(err)?)?,
    })
}

impl PgStore {
    /// Cluster mode: another node may have stored a snapshot holding updates this node
    /// never received (their log rows are gone). Merge it into ours, under a per-document
    /// advisory lock so two nodes compacting at once cannot overwrite each other's.
    async fn merge_stored(
        &self,
        tx: &mut sqlx::Transaction<'_, Postgres>,
        id: Uuid,
        ours: &Snapshot,
    ) -> Result<Snapshot, StoreError> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0))")
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(err)?;
        let stored: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT state FROM snapshots WHERE doc_id = $1")
                .bind(id)
                .fetch_optional(&mut **tx)
                .await
                .map_err(err)?;
        let Some(stored) = stored else {
            return Ok(ours.clone());
        };
        let doc = tandem_engine::Document::new("merge");
        for state in [&stored[..], &ours.state[..]] {
            doc.apply_update_v1(state)
                .map_err(|e| StoreError::Corrupt {
                    table: "snapshots",
                    reason: format!("cannot merge snapshots: {e}"),
                })?;
        }
        Ok(Snapshot {
            seq: ours.seq,
            state: doc.snapshot_v1().into(),
            state_vector: doc.state_vector_v1().into(),
            covers: ours.covers.clone(),
        })
    }

    /// One group commit as one transaction on `conn`.
    async fn commit_on(
        &self,
        conn: &mut PoolConnection<Postgres>,
        writes: &[DocWrite],
    ) -> Result<Vec<Uuid>, StoreError> {
        let mut tx = conn.begin().await.map_err(err)?;
        // Each statement is a round trip to the database, so the batch is written in a
        // fixed number of them (arrays through UNNEST), not two per document.
        let ids = upsert_documents(&mut tx, writes).await?;
        if let Some(deleted) = deleted_under(writes, &ids) {
            // The upsert brought them back: undo it, and with it the whole commit.
            tx.rollback().await.map_err(err)?;
            return Err(deleted);
        }
        insert_log(&mut tx, writes, &ids, &self.node).await?;
        for (w, &id) in writes.iter().zip(&ids) {
            if let Some(s) = &w.snapshot {
                let merged;
                let s = if self.node.is_empty() {
                    s
                } else {
                    merged = self.merge_stored(&mut tx, id, s).await?;
                    &merged
                };
                sqlx::query(
                    "INSERT INTO snapshots (doc_id, node, seq, state, state_vector)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (doc_id) DO UPDATE
                       SET node = EXCLUDED.node, seq = EXCLUDED.seq, state = EXCLUDED.state,
                           state_vector = EXCLUDED.state_vector, created_at = now()
                     WHERE snapshots.node <> EXCLUDED.node OR snapshots.seq <= EXCLUDED.seq",
                )
                .bind(id)
                .bind(&self.node)
                .bind(seq_i64(s.seq))
                .bind(&s.state[..])
                .bind(&s.state_vector[..])
                .execute(&mut *tx)
                .await
                .map_err(err)?;
                let own = std::iter::once((self.node.as_str(), s.seq));
                let covered = s.covers.iter().map(|(n, seq)| (n.as_str(), *seq));
                for (node, upto) in own.chain(covered) {
                    sqlx::query(
                        "DELETE FROM updates WHERE doc_id = $1 AND node = $2 AND seq <= $3",
                    )
                    .bind(id)
                    .bind(node)
                    .bind(seq_i64(upto))
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                }
                sqlx::query(
                    "UPDATE documents SET size_bytes =
                       (SELECT octet_length(state) FROM snapshots WHERE doc_id = $1)
                       + COALESCE((SELECT SUM(octet_length(data)) FROM updates WHERE doc_id = $1), 0)::bigint
                     WHERE id = $1",
                )
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            }
        }
        tx.commit().await.map_err(err)?;
        Ok(ids)
    }
}

/// Creates or touches the documents of `writes` (size grows by what they append) in one
/// statement; returns their ids in the order of `writes`.
async fn upsert_documents(
    conn: &mut PgConnection,
    writes: &[DocWrite],
) -> Result<Vec<Uuid>, StoreError> {
    let docs = documents_of(writes);
    let fresh: Vec<Uuid> = docs.iter().map(|_| Uuid::new_v4()).collect();
    let names: Vec<&str> = docs.iter().map(|(name, _)| *name).collect();
    let growth: Vec<i64> = docs.iter().map(|(_, growth)| *growth).collect();
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "INSERT INTO documents (id, name, size_bytes)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::bigint[])
         ON CONFLICT (name) DO UPDATE
           SET updated_at = now(), size_bytes = documents.size_bytes + EXCLUDED.size_bytes
         RETURNING id, name",
    )
    .bind(&fresh)
    .bind(&names)
    .bind(&growth)
    .fetch_all(&mut *conn)
    .await
    .map_err(err)?;
    ids_in_order(
        writes,
        &rows.into_iter().map(|(id, name)| (name, id)).collect(),
    )
}

/// Appends the log entries of every write, `ids[i]` being the id of `writes[i]`, tagged
/// with `node`: one statement per chunk of rows whatever the number of documents.
async fn insert_log(
    conn: &mut PgConnection,
    writes: &[DocWrite],
    ids: &[Uuid],
    node: &str,
) -> Result<(), StoreError> {
    let rows: Vec<(Uuid, &Append)> = writes
        .iter()
        .zip(ids)
        .flat_map(|(w, &id)| w.appends.iter().map(move |a| (id, a)))
        .collect();
    for chunk in rows.chunks(INSERT_CHUNK) {
        let doc_ids: Vec<Uuid> = chunk.iter().map(|(id, _)| *id).collect();
        let seqs: Vec<i64> = chunk.iter().map(|(_, a)| seq_i64(a.seq)).collect();
        let data: Vec<&[u8]> = chunk.iter().map(|(_, a)| &a.update[..]).collect();
        let origins: Vec<&str> = chunk.iter().map(|(_, a)| &*a.origin).collect();
        sqlx::query(
            "INSERT INTO updates (doc_id, node, seq, data, origin)
             SELECT d, $2, s, b, o FROM UNNEST($1::uuid[], $3::bigint[], $4::bytea[], $5::text[])
               AS t(d, s, b, o)
             ON CONFLICT (doc_id, node, seq) DO NOTHING",
        )
        .bind(&doc_ids)
        .bind(node)
        .bind(&seqs)
        .bind(&data)
        .bind(&origins)
        .execute(&mut *conn)
        .await
        .map_err(err)?;
    }
    Ok(())
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
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
        assemble(rows, &self.node).map(Some)
    }

    async fn log_after(&self, name: &str, after: u64) -> Result<Option<Vec<LogEntry>>, StoreError> {
        let rows: Vec<LoadRow> = sqlx::query_as(LOG_AFTER)
            .bind(name)
            .bind(seq_i64(after))
            .bind(&self.node)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        let doc = assemble(rows, &self.node)?;
        Ok(super::contiguous_after(doc, after))
    }

    async fn commit(&self, writes: &[DocWrite]) -> Result<Vec<Uuid>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(err)?;
        let result = self.commit_on(&mut conn, writes).await;
        discard_if_read_only(&mut conn, &result);
        result
    }

    async fn delete(&self, name: &str, row: Option<Uuid>) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(err)?;
        let result =
            sqlx::query("DELETE FROM documents WHERE name = $1 AND ($2::uuid IS NULL OR id = $2)")
                .bind(name)
                .bind(row)
                .execute(&mut *conn)
                .await
                .map(|done| done.rows_affected() > 0)
                .map_err(err);
        discard_if_read_only(&mut conn, &result);
        result
    }

    async fn meta(&self, name: &str) -> Result<Option<DocMeta>, StoreError> {
        let row = sqlx::query(&format!("{META} WHERE name = $1"))
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
