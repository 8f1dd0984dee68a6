-- Identity lifecycle (issue 13): what directories provision over SCIM, per
-- tenant, and whether a user is disabled. Every row carries its tenant.
--
-- A directory (a SCIM client) reads and writes the rows of its own token's
-- tenant, in a transaction that sets (set_config(..., true)):
--     idflow.directory = 'on' and idflow.tenant = <the tenant>
-- The policy tenant_rows of each table opens exactly those rows, for every
-- command (postgres.go asTenant). The mode is a word of its own, as in
-- 0005_admin_tenant.sql, because an unset setting reads back as '' and ''
-- is also a tenant. The same transaction serves an admin disabling a user
-- of their scope (the store checked the AdminScope first) and the
-- authentication layer reading a verified user's directory groups (the
-- tenant is the verified Principal's).
--
-- The revocation set is read across tenants at start and on every poll by
-- idflow_disabled_users() (SECURITY DEFINER, like idflow_stats()): it
-- answers (tenant_id, user_id) of disabled users and nothing else, under
-- the disabled_list policy, which only its owner's transaction opens.
--
-- A tenant admin's reads (admin_read, as in 0005) see directory_users of
-- their tenant, to find whom they may disable.

CREATE TABLE user_states (
    tenant_id  text COLLATE "C" NOT NULL,
    user_id    text COLLATE "C" NOT NULL CHECK (user_id <> ''),
    disabled   boolean     NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX user_states_disabled ON user_states (tenant_id, user_id) WHERE disabled;

CREATE TABLE directory_users (
    id            text COLLATE "C" NOT NULL PRIMARY KEY,
    tenant_id     text COLLATE "C" NOT NULL,
    user_id       text COLLATE "C" NOT NULL CHECK (user_id <> ''),
    user_name     text        NOT NULL,
    user_name_key text COLLATE "C" NOT NULL,
    external_id   text COLLATE "C" NOT NULL,
    display_name  text        NOT NULL,
    attributes    text        NOT NULL,
    version       bigint      NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    UNIQUE (tenant_id, user_name_key),
    UNIQUE (tenant_id, user_id)
);
CREATE INDEX directory_users_tenant_created ON directory_users (tenant_id, created_at, id);
CREATE INDEX directory_users_tenant_external ON directory_users (tenant_id, external_id);

CREATE TABLE directory_groups (
    id               text COLLATE "C" NOT NULL PRIMARY KEY,
    tenant_id        text COLLATE "C" NOT NULL,
    display_name     text        NOT NULL,
    display_name_key text COLLATE "C" NOT NULL,
    external_id      text COLLATE "C" NOT NULL,
    attributes       text        NOT NULL,
    version          bigint      NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    UNIQUE (tenant_id, display_name_key)
);
CREATE INDEX directory_groups_tenant_created ON directory_groups (tenant_id, created_at, id);

CREATE TABLE directory_members (
    tenant_id text COLLATE "C" NOT NULL,
    group_id  text COLLATE "C" NOT NULL REFERENCES directory_groups (id) ON DELETE CASCADE,
    member_id text COLLATE "C" NOT NULL REFERENCES directory_users (id) ON DELETE CASCADE,
    user_id   text COLLATE "C" NOT NULL CHECK (user_id <> ''),
    PRIMARY KEY (group_id, member_id)
);
CREATE INDEX directory_members_user ON directory_members (tenant_id, user_id);
CREATE INDEX directory_members_member ON directory_members (member_id);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['user_states', 'directory_users', 'directory_groups', 'directory_members'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_rows ON %I FOR ALL
            USING (current_setting('idflow.directory', true) = 'on'
                   AND tenant_id = current_setting('idflow.tenant', true))
            WITH CHECK (current_setting('idflow.directory', true) = 'on'
                   AND tenant_id = current_setting('idflow.tenant', true))$p$, t);
    END LOOP;
END
$$;

CREATE POLICY admin_read ON directory_users FOR SELECT
    USING (current_setting('idflow.admin', true) = 'all'
        OR (current_setting('idflow.admin', true) = 'tenant'
            AND tenant_id = current_setting('idflow.admin_tenant', true)));

CREATE POLICY disabled_list ON user_states FOR SELECT TO CURRENT_USER
    USING (current_setting('idflow.disabled_list', true) = 'on');

CREATE FUNCTION idflow_disabled_users()
    RETURNS TABLE (tenant_id text, user_id text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
AS $$
BEGIN
    PERFORM set_config('idflow.disabled_list', 'on', true);
    RETURN QUERY SELECT s.tenant_id::text, s.user_id::text FROM user_states AS s WHERE s.disabled;
    PERFORM set_config('idflow.disabled_list', 'off', true);
END
$$;
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION idflow_disabled_users() SET search_path = %I, pg_temp', current_schema());
END
$$;
REVOKE ALL ON FUNCTION idflow_disabled_users() FROM PUBLIC;
