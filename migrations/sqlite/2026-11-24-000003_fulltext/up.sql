-- Documents whose full-text entry must be (re)written: filled in the transaction of the
-- change, consumed by the single index writer (the index is derived data).
CREATE TABLE fulltext_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uid BIGINT NOT NULL
);
