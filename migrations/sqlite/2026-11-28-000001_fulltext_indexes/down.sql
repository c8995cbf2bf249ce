DROP INDEX fulltext_outbox_index;
ALTER TABLE fulltext_outbox DROP COLUMN index_id;
DROP TABLE fulltext_indexes;
