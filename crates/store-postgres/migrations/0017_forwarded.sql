-- Whether a person's message was forwarded to the assistant (an email
-- forwarded, a Slack message shared, a WhatsApp message with the forwarded
-- flag) rather than written to it.
ALTER TABLE messages ADD COLUMN forwarded boolean NOT NULL DEFAULT false;

-- Messages from people per organization, day and channel kind, direct and
-- forwarded, written with each message: the insights and the operator's
-- `steward_messages_total` read these.
CREATE TABLE channel_days (
    org_id     uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    day        bigint NOT NULL,
    channel    text NOT NULL,
    direct     bigint NOT NULL,
    forwarded  bigint NOT NULL,
    PRIMARY KEY (org_id, day, channel)
);

INSERT INTO channel_days (org_id, day, channel, direct, forwarded)
SELECT org_id, FLOOR(EXTRACT(EPOCH FROM created_at) / 86400)::bigint, channel, COUNT(*), 0
FROM messages WHERE role = 'user'
GROUP BY 1, 2, channel;
