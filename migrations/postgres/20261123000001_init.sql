-- Documents, their append-only update log and their latest snapshot.
-- Loading a document = its snapshot (if any) + every log entry with seq > snapshot.seq, in order.

CREATE TABLE documents (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Bytes stored for the document: its snapshot plus the log after it.
    size_bytes  BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE updates (
    doc_id      UUID NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    seq         BIGINT NOT NULL,
    data        BYTEA NOT NULL,
    origin      TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (doc_id, seq)
);

CREATE TABLE snapshots (
    doc_id        UUID PRIMARY KEY REFERENCES documents (id) ON DELETE CASCADE,
    seq           BIGINT NOT NULL,
    state         BYTEA NOT NULL,
    state_vector  BYTEA NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
