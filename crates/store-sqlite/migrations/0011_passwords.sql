-- A password someone else set (a one-time password) must be changed at the
-- next sign-in; each change moves the user's session generation on, which
-- signs out every token issued before it.
ALTER TABLE users ADD COLUMN must_change_password INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN session_generation INTEGER NOT NULL DEFAULT 0;
