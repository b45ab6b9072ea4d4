-- Every tool call a reply makes, journaled before it is made: a retried
-- respond job reads its calls back instead of making them again, and a call's
-- id is the idempotency key its server sees. The reply it belongs to is not
-- stored yet when its calls are, so `reply_id` names no row.
CREATE TABLE tool_calls (
    id               uuid PRIMARY KEY,
    org_id           uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    conversation_id  uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    job_id           uuid NOT NULL,
    reply_id         uuid NOT NULL,
    step             integer NOT NULL,
    position         integer NOT NULL,
    step_text        text NOT NULL,
    call_id          text NOT NULL,
    server           text NOT NULL,
    tool             text NOT NULL,
    input            text NOT NULL,
    status           text NOT NULL CHECK (status IN ('started', 'succeeded', 'failed')),
    result           text,
    started_at       timestamptz NOT NULL,
    finished_at      timestamptz,
    UNIQUE (job_id, step, position)
);
CREATE INDEX tool_calls_conversation ON tool_calls (conversation_id, started_at);

-- The tools a chatbot may call, as `server.tool` names: none by default.
ALTER TABLE chatbots ADD COLUMN tools jsonb NOT NULL DEFAULT '[]';

-- Leads recorded by the lead-capture tool. One per tool call: the call's
-- journal id is its idempotency key, so a call made again records nothing new.
CREATE TABLE leads (
    id               uuid PRIMARY KEY,
    org_id           uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    chatbot_id       uuid REFERENCES chatbots (id) ON DELETE SET NULL,
    conversation_id  uuid REFERENCES conversations (id) ON DELETE SET NULL,
    tool_call_id     uuid NOT NULL UNIQUE,
    name             text NOT NULL,
    email            text,
    phone            text,
    company          text,
    note             text,
    created_at       timestamptz NOT NULL
);
CREATE INDEX leads_org ON leads (org_id, created_at, id);

-- MCP servers an organization connects. Headers (API keys) are sealed like
-- channel secrets, with the server's id as associated data.
CREATE TABLE tool_servers (
    id              uuid PRIMARY KEY,
    org_id          uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name            text NOT NULL,
    url             text NOT NULL,
    sealed_headers  bytea NOT NULL,
    timeout_secs    integer NOT NULL,
    allowed_tools   jsonb,
    created_at      timestamptz NOT NULL,
    last_ok_at      timestamptz,
    last_error      text,
    last_error_at   timestamptz,
    UNIQUE (org_id, name)
);

-- A conversation handed to a person (the contact-owner tool): the assistant
-- stays quiet in it until an admin releases it.
ALTER TABLE conversations ADD COLUMN handed_off_at timestamptz;
