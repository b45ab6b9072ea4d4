-- The job queue. state: queued → running → succeeded, or failed (retried at
-- run_at) → dead. Times are microseconds since the Unix epoch.
CREATE TABLE jobs (
    id            BLOB PRIMARY KEY,
    org_id        BLOB REFERENCES organizations (id) ON DELETE CASCADE,
    kind          TEXT NOT NULL,
    payload       TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'dead')),
    priority      INTEGER NOT NULL DEFAULT 0,
    run_at        INTEGER NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL CHECK (max_attempts > 0),
    lease_until   INTEGER,
    locked_by     TEXT,
    last_error    TEXT,
    ordering_key  TEXT,
    dedupe_key    TEXT UNIQUE,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;
-- Claiming scans runnable jobs by time; leases are swept by expiry.
CREATE INDEX jobs_runnable ON jobs (run_at) WHERE state IN ('queued', 'failed');
CREATE INDEX jobs_leases ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_ordering ON jobs (ordering_key, created_at, id) WHERE ordering_key IS NOT NULL;
CREATE INDEX jobs_org ON jobs (org_id, state, created_at);
