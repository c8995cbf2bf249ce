DROP TABLE fulltext_outbox;
