DROP TRIGGER catalog_counts_update ON documents;
DROP TRIGGER catalog_counts_insert ON documents;
DROP FUNCTION catalog_counts_track();
DROP TABLE catalog_counts;
