-- idflow's schema on PostgreSQL, applied by Migrate as the role that owns
-- the schema (IDFLOW_MIGRATE_DATABASE_URL). The app role (IDFLOW_DATABASE_URL)
-- owns nothing; grants.sql gives it exactly the privileges listed there.
--
-- Layout. Every table that holds user data carries its own user_id (child
-- rows too: messages, workflow_versions, run_events, document_blobs), its
-- primary key and every index a user-facing query uses start with user_id,
-- and references between a user's objects are composite foreign keys on
-- (user_id, id), so the database itself refuses a row that points at another
-- user's object. No owner predicate ever depends on a join, which is also
-- what lets every table be distributed on user_id (Citus; docs/POSTGRES.md).
-- Ids and user ids use the "C" collation: byte order, as in SQLite, and the
-- same order whatever the database's locale. Timestamps are timestamptz
-- (microsecond precision, which is what the store hands out).
--
-- Row-level security: the second wall. The store binds "user_id = $n" in
-- every query (the first wall); in addition every user table has
-- ENABLE + FORCE ROW LEVEL SECURITY (FORCE: the owner is subject to the
-- policies too) and these policies (policies of one table are permissive:
-- a row is visible when any of them matches):
--
--   owner_rows   (every user table; FOR ALL)
--       USING      (user_id = current_setting('idflow.user_id', true))
--       WITH CHECK (user_id = current_setting('idflow.user_id', true))
--     The store runs each user-facing method in a transaction that first
--     calls set_config('idflow.user_id', <owner>, true): transaction-local,
--     so it never leaks to the next transaction on a pooled connection
--     (PgBouncer transaction pooling included). Unset, current_setting
--     answers NULL or '' and no row matches (user_id is never '').
--
--   admin_read   (users, facts, audit_events; FOR SELECT only)
--       USING (current_setting('idflow.admin', true) = 'on')
--     The explicit admin path: only AdminListUsers, AdminListFacts,
--     AdminListAudit and VerifyAuditChain set idflow.admin = 'on', with
--     set_config(..., true) inside their own read-only transaction. It reads
--     and never writes. It guards against a forgotten predicate, not against
--     a compromised app role (which could set the same variable): the
--     service checks the admin role and audits every admin read.
--
--   stats_count  (users, sessions, messages, workflows, runs, documents,
--                 facts; FOR SELECT TO the schema owner only)
--       USING (current_setting('idflow.stats', true) = 'on')
--     Lets idflow_stats() (SECURITY DEFINER, owned by the schema owner,
--     which sets idflow.stats = 'on' around its own queries only) count
--     rows across users. It returns counts, nothing else. The app role may
--     execute it; the policy never applies to the app role itself.
--
-- audit_events is one hash chain across users; user_id is the actor ('' for
-- a denial before anyone was authenticated), so it has its own policies:
--
--   audit_insert FOR INSERT WITH CHECK (true)   any session may append
--   audit_own    FOR SELECT USING (user_id <> ''
--                  AND user_id = current_setting('idflow.user_id', true))
--   admin_read   as above
--
--   and no UPDATE or DELETE policy (nor privilege): the app role cannot edit
--   or remove an event. The chain head (seq and hash of the newest event)
--   lives in audit_chain_head, one row that RecordAudit locks with
--   SELECT … FOR UPDATE: appends are serialized across every replica, and
--   VerifyAuditChain also checks the newest event against it (which reveals
--   a cut-off tail). It holds no user data and has no RLS; the app role may
--   only SELECT and UPDATE it.

CREATE EXTENSION IF NOT EXISTS unaccent;

-- Full-text search: words are folded to lower case, stripped of diacritics
-- and stemmed (Snowball English, no stop words), as SQLite's
-- "porter unicode61 remove_diacritics 2" does.
CREATE TEXT SEARCH DICTIONARY idflow_stem (TEMPLATE = snowball, Language = english);
CREATE TEXT SEARCH CONFIGURATION idflow (COPY = simple);
ALTER TEXT SEARCH CONFIGURATION idflow
    ALTER MAPPING FOR asciiword, asciihword, hword_asciipart, word, hword, hword_part, numword, numhword, hword_numpart
    WITH unaccent, idflow_stem;

CREATE TABLE users (
    user_id    text COLLATE "C" NOT NULL PRIMARY KEY CHECK (user_id <> ''),
    tenant_id  text        NOT NULL,
    email      text        NOT NULL,
    name       text        NOT NULL,
    issuer     text        NOT NULL,
    first_seen timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL
);
-- The admin list (every user, newest first) is the one list not led by user_id.
CREATE INDEX users_first_seen ON users (first_seen, user_id);

CREATE TABLE apps (
    user_id     text COLLATE "C" NOT NULL CHECK (user_id <> ''),
    id          text COLLATE "C" NOT NULL,
    name        text        NOT NULL,
    description text        NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (user_id, id)
);
CREATE INDEX apps_user_created ON apps (user_id, created_at, id);

CREATE TABLE agents (
    user_id      text COLLATE "C" NOT NULL CHECK (user_id <> ''),
    id           text COLLATE "C" NOT NULL,
    name         text        NOT NULL,
    instructions text        NOT NULL,
    model        text        NOT NULL,
    tools        json        NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (user_id, id)
);
CREATE INDEX agents_user_created ON agents (user_id, created_at, id);

CREATE TABLE sessions (
    user_id    text COLLATE "C" NOT NULL CHECK (user_id <> ''),
    id         text COLLATE "C" NOT NULL,
    title      text        NOT NULL,
    app_id     text COLLATE "C",
    agent_id   text COLLATE "C",
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, id),
    FOREIGN KEY (user_id, app_id) REFERENCES apps (user_id, id),
    FOREIGN KEY (user_id, agent_id) REFERENCES agents (user_id, id)
);
CREATE INDEX sessions_user_created ON sessions (user_id, created_at, id);
CREATE INDEX sessions_user_app ON sessions (user_id, app_id, created_at, id);
CREATE INDEX sessions_user_agent ON sessions (user_id, agent_id);

CREATE TABLE messages (
    user_id    text COLLATE "C" NOT NULL CHECK (user_id <> ''),
    id         text COLLATE "C" NOT NULL,
    session_id text COLLATE "C" NOT NULL,
    role       text        NOT NULL,
    content    text        NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, id),
    FOREIGN KEY (user_id, session_id) REFERENCES sessions (user_id, id) ON DELETE CASCADE
);
CREATE INDEX messages_user_session_created ON messages (user_id, session_id, created_at, id);

CREATE TABLE workflows (
    user_id      text COLLATE "C" NOT NULL CHECK (user_id <> ''),
    id           text COLLATE "C" NOT NULL,
    name         text        NOT NULL,
    definition   json        NOT NULL,
    status       text        NOT NULL,
    version      integer     NOT NULL,
    published_at timestamptz,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (user_id, id)
);
CREATE INDEX workflows_user_created ON workflows (user_id, created_at, id);

CREATE TABLE workflow_versions (
    user_id     text COLLATE "C" NOT NULL CHECK (user_id <> ''),
    workflow_id text COLLATE "C" NOT NULL,
    version     integer     NOT NULL,
    definition  json        NOT NULL, -- frozen at publish
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (user_id, workflow_id, version),
    FOREIGN KEY (user_id, workflow_id) REFERENCES workflows (user_id, id) ON DELETE CASCADE
);

CREATE TABLE documents (
    user_id      text COLLATE "C" NOT NULL CHECK (user_id <> ''),
    id           text COLLATE "C" NOT NULL,
    app_id       text COLLATE "C",
    filename     text        NOT NULL,
    content_type text        NOT NULL,
    size         bigint      NOT NULL,
    sha256       text        NOT NULL,
    fact_count   integer     NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (user_id, id),
    FOREIGN KEY (user_id, app_id) REFERENCES apps (user_id, id)
);
CREATE INDEX documents_user_created ON documents (user_id, created_at, id);
CREATE INDEX documents_user_app ON documents (user_id, app_id);

-- A document's original bytes (the BlobStore when scaled out, DESIGN §6).
-- The bytes are written before the document row (and removed if that
-- fails), so there is no foreign key to documents.
CREATE TABLE document_blobs (
    user_id     text COLLATE "C" NOT NULL CHECK (user_id <> ''),
    document_id text COLLATE "C" NOT NULL,
    bytes       bytea       NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (user_id, document_id)
);

-- Facts are immutable (the app role has no UPDATE privilege on them).
CREATE TABLE facts (
    user_id            text COLLATE "C" NOT NULL CHECK (user_id <> ''),
    id                 text COLLATE "C" NOT NULL,
    content            text        NOT NULL,
    source_document_id text COLLATE "C",
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    PRIMARY KEY (user_id, id),
    FOREIGN KEY (user_id, source_document_id) REFERENCES documents (user_id, id) ON DELETE CASCADE
);
CREATE INDEX facts_user_created ON facts (user_id, created_at, id);
CREATE INDEX facts_user_document ON facts (user_id, source_document_id);

-- tsv, the searchable words of a fact: the content split into runs of
-- letters and digits (as SQLite's unicode61 tokenizer and the Go query
-- builder split it), lower-cased, then through the idflow configuration.
-- Splitting and lower-casing follow Unicode through the ICU root collation
-- when the server has ICU (nearly every build); without it, "C" rules apply
-- (ASCII letters and digits only).
DO $$
DECLARE
    coll text := CASE WHEN EXISTS (SELECT 1 FROM pg_collation WHERE collname = 'und-x-icu')
                 THEN '"und-x-icu"' ELSE '"C"' END;
BEGIN
    EXECUTE format($f$ALTER TABLE facts ADD COLUMN tsv tsvector NOT NULL GENERATED ALWAYS AS
        (to_tsvector('idflow', lower(regexp_replace(content COLLATE %1$s, '[^[:alnum:]]+', ' ', 'g')))) STORED$f$, coll);
END
$$;
-- Search reads one user's facts through an index led by user_id and
-- matches tsv row by row: under RLS the planner may not use a GIN index for
-- "tsv @@ query" (the match operator is not LEAKPROOF, so it cannot run
-- before the policy), and a user's facts are few enough (thousands) that
-- the scan costs well under a millisecond. bench_test.go measures it.

CREATE TABLE runs (
    user_id          text COLLATE "C" NOT NULL CHECK (user_id <> ''),
    id               text COLLATE "C" NOT NULL,
    tenant_id        text        NOT NULL,
    workflow_id      text COLLATE "C" NOT NULL,
    workflow_version integer     NOT NULL,
    definition       json        NOT NULL,
    status           text        NOT NULL,
    input            json        NOT NULL,
    output           json,
    error            text        NOT NULL,
    attempt          integer     NOT NULL,
    next_seq         bigint      NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    started_at       timestamptz,
    finished_at      timestamptz,
    PRIMARY KEY (user_id, id)
);
CREATE INDEX runs_user_created ON runs (user_id, created_at, id);

CREATE TABLE run_events (
    user_id text COLLATE "C" NOT NULL CHECK (user_id <> ''),
    run_id  text COLLATE "C" NOT NULL,
    seq     bigint      NOT NULL,
    type    text        NOT NULL,
    step_id text        NOT NULL,
    data    json,
    at      timestamptz NOT NULL,
    PRIMARY KEY (user_id, run_id, seq),
    FOREIGN KEY (user_id, run_id) REFERENCES runs (user_id, id) ON DELETE CASCADE
);

CREATE TABLE audit_events (
    seq        bigint      NOT NULL PRIMARY KEY,
    id         text COLLATE "C" NOT NULL UNIQUE,
    at         timestamptz NOT NULL,
    user_id    text COLLATE "C" NOT NULL,
    tenant_id  text        NOT NULL,
    action     text        NOT NULL,
    resource   text        NOT NULL,
    outcome    text        NOT NULL,
    request_id text        NOT NULL,
    peer       text        NOT NULL,
    detail     text        NOT NULL,
    prev_hash  text        NOT NULL,
    hash       text        NOT NULL
);
CREATE INDEX audit_events_user_seq ON audit_events (user_id, seq, id);

CREATE TABLE audit_chain_head (
    singleton boolean NOT NULL PRIMARY KEY DEFAULT true CHECK (singleton),
    seq       bigint  NOT NULL,
    hash      text    NOT NULL
);
INSERT INTO audit_chain_head (seq, hash) VALUES (0, repeat('0', 64));

-- Row-level security, as documented at the top of this file.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['users', 'apps', 'agents', 'sessions', 'messages', 'workflows', 'workflow_versions',
                             'documents', 'document_blobs', 'facts', 'runs', 'run_events'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY owner_rows ON %I FOR ALL
            USING (user_id = current_setting('idflow.user_id', true))
            WITH CHECK (user_id = current_setting('idflow.user_id', true))$p$, t);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['users', 'facts', 'audit_events'] LOOP
        EXECUTE format($p$CREATE POLICY admin_read ON %I FOR SELECT
            USING (current_setting('idflow.admin', true) = 'on')$p$, t);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['users', 'sessions', 'messages', 'workflows', 'runs', 'documents', 'facts'] LOOP
        EXECUTE format($p$CREATE POLICY stats_count ON %I FOR SELECT TO CURRENT_USER
            USING (current_setting('idflow.stats', true) = 'on')$p$, t);
    END LOOP;
END
$$;

ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_events FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_insert ON audit_events FOR INSERT WITH CHECK (true);
CREATE POLICY audit_own ON audit_events FOR SELECT
    USING (user_id <> '' AND user_id = current_setting('idflow.user_id', true));

-- Aggregate counts for the internal stats route. SECURITY DEFINER: it runs
-- as the schema owner, for whom stats_count opens the counted tables while
-- idflow.stats is 'on'; the function turns it on for its own queries and off
-- again before it returns. It returns counts, nothing else. Its search_path
-- is pinned to this schema with pg_temp last (below), so a caller's
-- temporary tables cannot stand in for the real ones.
CREATE FUNCTION idflow_stats(OUT users bigint, OUT sessions bigint, OUT messages bigint, OUT workflows bigint,
                             OUT runs bigint, OUT documents bigint, OUT facts bigint)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
AS $$
BEGIN
    PERFORM set_config('idflow.stats', 'on', true);
    SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM sessions), (SELECT count(*) FROM messages),
           (SELECT count(*) FROM workflows), (SELECT count(*) FROM runs), (SELECT count(*) FROM documents),
           (SELECT count(*) FROM facts)
      INTO idflow_stats.users, idflow_stats.sessions, idflow_stats.messages, idflow_stats.workflows,
           idflow_stats.runs, idflow_stats.documents, idflow_stats.facts;
    PERFORM set_config('idflow.stats', 'off', true);
END
$$;
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION idflow_stats() SET search_path = %I, pg_temp', current_schema());
END
$$;
REVOKE ALL ON FUNCTION idflow_stats() FROM PUBLIC;
