-- Personal memory: what a person told an assistant about themselves,
-- sealed under a key of that person's own (itself sealed under the master
-- key), so destroying their keys makes every copy of it unreadable.
-- An organization may turn memory off; its people's facts are then deleted.
ALTER TABLE organizations ADD COLUMN memory INTEGER NOT NULL DEFAULT 1;

-- A person may hold several keys (a merge keeps both people's); each fact
-- names the one it was sealed with.
CREATE TABLE person_keys (
    id          BLOB PRIMARY KEY,
    org_id      BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    person_id   BLOB NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    sealed      BLOB NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX person_keys_person ON person_keys (person_id);

CREATE TABLE memory_facts (
    id                 BLOB PRIMARY KEY,
    org_id             BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    person_id          BLOB NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    key_id             BLOB NOT NULL REFERENCES person_keys (id) ON DELETE CASCADE,
    sealed             BLOB NOT NULL,
    -- The message it was learnt from: a retried extraction finds it done.
    source_message_id  BLOB,
    created_at         INTEGER NOT NULL
) STRICT;
CREATE INDEX memory_facts_person ON memory_facts (person_id, created_at);
CREATE INDEX memory_facts_key ON memory_facts (key_id);
CREATE INDEX memory_facts_org ON memory_facts (org_id);
