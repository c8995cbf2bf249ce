-- One full-text index per server data directory (nodes on one PostgreSQL database each
-- keep their own): every change is queued once for each registered index, and each index
-- writer takes only its own rows. Rows queued before this version belong to no index and
-- are dropped; each index registers itself (and is rebuilt once) at its next start.
CREATE TABLE fulltext_indexes (
    id TEXT PRIMARY KEY NOT NULL,
    -- Refreshed by the index's writer; an index not seen for a week is forgotten.
    last_seen TIMESTAMP NOT NULL
);
DELETE FROM fulltext_outbox;
ALTER TABLE fulltext_outbox ADD COLUMN index_id TEXT NOT NULL DEFAULT '';
CREATE INDEX fulltext_outbox_index ON fulltext_outbox (index_id, id);
