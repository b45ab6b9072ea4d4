-- Completing jobs and claiming the next ones, as one function whose plans are
-- made once per connection and kept. Left to choose, PostgreSQL plans a
-- prepared statement again at every call once the table's statistics make a
-- plan for the given values look cheaper than the kept one (here from about
-- 10,000 queued jobs on), and that planning was a third of a claim: the queue
-- ran 1,220-1,370 jobs/s at concurrency 1 with 10,000 queued, and 1,660-1,770
-- with this function (docs/PERFORMANCE.md, "The claim's plan kept"). The
-- settings of `claim_plan` leave one plan for the claim (the claim index read
-- in its order), so keeping it loses nothing; the setting holds for
-- `claimable_jobs` too, called from here.
CREATE FUNCTION complete_and_claim(
    ready_at timestamptz, of_kinds text[], lease_end timestamptz, worker_id text,
    passed_over uuid[], done_ids uuid[], wanted integer)
RETURNS TABLE (completed uuid[], job jobs)
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    -- One row even when nothing is claimed, to carry what was completed.
    RETURN QUERY
    WITH finished AS (
        UPDATE jobs SET state = 'succeeded', lease_until = NULL, updated_at = ready_at
        WHERE jobs.id = ANY(done_ids) AND jobs.locked_by = worker_id AND jobs.state = 'running'
        RETURNING jobs.id),
    claimed AS (
        UPDATE jobs SET state = 'running', attempts = jobs.attempts + 1, lease_until = lease_end,
                        locked_by = worker_id, updated_at = ready_at
        FROM claimable_jobs(ready_at, of_kinds, passed_over, wanted) AS next(id)
        WHERE jobs.id = next.id
        RETURNING jobs)
    SELECT (SELECT array_agg(finished.id) FROM finished), claimed.jobs
    FROM (SELECT 1) AS one LEFT JOIN claimed ON true;
END
$$;
