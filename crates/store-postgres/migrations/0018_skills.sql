-- Skills an organization uploaded (the Agent Skills format). Each upload of
-- a name is a new version; earlier versions stay, for the replies that
-- used them. Deleting a skill marks every version deleted: it is offered
-- no more, and a later upload of the name continues its versions.
CREATE TABLE skills (
    id           uuid PRIMARY KEY,
    org_id       uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name         text NOT NULL,
    version      bigint NOT NULL,
    description  text NOT NULL,
    body         text NOT NULL,
    skill_md     text NOT NULL,
    bytes        bigint NOT NULL,
    uploaded_by  text NOT NULL,
    created_at   timestamptz NOT NULL,
    deleted_at   timestamptz,
    UNIQUE (org_id, name, version)
);

-- A skill version's resource files, by their path in its folder.
CREATE TABLE skill_files (
    skill_id  uuid NOT NULL REFERENCES skills (id) ON DELETE CASCADE,
    path      text NOT NULL,
    content   bytea NOT NULL,
    PRIMARY KEY (skill_id, path)
);

-- The skills a chatbot offers, by name (their latest version).
ALTER TABLE chatbots ADD COLUMN skills jsonb NOT NULL DEFAULT '[]';

-- Each time a reply loaded a skill (`use_skill`): once per tool call, with
-- the reply it was for (stored after it, so `reply_id` may name no row yet)
-- and the person the conversation is with.
CREATE TABLE skill_activations (
    tool_call_id     uuid PRIMARY KEY,
    reply_id         uuid NOT NULL,
    person_id        uuid REFERENCES people (id) ON DELETE SET NULL,
    org_id           uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    skill_id         uuid NOT NULL REFERENCES skills (id) ON DELETE CASCADE,
    chatbot_id       uuid NOT NULL REFERENCES chatbots (id) ON DELETE CASCADE,
    conversation_id  uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    created_at       timestamptz NOT NULL
);
CREATE INDEX skill_activations_org ON skill_activations (org_id, created_at);
CREATE INDEX skill_activations_reply ON skill_activations (reply_id);
