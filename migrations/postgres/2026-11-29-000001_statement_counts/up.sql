-- catalog_counts followed inserts and deletes row by row: a bulk load of 10,000 documents
-- updated the same counter row 10,000 times in its transaction (half of the load's time).
-- Statement triggers with transition tables now add up each statement's rows first: one
-- upsert per (security set, portal type, module) and statement. Updates that move a
-- document between counters stay row triggers (transition tables cannot be limited to
-- the columns that matter, and most updates change none of them).
DROP TRIGGER catalog_counts_insert ON documents;

CREATE FUNCTION catalog_counts_inserted() RETURNS trigger AS $$
BEGIN
    INSERT INTO catalog_counts (security_set, portal_type, module, n)
        SELECT security_set, portal_type, module, COUNT(*) FROM inserted_rows
        GROUP BY security_set, portal_type, module
        ON CONFLICT (security_set, portal_type, module) DO UPDATE
        SET n = catalog_counts.n + excluded.n;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION catalog_counts_deleted() RETURNS trigger AS $$
BEGIN
    UPDATE catalog_counts AS c SET n = c.n - d.n
        FROM (SELECT security_set, portal_type, module, COUNT(*) AS n FROM deleted_rows
              GROUP BY security_set, portal_type, module) AS d
        WHERE c.security_set = d.security_set AND c.portal_type = d.portal_type
            AND c.module = d.module;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER catalog_counts_insert AFTER INSERT ON documents
    REFERENCING NEW TABLE AS inserted_rows
    FOR EACH STATEMENT EXECUTE FUNCTION catalog_counts_inserted();
CREATE TRIGGER catalog_counts_delete AFTER DELETE ON documents
    REFERENCING OLD TABLE AS deleted_rows
    FOR EACH STATEMENT EXECUTE FUNCTION catalog_counts_deleted();
