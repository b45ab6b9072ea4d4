-- Sessions signed out before their token expired: a token naming one no
-- longer signs in. A row is pruned once its token would have expired anyway.
CREATE TABLE signed_out_sessions (
    session_id  uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX signed_out_sessions_expiry ON signed_out_sessions (expires_at);
CREATE INDEX signed_out_sessions_user ON signed_out_sessions (user_id);
