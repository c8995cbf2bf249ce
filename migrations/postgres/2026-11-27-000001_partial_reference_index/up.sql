-- References are unique per portal type where a document has one; most documents have
-- none, and those need no entry in the index (bulk loads write one index less per row).
DROP INDEX documents_type_reference;
CREATE UNIQUE INDEX documents_type_reference ON documents (portal_type, reference)
    WHERE reference IS NOT NULL;
