-- Who may use a skill when not everyone may: people by id, and members by
-- role. A skill with no rows here is offered to everyone its chatbots talk
-- to. Kept by name, so a new version keeps its assignees; deleting the
-- skill deletes them.
CREATE TABLE skill_assignees (
    org_id     uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    skill      text NOT NULL,
    person_id  uuid REFERENCES people (id) ON DELETE CASCADE,
    role       text CHECK (role IN ('owner', 'admin', 'member', 'advisor')),
    CHECK ((person_id IS NULL) <> (role IS NULL))
);
CREATE UNIQUE INDEX skill_assignees_person ON skill_assignees (org_id, skill, person_id)
    WHERE person_id IS NOT NULL;
CREATE UNIQUE INDEX skill_assignees_role ON skill_assignees (org_id, skill, role)
    WHERE role IS NOT NULL;
-- A merge moves a person's assignments; deleting a person deletes them.
CREATE INDEX skill_assignees_of ON skill_assignees (person_id) WHERE person_id IS NOT NULL;
