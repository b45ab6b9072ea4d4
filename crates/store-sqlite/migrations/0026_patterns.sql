-- Patterns for insights: each answered message labelled with a category of
-- its organization's taxonomy, and counts per category and period. The
-- counts hold numbers only; the people rows exist only to count each person
-- once per cell, and go when the person is erased.

-- The organization's own taxonomy (JSON); NULL: the one Steward ships.
ALTER TABLE organizations ADD COLUMN taxonomy TEXT;

-- A message's label, set once: the marker that it was counted.
ALTER TABLE messages ADD COLUMN category_l1 TEXT;
ALTER TABLE messages ADD COLUMN category_l2 TEXT;

-- Interactions and distinct people per period (span 'week': Monday to
-- Sunday, numbered as person_weeks; 'month': year * 12 + month - 1) and
-- category. A row with category_l2 '' counts the whole first-level
-- category, and one with both '' the whole period, so that people are
-- counted once at every level.
CREATE TABLE pattern_counts (
    org_id        BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    span          TEXT NOT NULL CHECK (span IN ('week', 'month')),
    period        INTEGER NOT NULL,
    category_l1   TEXT NOT NULL,
    category_l2   TEXT NOT NULL,
    interactions  INTEGER NOT NULL,
    people        INTEGER NOT NULL,
    PRIMARY KEY (org_id, span, period, category_l1, category_l2)
) STRICT;

-- Who was counted in a cell: a person's id, or for someone Steward knows
-- no person of (a web chat visitor), their conversation's id.
CREATE TABLE pattern_people (
    org_id       BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    span         TEXT NOT NULL,
    period       INTEGER NOT NULL,
    category_l1  TEXT NOT NULL,
    category_l2  TEXT NOT NULL,
    who          BLOB NOT NULL,
    PRIMARY KEY (org_id, span, period, category_l1, category_l2, who)
) STRICT;
CREATE INDEX pattern_people_who ON pattern_people (who);
