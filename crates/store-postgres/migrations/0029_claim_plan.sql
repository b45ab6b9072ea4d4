-- The jobs a claim takes, read from `jobs_claim_order` in its order and
-- stopped at the limit, whatever the table's statistics say. Without
-- statistics (a table just filled: the first minute of a burst) or with
-- stale ones, the planner expects few runnable jobs and reads and sorts
-- every one of them instead, so a claim's cost grew with the backlog
-- (1.0 ms at 3,000 queued, falling as they ran). Planner settings can be
-- attached to a function, not to one statement; the function's plan is
-- kept per connection like a prepared statement's.
CREATE FUNCTION claimable_jobs(ready_by timestamptz, of_kinds text[], passed_over uuid[], wanted integer)
RETURNS SETOF uuid
LANGUAGE plpgsql VOLATILE ROWS 8
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
BEGIN
    -- Runnable, of the kinds asked for, of no organization passed over, and
    -- first in line for its ordering key (no earlier unfinished job with the
    -- key, and none of them running).
    RETURN QUERY
    SELECT j.id FROM jobs j
    WHERE j.state IN ('queued', 'failed') AND j.run_at <= ready_by
      AND j.kind = ANY(of_kinds)
      AND (j.org_id IS NULL OR NOT (j.org_id = ANY(passed_over)))
      AND (j.ordering_key IS NULL OR NOT EXISTS (
            SELECT 1 FROM jobs o
            WHERE o.ordering_key = j.ordering_key AND o.id <> j.id
              AND (o.state = 'running'
                   OR (o.state IN ('queued', 'failed') AND (o.created_at, o.id) < (j.created_at, j.id)))))
    ORDER BY j.priority DESC, j.run_at, j.created_at, j.id
    LIMIT wanted
    FOR UPDATE OF j SKIP LOCKED;
END
$$;
