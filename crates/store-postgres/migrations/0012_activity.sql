-- The overview and the insights API read these instead of scanning messages.
-- Counters per organization, chatbot and day (UTC, days since 1970-01-01),
-- kept by the transaction that stores each message: messages from people,
-- replies, and conversations started. They are totals, like usage_counters:
-- deleting messages later does not lower them.
CREATE TABLE activity_days (
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    chatbot_id  uuid NOT NULL REFERENCES chatbots (id) ON DELETE CASCADE,
    day         bigint NOT NULL,
    received    bigint NOT NULL,
    replied     bigint NOT NULL,
    started     bigint NOT NULL,
    PRIMARY KEY (org_id, day, chatbot_id)
);

INSERT INTO activity_days (org_id, chatbot_id, day, received, replied, started)
SELECT org_id, chatbot_id, day, SUM(received), SUM(replied), SUM(started) FROM (
    SELECT org_id, chatbot_id, FLOOR(EXTRACT(EPOCH FROM created_at) / 86400)::bigint AS day,
           COUNT(*) FILTER (WHERE role = 'user') AS received,
           COUNT(*) FILTER (WHERE role = 'assistant') AS replied, 0 AS started
    FROM messages GROUP BY 1, 2, 3
    UNION ALL
    SELECT org_id, chatbot_id, FLOOR(EXTRACT(EPOCH FROM created_at) / 86400)::bigint, 0, 0, COUNT(*)
    FROM conversations GROUP BY 1, 2, 3
) counted GROUP BY org_id, chatbot_id, day;

-- When a person last wrote in a conversation: people active since a time are
-- the conversations active since then (a channel identity has one
-- conversation per channel).
ALTER TABLE conversations ADD COLUMN last_active_at timestamptz;
UPDATE conversations SET last_active_at = (
    SELECT MAX(created_at) FROM messages m
    WHERE m.conversation_id = conversations.id AND m.role = 'user');
CREATE INDEX conversations_active ON conversations (org_id, last_active_at)
    WHERE last_active_at IS NOT NULL;

-- Reply times are sampled from the newest replies.
CREATE INDEX messages_replies ON messages (org_id, created_at) WHERE role = 'assistant';
