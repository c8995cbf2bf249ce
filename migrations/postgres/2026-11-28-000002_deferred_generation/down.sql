DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['documents', 'relations', 'local_roles', 'workflow_states',
        'workflow_history', 'users', 'user_groups', 'security_sets', 'security_set_principals']
    LOOP
        EXECUTE format('DROP TRIGGER change_generation_%s ON %s', t, t);
        EXECUTE format('CREATE TRIGGER change_generation_%s '
            'AFTER INSERT OR UPDATE OR DELETE ON %s '
            'FOR EACH STATEMENT EXECUTE FUNCTION change_generation_bump()', t, t);
    END LOOP;
END;
$$;
DROP TRIGGER change_generation_sessions ON sessions;
CREATE TRIGGER change_generation_sessions AFTER UPDATE OR DELETE ON sessions
    FOR EACH STATEMENT EXECUTE FUNCTION change_generation_bump();
DROP FUNCTION change_generation_bump_once();
