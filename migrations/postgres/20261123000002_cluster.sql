-- Cluster mode: several nodes append to one document's log. Each numbers its own entries,
-- so a row is identified by (document, node, seq); single-node servers write node ''.
-- A snapshot remembers which node's numbering its seq refers to.

ALTER TABLE updates ADD COLUMN node TEXT NOT NULL DEFAULT '';
ALTER TABLE updates DROP CONSTRAINT updates_pkey;
ALTER TABLE updates ADD PRIMARY KEY (doc_id, node, seq);

ALTER TABLE snapshots ADD COLUMN node TEXT NOT NULL DEFAULT '';
