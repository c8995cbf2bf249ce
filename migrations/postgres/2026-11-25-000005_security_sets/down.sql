DROP INDEX documents_owner;
DROP INDEX documents_title;
DROP INDEX documents_creation_date;
DROP INDEX documents_modification_date;
DROP INDEX documents_module;
DROP INDEX documents_portal_type;
CREATE TABLE document_viewers (
    uid BIGINT NOT NULL REFERENCES documents(uid) ON DELETE CASCADE,
    principal TEXT NOT NULL,
    PRIMARY KEY (uid, principal)
);
CREATE INDEX document_viewers_principal ON document_viewers (principal, uid);
DROP INDEX documents_security_set;
ALTER TABLE documents DROP COLUMN security_set;
DROP TABLE security_set_principals;
DROP TABLE security_sets;
