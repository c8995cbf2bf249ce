DROP TRIGGER catalog_counts_insert ON documents;
DROP TRIGGER catalog_counts_delete ON documents;
DROP FUNCTION catalog_counts_inserted();
DROP FUNCTION catalog_counts_deleted();
CREATE TRIGGER catalog_counts_insert AFTER INSERT OR DELETE ON documents
    FOR EACH ROW EXECUTE FUNCTION catalog_counts_track();
