-- PostgreSQL only: catalog_counts follows inserts and deletes per statement there. (SQLite
-- has no statement triggers; its bulk loads suspend the row triggers instead.)
SELECT 1;
