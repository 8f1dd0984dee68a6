-- The admin path, tenant by tenant (issue 10). An admin reads the users of
-- their own tenant only; a platform admin reads every tenant. The store
-- binds the tenant into every admin query (the first wall); these policies
-- replace 0001's admin_read ('idflow.admin' = 'on', which now opens
-- nothing) so that the tenant is checked a second time:
--
--   admin_read   (users, audit_events, facts; FOR SELECT only)
--       current_setting('idflow.admin', true) = 'all'
--         the platform admin's transaction: every row;
--       current_setting('idflow.admin', true) = 'tenant'
--         AND <the row's tenant> = current_setting('idflow.admin_tenant', true)
--         a tenant admin's transaction. users and audit_events carry
--         tenant_id (an audit event's is its actor's); a fact's tenant is its
--         owner's row in users (the users seen: a user never seen has no
--         tenant and no admin of any tenant reads their facts).
--     The store sets both with set_config(..., true) in the admin method's
--     own read-only transaction (postgres.go asAdmin). The mode is a word of
--     its own rather than a special tenant value, because an unset setting
--     reads back as '' on a pooled connection and '' is also a tenant (that
--     of an IdP without tenants).
--
-- Verifying the chain needs the place of every event in it, whoever's it
-- is, while a tenant admin may read their tenant's events only.
-- idflow_audit_links() answers exactly that place — seq, prev_hash, hash —
-- and nothing else (no id, actor, tenant, action or detail), SECURITY
-- DEFINER like idflow_stats(): it runs as the schema owner, for whom the
-- audit_links policy opens audit_events while idflow.audit_links is 'on',
-- which the function turns on around its one query only. The policy never
-- applies to the app role. Rows come in pages (after_seq, max_rows) so that
-- a long chain is never held in memory at once.

DROP POLICY admin_read ON users;
DROP POLICY admin_read ON facts;
DROP POLICY admin_read ON audit_events;

CREATE POLICY admin_read ON users FOR SELECT
    USING (current_setting('idflow.admin', true) = 'all'
        OR (current_setting('idflow.admin', true) = 'tenant'
            AND tenant_id = current_setting('idflow.admin_tenant', true)));

CREATE POLICY admin_read ON audit_events FOR SELECT
    USING (current_setting('idflow.admin', true) = 'all'
        OR (current_setting('idflow.admin', true) = 'tenant'
            AND tenant_id = current_setting('idflow.admin_tenant', true)));

CREATE POLICY admin_read ON facts FOR SELECT
    USING (current_setting('idflow.admin', true) = 'all'
        OR (current_setting('idflow.admin', true) = 'tenant'
            AND EXISTS (SELECT 1 FROM users AS u WHERE u.user_id = facts.user_id
                        AND u.tenant_id = current_setting('idflow.admin_tenant', true))));

-- A tenant admin's lists, led by the tenant.
CREATE INDEX users_tenant_first_seen ON users (tenant_id, first_seen, user_id);
CREATE INDEX audit_events_tenant_seq ON audit_events (tenant_id, seq, id);

CREATE POLICY audit_links ON audit_events FOR SELECT TO CURRENT_USER
    USING (current_setting('idflow.audit_links', true) = 'on');

CREATE FUNCTION idflow_audit_links(after_seq bigint, max_rows integer)
    RETURNS TABLE (seq bigint, prev_hash text, hash text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
AS $$
BEGIN
    PERFORM set_config('idflow.audit_links', 'on', true);
    RETURN QUERY SELECT a.seq, a.prev_hash, a.hash FROM audit_events AS a
        WHERE a.seq > after_seq ORDER BY a.seq LIMIT max_rows;
    PERFORM set_config('idflow.audit_links', 'off', true);
END
$$;
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION idflow_audit_links(bigint, integer) SET search_path = %I, pg_temp', current_schema());
END
$$;
REVOKE ALL ON FUNCTION idflow_audit_links(bigint, integer) FROM PUBLIC;
