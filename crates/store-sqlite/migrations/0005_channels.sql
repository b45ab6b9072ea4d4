-- A chatbot's channels. `settings` holds the configuration that may be shown;
-- `secrets` the tokens and passwords, sealed with AES-256-GCM under the master
-- key (the channel id is the associated data, so a sealed value cannot be
-- moved to another row). `cursor` is where polling stopped (a mailbox's UID).
CREATE TABLE channels (
    id                BLOB PRIMARY KEY,
    org_id            BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    chatbot_id        BLOB NOT NULL REFERENCES chatbots (id) ON DELETE CASCADE,
    kind              TEXT NOT NULL,
    name              TEXT NOT NULL,
    settings          TEXT NOT NULL,
    secrets           BLOB NOT NULL,
    cursor            TEXT,
    created_at        INTEGER NOT NULL,
    last_inbound_at   INTEGER,
    last_outbound_at  INTEGER,
    last_error        TEXT,
    last_error_at     INTEGER,
    -- Errors counted in a fixed one-hour window that starts at the first error
    -- after the previous window ended.
    error_window_at   INTEGER,
    error_window_count INTEGER NOT NULL DEFAULT 0,
    UNIQUE (chatbot_id, name)
) STRICT;
CREATE INDEX channels_org ON channels (org_id, chatbot_id);

-- A conversation on a channel belongs to one external user or thread.
ALTER TABLE conversations ADD COLUMN channel_id BLOB REFERENCES channels (id) ON DELETE SET NULL;
ALTER TABLE conversations ADD COLUMN external_key TEXT;
CREATE UNIQUE INDEX conversations_external ON conversations (channel_id, external_key)
    WHERE channel_id IS NOT NULL;

-- Inbound messages are unique per channel by the provider's id: a retried
-- webhook finds its message already stored. `meta` keeps what a reply needs
-- to find its way back (a thread, a Message-ID, a chat).
ALTER TABLE messages ADD COLUMN channel_id BLOB REFERENCES channels (id) ON DELETE SET NULL;
ALTER TABLE messages ADD COLUMN meta TEXT;
DROP INDEX messages_external;
CREATE UNIQUE INDEX messages_external ON messages (channel_id, external_id)
    WHERE channel_id IS NOT NULL AND external_id IS NOT NULL;

-- The parts of a reply already sent, so that a retried delivery skips them.
CREATE TABLE deliveries (
    message_id   BLOB NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    part         INTEGER NOT NULL,
    org_id       BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    external_id  TEXT,
    sent_at      INTEGER NOT NULL,
    PRIMARY KEY (message_id, part)
) STRICT;
