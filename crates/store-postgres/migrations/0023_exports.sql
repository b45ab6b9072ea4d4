-- Exports of everything Steward holds about a person: a zip in the blob
-- store, downloadable for a day, then deleted with its row by the sweep
-- (`export` jobs with no export named). An erasure ends its person's
-- exports at once.
CREATE TABLE exports (
    id            uuid PRIMARY KEY,
    org_id        uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    person_id     uuid NOT NULL,
    requested_by  text NOT NULL,
    state         text NOT NULL CHECK (state IN ('pending', 'ready', 'failed')),
    blob_key      text,
    bytes         bigint,
    reason        text,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL
);
CREATE INDEX exports_expiry ON exports (expires_at);
CREATE INDEX exports_person ON exports (person_id);
