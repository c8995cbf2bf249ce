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
-- PostgreSQL: once per statement (a bulk insert bumps it once). The row is locked until
-- the writing transaction commits, so concurrent writers queue on it at commit time.
CREATE FUNCTION change_generation_bump() RETURNS trigger AS $$
BEGIN
    UPDATE change_generation SET n = n + 1 WHERE id = 1;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER change_generation_documents AFTER INSERT OR UPDATE OR DELETE ON documents
    FOR EACH STATEMENT EXECUTE FUNCTION change_generation_bump();
CREATE TRIGGER change_generation_relations AFTER INSERT OR UPDATE OR DELETE ON relations
    FOR EACH STATEMENT EXECUTE FUNCTION change_generation_bump();
CREATE TRIGGER change_generation_local_roles AFTER INSERT OR UPDATE OR DELETE ON local_roles
    FOR EACH STATEMENT EXECUTE FUNCTION change_generation_bump();
CREATE TRIGGER change_generation_workflow_states AFTER INSERT OR UPDATE OR DELETE ON workflow_states
    FOR EACH STATEMENT EXECUTE FUNCTION change_generation_bump();
CREATE TRIGGER change_generation_workflow_history AFTER INSERT OR UPDATE OR DELETE ON workflow_history
    FOR EACH STATEMENT EXECUTE FUNCTION change_generation_bump();
CREATE TRIGGER change_generation_users AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION change_generation_bump();
CREATE TRIGGER change_generation_user_groups AFTER INSERT OR UPDATE OR DELETE ON user_groups
    FOR EACH STATEMENT EXECUTE FUNCTION change_generation_bump();
CREATE TRIGGER change_generation_security_sets AFTER INSERT OR UPDATE OR DELETE ON security_sets
    FOR EACH STATEMENT EXECUTE FUNCTION change_generation_bump();
CREATE TRIGGER change_generation_security_set_principals AFTER INSERT OR UPDATE OR DELETE ON security_set_principals
    FOR EACH STATEMENT EXECUTE FUNCTION change_generation_bump();
CREATE TRIGGER change_generation_sessions AFTER UPDATE OR DELETE ON sessions
    FOR EACH STATEMENT EXECUTE FUNCTION change_generation_bump();
