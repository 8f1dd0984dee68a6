-- idflow's own OAuth authorization server for /mcp (package authserver).
--
-- oauth_clients: dynamically registered public clients (RFC 7591). Not
-- user data: anyone may register, and the token endpoint reads them before
-- anyone is authenticated. Row-level security is on and forced like
-- everywhere else; its one policy opens the table to the app role, and
-- says so.
--
-- oauth_grants, oauth_codes, oauth_refresh_tokens: user tables like those
-- of 0001_init.sql (user_id on every row, owner_rows policy). Codes and
-- refresh tokens are stored as the SHA-256 of the secret only, and are
-- found by it before anyone is authenticated, as browser sessions are
-- (0003_browser_sessions.sql): a transaction that sets
-- idflow.session_hash to the hash sees that one row — knowing the secret
-- is the credential.
CREATE TABLE oauth_clients (
    client_id     text COLLATE "C" NOT NULL PRIMARY KEY,
    client_name   text        NOT NULL,
    redirect_uris json        NOT NULL,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz
);
CREATE INDEX oauth_clients_expires ON oauth_clients (expires_at) WHERE expires_at IS NOT NULL;
ALTER TABLE oauth_clients ENABLE ROW LEVEL SECURITY;
ALTER TABLE oauth_clients FORCE ROW LEVEL SECURITY;
CREATE POLICY public_registrations ON oauth_clients FOR ALL USING (true) WITH CHECK (true);

CREATE TABLE oauth_grants (
    user_id      text COLLATE "C" NOT NULL CHECK (user_id <> ''),
    id           text COLLATE "C" NOT NULL,
    client_id    text COLLATE "C" NOT NULL,
    client_name  text        NOT NULL,
    redirect_uri text        NOT NULL,
    scopes       json        NOT NULL,
    identity     json        NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    PRIMARY KEY (user_id, id)
);
CREATE UNIQUE INDEX oauth_grants_active ON oauth_grants (user_id, client_id) WHERE revoked_at IS NULL;

CREATE TABLE oauth_codes (
    code_hash      text COLLATE "C" NOT NULL PRIMARY KEY CHECK (length(code_hash) = 64),
    user_id        text COLLATE "C" NOT NULL CHECK (user_id <> ''),
    grant_id       text COLLATE "C" NOT NULL,
    client_id      text        NOT NULL,
    redirect_uri   text        NOT NULL,
    code_challenge text        NOT NULL,
    resource       text        NOT NULL,
    scopes         json        NOT NULL,
    expires_at     timestamptz NOT NULL
);
CREATE INDEX oauth_codes_grant ON oauth_codes (user_id, grant_id);

CREATE TABLE oauth_refresh_tokens (
    token_hash text COLLATE "C" NOT NULL PRIMARY KEY CHECK (length(token_hash) = 64),
    user_id    text COLLATE "C" NOT NULL CHECK (user_id <> ''),
    grant_id   text COLLATE "C" NOT NULL,
    client_id  text        NOT NULL,
    resource   text        NOT NULL,
    scopes     json        NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX oauth_refresh_grant ON oauth_refresh_tokens (user_id, grant_id);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['oauth_grants', 'oauth_codes', 'oauth_refresh_tokens'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY owner_rows ON %I FOR ALL
            USING (user_id = current_setting('idflow.user_id', true))
            WITH CHECK (user_id = current_setting('idflow.user_id', true))$p$, t);
    END LOOP;
END
$$;
CREATE POLICY by_secret ON oauth_codes FOR ALL
    USING (code_hash = current_setting('idflow.session_hash', true))
    WITH CHECK (code_hash = current_setting('idflow.session_hash', true));
CREATE POLICY by_secret ON oauth_refresh_tokens FOR ALL
    USING (token_hash = current_setting('idflow.session_hash', true))
    WITH CHECK (token_hash = current_setting('idflow.session_hash', true));
