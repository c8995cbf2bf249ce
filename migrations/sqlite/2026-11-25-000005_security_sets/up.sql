-- Who may View a document, as ERP5's catalog keeps it: documents with the same set of
-- allowed principals ("role:Manager", "user:alice", "group:ops") share one security set,
-- so a listing filters on a small integer column instead of joining a row per principal.
CREATE TABLE security_sets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The sorted principals joined by newlines: the set's identity.
    principals TEXT NOT NULL UNIQUE
);
CREATE TABLE security_set_principals (
    principal TEXT NOT NULL,
    set_id BIGINT NOT NULL REFERENCES security_sets(id) ON DELETE CASCADE,
    PRIMARY KEY (principal, set_id)
);
-- 0: not computed yet (filled at start-up from the documents' roles).
ALTER TABLE documents ADD COLUMN security_set BIGINT NOT NULL DEFAULT 0;
CREATE INDEX documents_security_set ON documents (security_set);
DROP TABLE document_viewers;

-- Catalog columns every query may filter or sort on.
CREATE INDEX documents_portal_type ON documents (portal_type, uid);
CREATE INDEX documents_module ON documents (module, uid);
CREATE INDEX documents_modification_date ON documents (modification_date);
CREATE INDEX documents_creation_date ON documents (creation_date);
CREATE INDEX documents_title ON documents (title);
CREATE INDEX documents_owner ON documents (owner);
