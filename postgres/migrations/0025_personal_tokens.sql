-- Personal access tokens (idflow.PersonalTokenStore). The token is
-- "idf_pat_" + 256 random bits, shown once; only its SHA-256 (hex) is
-- stored. A token is looked up before anyone is authenticated, by that
-- hash, so besides the owner_rows policy there is a by_secret one, as for
-- browser sessions (0003): a transaction that sets idflow.session_hash to
-- the hash sees the one row with that hash, for SELECT only (the setting
-- is shared with browser sessions: both are SHA-256 of 256-bit secrets, so
-- one never names the other's row). owner_snapshot is the owner's
-- Snapshot when the token was made: what the token acts as.
CREATE TABLE personal_tokens (
    user_id        text COLLATE "C" NOT NULL CHECK (user_id <> ''),
    id             text COLLATE "C" NOT NULL,
    name           text        NOT NULL,
    scopes         json        NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    last_used_at   timestamptz,
    token_hash     text COLLATE "C" NOT NULL UNIQUE CHECK (length(token_hash) = 64),
    owner_snapshot json        NOT NULL,
    PRIMARY KEY (user_id, id)
);
CREATE INDEX personal_tokens_user_created ON personal_tokens (user_id, created_at, id);

ALTER TABLE personal_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE personal_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY owner_rows ON personal_tokens FOR ALL
    USING (user_id = current_setting('idflow.user_id', true))
    WITH CHECK (user_id = current_setting('idflow.user_id', true));
CREATE POLICY by_secret ON personal_tokens FOR SELECT
    USING (token_hash = current_setting('idflow.session_hash', true));
