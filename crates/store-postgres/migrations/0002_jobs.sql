-- The job queue. state: queued → running → succeeded, or failed (retried at
-- run_at) → dead.
CREATE TABLE jobs (
    id            uuid PRIMARY KEY,
    org_id        uuid REFERENCES organizations (id) ON DELETE CASCADE,
    kind          text NOT NULL,
    payload       jsonb NOT NULL,
    state         text NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'dead')),
    priority      integer NOT NULL DEFAULT 0,
    run_at        timestamptz NOT NULL,
    attempts      integer NOT NULL DEFAULT 0,
    max_attempts  integer NOT NULL CHECK (max_attempts > 0),
    lease_until   timestamptz,
    locked_by     text,
    last_error    text,
    ordering_key  text,
    dedupe_key    text UNIQUE,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
-- Claiming scans runnable jobs by time; leases are swept by expiry.
CREATE INDEX jobs_runnable ON jobs (run_at) WHERE state IN ('queued', 'failed');
CREATE INDEX jobs_leases ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_ordering ON jobs (ordering_key, created_at, id) WHERE ordering_key IS NOT NULL;
CREATE INDEX jobs_org ON jobs (org_id, state, created_at);
