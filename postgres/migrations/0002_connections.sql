-- Downstream connections (idflow.ConnectionStore): one sealed credential per
-- (user, provider), and the pending connect flows. Both are user tables like
-- those of 0001_init.sql: user_id first in the primary key, ENABLE + FORCE
-- ROW LEVEL SECURITY, and the owner_rows policy
--   USING (user_id = current_setting('idflow.user_id', true))
--   WITH CHECK (user_id = current_setting('idflow.user_id', true)).
-- No admin or stats policy: nobody but the owner reads a credential.
--
-- The ciphertext is AES-256-GCM whose associated data binds it to this
-- row's user_id and provider (package vault); key_id names the vault key that
-- sealed it, so keys can be rotated row by row.
CREATE TABLE connections (
    user_id    text COLLATE "C" NOT NULL CHECK (user_id <> ''),
    provider   text COLLATE "C" NOT NULL,
    key_id     text        NOT NULL,
    ciphertext bytea       NOT NULL,
    status     text        NOT NULL CHECK (status IN ('active', 'needs_consent')),
    scopes     json        NOT NULL,
    expires_at timestamptz,            -- of the current access token
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, provider)
);

-- Pending connect flows (authorization code + PKCE), bound to the user who
-- started them; taken (deleted) by the callback, short-lived.
CREATE TABLE connect_states (
    user_id       text COLLATE "C" NOT NULL CHECK (user_id <> ''),
    state         text COLLATE "C" NOT NULL,
    provider      text        NOT NULL,
    code_verifier text        NOT NULL,
    redirect_uri  text        NOT NULL,
    expires_at    timestamptz NOT NULL,
    created_at    timestamptz NOT NULL,
    PRIMARY KEY (user_id, state)
);
CREATE INDEX connect_states_user_created ON connect_states (user_id, created_at);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['connections', 'connect_states'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY owner_rows ON %I FOR ALL
            USING (user_id = current_setting('idflow.user_id', true))
            WITH CHECK (user_id = current_setting('idflow.user_id', true))$p$, t);
    END LOOP;
END
$$;
