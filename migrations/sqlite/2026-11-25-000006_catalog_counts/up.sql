-- How many documents each (security set, portal type, module) holds, kept by triggers in
-- the transaction of every change: counts that need no other filter (a module's listing,
-- a portal type, everything) add up a few rows instead of counting a million.
CREATE TABLE catalog_counts (
    security_set BIGINT NOT NULL,
    portal_type TEXT NOT NULL,
    module TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (security_set, portal_type, module)
);
INSERT INTO catalog_counts (security_set, portal_type, module, n)
    SELECT security_set, portal_type, module, COUNT(*) FROM documents
    GROUP BY security_set, portal_type, module;

CREATE TRIGGER catalog_counts_insert AFTER INSERT ON documents BEGIN
    INSERT INTO catalog_counts (security_set, portal_type, module, n)
        VALUES (NEW.security_set, NEW.portal_type, NEW.module, 1)
        ON CONFLICT (security_set, portal_type, module) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER catalog_counts_delete AFTER DELETE ON documents BEGIN
    UPDATE catalog_counts SET n = n - 1 WHERE security_set = OLD.security_set
        AND portal_type = OLD.portal_type AND module = OLD.module;
END;
CREATE TRIGGER catalog_counts_update AFTER UPDATE OF security_set, portal_type, module ON documents
WHEN OLD.security_set <> NEW.security_set OR OLD.portal_type <> NEW.portal_type
    OR OLD.module <> NEW.module
BEGIN
    UPDATE catalog_counts SET n = n - 1 WHERE security_set = OLD.security_set
        AND portal_type = OLD.portal_type AND module = OLD.module;
    INSERT INTO catalog_counts (security_set, portal_type, module, n)
        VALUES (NEW.security_set, NEW.portal_type, NEW.module, 1)
        ON CONFLICT (security_set, portal_type, module) DO UPDATE SET n = n + 1;
END;
