-- A database-wide counter of committed changes that pages depend on: every insert,
-- update or delete of documents, relations, local roles, workflow states and history,
-- users, groups and security sets, and every session update or delete (a logout, a
-- revocation; not a login) bumps it in the same transaction. A process that
-- caches a page tagged with the counter it read before rendering knows the page is
-- still true while the counter is unchanged, whichever process made the change.
CREATE TABLE change_generation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n BIGINT NOT NULL
);
INSERT INTO change_generation (id, n) VALUES (1, 0);
CREATE TRIGGER change_generation_documents_insert AFTER INSERT ON documents BEGIN
    UPDATE change_generation SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER change_generation_documents_update AFTER UPDATE ON documents BEGIN
    UPDATE change_generation SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER change_generation_documents_delete AFTER DELETE ON documents BEGIN
    UPDATE change_generation SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER change_generation_relations_insert AFTER INSERT ON relations BEGIN
    UPDATE change_generation SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER change_generation_relations_update AFTER UPDATE ON relations BEGIN
    UPDATE change_generation SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER change_generation_relations_delete AFTER DELETE ON relations BEGIN
    UPDATE change_generation SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER change_generation_local_roles_insert AFTER INSERT ON local_roles BEGIN
    UPDATE change_generation SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER change_generation_local_roles_update AFTER UPDATE ON local_roles BEGIN
    UPDATE change_generation SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER change_generation_local_roles_delete AFTER DELETE ON local_roles BEGIN
    UPDATE change_generation SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER change_generation_workflow_states_insert AFTER INSERT ON workflow_states BEGIN
    UPDATE change_generation SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER change_generation_workflow_states_update AFTER UPDATE ON workflow_states BEGIN
    UPDATE change_generation SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER change_generation_workflow_states_delete AFTER DELETE ON workflow_states BEGIN
    UPDATE change_generation SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER change_generation_workflow_history_insert AFTER INSERT ON workflow_history BEGIN
    UPDATE change_generation SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER change_generation_workflow_history_update AFTER UPDATE ON workflow_history BEGIN
    UPDATE change_generation SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER change_generation_workflow_history_delete AFTER DELETE ON workflow_history BEGIN
    UPDATE change_generation SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER change_generation_users_insert AFTER INSERT ON users BEGIN
    UPDATE change_generation SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER change_generation_users_update AFTER UPDATE ON users BEGIN
    UPDATE change_generation SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER change_generation_users_delete AFTER DELETE ON users BEGIN
    UPDATE change_generation SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER change_generation_user_groups_insert AFTER INSERT ON user_groups BEGIN
    UPDATE change_generation SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER change_generation_user_groups_update AFTER UPDATE ON user_groups BEGIN
    UPDATE change_generation SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER change_generation_user_groups_delete AFTER DELETE ON user_groups BEGIN
    UPDATE change_generation SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER change_generation_security_sets_insert AFTER INSERT ON security_sets BEGIN
    UPDATE change_generation SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER change_generation_security_sets_update AFTER UPDATE ON security_sets BEGIN
    UPDATE change_generation SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER change_generation_security_sets_delete AFTER DELETE ON security_sets BEGIN
    UPDATE change_generation SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER change_generation_security_set_principals_insert AFTER INSERT ON security_set_principals BEGIN
    UPDATE change_generation SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER change_generation_security_set_principals_update AFTER UPDATE ON security_set_principals BEGIN
    UPDATE change_generation SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER change_generation_security_set_principals_delete AFTER DELETE ON security_set_principals BEGIN
    UPDATE change_generation SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER change_generation_sessions_update AFTER UPDATE ON sessions BEGIN
    UPDATE change_generation SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER change_generation_sessions_delete AFTER DELETE ON sessions BEGIN
    UPDATE change_generation SET n = n + 1 WHERE id = 1;
END;
