-- An API key belongs to the member who made it: it acts with no more than
-- that member's role, and dies with their membership.
ALTER TABLE api_keys ADD COLUMN created_by uuid REFERENCES users (id) ON DELETE SET NULL;
