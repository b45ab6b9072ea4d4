-- The console's and the API's list of conversations: newest first per organization.
CREATE INDEX conversations_recent ON conversations (org_id, created_at, id);
