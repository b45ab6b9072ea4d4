-- A chatbot's channels. `settings` holds the configuration that may be shown;
-- `secrets` the tokens and passwords, sealed with AES-256-GCM under the master
-- key (the channel id is the associated data, so a sealed value cannot be
-- moved to another row). `cursor` is where polling stopped (a mailbox's UID).
CREATE TABLE channels (
    id                 uuid PRIMARY KEY,
    org_id             uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    chatbot_id         uuid NOT NULL REFERENCES chatbots (id) ON DELETE CASCADE,
    kind               text NOT NULL,
    name               text NOT NULL,
    settings           jsonb NOT NULL,
    secrets            bytea NOT NULL,
    cursor             jsonb,
    created_at         timestamptz NOT NULL,
    last_inbound_at    timestamptz,
    last_outbound_at   timestamptz,
    last_error         text,
    last_error_at      timestamptz,
    -- Errors counted in a fixed one-hour window that starts at the first error
    -- after the previous window ended.
    error_window_at    timestamptz,
    error_window_count integer NOT NULL DEFAULT 0,
    UNIQUE (chatbot_id, name)
);
CREATE INDEX channels_org ON channels (org_id, chatbot_id);

-- A conversation on a channel belongs to one external user or thread.
ALTER TABLE conversations ADD COLUMN channel_id uuid REFERENCES channels (id) ON DELETE SET NULL;
ALTER TABLE conversations ADD COLUMN external_key text;
CREATE UNIQUE INDEX conversations_external ON conversations (channel_id, external_key)
    WHERE channel_id IS NOT NULL;

-- Inbound messages are unique per channel by the provider's id: a retried
-- webhook finds its message already stored. `meta` keeps what a reply needs
-- to find its way back (a thread, a Message-ID, a chat).
ALTER TABLE messages ADD COLUMN channel_id uuid REFERENCES channels (id) ON DELETE SET NULL;
ALTER TABLE messages ADD COLUMN meta jsonb;
DROP INDEX messages_external;
CREATE UNIQUE INDEX messages_external ON messages (channel_id, external_id)
    WHERE channel_id IS NOT NULL AND external_id IS NOT NULL;

-- The parts of a reply already sent, so that a retried delivery skips them.
CREATE TABLE deliveries (
    message_id   uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    part         integer NOT NULL,
    org_id       uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    external_id  text,
    sent_at      timestamptz NOT NULL,
    PRIMARY KEY (message_id, part)
);
