-- Patterns for insights: each answered message labelled with a category of
-- its organization's taxonomy, and counts per category and period. The
-- counts hold numbers only; the people rows exist only to count each person
-- once per cell, and go when the person is erased.

-- The organization's own taxonomy (JSON); NULL: the one Steward ships.
ALTER TABLE organizations ADD COLUMN taxonomy text;

-- A message's label, set once: the marker that it was counted.
ALTER TABLE messages ADD COLUMN category_l1 text;
ALTER TABLE messages ADD COLUMN category_l2 text;

-- Interactions and distinct people per period (span 'week': Monday to
-- Sunday, numbered as person_weeks; 'month': year * 12 + month - 1) and
-- category. A row with category_l2 '' counts the whole first-level
-- category, and one with both '' the whole period, so that people are
-- counted once at every level.
CREATE TABLE pattern_counts (
    org_id        uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    span          text NOT NULL CHECK (span IN ('week', 'month')),
    period        bigint NOT NULL,
    category_l1   text NOT NULL,
    category_l2   text NOT NULL,
    interactions  bigint NOT NULL,
    people        bigint NOT NULL,
    PRIMARY KEY (org_id, span, period, category_l1, category_l2)
);

-- Who was counted in a cell: a person's id, or for someone Steward knows
-- no person of (a web chat visitor), their conversation's id.
CREATE TABLE pattern_people (
    org_id       uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    span         text NOT NULL,
    period       bigint NOT NULL,
    category_l1  text NOT NULL,
    category_l2  text NOT NULL,
    who          uuid NOT NULL,
    PRIMARY KEY (org_id, span, period, category_l1, category_l2, who)
);
CREATE INDEX pattern_people_who ON pattern_people (who);
