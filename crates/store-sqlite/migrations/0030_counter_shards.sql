-- The shared counters take a shard in their keys, as on PostgreSQL, where
-- they are split so that an organization's messages do not commit one at a
-- time. SQLite has one writer: it always writes shard 0. (SQLite cannot
-- change a primary key, so the tables are made again.)
CREATE TABLE usage_counters_sharded (
    org_id    BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    period    TEXT NOT NULL,
    shard     INTEGER NOT NULL DEFAULT 0,
    messages  INTEGER NOT NULL DEFAULT 0,
    tokens    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, period, shard)
) STRICT;
INSERT INTO usage_counters_sharded (org_id, period, messages, tokens)
SELECT org_id, period, messages, tokens FROM usage_counters;
DROP TABLE usage_counters;
ALTER TABLE usage_counters_sharded RENAME TO usage_counters;

CREATE TABLE activity_days_sharded (
    org_id       BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    chatbot_id   BLOB NOT NULL REFERENCES chatbots (id) ON DELETE CASCADE,
    day          INTEGER NOT NULL,
    shard        INTEGER NOT NULL DEFAULT 0,
    received     INTEGER NOT NULL,
    replied      INTEGER NOT NULL,
    started      INTEGER NOT NULL,
    rated_up     INTEGER NOT NULL DEFAULT 0,
    rated_down   INTEGER NOT NULL DEFAULT 0,
    with_skills  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, day, chatbot_id, shard)
) STRICT;
INSERT INTO activity_days_sharded (org_id, chatbot_id, day, received, replied, started,
                                   rated_up, rated_down, with_skills)
SELECT org_id, chatbot_id, day, received, replied, started, rated_up, rated_down, with_skills
FROM activity_days;
DROP TABLE activity_days;
ALTER TABLE activity_days_sharded RENAME TO activity_days;

CREATE TABLE channel_days_sharded (
    org_id     BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    day        INTEGER NOT NULL,
    channel    TEXT NOT NULL,
    shard      INTEGER NOT NULL DEFAULT 0,
    direct     INTEGER NOT NULL,
    forwarded  INTEGER NOT NULL,
    PRIMARY KEY (org_id, day, channel, shard)
) STRICT;
INSERT INTO channel_days_sharded (org_id, day, channel, direct, forwarded)
SELECT org_id, day, channel, direct, forwarded FROM channel_days;
DROP TABLE channel_days;
ALTER TABLE channel_days_sharded RENAME TO channel_days;

CREATE TABLE people_counts_sharded (
    org_id  BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    span    TEXT NOT NULL CHECK (span IN ('day', 'week')),
    number  INTEGER NOT NULL,
    shard   INTEGER NOT NULL DEFAULT 0,
    people  INTEGER NOT NULL,
    PRIMARY KEY (org_id, span, number, shard)
) STRICT;
INSERT INTO people_counts_sharded (org_id, span, number, people)
SELECT org_id, span, number, people FROM people_counts;
DROP TABLE people_counts;
ALTER TABLE people_counts_sharded RENAME TO people_counts;
