-- Token usage of the model, per user, day (UTC) and model: every model call
-- made on a user's behalf adds its tokens and one call to its row
-- (llm.Metered). A user table like those of 0001_init.sql: user_id first in
-- the primary key, ENABLE + FORCE ROW LEVEL SECURITY and the owner_rows
-- policy
--   USING (user_id = current_setting('idflow.user_id', true))
--   WITH CHECK (user_id = current_setting('idflow.user_id', true)).
-- tenant_id is the user's tenant when the row was last written, so that a
-- tenant's usage (GET /api/v1/admin/usage) is read without a join, under an
-- admin_read policy of the tenant-scoped admin path: a platform admin's
-- transaction ('idflow.admin' = 'all') reads every row, a tenant admin's
-- ('tenant') the rows of 'idflow.admin_tenant' only. For SELECT only.
CREATE TABLE model_usage (
    user_id           text COLLATE "C" NOT NULL CHECK (user_id <> ''),
    day               date        NOT NULL,
    model             text COLLATE "C" NOT NULL,
    tenant_id         text COLLATE "C" NOT NULL,
    prompt_tokens     bigint      NOT NULL CHECK (prompt_tokens >= 0),
    completion_tokens bigint      NOT NULL CHECK (completion_tokens >= 0),
    calls             bigint      NOT NULL CHECK (calls >= 0),
    updated_at        timestamptz NOT NULL,
    PRIMARY KEY (user_id, day, model)
);
CREATE INDEX model_usage_tenant_day ON model_usage (tenant_id, day);

ALTER TABLE model_usage ENABLE ROW LEVEL SECURITY;
ALTER TABLE model_usage FORCE ROW LEVEL SECURITY;
CREATE POLICY owner_rows ON model_usage FOR ALL
    USING (user_id = current_setting('idflow.user_id', true))
    WITH CHECK (user_id = current_setting('idflow.user_id', true));
CREATE POLICY admin_read ON model_usage FOR SELECT
    USING (current_setting('idflow.admin', true) = 'all'
        OR (current_setting('idflow.admin', true) = 'tenant'
            AND tenant_id = current_setting('idflow.admin_tenant', true)));
