-- A password someone else set (a one-time password) must be changed at the
-- next sign-in; each change moves the user's session generation on, which
-- signs out every token issued before it.
ALTER TABLE users ADD COLUMN must_change_password BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE users ADD COLUMN session_generation BIGINT NOT NULL DEFAULT 0;
