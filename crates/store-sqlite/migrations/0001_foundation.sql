-- Organizations, people, chatbots, conversations and the bookkeeping around them.
-- Ids are UUIDv7 stored as 16-byte blobs; times are microseconds since the Unix epoch (UTC).

CREATE TABLE organizations (
    id          BLOB PRIMARY KEY,
    name        TEXT NOT NULL,
    tier        TEXT NOT NULL CHECK (tier IN ('free', 'pro', 'enterprise')),
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX organizations_name ON organizations (name);

CREATE TABLE users (
    id             BLOB PRIMARY KEY,
    org_id         BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email          TEXT NOT NULL UNIQUE,
    name           TEXT,
    role           TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'advisor')),
    password_hash  TEXT NOT NULL,
    created_at     INTEGER NOT NULL
) STRICT;
CREATE INDEX users_org ON users (org_id, created_at);

CREATE TABLE api_keys (
    id          BLOB PRIMARY KEY,
    org_id      BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    prefix      TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'advisor')),
    key_hash    TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
) STRICT;
CREATE INDEX api_keys_org ON api_keys (org_id, created_at);

CREATE TABLE chatbots (
    id             BLOB PRIMARY KEY,
    org_id         BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    system_prompt  TEXT NOT NULL,
    temperature    REAL NOT NULL CHECK (temperature BETWEEN 0.0 AND 2.0),
    model          TEXT,
    status         TEXT NOT NULL CHECK (status IN ('active', 'paused')),
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
) STRICT;
CREATE INDEX chatbots_org ON chatbots (org_id, created_at, id);

CREATE TABLE conversations (
    id          BLOB PRIMARY KEY,
    org_id      BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    chatbot_id  BLOB NOT NULL REFERENCES chatbots (id) ON DELETE CASCADE,
    channel     TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX conversations_chatbot ON conversations (chatbot_id);

CREATE TABLE messages (
    id               BLOB PRIMARY KEY,
    org_id           BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    chatbot_id       BLOB NOT NULL REFERENCES chatbots (id) ON DELETE CASCADE,
    conversation_id  BLOB NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role             TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    text             TEXT NOT NULL,
    channel          TEXT NOT NULL,
    external_id      TEXT,
    created_at       INTEGER NOT NULL
) STRICT;
-- History pages walk this index newest first, scoped by org and chatbot.
CREATE INDEX messages_history ON messages (org_id, chatbot_id, created_at, id);
CREATE INDEX messages_conversation ON messages (conversation_id, created_at, id);
-- A channel's message id is stored once: the root of webhook deduplication.
CREATE UNIQUE INDEX messages_external ON messages (chatbot_id, channel, external_id)
    WHERE external_id IS NOT NULL;

CREATE TABLE usage_counters (
    org_id    BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    period    TEXT NOT NULL,
    messages  INTEGER NOT NULL DEFAULT 0,
    tokens    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, period)
) STRICT;

CREATE TABLE integrations (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    description  TEXT NOT NULL,
    position     INTEGER NOT NULL
) STRICT;

INSERT INTO integrations (id, name, description, position) VALUES
    ('pricing-calculator', 'Pricing calculator', 'Quotes prices from the organization''s price list inside a conversation.', 1),
    ('lead-capture', 'Lead capture', 'Collects a visitor''s contact details and hands them to the organization.', 2),
    ('contact-owner', 'Contact the owner', 'Passes a conversation to a person of the organization when the assistant cannot help.', 3);

CREATE TABLE org_integrations (
    org_id          BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    integration_id  TEXT NOT NULL REFERENCES integrations (id),
    config          TEXT NOT NULL,
    enabled_at      INTEGER NOT NULL,
    PRIMARY KEY (org_id, integration_id)
) STRICT;

CREATE TABLE audit_log (
    id          BLOB PRIMARY KEY,
    org_id      BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    details     TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX audit_log_org ON audit_log (org_id, created_at);

-- status is NULL while the first request with the key is still running.
CREATE TABLE idempotency_keys (
    caller        TEXT NOT NULL,
    key           TEXT NOT NULL,
    org_id        BLOB,
    request_hash  TEXT NOT NULL,
    status        INTEGER,
    content_type  TEXT,
    body          BLOB,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (caller, key)
) STRICT;
