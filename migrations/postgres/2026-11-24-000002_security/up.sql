-- Security and workflows: local roles, the precomputed View set, workflow states and
-- history, groups, sessions, API tokens and login throttling.
ALTER TABLE documents ADD COLUMN block_acquisition BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE local_roles (
    uid BIGINT NOT NULL REFERENCES documents(uid) ON DELETE CASCADE,
    principal TEXT NOT NULL,
    role TEXT NOT NULL,
    PRIMARY KEY (uid, principal, role)
);

-- Principals ("role:Manager", "user:alice", "group:ops") allowed to View each document,
-- so listings filter in SQL before LIMIT (Zope's allowedRolesAndUsers).
CREATE TABLE document_viewers (
    uid BIGINT NOT NULL REFERENCES documents(uid) ON DELETE CASCADE,
    principal TEXT NOT NULL,
    PRIMARY KEY (uid, principal)
);
CREATE INDEX document_viewers_principal ON document_viewers (principal, uid);

CREATE TABLE workflow_states (
    uid BIGINT NOT NULL REFERENCES documents(uid) ON DELETE CASCADE,
    workflow TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (uid, workflow)
);
CREATE INDEX workflow_states_state ON workflow_states (workflow, state);

CREATE TABLE workflow_history (
    id BIGSERIAL PRIMARY KEY,
    uid BIGINT NOT NULL REFERENCES documents(uid) ON DELETE CASCADE,
    workflow TEXT NOT NULL,
    transition TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    actor TEXT NOT NULL,
    time TIMESTAMP NOT NULL,
    comment TEXT NOT NULL DEFAULT '',
    variables TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX workflow_history_uid ON workflow_history (uid, id);

CREATE TABLE user_groups (
    id TEXT PRIMARY KEY NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    roles TEXT NOT NULL DEFAULT ''
);
ALTER TABLE users ADD COLUMN group_ids TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN person_uid BIGINT REFERENCES documents(uid) ON DELETE SET NULL;

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY NOT NULL,
    login TEXT NOT NULL REFERENCES users(login) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    creation_date TIMESTAMP NOT NULL,
    expiration_date TIMESTAMP NOT NULL,
    revoked BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX sessions_login ON sessions (login);

CREATE TABLE api_tokens (
    id BIGSERIAL PRIMARY KEY,
    login TEXT NOT NULL REFERENCES users(login) ON DELETE CASCADE,
    name TEXT NOT NULL DEFAULT '',
    token_hash TEXT NOT NULL UNIQUE,
    creation_date TIMESTAMP NOT NULL,
    last_used TIMESTAMP,
    revoked BOOLEAN NOT NULL DEFAULT FALSE
);

-- Failed logins per key ("login:alice", "addr:192.0.2.1") for growing delays.
CREATE TABLE login_failures (
    key TEXT PRIMARY KEY NOT NULL,
    failures INTEGER NOT NULL,
    last_failure TIMESTAMP NOT NULL
);
