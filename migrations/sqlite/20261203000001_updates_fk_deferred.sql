-- The log's reference to its document is checked at COMMIT instead of after each row.
--
-- Why: a group commit appends every document's new entries in one multi-row INSERT inside
-- a transaction. While any row of such a statement could fail a check on its own, SQLite
-- keeps a statement journal (a copy of every page the statement changes, so it can undo
-- just that statement), and past 64 KiB it spills that journal to a temporary file:
-- opened, written, unlinked and closed on every commit. With the reference checked at
-- COMMIT, and the INSERT written as INSERT OR IGNORE (the same as its former ON CONFLICT
-- DO NOTHING, since no column is ever bound to NULL), no row can fail on its own, and
-- SQLite keeps no statement journal for it. A missing document still fails the commit.
--
-- SQLite cannot change a constraint in place, so the table is rebuilt (nothing refers to
-- it; dropping a child table fires no foreign-key action). Entries whose document is gone
-- are left behind: they could only be there if someone deleted documents with foreign keys
-- off (the sqlite3 shell's default), no load ever reads them, and copying them would fail
-- the deferred check at this migration's COMMIT, and with it the server's start.

CREATE TABLE updates_new (
    doc_id      TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE
                DEFERRABLE INITIALLY DEFERRED,
    seq         INTEGER NOT NULL,
    data        BLOB NOT NULL,
    origin      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (doc_id, seq)
) WITHOUT ROWID;

INSERT INTO updates_new (doc_id, seq, data, origin, created_at)
SELECT doc_id, seq, data, origin, created_at FROM updates
 WHERE doc_id IN (SELECT id FROM documents);

DROP TABLE updates;

ALTER TABLE updates_new RENAME TO updates;
