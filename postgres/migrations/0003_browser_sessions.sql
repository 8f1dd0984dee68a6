-- Browser sessions (idflow.BrowserSessionStore). The cookie holds a random
-- 256-bit id; only its SHA-256 is stored. A session is looked up before
-- anyone is authenticated, by that hash, so besides the usual owner_rows
-- policy there is one more: a transaction that sets
-- idflow.session_hash (set_config(..., true)) sees the one row with that
-- hash — knowing the secret is the credential. Tokens are sealed with the
-- vault key (associated data = user id).
CREATE TABLE browser_sessions (
    id_hash    text COLLATE "C" NOT NULL PRIMARY KEY CHECK (length(id_hash) = 64),
    user_id    text COLLATE "C" NOT NULL CHECK (user_id <> ''),
    csrf       text        NOT NULL,
    key_id     text        NOT NULL,
    sealed     bytea       NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX browser_sessions_user ON browser_sessions (user_id);
CREATE INDEX browser_sessions_expires ON browser_sessions (expires_at);

ALTER TABLE browser_sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE browser_sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY owner_rows ON browser_sessions FOR ALL
    USING (user_id = current_setting('idflow.user_id', true))
    WITH CHECK (user_id = current_setting('idflow.user_id', true));
CREATE POLICY by_secret ON browser_sessions FOR ALL
    USING (id_hash = current_setting('idflow.session_hash', true))
    WITH CHECK (id_hash = current_setting('idflow.session_hash', true)
                AND user_id = current_setting('idflow.user_id', true));
