-- How each skill was used, per day (UTC, days since 1970-01-01), by name:
-- its loads on the day of each, and the ratings of the replies that loaded
-- it on the day the reply first loaded a skill. Kept by each activation and
-- each rating in its own transaction; the insights and the metrics read
-- these, never the activations.
CREATE TABLE skill_days (
    org_id       uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    day          bigint NOT NULL,
    skill        text NOT NULL,
    activations  bigint NOT NULL,
    rated_up     bigint NOT NULL,
    rated_down   bigint NOT NULL,
    PRIMARY KEY (org_id, day, skill)
);

-- Replies that loaded any skill, per chatbot, on the day of their first load.
ALTER TABLE activity_days ADD COLUMN with_skills bigint NOT NULL DEFAULT 0;

-- Filled from what is stored.
INSERT INTO skill_days (org_id, day, skill, activations, rated_up, rated_down)
SELECT a.org_id, FLOOR(EXTRACT(EPOCH FROM a.created_at) / 86400)::bigint, s.name, COUNT(*), 0, 0
FROM skill_activations a JOIN skills s ON s.id = a.skill_id
GROUP BY 1, 2, 3;

INSERT INTO skill_days (org_id, day, skill, activations, rated_up, rated_down)
SELECT l.org_id, r.day, l.name, 0,
       COUNT(*) FILTER (WHERE f.rating = 'up'), COUNT(*) FILTER (WHERE f.rating = 'down')
FROM (SELECT DISTINCT a.org_id, a.reply_id, s.name
      FROM skill_activations a JOIN skills s ON s.id = a.skill_id) l
JOIN (SELECT reply_id, FLOOR(EXTRACT(EPOCH FROM MIN(created_at)) / 86400)::bigint AS day
      FROM skill_activations GROUP BY reply_id) r ON r.reply_id = l.reply_id
JOIN feedback f ON f.message_id = l.reply_id
GROUP BY l.org_id, r.day, l.name
ON CONFLICT (org_id, day, skill) DO UPDATE SET
    rated_up = skill_days.rated_up + excluded.rated_up,
    rated_down = skill_days.rated_down + excluded.rated_down;

INSERT INTO activity_days (org_id, chatbot_id, day, received, replied, started, with_skills)
SELECT org_id, chatbot_id, day, 0, 0, 0, COUNT(*)
FROM (SELECT org_id, chatbot_id, reply_id,
             FLOOR(EXTRACT(EPOCH FROM MIN(created_at)) / 86400)::bigint AS day
      FROM skill_activations GROUP BY org_id, chatbot_id, reply_id) first_loads
GROUP BY org_id, chatbot_id, day
ON CONFLICT (org_id, day, chatbot_id) DO UPDATE SET
    with_skills = activity_days.with_skills + excluded.with_skills;
