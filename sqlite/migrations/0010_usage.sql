-- Token usage of the model, per user, day (UTC, YYYY-MM-DD) and model:
-- every model call made on a user's behalf adds its tokens and one call to
-- its row (llm.Metered). tenant_id is the user's tenant when the row was
-- last written, so a tenant's usage is read without a join.
CREATE TABLE model_usage (
    user_id           TEXT    NOT NULL CHECK (user_id <> ''),
    day               TEXT    NOT NULL,
    model             TEXT    NOT NULL,
    tenant_id         TEXT    NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    calls             INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL, -- Unix nanoseconds
    PRIMARY KEY (user_id, day, model)
) STRICT, WITHOUT ROWID;
CREATE INDEX model_usage_tenant_day ON model_usage (tenant_id, day);
