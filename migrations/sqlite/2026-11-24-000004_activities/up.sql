-- Activities: method calls queued for background workers on every node.
CREATE TABLE activities (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL,
    method TEXT NOT NULL,
    args TEXT NOT NULL DEFAULT '{}',
    actor TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    tag TEXT,
    not_before TIMESTAMP NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued',
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 5,
    claimed_by TEXT,
    claimed_at TIMESTAMP,
    last_error TEXT,
    creation_date TIMESTAMP NOT NULL
);
CREATE INDEX activities_ready ON activities (state, priority, not_before, id);

-- One row per serialization tag being worked on: claiming inserts it, finishing deletes it.
CREATE TABLE activity_tags (
    tag TEXT PRIMARY KEY NOT NULL,
    activity_id BIGINT NOT NULL,
    claimed_at TIMESTAMP NOT NULL
);

-- Every run, for operators (and for tests that check runs never overlap).
CREATE TABLE activity_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    activity_id BIGINT NOT NULL,
    tag TEXT,
    worker TEXT NOT NULL,
    started TIMESTAMP NOT NULL,
    finished TIMESTAMP NOT NULL,
    ok BOOLEAN NOT NULL,
    error TEXT
);
