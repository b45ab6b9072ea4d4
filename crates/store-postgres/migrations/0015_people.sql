-- People: one row per human who talks to an organization's assistants,
-- with every handle they are known by. A message's author and a
-- conversation's person point here; a merge moves them.
CREATE TABLE people (
    id            uuid PRIMARY KEY,
    org_id        uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name          text,
    created_at    timestamptz NOT NULL,
    last_seen_at  timestamptz
);
-- Lists page newest first by id (UUIDv7: creation order).
CREATE INDEX people_org ON people (org_id, id);

-- A handle belongs to one person of an organization: the same phone number
-- in two organizations is two people.
CREATE TABLE person_identities (
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('member', 'email', 'whatsapp', 'slack', 'teams',
                                              'telegram', 'web', 'generic')),
    handle      text NOT NULL,
    person_id   uuid NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (org_id, kind, handle)
);
CREATE INDEX person_identities_person ON person_identities (person_id);

-- Who wrote a person's message; who a conversation is with (its first writer).
ALTER TABLE messages ADD COLUMN person_id uuid REFERENCES people (id) ON DELETE SET NULL;
CREATE INDEX messages_person ON messages (person_id) WHERE person_id IS NOT NULL;
ALTER TABLE conversations ADD COLUMN person_id uuid REFERENCES people (id) ON DELETE SET NULL;
CREATE INDEX conversations_person ON conversations (person_id, created_at)
    WHERE person_id IS NOT NULL;

-- Who wrote on which day (UTC, days since 1970-01-01), written with each
-- message: people active in a day, a week or a month are counted here, never
-- by scanning messages.
CREATE TABLE person_days (
    org_id     uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    day        bigint NOT NULL,
    person_id  uuid NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    PRIMARY KEY (org_id, day, person_id)
);
CREATE INDEX person_days_person ON person_days (person_id);

-- The same by week (Monday to Sunday, UTC; week n starts on day 7n - 3).
CREATE TABLE person_weeks (
    org_id     uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    week       bigint NOT NULL,
    person_id  uuid NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    PRIMARY KEY (org_id, week, person_id)
);
CREATE INDEX person_weeks_person ON person_weeks (person_id);

-- How many people wrote in each day and week: one more when a person's
-- first message of the day or week makes its row above, one less when a
-- merge finds the two people wrote in the same one. Read by the insights
-- instead of counting the rows above.
CREATE TABLE people_counts (
    org_id  uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    span    TEXT NOT NULL CHECK (span IN ('day', 'week')),
    number  bigint NOT NULL,
    people  bigint NOT NULL,
    PRIMARY KEY (org_id, span, number)
);

-- Every member is a person, known by their account and their email address.
-- (Messages stored before people existed keep no author.)
INSERT INTO people (id, org_id, name, created_at)
SELECT id, org_id, name, created_at FROM users;
INSERT INTO person_identities (org_id, kind, handle, person_id, created_at)
SELECT org_id, 'member', id::text, id, created_at FROM users;
INSERT INTO person_identities (org_id, kind, handle, person_id, created_at)
SELECT org_id, 'email', email, id, created_at FROM users;
