-- Documents: every object of the portal (the portal root, module folders, documents and
-- sub-documents) is one row; containment is parent_uid, bulk payloads live elsewhere.
CREATE TABLE documents (
    uid BIGSERIAL PRIMARY KEY,
    parent_uid BIGINT REFERENCES documents(uid) ON DELETE CASCADE,
    path TEXT NOT NULL UNIQUE,
    id TEXT NOT NULL,
    module TEXT NOT NULL,
    portal_type TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    reference TEXT,
    description TEXT NOT NULL DEFAULT '',
    owner TEXT NOT NULL DEFAULT '',
    creation_date TIMESTAMP NOT NULL,
    modification_date TIMESTAMP NOT NULL,
    serial BIGINT NOT NULL DEFAULT 1,
    properties TEXT NOT NULL DEFAULT '{}',
    next_child_id BIGINT NOT NULL DEFAULT 0,
    UNIQUE (parent_uid, id)
);
CREATE UNIQUE INDEX documents_type_reference ON documents (portal_type, reference);
CREATE INDEX documents_parent ON documents (parent_uid, uid);

CREATE TABLE relations (
    source_uid BIGINT NOT NULL REFERENCES documents(uid) ON DELETE CASCADE,
    name TEXT NOT NULL,
    target_uid BIGINT NOT NULL REFERENCES documents(uid) ON DELETE CASCADE,
    position INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (source_uid, name, target_uid)
);
CREATE INDEX relations_target ON relations (target_uid, name);

CREATE TABLE users (
    login TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT NOT NULL,
    roles TEXT NOT NULL DEFAULT '',
    creation_date TIMESTAMP NOT NULL
);
