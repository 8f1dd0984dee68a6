-- The app role's privileges, applied by Migrate after every migration (it is
-- idempotent, so pointing idflow at a new app role only takes a migrate).
-- The role's name arrives in the transaction-local setting idflow.app_role.
-- Each table gets only what the store does with it:
--
--   users                SELECT, INSERT, UPDATE, DELETE (TouchUser upserts; erasure deletes)
--   apps, agents, sessions, workflows, documents, runs
--                        SELECT, INSERT, UPDATE, DELETE
--   messages, workflow_versions, facts
--                        SELECT, INSERT, DELETE         (never edited)
--   document_blobs       SELECT, INSERT, UPDATE, DELETE (PutBlob replaces)
--   connections, browser_sessions, personal_tokens
--                        SELECT, INSERT, UPDATE, DELETE
--   connect_states       SELECT, INSERT, DELETE         (taken = deleted)
--   oauth_clients, oauth_grants, oauth_refresh_tokens
--                        SELECT, INSERT, UPDATE, DELETE
--   oauth_codes          SELECT, INSERT, DELETE         (redeemed = deleted)
--   model_usage          SELECT, INSERT, UPDATE, DELETE (RecordUsage upserts; erasure deletes)
--   run_events           SELECT, INSERT, DELETE         (append-only but for erasure)
--   audit_events         SELECT, INSERT                 (append-only: no edit, no delete)
--   audit_chain_head     SELECT, UPDATE                 (the one head row)
--   idflow_stats()       EXECUTE
--   idflow_stranded_runs(integer)
--                        EXECUTE
--   idflow_audit_links() EXECUTE
--   idflow_audit_erase(text, text)
--                        EXECUTE                        (erasure: 0026_erasure.sql)
--   user_states, directory_users, directory_groups, directory_members
--                        SELECT, INSERT, UPDATE, DELETE (SCIM; 0020_directory.sql)
--   idflow_disabled_users()
--                        EXECUTE
--
-- River (durable jobs) needs, on the tables its own migrations create:
--
--   river_job, river_leader, river_queue, river_notification
--                        SELECT, INSERT, UPDATE, DELETE
--   river_migration      SELECT
--   river_job_id_seq, river_notification_id_seq
--                        USAGE, SELECT
--
-- plus EXECUTE on its functions and USAGE on its enum type, which
-- PostgreSQL grants to PUBLIC by default. River's periodic REINDEX needs
-- table ownership, so idflow turns River's reindexer off and leaves
-- reindexing to the owner (docs/POSTGRES.md).
DO $$
DECLARE
    app text := current_setting('idflow.app_role');
    t text;
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', current_schema(), app);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON users TO %I', app);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON model_usage TO %I', app);
    FOREACH t IN ARRAY ARRAY['apps', 'agents', 'sessions', 'workflows', 'documents', 'runs', 'document_blobs',
                             'connections', 'browser_sessions', 'personal_tokens'] LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO %I', t, app);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['messages', 'workflow_versions', 'facts', 'connect_states'] LOOP
        EXECUTE format('GRANT SELECT, INSERT, DELETE ON %I TO %I', t, app);
    END LOOP;
    EXECUTE format('GRANT SELECT, INSERT ON audit_events TO %I', app);
    EXECUTE format('GRANT SELECT, INSERT, DELETE ON run_events TO %I', app);
    EXECUTE format('GRANT SELECT, UPDATE ON audit_chain_head TO %I', app);
    FOREACH t IN ARRAY ARRAY['oauth_clients', 'oauth_grants', 'oauth_refresh_tokens'] LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO %I', t, app);
    END LOOP;
    EXECUTE format('GRANT SELECT, INSERT, DELETE ON oauth_codes TO %I', app);
    EXECUTE format('GRANT EXECUTE ON FUNCTION idflow_stats() TO %I', app);
    EXECUTE format('GRANT EXECUTE ON FUNCTION idflow_stranded_runs(integer) TO %I', app);
    EXECUTE format('GRANT EXECUTE ON FUNCTION idflow_audit_links(bigint, integer) TO %I', app);
    EXECUTE format('GRANT EXECUTE ON FUNCTION idflow_audit_erase(text, text) TO %I', app);
    FOREACH t IN ARRAY ARRAY['user_states', 'directory_users', 'directory_groups', 'directory_members'] LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO %I', t, app);
    END LOOP;
    EXECUTE format('GRANT EXECUTE ON FUNCTION idflow_disabled_users() TO %I', app);

    FOREACH t IN ARRAY ARRAY['river_job', 'river_leader', 'river_queue', 'river_notification'] LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO %I', t, app);
    END LOOP;
    EXECUTE format('GRANT SELECT ON river_migration TO %I', app);
    FOREACH t IN ARRAY ARRAY['river_job_id_seq', 'river_notification_id_seq'] LOOP
        EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE %I TO %I', t, app);
    END LOOP;
END
$$;
