-- Exports of everything Steward holds about a person: a zip in the blob
-- store, downloadable for a day, then deleted with its row by the sweep
-- (`export` jobs with no export named). An erasure ends its person's
-- exports at once.
CREATE TABLE exports (
    id            BLOB PRIMARY KEY,
    org_id        BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    person_id     BLOB NOT NULL,
    requested_by  TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('pending', 'ready', 'failed')),
    blob_key      TEXT,
    bytes         INTEGER,
    reason        TEXT,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX exports_expiry ON exports (expires_at);
CREATE INDEX exports_person ON exports (person_id);
