-- Documents whose full-text entry must be (re)written: filled in the transaction of the
-- change, consumed by the single index writer (the index is derived data).
CREATE TABLE fulltext_outbox (
    id BIGSERIAL PRIMARY KEY,
    uid BIGINT NOT NULL
);
