-- The erasure ledger: each person erased, by id alone (never what was
-- erased). It is kept here and, outside the backed-up data, beside the
-- backups; a restore re-applies both, so an erased person never comes back.
CREATE TABLE erasures (
    org_id     BLOB NOT NULL,
    person_id  BLOB NOT NULL,
    erased_at  INTEGER NOT NULL,
    PRIMARY KEY (org_id, person_id)
) STRICT;
