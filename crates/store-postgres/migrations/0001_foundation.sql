-- Organizations, people, chatbots, conversations and the bookkeeping around them.
-- The same shape as the SQLite schema, in PostgreSQL's own types.

CREATE TABLE organizations (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    tier        text NOT NULL CHECK (tier IN ('free', 'pro', 'enterprise')),
    created_at  timestamptz NOT NULL
);
CREATE INDEX organizations_name ON organizations (name);

CREATE TABLE users (
    id             uuid PRIMARY KEY,
    org_id         uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email          text NOT NULL UNIQUE,
    name           text,
    role           text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'advisor')),
    password_hash  text NOT NULL,
    created_at     timestamptz NOT NULL
);
CREATE INDEX users_org ON users (org_id, created_at);

CREATE TABLE api_keys (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name        text NOT NULL,
    prefix      text NOT NULL,
    role        text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'advisor')),
    key_hash    text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX api_keys_org ON api_keys (org_id, created_at);

CREATE TABLE chatbots (
    id             uuid PRIMARY KEY,
    org_id         uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name           text NOT NULL,
    system_prompt  text NOT NULL,
    temperature    double precision NOT NULL CHECK (temperature BETWEEN 0.0 AND 2.0),
    model          text,
    status         text NOT NULL CHECK (status IN ('active', 'paused')),
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);
CREATE INDEX chatbots_org ON chatbots (org_id, created_at, id);

CREATE TABLE conversations (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    chatbot_id  uuid NOT NULL REFERENCES chatbots (id) ON DELETE CASCADE,
    channel     text NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE INDEX conversations_chatbot ON conversations (chatbot_id);

CREATE TABLE messages (
    id               uuid PRIMARY KEY,
    org_id           uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    chatbot_id       uuid NOT NULL REFERENCES chatbots (id) ON DELETE CASCADE,
    conversation_id  uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role             text NOT NULL CHECK (role IN ('user', 'assistant')),
    text             text NOT NULL,
    channel          text NOT NULL,
    external_id      text,
    created_at       timestamptz NOT NULL
);
-- History pages walk this index newest first, scoped by org and chatbot.
CREATE INDEX messages_history ON messages (org_id, chatbot_id, created_at, id);
CREATE INDEX messages_conversation ON messages (conversation_id, created_at, id);
-- A channel's message id is stored once: the root of webhook deduplication.
CREATE UNIQUE INDEX messages_external ON messages (chatbot_id, channel, external_id)
    WHERE external_id IS NOT NULL;

CREATE TABLE usage_counters (
    org_id    uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    period    text NOT NULL,
    messages  bigint NOT NULL DEFAULT 0,
    tokens    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, period)
);

CREATE TABLE integrations (
    id           text PRIMARY KEY,
    name         text NOT NULL,
    description  text NOT NULL,
    position     integer NOT NULL
);

INSERT INTO integrations (id, name, description, position) VALUES
    ('pricing-calculator', 'Pricing calculator', 'Quotes prices from the organization''s price list inside a conversation.', 1),
    ('lead-capture', 'Lead capture', 'Collects a visitor''s contact details and hands them to the organization.', 2),
    ('contact-owner', 'Contact the owner', 'Passes a conversation to a person of the organization when the assistant cannot help.', 3);

CREATE TABLE org_integrations (
    org_id          uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    integration_id  text NOT NULL REFERENCES integrations (id),
    config          jsonb NOT NULL,
    enabled_at      timestamptz NOT NULL,
    PRIMARY KEY (org_id, integration_id)
);

CREATE TABLE audit_log (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    actor       text NOT NULL,
    action      text NOT NULL,
    target      text NOT NULL,
    details     jsonb NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE INDEX audit_log_org ON audit_log (org_id, created_at);

-- status is NULL while the first request with the key is still running.
CREATE TABLE idempotency_keys (
    caller        text NOT NULL,
    key           text NOT NULL,
    org_id        uuid,
    request_hash  text NOT NULL,
    status        integer,
    content_type  text,
    body          bytea,
    created_at    timestamptz NOT NULL,
    PRIMARY KEY (caller, key)
);
