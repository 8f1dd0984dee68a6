-- Server-side browser sessions. The cookie carries a random id; only its
-- SHA-256 is stored, with the user's tokens sealed by the vault key.
CREATE TABLE browser_sessions (
    id_hash    TEXT    NOT NULL PRIMARY KEY,
    user_id    TEXT    NOT NULL,
    csrf       TEXT    NOT NULL,
    key_id     TEXT    NOT NULL,
    sealed     BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX browser_sessions_user ON browser_sessions (user_id);
CREATE INDEX browser_sessions_expires ON browser_sessions (expires_at);
