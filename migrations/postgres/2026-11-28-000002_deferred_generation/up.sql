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
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['documents', 'relations', 'local_roles', 'workflow_states',
        'workflow_history', 'users', 'user_groups', 'security_sets', 'security_set_principals']
    LOOP
        EXECUTE format('DROP TRIGGER change_generation_%s ON %s', t, t);
        EXECUTE format('CREATE CONSTRAINT TRIGGER change_generation_%s '
            'AFTER INSERT OR UPDATE OR DELETE ON %s DEFERRABLE INITIALLY DEFERRED '
            'FOR EACH ROW EXECUTE FUNCTION change_generation_bump_once()', t, t);
    END LOOP;
END;
$$;
-- Sessions: updates and deletes only (a logout, a revocation; not a login).
DROP TRIGGER change_generation_sessions ON sessions;
CREATE CONSTRAINT TRIGGER change_generation_sessions AFTER UPDATE OR DELETE ON sessions
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION change_generation_bump_once();
