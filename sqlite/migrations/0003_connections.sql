-- Downstream connections: one sealed credential per (user, provider). The
-- ciphertext is AES-256-GCM whose associated data binds it to this row's
-- user_id and provider (package vault); key_id names the vault key that
-- sealed it, so keys can be rotated row by row.
CREATE TABLE connections (
    user_id    TEXT    NOT NULL,
    provider   TEXT    NOT NULL,
    key_id     TEXT    NOT NULL,
    ciphertext BLOB    NOT NULL,
    status     TEXT    NOT NULL CHECK (status IN ('active', 'needs_consent')),
    scopes     TEXT    NOT NULL, -- JSON array
    expires_at INTEGER,          -- of the current access token, Unix nanoseconds
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, provider)
) STRICT, WITHOUT ROWID;

-- Pending connect flows (authorization code + PKCE), bound to the user who
-- started them; taken (deleted) by the callback, short-lived.
CREATE TABLE connect_states (
    user_id       TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    provider      TEXT    NOT NULL,
    code_verifier TEXT    NOT NULL,
    redirect_uri  TEXT    NOT NULL,
    expires_at    INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (user_id, state)
) STRICT, WITHOUT ROWID;
