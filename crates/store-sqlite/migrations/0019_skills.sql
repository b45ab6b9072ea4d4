-- Skills an organization uploaded (the Agent Skills format). Each upload of
-- a name is a new version; earlier versions stay, for the replies that
-- used them. Deleting a skill marks every version deleted: it is offered
-- no more, and a later upload of the name continues its versions.
CREATE TABLE skills (
    id           BLOB PRIMARY KEY,
    org_id       BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    version      INTEGER NOT NULL,
    description  TEXT NOT NULL,
    body         TEXT NOT NULL,
    skill_md     TEXT NOT NULL,
    bytes        INTEGER NOT NULL,
    uploaded_by  TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    deleted_at   INTEGER,
    UNIQUE (org_id, name, version)
) STRICT;

-- A skill version's resource files, by their path in its folder.
CREATE TABLE skill_files (
    skill_id  BLOB NOT NULL REFERENCES skills (id) ON DELETE CASCADE,
    path      TEXT NOT NULL,
    content   BLOB NOT NULL,
    PRIMARY KEY (skill_id, path)
) STRICT;

-- The skills a chatbot offers, by name (their latest version).
ALTER TABLE chatbots ADD COLUMN skills TEXT NOT NULL DEFAULT '[]';

-- Each time a reply loaded a skill (`use_skill`): once per tool call, with
-- the reply it was for (stored after it, so `reply_id` may name no row yet)
-- and the person the conversation is with.
CREATE TABLE skill_activations (
    tool_call_id     BLOB PRIMARY KEY,
    reply_id         BLOB NOT NULL,
    person_id        BLOB REFERENCES people (id) ON DELETE SET NULL,
    org_id           BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    skill_id         BLOB NOT NULL REFERENCES skills (id) ON DELETE CASCADE,
    chatbot_id       BLOB NOT NULL REFERENCES chatbots (id) ON DELETE CASCADE,
    conversation_id  BLOB NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    created_at       INTEGER NOT NULL
) STRICT;
CREATE INDEX skill_activations_org ON skill_activations (org_id, created_at);
CREATE INDEX skill_activations_reply ON skill_activations (reply_id);
