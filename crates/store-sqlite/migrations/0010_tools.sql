-- Every tool call a reply makes, journaled before it is made: a retried
-- respond job reads its calls back instead of making them again, and a call's
-- id is the idempotency key its server sees. The reply it belongs to is not
-- stored yet when its calls are, so `reply_id` names no row.
CREATE TABLE tool_calls (
    id               BLOB PRIMARY KEY,
    org_id           BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    conversation_id  BLOB NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    job_id           BLOB NOT NULL,
    reply_id         BLOB NOT NULL,
    step             INTEGER NOT NULL,
    position         INTEGER NOT NULL,
    step_text        TEXT NOT NULL,
    call_id          TEXT NOT NULL,
    server           TEXT NOT NULL,
    tool             TEXT NOT NULL,
    input            TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('started', 'succeeded', 'failed')),
    result           TEXT,
    started_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    UNIQUE (job_id, step, position)
) STRICT;
CREATE INDEX tool_calls_conversation ON tool_calls (conversation_id, started_at);

-- The tools a chatbot may call, as `server.tool` names: none by default.
ALTER TABLE chatbots ADD COLUMN tools TEXT NOT NULL DEFAULT '[]';

-- Leads recorded by the lead-capture tool. One per tool call: the call's
-- journal id is its idempotency key, so a call made again records nothing new.
CREATE TABLE leads (
    id               BLOB PRIMARY KEY,
    org_id           BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    chatbot_id       BLOB REFERENCES chatbots (id) ON DELETE SET NULL,
    conversation_id  BLOB REFERENCES conversations (id) ON DELETE SET NULL,
    tool_call_id     BLOB NOT NULL UNIQUE,
    name             TEXT NOT NULL,
    email            TEXT,
    phone            TEXT,
    company          TEXT,
    note             TEXT,
    created_at       INTEGER NOT NULL
) STRICT;
CREATE INDEX leads_org ON leads (org_id, created_at, id);

-- MCP servers an organization connects. Headers (API keys) are sealed like
-- channel secrets, with the server's id as associated data.
CREATE TABLE tool_servers (
    id              BLOB PRIMARY KEY,
    org_id          BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    url             TEXT NOT NULL,
    sealed_headers  BLOB NOT NULL,
    timeout_secs    INTEGER NOT NULL,
    allowed_tools   TEXT,
    created_at      INTEGER NOT NULL,
    last_ok_at      INTEGER,
    last_error      TEXT,
    last_error_at   INTEGER,
    UNIQUE (org_id, name)
) STRICT;

-- A conversation handed to a person (the contact-owner tool): the assistant
-- stays quiet in it until an admin releases it.
ALTER TABLE conversations ADD COLUMN handed_off_at INTEGER;
