-- The change generation is bumped once per writing transaction, at its commit (deferred
-- constraint triggers run just before it), instead of at the transaction's first write:
-- the row lock on change_generation is then held for the commit only, so concurrent
-- writers no longer wait for each other's whole transaction. The bump is still in the
-- transaction of the change, so a reader sees both or neither.
CREATE FUNCTION change_generation_bump_once() RETURNS trigger AS $$
BEGIN
    IF current_setting('wendelin.generation_bumped', true) IS DISTINCT FROM txid_current()::text THEN
        UPDATE change_generation SET n = n + 1 WHERE id = 1;
        PERFORM set_config('wendelin.generation_bumped', txid_current()::text, true);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER change_generation_documents ON documents;
CREATE CONSTRAINT TRIGGER change_generation_documents AFTER INSERT OR UPDATE OR DELETE ON documents
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION change_generation_bump_once();
DROP TRIGGER change_generation_relations ON relations;
CREATE CONSTRAINT TRIGGER change_generation_relations AFTER INSERT OR UPDATE OR DELETE ON relations
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION change_generation_bump_once();
DROP TRIGGER change_generation_local_roles ON local_roles;
CREATE CONSTRAINT TRIGGER change_generation_local_roles AFTER INSERT OR UPDATE OR DELETE ON local_roles
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION change_generation_bump_once();
DROP TRIGGER change_generation_workflow_states ON workflow_states;
CREATE CONSTRAINT TRIGGER change_generation_workflow_states AFTER INSERT OR UPDATE OR DELETE ON workflow_states
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION change_generation_bump_once();
DROP TRIGGER change_generation_workflow_history ON workflow_history;
CREATE CONSTRAINT TRIGGER change_generation_workflow_history AFTER INSERT OR UPDATE OR DELETE ON workflow_history
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION change_generation_bump_once();
DROP TRIGGER change_generation_users ON users;
CREATE CONSTRAINT TRIGGER change_generation_users AFTER INSERT OR UPDATE OR DELETE ON users
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION change_generation_bump_once();
DROP TRIGGER change_generation_user_groups ON user_groups;
CREATE CONSTRAINT TRIGGER change_generation_user_groups AFTER INSERT OR UPDATE OR DELETE ON user_groups
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION change_generation_bump_once();
DROP TRIGGER change_generation_security_sets ON security_sets;
CREATE CONSTRAINT TRIGGER change_generation_security_sets AFTER INSERT OR UPDATE OR DELETE ON security_sets
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION change_generation_bump_once();
DROP TRIGGER change_generation_security_set_principals ON security_set_principals;
CREATE CONSTRAINT TRIGGER change_generation_security_set_principals AFTER INSERT OR UPDATE OR DELETE ON security_set_principals
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION change_generation_bump_once();
DROP TRIGGER change_generation_sessions ON sessions;
CREATE CONSTRAINT TRIGGER change_generation_sessions AFTER UPDATE OR DELETE ON sessions
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION change_generation_bump_once();
