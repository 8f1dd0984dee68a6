-- Runs keep a frozen copy of the definition they run, so a workflow can be
-- edited or deleted without changing a run's history. Events carry their own
-- user_id: the owner predicate never depends on a join.
CREATE TABLE runs (
    id               TEXT    NOT NULL PRIMARY KEY,
    user_id          TEXT    NOT NULL,
    tenant_id        TEXT    NOT NULL,
    workflow_id      TEXT    NOT NULL,
    workflow_version INTEGER NOT NULL,
    definition       TEXT    NOT NULL, -- JSON
    status           TEXT    NOT NULL,
    input            TEXT    NOT NULL, -- JSON
    output           TEXT,             -- JSON
    error            TEXT    NOT NULL,
    attempt          INTEGER NOT NULL,
    next_seq         INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    UNIQUE (user_id, id)
) STRICT;
CREATE INDEX runs_user_created ON runs (user_id, created_at, id);

CREATE TABLE run_events (
    user_id TEXT    NOT NULL,
    run_id  TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    type    TEXT    NOT NULL,
    step_id TEXT    NOT NULL,
    data    TEXT,             -- JSON
    at      INTEGER NOT NULL,
    PRIMARY KEY (user_id, run_id, seq),
    FOREIGN KEY (user_id, run_id) REFERENCES runs (user_id, id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
