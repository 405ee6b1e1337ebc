-- Documents, their append-only update log and their latest snapshot.
-- Loading a document = its snapshot (if any) + every log entry with seq > snapshot.seq, in order.
-- Timestamps are milliseconds since the Unix epoch (SQLite has no timestamp type).

CREATE TABLE documents (
    id          TEXT PRIMARY KEY,           -- UUID, hyphenated
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    -- Bytes stored for the document: its snapshot plus the log after it.
    size_bytes  INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE updates (
    doc_id      TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    data        BLOB NOT NULL,
    origin      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (doc_id, seq)
) WITHOUT ROWID;

CREATE TABLE snapshots (
    doc_id        TEXT PRIMARY KEY REFERENCES documents (id) ON DELETE CASCADE,
    seq           INTEGER NOT NULL,
    state         BLOB NOT NULL,
    state_vector  BLOB NOT NULL,
    created_at    INTEGER NOT NULL
);
