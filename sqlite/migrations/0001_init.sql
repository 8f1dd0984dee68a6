-- Every table that holds user data carries its own user_id, and every index a
-- user-facing query uses starts with it. References between a user's objects
-- are composite foreign keys on (user_id, id), so the database itself refuses
-- a row that points at another user's object.
-- Timestamps are unix nanoseconds (UTC, microsecond precision).

CREATE TABLE users (
    user_id    TEXT    NOT NULL PRIMARY KEY,
    tenant_id  TEXT    NOT NULL,
    email      TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    issuer     TEXT    NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL
) STRICT;
CREATE INDEX users_first_seen ON users (first_seen, user_id);

CREATE TABLE apps (
    id          TEXT    NOT NULL PRIMARY KEY,
    user_id     TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    description TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (user_id, id)
) STRICT;
CREATE INDEX apps_user_created ON apps (user_id, created_at, id);

CREATE TABLE agents (
    id           TEXT    NOT NULL PRIMARY KEY,
    user_id      TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    instructions TEXT    NOT NULL,
    model        TEXT    NOT NULL,
    tools        TEXT    NOT NULL, -- JSON array of strings
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    UNIQUE (user_id, id)
) STRICT;
CREATE INDEX agents_user_created ON agents (user_id, created_at, id);

CREATE TABLE sessions (
    id         TEXT    NOT NULL PRIMARY KEY,
    user_id    TEXT    NOT NULL,
    title      TEXT    NOT NULL,
    app_id     TEXT,
    agent_id   TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (user_id, id),
    FOREIGN KEY (user_id, app_id) REFERENCES apps (user_id, id),
    FOREIGN KEY (user_id, agent_id) REFERENCES agents (user_id, id)
) STRICT;
CREATE INDEX sessions_user_created ON sessions (user_id, created_at, id);
CREATE INDEX sessions_user_app ON sessions (user_id, app_id, created_at, id);
CREATE INDEX sessions_user_agent ON sessions (user_id, agent_id);

CREATE TABLE messages (
    id         TEXT    NOT NULL PRIMARY KEY,
    user_id    TEXT    NOT NULL,
    session_id TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    content    TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    FOREIGN KEY (user_id, session_id) REFERENCES sessions (user_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX messages_user_session_created ON messages (user_id, session_id, created_at, id);

CREATE TABLE workflows (
    id           TEXT    NOT NULL PRIMARY KEY,
    user_id      TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    definition   TEXT    NOT NULL, -- JSON
    status       TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    published_at INTEGER,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    UNIQUE (user_id, id)
) STRICT;
CREATE INDEX workflows_user_created ON workflows (user_id, created_at, id);

CREATE TABLE workflow_versions (
    user_id     TEXT    NOT NULL,
    workflow_id TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    definition  TEXT    NOT NULL, -- JSON, frozen at publish
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, workflow_id, version),
    FOREIGN KEY (user_id, workflow_id) REFERENCES workflows (user_id, id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

CREATE TABLE documents (
    id           TEXT    NOT NULL PRIMARY KEY,
    user_id      TEXT    NOT NULL,
    app_id       TEXT,
    filename     TEXT    NOT NULL,
    content_type TEXT    NOT NULL,
    size         INTEGER NOT NULL,
    sha256       TEXT    NOT NULL,
    fact_count   INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    UNIQUE (user_id, id),
    FOREIGN KEY (user_id, app_id) REFERENCES apps (user_id, id)
) STRICT;
CREATE INDEX documents_user_created ON documents (user_id, created_at, id);
CREATE INDEX documents_user_app ON documents (user_id, app_id);

-- facts has an INTEGER PRIMARY KEY so that the rowid the full-text index
-- points at is stable (VACUUM may renumber an implicit rowid). A fact's
-- content and owner never change, which keeps the index in step.
CREATE TABLE facts (
    pk                 INTEGER NOT NULL PRIMARY KEY,
    id                 TEXT    NOT NULL UNIQUE,
    user_id            TEXT    NOT NULL,
    content            TEXT    NOT NULL,
    source_document_id TEXT,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    FOREIGN KEY (user_id, source_document_id) REFERENCES documents (user_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX facts_user_created ON facts (user_id, created_at, id);
CREATE INDEX facts_user_document ON facts (user_id, source_document_id);
CREATE TRIGGER facts_immutable BEFORE UPDATE OF pk, user_id, content ON facts BEGIN
    SELECT RAISE(ABORT, 'facts are immutable');
END;

-- The full-text index of facts. body is the fact's words, each prefixed
-- with its owner's namespace (see ftsText), so every user has their own
-- terms: a search reads and ranks only the caller's postings, and bm25's
-- document frequencies are the caller's own. The store writes body; the
-- trigger below removes it. user_id is stored (contentless_unindexed) and
-- filtered on as well.
CREATE VIRTUAL TABLE facts_fts USING fts5 (
    body,
    user_id UNINDEXED,
    content = '',
    contentless_delete = 1,
    contentless_unindexed = 1,
    tokenize = 'porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER facts_fts_delete AFTER DELETE ON facts BEGIN
    DELETE FROM facts_fts WHERE rowid = old.pk;
END;

-- The audit log is one global hash chain; user_id is the actor ('' when
-- nobody was authenticated).
CREATE TABLE audit_events (
    seq        INTEGER NOT NULL PRIMARY KEY,
    id         TEXT    NOT NULL UNIQUE,
    at         INTEGER NOT NULL,
    user_id    TEXT    NOT NULL,
    tenant_id  TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    resource   TEXT    NOT NULL,
    outcome    TEXT    NOT NULL,
    request_id TEXT    NOT NULL,
    peer       TEXT    NOT NULL,
    detail     TEXT    NOT NULL,
    prev_hash  TEXT    NOT NULL,
    hash       TEXT    NOT NULL
) STRICT;
CREATE INDEX audit_events_user_seq ON audit_events (user_id, seq, id);
