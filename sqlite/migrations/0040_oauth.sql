-- idflow's own OAuth authorization server for /mcp (package authserver).
-- Registered clients are not user data; grants, codes and refresh tokens
-- are, each row with its user_id. Codes and refresh tokens are stored as
-- the SHA-256 of the secret only.
CREATE TABLE oauth_clients (
    client_id     TEXT    NOT NULL PRIMARY KEY,
    client_name   TEXT    NOT NULL,
    redirect_uris TEXT    NOT NULL, -- JSON array
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER           -- unused registrations are forgotten then; NULL once granted
) STRICT, WITHOUT ROWID;
CREATE INDEX oauth_clients_expires ON oauth_clients (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE oauth_grants (
    user_id      TEXT    NOT NULL CHECK (user_id <> ''),
    id           TEXT    NOT NULL,
    client_id    TEXT    NOT NULL,
    client_name  TEXT    NOT NULL,
    redirect_uri TEXT    NOT NULL,
    scopes       TEXT    NOT NULL, -- JSON array
    identity     TEXT    NOT NULL, -- JSON idflow.Snapshot at consent
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    PRIMARY KEY (user_id, id)
) STRICT, WITHOUT ROWID;
CREATE UNIQUE INDEX oauth_grants_active ON oauth_grants (user_id, client_id) WHERE revoked_at IS NULL;

CREATE TABLE oauth_codes (
    code_hash      TEXT    NOT NULL PRIMARY KEY,
    user_id        TEXT    NOT NULL CHECK (user_id <> ''),
    grant_id       TEXT    NOT NULL,
    client_id      TEXT    NOT NULL,
    redirect_uri   TEXT    NOT NULL,
    code_challenge TEXT    NOT NULL,
    resource       TEXT    NOT NULL,
    scopes         TEXT    NOT NULL,
    expires_at     INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX oauth_codes_grant ON oauth_codes (user_id, grant_id);

CREATE TABLE oauth_refresh_tokens (
    token_hash TEXT    NOT NULL PRIMARY KEY,
    user_id    TEXT    NOT NULL CHECK (user_id <> ''),
    grant_id   TEXT    NOT NULL,
    client_id  TEXT    NOT NULL,
    resource   TEXT    NOT NULL,
    scopes     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER -- rotated: presenting it again revokes the grant
) STRICT, WITHOUT ROWID;
CREATE INDEX oauth_refresh_grant ON oauth_refresh_tokens (user_id, grant_id);
