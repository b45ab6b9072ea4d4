-- How long an organization keeps conversations: one whose last message from
-- a person is older than this many days is deleted by the maintenance job.
-- NULL: kept until their chatbot is deleted.
ALTER TABLE organizations ADD COLUMN retention_days INTEGER;
