-- Whether a person's message was forwarded to the assistant (an email
-- forwarded, a Slack message shared, a WhatsApp message with the forwarded
-- flag) rather than written to it.
ALTER TABLE messages ADD COLUMN forwarded INTEGER NOT NULL DEFAULT 0;

-- Messages from people per organization, day and channel kind, direct and
-- forwarded, written with each message: the insights and the operator's
-- `steward_messages_total` read these.
CREATE TABLE channel_days (
    org_id     BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    day        INTEGER NOT NULL,
    channel    TEXT NOT NULL,
    direct     INTEGER NOT NULL,
    forwarded  INTEGER NOT NULL,
    PRIMARY KEY (org_id, day, channel)
) STRICT;

INSERT INTO channel_days (org_id, day, channel, direct, forwarded)
SELECT org_id, created_at / 86400000000, channel, COUNT(*), 0
FROM messages WHERE role = 'user'
GROUP BY org_id, created_at / 86400000000, channel;
