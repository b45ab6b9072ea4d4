-- Every `steward backup create` run, so that the metrics can say when the
-- last backup succeeded whichever process or machine made it.
CREATE TABLE backup_runs (
    id           INTEGER PRIMARY KEY,
    backup_id    TEXT NOT NULL,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER NOT NULL,
    succeeded    INTEGER NOT NULL,
    bytes        INTEGER NOT NULL,
    error        TEXT
) STRICT;
CREATE INDEX backup_runs_latest ON backup_runs (succeeded, finished_at);

-- The maintenance job prunes expired keys by age.
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);
