-- Fair runs (docs/ARCHITECTURE.md, "Fair runs"): at most IDFLOW_RUNS_PER_USER
-- runs of one user are admitted (hold a River job) at once; the others wait,
-- queued, in the order they were started.
--   waiting        1 while the run has no job yet (runs from before this
--                  migration all have theirs: 0)
--   job_id         the River job, once admitted (FailStrandedRuns finds an
--                  admitted run whose job has ended without ending it)
--   owner_snapshot the owner's Snapshot (JSON) the job will carry
ALTER TABLE runs ADD COLUMN waiting INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN job_id INTEGER;
ALTER TABLE runs ADD COLUMN owner_snapshot TEXT;
-- The owner's waiting runs, oldest first; and the owner's admitted runs that
-- have not ended (their count is the owner's slots in use).
CREATE INDEX runs_user_waiting ON runs (user_id, created_at, id) WHERE waiting = 1 AND status = 'queued';
CREATE INDEX runs_user_admitted ON runs (user_id, job_id) WHERE waiting = 0 AND status IN ('queued', 'running');
