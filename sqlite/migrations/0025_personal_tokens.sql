-- Personal access tokens. The token is "idf_pat_" + 256 random bits,
-- shown once; only its SHA-256 (hex) is stored, unique and indexed for the
-- lookup of every request that carries one. owner_snapshot (JSON) is the
-- owner's Snapshot when the token was made: what the token acts as.
CREATE TABLE personal_tokens (
    id             TEXT    NOT NULL PRIMARY KEY,
    user_id        TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    scopes         TEXT    NOT NULL, -- JSON array of strings
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    last_used_at   INTEGER,
    token_hash     TEXT    NOT NULL UNIQUE,
    owner_snapshot TEXT    NOT NULL,
    UNIQUE (user_id, id)
) STRICT;
CREATE INDEX personal_tokens_user_created ON personal_tokens (user_id, created_at, id);
