-- What people thought of replies: one rating per person and reply, which a
-- second replaces.
CREATE TABLE feedback (
    message_id  uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    person_id   uuid NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    chatbot_id  uuid NOT NULL REFERENCES chatbots (id) ON DELETE CASCADE,
    rating      text NOT NULL CHECK (rating IN ('up', 'down')),
    comment     text,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (message_id, person_id)
);
CREATE INDEX feedback_org ON feedback (org_id, created_at);
CREATE INDEX feedback_person ON feedback (person_id);

-- A reaction names the provider's id of the reply it is on.
CREATE INDEX deliveries_external ON deliveries (org_id, external_id)
    WHERE external_id IS NOT NULL;

-- The ratings each chatbot's replies hold, by the day each was first given:
-- kept by every rating, change and withdrawal in its own transaction, so
-- the insights read them instead of counting ratings.
ALTER TABLE activity_days ADD COLUMN rated_up bigint NOT NULL DEFAULT 0;
ALTER TABLE activity_days ADD COLUMN rated_down bigint NOT NULL DEFAULT 0;
