-- Every `steward backup create` run, so that the metrics can say when the
-- last backup succeeded whichever process or machine made it.
CREATE TABLE backup_runs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    backup_id    text NOT NULL,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL,
    succeeded    boolean NOT NULL,
    bytes        bigint NOT NULL,
    error        text
);
CREATE INDEX backup_runs_latest ON backup_runs (succeeded, finished_at);

-- The maintenance job prunes expired keys by age.
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);
