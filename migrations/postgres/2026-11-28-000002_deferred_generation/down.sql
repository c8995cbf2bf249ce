DROP TRIGGER change_generation_documents ON documents;
CREATE TRIGGER change_generation_documents AFTER INSERT OR UPDATE OR DELETE ON documents
    FOR EACH STATEMENT EXECUTE FUNCTION change_generation_bump();
DROP TRIGGER change_generation_relations ON relations;
CREATE TRIGGER change_generation_relations AFTER INSERT OR UPDATE OR DELETE ON relations
    FOR EACH STATEMENT EXECUTE FUNCTION change_generation_bump();
DROP TRIGGER change_generation_local_roles ON local_roles;
CREATE TRIGGER change_generation_local_roles AFTER INSERT OR UPDATE OR DELETE ON local_roles
    FOR EACH STATEMENT EXECUTE FUNCTION change_generation_bump();
DROP TRIGGER change_generation_workflow_states ON workflow_states;
CREATE TRIGGER change_generation_workflow_states AFTER INSERT OR UPDATE OR DELETE ON workflow_states
    FOR EACH STATEMENT EXECUTE FUNCTION change_generation_bump();
DROP TRIGGER change_generation_workflow_history ON workflow_history;
CREATE TRIGGER change_generation_workflow_history AFTER INSERT OR UPDATE OR DELETE ON workflow_history
    FOR EACH STATEMENT EXECUTE FUNCTION change_generation_bump();
DROP TRIGGER change_generation_users ON users;
CREATE TRIGGER change_generation_users AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION change_generation_bump();
DROP TRIGGER change_generation_user_groups ON user_groups;
CREATE TRIGGER change_generation_user_groups AFTER INSERT OR UPDATE OR DELETE ON user_groups
    FOR EACH STATEMENT EXECUTE FUNCTION change_generation_bump();
DROP TRIGGER change_generation_security_sets ON security_sets;
CREATE TRIGGER change_generation_security_sets AFTER INSERT OR UPDATE OR DELETE ON security_sets
    FOR EACH STATEMENT EXECUTE FUNCTION change_generation_bump();
DROP TRIGGER change_generation_security_set_principals ON security_set_principals;
CREATE TRIGGER change_generation_security_set_principals AFTER INSERT OR UPDATE OR DELETE ON security_set_principals
    FOR EACH STATEMENT EXECUTE FUNCTION change_generation_bump();
DROP TRIGGER change_generation_sessions ON sessions;
CREATE TRIGGER change_generation_sessions AFTER UPDATE OR DELETE ON sessions
    FOR EACH STATEMENT EXECUTE FUNCTION change_generation_bump();
DROP FUNCTION change_generation_bump_once();
