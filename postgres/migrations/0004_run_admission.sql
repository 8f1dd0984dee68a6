-- Fair runs (docs/ARCHITECTURE.md, "Fair runs"): at most IDFLOW_RUNS_PER_USER
-- runs of one user are admitted (hold a River job) at once; the others wait,
-- queued, in the order they were started. Admission is serialized per user
-- by a transaction-level advisory lock (runs.go).
--   waiting        true while the run has no job yet (runs from before this
--                  migration all have theirs: false)
--   job_id         the River job, once admitted
--   owner_snapshot the owner's Snapshot the job will carry
ALTER TABLE runs ADD COLUMN waiting boolean NOT NULL DEFAULT false;
ALTER TABLE runs ALTER COLUMN waiting DROP DEFAULT;
ALTER TABLE runs ADD COLUMN job_id bigint;
ALTER TABLE runs ADD COLUMN owner_snapshot json;
-- The owner's waiting runs, oldest first; and the owner's admitted runs that
-- have not ended (their count is the owner's slots in use).
CREATE INDEX runs_user_waiting ON runs (user_id, created_at, id) WHERE waiting AND status = 'queued';
CREATE INDEX runs_user_admitted ON runs (user_id, job_id) WHERE NOT waiting AND status IN ('queued', 'running');

-- Stranded runs: admitted, not ended, and their River job has ended (or is
-- gone) — e.g. discarded by River's rescuer after the worker's replica died
-- on the last attempt. Such a run would hold its owner's slot for ever;
-- FailStrandedRuns fails it, as its owner, and admits the owner's next run.
-- Finding them takes a look across users, like idflow_stats(): this
-- SECURITY DEFINER function runs as the schema owner, for whom
-- stranded_scan opens runs while idflow.stranded is 'on' (set by the
-- function around its own query only). It answers (user_id, run id) pairs
-- and nothing else. river_job is created by River's migrations after this
-- one; PL/pgSQL resolves it when the function runs.
CREATE POLICY stranded_scan ON runs FOR SELECT TO CURRENT_USER
    USING (current_setting('idflow.stranded', true) = 'on');
CREATE FUNCTION idflow_stranded_runs(max_runs integer)
    RETURNS TABLE (user_id text, run_id text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
AS $$
BEGIN
    PERFORM set_config('idflow.stranded', 'on', true);
    RETURN QUERY
        SELECT r.user_id::text, r.id::text FROM runs r
        WHERE NOT r.waiting AND r.status IN ('queued', 'running') AND r.job_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM river_job j WHERE j.id = r.job_id
                          AND j.state NOT IN ('completed', 'cancelled', 'discarded'))
        LIMIT max_runs;
    PERFORM set_config('idflow.stranded', 'off', true);
END
$$;
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION idflow_stranded_runs(integer) SET search_path = %I, pg_temp', current_schema());
END
$$;
REVOKE ALL ON FUNCTION idflow_stranded_runs(integer) FROM PUBLIC;
