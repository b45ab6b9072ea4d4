-- The claim takes runnable jobs in the order of this index and stops at its
-- limit, however many are waiting; the index it replaces (run_at alone)
-- made every claim read and sort the whole backlog.
DROP INDEX jobs_runnable;
CREATE INDEX jobs_claim_order ON jobs (priority DESC, run_at, created_at, id)
    WHERE state IN ('queued', 'failed');
