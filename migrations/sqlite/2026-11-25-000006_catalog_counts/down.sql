DROP TRIGGER catalog_counts_update;
DROP TRIGGER catalog_counts_delete;
DROP TRIGGER catalog_counts_insert;
DROP TABLE catalog_counts;
